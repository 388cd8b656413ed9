"""What every area's steps share: the export pool, the retry policy, the daily partitions."""

import dagster as dg

from ..config import DumpConfig, PatinaConfig

EXPORT_POOL = "d1_export"

# Run tags Dagster sets and documents ("Run tags" in its docs) but does not export from `dagster`; one home for
# the names Patina reads. (`dg.MAX_RUNTIME_SECONDS_TAG` is exported, and used as it is.)
PARTITION_TAG = "dagster/partition"
BACKFILL_TAG = "dagster/backfill"
ROOT_RUN_ID_TAG = "dagster/root_run_id"
WILL_RETRY_TAG = "dagster/will_retry"


def retry_policy(settings: DumpConfig) -> dg.RetryPolicy:
    """Transient trouble (rate limits, 5xx, a bucket that hiccups) passes with time. The engine already
    retried each request; these are whole-dump retries, spaced out. Errors that retrying cannot fix
    (a bad token, a missing database) raise `Failure(allow_retries=False)` instead."""
    return dg.RetryPolicy(
        max_retries=settings.retries,
        delay=settings.retry_delay_seconds,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS if settings.retry_delay_seconds else None,
    )


def daily_partitions(config: PatinaConfig) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=config.start_date.isoformat(), timezone="UTC")
