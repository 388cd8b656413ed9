"""Weekly archives: the archive asset, its checks and retention (assets), bucket reconciliation
(reconciliation), and the weekly job with its Sunday 04:00 UTC schedule (jobs)."""

import dagster as dg

from ...config import PatinaConfig
from .assets import build_archive_asset, weekly_partitions
from .jobs import weekly_job, weekly_schedule
from .reconciliation import build_reconciliation_check


def build_definitions(config: PatinaConfig) -> dg.Definitions:
    """The weekly archive asset with its checks, bucket reconciliation, the weekly job and its schedule."""
    job = weekly_job()
    return dg.Definitions(
        assets=[build_archive_asset(config, weekly_partitions(config))],
        asset_checks=[build_reconciliation_check(config)],
        jobs=[job],
        schedules=[weekly_schedule(job)],
    )
