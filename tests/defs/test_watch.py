"""The watch sensors: stale backups and missed nights on an injected clock (a nightly schedule switched off
for more than 8 days, then back), and runs that stopped making progress (marked failed, slots freed, alerted).
Backups are real dumps stored through the real store; the sensors tick the way the daemon ticks them."""

from __future__ import annotations

import datetime as dt

import dagster as dg
from support.backups import store_backup_captured_at
from support.configs import small_database, write_config
from support.storage import CountingBucket

from patina_assets.backup import open_store
from patina_assets.catalog import Catalog
from patina_assets.defs import resources
from patina_assets.defs.alerts import watch as watch_sensors
from patina_assets.defs.alerts.watch import FRESHNESS_SENSOR, build_freshness_sensor
from patina_assets.defs.dumps.assets import build_dump_assets
from patina_assets.defs.dumps.jobs import NIGHTLY_JOB, nightly_job
from patina_assets.notifications import DeliveryPolicy
from patina_assets.watch import run_bounds

FAST = DeliveryPolicy(timeout_seconds=2.0, attempts=1, backoff_seconds=0.0)
UTC = dt.UTC


def two_databases(tmp_path):
    """patina.yaml with `groveauth` and `scout-db`, small SQLite sources, a local bucket."""
    sources = tmp_path / "sources"
    sources.mkdir()
    return write_config(
        tmp_path,
        [
            {"name": "groveauth", "source": str(small_database(sources / "a.sqlite", 20))},
            {"name": "scout-db", "source": str(small_database(sources / "s.sqlite", 30))},
        ],
    )


def test_a_schedule_switched_off_for_nine_days_alerts_each_level_once_and_the_recovery(tmp_path, generic):
    config = two_databases(tmp_path)
    real_now = dt.datetime.now(UTC)
    start = real_now - dt.timedelta(days=10)
    for name in config.names:  # the last nightly run before the schedule was switched off
        store_backup_captured_at(config, name, start - dt.timedelta(hours=1), tmp_path)

    clock = {"now": start}
    sensor = build_freshness_sensor(config, policy=FAST, clock=lambda: clock["now"])
    cursor = None
    with dg.instance_for_test() as instance:

        def tick():
            nonlocal cursor
            result = sensor.evaluate_tick(
                dg.build_sensor_context(instance=instance, cursor=cursor, sensor_name=FRESHNESS_SENSOR)
            )
            cursor = result.cursor
            return result

        seen = []
        for hour in range(0, 9 * 24 + 12, 3):  # nine and a half days, a tick every 3 hours: nobody backs up
            clock["now"] = start + dt.timedelta(hours=hour)
            tick()
            seen += [(hour, p["type"], p.get("status"), p.get("database")) for p in generic.accepted[len(seen) :]]

        bounds = run_bounds(config)
        first_tick = dt.datetime.combine(start.date(), dt.time(3), tzinfo=UTC)
        if first_tick < start:
            first_tick += dt.timedelta(days=1)
        missed_at = (first_tick - start).total_seconds() / 3600 + bounds.max_runtime_seconds / 3600
        assert [s[1:] for s in seen] == [
            ("nightly_missed", "error", None),
            ("backup_stale", "warning", "groveauth"),
            ("backup_stale", "warning", "scout-db"),
            ("backup_stale", "error", "groveauth"),
            ("backup_stale", "error", "scout-db"),
        ]
        hours = [s[0] for s in seen]
        assert missed_at <= hours[0] < missed_at + 3  # noticed at the first tick after the run should have ended
        assert 2 * 24 - 1 <= hours[1] == hours[2] < 2 * 24 + 3 and 8 * 24 - 1 <= hours[3] == hours[4] < 8 * 24 + 3
        missed = generic.accepted[0]
        assert (
            missed["day"] == (first_tick - dt.timedelta(days=1)).date().isoformat()
            and missed["newestBackupAt"] is not None
        )
        error = generic.accepted[3]
        assert (
            error["thresholdDays"] == 8
            and error["newestGoodBackup"]["day"] == (start - dt.timedelta(days=1, hours=1)).date().isoformat()
        )

        # The schedule is switched on again: a real nightly run stores both databases, then one more tick.
        assets = build_dump_assets(config)
        job = dg.Definitions(
            assets=assets, jobs=[nightly_job(assets, 2)], resources=resources.resources(config)
        ).resolve_job_def(NIGHTLY_JOB)
        assert job.execute_in_process(
            partition_key=(real_now - dt.timedelta(days=1)).date().isoformat(), instance=instance
        ).success
        clock["now"] = dt.datetime.now(UTC) + dt.timedelta(minutes=10)
        tick()
        tick()
        assert [(p["type"], p.get("database")) for p in generic.accepted[5:]] == [
            ("backup_stale_recovered", "groveauth"),
            ("backup_stale_recovered", "scout-db"),
            ("nightly_resumed", None),
        ]
        assert len(generic.requests) == 8  # each message once


def test_patina_status_check_tells_cron_what_no_sensor_can_see(tmp_path, capsys, monkeypatch):
    """A sensor cannot report its own daemon's death; `patina status --check` reads the bucket alone."""
    from patina_assets.cli import main

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    config = two_databases(tmp_path)
    now = dt.datetime.now(UTC)

    def check() -> tuple[int, str]:
        code = main(["--config", str(config.source_path), "status", "--check"])
        return code, capsys.readouterr().out

    code, out = check()  # no bucket yet: nothing was ever stored
    assert code == 2 and out.startswith("error: ") and "Nothing was created" in out
    open_store(config)  # the bucket, empty
    assert check() == (
        2,
        "error: groveauth has no good backup in the bucket\nerror: scout-db has no good backup in the bucket\n",
    )
    store_backup_captured_at(config, "groveauth", now - dt.timedelta(minutes=5), tmp_path)
    store_backup_captured_at(config, "scout-db", now - dt.timedelta(days=3), tmp_path)
    code, out = check()
    assert (
        code == 1
        and out.startswith("warn: scout-db's newest good backup")
        and "(alerts.stale_warn_after_days: 2)" in out
    )
    store_backup_captured_at(config, "scout-db", now - dt.timedelta(minutes=4), tmp_path)
    assert check() == (0, "ok: every database is fresh\n")
    # Ten days later nothing has run: stale, and the nights were missed (daemon dead or schedule off).
    (tmp_path / "bucket").rename(tmp_path / "fresh-bucket")
    for name in config.names:
        store_backup_captured_at(config, name, now - dt.timedelta(days=10), tmp_path)
    code, out = check()
    assert (
        code == 2
        and out.count("(alerts.stale_after_days: 8)") == 2
        and "nothing was backed up after the nightly tick" in out
    )


def test_the_freshness_watch_reads_one_index_per_database_not_every_manifest(tmp_path, generic, monkeypatch):
    # Every 10 minutes: what it reads must not grow with the days kept (nor, for a fleet, with its tenants).
    config = two_databases(tmp_path)
    now = dt.datetime.now(UTC)
    for days_ago in (3, 2, 1):
        for name in config.names:
            store_backup_captured_at(config, name, now - dt.timedelta(days=days_ago), tmp_path)
    counted: list[CountingBucket] = []

    def counting_catalog(config, env=None):
        store = open_store(config)
        counted.append(CountingBucket(store.bucket))
        return Catalog(type(store)(counted[-1]), config.retention)

    monkeypatch.setattr(watch_sensors.Catalog, "for_config", staticmethod(counting_catalog))
    sensor = build_freshness_sensor(config, policy=FAST, clock=lambda: now)
    with dg.instance_for_test() as instance:
        # The backups were stored without their indexes (a nightly run writes them): the first tick rebuilds
        # them from the listing, as `patina status` does; from then on a tick reads only the indexes.
        for _ in range(2):
            result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, sensor_name=FRESHNESS_SENSOR))
            assert "6 backup(s) read" in (result.skip_message or "")
    first, bucket = counted
    assert any(key.endswith(".manifest.json") for key in first.read)
    assert sorted(bucket.listed) == ["daily/", "index/daily/", "weekly/"]
    assert sorted(bucket.read) == ["index/daily/groveauth.json", "index/daily/scout-db.json"]
    assert not generic.accepted  # fresh backups: nothing to say
