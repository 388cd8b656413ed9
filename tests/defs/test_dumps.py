"""The nightly pipeline: definitions, materializations into a local bucket and into S3 (moto on loopback),
and the faults a night can bring."""

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys

import dagster as dg
import pytest
from support.compare import assert_same_database
from support.configs import small_database, write_config
from support.d1_server import D1Server
from support.s3_server import FaultProxy, create_bucket, moto_server, pending_uploads

from patina_assets.backup import open_store
from patina_assets.config import ConfigError
from patina_assets.defs import build_definitions
from patina_assets.defs.dumps.checks import CAPTURED_ON_TIME, DUMP_CHECK_NAMES
from patina_assets.defs.dumps.jobs import NIGHTLY_JOB, NIGHTLY_SCHEDULE
from patina_assets.engine import restore_dump

DAY = "2026-03-09"
ACCOUNT = "0123456789abcdef0123456789abcdef"
DB_ID = "6a289378-c662-4c6a-9f1b-fa5296e03fa2"


def run_night(defs, day=DAY, instance=None):
    instance = instance or dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def(NIGHTLY_JOB).execute_in_process(
        partition_key=day, instance=instance, raise_on_error=False
    )
    return result, instance


def store_of(config):
    return open_store(config)


@pytest.fixture
def two_sqlite_databases(tmp_path):
    sources = tmp_path / "sources"
    sources.mkdir()
    return [
        {
            "name": "groveauth",
            "source": str(small_database(sources / "auth.sqlite", 40)),
            "priority": "critical",
            "description": "Authentication",
        },
        {"name": "scout-db", "source": str(small_database(sources / "scout.sqlite", 30))},
    ]


def test_definitions_load_one_asset_per_database_and_the_schedule_asks_for_yesterday(tmp_path, two_sqlite_databases):
    config = write_config(tmp_path, two_sqlite_databases)
    defs = build_definitions(config)
    dg.Definitions.validate_loadable(defs)
    keys = {spec.key for spec in defs.resolve_all_asset_specs() if spec.group_name == "dumps"}
    assert keys == {dg.AssetKey(["dumps", "groveauth"]), dg.AssetKey(["dumps", "scout_db"])}
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key.path[-1] == "groveauth")
    assert spec.tags["priority"] == "critical" and spec.group_name == "dumps" and "Authentication" in spec.description

    schedule = defs.get_schedule_def(NIGHTLY_SCHEDULE)
    assert schedule.cron_schedule == "0 3 * * *" and schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    tick = dt.datetime(2026, 3, 10, 3, 0, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        result = schedule.evaluate_tick(dg.build_schedule_context(instance=instance, scheduled_execution_time=tick))
    assert [r.partition_key for r in result.run_requests] == ["2026-03-09"]


def test_the_code_location_loads_with_the_default_config():
    from patina_assets import definitions

    dg.Definitions.validate_loadable(definitions.defs)


def check_stored(config, result, sources):
    store = store_of(config)
    manifests = {m.database: m for m in store.list_daily(day=DAY)}
    assert set(manifests) == {db["name"] for db in sources}
    events = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    for db in sources:
        manifest = manifests[db["name"]]
        stored = store.bucket.get_bytes(manifest.key)
        assert hashlib.sha256(stored).hexdigest() == manifest.sha256 and len(stored) == manifest.bytes
        metadata = events[db["name"].replace("-", "_")]
        assert metadata["sha256"].value == manifest.sha256
        assert metadata["key"].value == manifest.key
        assert metadata["dagster/row_count"].value == manifest.rows == sum(manifest.table_rows.values())
        assert {r.data["table"]: r.data["rows"] for r in metadata["table_rows"].value.records} == manifest.table_rows
        assert manifest.dagster_run_id == result.run_id
        assert manifest.digest_version == 2 and metadata["digest"].value == "BLAKE3"  # of the digests it names
    return store, manifests


def test_materialize_into_a_local_bucket_and_restore(tmp_path, two_sqlite_databases):
    config = write_config(tmp_path, two_sqlite_databases)
    result, _ = run_night(build_definitions(config))
    assert result.success
    store, manifests = check_stored(config, result, two_sqlite_databases)
    dump = tmp_path / "groveauth.sql.zst"
    dump.write_bytes(store.bucket.get_bytes(manifests["groveauth"].key))
    restore_dump(dump, tmp_path / "restored.sqlite")
    assert_same_database(tmp_path / "sources" / "auth.sqlite", tmp_path / "restored.sqlite", check_pragmas=False)


def test_materialize_again_replaces_the_day_cleanly(tmp_path, two_sqlite_databases):
    config = write_config(tmp_path, two_sqlite_databases)
    defs = build_definitions(config)
    run_night(defs)
    first = {m.database: m.key for m in store_of(config).list_daily()}
    result, _ = run_night(defs)
    assert result.success
    store = store_of(config)
    second = {m.database: m.key for m in store.list_daily()}
    assert first.keys() == second.keys() and all(first[k] != second[k] for k in first)
    assert sorted(o.key for o in store.bucket.list("daily/")) == sorted(
        list(second.values())
        + [f"daily/{DAY}/{name}.{kind}.json" for name in second for kind in ("manifest", "verification")]
    )
    assert all(store.get_verification(DAY, name).key == key for name, key in second.items())  # about the new dumps


@pytest.fixture
def s3(tmp_path):
    with moto_server() as endpoint, FaultProxy(endpoint) as proxy:
        bucket = create_bucket(endpoint)
        yield endpoint, proxy, bucket


def s3_bucket_config(proxy, bucket):
    return {
        "s3": {
            "bucket": bucket,
            "endpoint_url": proxy.endpoint_url,
            "region": "us-east-1",
            "access_key_id_env": "PATINA_TEST_KEY",
            "secret_access_key_env": "PATINA_TEST_SECRET",
            "multipart_part_size_mb": 5,
        }
    }


@pytest.fixture
def s3_credentials(monkeypatch):
    monkeypatch.setenv("PATINA_TEST_KEY", "testing")
    monkeypatch.setenv("PATINA_TEST_SECRET", "testing")


def test_materialize_into_s3_with_multipart(tmp_path, s3, s3_credentials):
    endpoint, proxy, bucket = s3
    sources = tmp_path / "sources"
    sources.mkdir()
    # Random avatars do not compress: a dump of ~12 MB goes up in equal 5 MiB parts.
    databases = [{"name": "groveauth", "source": str(small_database(sources / "auth.sqlite", 200, blob_bytes=30_000))}]
    config = write_config(tmp_path, databases, s3_bucket_config(proxy, bucket), dump={"format": "sql"})
    result, _ = run_night(build_definitions(config))
    assert result.success
    check_stored(config, result, databases)
    parts = [r.body_size for r in proxy.seen("UploadPart")]
    assert len(parts) >= 2 and len(set(parts[:-1])) == 1 and parts[0] == 5 * 1024 * 1024 and parts[-1] <= parts[0]


def test_s3_failing_mid_upload_keeps_the_previous_backup(tmp_path, s3, s3_credentials):
    endpoint, proxy, bucket = s3
    sources = tmp_path / "sources"
    sources.mkdir()
    databases = [{"name": "groveauth", "source": str(small_database(sources / "auth.sqlite", 200, blob_bytes=30_000))}]
    config = write_config(tmp_path, databases, s3_bucket_config(proxy, bucket), dump={"format": "sql", "retries": 0})
    defs = build_definitions(config)
    assert run_night(defs)[0].success
    store = store_of(config)
    (before,) = store.list_daily()
    proxy.fail(operation="UploadPart", part_number=2)
    result, _ = run_night(defs)
    assert not result.success
    (after,) = store.list_daily()
    assert after == before and store.verify(after)
    assert [o.key for o in store.bucket.list("daily/")] == sorted(
        [before.key, f"daily/{DAY}/groveauth.manifest.json", f"daily/{DAY}/groveauth.verification.json"]
    )
    assert pending_uploads(endpoint, bucket) == []


def d1_config(tmp_path, server, **dump):
    databases = [{"name": "scout-db", "source": f"d1://{ACCOUNT}/{DB_ID}", "priority": "critical"}]
    return write_config(
        tmp_path, databases, cloudflare={"api_url": server.base_url, "api_token_env": "PATINA_TEST_TOKEN"}, dump=dump
    )


def step_attempts(result):
    return sum(1 for e in result.all_events if e.event_type_value in ("STEP_START", "STEP_RESTARTED"))


def test_d1_source_answering_500s_fails_after_retries_and_lists_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATINA_TEST_TOKEN", "good-token")
    source = small_database(tmp_path / "d1.sqlite")
    with D1Server({DB_ID: source}, account_id=ACCOUNT) as server:
        server.fail_always(500)
        config = d1_config(tmp_path, server)
        result, _ = run_night(build_definitions(config))
        requests = len(server.requests)
    assert not result.success
    assert step_attempts(result) == 3  # the first try and config's 2 retries
    assert requests == 3 * 2  # each try: request_attempts = 2
    assert store_of(config).list_daily() == []


def test_d1_bad_token_fails_at_once_without_retries(tmp_path, monkeypatch):
    monkeypatch.setenv("PATINA_TEST_TOKEN", "revoked-token-value")
    source = small_database(tmp_path / "d1.sqlite")
    with D1Server({DB_ID: source}, account_id=ACCOUNT) as server:
        config = d1_config(tmp_path, server)
        result, _ = run_night(build_definitions(config))
        requests = len(server.requests)
    assert not result.success and step_attempts(result) == 1 and requests == 1
    failure = result.get_step_failure_events()[0].event_specific_data.error
    assert "refused the token" in failure.message and "revoked-token-value" not in str(result.all_events)


def test_d1_materialization_is_exact(tmp_path, monkeypatch):
    monkeypatch.setenv("PATINA_TEST_TOKEN", "good-token")
    source = small_database(tmp_path / "d1.sqlite")
    with D1Server({DB_ID: source}, account_id=ACCOUNT) as server:
        config = d1_config(tmp_path, server)
        result, _ = run_night(build_definitions(config))
    assert result.success
    (manifest,) = store_of(config).list_daily()
    assert manifest.point_in_time is True and manifest.consistency == "one batch" and manifest.requests > 0
    assert manifest.bookmark and manifest.bookmark == manifest.end_bookmark
    dump = tmp_path / "scout.sql.zst"
    dump.write_bytes(store_of(config).bucket.get_bytes(manifest.key))
    restore_dump(dump, tmp_path / "restored.sqlite")
    assert_same_database(source, tmp_path / "restored.sqlite", check_pragmas=False)


def test_a_malformed_config_stops_the_code_location_from_loading(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text(
        "databases:\n  - name: groveauth\n    source: d1://nope\n    priority: urgent\nbucket: {local: {path: b}}\n"
    )
    with pytest.raises(ConfigError) as err:
        write_config(tmp_path, [{"name": "x", "source": "x.sqlite", "priority": "urgent"}])
    assert "databases[0].priority" in str(err.value) and "critical, high, normal" in str(err.value)
    run = subprocess.run(
        [sys.executable, "-c", "import patina_assets.definitions"],
        capture_output=True,
        text=True,
        env={"PATINA_CONFIG": str(bad), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert run.returncode != 0
    assert "databases[0].priority" in run.stderr and "databases[0].source" in run.stderr


def test_a_d1_database_written_during_every_read_is_stored_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("PATINA_TEST_TOKEN", "good-token")
    source = small_database(tmp_path / "d1.sqlite", 300)
    with D1Server({DB_ID: source}, account_id=ACCOUNT) as server:
        server.before_request = lambda path, body: (
            server.execute(DB_ID, "INSERT INTO users(email) VALUES ('u' || random())")
            if "json_array" in (body or {}).get("sql", "")
            else None
        )
        config = d1_config(tmp_path, server, page_bytes=10_000, consistency_retries=1)
        result, _ = run_night(build_definitions(config))
    assert result.success  # the backup is stored: marked, not dropped
    (manifest,) = store_of(config).list_daily()
    assert manifest.point_in_time is False and manifest.consistency == "bookmark moved"
    assert manifest.bookmark < manifest.end_bookmark
    (materialization,) = [
        e.event_specific_data.materialization
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    ]
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["point_in_time"] is False and metadata["attempts"] == 2
    assert metadata["time_travel_bookmark"] == manifest.bookmark and "not one point in time" in metadata["warnings"]
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "point_in_time"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert f"wrangler d1 time-travel restore scout-db --bookmark={manifest.bookmark}" in check.description


def test_last_night_is_on_time_and_a_refused_late_backfill_fails_without_retries(tmp_path, two_sqlite_databases):

    config = write_config(tmp_path, two_sqlite_databases[:1], dump={"late_backfill": "refuse"})
    defs = build_definitions(config)
    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    result, instance = run_night(defs, yesterday)
    assert result.success
    on_time = {e.check_name: e for e in result.get_asset_check_evaluations()}[CAPTURED_ON_TIME]
    assert on_time.passed and not on_time.metadata["captured_late"].value

    long_ago = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=10)).isoformat()
    result, _ = run_night(defs, long_ago, instance)
    assert not result.success and step_attempts(result) == 1  # retrying cannot make it on time
    failure = result.get_step_failure_events()[0].event_specific_data.error
    assert f"refusing to back up {long_ago}" in failure.message and "cannot bring back" in failure.message
    assert [m.day for m in store_of(config).list_daily()] == [yesterday]


def test_the_nightly_through_its_executor_is_one_forked_process_per_database(tmp_path, two_sqlite_databases):
    """What the UI, the daemon and the CLI run: the job's own executor (not execute_in_process). Each database's
    step, its checks included, runs in a process of its own, forked from the run's forkserver."""
    write_config(tmp_path, two_sqlite_databases)
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "PATINA_CONFIG": str(tmp_path / "patina.yaml"), "DAGSTER_HOME": str(home)}
    command = [sys.executable, "-m", "dagster", "job", "execute", "-m", "patina_assets.definitions", "-j", NIGHTLY_JOB]
    tags = json.dumps({"dagster/partition": "2026-03-01"})
    done = subprocess.run([*command, "--tags", tags], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_runs(limit=1)[0]
        assert run.status == dg.DagsterRunStatus.SUCCESS
        events = [r.dagster_event for r in instance.all_logs(run.run_id) if r.dagster_event]
        starts = {e.step_key: e.pid for e in events if e.event_type == dg.DagsterEventType.STEP_START}
        evaluated = [e for e in events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    assert set(starts) == {"dumps__groveauth", "dumps__scout_db"}
    assert len(set(starts.values())) == 2 and run_pid(events) not in starts.values()
    assert len(evaluated) == 2 * len(DUMP_CHECK_NAMES)


FORKED_STEP = """
import sys
import patina_assets.step_preload  # what the run's forkserver imports once, before it forks any step
import dagster._core.definitions.definitions_class as definitions_class
from dagster._core.definitions.reconstruct import ReconstructableRepository

def built_again(*args, **kwargs):
    raise AssertionError("a step built the code location's repository again")

definitions_class._create_repository_using_definitions_args = built_again
# What a step's process does first: look its job up through the run's code pointer.
repository = ReconstructableRepository.for_module("patina_assets.definitions", "defs", working_directory=sys.argv[1])
print(repository.get_reconstructable_job(sys.argv[2]).get_definition().name)
"""


def test_the_forkserver_preload_resolves_the_repository_its_steps_look_their_job_up_in(tmp_path, two_sqlite_databases):
    # Each step is a fork of the preloaded forkserver; a repository it must resolve itself costs every step
    # (~0.2 s a step with 200 databases, issue 17).
    write_config(tmp_path, two_sqlite_databases)
    env = {**os.environ, "PATINA_CONFIG": str(tmp_path / "patina.yaml")}
    done = subprocess.run(
        [sys.executable, "-c", FORKED_STEP, str(tmp_path), NIGHTLY_JOB], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [NIGHTLY_JOB]


EXECUTOR_MADE = """
import os
from multiprocessing import forkserver

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.system_config.objects import ResolvedRunConfig

from patina_assets.defs.policies import step_executor


@dg.op
def nothing():
    pass


job = dg.GraphDefinition(name="one_step", node_defs=[nothing]).to_job(executor_def=step_executor(2))
assert forkserver._forkserver._forkserver_pid is None
with dg.DagsterInstance.ephemeral() as instance:  # what a run worker does before the run starts (create_executor)
    config = ResolvedRunConfig.build(job, {}).execution.execution_engine_config
    made = dg.InitExecutorContext(job=InMemoryJob(job), executor_def=job.executor_def, executor_config=config, instance=instance)
    executor = job.executor_def.executor_creation_fn(made)
pid = forkserver._forkserver._forkserver_pid
print(type(executor).__name__, pid is not None and os.waitpid(pid, os.WNOHANG) == (0, 0), *forkserver._forkserver._preload_modules)
"""


def test_the_forkserver_starts_when_the_executor_is_made_not_at_the_first_step():
    # Its import of Dagster and the code location (a second of a small night's few) then runs while the run
    # worker starts the run and plans its steps, not after (issue 17).
    done = subprocess.run([sys.executable, "-c", EXECUTOR_MADE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [
        "MultiprocessExecutor",
        "True",
        "dagster._core.executor.multiprocess",
        "patina_assets.step_preload",
    ]


def run_pid(events) -> int:
    return next(e.pid for e in events if e.event_type == dg.DagsterEventType.RUN_START)
