"""Watch sensors: stale backups, missed nights and stuck runs (the logic is plain Python in ``watch.py``).

Both run in the Dagster daemon's sensor daemon (``patina-daemon run``, or the one ``make ui`` starts),
on by default:

- ``patina_freshness`` -- every 10 minutes, reads the bucket's catalog (one listing, one history index per database): a database without a good backup
  for ``alerts.stale_warn_after_days`` gets one warning, for ``alerts.stale_after_days`` one error, and one
  "recovered" message when a good backup arrives; a nightly tick that produced nothing by the time its run
  should have ended (the schedule switched off, the daemon down) gets one message, and one when backups
  resume. Messages go through the same outbox as the other alerts (kept in this sensor's cursor).
- ``patina_stuck_runs`` -- every minute, each started run that materializes a Patina asset and has logged
  nothing for the stall bound (:func:`patina_assets.watch.run_bounds`: from ``dump.deadline_seconds``,
  ``dump.retries`` and ``dump.retry_delay_seconds``) and is not waiting for a pool slot: asked to terminate,
  marked failed with the reason, and its ``d1_export`` pool slots freed at once. ``patina_run_alerts`` then
  reports it like any failed run. (Dagster's run monitoring cannot: the default run launcher has no worker
  health check, so a run whose process died stays STARTED until ``dagster/max_runtime``, and an in-process
  run has no run launcher at all.)

A sensor cannot notice its own daemon being dead. What does: ``patina status --check`` (exit 0 fresh,
1 warning, 2 stale or missed; it reads the bucket and needs no daemon) run from cron or an uptime monitor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import dagster as dg

from ...catalog import Catalog
from ...config import ConfigError, PatinaConfig
from ...engine.errors import PatinaError
from ...fleets import load_roster
from ...notifications import Channels, DeliveryPolicy, Outbox, format_duration
from ...storage import StorageError
from ...watch import FreshnessWatch, RunBounds, WatchState, run_bounds
from ..policies import EXPORT_POOL
from .sensors import Alerting, _in_this_location, queue, read_run, send_pending

FRESHNESS_SENSOR = "patina_freshness"
STUCK_RUNS_SENSOR = "patina_stuck_runs"
FRESHNESS_INTERVAL_SECONDS = 600
STUCK_INTERVAL_SECONDS = 60


def _utc_now() -> datetime:
    return datetime.now(UTC)


def build_freshness_sensor(
    config: PatinaConfig,
    *,
    policy: DeliveryPolicy = DeliveryPolicy(),
    env: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] = _utc_now,
) -> dg.SensorDefinition:
    """The stale / missed watch; ``clock`` is injected by tests (a week passes in a second)."""
    watch = FreshnessWatch(config, run_bounds(config))
    channels = Channels(config.alerts, policy, env)

    @dg.sensor(
        name=FRESHNESS_SENSOR,
        minimum_interval_seconds=FRESHNESS_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Alerts once when a database has had no good backup for {config.alerts.stale_warn_after_days} days "
            f"(warning) or {config.alerts.stale_after_days} days (error), once when it recovers, and once when a "
            "nightly tick produced nothing by the time its run should have ended (schedule off, daemon down). "
            "Reads the bucket every 10 minutes."
        ),
    )
    def patina_freshness(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        data = json.loads(context.cursor) if context.cursor else {}
        state = WatchState.from_json(data.get("watch"))
        outbox = Outbox.from_json(data.get("outbox"))
        now = clock()
        tenants: list[tuple[str, str]] = []
        try:
            catalog = Catalog.for_config(config, env)
            # From each database's history index, checked against one listing (as `patina status`): every
            # 10 minutes, reading every manifest would grow with databases (a fleet's tenants) x days.
            backups = catalog.overview(config.names).backups
            for fleet in config.fleets:  # each tenant of a roster is watched as a database
                roster = load_roster(catalog.store, fleet.name, missing_ok=True)
                tenants += [(tenant.name, fleet.name) for tenant in (roster.tenants if roster else ())]
        except (
            StorageError,
            PatinaError,
            ConfigError,
        ) as exc:  # the bucket is down, a credential is not set: say so, keep the outbox
            context.log.error(
                f"freshness watch could not read the bucket: {(str(exc).splitlines() or [type(exc).__name__])[0]}"
            )
            backups = None
        alerts = watch.evaluate(backups, now, state, tenants) if backups is not None else []
        new = queue(outbox, alerts, channels, prefix=FRESHNESS_SENSOR, now=now.timestamp())
        what = f"{len(backups)} backup(s) read" if backups is not None else "bucket unreadable"
        summary = send_pending(context, outbox, channels, now=now.timestamp(), new_alerts=new, what=what)
        cursor = json.dumps({"v": 1, "watch": state.to_json(), "outbox": outbox.to_json()}, sort_keys=True)
        return dg.SensorResult(skip_reason=summary, cursor=cursor)

    return patina_freshness


def last_event_time(instance: dg.DagsterInstance, run_id: str) -> float | None:
    records = instance.event_log_storage.get_records_for_run(run_id, ascending=False, limit=1).records
    return records[0].event_log_entry.timestamp if records else None


def runs_waiting_for_a_slot(instance: dg.DagsterInstance) -> set[str]:
    """Runs with a step queued for a pool slot: quiet because they wait, not because they are stuck."""
    storage = instance.event_log_storage
    if not getattr(storage, "supports_global_concurrency_limits", False):
        return set()
    try:
        info = storage.get_concurrency_info(EXPORT_POOL)
    except Exception:
        return set()
    return {step.run_id for step in info.pending_steps if step.assigned_timestamp is None}


def stuck_reason(bounds: RunBounds, quiet_seconds: float) -> str:
    return (
        f"Patina marked this run failed: it logged nothing for {format_duration(quiet_seconds)}, past the "
        f"{format_duration(bounds.stall_seconds)} a run may stay quiet (twice dump.deadline_seconds plus the "
        "longest retry wait): its process died or hangs. Its pool slots were freed."
    )


def mark_stuck_runs(
    instance: dg.DagsterInstance,
    alerting: Alerting,
    bounds: RunBounds,
    *,
    now: float,
    accept: Callable[[dg.DagsterRun], bool] = lambda run: True,
) -> list[str]:
    """Mark failed every started Patina run quiet for longer than ``bounds.stall_seconds``; free its slots."""
    waiting = runs_waiting_for_a_slot(instance)
    marked = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]), limit=100):
        run = record.dagster_run
        if run.run_id in waiting or not accept(run):
            continue
        last = last_event_time(instance, run.run_id) or record.start_time or record.create_timestamp.timestamp()
        quiet = now - last
        if quiet < bounds.stall_seconds or not alerting.is_patina_run(read_run(instance, record)):
            continue
        try:
            instance.run_launcher.terminate(run.run_id)  # a hung process: ask it to stop (a dead one cannot)
        except Exception:
            pass
        instance.report_run_failed(run, stuck_reason(bounds, quiet))
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        marked.append(run.run_id)
    return marked


def build_stuck_runs_sensor(config: PatinaConfig, *, clock: Callable[[], float] = time.time) -> dg.SensorDefinition:
    bounds = run_bounds(config)
    alerting = Alerting(config)

    @dg.sensor(
        name=STUCK_RUNS_SENSOR,
        minimum_interval_seconds=STUCK_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Marks failed a started run that materializes Patina assets and has logged nothing for "
            f"{format_duration(bounds.stall_seconds)} (from dump.deadline_seconds and the retry settings), and "
            "frees its d1_export pool slots at once; patina_run_alerts then reports it."
        ),
    )
    def patina_stuck_runs(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        marked = mark_stuck_runs(
            context.instance, alerting, bounds, now=clock(), accept=lambda run: _in_this_location(context, run)
        )
        for run_id in marked:
            context.log.error(f"run {run_id} was stuck: marked failed, pool slots freed")
        return dg.SkipReason(
            f"{len(marked)} stuck run(s) marked failed" if marked else f"no stuck runs ({bounds.describe()})"
        )

    return patina_stuck_runs


def build_watch_sensors(
    config: PatinaConfig, *, policy: DeliveryPolicy = DeliveryPolicy(), env: Mapping[str, str] | None = None
) -> list[dg.SensorDefinition]:
    return [build_freshness_sensor(config, policy=policy, env=env), build_stuck_runs_sensor(config)]
