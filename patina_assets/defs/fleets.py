"""Fleets in Dagster: one asset per fleet, partitioned by day x tenant, so 5,000 tenants are 5,000
partitions of one asset, not 20,000 nodes of the graph.

Per fleet (`databases_from:` in patina.yaml; the plain logic is `patina_assets.fleets`):

* the asset `fleets/<fleet>`: `MultiPartitionsDefinition` of the day (as the dumps') and the tenant (a
  `DynamicPartitionsDefinition`). One materialization backs up one tenant for one day with the same
  `back_up` as a configured database, under the tenant's database name, and evaluates the dump checks
  in the same step (`check_specs`): restore_verification (ERROR, blocking), size_anomaly, schema_drift,
  point_in_time and captured_on_time, per partition;
* the sensor `fleet_<fleet>_discovery`: lists the account (hourly; a few requests of the token's shared
  budget), stores the roster in the bucket, adds new tenants as partitions and says which vanished (their
  partitions and backups are kept: a tenant deleted by mistake is still restorable);
* the job `fleet_<fleet>_nightly` (in-process executor: each run is its own process already, and a
  tenant's dump is one step) and the schedule `fleet_<fleet>_nightly_schedule`, at 03:00 UTC as the
  nightly dumps, asking for yesterday's partition of every tenant in the roster. Runs share the
  `d1_export` pool with the nightly dumps, and every request the token's API budget.
"""

# No `from __future__ import annotations` here: Dagster reads the `context` annotations.
import datetime as dt
import os
from dataclasses import replace

import dagster as dg

from ..backup import Cloudflare
from ..config import FleetConfig, PatinaConfig
from ..engine import PatinaError
from ..fleets import FleetError, Roster, Tenant, discover, load_roster
from ..storage import BackupStore, Manifest
from ..verify import (
    HISTORY_WINDOW,
    SIZE_TOO_SMALL,
    detect_schema_drift,
    judge_size,
    previous_backups,
    verify_restore,
)
from .checks import (
    CAPTURED_ON_TIME,
    DUMP_CHECK_NAMES,
    ERROR,
    POINT_IN_TIME,
    RESTORE_VERIFICATION,
    SCHEMA_DRIFT,
    SIZE_ANOMALY,
    WARN,
    drift_metadata,
    point_in_time_summary,
    record_verdict,
    restore_metadata,
    size_metadata,
)
from .dumps import EXPORT_POOL, back_up_in_dagster, daily_partitions, dump_metadata, late_summary, retry_policy
from .resources import BucketResource, CloudflareResource

FLEETS_GROUP = "fleets"
DAY, DATABASE = "day", "database"  # the two dimensions of a fleet's partitions
DISCOVERY_INTERVAL_SECONDS = 3600
# A sensor tick has about a minute: the discovery waits this long at most for the API budget or a 429, and
# otherwise tries again at the next tick (the night's dumps may hold the budget for a while).
DISCOVERY_WAIT_SECONDS = 20.0


def fleet_asset_key(fleet: FleetConfig) -> dg.AssetKey:
    return dg.AssetKey(["fleets", fleet.asset_name])


def tenant_partitions_name(fleet: FleetConfig) -> str:
    return f"fleet_{fleet.asset_name}_tenants"


def fleet_partitions(fleet: FleetConfig, config: PatinaConfig) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {DAY: daily_partitions(config), DATABASE: dg.DynamicPartitionsDefinition(name=tenant_partitions_name(fleet))}
    )


def fleet_job_name(fleet: FleetConfig) -> str:
    return f"fleet_{fleet.asset_name}_nightly"


def tenant_partition_key(day: str, tenant: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({DAY: day, DATABASE: tenant})


class _FleetCloudflare:
    """The `CloudflareResource`, with the fleet's own token when it names one (`api_token_env`), or when
    the configuration has no D1 database of its own (the resource then carries no token)."""

    def __init__(self, resource: CloudflareResource, fleet: FleetConfig, config: PatinaConfig) -> None:
        self._resource, self._fleet, self._config = resource, fleet, config

    def credentials(self) -> Cloudflare:
        credentials = self._resource.credentials()
        if self._fleet.api_token_env or not credentials.token:
            token = os.environ.get(self._fleet.token_env(self._config.cloudflare))
            credentials = replace(credentials, token=token or None)
        return credentials


def build_fleet_asset(fleet: FleetConfig, config: PatinaConfig) -> dg.AssetsDefinition:
    key = fleet_asset_key(fleet)
    check_specs = [
        dg.AssetCheckSpec(name, asset=key, blocking=name == RESTORE_VERIFICATION, description=_CHECKS[name])
        for name in DUMP_CHECK_NAMES
    ]

    @dg.asset(
        key=key,
        description=(
            f"Nightly SQL dumps of fleet {fleet.name}"
            + (f" ({fleet.description})" if fleet.description else "")
            + f": every D1 database of account {fleet.account_id} named like {fleet.name_pattern!r}, one partition "
            "per day and tenant. Each tenant's backup is stored as daily/<day>/<tenant>.<generation>."
            f"{config.dump.format} with its manifest, as a configured database's; its checks run in the same step."
        ),
        group_name=FLEETS_GROUP,
        partitions_def=fleet_partitions(fleet, config),
        pool=EXPORT_POOL,
        retry_policy=retry_policy(config.dump),
        kinds={"d1", "sql"},
        tags={"priority": fleet.priority},
        check_specs=check_specs,
        metadata={"fleet": fleet.name, "account": fleet.account_id, "name_pattern": fleet.name_pattern},
    )
    def fleet_dump(
        context: dg.AssetExecutionContext, bucket: BucketResource, cloudflare: CloudflareResource
    ) -> dg.MaterializeResult:
        keys = context.partition_key.keys_by_dimension
        day, name = keys[DAY], keys[DATABASE]
        store = bucket.store()
        try:
            tenant = load_roster(store, fleet.name).tenant(name)
        except FleetError as e:
            raise dg.Failure(description=str(e), allow_retries=False) from e
        manifest, result = back_up_in_dagster(
            context, tenant.database(fleet), day, store, _FleetCloudflare(cloudflare, fleet, config), config
        )
        metadata = {
            **dump_metadata(manifest, result, store.bucket.uri(manifest.key)),
            "tenant": tenant.name,
            "d1_name": tenant.d1_name,
            "database_id": tenant.uuid,
        }
        return dg.MaterializeResult(metadata=metadata, check_results=tenant_checks(context, store, manifest, config))

    return fleet_dump


_CHECKS = {
    RESTORE_VERIFICATION: "The tenant's stored dump restores into scratch SQLite with every table's rows and digest "
    "as recorded (ERROR, blocking: that night has no usable backup of the tenant).",
    SIZE_ANOMALY: "The tenant's SQL size against the average of its last backups (ERROR when much smaller).",
    SCHEMA_DRIFT: "The tenant's schema changed since its previous backup (WARN).",
    POINT_IN_TIME: "The tenant's backup is one point in time (WARN when written during every attempt).",
    CAPTURED_ON_TIME: "The tenant's data was read within a day of the day it is filed under (WARN).",
}


def tenant_checks(
    context: dg.AssetExecutionContext, store: BackupStore, manifest: Manifest, config: PatinaConfig
) -> list[dg.AssetCheckResult]:
    """The dump checks of one tenant's backup, with the same verdicts and metadata as `defs/checks.py`'s."""
    outcome = verify_restore(store, manifest)
    (context.log.info if outcome.passed else context.log.error)(outcome.summary())
    restored = restore_metadata(outcome, store.bucket.uri(manifest.key))
    restored["recorded"] = record_verdict(context, store, manifest, outcome, config)
    history = previous_backups(store, manifest, limit=HISTORY_WINDOW)
    size = judge_size(
        manifest,
        history,
        decrease_ratio=config.alerts.size_decrease_ratio,
        increase_ratio=config.alerts.size_increase_ratio,
    )
    drift = detect_schema_drift(store, manifest, history[-1] if history else None)
    moment = {"database": manifest.database, "day": manifest.day}
    return [
        dg.AssetCheckResult(
            check_name=RESTORE_VERIFICATION,
            passed=outcome.passed,
            severity=ERROR,
            description=outcome.summary(),
            metadata=restored,
        ),
        dg.AssetCheckResult(
            check_name=SIZE_ANOMALY,
            passed=not size.anomalous,
            severity=ERROR if size.verdict == SIZE_TOO_SMALL else WARN,
            description=size.summary(),
            metadata=size_metadata(size),
        ),
        dg.AssetCheckResult(
            check_name=SCHEMA_DRIFT,
            passed=not drift.changed,
            severity=WARN,
            description=drift.summary(),
            metadata=drift_metadata(drift),
        ),
        dg.AssetCheckResult(
            check_name=POINT_IN_TIME,
            passed=manifest.point_in_time,
            severity=WARN,
            description=point_in_time_summary(manifest),
            metadata={**moment, "verdict": "point_in_time" if manifest.point_in_time else "not_point_in_time"},
        ),
        dg.AssetCheckResult(
            check_name=CAPTURED_ON_TIME,
            passed=not manifest.captured_late,
            severity=WARN,
            description=late_summary(manifest),
            metadata={**moment, "verdict": "captured_late" if manifest.captured_late else "on_time"},
        ),
    ]


def sync_tenant_partitions(
    instance: dg.DagsterInstance, fleet: FleetConfig, roster: Roster
) -> tuple[list[str], list[str]]:
    """(added, vanished): the roster's tenants that were not partitions yet, and the partitions whose tenant
    is gone from the account. Vanished partitions are kept (their materializations and backups stay)."""
    known = set(instance.get_dynamic_partitions(tenant_partitions_name(fleet)))
    added = [name for name in roster.names if name not in known]
    vanished = sorted(known - set(roster.names))
    return added, vanished


def build_fleet_discovery_sensor(fleet: FleetConfig, config: PatinaConfig) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"fleet_{fleet.asset_name}_discovery",
        minimum_interval_seconds=DISCOVERY_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Lists account {fleet.account_id}'s D1 databases named like {fleet.name_pattern!r} (every hour, through "
            f"the token's API budget), stores fleet {fleet.name}'s roster in the bucket, adds new tenants as "
            "partitions and reports the tenants that vanished (their partitions and backups are kept)."
        ),
    )
    def fleet_discovery(
        context: dg.SensorEvaluationContext, bucket: BucketResource, cloudflare: CloudflareResource
    ) -> dg.SensorResult:
        try:
            credentials = _FleetCloudflare(cloudflare, fleet, config).credentials()
            roster = discover(fleet, config, bucket.store(), credentials, wait_seconds=DISCOVERY_WAIT_SECONDS)
        except PatinaError as e:
            return dg.SensorResult(skip_reason=f"fleet {fleet.name}: discovery failed, the roster is unchanged: {e}")
        added, vanished = sync_tenant_partitions(context.instance, fleet, roster)
        message = (
            f"fleet {fleet.name}: {len(roster.tenants)} tenants ({len(added)} new, {len(vanished)} vanished) "
            f"from {roster.listed} databases listed in {roster.requests} requests, {roster.seconds:.1f}s"
        )
        context.log.info(message)
        if vanished:
            context.log.warning(
                f"fleet {fleet.name}: no longer in the account, backups kept: {', '.join(vanished[:50])}"
                + (" ..." if len(vanished) > 50 else "")
            )
        for d1_name, why in roster.refused.items():
            context.log.warning(f"fleet {fleet.name}: D1 database {d1_name!r} is not backed up: {why}")
        requests = [dg.AddDynamicPartitionsRequest(tenant_partitions_name(fleet), added)] if added else []
        return dg.SensorResult(dynamic_partitions_requests=requests, skip_reason=None if added else message)

    return fleet_discovery


def build_fleet_job(fleet: FleetConfig, config: PatinaConfig) -> "dg.UnresolvedAssetJobDefinition":
    return dg.define_asset_job(
        fleet_job_name(fleet),
        selection=dg.AssetSelection.assets(fleet_asset_key(fleet)),
        executor_def=dg.in_process_executor,
        description=f"One tenant of fleet {fleet.name} for one day: dump, store, check.",
    )


def nightly_tenant_requests(fleet: FleetConfig, tenants: tuple[Tenant, ...], known: set[str], day: str) -> list:
    """A run for each tenant of the roster that is a partition already (a tenant found after the last sync
    waits for the next one)."""
    return [
        dg.RunRequest(
            run_key=f"{fleet.name}|{day}|{tenant.name}",
            partition_key=tenant_partition_key(day, tenant.name),
            tags={"patina/fleet": fleet.name, "patina/tenant": tenant.name},
        )
        for tenant in tenants
        if tenant.name in known
    ]


def build_fleet_schedule(fleet: FleetConfig, job: "dg.UnresolvedAssetJobDefinition") -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"fleet_{fleet.asset_name}_nightly_schedule",
        job=job,
        cron_schedule="0 3 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"At 03:00 UTC, yesterday's backup of every tenant of fleet {fleet.name} in its roster.",
    )
    def fleet_nightly(context: dg.ScheduleEvaluationContext, bucket: BucketResource):
        day = (context.scheduled_execution_time.astimezone(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
        try:
            roster = load_roster(bucket.store(), fleet.name)
        except FleetError as e:
            return dg.SkipReason(str(e))
        known = set(context.instance.get_dynamic_partitions(tenant_partitions_name(fleet)))
        return nightly_tenant_requests(fleet, roster.tenants, known, day) or dg.SkipReason(
            f"fleet {fleet.name}: no tenant is a partition yet (the discovery sensor adds them)"
        )

    return fleet_nightly


def build_fleet_definitions(config: PatinaConfig) -> dg.Definitions:
    """Everything Dagster loads for the configuration's fleets (nothing when it has none)."""
    assets, jobs, schedules, sensors = [], [], [], []
    for fleet in config.fleets:
        job = build_fleet_job(fleet, config)
        assets.append(build_fleet_asset(fleet, config))
        jobs.append(job)
        schedules.append(build_fleet_schedule(fleet, job))
        sensors.append(build_fleet_discovery_sensor(fleet, config))
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules, sensors=sensors)
