"""The weekly job and its schedule, Sundays 04:00 UTC (the spec's `0 4 * * 0`)."""

import dagster as dg

from ...schedules import WEEKLY_DAY_OF_WEEK, WEEKLY_HOUR, WEEKLY_MINUTE, WEEKLY_SCHEDULE  # their one home
from .assets import ARCHIVE_KEY

WEEKLY_JOB = "weekly_archive"
# A week's run is stopped by run monitoring after this long: seven dailies re-read, compressed and verified.
WEEKLY_MAX_RUNTIME_SECONDS = 4 * 3600


def weekly_job() -> "dg.UnresolvedAssetJobDefinition":
    """The week's archive, retention and the checks (reconciliation included), for one week."""
    return dg.define_asset_job(
        WEEKLY_JOB,
        selection=dg.AssetSelection.assets(ARCHIVE_KEY),
        description="Archive one week's daily backups, verify the archive, apply retention, reconcile the bucket.",
        tags={dg.MAX_RUNTIME_SECONDS_TAG: str(WEEKLY_MAX_RUNTIME_SECONDS)},
    )


def weekly_schedule(job: "dg.UnresolvedAssetJobDefinition") -> dg.ScheduleDefinition:
    """Sundays at 04:00 UTC (the spec's `0 4 * * 0`, an hour after the nightly run), the week that just ended."""
    return dg.build_schedule_from_partitioned_job(
        job,
        name=WEEKLY_SCHEDULE,
        hour_of_day=WEEKLY_HOUR,
        minute_of_hour=WEEKLY_MINUTE,
        day_of_week=WEEKLY_DAY_OF_WEEK,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
