"""Fleets in Dagster (assets, sensors, jobs): one asset per fleet, partitioned by day x tenant, so 5,000 tenants are 5,000
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

import dagster as dg

from ...config import PatinaConfig
from .assets import build_fleet_asset, fleet_asset_key, fleet_job_name, tenant_partition_key, tenant_partitions_name
from .jobs import build_fleet_job, build_fleet_schedule
from .sensors import build_fleet_discovery_sensor

__all__ = [
    "build_definitions",
    "fleet_asset_key",
    "fleet_job_name",
    "tenant_partition_key",
    "tenant_partitions_name",
]


def build_definitions(config: PatinaConfig) -> dg.Definitions:
    """Everything Dagster loads for the configuration's fleets (nothing when it has none)."""
    assets, jobs, schedules, sensors = [], [], [], []
    for fleet in config.fleets:
        job = build_fleet_job(fleet, config)
        assets.append(build_fleet_asset(fleet, config))
        jobs.append(job)
        schedules.append(build_fleet_schedule(fleet, job))
        sensors.append(build_fleet_discovery_sensor(fleet, config))
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules, sensors=sensors)
