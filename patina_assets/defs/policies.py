"""What every area's steps share: the export pool, the retry policy, the daily partitions, the step executor."""

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


def step_executor(concurrency: int) -> dg.ExecutorDefinition:
    """One process per step (a crash or a runaway dump takes no other down), at most `concurrency` at once,
    each forked from a forkserver that has imported the code location once per run (see step_preload.py):
    a fresh interpreter per step spends seconds importing Dagster and Patina, more than a small dump takes."""
    return dg.multiprocess_executor.configured(
        {
            "max_concurrent": concurrency,
            "start_method": {"forkserver": {"preload_modules": ["patina_assets.step_preload"]}},
        }
    )
