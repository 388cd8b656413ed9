"""Alerts about a fleet are about its tenants: a tenant that fails three nights in a row escalates under its own
name while the other tenants of the same asset succeed, and a tenant without a good backup for days is stale on
its own. Real runs of the fleet's job on a test instance against the loopback D1 server, the sensors ticked the
way the daemon ticks them, delivering to a webhook server on loopback."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from support.backups import store_backup_captured_at
from support.configs import small_database, write_config
from support.d1_server import D1Server

from patina_assets.backup import open_store
from patina_assets.defs import build_definitions
from patina_assets.defs.alerts.sensors import RUN_ALERTS_SENSOR, build_alert_sensors
from patina_assets.defs.alerts.watch import FRESHNESS_SENSOR, build_freshness_sensor
from patina_assets.defs.fleets import fleet_job_name, tenant_partition_key
from patina_assets.fleets import discover, fleet_cloudflare
from patina_assets.notifications import DeliveryPolicy

FAST = DeliveryPolicy(timeout_seconds=2.0, attempts=1, backoff_seconds=0.0)
ACCOUNT = "0123456789abcdef0123456789abcdef"
TODAY = dt.datetime.now(dt.UTC).date()
# Nights of the last two weeks (captured late, which only the check alerts mind).
DAYS = [(TODAY - dt.timedelta(days=back)).isoformat() for back in range(14, 0, -1)]


def tenant_id(i: int) -> str:
    return f"5a5a5a5a-0000-4000-8000-{i:012x}"


@pytest.fixture
def fleet(tmp_path, monkeypatch):
    """Three tenants of one fleet behind the loopback D1 server, discovered (roster and partitions)."""
    sources = tmp_path / "d1"
    sources.mkdir()
    paths = {tenant_id(i): small_database(sources / f"tenant-{i}.sqlite", 5 + i) for i in range(3)}
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
