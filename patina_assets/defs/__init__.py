"""The Dagster layer: thin definitions over the plain-Python engine and storage, one module per area."""

from __future__ import annotations

import dagster as dg

from ..config import PatinaConfig
from ..watch import run_bounds
from . import alerts, archives, checks, dumps, on_demand, resources, schedules, watch


def build_definitions(config: PatinaConfig) -> dg.Definitions:
    """Everything Dagster loads for a Patina configuration."""
    dump_assets = dumps.build_dump_assets(config)
    job = schedules.nightly_job(dump_assets, config.dump.concurrency, run_bounds(config).max_runtime_seconds)
    defs = dg.Definitions(
        assets=dump_assets,
        asset_checks=checks.build_dump_checks(config),
        jobs=[job, on_demand.build_on_demand_job(config)],
        schedules=[schedules.nightly_schedule(job)],
        sensors=alerts.build_alert_sensors(config) + watch.build_watch_sensors(config),
        resources=resources.resources(config),
    )
    return dg.Definitions.merge(defs, archives.build_archive_definitions(config))
