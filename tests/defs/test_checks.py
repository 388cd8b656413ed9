"""The dump checks and the freshness policy, driven by real materializations of the nightly job.

A week of nights over four small SQLite databases (partition keys, not waiting): four quiet nights, then
one where `steady` stays as it was, `shrinking` is emptied, `growing` triples and `evolving` gains a table.
"""

import asyncio
import datetime as dt
import sqlite3

import dagster as dg
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.freshness import FreshnessDaemon
from support.configs import small_database, write_config
from support.s3_server import FaultProxy, create_bucket, moto_server

from patina_assets.backup import open_store
from patina_assets.catalog import Catalog
from patina_assets.defs import build_definitions
from patina_assets.defs.dumps.assets import dump_asset_key
from patina_assets.defs.dumps.checks import (
    CAPTURED_ON_TIME,
    DUMP_CHECK_NAMES,
    RESTORE_VERIFICATION,
    SCHEMA_DRIFT,
    SIZE_ANOMALY,
)
from patina_assets.defs.dumps.jobs import NIGHTLY_JOB

QUIET_NIGHTS = ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]
TEST_NIGHT = "2026-03-05"
DATABASES = ["steady", "shrinking", "growing", "evolving"]
ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


def run_night(defs, day, instance, job=NIGHTLY_JOB):
    return defs.resolve_job_def(job).execute_in_process(partition_key=day, instance=instance, raise_on_error=False)


def evaluations(result):
    """{(database asset name, check name): evaluation} of one run."""
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


def execute(path, *statements, many=None):
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    if many:
        db.executemany(*many)
    db.commit()
    db.close()


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    directory = tmp_path_factory.mktemp("week")
    sources = {name: small_database(directory / f"{name}.sqlite", 100) for name in DATABASES}
    config = write_config(directory, [{"name": name, "source": str(path)} for name, path in sources.items()])
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    nights = {day: run_night(defs, day, instance) for day in QUIET_NIGHTS}

    execute(sources["shrinking"], "DELETE FROM posts", "DELETE FROM users")
    execute(
        sources["growing"],
        many=("INSERT INTO users VALUES (?,?,?,NULL)", [(i, f"user{i}@example.com", i) for i in range(101, 301)]),
    )
    execute(
        sources["growing"],
        many=(
            "INSERT INTO posts(user_id, body) VALUES (?,?)",
            [(1 + i % 300, f"post {i}\nline two") for i in range(400)],
        ),
    )
    execute(
        sources["evolving"],
        "CREATE TABLE comments(id INTEGER PRIMARY KEY, post_id INTEGER REFERENCES posts(id), body TEXT)",
        "INSERT INTO comments(post_id, body) VALUES (1, 'first')",
    )
    nights[TEST_NIGHT] = run_night(defs, TEST_NIGHT, instance)
    return config, defs, nights


def test_the_nightly_job_runs_every_check_of_every_dump(week):
    config, defs, nights = week
    job = defs.resolve_job_def(NIGHTLY_JOB)
    expected = {dg.AssetCheckKey(dump_asset_key(db), name) for db in config.databases for name in DUMP_CHECK_NAMES}
    assert set(job.asset_layer.asset_graph.asset_check_keys) == expected  # selected by the job's asset selection
    for day, result in nights.items():
        assert set(evaluations(result)) == {(db, name) for db in DATABASES for name in DUMP_CHECK_NAMES}, day
        assert result.success, day  # size and schema findings do not fail a night; only an unusable backup does
        # One step (one process under the job's executor) per database: the checks run in the dump's step.
        steps = {e.step_key for e in result.all_events if e.is_step_success}
        assert steps == {f"dumps__{db}" for db in DATABASES}, day


def test_the_first_night_passes_with_no_size_verdict_and_nothing_to_compare(week):
    _, _, nights = week
    checks = evaluations(nights[QUIET_NIGHTS[0]])
    for db in DATABASES:
        restore, size, drift = (checks[(db, name)] for name in (RESTORE_VERIFICATION, SIZE_ANOMALY, SCHEMA_DRIFT))
        assert restore.passed and size.passed and drift.passed
        assert size.metadata["verdict"].value == "not_enough_history" and size.metadata["history_count"].value == 0
        assert "no verdict until 3 earlier backups exist" in size.description
        assert drift.metadata["verdict"].value == "first_backup"
        assert restore.metadata["day"].value == size.metadata["day"].value == QUIET_NIGHTS[0]


def test_a_good_dump_passes_every_check(week):
    config, _, nights = week
    checks = evaluations(nights[TEST_NIGHT])
    restore, size, drift = (checks[("steady", name)] for name in (RESTORE_VERIFICATION, SIZE_ANOMALY, SCHEMA_DRIFT))
    assert restore.passed and restore.severity == ERROR and restore.blocking
    manifest = open_store(config).get_manifest(TEST_NIGHT, "steady")
    meta = {k: v.value for k, v in restore.metadata.items()}
    assert meta["verdict"] == "usable" and meta["key"] == manifest.key and meta["rows"] == manifest.rows == 300
    assert meta["stored_sha256_matches"] and meta["schema_fingerprint_matches"]
    assert meta["restored_content_digest"] == meta["recorded_content_digest"] == manifest.content_digest
    assert {r.data["table"]: (r.data["restored_rows"], r.data["digest"]) for r in meta["table_checks"].records} == {
        "users": (100, "equal"),
        "posts": (200, "equal"),
    }

    assert size.passed and size.metadata["verdict"].value == "ok" and size.metadata["ratio_percent"].value == 100.0
    assert [r.data["day"] for r in size.metadata["history"].value.records] == QUIET_NIGHTS
    assert (
        drift.passed
        and drift.metadata["verdict"].value == "unchanged"
        and drift.metadata["previous_day"].value == QUIET_NIGHTS[-1]
    )


def test_a_database_emptied_overnight_fails_the_size_check(week):
    _, _, nights = week
    checks = evaluations(nights[TEST_NIGHT])
    size = checks[("shrinking", SIZE_ANOMALY)]
    assert not size.passed and size.severity == ERROR
    assert "possible data loss" in size.description and size.metadata["verdict"].value == "too_small"
    assert size.metadata["ratio_percent"].value < 50 and size.metadata["history_count"].value == 4
    assert checks[("shrinking", RESTORE_VERIFICATION)].passed  # the empty database was backed up faithfully
    assert checks[("shrinking", SCHEMA_DRIFT)].passed


def test_restore_verification_keeps_its_verdict_beside_the_backup(week):
    config, _, nights = week
    store = open_store(config)
    steady, shrinking = (store.get_manifest(TEST_NIGHT, name) for name in ("steady", "shrinking"))
    record = store.get_verification(TEST_NIGHT, "steady")
    assert record.passed and record.key == steady.key and record.sha256 == steady.sha256
    assert record.dagster_run_id == nights[TEST_NIGHT].run_id and record.size_verdict == "ok" and record.checked_at
    emptied = store.get_verification(TEST_NIGHT, "shrinking")
    assert emptied.passed and emptied.key == shrinking.key and emptied.possible_data_loss  # what retention reads
    listed = {(b.database, b.day): b for b in Catalog(store).backups()}
    assert all(b.status == "verified" for b in listed.values())


def test_nights_run_long_after_their_day_are_flagged_captured_late(week):
    _, _, nights = week
    checks = evaluations(nights[TEST_NIGHT])
    late = checks[("steady", CAPTURED_ON_TIME)]  # 2026-03-05, run months later: a backfill
    assert not late.passed and late.severity == WARN and late.metadata["captured_late"].value
    assert "captured LATE" in late.description and TEST_NIGHT in late.description


def test_a_database_grown_threefold_warns(week):
    _, _, nights = week
    checks = evaluations(nights[TEST_NIGHT])
    size = checks[("growing", SIZE_ANOMALY)]
    assert not size.passed and size.severity == WARN
    assert "possible corruption or runaway growth" in size.description and size.metadata["verdict"].value == "too_large"
    assert size.metadata["ratio_percent"].value > 200
    assert checks[("growing", RESTORE_VERIFICATION)].passed and checks[("growing", SCHEMA_DRIFT)].passed


def test_a_new_table_warns_with_its_name_in_the_drift_report(week):
    _, _, nights = week
    checks = evaluations(nights[TEST_NIGHT])
    drift = checks[("evolving", SCHEMA_DRIFT)]
    assert not drift.passed and drift.severity == WARN
    assert "added table comments" in drift.description
    assert drift.metadata["added"].value == ["table comments"] and drift.metadata["removed"].value == []
    assert drift.metadata["changed"].value == [] and drift.metadata["objects_listed"].value
    assert "CREATE TABLE comments" in drift.metadata["report"].value
    assert drift.metadata["schema_fingerprint"].value != drift.metadata["previous_schema_fingerprint"].value
    assert checks[("evolving", SIZE_ANOMALY)].passed and checks[("evolving", RESTORE_VERIFICATION)].passed


# -- a dump damaged in the bucket, found by running just the checks --------------------------------


def checks_only(defs, database):
    """The definitions plus a job that runs only one database's checks (no dump)."""
    job = dg.define_asset_job(
        f"verify_{database.asset_name}", selection=dg.AssetSelection.checks_for_assets(dump_asset_key(database))
    )
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[job])), job.name


def run_checks(defs, job, instance, day=None):
    # A job of checks alone has no partitioned asset to take a partition_key: the partition goes in as the
    # run's tag, which is all `context.partition_key` reads.
    tags = {"dagster/partition": day} if day else {}
    return defs.resolve_job_def(job).execute_in_process(instance=instance, tags=tags, raise_on_error=False)


def corrupt_and_verify(config, store):
    database = config.databases[0]
    defs, job = checks_only(build_definitions(config), database)
    instance = dg.DagsterInstance.ephemeral()
    assert run_night(defs, "2026-03-01", instance).success
    assert run_night(defs, "2026-03-02", instance).success

    before = run_checks(defs, job, instance)  # no partition: the newest backup
    # These nights are long past, so captured_on_time warns (they are backfills); the rest passes.
    assert before.success and all(
        e.passed for e in before.get_asset_check_evaluations() if e.check_name != CAPTURED_ON_TIME
    )
    assert {e.metadata["day"].value for e in before.get_asset_check_evaluations()} == {"2026-03-02"}

    manifest = store.get_manifest("2026-03-01", database.name)
    data = bytearray(store.bucket.get_bytes(manifest.key))
    for at in range(len(data) // 3, len(data) // 3 + 8):
        data[at] ^= 0xFF
    store.bucket.put_bytes(manifest.key, bytes(data))

    result = run_checks(defs, job, instance, "2026-03-01")
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    restore = checks[RESTORE_VERIFICATION]
    assert not restore.passed and restore.severity == ERROR and restore.blocking
    assert restore.metadata["verdict"].value == "unusable" and restore.metadata["day"].value == "2026-03-01"
    assert not restore.metadata["stored_sha256_matches"].value and not restore.metadata["restored"].value
    assert "altered or damaged after upload" in restore.description and "damaged" in restore.metadata["problems"].value
    assert checks[SIZE_ANOMALY].passed and checks[SCHEMA_DRIFT].passed  # they read manifests, which are intact
    # The verdict is kept in the bucket, so the tools see the damage without Dagster.
    record = store.get_verification("2026-03-01", database.name)
    assert not record.passed and record.key == manifest.key and record.sha256 != manifest.sha256
    assert Catalog(store).find("2026-03-01", database.name, any_status=True).status == "failed"
    # Blocking: the run fails at the step that ran the checks (the dump's, here alone), and no dump was redone.
    assert not result.success and result.get_asset_materialization_events() == []
    assert [e.step_key for e in result.get_step_failure_events()] == [f"dumps__{database.asset_name}"]
    return result


def test_a_dump_corrupted_in_a_local_bucket_fails_restore_verification(tmp_path):
    source = small_database(tmp_path / "auth.sqlite", 50)
    config = write_config(tmp_path, [{"name": "groveauth", "source": str(source)}])
    corrupt_and_verify(config, open_store(config))


def test_a_dump_corrupted_in_s3_fails_restore_verification(tmp_path, monkeypatch):
    monkeypatch.setenv("PATINA_TEST_KEY", "testing")
    monkeypatch.setenv("PATINA_TEST_SECRET", "testing-secret-value")
    source = small_database(tmp_path / "auth.sqlite", 50)
    with moto_server() as endpoint, FaultProxy(endpoint) as proxy:
        bucket = create_bucket(endpoint)
        s3 = {
            "s3": {
                "bucket": bucket,
                "endpoint_url": proxy.endpoint_url,
                "region": "us-east-1",
                "prefix": "patina/",
                "access_key_id_env": "PATINA_TEST_KEY",
                "secret_access_key_env": "PATINA_TEST_SECRET",
            }
        }
        config = write_config(tmp_path, [{"name": "groveauth", "source": str(source)}], s3)
        result = corrupt_and_verify(config, open_store(config))
        assert proxy.seen("GetObject")  # the check read the dump back over S3
    assert "testing-secret-value" not in str(result.all_events)


def test_a_day_without_a_backup_fails_restore_verification(tmp_path):
    source = small_database(tmp_path / "auth.sqlite", 5)
    config = write_config(tmp_path, [{"name": "groveauth", "source": str(source)}])
    defs, job = checks_only(build_definitions(config), config.databases[0])
    result = run_checks(defs, job, dg.DagsterInstance.ephemeral(), "2026-03-01")
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks[RESTORE_VERIFICATION].passed and checks[RESTORE_VERIFICATION].severity == ERROR
    assert "no backup is stored for this day" in checks[RESTORE_VERIFICATION].description
    assert not checks[SIZE_ANOMALY].passed and checks[SIZE_ANOMALY].severity == WARN
    assert checks[SCHEMA_DRIFT].metadata["verdict"].value == "no_backup"


# -- freshness --------------------------------------------------------------------------------------


def dump_spec(config):
    key = dump_asset_key(config.databases[0])
    return next(spec for spec in build_definitions(config).resolve_all_asset_specs() if spec.key == key)


def test_freshness_policy_windows_come_from_the_alert_settings(tmp_path):
    source = small_database(tmp_path / "auth.sqlite", 5)
    config = write_config(
        tmp_path,
        [{"name": "groveauth", "source": str(source)}],
        alerts={"stale_after_days": 5, "stale_warn_after_days": 3},
    )
    spec = dump_spec(config)
    assert spec.freshness_policy == dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(days=5), warn_window=dt.timedelta(days=3)
    )
    default = write_config(tmp_path, [{"name": "groveauth", "source": str(source)}])
    assert dump_spec(default).freshness_policy == dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(days=8), warn_window=dt.timedelta(days=2)
    )


def test_the_freshness_daemon_warns_then_fails_a_database_left_without_backups(tmp_path):
    """Open-source Dagster evaluates freshness policies in its FreshnessDaemon (run by `dagster dev` and
    `dagster-daemon`), which records a state the UI shows. No public API evaluates one, so this drives the
    daemon's own iteration over the code location as the daemon loads it, with the clock moved forward."""
    source = small_database(tmp_path / "auth.sqlite", 5)
    config = write_config(tmp_path, [{"name": "groveauth", "source": str(source)}])
    location = tmp_path / "location.py"
    location.write_text(
        "from patina_assets.config import load_config\nfrom patina_assets.defs import build_definitions\n"
        f"defs = build_definitions(load_config({str(tmp_path / 'patina.yaml')!r}, env={{}}))\n"
    )
    target = InProcessWorkspaceLoadTarget(
        InProcessCodeLocationOrigin(
            LoadableTargetOrigin(python_file=str(location), attribute="defs", working_directory=str(tmp_path))
        )
    )
    key = dump_asset_key(config.databases[0])
    with dg.instance_for_test() as instance, create_test_daemon_workspace_context(target, instance) as workspace:
        daemon = FreshnessDaemon()

        def freshness(at=None):
            with freeze_time(at or dt.datetime.now(dt.UTC)):
                asyncio.run(daemon._evaluate_assets(workspace))
            return instance.get_freshness_state_records([key])[key].freshness_state.value

        assert freshness() == "UNKNOWN"  # never backed up
        assert run_night(build_definitions(config), "2026-03-01", instance).success
        backed_up = dt.datetime.now(dt.UTC)
        assert freshness(backed_up + dt.timedelta(hours=23)) == "PASS"
        assert freshness(backed_up + dt.timedelta(days=2, minutes=1)) == "WARN"
        assert freshness(backed_up + dt.timedelta(days=7, hours=23)) == "WARN"
        assert freshness(backed_up + dt.timedelta(days=8, minutes=1)) == "FAIL"
        # A new backup makes it fresh again.
        assert run_night(build_definitions(config), "2026-03-02", instance).success
        assert freshness() == "PASS"
