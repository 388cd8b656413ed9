"""The weekly archive in Dagster: definitions, fourteen simulated weeks against moto's S3, a week with a
missing day, an archive that fails verification, the dry run, reconciliation as a check, and the wait for
a nightly run still going."""

import datetime as dt
import shutil

import dagster as dg
from support.archives import day_of_restored, flip_sql, make_source, rewrite_archive, touch
from support.configs import write_config
from support.s3_server import create_bucket, moto_server

from patina_assets.archive import ArchiveStore
from patina_assets.backup import open_store
from patina_assets.defs import build_definitions
from patina_assets.defs.archives.assets import (
    ARCHIVE_KEY,
    ARCHIVE_VERIFIED_CHECK,
    DELETED,
    RECONCILIATION_CHECK,
    RETENTION_CHECK,
    RETENTION_MARK,
    WEEK_COMPLETE_CHECK,
)
from patina_assets.defs.archives.jobs import WEEKLY_JOB, WEEKLY_SCHEDULE
from patina_assets.defs.archives.reconciliation import recorded_backups, recorded_partitions
from patina_assets.defs.dumps.jobs import NIGHTLY_JOB
from patina_assets.storage import daily_manifest_key, new_generation, week_days

START = dt.date(2026, 1, 4)  # a Sunday
NAMES = ["groveauth", "scout-db"]
DUMP_KEYS = {"groveauth": dg.AssetKey(["dumps", "groveauth"]), "scout-db": dg.AssetKey(["dumps", "scout_db"])}
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def week(n: int) -> str:
    return (START + dt.timedelta(weeks=n)).isoformat()


def databases(tmp_path):
    sources = tmp_path / "sources"
    sources.mkdir(exist_ok=True)
    return [
        {"name": "groveauth", "source": str(make_source(sources / "auth.sqlite", 12)), "priority": "critical"},
        {"name": "scout-db", "source": str(make_source(sources / "scout.sqlite", 6))},
    ]


class Pipeline:
    """The nightly and weekly jobs of a configuration, run by partition key on one instance, as the schedules
    would.  Unless `dump_checks`, nights run the dump assets without their per-dump checks (issue 5's
    restore verification and friends, tested in test_checks.py): the same dumps in a third of the time."""

    def __init__(self, config, instance, *, dump_checks: bool = False):
        self.config, self.instance = config, instance
        dumps_only = dg.define_asset_job(
            "nightly_dumps_only", selection=dg.AssetSelection.assets(*DUMP_KEYS.values()).without_checks()
        )
        self.defs = dg.Definitions.merge(build_definitions(config), dg.Definitions(jobs=[dumps_only]))
        self.nightly = self.defs.resolve_job_def(NIGHTLY_JOB if dump_checks else "nightly_dumps_only")
        self.weekly = self.defs.resolve_job_def(WEEKLY_JOB)
        self.archives = ArchiveStore(open_store(config))

    def night(self, day: str, *, expect_success: bool = True):
        for database in self.config.databases:
            if database.sqlite_path.exists():
                touch(database.sqlite_path, day)
        result = self.nightly.execute_in_process(
            partition_key=day, instance=self.instance, run_config=QUIET, raise_on_error=False
        )
        assert result.success == expect_success
        return result

    def week(self, key: str, *, nights: bool = True, dry_run: bool = False, **run_config):
        if nights:
            for day in week_days(key):
                self.night(day)
        config = {**QUIET, "ops": {"archives__weekly": {"config": {"dry_run": dry_run, **run_config}}}}
        return self.weekly.execute_in_process(
            partition_key=key, instance=self.instance, run_config=config, raise_on_error=False
        )


def materialization(result):
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == ARCHIVE_KEY]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def checks(result):
    return {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}


def deletion_marks(instance, key):
    records = instance.fetch_observations(key, limit=1000).records
    return [
        r
        for r in records
        if r.asset_observation.metadata.get(RETENTION_MARK, dg.MetadataValue.text("")).value == DELETED
    ]


# -- definitions -----------------------------------------------------------------------------------


def test_the_archive_asset_depends_on_every_dump_for_the_seven_days_of_its_week(tmp_path):
    config = write_config(tmp_path, databases(tmp_path))  # start_date 2026-01-01, a Thursday
    defs = build_definitions(config)
    dg.Definitions.validate_loadable(defs)
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == ARCHIVE_KEY)
    assert spec.group_name == "archives" and "weekly" in spec.description
    assert {dep.asset_key for dep in spec.deps} == set(DUMP_KEYS.values())
    weekly = spec.partitions_def
    assert weekly.get_first_partition_key() == "2025-12-28"  # the Sunday of the start date's week
    assert weekly.get_partition_keys(current_time=dt.datetime(2026, 1, 18, 4, tzinfo=dt.UTC)) == [
        "2025-12-28",
        "2026-01-04",
        "2026-01-11",
    ]
    dump = next(s for s in defs.resolve_all_asset_specs() if s.key == DUMP_KEYS["groveauth"])
    mapping = spec.deps[0].partition_mapping
    upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
        weekly.subset_with_partition_keys(["2026-01-04"]), weekly, dump.partitions_def
    )
    assert sorted(upstream.partitions_subset.get_partition_keys()) == week_days("2026-01-04")
    first = mapping.get_upstream_mapped_partitions_result_for_partitions(
        weekly.subset_with_partition_keys(["2025-12-28"]), weekly, dump.partitions_def
    )
    assert sorted(first.partitions_subset.get_partition_keys()) == ["2026-01-01", "2026-01-02", "2026-01-03"]
    check_names = {key.name for key in defs.resolve_asset_graph().asset_check_keys if key.asset_key == ARCHIVE_KEY}
    assert check_names == {ARCHIVE_VERIFIED_CHECK, WEEK_COMPLETE_CHECK, RETENTION_CHECK, RECONCILIATION_CHECK}

    schedule = defs.get_schedule_def(WEEKLY_SCHEDULE)
    assert schedule.cron_schedule == "0 4 * * 0" and schedule.execution_timezone in (None, "UTC")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING and schedule.job_name == WEEKLY_JOB
    tick = dt.datetime(2026, 3, 15, 4, 0, tzinfo=dt.UTC)  # a Sunday
    with dg.instance_for_test() as instance:
        result = schedule.evaluate_tick(dg.build_schedule_context(instance=instance, scheduled_execution_time=tick))
    assert [r.partition_key for r in result.run_requests] == ["2026-03-08"]  # the week that just ended


# -- fourteen weeks --------------------------------------------------------------------------------


def test_fourteen_weeks_of_nightly_and_weekly_runs_against_s3(tmp_path, monkeypatch):
    """At the end: exactly the last 7 dailies of each database and 12 archives; every archive restores every
    database it holds; every deleted daily was held by an archive that verified; Dagster agrees."""
    monkeypatch.setenv("PATINA_TEST_KEY", "testing")
    monkeypatch.setenv("PATINA_TEST_SECRET", "testing")
    with moto_server() as endpoint:
        instance = dg.DagsterInstance.ephemeral()
        bucket = {
            "s3": {
                "bucket": create_bucket(endpoint),
                "endpoint_url": endpoint,
                "region": "us-east-1",
                "access_key_id_env": "PATINA_TEST_KEY",
                "secret_access_key_env": "PATINA_TEST_SECRET",
            }
        }
        config = write_config(tmp_path, databases(tmp_path), bucket, start_date=START.isoformat())
        pipeline = Pipeline(config, instance)
        archives = pipeline.archives
        deleted_by_week = {}
        for n in range(14):
            result = pipeline.week(week(n))
            assert result.success
            evaluations = checks(result)
            assert all(e.passed for e in evaluations.values()), {
                k: e.metadata for k, e in evaluations.items() if not e.passed
            }
            metadata = materialization(result)
            assert (metadata["action"], metadata["verified"], metadata["backups"]) == ("created", True, 14)
            assert metadata["retention/deleted_dailies"] == (14 if n >= 1 else 0)
            assert metadata["retention/deleted_archives"] == (1 if n >= 12 else 0)
            if n >= 1:
                assert metadata["retention/bytes_freed"] > 0
            deleted_by_week[week(n)] = metadata["retention/deleted_keys"]

        store = archives.store
        last_week = week_days(week(13))
        assert sorted((m.day, m.database) for m in store.list_daily()) == sorted(
            (d, db) for d in last_week for db in NAMES
        )
        kept_weeks = [week(n) for n in range(2, 14)]
        assert [m.week for m in archives.list()] == kept_weeks
        assert {info.key.split("/")[0] for info in store.bucket.list("")} == {"daily", "weekly", "index"}
        assert len(list(store.bucket.list("weekly/"))) == 12 * 3 and len(list(store.bucket.list("daily/"))) == 28

        # Every archive restores, for real, every database it holds, as it was on that day.
        for manifest in archives.list():
            assert archives.verify(manifest).ok
            extracted = archives.extract(manifest, tmp_path / "restore" / manifest.week)
            assert set(extracted) == {(d, db) for d in week_days(manifest.week) for db in NAMES}
            for (day, database), sql in extracted.items():
                assert day_of_restored(sql, tmp_path / "restored" / f"{database}-{day}.sqlite") == day

        # Nothing unverified was deleted: every deletion names the archive holding it, and each such archive
        # that is still kept is the very archive (same key) that was verified when the daily went.
        for database, key in DUMP_KEYS.items():
            marks = deletion_marks(instance, key)
            assert len(marks) == 13 * 7
            for mark in marks:
                day = mark.partition_key
                archive_key = mark.asset_observation.metadata["archive"].value
                kept = archives.get_manifest(
                    dt.date.fromisoformat(day) - dt.timedelta(days=(dt.date.fromisoformat(day).weekday() + 1) % 7)
                )
                if kept is not None:
                    assert kept.key == archive_key and kept.index.member(day, database) is not None
            # Dagster's records now offer only what exists: the last week's dailies.
            assert recorded_partitions(instance, key) == set(last_week)
        assert recorded_partitions(instance, ARCHIVE_KEY) == set(kept_weeks)


# -- the week's troubles ---------------------------------------------------------------------------


def local_pipeline(tmp_path, instance, **kwargs):
    config = write_config(tmp_path, databases(tmp_path), start_date=START.isoformat())
    return Pipeline(config, instance, **kwargs)


def test_a_missing_day_warns_and_does_not_fail_the_week(tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        pipeline = local_pipeline(tmp_path, instance)
        scout = pipeline.config.database("scout-db").sqlite_path
        days = week_days(week(0))
        for day in days:
            if day == days[2]:  # scout-db's file is away for a night: its dump fails
                shutil.move(scout, scout.with_suffix(".away"))
                pipeline.night(day, expect_success=False)
                shutil.move(scout.with_suffix(".away"), scout)
            else:
                pipeline.night(day)
        result = pipeline.week(week(0), nights=False)
        assert result.success
        metadata = materialization(result)
        assert metadata["missing_days"] == {"scout-db": [days[2]]} and metadata["backups"] == 13
        complete = checks(result)[WEEK_COMPLETE_CHECK]
        assert not complete.passed and complete.severity == dg.AssetCheckSeverity.WARN
        assert complete.metadata["missing_days"].value == {"scout-db": [days[2]]}
        assert checks(result)[ARCHIVE_VERIFIED_CHECK].passed


def test_an_archive_that_fails_verification_blocks_the_deletion_of_its_dailies(tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        pipeline = local_pipeline(tmp_path, instance)
        assert pipeline.week(week(0)).success
        archives = pipeline.archives
        first = archives.get_manifest(week(0))
        rewrite_archive(archives, first, flip_sql(first.index.member(week_days(week(0))[4], "groveauth").path))
        result = pipeline.week(week(1))
        assert result.success  # the new week is archived; the old week's dailies stay
        metadata = materialization(result)
        assert metadata["retention/deleted_dailies"] == 0 and metadata["verified"]
        retention = checks(result)[RETENTION_CHECK]
        assert not retention.passed and retention.severity == dg.AssetCheckSeverity.ERROR
        assert week(0) in retention.metadata["archives_failing_verification"].value
        assert all("failed verification" in k["reason"] for k in metadata["retention/kept"])
        assert {(m.day, m.database) for m in archives.store.list_daily()} == {
            (d, db) for w in (week(0), week(1)) for d in week_days(w) for db in NAMES
        }
        assert all(deletion_marks(instance, key) == [] for key in DUMP_KEYS.values())
        # The reconciliation run with it sees the damaged archive as corrupt.
        reconciliation = checks(result)[RECONCILIATION_CHECK]
        assert not reconciliation.passed and reconciliation.severity == dg.AssetCheckSeverity.ERROR
        assert [f["key"] for f in reconciliation.metadata["corrupt"].value] == [first.key]


def test_a_dry_run_shows_what_retention_would_delete_and_deletes_nothing(tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        pipeline = local_pipeline(tmp_path, instance)
        assert pipeline.week(week(0)).success
        for day in week_days(week(1)):
            pipeline.night(day)
        bucket = pipeline.archives.bucket
        dailies_before = {info.key for info in bucket.list("daily/")}
        result = pipeline.week(week(1), nights=False, dry_run=True)
        assert result.success
        metadata = materialization(result)
        assert metadata["retention/dry_run"] is True and "retention/deleted_dailies" not in metadata
        planned = metadata["retention/planned"].records
        assert len(planned) == 14 and {r.data["what"] for r in planned} == {
            f"{db} {d}" for d in week_days(week(0)) for db in NAMES
        }
        assert metadata["retention/planned_bytes"] == sum(r.data["bytes"] for r in planned) > 0
        assert {info.key for info in bucket.list("daily/")} == dailies_before
        assert all(deletion_marks(instance, key) == [] for key in DUMP_KEYS.values())
        # The same week for real deletes exactly what the dry run showed.
        real = materialization(pipeline.week(week(1), nights=False))
        assert sorted(real["retention/deleted_keys"]) == sorted(k for r in planned for k in r.data["keys"].split(", "))


def reconcile_only(pipeline):
    """A job with just the reconciliation check, as "Execute check" in the UI runs it."""
    job = dg.define_asset_job(
        "reconcile_only", selection=dg.AssetSelection.checks(dg.AssetCheckKey(ARCHIVE_KEY, RECONCILIATION_CHECK))
    )
    defs = dg.Definitions.merge(pipeline.defs, dg.Definitions(jobs=[job]))
    result = defs.resolve_job_def("reconcile_only").execute_in_process(instance=pipeline.instance, run_config=QUIET)
    return checks(result)[RECONCILIATION_CHECK]


def test_reconciliation_finds_each_kind_of_drift_in_the_bucket(tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        pipeline = local_pipeline(tmp_path, instance)
        assert pipeline.week(week(0)).success
        assert pipeline.week(week(1)).success
        clean = reconcile_only(pipeline)
        assert clean.passed, clean.metadata
        assert clean.metadata["recorded_dailies"].value == 14 and clean.metadata["recorded_archives"].value == 2

        store, bucket = pipeline.archives.store, pipeline.archives.bucket
        days = week_days(week(1))
        behind_its_back = store.get_manifest(days[0], "groveauth")
        bucket.delete(behind_its_back.key)  # an object deleted behind its back
        bucket.put_bytes("daily/2026-01-12/README.txt", b"not a backup")  # a stray object
        corrupted = store.get_manifest(days[3], "scout-db")
        bucket.put_bytes(corrupted.key, bytes(reversed(bucket.get_bytes(corrupted.key))))  # same size, wrong bytes
        half = f"daily/{days[5]}/scout-db.{new_generation()}.sql.zst"
        bucket.put_bytes(half, b"the first part of a dump")  # a dump without manifest

        drift = reconcile_only(pipeline)
        assert not drift.passed and drift.severity == dg.AssetCheckSeverity.ERROR
        counts = {k: drift.metadata[f"{k}_count"].value for k in ("missing", "corrupt", "unknown", "orphans")}
        assert counts == {"missing": 1, "corrupt": 1, "unknown": 1, "orphans": 1}
        keys = {k: [f["key"] for f in drift.metadata[k].value] for k in ("missing", "corrupt", "unknown", "orphans")}
        assert keys == {
            "missing": [daily_manifest_key(days[0], "groveauth")],
            "corrupt": [corrupted.key],
            "unknown": ["daily/2026-01-12/README.txt"],
            "orphans": [half],
        }
        assert drift.description == "1 missing, 1 corrupt, 1 unknown, 1 orphans"

        # Only unknown objects left: a warning, not an error.
        store.delete_daily(days[0], "groveauth")
        store.delete_daily(days[3], "scout-db")
        bucket.delete(half)
        for day in (days[0], days[3]):
            instance.report_runless_asset_event(
                dg.AssetObservation(
                    asset_key=DUMP_KEYS["groveauth" if day == days[0] else "scout-db"],
                    partition=day,
                    metadata={RETENTION_MARK: DELETED},
                )
            )
        warned = reconcile_only(pipeline)
        assert not warned.passed and warned.severity == dg.AssetCheckSeverity.WARN
        assert recorded_backups(instance, DUMP_KEYS).dailies == frozenset((d, db) for d in days for db in NAMES) - {
            (days[0], "groveauth"),
            (days[3], "scout-db"),
        }


def test_the_archive_waits_for_a_nightly_run_of_its_week_still_going(tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        pipeline = local_pipeline(tmp_path, instance, dump_checks=True)  # the real nightly job, checks and all
        days = week_days(week(0))
        for day in days[:-1]:
            pipeline.night(day)
        # Saturday's nightly run has started and not finished (at 04:00 on Sunday, after an hour).
        still_running = instance.create_run_for_job(
            pipeline.nightly, tags={"dagster/partition": days[-1]}, status=dg.DagsterRunStatus.STARTED
        )
        result = pipeline.week(week(0), nights=False, nightly_wait_retries=0)
        assert not result.success
        failure = result.get_step_failure_events()[0].step_failure_data.error.message
        assert still_running.run_id[:8] in failure and days[-1] in failure and "re-run this week" in failure
        assert pipeline.archives.list() == []
        # Once it is over, the week is archived whole.
        instance.report_run_failed(still_running)
        pipeline.night(days[-1])
        done = pipeline.week(week(0), nights=False, nightly_wait_retries=0)
        assert done.success and materialization(done)["backups"] == 14


def test_a_week_without_any_backup_fails_and_says_what_to_do(tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        pipeline = local_pipeline(tmp_path, instance)
        result = pipeline.week(week(0), nights=False)
        assert not result.success
        message = result.get_step_failure_events()[0].step_failure_data.error.message
        assert f"week {week(0)} has no daily backups" in message and "run the nightly job" in message
        assert list(pipeline.archives.bucket.list("")) == []
