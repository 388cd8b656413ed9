"""The Dagster layer: thin definitions over the plain-Python engine and storage, one module per area."""

from __future__ import annotations

import dagster as dg

from ..config import PatinaConfig
from . import dumps, resources, schedules


def build_definitions(config: PatinaConfig) -> dg.Definitions:
    """Everything Dagster loads for a Patina configuration."""
    dump_assets = dumps.build_dump_assets(config)
    job = schedules.nightly_job(dump_assets, config.dump.concurrency)
    return dg.Definitions(
        assets=dump_assets,
        jobs=[job],
        schedules=[schedules.nightly_schedule(job)],
        resources=resources.resources(config),
    )
