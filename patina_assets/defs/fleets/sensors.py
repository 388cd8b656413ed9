"""A fleet's discovery sensor: the account's database list, the roster in the bucket, the tenant partitions."""

# No `from __future__ import annotations` here: Dagster reads the `context` annotations.
import dagster as dg

from ...config import FleetConfig, PatinaConfig
from ...engine import PatinaError
from ...fleets import Roster, discover
from ..resources import BucketResource, CloudflareResource
from .assets import FleetCloudflare, tenant_partitions_name

DISCOVERY_INTERVAL_SECONDS = 3600
# A sensor tick has about a minute: the discovery waits this long at most for the API budget or a 429, and
# otherwise tries again at the next tick (the night's dumps may hold the budget for a while).
DISCOVERY_WAIT_SECONDS = 20.0


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
            credentials = FleetCloudflare(cloudflare, fleet, config).credentials()
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
