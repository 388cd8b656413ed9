"""Alerts about a fleet are about its tenants: a tenant that fails three nights in a row escalates under its own
name while the other tenants of the same asset succeed, and a tenant without a good backup for days is stale on
its own; but tenants failing the same night with the same cause (a revoked token) are one message, read over
several ticks, held at most FLEET_HOLD_SECONDS while their night still runs. Real runs of the fleet's job on a test instance against the loopback D1 server, the sensors ticked the
way the daemon ticks them, delivering to a webhook server on loopback."""

from __future__ import annotations

import datetime as dt
import json
import time
from contextlib import contextmanager

import dagster as dg
import pytest
from support.backups import store_backup_captured_at
from support.configs import small_database, write_config
from support.d1_server import D1Server

from patina_assets.backup import open_store
from patina_assets.defs import build_definitions
from patina_assets.defs.alerts import sensors as alert_sensors
from patina_assets.defs.alerts.sensors import (
    CHECK_ALERTS_SENSOR,
    FLEET_HOLD_SECONDS,
    RUN_ALERTS_SENSOR,
    Alerting,
    build_alert_sensors,
    read_run,
)
from patina_assets.defs.alerts.watch import FRESHNESS_SENSOR, build_freshness_sensor
from patina_assets.defs.fleets import fleet_job_name, tenant_partition_key
from patina_assets.fleets import discover, fleet_cloudflare
from patina_assets.notifications import DeliveryPolicy, webhook_payload

FAST = DeliveryPolicy(timeout_seconds=2.0, attempts=1, backoff_seconds=0.0)
ACCOUNT = "0123456789abcdef0123456789abcdef"
TODAY = dt.datetime.now(dt.UTC).date()
# Nights of the last two weeks (captured late, which only the check alerts mind).
DAYS = [(TODAY - dt.timedelta(days=back)).isoformat() for back in range(14, 0, -1)]


def tenant_id(i: int) -> str:
    return f"5a5a5a5a-0000-4000-8000-{i:012x}"


@contextmanager
def discovered_fleet(tmp_path, monkeypatch, paths):
    """The fleet `tenants` of the databases `paths` (tenant id -> SQLite file) behind the loopback D1 server,
    discovered (roster and partitions): its config, server, instance and roster."""
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "good-token")
    with D1Server(paths, account_id=ACCOUNT) as server, dg.instance_for_test() as instance:
        config = write_config(
            tmp_path,
            [],
            databases_from=[{"name": "tenants", "account": ACCOUNT, "name_pattern": "tenant-*"}],
            cloudflare={"api_url": server.base_url},
        )
        fleet = config.fleets[0]
        roster = discover(fleet, config, open_store(config), fleet_cloudflare(fleet, config))
        instance.add_dynamic_partitions("fleet_tenants_tenants", list(roster.names))
        yield config, server, instance, roster


@pytest.fixture
def fleet(tmp_path, monkeypatch):
    """Three tenants of one fleet behind the loopback D1 server, discovered (roster and partitions)."""
    sources = tmp_path / "d1"
    sources.mkdir()
    paths = {tenant_id(i): small_database(sources / f"tenant-{i}.sqlite", 5 + i) for i in range(3)}
    with discovered_fleet(tmp_path, monkeypatch, paths) as (config, server, instance, _):
        yield config, server, instance, paths


def test_a_tenant_failing_three_nights_in_a_row_escalates_by_name_whatever_the_others_do(fleet, generic):
    config, server, instance, paths = fleet
    defs = build_definitions(config)
    job = defs.resolve_job_def(fleet_job_name(config.fleets[0]))
    sensor = dg.Definitions(sensors=build_alert_sensors(config, policy=FAST)).resolve_sensor_def(RUN_ALERTS_SENSOR)
    cursor = None

    def tick():
        nonlocal cursor
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))
        cursor = result.cursor

    def night(day: str, tenant: str) -> dg.ExecuteInProcessResult:
        return job.execute_in_process(
            partition_key=tenant_partition_key(day, tenant), instance=instance, raise_on_error=False
        )

    tick()  # the sensor starts from the newest record
    assert night(DAYS[0], "tenant-0").success and night(DAYS[0], "tenant-1").success
    server.remove_database(tenant_id(0))  # tenant-0's database is gone (the roster still names it)
    runs = []
    for day in DAYS[1:4]:
        runs.append(night(day, "tenant-0"))
        assert night(day, "tenant-1").success  # another tenant of the same asset succeeds in between
        tick()
    assert not any(run.success for run in runs)

    streaks = [m for m in generic.accepted if m["type"] == "backup_failure_streak"]
    assert [(m["database"], m["consecutiveFailures"], m["jobId"]) for m in streaks] == [
        ("tenant-0", 3, runs[-1].run_id)
    ]
    assert streaks[0]["lastSuccess"]["day"] == DAYS[0]  # the day of its own last backup, not the partition pair
    failed = [m for m in generic.accepted if m["type"] == "backup_failed"]
    assert [(m["failures"][0]["database"], m["day"]) for m in failed] == [("tenant-0", day) for day in DAYS[1:4]]

    server.add_database(tenant_id(0), paths[tenant_id(0)])  # back: a good night ends the streak
    assert night(DAYS[4], "tenant-0").success
    server.remove_database(tenant_id(0))
    assert not night(DAYS[5], "tenant-0").success
    tick()
    assert len([m for m in generic.accepted if m["type"] == "backup_failure_streak"]) == 1


def test_each_tenant_of_the_roster_is_watched_for_staleness_and_a_vanished_one_is_not(fleet, generic, tmp_path):
    config, server, instance, paths = fleet
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=5)
    for i in range(3):
        store_backup_captured_at(config, f"tenant-{i}", start - dt.timedelta(hours=1), tmp_path, paths[tenant_id(i)])
    # tenant-1 keeps being backed up; tenant-2 leaves the account (its backups are kept, it is not watched).
    store_backup_captured_at(config, "tenant-1", start + dt.timedelta(days=2), tmp_path, paths[tenant_id(1)])
    server.remove_database(tenant_id(2))
    fleet = config.fleets[0]
    assert [t.name for t in discover(fleet, config, open_store(config), fleet_cloudflare(fleet, config)).vanished] == [
        "tenant-2"
    ]

    clock = {"now": start}
    sensor = build_freshness_sensor(config, policy=FAST, clock=lambda: clock["now"])
    cursor = None
    for hours in (0, 24 * 3):
        clock["now"] = start + dt.timedelta(hours=hours)
        result = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, cursor=cursor, sensor_name=FRESHNESS_SENSOR)
        )
        cursor = result.cursor
    stale = [(m["database"], m["status"]) for m in generic.accepted if m["type"] == "backup_stale"]
    assert stale == [("tenant-0", "warning")]


@pytest.fixture
def big_fleet(tmp_path, monkeypatch):
    """30 tenants of one fleet behind the loopback D1 server, discovered (roster and partitions)."""
    sources = tmp_path / "d1"
    sources.mkdir()
    paths = {tenant_id(i): small_database(sources / f"tenant-{i:02d}.sqlite", 3) for i in range(30)}
    with discovered_fleet(tmp_path, monkeypatch, paths) as (config, server, instance, roster):
        yield config, server, instance, sorted(roster.names)


class Ticks:
    """The run alert sensor ticked as the daemon ticks it, its cursor carried, on a clock the test moves."""

    def __init__(self, config, instance, name=RUN_ALERTS_SENSOR):
        self.instance = instance
        self.now = time.time()
        sensors = build_alert_sensors(config, policy=FAST, clock=lambda: self.now)
        self.sensor = dg.Definitions(sensors=sensors).resolve_sensor_def(name)
        self.cursor = None
        self.skips: list[str] = []

    def __call__(self) -> str:
        result = self.sensor.evaluate_tick(dg.build_sensor_context(instance=self.instance, cursor=self.cursor))
        self.cursor = result.cursor
        self.skips.append(result.skip_message or "")
        return self.skips[-1]


def test_a_revoked_token_failing_every_tenant_is_one_message_and_a_distinct_failure_its_own(
    big_fleet, generic, monkeypatch, caplog
):
    config, server, instance, tenants = big_fleet
    job = build_definitions(config).resolve_job_def(fleet_job_name(config.fleets[0]))
    tick = Ticks(config, instance)
    tick()  # the sensor starts from the newest record
    day = DAYS[-1]

    def night(tenant: str) -> dg.ExecuteInProcessResult:
        return job.execute_in_process(
            partition_key=tenant_partition_key(day, tenant), instance=instance, raise_on_error=False
        )

    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "revoked-token-s3cr3t")
    runs = [night(tenant) for tenant in tenants[:29]]
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "good-token")
    server.remove_database(tenant_id(29))  # tenant-29 fails its own way: its database is gone
    runs.append(night(tenants[29]))
    assert not any(run.success for run in runs)

    # Read 10 runs a page, page after page within the tick: the whole night in one tick, one message.
    assert "30 finished run(s) read" in tick()
    assert [m["type"] for m in generic.accepted] == ["fleet_backup_failed", "backup_failed"]
    grouped, alone = generic.accepted
    assert grouped["fleet"] == "tenants" and grouped["day"] == day
    assert grouped["summary"] == {"failed": 29, "tenants": 30, "notFinished": 0}
    assert grouped["tenants"] == tenants[:5] and grouped["jobId"] == runs[0].run_id
    assert grouped["cause"] == (
        f"d1://{ACCOUNT}/<database id>: the API refused the token (HTTP 401): check that CLOUDFLARE_API_TOKEN is "
        "current and has D1 read permission on this account"
    )
    assert "dagster/partition/day=" + day in grouped["seeAll"] and "patina status" in grouped["seeAll"]
    assert alone["failures"][0]["database"] == "tenant-29" and alone["jobId"] == runs[29].run_id
    assert "revoked-token-s3cr3t" not in json.dumps(generic.accepted)
    assert not [r for r in caplog.records if "gave up on alert" in r.getMessage()]  # none dropped

    tick.now += FLEET_HOLD_SECONDS * 3
    tick()
    assert len(generic.accepted) == 2  # sent once


def test_a_fleet_failure_is_held_across_ticks_at_most_the_hold_while_its_night_still_runs(fleet, generic):
    config, server, instance, paths = fleet
    defs = build_definitions(config)
    job = defs.resolve_job_def(fleet_job_name(config.fleets[0]))
    tick = Ticks(config, instance)
    tick()
    day = DAYS[-1]
    # tenant-2's run of the night is created and not started yet (its launch waits its turn).
    key = tenant_partition_key(day, "tenant-2")
    instance.create_run_for_job(
        job,
        status=dg.DagsterRunStatus.NOT_STARTED,
        tags={"dagster/partition": str(key), "dagster/partition/day": day, "dagster/partition/database": "tenant-2"},
    )
    server.remove_database(tenant_id(0))
    server.remove_database(tenant_id(1))
    first = job.execute_in_process(
        partition_key=tenant_partition_key(day, "tenant-0"), instance=instance, raise_on_error=False
    )
    assert not first.success
    assert "1 fleet tenant alert(s) held" in tick()
    tick.now += FLEET_HOLD_SECONDS / 2
    second = job.execute_in_process(
        partition_key=tenant_partition_key(day, "tenant-1"), instance=instance, raise_on_error=False
    )
    assert not second.success
    assert "2 fleet tenant alert(s) held" in tick()
    assert generic.accepted == []  # the night is not over: more tenants may fail the same way

    tick.now += FLEET_HOLD_SECONDS / 2  # the first failure has waited the longest it may
    tick()
    [grouped] = generic.accepted
    assert grouped["type"] == "fleet_backup_failed" and grouped["tenants"] == ["tenant-0", "tenant-1"]
    assert grouped["summary"] == {"failed": 2, "tenants": 3, "notFinished": 1}
    assert grouped["cause"].startswith(f"d1://{ACCOUNT}/<database id>")

    # The same cause later that night, one tenant: its own message, as a lone failure gets.
    server.remove_database(tenant_id(2))
    third = job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)
    assert not third.success
    tick()  # tenant-2's first run is still not started: held
    tick.now += FLEET_HOLD_SECONDS
    tick()
    assert [m["type"] for m in generic.accepted] == ["fleet_backup_failed", "backup_failed"]
    assert generic.accepted[1]["failures"][0]["database"] == "tenant-2"  # one tenant: its own message


def test_a_fleet_failing_three_nights_escalates_once_for_the_fleet_not_once_per_tenant(fleet, generic, monkeypatch):
    config, server, instance, paths = fleet
    job = build_definitions(config).resolve_job_def(fleet_job_name(config.fleets[0]))
    tick = Ticks(config, instance)
    tick()
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "revoked-token-s3cr3t")
    for day in DAYS[:3]:
        for tenant in ("tenant-0", "tenant-1", "tenant-2"):
            run = job.execute_in_process(
                partition_key=tenant_partition_key(day, tenant), instance=instance, raise_on_error=False
            )
            assert not run.success
        tick()
    assert [(m["type"], m["day"], m["status"], m["escalated"]) for m in generic.accepted] == [
        ("fleet_backup_failed", DAYS[0], "failure", 0),
        ("fleet_backup_failed", DAYS[1], "failure", 0),
        ("fleet_backup_failed", DAYS[2], "escalated", 3),  # the third night: each tenant's streak, counted once
    ]
    assert generic.accepted[2]["escalatedTenants"] == ["tenant-0", "tenant-1", "tenant-2"]
    assert all(m["summary"] == {"failed": 3, "tenants": 3, "notFinished": 0} for m in generic.accepted)


def test_a_check_failing_every_tenant_alike_is_one_message_a_lone_one_its_own_and_successes_one_summary(
    fleet, generic, monkeypatch, tmp_path
):
    """A D1 change shrinks every tenant's dump: size_anomaly fails for each, one message for the fleet's night
    (read one run a tick here, held over the ticks); tenant-2 grows instead, its warning is its own message,
    as it is without grouping. With notify_on_success the night's backups are one summary, and a tenant backed
    up alone later gets its own "completed" message."""
    config, server, instance, paths = fleet
    config = write_config(  # the same fleet, with success messages
        tmp_path,
        [],
        databases_from=[{"name": "tenants", "account": ACCOUNT, "name_pattern": "tenant-*"}],
        cloudflare={"api_url": server.base_url},
        alerts={"notify_on_success": True},
    )
    day = DAYS[-1]
    for i in range(3):  # three earlier nights of a bigger database: the size check's baseline
        big = small_database(tmp_path / f"baseline-{i}.sqlite", 200)
        for back in (4, 3, 2):
            captured = dt.datetime.fromisoformat(DAYS[-back]).replace(tzinfo=dt.UTC) + dt.timedelta(days=1, hours=1)
            store_backup_captured_at(config, f"tenant-{i}", captured, tmp_path, big)
        # The discovery gave each tenant an empty history index, which a backup stored outside a run does not
        # update: the check finds these backups as days its index lacks (history.unindexed).
    grown = tmp_path / "grown"
    grown.mkdir()
    server.add_database(tenant_id(2), small_database(grown / "tenant-2.sqlite", 2000))  # tenant-2: 10x bigger
    job = build_definitions(config).resolve_job_def(fleet_job_name(config.fleets[0]))
    checks, runs = Ticks(config, instance, CHECK_ALERTS_SENSOR), Ticks(config, instance)
    checks(), runs()  # the sensors start from the newest record
    nights = [
        job.execute_in_process(partition_key=tenant_partition_key(day, t), instance=instance, raise_on_error=False)
        for t in ("tenant-0", "tenant-1", "tenant-2")
    ]
    assert all(night.success for night in nights)  # size_anomaly does not block: the backups are stored

    monkeypatch.setattr(alert_sensors, "RUNS_PER_PAGE", 1)
    monkeypatch.setattr(alert_sensors, "READ_SECONDS_PER_TICK", 0.0)  # one page a tick: read over three ticks
    assert "1 fleet tenant alert(s) held" in checks()
    assert "2 fleet tenant alert(s) held" in checks()
    assert generic.accepted == []
    assert "held" not in checks()
    grouped, alone = generic.accepted
    assert grouped["type"] == "fleet_check_failed" and grouped["status"] == "error"
    assert grouped["check"] == {"name": "size_anomaly", "severity": "ERROR", "asset": "fleets/tenants"}
    assert grouped["summary"] == {"failed": 2, "tenants": 3, "notFinished": 0}
    assert grouped["tenants"] == ["tenant-0", "tenant-1"] and grouped["jobId"] == nights[0].run_id
    assert grouped["cause"].startswith("<tenant> <day>: <n> bytes of SQL is <n>% of the average")
    assert grouped["cause"].endswith("possible data loss")
    assert "fleets/tenants" in grouped["seeAll"] and f"dagster/partition/day={day}" in grouped["seeAll"]
    # tenant-2's warning: the very message the check sensor sends for a database of its own.
    record = instance.get_run_record_by_id(nights[2].run_id)
    [(_, warning)] = Alerting(config).check_alerts(instance, read_run(instance, record))
    assert alone == webhook_payload(warning) and alone["check"]["database"] == "tenant-2"
    assert alone["check"]["day"] == day  # the day alone, not the partition pair: the tenant has its own field
    checks.now += FLEET_HOLD_SECONDS * 3
    checks()
    assert len(generic.accepted) == 2  # sent once

    monkeypatch.setattr(alert_sensors, "READ_SECONDS_PER_TICK", 20.0)
    assert "3 finished run(s) read" in runs()  # three pages of one run, in one tick: one summary
    [summary] = generic.accepted[2:]
    assert summary["type"] == "fleet_backup_completed" and summary["status"] == "success"
    assert summary["summary"]["successful"] == 3 and summary["summary"]["tenants"] == 3
    assert summary["tenants"] == ["tenant-0", "tenant-1", "tenant-2"]
    again = job.execute_in_process(
        partition_key=tenant_partition_key(day, "tenant-1"), instance=instance, raise_on_error=False
    )
    runs()
    [lone] = generic.accepted[3:]
    assert lone["type"] == "backup_completed" and lone["jobId"] == again.run_id  # one tenant: its own message
