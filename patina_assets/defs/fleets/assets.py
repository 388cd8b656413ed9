"""A fleet's asset: one partition per day x tenant, each a tenant's backup with its checks in the same step."""

# No `from __future__ import annotations` here: Dagster reads the `context` annotations.
import os
from dataclasses import replace

import dagster as dg

from ...backup import Cloudflare
from ...config import FleetConfig, PatinaConfig
from ...fleets import FleetError, load_roster
from ..dumps.assets import back_up_in_dagster, dump_metadata
from ..dumps.checks import (
    CAPTURED_ON_TIME,
    DUMP_CHECK_NAMES,
    POINT_IN_TIME,
    RESTORE_VERIFICATION,
    SCHEMA_DRIFT,
    SIZE_ANOMALY,
    Checked,
    evaluate_checks,
)
from ..policies import EXPORT_POOL, daily_partitions, retry_policy
from ..resources import BucketResource, CloudflareResource

FLEETS_GROUP = "fleets"
DAY, DATABASE = "day", "database"  # the two dimensions of a fleet's partitions


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


class FleetCloudflare:
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
            context, tenant.database(fleet), day, store, FleetCloudflare(cloudflare, fleet, config), config
        )
        metadata = {
            **dump_metadata(manifest, result, store.bucket.uri(manifest.key)),
            "tenant": tenant.name,
            "d1_name": tenant.d1_name,
            "database_id": tenant.uuid,
        }
        # The same evaluations as a configured database's dump checks, on the tenant's backup just published.
        checks = list(evaluate_checks(context, store, config, Checked.published(key, manifest)))
        return dg.MaterializeResult(metadata=metadata, check_results=checks)

    return fleet_dump


_CHECKS = {
    RESTORE_VERIFICATION: "The tenant's stored dump restores into scratch SQLite with every table's rows and digest "
    "as recorded (ERROR, blocking: that night has no usable backup of the tenant).",
    SIZE_ANOMALY: "The tenant's SQL size against the average of its last backups (ERROR when much smaller).",
    SCHEMA_DRIFT: "The tenant's schema changed since its previous backup (WARN).",
    POINT_IN_TIME: "The tenant's backup is one point in time (WARN when written during every attempt).",
    CAPTURED_ON_TIME: "The tenant's data was read within a day of the day it is filed under (WARN).",
}
