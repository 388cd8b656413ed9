"""The Dagster layer: thin definitions over the plain-Python engine and storage, one package per area
(dumps, fleets, archives, r2_backups, on_demand, alerts), each holding its assets, checks, jobs, schedules and sensors; what they
share is in `policies` and `resources`."""

import dagster as dg

from ..config import PatinaConfig
from . import alerts, archives, dumps, fleets, on_demand, r2_backups, resources


def build_definitions(config: PatinaConfig) -> dg.Definitions:
    """Everything Dagster loads for a Patina configuration."""
    return dg.Definitions.merge(
        dumps.build_definitions(config),
        fleets.build_definitions(config),
        archives.build_definitions(config),
        r2_backups.build_definitions(config),
        on_demand.build_definitions(config),
        alerts.build_definitions(config),
        dg.Definitions(resources=resources.resources(config)),
    )
