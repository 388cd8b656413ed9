"""The R2 backup assets: a night's materialization against moto (source bucket) into a local backup bucket, with
its checks and retention, and the nightly job's executor that keeps the dumps' slots."""

import dataclasses
import hashlib

import dagster as dg
import pytest
from support.configs import write_config
from support.s3_server import create_bucket, direct_client

from patina_assets.backup import open_store
from patina_assets.config import EncryptionConfig
from patina_assets.defs import build_definitions
from patina_assets.defs.dumps.jobs import NIGHTLY_JOB
from patina_assets.defs.policies import R2_GROUP, nightly_executor_config
from patina_assets.defs.r2_backups.assets import R2_CHECK_NAMES, build_r2_assets
from patina_assets.defs.resources import resources
from patina_assets.encryption import generate_identity, recipient_fingerprint
from patina_assets.r2 import list_snapshots, object_key, recipients_id


@pytest.fixture
def config(tmp_path, moto_endpoint, monkeypatch):
    monkeypatch.setenv("TEST_R2_KEY_ID", "testing")
    monkeypatch.setenv("TEST_R2_SECRET", "testing")
    source = create_bucket(moto_endpoint)
    s3 = direct_client(moto_endpoint)
    for i in range(5):
        s3.put_object(Bucket=source, Key=f"img/{i}.png", Body=f"image {i}".encode(), ContentType="image/png")
    return write_config(
        tmp_path,
        [{"name": "groveauth", "source": "x.sqlite"}],
        r2_buckets=[
            {
                "name": "grove-media",
                "bucket": source,
                "endpoint_url": moto_endpoint,
                "region": "us-east-1",
                "access_key_id_env": "TEST_R2_KEY_ID",
                "secret_access_key_env": "TEST_R2_SECRET",
            }
        ],
    )


def test_a_night_materializes_the_snapshot_with_its_checks(config):
    (asset,) = build_r2_assets(config)
    assert asset.key == dg.AssetKey(["r2", "grove_media"]) and asset.group_names_by_key[asset.key] == R2_GROUP
    result = dg.materialize(
        [asset], partition_key="2026-03-08", resources={"bucket": resources(config)["bucket"]}, raise_on_error=False
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node(asset.op.name)
    assert materialization.metadata["objects"].value == 5 and materialization.metadata["copied_objects"].value == 5
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == set(R2_CHECK_NAMES) and all(e.passed for e in evaluations.values())
    assert evaluations["r2_objects_verified"].metadata["full"].value is True  # 2026-03-08 is a Sunday: all of them
    bucket = open_store(config).bucket
    snapshots, _ = list_snapshots(bucket, "grove-media")
    assert [s.day for s in snapshots] == ["2026-03-08"]
    assert bucket.stat(object_key(hashlib.sha256(b"image 3").hexdigest())) is not None


def test_a_missing_credential_fails_the_step_with_the_variable_name(config, monkeypatch):
    monkeypatch.delenv("TEST_R2_SECRET")
    (asset,) = build_r2_assets(config)
    result = dg.materialize(
        [asset], partition_key="2026-03-09", resources={"bucket": resources(config)["bucket"]}, raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "TEST_R2_SECRET" in str(failure.event_specific_data.error)


def test_r2_steps_hold_at_most_one_executor_slot_beside_the_dumps():
    assert nightly_executor_config(3, with_r2=False) == {"max_concurrent": 3}
    assert nightly_executor_config(3, with_r2=True) == {
        "max_concurrent": 4,
        "tag_concurrency_limits": [{"key": "patina/area", "value": "r2", "limit": 1}],
    }


def test_the_nightly_job_runs_the_dumps_and_the_r2_snapshots(config):
    defs = build_definitions(config)
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def(NIGHTLY_JOB)
    selected = set(job.asset_layer.selected_asset_keys)
    assert {dg.AssetKey(["r2", "grove_media"]), dg.AssetKey(["dumps", "groveauth"])} <= selected
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == dg.AssetKey(["r2", "grove_media"]))
    assert spec.group_name == R2_GROUP


def test_with_encryption_the_night_stores_the_snapshot_encrypted_and_checks_it(tmp_path, config, monkeypatch):
    identity = generate_identity()
    monkeypatch.setenv("PATINA_AGE_IDENTITY", identity.file_text)
    encrypted = dataclasses.replace(config, encryption=EncryptionConfig(recipients=(identity.recipient,)))
    (asset,) = build_r2_assets(encrypted)
    result = dg.materialize(
        [asset], partition_key="2026-03-08", resources={"bucket": resources(encrypted)["bucket"]}, raise_on_error=False
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node(asset.op.name)
    assert materialization.metadata["encrypted"].value is True
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == set(R2_CHECK_NAMES) and all(e.passed for e in evaluations.values())
    bucket = open_store(encrypted).bucket
    sha = hashlib.sha256(b"image 3").hexdigest()
    sealed = object_key(sha, recipients_id([recipient_fingerprint(identity.recipient)]))
    assert bucket.stat(sealed) is not None and bucket.stat(object_key(sha)) is None

    # The next night without the identity: the asset fails saying which variable to set; nothing is published.
    monkeypatch.delenv("PATINA_AGE_IDENTITY")
    result = dg.materialize(
        [asset], partition_key="2026-03-09", resources={"bucket": resources(encrypted)["bucket"]}, raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "PATINA_AGE_IDENTITY" in str(failure.event_specific_data.error)
    assert [s.day for s in list_snapshots(bucket, "grove-media")[0]] == ["2026-03-08"]
