"""Nightly dumps: one daily-partitioned asset per database (assets), the checks on each dump, evaluated in its
step (checks), and the nightly job with its 03:00 UTC schedule (jobs)."""

import dagster as dg

from ...config import PatinaConfig
from ...watch import run_bounds
from .assets import build_dump_assets
from .jobs import nightly_job, nightly_schedule


def build_definitions(config: PatinaConfig) -> dg.Definitions:
    """The dump assets, their checks, the nightly job and its schedule."""
    dump_assets = build_dump_assets(config)
    if not dump_assets and not config.r2_buckets:  # fleets alone (defs/fleets): no nightly job with nothing to run
        return dg.Definitions()
    job = nightly_job(
        dump_assets, config.dump.concurrency, run_bounds(config).max_runtime_seconds, with_r2=bool(config.r2_buckets)
    )
    return dg.Definitions(
        assets=dump_assets,
        jobs=[job],
        schedules=[nightly_schedule(job)],
    )
