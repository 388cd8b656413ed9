"""A fleet in Dagster: one asset partitioned by day x tenant, its discovery sensor keeping the tenant
partitions in step with the account, the nightly schedule asking for every tenant, and each tenant's
partition dumped, checked, listed and restorable, in-process against the loopback D1 server."""

import datetime as dt
import json

import dagster as dg
import pytest
from support.compare import assert_same_database
from support.configs import small_database, write_config
from support.d1_server import D1Server

from patina_assets.backup import open_store
from patina_assets.cli import main
from patina_assets.defs import build_definitions
from patina_assets.defs.alerts.sensors import Alerting, read_run
from patina_assets.defs.dumps.checks import DUMP_CHECK_NAMES
from patina_assets.defs.fleets import (
    fleet_asset_key,
    fleet_job_name,
    tenant_partition_key,
    tenant_partitions_name,
)
from patina_assets.defs.resources import resources
from patina_assets.fleets import load_roster
from patina_assets.storage.local import LocalBucket

TODAY = dt.datetime.now(dt.UTC).date()
DAY = (TODAY - dt.timedelta(days=1)).isoformat()  # last night: its backup is captured on time
ACCOUNT = "0123456789abcdef0123456789abcdef"
TENANTS = 12  # bench/bench_fleet.py runs 1,000


def tenant_id(i: int) -> str:
    return f"7e7e7e7e-0000-4000-8000-{i:012x}"


@pytest.fixture
def fleet(tmp_path, monkeypatch):
    sources = tmp_path / "d1"
    sources.mkdir()
    databases = {tenant_id(i): small_database(sources / f"tenant-{i:03d}.sqlite", 3 + i % 4) for i in range(TENANTS)}
    databases[tenant_id(999)] = small_database(sources / "internal-billing.sqlite", 3)
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "good-token")
    with D1Server(databases, account_id=ACCOUNT) as server:
        config = write_config(
            tmp_path,
            [],
            databases_from=[{"name": "tenants", "account": ACCOUNT, "name_pattern": "tenant-*"}],
            cloudflare={"api_url": server.base_url},
        )
        defs = build_definitions(config)
        yield config, defs, server, databases


def discover(defs, config, instance):
    sensor = defs.get_sensor_def("fleet_tenants_discovery")
    with dg.build_sensor_context(instance=instance, resources=resources(config)) as context:
        result = sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def test_one_asset_for_the_whole_fleet_and_every_tenant_backed_up(fleet, tmp_path, capsys, monkeypatch):
    config, defs, server, databases = fleet
    dg.Definitions.validate_loadable(defs)
    specs = [s for s in defs.resolve_all_asset_specs() if s.group_name == "fleets"]
    assert [s.key for s in specs] == [fleet_asset_key(config.fleets[0])]  # one node, whatever the tenants
    with dg.instance_for_test() as instance:
        result = discover(defs, config, instance)
        tenants = sorted(instance.get_dynamic_partitions(tenant_partitions_name(config.fleets[0])))
        assert tenants == [f"tenant-{i:03d}" for i in range(TENANTS)]  # internal-billing does not match
        assert discover(defs, config, instance).dynamic_partitions_requests == []  # nothing new the second time

        schedule = defs.get_schedule_def("fleet_tenants_nightly_schedule")
        tick = dt.datetime.combine(TODAY, dt.time(3), tzinfo=dt.UTC)
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=tick,
            resources=resources(config),
            repository_def=defs.get_repository_def(),
        ) as context:
            requests = schedule.evaluate_tick(context).run_requests
        assert len(requests) == TENANTS
        assert {r.partition_key for r in requests} == {tenant_partition_key(DAY, t) for t in tenants}

        job = defs.resolve_job_def(fleet_job_name(config.fleets[0]))
        for request in requests:
            run = job.execute_in_process(partition_key=request.partition_key, instance=instance, tags=request.tags)
            assert run.success
            checks = run.get_asset_check_evaluations()
            assert sorted(c.check_name for c in checks) == sorted(DUMP_CHECK_NAMES)
            failed = [c for c in checks if not c.passed and c.check_name != "size_anomaly"]
            assert failed == [], [c.description for c in failed]
            # A tenant's checks are a configured database's evaluations (dumps/checks.py), metadata and all.
            by_name = {c.check_name: c.metadata for c in checks}
            assert {"consistency", "time_travel_bookmark", "end_bookmark"} <= set(by_name["point_in_time"])
            assert {"captured_at", "captured_late"} <= set(by_name["captured_on_time"])
        assert result.dynamic_partitions_requests

    store = open_store(config)
    stored = {m.database: m for m in store.list_daily(day=DAY)}
    assert sorted(stored) == tenants  # same key layout as a configured database: daily/<day>/<tenant>...
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    capsys.readouterr()
    for i in (0, 7, TENANTS - 1):
        name = f"tenant-{i:03d}"
        manifest = stored[name]
        assert manifest.source == f"d1://{ACCOUNT}/{tenant_id(i)}" and manifest.point_in_time
        # `patina list` and `patina restore` know the tenant by its name, as they know a configured database
        assert main(["--config", str(config.source_path), "list", "--db", name, "--json"]) == 0
        out = capsys.readouterr().out
        [listed] = json.loads(out[out.index("{") :])["backups"]
        assert listed["database"] == name and listed["date"] == DAY
        restored = tmp_path / f"restored-{i}.sqlite"
        assert main(["--config", str(config.source_path), "restore", DAY, name, "--to", str(restored)]) == 0
        capsys.readouterr()
        assert_same_database(databases[tenant_id(i)], restored)


def test_a_new_tenant_is_added_and_a_vanished_one_keeps_its_partition_and_backups(fleet, tmp_path):
    config, defs, server, _ = fleet
    fleet_config = config.fleets[0]
    with dg.instance_for_test() as instance:
        discover(defs, config, instance)
        job = defs.resolve_job_def(fleet_job_name(fleet_config))
        assert job.execute_in_process(partition_key=tenant_partition_key(DAY, "tenant-004"), instance=instance).success

        server.remove_database(tenant_id(4))
        server.add_database(tenant_id(500), small_database(tmp_path / "d1" / "tenant-new.sqlite", 2))
        result = discover(defs, config, instance)
        assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [["tenant-new"]]
        partitions = set(instance.get_dynamic_partitions(tenant_partitions_name(fleet_config)))
        assert {"tenant-new", "tenant-004"} <= partitions  # the vanished tenant's partition stays

        roster = load_roster(open_store(config), "tenants")
        assert [t.name for t in roster.vanished] == ["tenant-004"] and "tenant-004" not in roster.names
        assert "tenant-new" in roster.names
        # Its backup is kept, and a run for it refuses with the reason rather than dumping something else.
        assert open_store(config).get_manifest(DAY, "tenant-004") is not None
        gone = job.execute_in_process(
            partition_key=tenant_partition_key((TODAY - dt.timedelta(days=2)).isoformat(), "tenant-004"),
            instance=instance,
            raise_on_error=False,
        )
        assert not gone.success
        [failure] = [e for e in gone.all_events if e.event_type_value == "STEP_FAILURE"]
        assert "no longer in the account" in str(failure.event_specific_data.error)

        # The alert names the tenant (the partition's database), and only its place when names are redacted.
        record = instance.get_run_records(dg.RunsFilter(run_ids=[gone.run_id]))[0]
        [(_, summary)] = Alerting(config).run_alerts(instance, read_run(instance, record))
        [outcome] = summary.outcomes
        assert outcome.name == "tenant-004" and not outcome.succeeded and "no longer in the account" in outcome.error
        assert outcome.label == "a tenant of fleet tenants"


def test_a_failed_discovery_skips_the_tick_and_keeps_the_partitions(fleet, monkeypatch):
    config, defs, _, _ = fleet
    with dg.instance_for_test() as instance:
        discover(defs, config, instance)
        monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "revoked-token")
        result = discover(defs, config, instance)
        assert result.dynamic_partitions_requests == []
        assert "discovery failed, the roster is unchanged" in result.skip_reason.skip_message
        assert "revoked-token" not in result.skip_reason.skip_message
        assert len(instance.get_dynamic_partitions(tenant_partitions_name(config.fleets[0]))) == TENANTS


def test_a_tenants_run_lists_only_its_own_keys_not_the_fleets(fleet, monkeypatch):
    """Each tenant's run, its checks' history included, reads its own index and lists only its own keys of the
    day: a fleet's night does not list all of daily/ once per tenant (its first night included: the discovery
    starts an empty index for each new tenant that has no backup)."""
    config, defs, _, _ = fleet
    listed: list[str] = []
    real_list = LocalBucket.list

    def counting(self, prefix=""):
        listed.append(prefix)
        return real_list(self, prefix)

    with dg.instance_for_test() as instance:
        discover(defs, config, instance)
        monkeypatch.setattr(LocalBucket, "list", counting)
        job = defs.resolve_job_def(fleet_job_name(config.fleets[0]))
        days = [(TODAY - dt.timedelta(days=back)).isoformat() for back in (3, 2, 1)]
        for day in days:
            for tenant in ("tenant-000", "tenant-001", "tenant-010"):
                listed.clear()
                run = job.execute_in_process(partition_key=tenant_partition_key(day, tenant), instance=instance)
                assert run.success
                assert listed == [f"daily/{day}/{tenant}."], (day, tenant, listed)
        size = [c for c in run.get_asset_check_evaluations() if c.check_name == "size_anomaly"]
        assert "(2 so far)" in size[0].description  # the history was read, from the index
