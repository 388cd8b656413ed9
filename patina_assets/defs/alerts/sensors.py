"""Alert sensors: Discord / JSON webhook / email messages about runs, checks and failure streaks.

Two sensors, both running by default:

- ``patina_run_alerts`` -- when a run that materializes a Patina asset fails or is cancelled: the nightly
  job, the weekly archive job, on-demand backups (``patina trigger``), backfills, materializations launched
  from the UI (``__ASSET_JOB``) and runs executed in-process; a run that ``patina_stuck_runs`` marked failed
  too. One message in the spec's embed format (databases successful/total, total size, duration, the run id
  as job id, and for each failed database the underlying cause -- the error a retried step last raised,
  not "Exceeded max_retries"); when it succeeds and ``alerts.notify_on_success`` is on: the "completed"
  message. And when a failed run leaves a database with ``alerts.consecutive_failure_limit`` or more
  failed backup attempts in a row, a louder message for that database (see :func:`failure_streak`).
  A fleet's tenants are grouped (see :class:`FleetGrouping`): failures of one fleet on one night with one
  cause are one message, however many tenants, and so are its night's successes; a tenant failing alone
  still gets its own messages.
- ``patina_check_alerts`` -- when any run finishes: one message per failed ERROR asset check, and per
  failed WARN check if ``alerts.warn_on_check_warnings`` (Dagster OSS shows checks but alerts on none);
  grouped the same way: one check failing many tenants of a fleet one night the same way is one message.

Why plain ``@dg.sensor`` and not ``@dg.run_failure_sensor`` / ``@dg.run_status_sensor``: those own their
cursor (a user function may not set it) and move past a run even when the function raised. A message
that could not be delivered would then be lost. These sensors walk the same records Dagster's run status
sensors walk (run status change events, by storage id, only runs of this code location), and keep in
their cursor, beside their position, an :class:`~patina_assets.alerts.Outbox` of messages not delivered
yet. Each tick first reads what is new, then delivers (the outbox first, oldest first), then returns the
new cursor: a run is read once, its messages are queued once, and each message leaves the outbox only
when the webhook accepted it. So a webhook that is down gets every message once it is back; only a
process that dies between a webhook's 200 and the cursor being saved can send one twice. Sensors run
apart from the jobs: a webhook that is down never fails a backup.

Like Dagster's run status sensors, a new sensor starts at the newest record: it does not replay history.

Webhook URLs are read from the environment variables named by ``alerts.discord_webhook_env`` and
``alerts.webhook_env`` at each tick, the email login from ``alerts.email.*_env`` when a message is sent;
they appear in no log line, cursor, skip message or error. ``defs/alerts/watch.py`` adds the freshness watch
(stale backups, missed nights) and the stuck-run watch, delivering through the same outbox machinery.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg

from ...config import FleetConfig, PatinaConfig
from ...notifications import (
    FLEET_BACKED_UP,
    FLEET_CHECK_FAILED,
    FLEET_RUNS_FAILED,
    Alert,
    Channels,
    CheckFailure,
    DatabaseOutcome,
    DeliveryPolicy,
    FailureStreak,
    FleetSummary,
    HeldFailures,
    HeldGroup,
    Outbox,
    RunSummary,
    fleet_cause,
    fleet_group_key,
    pending,
)
from ..archives.assets import ARCHIVE_KEY
from ..archives.jobs import WEEKLY_JOB
from ..dumps.assets import dump_asset_key
from ..dumps.jobs import NIGHTLY_JOB
from ..fleets.assets import DATABASE, DAY, fleet_asset_key, fleet_job_name, fleet_partitions, tenant_partition_key
from ..on_demand.jobs import ON_DEMAND_JOB, backup_op_name
from ..policies import BACKFILL_TAG, PARTITION_TAG, ROOT_RUN_ID_TAG, WILL_RETRY_TAG
from ..r2_backups.assets import r2_asset_key

RUN_ALERTS_SENSOR = "patina_run_alerts"
CHECK_ALERTS_SENSOR = "patina_check_alerts"


@dataclass(frozen=True)
class AlertedJob:
    """A job whose failed runs get the run message: what the title calls it, what its assets are."""

    title: str
    unit: str


#: Matched by job name: a job that is not defined (weekly archives off) simply has no runs. Any other run
#: that materializes a Patina asset (a backfill, the UI's __ASSET_JOB, an in-process run) is alerted too.
ALERTED_JOBS: Mapping[str, AlertedJob] = {
    NIGHTLY_JOB: AlertedJob("Backup", "Databases"),
    WEEKLY_JOB: AlertedJob("Weekly Archive", "Archives"),
    ON_DEMAND_JOB: AlertedJob("On-demand Backup", "Databases"),
}

FINISHED = (dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_CANCELED)
#: Run outcomes that get the run message: a nightly run stopped at its max runtime is cancelled, not failed.
ENDED_BADLY = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
#: Finished runs read per page; a tick reads page after page for up to READ_SECONDS_PER_TICK, and what is left
#: waits for the next tick (the cursor only moves past what was read). Dagster's own run status sensors
#: process 5 matching runs a tick (DAGSTER_RUN_STATUS_SENSOR_PROCESS_LIMIT, of 25 records fetched); these
#: read what fits in the tick. The tick's minute (Dagster's default sensor
#: timeout is 60 seconds) is shared with delivery (DELIVERY_SECONDS_PER_TICK): reading gets 20 seconds of it.
RUNS_PER_PAGE = 10
READ_SECONDS_PER_TICK = 20.0
#: Messages sent per tick and seconds spent sending: a tick has about a minute before Dagster gives up on it.
SENDS_PER_TICK = 20
DELIVERY_SECONDS_PER_TICK = 30.0
#: How many planned materializations of a database :func:`failure_streak` looks back through; for a tenant
#: of a fleet, through the partitions of this many days back from tomorrow (attempts at older days, backfills
#: of nights long past, are not counted either way).
STREAK_LOOKBACK = 100
#: The longest a fleet tenant's failure is held (from the tick that read it) for the others of its night to
#: join it; it goes out sooner when no run of that fleet and night is left to finish.
FLEET_HOLD_SECONDS = 600
_UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]

_RUN_EVENTS = {
    dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_UP_FOR_RETRY,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.RUN_FAILURE,
    dg.DagsterEventType.RUN_CANCELED,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION,
}


# --------------------------------------------------------------------------------------------
# What a run did, from its event log
# --------------------------------------------------------------------------------------------


@dataclass
class RunFacts:
    """The events of one finished run that alerts are made of."""

    record: dg.RunRecord
    #: asset key -> step key, for every asset the run set out to materialize (in plan order).
    planned: dict[dg.AssetKey, str | None]
    #: asset key -> its materialization's metadata.
    materialized: dict[dg.AssetKey, Mapping[str, dg.MetadataValue]]
    #: step key -> why the step failed.
    step_errors: dict[str, str]
    run_error: str | None
    checks: list[dg.AssetCheckEvaluation]
    #: step keys that started (on-demand ops plan no asset: their steps say which databases were tried).
    started: set[str] | None = None

    @property
    def run(self) -> dg.DagsterRun:
        return self.record.dagster_run

    @property
    def finished_at(self) -> datetime:
        moment = self.record.end_time or self.record.update_timestamp.timestamp()
        return datetime.fromtimestamp(moment, tz=UTC)

    @property
    def duration_seconds(self) -> float | None:
        if self.record.start_time is None or self.record.end_time is None:
            return None
        return max(0.0, self.record.end_time - self.record.start_time)

    def failed_assets(self) -> list[dg.AssetKey]:
        """Assets the run planned and did not materialize."""
        return [key for key in self.planned if key not in self.materialized]

    def blocking_check_failure(self, key: dg.AssetKey) -> str | None:
        """Why ``key``'s dump is not usable although it was stored: a blocking ERROR check (restore
        verification) failed -- which fails the run, as Dagster treats it as the step failing."""
        for evaluation in self.checks:
            if (
                evaluation.asset_key == key
                and not evaluation.passed
                and evaluation.blocking
                and evaluation.severity == dg.AssetCheckSeverity.ERROR
            ):
                return f"check {evaluation.check_name} failed" + (
                    f": {evaluation.description}" if evaluation.description else ""
                )
        return None

    def error_for(self, key: dg.AssetKey) -> str:
        step = self.planned.get(key)
        if step is not None and step in self.step_errors:
            return self.step_errors[step]
        return self.run_error or "did not run"


def read_run(instance: dg.DagsterInstance, record: dg.RunRecord) -> RunFacts:
    facts = RunFacts(record, {}, {}, {}, None, [], set())
    retried: dict[str, str] = {}  # step key -> why its last retried attempt failed
    for entry in instance.all_logs(record.dagster_run.run_id, of_type=_RUN_EVENTS):
        event = entry.dagster_event
        if event is None:
            continue
        kind = event.event_type
        if kind == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            facts.planned.setdefault(event.asset_key, event.step_key)
        elif kind == dg.DagsterEventType.STEP_START and event.step_key:
            facts.started.add(event.step_key)
        elif kind == dg.DagsterEventType.STEP_UP_FOR_RETRY and event.step_key:
            data = event.event_specific_data
            if data is not None and data.error is not None:
                retried[event.step_key] = _error_text(data.error)
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            facts.materialized[event.asset_key] = event.step_materialization_data.materialization.metadata
        elif kind == dg.DagsterEventType.STEP_FAILURE and event.step_key:
            data = event.step_failure_data
            described = data.user_failure_data.description if data.user_failure_data else None
            cause = _error_text(data.error)
            if not described and _is_retry_wrapper(data.error) and cause == _RETRIES_EXHAUSTED:
                cause = retried.get(event.step_key, cause)  # no cause attached: the last retried attempt's
            facts.step_errors[event.step_key] = described or cause
        elif kind == dg.DagsterEventType.RUN_FAILURE:
            data = event.job_failure_data
            facts.run_error = _error_text(data.error) if data and data.error else (event.message or entry.user_message)
        elif kind == dg.DagsterEventType.RUN_CANCELED:
            reason = event.message or entry.user_message
            facts.run_error = f"canceled: {reason}" if reason else "canceled"
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            facts.checks.append(event.event_specific_data)
    return facts


_RETRIES_EXHAUSTED = "retries exhausted"
# Dagster's wrappers around the error that happened: a retry policy's RetryRequested ("Exceeded
# max_retries of 3") and the step execution error around user code. The cause chain holds the real one.
_WRAPPERS = (
    "RetryRequested",
    "DagsterMaxRetriesExceededError",
    "DagsterExecutionStepExecutionError",
    "DagsterUserCodeExecutionError",
)


def _is_retry_wrapper(error) -> bool:
    return error is not None and (
        error.cls_name in _WRAPPERS or (error.message or "").startswith("Exceeded max_retries")
    )


def _underlying(error):
    """The error under Dagster's wrappers: follow ``cause`` (then ``context``) while the error is one of them."""
    seen = 0
    while _is_retry_wrapper(error) and seen < 10:
        nested = error.cause or error.context
        if nested is None:
            break
        error, seen = nested, seen + 1
    return error


def _error_text(error) -> str:
    """``Failure: no SQLite database at ...`` from ``dagster._core.definitions.events.Failure: no ...``;
    the underlying cause of "Exceeded max_retries of 3"."""
    if error is None:
        return "unknown error"
    error = _underlying(error)
    if _is_retry_wrapper(error) and (error.message or "").startswith("Exceeded max_retries"):
        return _RETRIES_EXHAUSTED
    message = (error.message or "").strip()
    head, sep, rest = message.partition(": ")
    if sep and "." in head and " " not in head:
        name = error.cls_name or head.rsplit(".", 1)[-1]
        # dg.Failure carries a message written for people; other exceptions keep their class name.
        message = rest if name == "Failure" else f"{name}: {rest}"
    return message or (error.cls_name or "unknown error")


# --------------------------------------------------------------------------------------------
# Facts -> alerts
# --------------------------------------------------------------------------------------------


class Alerting:
    """Turns a configuration's finished runs into alerts (the sensors' logic, testable without a tick)."""

    def __init__(self, config: PatinaConfig):
        self.config = config
        self.settings = config.alerts
        self._by_asset = {db.asset_name: (i, db) for i, db in enumerate(config.databases, 1)}
        self._dump_keys = {dump_asset_key(db) for db in config.databases}
        self._fleets = {fleet_asset_key(fleet): fleet for fleet in config.fleets}
        self._fleet_partitions = {fleet_asset_key(fleet): fleet_partitions(fleet, config) for fleet in config.fleets}
        self._r2_keys = {r2_asset_key(entry) for entry in config.r2_buckets}
        self._patina_keys = self._dump_keys | set(self._fleets) | self._r2_keys | {ARCHIVE_KEY}
        self._op_keys = {backup_op_name(db): dump_asset_key(db) for db in config.databases}

    def is_patina_run(self, facts: RunFacts) -> bool:
        """A run that sets out to materialize (or materializes) a Patina asset, whatever launched it."""
        return (
            facts.run.job_name in ALERTED_JOBS
            or not self._patina_keys.isdisjoint(facts.planned)
            or not self._patina_keys.isdisjoint(facts.materialized)
        )

    def with_on_demand_steps(self, facts: RunFacts) -> RunFacts:
        """On-demand ops plan no asset: each started (or failed) ``backup_<db>`` step stands for its database."""
        if facts.run.job_name == ON_DEMAND_JOB:
            for step in sorted((facts.started or set()) | set(facts.step_errors)):
                key = self._op_keys.get(step)
                if key is not None:
                    facts.planned.setdefault(key, step)
        return facts

    def job_for(self, run: dg.DagsterRun) -> AlertedJob:
        """What the message calls the run: its job's title, a backfill, or a materialization."""
        if run.job_name in ALERTED_JOBS:
            return ALERTED_JOBS[run.job_name]
        if run.tags.get(BACKFILL_TAG):
            return AlertedJob("Backfill", "Assets")
        return AlertedJob("Materialization", "Assets")

    def database(self, key: dg.AssetKey, run: dg.DagsterRun | None = None) -> tuple[str, str]:
        """``(name, redacted label)`` for an asset: ``("scout-db", "database 3 of 6")``,
        ``("archives/weekly", "archives/weekly")``; for a fleet's asset, the tenant of the run's partition:
        ``("tenant-042", "a tenant of fleet tenants")``."""
        fleet = self._fleets.get(key)
        if fleet is not None:
            tenant = run.tags.get(f"{PARTITION_TAG}/{DATABASE}") if run is not None else None
            return tenant or f"a tenant of fleet {fleet.name}", f"a tenant of fleet {fleet.name}"
        if key in self._r2_keys:  # an R2 bucket's snapshot: named like its asset, counted apart from the databases
            ordered = sorted(self._r2_keys, key=lambda k: k.to_user_string())
            return key.to_user_string(), f"R2 bucket {ordered.index(key) + 1} of {len(ordered)}"
        found = self._by_asset.get(key.path[-1]) if key in self._dump_keys else None
        if found is None:  # not one database's (the weekly archive): its key names no database
            return key.to_user_string(), key.to_user_string()
        position, db = found
        return db.name, f"database {position} of {len(self._by_asset)}"

    def day_of(self, key: dg.AssetKey, partition: str | None) -> str | None:
        """The day of an asset's partition: a fleet's partition is a pair (day x tenant, ``tenant-042|2026-03-01``)
        whose tenant a message names in a field of its own (`database`)."""
        definition = self._fleet_partitions.get(key)
        if definition is None or partition is None:
            return partition
        return definition.get_partition_key_from_str(partition).keys_by_dimension[DAY]

    def run_summary(self, facts: RunFacts) -> RunSummary:
        run = facts.run
        outcomes = []
        for key in facts.planned:
            name, label = self.database(key, run)
            metadata = facts.materialized.get(key)
            unusable = facts.blocking_check_failure(key) if metadata is not None else None
            if metadata is not None and unusable is None:
                size = metadata.get("bytes")
                outcomes.append(
                    DatabaseOutcome(name, label, True, size_bytes=int(size.value) if size is not None else None)
                )
            else:
                outcomes.append(DatabaseOutcome(name, label, False, error=unusable or facts.error_for(key)))
        failed = run.status in ENDED_BADLY
        job = self.job_for(run)
        return RunSummary(
            job_id=run.run_id,
            title=job.title,
            unit=job.unit,
            job_name=run.job_name,
            outcomes=tuple(outcomes),
            finished_at=facts.finished_at,
            duration_seconds=facts.duration_seconds,
            # A fleet's partition is a pair (tenant|day): the message's day is its day.
            partition=run.tags.get(f"{PARTITION_TAG}/{DAY}") or run.tags.get(PARTITION_TAG),
            will_retry=failed and run.tags.get(WILL_RETRY_TAG) == "true",
            run_failed=failed,
            run_error=(facts.run_error or "the run failed") if failed else None,
            canceled=run.status == dg.DagsterRunStatus.CANCELED,
        )

    def run_alerts(self, instance: dg.DagsterInstance, facts: RunFacts) -> list[tuple[str, Alert]]:
        """The run message (failed or cancelled runs that materialize Patina assets; successes too if asked)
        and escalations (failed runs of any job)."""
        run = facts.run
        facts = self.with_on_demand_steps(facts)
        alerts: list[tuple[str, Alert]] = []
        if self.is_patina_run(facts) and (run.status in ENDED_BADLY or self.settings.notify_on_success):
            alerts.append(("run", self.run_summary(facts)))
        if run.status == dg.DagsterRunStatus.FAILURE:
            for key in facts.failed_assets():
                streak = self.streak(instance, facts, key)
                if streak is not None:  # a fleet's streak is a tenant's (the partition's): its id names it
                    tenant = f":{streak.database}" if key in self._fleets else ""
                    alerts.append((f"streak:{key.to_user_string()}{tenant}", streak))
        return alerts

    def streak(self, instance: dg.DagsterInstance, facts: RunFacts, key: dg.AssetKey) -> FailureStreak | None:
        fleet = self._fleets.get(key)
        if key not in self._dump_keys | self._r2_keys and fleet is None:
            return None  # streaks are about nightly backups, not weekly archives
        partitions = None
        if fleet is not None:  # a fleet's streaks are its tenants': each counts its own partitions alone
            tenant = facts.run.tags.get(f"{PARTITION_TAG}/{DATABASE}")
            if tenant is None:
                return None
            partitions = tenant_partitions(tenant, facts.run.tags.get(f"{PARTITION_TAG}/{DAY}"))
        failures, last_success = failure_streak(instance, key, facts.run.run_id, partitions)
        if failures < self.settings.consecutive_failure_limit:
            return None
        name, label = self.database(key, facts.run)
        last_at = last_day = None
        if last_success is not None:
            last_at = datetime.fromtimestamp(last_success.timestamp, tz=UTC)
            last_day = self.day_of(key, last_success.partition_key)
        return FailureStreak(
            job_id=facts.run.run_id,
            database=name,
            label=label,
            failures=failures,
            limit=self.settings.consecutive_failure_limit,
            finished_at=facts.finished_at,
            last_success_at=last_at,
            last_success_day=last_day,
            error=facts.error_for(key),
        )

    def check_alerts(self, instance: dg.DagsterInstance, facts: RunFacts) -> list[tuple[str, Alert]]:
        """One alert per failed ERROR check in the run; per failed WARN check if warnings are wanted."""
        alerts: list[tuple[str, Alert]] = []
        for evaluation in facts.checks:
            if evaluation.asset_key not in self._patina_keys:
                continue  # another project's check in a run executed in-process on this instance
            severity = evaluation.severity.value
            if evaluation.passed or (severity != "ERROR" and not self.settings.warn_on_check_warnings):
                continue
            name, label = self.database(evaluation.asset_key, facts.run)
            partition = evaluation.partition or facts.run.tags.get(PARTITION_TAG)
            alert = CheckFailure(
                job_id=facts.run.run_id,
                check_name=evaluation.check_name,
                severity=severity,
                database=name,
                label=label,
                asset=evaluation.asset_key.to_user_string(),
                finished_at=facts.finished_at,
                partition=self.day_of(evaluation.asset_key, partition),
                description=evaluation.description,
                metadata=tuple(_metadata_text(evaluation.metadata)),
            )
            # The id keeps the whole partition: a fleet's tenants fail the same check on the same day.
            alerts.append((f"check:{evaluation.asset_key.to_user_string()}:{evaluation.check_name}:{partition}", alert))
        return sorted(alerts, key=lambda pair: not pair[1].is_error)  # errors first


def _metadata_text(metadata: Mapping[str, dg.MetadataValue]) -> Iterable[tuple[str, str]]:
    """Scalar and small JSON metadata as text; tables and the like stay in the UI."""
    for name, value in metadata.items():
        raw = value.value
        if isinstance(raw, (str, int, float, bool)):
            yield name, str(raw)
        elif isinstance(raw, (list, dict)):
            text = json.dumps(raw, default=str)
            if len(text) <= 200:
                yield name, text


def tenant_partitions(tenant: str, run_day: str | None, days: int = STREAK_LOOKBACK) -> list[str]:
    """The fleet partitions (day x tenant) of ``tenant`` over the last ``days`` days up to tomorrow (UTC), and
    its run's day: what a tenant's streak is counted over. A fleet is one asset; its tenants are partitions."""
    end = datetime.now(UTC).date() + timedelta(days=1)
    wanted = {(end - timedelta(days=back)).isoformat() for back in range(days)}
    wanted |= {run_day} if run_day else set()
    return [str(tenant_partition_key(day, tenant)) for day in sorted(wanted)]


def failure_streak(
    instance: dg.DagsterInstance, key: dg.AssetKey, run_id: str, partitions: Sequence[str] | None = None
) -> tuple[int, dg.EventLogRecord | None]:
    """How many backup attempts of ``key`` in a row have failed, counting back from ``run_id``'s; and the
    record of the last successful backup before it (None if none on record). With ``partitions`` (a
    tenant's, see :func:`tenant_partitions`), only attempts at those partitions count: another tenant's
    success or failure in the same asset says nothing about this one.

    From Dagster's records: an *attempt* is a run that planned to materialize ``key``
    (ASSET_MATERIALIZATION_PLANNED), together with its automatic retries and re-executions (runs sharing
    the ``dagster/root_run_id`` tag): a crashed run retried by ``run_retries`` is one attempt, and step
    retries happen inside a run anyway. An attempt *failed* if one of its runs ended in FAILURE and none
    materialized ``key``; it *succeeded* if one of its runs materialized ``key``. Attempts that were
    cancelled, are still going, or succeeded without ``key`` neither fail nor break the streak: a cancel
    says nothing about the database. Nightly schedule runs, backfills and manual runs all count -- each
    is an attempt to back the database up.
    """
    # The storage's query, which the (deprecated) instance.fetch_planned_materializations wraps; newest first.
    planned = list(
        instance.event_log_storage.get_event_records(
            dg.EventRecordsFilter(
                dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, asset_key=key, asset_partitions=partitions
            ),
            limit=STREAK_LOOKBACK,
            ascending=False,
        )
    )
    start = next((i for i, r in enumerate(planned) if r.run_id == run_id), None)
    if start is None:  # far older than the look-back window: not a streak we can speak for
        return 0, None
    planned = planned[start:]
    records = {
        r.dagster_run.run_id: r.dagster_run
        for r in instance.get_run_records(dg.RunsFilter(run_ids=list({p.run_id for p in planned})))
    }
    materialized = {
        r.run_id
        for r in instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=key, asset_partitions=partitions, after_storage_id=planned[-1].storage_id - 1
            ),
            limit=10 * STREAK_LOOKBACK,
        ).records
    }

    families: dict[str, str] = {}  # root run id -> "success" | "failure" | "other", newest first
    for p in planned:
        run = records.get(p.run_id)
        if run is None:
            continue
        family = run.tags.get(ROOT_RUN_ID_TAG, run.run_id)
        if p.run_id in materialized:
            outcome = "success"
        elif run.status == dg.DagsterRunStatus.FAILURE:
            outcome = "failure"
        else:
            outcome = "other"
        previous = families.get(family)
        if previous != "success" and (previous is None or outcome != "other"):
            families[family] = outcome
    failures = 0
    for outcome in families.values():
        if outcome == "success":
            break
        failures += outcome == "failure"
    before = dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions, before_storage_id=planned[0].storage_id)
    last = instance.fetch_materializations(before, limit=1).records
    return failures, (last[0] if last else None)


# --------------------------------------------------------------------------------------------
# A fleet's failures, grouped
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Joins:
    """Which held group an alert of a fleet tenant's run joins (see :meth:`FleetGrouping.sort`)."""

    kind: str
    cause: str
    escalated: bool = False
    canceled: bool = False
    size_bytes: int = 0


class FleetGrouping:
    """One message for what many tenants of a fleet did the same night, instead of one per tenant's run.

    An alert about one tenant of a fleet is not sent when its run is read: it joins the group of its fleet,
    night, kind and cause in the sensor's cursor. The kinds (:meth:`sort`): a failed (or cancelled) run, by
    :func:`~patina_assets.notifications.fleet_cause` (the error with the tenant's own name and ids taken
    out), its failure streak folded in; a failed check, by check name, severity and result (its numbers taken
    out too); a successful run (``notify_on_success``). A group goes out when no run of its fleet and night is
    left to finish and the sensor has read every finished run, or at the latest :data:`FLEET_HOLD_SECONDS`
    after the tick that read its first run. A group of one tenant is sent as it would have been alone (the
    same alerts, the same message ids); a group of more is one
    :class:`~patina_assets.notifications.FleetSummary`, with the tenants whose streak reached the limit
    counted in it. The cursor moves past a run in the same tick its alerts join their groups, so each alert
    is in exactly one message, whichever tick read it. Both alert sensors use it, each with its own
    ``alerts_for``."""

    def __init__(self, alerting: Alerting, alerts_for: AlertsFor, hold_seconds: float = FLEET_HOLD_SECONDS):
        self.alerting = alerting
        self.alerts_for = alerts_for
        self.hold_seconds = hold_seconds
        self._by_name = {fleet.name: fleet for fleet in alerting.config.fleets}

    def _tenant_night(self, facts: RunFacts) -> tuple[FleetConfig, str, str] | None:
        """(fleet, tenant, day) of a run that is one tenant's night of one fleet."""
        run = facts.run
        fleets = [self.alerting._fleets[key] for key in facts.planned if key in self.alerting._fleets]
        tenant = run.tags.get(f"{PARTITION_TAG}/{DATABASE}")
        day = run.tags.get(f"{PARTITION_TAG}/{DAY}")
        if len(fleets) != 1 or len(facts.planned) != 1 or not (tenant and day):
            return None
        return fleets[0], tenant, day

    def sort(self, facts: RunFacts, alerts: list[tuple[str, Alert]]) -> list[_Joins | None]:
        """For each alert of the run, the group it joins (None: it is sent now). A failure streak goes with
        its failed run's message (counted in the fleet message); a check with its check's group."""
        found = self._tenant_night(facts)
        if found is None:
            return [None] * len(alerts)
        fleet, tenant, day = found
        asset = fleet_asset_key(fleet).to_user_string()
        summary = next((alert for _, alert in alerts if isinstance(alert, RunSummary)), None)
        escalated = any(isinstance(alert, FailureStreak) for _, alert in alerts)
        out: list[_Joins | None] = []
        for _, alert in alerts:
            joins = None
            if isinstance(alert, RunSummary | FailureStreak) and summary is not None:
                if facts.run.status in ENDED_BADLY:
                    failed = [o for o in summary.outcomes if not o.succeeded]
                    error = failed[0].error if failed else summary.run_error
                    cause = fleet_cause(error, tenant)
                    joins = _Joins(FLEET_RUNS_FAILED, cause, escalated=escalated, canceled=summary.canceled)
                elif isinstance(alert, RunSummary) and summary.status == "success":
                    joins = _Joins(FLEET_BACKED_UP, "", size_bytes=summary.total_bytes)
            elif isinstance(alert, CheckFailure) and alert.asset == asset:
                kind = f"{FLEET_CHECK_FAILED}:{alert.check_name}:{alert.severity}"
                joins = _Joins(kind, fleet_cause(alert.description, tenant, day=day))
            out.append(joins)
        return out

    def hold(
        self, held: HeldFailures, facts: RunFacts, alerts: list[tuple[str, Alert]], now: float
    ) -> list[tuple[str, Alert]]:
        """Take the run's alerts that join a group into ``held``; returns the others, to send now."""
        found = self._tenant_night(facts)
        now_alerts = []
        for pair, joins in zip(alerts, self.sort(facts, alerts), strict=True):
            if joins is None or found is None:
                now_alerts.append(pair)
            elif not isinstance(pair[1], FailureStreak):  # counted by its run's group (escalated)
                fleet, tenant, day = found
                held.add(
                    fleet=fleet.name,
                    day=day,
                    cause=joins.cause,
                    job_name=facts.run.job_name,
                    tenant=tenant,
                    run_id=facts.run.run_id,
                    finished_at=facts.finished_at.timestamp(),
                    escalated=joins.escalated,
                    canceled=joins.canceled,
                    now=now,
                    kind=joins.kind,
                    size_bytes=joins.size_bytes,
                )
        return now_alerts

    def night(self, instance: dg.DagsterInstance, group: HeldGroup) -> list[dg.DagsterRun]:
        """The runs of the group's fleet and night (of its nightly job, backfills, the UI)."""
        fleet = self._by_name.get(group.fleet)
        runs = instance.get_runs(dg.RunsFilter(tags={f"{PARTITION_TAG}/{DAY}": group.day}))
        return [run for run in runs if fleet is not None and _of_fleet(run, fleet)]

    def still_running(self, instance: dg.DagsterInstance, group: HeldGroup, limit: int = 100) -> bool:
        """Whether a run of the group's fleet and night is not finished (queued, starting, running); asked at
        each tick, so it reads a page of the night's unfinished runs, and a full page of other fleets' counts."""
        fleet = self._by_name.get(group.fleet)
        runs = instance.get_runs(
            dg.RunsFilter(tags={f"{PARTITION_TAG}/{DAY}": group.day}, statuses=_UNFINISHED), limit=limit
        )
        return len(runs) >= limit or any(fleet is not None and _of_fleet(run, fleet) for run in runs)

    def alone(self, instance: dg.DagsterInstance, group: HeldGroup) -> list[tuple[str, list[tuple[str, Alert]]]]:
        """A lone tenant's held alerts, as (run id, alerts): what its runs would have sent without grouping."""
        out = []
        for run_id in group.runs:
            record = instance.get_run_record_by_id(run_id)
            if record is None:
                continue
            facts = read_run(instance, record)
            alerts = self.alerts_for(instance, facts)
            joined = self.sort(facts, alerts)
            mine = [
                pair
                for pair, joins in zip(alerts, joined, strict=True)
                if joins is not None and fleet_group_key(group.fleet, group.day, joins.cause, joins.kind) == group.key
            ]
            out.append((run_id, mine))
        return out

    def release(
        self, instance: dg.DagsterInstance, held: HeldFailures, now: float, caught_up: bool
    ) -> list[tuple[str, list[tuple[str, Alert]]]]:
        """The groups due now, as (id prefix, alerts) to queue: a lone tenant's runs with the ids they would
        have had alone, a group of more as one fleet message."""
        due = held.due(now, self.hold_seconds, lambda g: caught_up and not self.still_running(instance, g))
        out: list[tuple[str, list[tuple[str, Alert]]]] = []
        for group in due:
            if len(group.tenants) == 1:
                out += self.alone(instance, group)
                held.count_sent(group, now)
                continue
            runs = self.night(instance, group)
            tenants = {run.tags.get(f"{PARTITION_TAG}/{DATABASE}") for run in runs} | set(group.tenants)
            running = {run.tags.get(f"{PARTITION_TAG}/{DATABASE}") for run in runs if run.status in _UNFINISHED}
            part, so_far = held.count_sent(group, now)
            kind, check, check_severity = (group.kind.split(":", 2) + ["", ""])[:3]
            fleet = self._by_name.get(group.fleet)
            alert = FleetSummary(
                fleet=group.fleet,
                day=group.day,
                cause=group.cause,
                count=len(group.tenants),
                names=tuple(sorted(group.tenants)),
                tenants=len(tenants - {None}),
                running=len(running - {None} - set(group.tenants)),
                job_name=group.job_name,
                job_id=group.job_id,
                finished_at=datetime.fromtimestamp(group.finished_at, tz=UTC),
                part=part,
                count_so_far=so_far,
                escalated=len(group.escalated),
                escalated_names=tuple(sorted(group.escalated)),
                limit=self.alerting.settings.consecutive_failure_limit,
                canceled=group.canceled,
                kind=kind,
                check=check,
                check_severity=check_severity or "ERROR",
                asset=fleet_asset_key(fleet).to_user_string() if fleet is not None else "",
                total_bytes=group.total_bytes,
            )
            out.append(("fleet", [(f"{group.key}:{part}", alert)]))
        return out


def _of_fleet(run: dg.DagsterRun, fleet: FleetConfig) -> bool:
    return run.job_name == fleet_job_name(fleet) or fleet_asset_key(fleet) in (run.asset_selection or ())


# --------------------------------------------------------------------------------------------
# The sensors
# --------------------------------------------------------------------------------------------


@dataclass
class AlertCursor:
    """A sensor's cursor: its position (storage id of the last run status change read, per event type)
    and the messages not delivered yet. Never holds a URL."""

    after: dict[str, int]
    outbox: Outbox
    #: A fleet's failed runs, read and not sent yet (see :class:`FleetGrouping`).
    held: HeldFailures = field(default_factory=HeldFailures)

    def to_json(self) -> str:
        return json.dumps(
            {"v": 1, "after": self.after, "outbox": self.outbox.to_json(), "held": self.held.to_json()},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> AlertCursor | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(
                after={str(k): int(v) for k, v in data["after"].items()},
                outbox=Outbox.from_json(data["outbox"]),
                held=HeldFailures.from_json(data.get("held")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # unreadable: start again from now, like a new sensor


def _latest_storage_id(instance: dg.DagsterInstance, event_type: dg.DagsterEventType) -> int:
    records = instance.fetch_run_status_changes(event_type, limit=1).records
    return records[0].storage_id if records else -1


def _new_run_events(
    instance: dg.DagsterInstance, after: Mapping[str, int], limit: int
) -> tuple[list[dg.EventLogRecord], bool]:
    """The next ``limit`` run successes and failures after the cursor, oldest first (one query per type,
    merged: each type's position then only moves past records that were read), and whether more are waiting."""
    found: list[dg.EventLogRecord] = []
    for event_type in FINISHED:
        found += instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type=event_type, after_storage_id=after[event_type.value]),
            limit=limit + 1,
            ascending=True,
        ).records
    found.sort(key=lambda r: r.storage_id)
    return found[:limit], len(found) > limit


def _in_this_location(context: dg.SensorEvaluationContext, run: dg.DagsterRun) -> bool:
    """The rule Dagster's run status sensors use: only runs of the sensor's own code location (in tests,
    neither has one) -- and runs with no code location at all (executed in-process, e.g. a script's
    ``materialize(...)``): which of those touch Patina's assets is decided from their events."""
    origin = run.remote_job_origin
    if origin is None:
        return True
    run_location = origin.repository_origin.code_location_origin.location_name if origin else None
    run_repository = origin.repository_origin.repository_name if origin else None
    sensor_location = context.code_location_origin.location_name if context.code_location_origin else None
    return run_location == sensor_location and run_repository == context.repository_name


AlertsFor = Callable[[dg.DagsterInstance, RunFacts], list[tuple[str, Alert]]]


def queue(outbox: Outbox, alerts: Iterable[tuple[str, Alert]], channels: Channels, *, prefix: str, now: float) -> int:
    """Render each alert for every configured destination into ``outbox``; returns how many alerts."""
    targets = sorted(channels.targets())
    count = 0
    for alert_id, alert in alerts:
        count += 1
        for message in pending(f"{prefix}:{alert_id}", alert, targets, redact=channels.settings.redact_names, now=now):
            outbox.add(message)
    return count


def send_pending(
    context: dg.SensorEvaluationContext, outbox: Outbox, channels: Channels, *, now: float, new_alerts: int, what: str
) -> str:
    """Deliver what ``outbox`` holds (oldest first, within the tick's budget), log what happened, and
    return the one-line summary for the tick. No URL or password is in anything it logs or returns."""
    settings = channels.settings
    targets = channels.targets()
    if new_alerts and not targets:
        context.log.warning(
            f"{new_alerts} alert(s) not sent: no channel is configured. Set "
            + " or ".join(f"${v}" for v in (settings.discord_webhook_env, settings.webhook_env) if v)
            + " (names from alerts.discord_webhook_env / alerts.webhook_env in patina.yaml), or configure alerts.email."
        )
    report = outbox.flush(
        targets,
        now=now,
        deadline=time.monotonic() + DELIVERY_SECONDS_PER_TICK,
        max_sends=SENDS_PER_TICK,
        send=channels.send,
        missing=channels.missing,
    )
    summary = f"{what}, {new_alerts} new alert(s); messages: {report.describe(channels.names(report.failing))}"
    if report.failing:
        context.log.warning(summary)
    elif report.delivered:
        context.log.info(summary)
    for message_id, why in report.dropped:
        context.log.error(f"gave up on alert {message_id}: {why}")
    return summary


def build_alert_sensor(
    name: str,
    description: str,
    alerting: Alerting,
    alerts_for: AlertsFor,
    policy: DeliveryPolicy = DeliveryPolicy(),
    env: Mapping[str, str] | None = None,
    grouping: FleetGrouping | None = None,
    clock: Callable[[], float] = time.time,
) -> dg.SensorDefinition:
    """A sensor that reads each finished run once, turns it into alerts with ``alerts_for``, and delivers
    them to the configured channels through the outbox in its cursor; with ``grouping``, a fleet's tenants'
    alerts are held and grouped first. ``clock`` is injected by tests (the hold passes in a second)."""
    channels = Channels(alerting.settings, policy, env)

    @dg.sensor(
        name=name, description=description, default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30
    )
    def alert_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        instance = context.instance
        state = AlertCursor.from_json(context.cursor)
        if state is None:
            state = AlertCursor({t.value: _latest_storage_id(instance, t) for t in FINISHED}, Outbox())
            return dg.SensorResult(
                skip_reason="Started: alerting on runs that finish from now on", cursor=state.to_json()
            )
        for event_type in FINISHED:  # a cursor from before a new event type was followed
            state.after.setdefault(event_type.value, _latest_storage_id(instance, event_type))

        # Read first, deliver after: an error while reading leaves the cursor as it was and sends nothing.
        # Page after page until every finished run is read or the tick's reading time is spent (a page is
        # always read): a fleet's night of 1,000 failed tenants is read in one or a few ticks, not 100.
        now = clock()
        deadline = time.monotonic() + READ_SECONDS_PER_TICK
        new_alerts = held = read = 0
        more = True
        while more:
            events, more = _new_run_events(instance, state.after, RUNS_PER_PAGE)
            read += len(events)
            run_ids = list({e.run_id for e in events})
            records = (
                {r.dagster_run.run_id: r for r in instance.get_run_records(dg.RunsFilter(run_ids=run_ids))}
                if run_ids
                else {}
            )
            for event in events:
                state.after[event.event_log_entry.dagster_event.event_type_value] = event.storage_id
                record = records.get(event.run_id)
                if record is None or not _in_this_location(context, record.dagster_run):
                    continue
                facts = read_run(instance, record)
                alerts = alerts_for(instance, facts)
                if grouping is not None:
                    now_alerts = grouping.hold(state.held, facts, alerts, now)
                    held += len(now_alerts) < len(alerts)
                    alerts = now_alerts
                new_alerts += queue(state.outbox, alerts, channels, prefix=f"{name}:{event.run_id}", now=now)
            if time.monotonic() >= deadline:
                break
        if grouping is not None:
            for prefix, alerts in grouping.release(instance, state.held, now, caught_up=not more):
                new_alerts += queue(state.outbox, alerts, channels, prefix=f"{name}:{prefix}", now=now)
        what = f"{read} finished run(s) read"
        if state.held.groups:
            waiting = sum(len(g.tenants) for g in state.held.groups)
            what += f", {waiting} fleet tenant alert(s) held for grouping ({held} new)"
        summary = send_pending(context, state.outbox, channels, now=now, new_alerts=new_alerts, what=what)
        return dg.SensorResult(skip_reason=summary, cursor=state.to_json())

    return alert_sensor


def build_alert_sensors(
    config: PatinaConfig,
    *,
    policy: DeliveryPolicy = DeliveryPolicy(),
    env: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> list[dg.SensorDefinition]:
    """The alert sensors for a configuration. ``env`` (default: the process environment, read at each
    tick) is where the webhook URLs come from."""
    alerting = Alerting(config)
    limit = config.alerts.consecutive_failure_limit
    return [
        build_alert_sensor(
            RUN_ALERTS_SENSOR,
            "Posts to the Discord / JSON webhooks and email when a run that materializes a Patina asset fails or is "
            f"cancelled ({', '.join(ALERTED_JOBS)}, backfills, UI materializations, in-process runs), with the "
            "underlying cause (and when it succeeds, if alerts.notify_on_success), and a louder message when a "
            f"database has failed {limit} "
            "backup attempts in a row. A fleet's tenants failing the same night with the same cause are one message, "
            "and so are its night's successes. "
            "Undelivered messages wait in the cursor and are sent when the webhook is back.",
            alerting,
            alerting.run_alerts,
            policy,
            env,
            grouping=FleetGrouping(
                alerting, alerting.run_alerts
            ),  # also without fleets: releases what a removed fleet left held
            clock=clock,
        ),
        build_alert_sensor(
            CHECK_ALERTS_SENSOR,
            "Posts to the Discord / JSON webhooks and email for each failed ERROR asset check of a finished run "
            "(and each WARN check, if alerts.warn_on_check_warnings). Dagster OSS does not alert on checks itself. "
            "A fleet's tenants failing one check the same night the same way are one message.",
            alerting,
            alerting.check_alerts,
            policy,
            env,
            grouping=FleetGrouping(alerting, alerting.check_alerts),
            clock=clock,
        ),
    ]
