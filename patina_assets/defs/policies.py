"""What every area's steps share: the export and R2 pools, the retry policy, the daily partitions, the step
executor."""

import dagster as dg

from ..config import DumpConfig, PatinaConfig

EXPORT_POOL = "d1_export"

# R2 bucket backups (defs/r2_backups) run in the nightly job beside the dumps, in a pool of their own and with at
# most R2_SLOTS of the job's executor slots (their steps carry the tag R2_AREA_TAG: R2_AREA), so they never take
# a dump's slot.
R2_GROUP = "r2_backups"
R2_POOL = "r2_backup"
R2_AREA_TAG = "patina/area"
R2_AREA = "r2"
R2_SLOTS = 1

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


def nightly_executor_config(dump_concurrency: int, with_r2: bool) -> dict:
    """The nightly job's executor: `dump_concurrency` slots for the dumps and their checks, and with R2 buckets
    configured `R2_SLOTS` more, which only R2 steps may take (and no more of them than that)."""
    if not with_r2:
        return {"max_concurrent": dump_concurrency}
    return {
        "max_concurrent": dump_concurrency + R2_SLOTS,
        "tag_concurrency_limits": [{"key": R2_AREA_TAG, "value": R2_AREA, "limit": R2_SLOTS}],
    }


def daily_partitions(config: PatinaConfig) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=config.start_date.isoformat(), timezone="UTC")


#: What the step processes are forked from (its preload: see step_preload.py).
STEP_PRELOAD = "patina_assets.step_preload"


def step_executor(concurrency: int, with_r2: bool = False) -> dg.ExecutorDefinition:
    """One process per step (a crash or a runaway dump takes no other down), at most `concurrency` at once
    (plus the R2 slots: see `nightly_executor_config`), each forked from a forkserver that has imported the code
    location once per run (see step_preload.py): a fresh interpreter per step spends seconds importing Dagster and
    Patina, more than a small dump takes. The forkserver starts with the executor (`_forkserver_first`)."""
    return _forkserver_first.configured(
        {
            **nightly_executor_config(concurrency, with_r2),
            "start_method": {"forkserver": {"preload_modules": [STEP_PRELOAD]}},
        }
    )


@dg.executor(
    name="multiprocess",
    config_schema=dg.multiprocess_executor.config_schema,
    requirements=dg.multiple_process_executor_requirements(),
)
def _forkserver_first(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Dagster's multiprocess executor, whose forkserver is started as the executor is made, in the run worker
    before the run starts, not at its first step: the forkserver's own import of Dagster and the code location
    (a second of a small night's few) then runs while the run worker writes the run's start and plans its steps,
    instead of after. Only a process that executes a run makes its executor: code servers, `patina trigger` and
    the webserver start none."""
    executor = dg.multiprocess_executor.executor_creation_fn(init_context)
    start = init_context.executor_config.get("start_method") or {}
    if "forkserver" in start:
        _start_forkserver(start["forkserver"].get("preload_modules") or [STEP_PRELOAD])
    return executor


def _start_forkserver(preload: list[str]) -> None:
    """Start this process's forkserver with the preload Dagster's executor gives it (its own executor module
    first), so that the executor's first step finds it running and uses it. Returns at once: the server imports
    its preload in its own process. If it cannot start, the executor starts it at the first step as usual."""
    import logging
    import multiprocessing
    from multiprocessing import forkserver

    try:
        multiprocessing.get_context("forkserver").set_forkserver_preload(
            ["dagster._core.executor.multiprocess", *[m for m in preload if m != "dagster._core.executor.multiprocess"]]
        )
        forkserver.ensure_running()
    except Exception as exc:  # noqa: BLE001
        logging.getLogger(__name__).debug("the forkserver did not start early (the first step starts it): %s", exc)
