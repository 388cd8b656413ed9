"""A fleet's nightly job (one tenant, one day per run) and its 03:00 UTC schedule."""

# No `from __future__ import annotations` here: Dagster reads the `context` annotations.
import datetime as dt

import dagster as dg

from ...config import FleetConfig, PatinaConfig
from ...fleets import FleetError, Tenant, load_roster
from ..resources import BucketResource
from .assets import fleet_asset_key, fleet_job_name, tenant_partition_key, tenant_partitions_name


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
