"""The nightly job with encryption on: each database's backup is stored as an age file, restore verification
opens it with the identity from the environment, and without the identity the check says what to set."""

import dagster as dg
from support.configs import small_database, write_config

from patina_assets.backup import open_store
from patina_assets.defs import build_definitions
from patina_assets.defs.dumps.jobs import NIGHTLY_JOB
from patina_assets.encryption import generate_identity, recipient_fingerprint

DAY = "2026-03-09"
VARIABLE = "PATINA_AGE_IDENTITY"


def test_the_nightly_job_stores_age_files_and_verifies_them_with_the_identity(tmp_path, monkeypatch):
    identity = generate_identity()
    (tmp_path / "key.txt").write_text(identity.file_text)
    monkeypatch.setenv(VARIABLE, str(tmp_path / "key.txt"))
    sources = tmp_path / "sources"
    sources.mkdir()
    databases = [{"name": "groveauth", "source": str(small_database(sources / "auth.sqlite", 40))}]
    config = write_config(tmp_path, databases, encryption={"recipients": [identity.recipient]})
    defs = build_definitions(config)

    result = defs.resolve_job_def(NIGHTLY_JOB).execute_in_process(
        partition_key=DAY, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert result.success
    manifest = open_store(config).get_manifest(DAY, "groveauth")
    assert manifest.encrypted and manifest.key.endswith(".sql.zst.age")
    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["encrypted"].value is True
    assert metadata["recipients"].value == recipient_fingerprint(identity.recipient)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["restore_verification"].passed, checks["restore_verification"].metadata

    monkeypatch.delenv(VARIABLE)
    again = defs.resolve_job_def(NIGHTLY_JOB).execute_in_process(
        partition_key=DAY, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert open_store(config).get_manifest(DAY, "groveauth").encrypted  # backing up needs no identity
    failures = [e for e in again.all_events if e.is_step_failure]
    assert any(f"${VARIABLE} is not set" in str(e.event_specific_data.error) for e in failures)
