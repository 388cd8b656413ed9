"""The nightly job and its 03:00 UTC schedule (the spec's cron `0 3 * * *`)."""

from __future__ import annotations

import dagster as dg

from ..policies import step_executor
from .executors import nightly_executor

NIGHTLY_JOB = "nightly_backup"
NIGHTLY_SCHEDULE = "nightly_backup_schedule"
# A whole night's run is stopped by run monitoring after this long (the default; build_definitions derives it
# from the configuration: see watch.run_bounds); each database also has its own deadline.
NIGHTLY_MAX_RUNTIME_SECONDS = 6 * 3600


def nightly_job(
    dump_assets: list[dg.AssetsDefinition], concurrency: int, max_runtime_seconds: int = NIGHTLY_MAX_RUNTIME_SECONDS
) -> dg.UnresolvedAssetJobDefinition:
    """Every database's dump for one day. `concurrency` (patina.yaml dump.concurrency, the spec's 3) caps
    exports within the run; the `d1_export` pool (dagster.yaml) caps them across runs, e.g. in backfills.
    PATINA_EXECUTOR=celery runs the steps on Celery workers instead (executors.py)."""
    return dg.define_asset_job(
        NIGHTLY_JOB,
        selection=dg.AssetSelection.assets(*dump_assets),
        executor_def=nightly_executor(step_executor(concurrency)),
        description="Dump every configured database for one day and store the dumps with their manifests.",
        tags={dg.MAX_RUNTIME_SECONDS_TAG: str(max_runtime_seconds)},
    )


def nightly_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    """At 03:00 UTC each night, the day that just ended (yesterday's partition)."""
    return dg.build_schedule_from_partitioned_job(
        job,
        name=NIGHTLY_SCHEDULE,
        hour_of_day=3,
        minute_of_hour=0,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
