"""The operators' tools' view of Dagster: launching an on-demand backup (`patina trigger`, `POST /trigger`),
and what `/status` and `patina status` read from the instance (runs, schedules, next ticks).

Dagster-aware, but not part of the code location: the CLI and `patina serve` call it.
"""

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from .config import DatabaseConfig, PatinaConfig, UnknownDatabaseError
from .defs.dumps.assets import dump_asset_key
from .defs.dumps.jobs import NIGHTLY_JOB
from .defs.on_demand.jobs import (
    BACKUP_JOBS,
    DAY_TAG,
    MAX_REASON_LENGTH,
    ON_DEMAND_JOB,
    REASON_TAG,
    REQUESTED_BY_TAG,
    backup_op_name,
    today,
)
from .defs.policies import PARTITION_TAG
from .launching import (
    TriggerError,
    failure_reason,
    submit,
    submit_through_webserver,
    wait_until_ended,
    wait_until_started,
)
from .schedules import next_ticks, schedule_crons
from .status import JobRun, Orchestrator, unavailable

# --------------------------------------------------------------------------------------------------
# Triggering
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Triggered:
    run_id: str
    day: str
    databases: tuple[str, ...]
    status: str  # the run's status once started (STARTED, ...) or finished (SUCCESS, FAILURE)
    reason: str | None
    error: str | None = None  # why it failed (the failed steps' errors)

    def to_dict(self) -> dict:
        done = self.status in ("SUCCESS", "FAILURE", "CANCELED")
        return {
            "jobId": self.run_id,
            "status": "started" if not done else ("completed" if self.status == "SUCCESS" else "failed"),
            "runStatus": self.status,
            "date": self.day,
            "databases": len(self.databases),
            "databaseNames": list(self.databases),
            "reason": self.reason,
            "message": (
                "Backup job started. Check /status for progress."
                if not done
                else f"Backup job finished: {self.status}."
            ),
            **({"error": self.error} if self.error else {}),
        }


def check_request(config: PatinaConfig, databases: Sequence[str] | None, reason: str | None) -> list[DatabaseConfig]:
    """The databases asked for (all when none are named), in priority order; ValueError names what is wrong."""
    if reason is not None and (len(reason) > MAX_REASON_LENGTH or any(ord(c) < 32 for c in reason)):
        raise ValueError(f"the reason must be one line of at most {MAX_REASON_LENGTH} characters")
    if not databases:
        return list(config.by_priority())
    wanted, unknown = set(), []
    for name in databases:
        try:
            wanted.add(config.database(name).name)  # the asset name (scout_db) stands for scout-db
        except UnknownDatabaseError:
            unknown.append(name)
    if unknown:
        raise ValueError(f"unknown database(s) {', '.join(map(repr, unknown))}; configured: {', '.join(config.names)}")
    return [db for db in config.by_priority() if db.name in wanted]


def trigger_backup(
    config: PatinaConfig,
    instance: dg.DagsterInstance,
    databases: Sequence[str] | None = None,
    reason: str | None = None,
    *,
    wait: bool = False,
    requested_by: str = "cli",
    workspace: Path | None = None,
    webserver: str | None = None,
) -> Triggered:
    """Submit an on-demand backup run to the instance's queue (the daemon launches it, as it does scheduled runs)
    and return once it has started; ``wait``: once it has ended. A run that cannot start raises TriggerError
    with Dagster's reason.  Without ``webserver`` the code location is loaded in this process to queue the run
    (`launching.submit`); with it (a running webserver's URL) the run is queued through that webserver, which has
    it loaded already; it must serve the instance at $DAGSTER_HOME."""
    chosen = check_request(config, databases, reason)
    day = today()
    tags = {DAY_TAG: day, REQUESTED_BY_TAG: requested_by, **({REASON_TAG: reason} if reason else {})}
    ops = [backup_op_name(db) for db in chosen]
    everything = len(chosen) == len(config.databases)
    names = tuple(db.name for db in chosen)
    if webserver:
        run_id = submit_through_webserver(webserver, ON_DEMAND_JOB, tags, None if everything else ops)
        if instance.get_run_by_id(run_id) is None:  # the webserver created it before answering
            raise TriggerError(
                f"the webserver at {webserver} queued run {run_id} on another Dagster instance than $DAGSTER_HOME's "
                f"({os.environ.get('DAGSTER_HOME')}): give the webserver of this instance, or set DAGSTER_HOME to its"
            )
    else:
        run_id = str(uuid.uuid4())
        submit(
            ON_DEMAND_JOB,
            run_id,
            tags,
            None if everything else ops,
            config=config,
            instance=instance,
            workspace=workspace,
        )
    run = wait_until_started(instance, run_id)
    if wait:
        run = wait_until_ended(instance, run_id)
    failed = run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
    return Triggered(
        run_id, day, names, run.status.value, reason, error=failure_reason(instance, run_id) if failed else None
    )


# --------------------------------------------------------------------------------------------------
# Reading the instance
# --------------------------------------------------------------------------------------------------


@contextmanager
def open_instance(env=os.environ) -> Iterator[tuple[dg.DagsterInstance | None, str]]:
    """The instance at ``$DAGSTER_HOME`` and a description, or ``(None, why not)``; never raises."""
    home = env.get("DAGSTER_HOME")
    if not home:
        yield None, "DAGSTER_HOME is not set"
        return
    try:
        instance = dg.DagsterInstance.get() if env is os.environ else dg.DagsterInstance.from_config(home)
    except Exception as exc:  # a broken dagster.yaml or unreachable storage: report, do not fail the tool
        yield None, f"cannot open the Dagster instance at {home}: {type(exc).__name__}: {_first_line(exc)}"
        return
    try:
        yield instance, f"Dagster instance at {home}"
    finally:
        instance.dispose()


def definitions_crons(config: PatinaConfig) -> list[tuple[str, str, str]]:
    """(name, cron, timezone) of each schedule of the built code location: what `schedules.schedule_crons`
    must say without building it (the definitions' tests compare the two)."""
    from .defs import build_definitions

    return sorted(
        (schedule.name, schedule.cron_schedule, schedule.execution_timezone or "UTC")
        for schedule in build_definitions(config).get_repository_def().schedule_defs
        if isinstance(schedule.cron_schedule, str)
    )


class DagsterView:
    """What the operators' tools read from Dagster: backup runs and the next scheduled ticks.

    ``instance`` may be None (no ``$DAGSTER_HOME``, or it could not be opened): the view then says so, with
    ``detail``, and still knows the schedules (they come from the code, not the instance).
    """

    def __init__(self, config: PatinaConfig, instance: dg.DagsterInstance | None, detail: str, *, limit: int = 10):
        self.config, self.instance, self.detail, self.limit = config, instance, detail, limit
        self.crons = schedule_crons(config)  # from the configuration: no definitions built

    def read(self, now: datetime | None = None) -> Orchestrator:
        ticks = next_ticks(self.crons, now)
        if self.instance is None:
            return unavailable(self.detail, ticks)
        try:
            records = [
                record
                for job in BACKUP_JOBS
                for record in self.instance.get_run_records(dg.RunsFilter(job_name=job), limit=self.limit)
            ]
            records.sort(key=lambda r: r.create_timestamp, reverse=True)
            runs = [_job_run(self.config, self.instance, record) for record in records[: self.limit]]
        except Exception as exc:  # storage unreachable: report it, keep serving what the bucket says
            return unavailable(f"{self.detail}: cannot read its runs ({type(exc).__name__}: {_first_line(exc)})", ticks)
        return Orchestrator(
            available=True,
            detail=self.detail,
            active=[r for r in runs if not r.finished],
            recent=[r for r in runs if r.finished],
            next_scheduled=ticks,
        )


def _job_run(config: PatinaConfig, instance: dg.DagsterInstance, record) -> JobRun:
    run = record.dagster_run
    by_step = {}
    for db in config.databases:
        by_step["__".join(dump_asset_key(db).path)] = db.name
        by_step[backup_op_name(db)] = db.name
    expected = _expected_databases(config, run, by_step)
    ok, failed = [], []
    finished = run.status.value in ("SUCCESS", "FAILURE", "CANCELED")
    step_stats = instance.get_run_step_stats(run.run_id)
    for stats in step_stats:
        name = by_step.get(stats.step_key)
        if name is None:
            continue
        (ok if stats.status is not None and stats.status.value == "SUCCESS" else failed).append(name)
    # A run that ended before any step began (its code location was not found, its process never came up) backed
    # up nothing and failed nothing: it failed to start, and says why.
    failed_to_start = failure_reason(instance, run.run_id) if run.status.value == "FAILURE" and not step_stats else None
    if finished and not failed_to_start:
        failed += [name for name in expected if name not in ok and name not in failed]
    started = _utc(record.start_time)
    ended = _utc(record.end_time)
    return JobRun(
        run_id=run.run_id,
        job=run.job_name,
        status=run.status.value,
        day=run.tags.get(PARTITION_TAG) or run.tags.get(DAY_TAG),
        started_at=started or record.create_timestamp,
        ended_at=ended,
        databases_ok=tuple(sorted(set(ok))),
        databases_failed=tuple(sorted(set(failed) - set(ok))),
        reason=run.tags.get(REASON_TAG),
        trigger=run.tags.get(REQUESTED_BY_TAG) or ("schedule" if run.tags.get("dagster/schedule_name") else None),
        nightly=run.job_name == NIGHTLY_JOB,
        failed_to_start=failed_to_start,
    )


def _expected_databases(config: PatinaConfig, run, by_step: dict[str, str]) -> list[str]:
    if run.asset_selection:
        keys = {"__".join(key.path) for key in run.asset_selection}
        return [by_step[k] for k in keys if k in by_step]
    ops = run.resolved_op_selection or run.op_selection or run.step_keys_to_execute
    if ops:
        return [by_step[k] for k in ops if k in by_step]
    return list(config.names)


def _utc(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, tz=UTC) if timestamp else None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]
