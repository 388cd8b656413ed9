"""What Patina watches between runs, as plain Python: stale backups, missed nights, stuck runs.

Three questions, each answered from facts the caller gathers (the bucket's catalog, Dagster's run records):

- **Stale**: how long since each database's newest *good* backup was captured? From
  ``alerts.stale_warn_after_days`` a warning, from ``alerts.stale_after_days`` (the spec's 8) an error;
  each sent once when the level is reached, and "recovered" once when a good backup arrives.
  (:class:`FreshnessWatch`.)
- **Missed**: the nightly schedule fires at 03:00 UTC and its run ends within :attr:`RunBounds.max_runtime_seconds`.
  Past that, if no database has a backup captured since the tick, the night was missed (the schedule is
  switched off, the daemon is down, the run never started): one message, and one when backups resume.
- **Stuck**: a run that logs nothing for :attr:`RunBounds.stall_seconds` is stuck (its process died, or hangs).
  The bound comes from the configuration: a dump logs nothing between its start and its end, which is at
  most ``dump.deadline_seconds``; its restore verification reads it back, bounded by as long again; a
  step retry waits at most ``retry_delay_seconds * 2**(retries-1)``, doubled by jitter. See :func:`run_bounds`.

The verdicts carry no Dagster: ``patina_assets/defs/alerts/watch.py`` runs them in sensors and delivers the alerts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from .catalog import DAILY, Backup
from .config import AlertsConfig, DumpConfig, PatinaConfig
from .notifications import MissedNight, StaleBackup

#: The nightly schedule's hour (UTC): `0 3 * * *`.
NIGHTLY_HOUR = 3
#: Margin on top of the derived bounds: process start-up, the bucket's listing, the checks' own events.
MARGIN_SECONDS = 600

OK, WARN, ERROR = "ok", "warn", "error"


# --------------------------------------------------------------------------------------------------
# Bounds
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunBounds:
    """How long a Patina run may go without logging anything, and how long a nightly run may take."""

    stall_seconds: int
    max_runtime_seconds: int

    def describe(self) -> str:
        return (
            f"no event for {self.stall_seconds // 60} min marks a run stuck; a nightly run may take "
            f"{self.max_runtime_seconds // 60} min"
        )


def longest_retry_wait(dump: DumpConfig) -> int:
    """The longest a step waits before its last retry: exponential backoff, and PLUS_MINUS jitter can double it."""
    if dump.retries == 0:
        return 0
    return 2 * dump.retry_delay_seconds * 2 ** (dump.retries - 1)


def run_bounds(config: PatinaConfig, pool_limit: int = 3) -> RunBounds:
    """The bounds for ``config``'s runs.

    stall = 2 x deadline (a dump, then its restore verification, neither logging meanwhile) + the longest
    retry wait + a margin. A nightly run holds ``ceil(databases / min(concurrency, pool))`` waves of dumps,
    each at worst every attempt to its deadline twice over, plus every retry wait.
    """
    dump = config.dump
    attempt = 2 * dump.deadline_seconds
    stall = attempt + longest_retry_wait(dump) + MARGIN_SECONDS
    at_once = max(1, min(dump.concurrency, pool_limit))
    waves = math.ceil(max(1, len(config.databases)) / at_once)
    waits = sum(2 * dump.retry_delay_seconds * 2**k for k in range(dump.retries))
    runtime = waves * ((dump.retries + 1) * attempt + waits) + MARGIN_SECONDS
    return RunBounds(stall_seconds=int(stall), max_runtime_seconds=int(runtime))


# --------------------------------------------------------------------------------------------------
# Good backups and when they were captured
# --------------------------------------------------------------------------------------------------


def captured_at(backup: Backup) -> datetime:
    """When ``backup``'s data was read (the catalog's capture time: the manifest's, or for an archive member
    that did not record it, the end of its day, the earliest its nightly can have run)."""
    return backup.captured


def is_good(backup: Backup) -> bool:
    """A backup that can be counted on: not damaged and not recorded as failing its restore verification."""
    return backup.usable


def newest_good(backups: Iterable[Backup]) -> dict[str, Backup]:
    """Each database's good backup captured last."""
    newest: dict[str, Backup] = {}
    for backup in backups:
        if not is_good(backup):
            continue
        held = newest.get(backup.database)
        if held is None or (captured_at(backup), backup.location == DAILY) > (
            captured_at(held),
            held.location == DAILY,
        ):
            newest[backup.database] = backup
    return newest


# --------------------------------------------------------------------------------------------------
# The watch
# --------------------------------------------------------------------------------------------------


def last_nightly_tick(now: datetime) -> datetime:
    """The newest 03:00 UTC at or before ``now``."""
    tick = datetime.combine(now.astimezone(UTC).date(), time(NIGHTLY_HOUR), tzinfo=UTC)
    return tick if tick <= now else tick - timedelta(days=1)


@dataclass
class WatchState:
    """What the watch has already said (kept in the sensor's cursor): each database's level, when it
    first saw each database, and the night it reported missed (None: nothing missed)."""

    levels: dict[str, str] = field(default_factory=dict)
    first_seen: dict[str, float] = field(default_factory=dict)
    started_at: float | None = None
    missed_day: str | None = None
    missed_tick: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "levels": self.levels,
            "first_seen": self.first_seen,
            "started_at": self.started_at,
            "missed_day": self.missed_day,
            "missed_tick": self.missed_tick,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> WatchState:
        data = data or {}
        return cls(
            levels={str(k): str(v) for k, v in dict(data.get("levels") or {}).items()},
            first_seen={str(k): float(v) for k, v in dict(data.get("first_seen") or {}).items()},
            started_at=data.get("started_at"),
            missed_day=data.get("missed_day"),
            missed_tick=data.get("missed_tick"),
        )


@dataclass(frozen=True)
class FreshnessWatch:
    """Turns the bucket's backups at a moment into the alerts not sent yet, updating ``WatchState``."""

    config: PatinaConfig
    bounds: RunBounds

    @property
    def settings(self) -> AlertsConfig:
        return self.config.alerts

    def level(self, age_seconds: float) -> str:
        days = age_seconds / 86400
        if days >= self.settings.stale_after_days:
            return ERROR
        if days >= self.settings.stale_warn_after_days:
            return WARN
        return OK

    def watched(self, tenants: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
        """``(name, redacted label)`` of every database watched: the configured ones, then each fleet's tenants
        (``tenants``: ``(tenant, fleet)`` pairs from the rosters; a vanished tenant is not in one)."""
        configured = [
            (db.name, f"database {i} of {len(self.config.databases)}") for i, db in enumerate(self.config.databases, 1)
        ]
        return configured + [(name, f"a tenant of fleet {fleet}") for name, fleet in tenants]

    def evaluate(
        self, backups: Iterable[Backup], now: datetime, state: WatchState, tenants: Iterable[tuple[str, str]] = ()
    ) -> list[tuple[str, Any]]:
        """``[(alert id, alert), ...]`` for what changed since ``state``; ``state`` is updated in place.
        ``tenants`` (``(tenant, fleet)`` pairs) are watched each on its own, as configured databases are."""
        backups = list(backups)
        stamp = now.timestamp()
        if state.started_at is None:
            state.started_at = stamp
        newest = newest_good(backups)
        alerts: list[tuple[str, Any]] = []
        watched = self.watched(tenants)
        for name, label in watched:
            state.first_seen.setdefault(name, stamp)
            backup = newest.get(name)
            since = captured_at(backup) if backup else datetime.fromtimestamp(state.first_seen[name], UTC)
            level = self.level((now - since).total_seconds())
            before = state.levels.get(name, OK)
            state.levels[name] = level
            if level == before or (level == WARN and before == ERROR):
                continue  # no news; an error that eases to a warning says nothing new either
            threshold = {ERROR: self.settings.stale_after_days, WARN: self.settings.stale_warn_after_days}
            alert = StaleBackup(
                database=name,
                label=label,
                level=level if level != OK else "recovered",
                threshold_days=threshold[level if level != OK else before],
                checked_at=now,
                newest_day=backup.day if backup else None,
                newest_at=captured_at(backup) if backup else None,
            )
            alerts.append((f"stale:{name}:{alert.level}:{int(stamp)}", alert))
        alerts += self._missed(backups, now, state, watching=bool(watched))
        return alerts

    def _missed(self, backups: list[Backup], now: datetime, state: WatchState, watching: bool) -> list[tuple[str, Any]]:
        newest_capture = max((captured_at(b) for b in backups if is_good(b)), default=None)
        if state.missed_day is not None:
            tick = datetime.fromtimestamp(state.missed_tick, UTC)
            if newest_capture is not None and newest_capture >= tick:
                day, state.missed_day, state.missed_tick = state.missed_day, None, None
                resumed = MissedNight(
                    expected_day=day,
                    due_at=tick + timedelta(seconds=self.bounds.max_runtime_seconds),
                    checked_at=now,
                    newest_at=newest_capture,
                    recovered=True,
                )
                return [(f"resumed:{day}", resumed)]
            return []
        tick = last_nightly_tick(now - timedelta(seconds=self.bounds.max_runtime_seconds))
        # Only nights the watch was there for: a new installation is not "missing" the nights before it.
        if tick.timestamp() < (state.started_at or now.timestamp()) or not watching:
            return []
        if newest_capture is not None and newest_capture >= tick:
            return []
        day = (tick.date() - timedelta(days=1)).isoformat()
        state.missed_day, state.missed_tick = day, tick.timestamp()
        missed = MissedNight(
            expected_day=day,
            due_at=tick + timedelta(seconds=self.bounds.max_runtime_seconds),
            checked_at=now,
            newest_at=newest_capture,
        )
        return [(f"missed:{day}", missed)]


# --------------------------------------------------------------------------------------------------
# For a check from outside (cron, an uptime monitor): the watch without its memory
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    """What `patina status --check` says: 0 all fresh, 1 a warning, 2 a database stale or a night missed."""

    exit_code: int
    problems: tuple[str, ...]


def health(config: PatinaConfig, backups: Iterable[Backup], now: datetime) -> Health:
    """The freshness verdict from the bucket alone: no Dagster, no daemon (so it notices a dead daemon)."""
    backups = list(backups)
    watch = FreshnessWatch(config, run_bounds(config))
    newest = newest_good(backups)
    problems, code = [], 0
    for db in config.databases:
        backup = newest.get(db.name)
        if backup is None:
            problems.append(f"error: {db.name} has no good backup in the bucket")
            code = 2
            continue
        days = (now - captured_at(backup)).total_seconds() / 86400
        level = watch.level(days * 86400)
        if level != OK:
            limit = config.alerts.stale_after_days if level == ERROR else config.alerts.stale_warn_after_days
            problems.append(
                f"{level}: {db.name}'s newest good backup ({backup.day}) was captured {days:.1f} days ago "
                f"(alerts.stale_{'' if level == ERROR else 'warn_'}after_days: {limit})"
            )
            code = max(code, 2 if level == ERROR else 1)
    tick = last_nightly_tick(now - timedelta(seconds=watch.bounds.max_runtime_seconds))
    newest_capture = max((captured_at(b) for b in backups if is_good(b)), default=None)
    if config.databases and newest_capture is not None and newest_capture < tick:
        problems.append(
            f"error: nothing was backed up after the nightly tick of {tick.isoformat(timespec='minutes')} "
            "(schedule switched off, or the Dagster daemon is not running)"
        )
        code = 2
    return Health(code, tuple(problems))
