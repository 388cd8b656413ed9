"""The nightly job and its 03:00 UTC schedule (the spec's cron `0 3 * * *`)."""

from __future__ import annotations

import dagster as dg

from ...schedules import NIGHTLY_HOUR, NIGHTLY_MINUTE, NIGHTLY_SCHEDULE  # their one home, without Dagster
from ..policies import R2_GROUP, step_executor
from .executors import nightly_executor

NIGHTLY_JOB = "nightly_backup"
# A whole night's run is stopped by run monitoring after this long (the default; build_definitions derives it
# from the configuration: see watch.run_bounds); each database also has its own deadline.
NIGHTLY_MAX_RUNTIME_SECONDS = 6 * 3600


def nightly_job(
    dump_assets: list[dg.AssetsDefinition],
    concurrency: int,
    max_runtime_seconds: int = NIGHTLY_MAX_RUNTIME_SECONDS,
    *,
    with_r2: bool = False,
) -> dg.UnresolvedAssetJobDefinition:
    """Every database's dump for one day, and with `with_r2` every R2 bucket's snapshot (the `r2_backups` group).
    `concurrency` (patina.yaml dump.concurrency, the spec's 3) caps exports within the run; the `d1_export` pool
    (dagster.yaml) caps them across runs, e.g. in backfills. R2 steps get slots of their own
    (policies.nightly_executor_config), so they never take a dump's. PATINA_EXECUTOR=celery runs the steps on
    Celery workers instead (executors.py)."""
    selection = dg.AssetSelection.assets(*dump_assets)
    if with_r2:
        selection = selection | dg.AssetSelection.groups(R2_GROUP)
    return dg.define_asset_job(
        NIGHTLY_JOB,
        selection=selection,
        executor_def=nightly_executor(step_executor(concurrency, with_r2)),
        description="Dump every configured database for one day and store the dumps with their manifests"
        + (", and snapshot every configured R2 bucket." if with_r2 else "."),
        tags={dg.MAX_RUNTIME_SECONDS_TAG: str(max_runtime_seconds)},
    )


def nightly_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    """At 03:00 UTC each night, the day that just ended (yesterday's partition)."""
    return dg.build_schedule_from_partitioned_job(
        job,
        name=NIGHTLY_SCHEDULE,
        hour_of_day=NIGHTLY_HOUR,
        minute_of_hour=NIGHTLY_MINUTE,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
