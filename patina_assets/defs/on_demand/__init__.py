"""On-demand backups: the unpartitioned `on_demand_backup` job (`patina trigger`, `POST /trigger`). Launching it
and reading the instance for the operators' tools is `patina_assets.orchestrator`."""

import dagster as dg

from ...config import PatinaConfig
from .jobs import build_on_demand_job


def build_definitions(config: PatinaConfig) -> dg.Definitions:
    """The on-demand job."""
    return dg.Definitions(jobs=[build_on_demand_job(config)])
