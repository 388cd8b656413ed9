"""Alerts as plain Python: what a message says, and getting it to a webhook.

Three things happen that people must hear about, each a small frozen dataclass:

- :class:`RunSummary` -- a nightly (or weekly) run finished: databases successful/total, total size,
  duration, the run id as the spec's job id, and which databases failed with what error;
- :class:`CheckFailure` -- an asset check failed (an ERROR, or a WARN when warnings are wanted);
- :class:`FailureStreak` -- one database failed ``alerts.consecutive_failure_limit`` times in a row:
  the louder message;
- :class:`StaleBackup` -- a database has had no good backup for ``alerts.stale_warn_after_days`` (warn)
  or ``alerts.stale_after_days`` (error), or has one again (recovered);
- :class:`MissedNight` -- the nightly schedule should have produced backups and did not (schedule off,
  daemon down), or does again;
- :class:`FleetSummary` -- tenants of one fleet failed the same night with the same cause (a revoked token
  fails them all), failed one check the same way (a D1 change shrinks every dump), or (with
  ``notify_on_success``) were backed up: one message naming the fleet, the cause, how many of how many,
  and a few of them, instead of one per tenant's run or check. :class:`HeldFailures` holds a fleet's runs'
  alerts (in the sensor's cursor) until they can be told apart from a fleet-wide failure.

Each renders to the spec's two formats: a Discord embed (:func:`discord_message`; title, color, fields
"Databases" / "Total Size" / "Duration", footer ``Job ID: ...``, timestamp) and the generic JSON webhook
payload (:func:`webhook_payload`; ``backup_completed`` / ``backup_failed`` with ``summary`` and
``details`` / ``failures``, plus ``check_failed``, ``backup_failure_streak``, ``backup_stale`` and
``nightly_missed`` and ``fleet_backup_failed`` in the same style), and an email (:func:`email_message`: the embed as plain text).
With ``redact=True`` (``alerts.redact_names``, the spec's security rule) no database name, size,
error text or check detail leaves: a database is "database 2 of 6" (its place in patina.yaml).

:func:`deliver` posts one message with httpx: a timeout, a few retries with backoff on 5xx / 429 /
network errors, and a :class:`Delivery` saying what happened. It never raises, and the webhook URL --
a secret: whoever has it can post to the channel -- never appears in what it returns or logs
(httpx's own request log line is filtered too). :func:`send_email` does the same over SMTP with
STARTTLS, the login read from the environment at send time; :class:`Channels` sends each destination
its way.

:class:`Outbox` holds the messages not delivered yet, bounded in number and age, serializable to JSON:
the Dagster sensors keep it in their cursor, so a webhook that is down gets its messages later, each once.
When it is full, the least severe message goes first (a success note before a warning before a failure).

No Dagster here: ``patina_assets/defs/alerts/sensors.py`` turns Dagster's run records into these dataclasses.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx

from .config import AlertsConfig, EmailConfig
from .units import human_bytes

__all__ = [
    "Alert",
    "CRITICAL",
    "Channels",
    "CheckFailure",
    "DESTINATIONS",
    "DISCORD",
    "EMAIL",
    "ERROR",
    "INFO",
    "MissedNight",
    "StaleBackup",
    "WARNING",
    "email_message",
    "send_email",
    "severity",
    "DatabaseOutcome",
    "Delivery",
    "DeliveryPolicy",
    "FailureStreak",
    "FleetSummary",
    "HeldFailures",
    "fleet_cause",
    "FlushReport",
    "Outbox",
    "PendingMessage",
    "RunSummary",
    "WEBHOOK",
    "deliver",
    "destination_env",
    "discord_message",
    "format_duration",
    "format_timestamp",
    "pending",
    "render",
    "webhook_payload",
    "webhook_urls",
]

log = logging.getLogger(__name__)

DISCORD = "discord"
WEBHOOK = "webhook"
EMAIL = "email"
#: Where a message can go: a Discord webhook (embeds), a generic JSON webhook (the spec's payloads), email.
DESTINATIONS: tuple[str, ...] = (DISCORD, WEBHOOK, EMAIL)

#: How much a message matters, for the outbox's order of dropping when full (least severe first).
INFO, WARNING, ERROR, CRITICAL = 0, 1, 2, 3

# The spec's colors (Tailwind green-500 / red-500), an amber for warnings and a darker red for escalation.
GREEN = 0x22C55E
RED = 0xEF4444
AMBER = 0xF59E0B
DARK_RED = 0x991B1B

# Discord's embed limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
_TITLE_LIMIT = 256
_DESCRIPTION_LIMIT = 4096
_FIELD_VALUE_LIMIT = 1024
# Error texts are one line and short: an alert points at the run, the run has the whole story.
_ERROR_LIMIT = 300
# A check's message stays well inside Discord's 6000 characters per message.
_CHECK_DESCRIPTION_LIMIT = 1000
_METADATA_FIELDS = 8
_METADATA_VALUE_LIMIT = 200


# --------------------------------------------------------------------------------------------
# What happened
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseOutcome:
    """One database in a run: backed up (with its stored size) or not (with why)."""

    name: str
    #: What redacted messages call it: "database 2 of 6" (its place in patina.yaml).
    label: str
    succeeded: bool
    size_bytes: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class RunSummary:
    """A finished run of the nightly (or weekly) job."""

    job_id: str
    #: "Backup" for the nightly job, "Weekly Archive" for the weekly one: the title says which.
    title: str
    job_name: str
    outcomes: tuple[DatabaseOutcome, ...]
    finished_at: _dt.datetime
    duration_seconds: float | None = None
    partition: str | None = None
    #: Dagster will re-execute this run by itself (run_retries): the message says so.
    will_retry: bool = False
    #: What the run's assets are, for the count field: the spec's "Databases" (nightly), "Archives" (weekly).
    unit: str = "Databases"
    #: The run failed. Usually a database did too; if none did (a step outside them failed), ``run_error`` says why.
    run_failed: bool = False
    run_error: str | None = None
    #: The run was cancelled (by hand, or by run monitoring at ``dagster/max_runtime``) rather than failing.
    canceled: bool = False

    @property
    def successful(self) -> int:
        return sum(1 for o in self.outcomes if o.succeeded)

    @property
    def failed(self) -> int:
        return len(self.outcomes) - self.successful

    @property
    def total_bytes(self) -> int:
        return sum(o.size_bytes or 0 for o in self.outcomes if o.succeeded)

    @property
    def status(self) -> str:
        """The spec's ``status``: ``success``, ``partial_failure``, or ``failure`` (nothing backed up, or the
        run failed with every database backed up: something else broke, and nothing says "completed")."""
        if self.failed == 0:
            return "failure" if self.run_failed or not self.outcomes else "success"
        return "partial_failure" if self.successful else "failure"


@dataclass(frozen=True)
class CheckFailure:
    """An asset check that did not pass."""

    job_id: str
    check_name: str
    #: "ERROR" or "WARN" (Dagster's AssetCheckSeverity values).
    severity: str
    database: str
    label: str
    asset: str
    finished_at: _dt.datetime
    partition: str | None = None
    description: str | None = None
    #: A few of the check's metadata entries, as text (left out when redacting: they hold sizes).
    metadata: tuple[tuple[str, str], ...] = ()

    @property
    def is_error(self) -> bool:
        return self.severity == "ERROR"


@dataclass(frozen=True)
class FailureStreak:
    """One database failed ``failures`` backup attempts in a row, at least ``limit``: escalate."""

    job_id: str
    database: str
    label: str
    failures: int
    limit: int
    finished_at: _dt.datetime
    #: When the last successful backup was made and of which day, or None if there is none on record.
    last_success_at: _dt.datetime | None = None
    last_success_day: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class StaleBackup:
    """A database has had no good backup for ``threshold_days`` (``level`` "warn" or "error"), or has one
    again ("recovered"). Each level is sent once when it is reached, and "recovered" once when it ends."""

    database: str
    label: str
    #: "warn" (alerts.stale_warn_after_days), "error" (alerts.stale_after_days) or "recovered".
    level: str
    threshold_days: int
    checked_at: _dt.datetime
    #: The newest good backup: its day and when its data was read (None: there is none at all).
    newest_day: str | None = None
    newest_at: _dt.datetime | None = None

    @property
    def age_seconds(self) -> float | None:
        return None if self.newest_at is None else max(0.0, (self.checked_at - self.newest_at).total_seconds())


@dataclass(frozen=True)
class MissedNight:
    """The nightly schedule should have backed up ``expected_day`` by ``due_at`` and nothing did (the
    schedule is off, the daemon is down, the run never started), or ("recovered") backups came again."""

    expected_day: str
    due_at: _dt.datetime
    checked_at: _dt.datetime
    #: When the newest backup of any database was made (None: the bucket has none).
    newest_at: _dt.datetime | None = None
    recovered: bool = False


#: What a :class:`FleetSummary` is about: failed (or cancelled) runs, failed checks, successful runs.
FLEET_RUNS_FAILED = "run"
FLEET_CHECK_FAILED = "check"
FLEET_BACKED_UP = "success"


@dataclass(frozen=True)
class FleetSummary:
    """Tenants of fleet ``fleet`` whose runs of ``day`` ended the same way: one message for all of them.
    ``kind`` :data:`FLEET_RUNS_FAILED`: their runs failed with the same ``cause`` (see :func:`fleet_cause`);
    :data:`FLEET_CHECK_FAILED`: their check ``check`` failed (``check_severity``) with the same result;
    :data:`FLEET_BACKED_UP`: they were backed up (``alerts.notify_on_success``; ``total_bytes``).
    ``part`` 2, 3, ...: more tenants came the same way after an earlier message of this kind, cause and night
    was sent (``count_so_far`` counts them all)."""

    fleet: str
    day: str
    cause: str
    #: Distinct tenants in the message, and a few of them by name (sorted).
    count: int
    names: tuple[str, ...]
    #: Distinct tenants with a run of this fleet and day (any status), and how many of those are not finished.
    tenants: int
    running: int
    job_name: str
    #: The first of the runs (the footer's job id), and when the newest of them finished.
    job_id: str
    finished_at: _dt.datetime
    part: int = 1
    count_so_far: int = 0
    #: Of the failed tenants, those that failed ``limit`` backup attempts in a row or more (the streak alert,
    #: folded in): how many, and a few by name.
    escalated: int = 0
    escalated_names: tuple[str, ...] = ()
    limit: int = 0
    canceled: bool = False
    kind: str = FLEET_RUNS_FAILED
    check: str = ""
    check_severity: str = "ERROR"
    #: The fleet's asset (where the UI shows a check's evaluations per tenant and day).
    asset: str = ""
    total_bytes: int = 0

    @property
    def ui_hint(self) -> str:
        """Where the whole list is: every run and check evaluation is in the UI, every tenant's newest backup
        in `patina status`."""
        if self.kind == FLEET_CHECK_FAILED:
            return (
                f"the Dagster UI's asset {self.asset}, check {self.check}: its evaluation per partition "
                f"(day {self.day} x tenant); or the Runs page filtered by tag dagster/partition/day={self.day} "
                f"(job {self.job_name})"
            )
        status = "Success" if self.kind == FLEET_BACKED_UP else "Failure"
        return (
            f"the Dagster UI's Runs page, filtered by status {status} and tag dagster/partition/day={self.day} "
            f"(job {self.job_name}); or `patina status`, a line per tenant with its newest backup"
        )


Alert = RunSummary | CheckFailure | FailureStreak | StaleBackup | MissedNight | FleetSummary


def severity(alert: Alert) -> int:
    """:data:`INFO` (a success, a recovery), :data:`WARNING`, :data:`ERROR` or :data:`CRITICAL` (an escalation,
    a database without a good backup for ``stale_after_days``)."""
    if isinstance(alert, RunSummary):
        return INFO if alert.status == "success" and not alert.canceled else ERROR
    if isinstance(alert, CheckFailure):
        return ERROR if alert.is_error else WARNING
    if isinstance(alert, FailureStreak):
        return CRITICAL
    if isinstance(alert, StaleBackup):
        return {"warn": WARNING, "error": CRITICAL}.get(alert.level, INFO)
    if isinstance(alert, MissedNight):
        return INFO if alert.recovered else ERROR
    if isinstance(alert, FleetSummary):
        if alert.kind == FLEET_BACKED_UP:
            return INFO
        if alert.kind == FLEET_CHECK_FAILED:
            return ERROR if alert.check_severity == "ERROR" else WARNING
        return CRITICAL if alert.escalated else ERROR
    raise TypeError(f"not an alert: {type(alert).__name__}")


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    """``45.2s`` under a minute (the spec's ``toFixed(1)``), ``12m 05s`` and ``1h 02m`` beyond."""
    if seconds is None:
        return "unknown"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def format_timestamp(moment: _dt.datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as in the spec's payloads (``2024-12-08T03:01:30Z``)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    return moment.astimezone(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def one_line(text: str | None, limit: int = _ERROR_LIMIT) -> str:
    """The first non-empty line of ``text``, cut to ``limit`` characters."""
    if not text:
        return ""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field(name: str, value: str, inline: bool = True) -> dict[str, Any]:
    return {"name": name, "value": _cut(value or "-", _FIELD_VALUE_LIMIT), "inline": inline}


def _embed(
    title: str,
    color: int,
    fields: list[dict],
    job_id: str | None,
    finished_at: _dt.datetime,
    description: str | None = None,
    footer: str | None = None,
) -> dict[str, Any]:
    embed: dict[str, Any] = {"title": _cut(title, _TITLE_LIMIT), "color": color}
    if description:
        embed["description"] = _cut(description, _DESCRIPTION_LIMIT)
    embed["fields"] = fields
    embed["footer"] = {"text": footer or f"Job ID: {job_id}"}
    embed["timestamp"] = format_timestamp(finished_at)
    return embed


# --------------------------------------------------------------------------------------------
# Discord
# --------------------------------------------------------------------------------------------


def discord_message(alert: Alert, *, redact: bool = False) -> dict[str, Any]:
    """The Discord webhook body for ``alert`` (the spec's ``formatDiscordMessage``, extended)."""
    if isinstance(alert, RunSummary):
        return _discord_run(alert, redact)
    if isinstance(alert, CheckFailure):
        return _discord_check(alert, redact)
    if isinstance(alert, FailureStreak):
        return _discord_streak(alert, redact)
    if isinstance(alert, StaleBackup):
        return _discord_stale(alert, redact)
    if isinstance(alert, MissedNight):
        return _discord_missed(alert)
    if isinstance(alert, FleetSummary):
        return _discord_fleet(alert, redact)
    raise TypeError(f"not an alert: {type(alert).__name__}")


_FRESHNESS_FOOTER = "Patina freshness watch"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    days = seconds / 86400
    return f"{days:.1f} days ago" if days >= 1 else f"{format_duration(seconds)} ago"


def _newest(alert: StaleBackup) -> str:
    if alert.newest_at is None:
        return "none in the bucket"
    return f"{alert.newest_day}, data read {format_timestamp(alert.newest_at)} ({_age(alert.age_seconds)})"


def _discord_stale(alert: StaleBackup, redact: bool) -> dict[str, Any]:
    subject = alert.label if redact else alert.database
    if alert.level == "recovered":
        title, color = f"✅ Patina: {subject} has a good backup again", GREEN
        description = "A good backup was stored after a stretch without one."
    elif alert.level == "error":
        title, color = f"🚨 Patina: no good backup of {subject} for {alert.threshold_days} days", DARK_RED
        description = (
            "The newest backup that can be restored keeps getting older. Check the nightly runs "
            "(failures, a switched-off schedule, a stopped daemon) and `patina status`."
        )
    else:
        title, color = f"⚠️ Patina: no good backup of {subject} for {alert.threshold_days} days", AMBER
        description = "Nightly backups should make a new one every day."
    fields = [_field("Database", subject), _field("Newest good backup", _newest(alert), inline=False)]
    return {"embeds": [_embed(title, color, fields, None, alert.checked_at, description, _FRESHNESS_FOOTER)]}


def _discord_missed(alert: MissedNight) -> dict[str, Any]:
    newest = (
        "none in the bucket"
        if alert.newest_at is None
        else (f"{format_timestamp(alert.newest_at)} ({_age((alert.checked_at - alert.newest_at).total_seconds())})")
    )
    if alert.recovered:
        title, color = "✅ Patina: nightly backups are running again", GREEN
        description = f"A backup was stored after the missed night of {alert.expected_day}."
    else:
        title, color = f"❌ Patina: the nightly backup of {alert.expected_day} never ran", RED
        description = (
            "Nothing was backed up by the time the nightly run should have finished: the schedule "
            "may be switched off, or the Dagster daemon stopped. Start it (`patina-daemon run`) or "
            "turn the schedule on, then backfill the missed days."
        )
    fields = [_field("Expected by", format_timestamp(alert.due_at)), _field("Newest backup", newest, inline=False)]
    return {"embeds": [_embed(title, color, fields, None, alert.checked_at, description, _FRESHNESS_FOOTER)]}


def _run_title(run: RunSummary) -> str:
    if run.canceled:
        return f"🛑 Patina {run.title} Canceled"
    if run.status == "success":
        return f"✅ Patina {run.title} Completed"
    if run.status == "partial_failure":
        return f"⚠️ Patina {run.title} Partially Failed"
    return f"❌ Patina {run.title} Failed"


def _discord_run(run: RunSummary, redact: bool) -> dict[str, Any]:
    fields = [_field(run.unit, f"{run.successful}/{len(run.outcomes)} successful")]
    if not redact:
        fields.append(_field("Total Size", human_bytes(run.total_bytes)))
    fields.append(_field("Duration", format_duration(run.duration_seconds)))
    if run.partition:
        fields.append(_field("Day", run.partition))
    failed = [o for o in run.outcomes if not o.succeeded]
    if failed:
        if redact:
            lines = [o.label for o in failed]
        else:
            lines = [f"**{o.name}**: {one_line(o.error) or 'did not run'}" for o in failed]
        fields.append(_field("Failed", "\n".join(lines), inline=False))
    elif run.run_failed and not redact:
        fields.append(_field("Error", one_line(run.run_error) or "unknown", inline=False))
    if run.will_retry:
        fields.append(_field("Retry", "Dagster re-executes this run by itself", inline=False))
    color = GREEN if run.status == "success" else RED
    return {"embeds": [_embed(_run_title(run), color, fields, run.job_id, run.finished_at)]}


def _discord_check(check: CheckFailure, redact: bool) -> dict[str, Any]:
    if check.is_error:
        title, color = f"❌ Patina check failed: {check.check_name}", RED
    else:
        title, color = f"⚠️ Patina check warning: {check.check_name}", AMBER
    fields = [
        _field("Database", check.label if redact else check.database),
        _field("Check", check.check_name),
        _field("Severity", check.severity),
    ]
    if check.partition:
        fields.append(_field("Day", check.partition))
    if not redact:
        for name, value in check.metadata[:_METADATA_FIELDS]:
            fields.append(_field(_cut(name, _TITLE_LIMIT), _cut(value, _METADATA_VALUE_LIMIT)))
    description = None if redact else _cut(check.description or "", _CHECK_DESCRIPTION_LIMIT)
    return {"embeds": [_embed(title, color, fields, check.job_id, check.finished_at, description)]}


def _streak_subject(streak: FailureStreak, redact: bool) -> str:
    return "a database" if redact else streak.database


def _last_success(streak: FailureStreak) -> str:
    if streak.last_success_at is None:
        return "none on record"
    day = f"backup of {streak.last_success_day}, " if streak.last_success_day else ""
    return f"{day}made {format_timestamp(streak.last_success_at)}"


def _discord_streak(streak: FailureStreak, redact: bool) -> dict[str, Any]:
    subject = _streak_subject(streak, redact)
    headline = f"Patina: {subject} failed {streak.failures} backups in a row"
    fields = [
        _field("Database", streak.label if redact else streak.database),
        _field("Consecutive failures", str(streak.failures)),
        _field("Escalates at", str(streak.limit)),
        _field("Last successful backup", _last_success(streak), inline=False),
    ]
    if streak.error and not redact:
        fields.append(_field("Latest error", one_line(streak.error), inline=False))
    description = (
        "Single failures may be transient; this many in a row is a systemic problem. "
        "Until it is fixed, the newest backup of this database keeps getting older."
    )
    return {
        # "@here" pings whoever is online; allowed_mentions makes the ping explicit rather than implied.
        "content": f"@here {headline}",
        "allowed_mentions": {"parse": ["everyone"]},
        "embeds": [_embed(f"🚨 {headline}", DARK_RED, fields, streak.job_id, streak.finished_at, description)],
    }


#: How many tenants a fleet message names; the rest are counted (and the UI or `patina status` has them all).
FLEET_NAMES_SHOWN = 5


def _some(names: Sequence[str], total: int) -> str:
    shown = ", ".join(names[:FLEET_NAMES_SHOWN])
    more = total - min(len(names), FLEET_NAMES_SHOWN)
    return f"{shown} and {more} more" if more > 0 else shown


def _fleet_what(alert: FleetSummary) -> str:
    if alert.kind == FLEET_BACKED_UP:
        return "were backed up"
    if alert.kind == FLEET_CHECK_FAILED:
        return f"{'failed' if alert.check_severity == 'ERROR' else 'warned on'} check {alert.check}"
    return "were cancelled" if alert.canceled else "failed"


def _fleet_headline(alert: FleetSummary) -> str:
    what = _fleet_what(alert)
    if alert.part > 1:
        return f"Patina: {alert.count} more tenants of fleet {alert.fleet} {what} on {alert.day}, the same way"
    return f"Patina: {alert.count} of {alert.tenants} tenants of fleet {alert.fleet} {what} on {alert.day}"


#: Why a fleet's message is one message, by its kind.
_FLEET_WHY = {
    FLEET_RUNS_FAILED: "These runs failed with the same cause, so this is one message instead of one per tenant: "
    "something they share (the Cloudflare token, the account, the bucket) is the likely problem.",
    FLEET_CHECK_FAILED: "This check failed the same way for these tenants, so this is one message instead of one "
    "per tenant: a change they share (D1, the export, the schema they all run) is the likely cause.",
    FLEET_BACKED_UP: "One message for the night's successful tenants instead of one per tenant.",
}


def _discord_fleet(alert: FleetSummary, redact: bool) -> dict[str, Any]:
    headline = _fleet_headline(alert)
    counted = f"{alert.count} of the {alert.tenants} tenants with a run that night"
    if alert.running:
        counted += f" ({alert.running} not finished yet)"
    if alert.part > 1:
        counted += f"; {alert.count_so_far} in all the same way (message {alert.part})"
    label = "Backed up" if alert.kind == FLEET_BACKED_UP else "Failed"
    fields = [_field("Fleet", alert.fleet), _field("Day", alert.day)]
    if alert.kind == FLEET_CHECK_FAILED:
        fields += [_field("Check", alert.check), _field("Severity", alert.check_severity)]
    fields.append(_field(label, counted, inline=False))
    if alert.kind == FLEET_BACKED_UP and not redact:
        fields.append(_field("Total Size", human_bytes(alert.total_bytes)))
    if not redact:
        if alert.kind != FLEET_BACKED_UP:
            fields.append(
                _field("Cause" if alert.kind == FLEET_RUNS_FAILED else "Result", alert.cause or "unknown", inline=False)
            )
        fields.append(_field("Tenants", _some(alert.names, alert.count), inline=False))
    if alert.escalated:
        who = "" if redact else ": " + _some(alert.escalated_names, alert.escalated)
        fields.append(_field(f"{alert.limit}+ failures in a row", f"{alert.escalated} of them{who}", inline=False))
    fields.append(_field("All of them", alert.ui_hint, inline=False))
    message: dict[str, Any] = {}
    if alert.escalated:  # the streak alert's ping, once for the fleet
        message = {"content": f"@here {headline}", "allowed_mentions": {"parse": ["everyone"]}}
    if alert.kind == FLEET_BACKED_UP:
        color, icon = GREEN, "✅"
    elif alert.kind == FLEET_CHECK_FAILED and alert.check_severity != "ERROR":
        color, icon = AMBER, "⚠️"
    else:
        color, icon = (DARK_RED, "🚨") if alert.escalated else (RED, "❌")
    embed = _embed(f"{icon} {headline}", color, fields, alert.job_id, alert.finished_at, _FLEET_WHY[alert.kind])
    return {**message, "embeds": [embed]}


# --------------------------------------------------------------------------------------------
# Generic JSON webhook
# --------------------------------------------------------------------------------------------


def webhook_payload(alert: Alert, *, redact: bool = False) -> dict[str, Any]:
    """The generic webhook body for ``alert``: the spec's ``backup_completed`` / ``backup_failed``
    payloads, and ``check_failed`` / ``backup_failure_streak`` in the same shape."""
    if isinstance(alert, RunSummary):
        return _webhook_run(alert, redact)
    if isinstance(alert, CheckFailure):
        return _webhook_check(alert, redact)
    if isinstance(alert, FailureStreak):
        return _webhook_streak(alert, redact)
    if isinstance(alert, StaleBackup):
        return _webhook_stale(alert, redact)
    if isinstance(alert, MissedNight):
        return _webhook_missed(alert)
    if isinstance(alert, FleetSummary):
        return _webhook_fleet(alert, redact)
    raise TypeError(f"not an alert: {type(alert).__name__}")


def _webhook_stale(alert: StaleBackup, redact: bool) -> dict[str, Any]:
    newest = None
    if alert.newest_at is not None:
        newest = {"day": alert.newest_day, "capturedAt": format_timestamp(alert.newest_at)}
    return {
        "type": "backup_stale_recovered" if alert.level == "recovered" else "backup_stale",
        "status": {"warn": "warning", "error": "error"}.get(alert.level, "recovered"),
        "timestamp": format_timestamp(alert.checked_at),
        "database": alert.label if redact else alert.database,
        "thresholdDays": alert.threshold_days,
        "newestGoodBackup": newest,
    }


def _webhook_missed(alert: MissedNight) -> dict[str, Any]:
    return {
        "type": "nightly_resumed" if alert.recovered else "nightly_missed",
        "status": "recovered" if alert.recovered else "error",
        "timestamp": format_timestamp(alert.checked_at),
        "day": alert.expected_day,
        "expectedBy": format_timestamp(alert.due_at),
        "newestBackupAt": format_timestamp(alert.newest_at) if alert.newest_at else None,
    }


# --------------------------------------------------------------------------------------------
# Email
# --------------------------------------------------------------------------------------------


def email_message(alert: Alert, *, redact: bool = False) -> dict[str, Any]:
    """``{"subject", "text"}``: the Discord message as plain text (one source for what a message says)."""
    discord = discord_message(alert, redact=redact)
    embed = discord["embeds"][0]
    lines = [discord["content"].removeprefix("@here ")] if discord.get("content") else []
    if embed.get("description"):
        lines.append(embed["description"])
    if lines:
        lines.append("")
    for item in embed["fields"]:
        lines.append(f"{item['name']}: {item['value'].replace('**', '')}")
    lines += ["", embed["footer"]["text"], embed["timestamp"]]
    subject = embed["title"].split(" ", 1)[1] if not embed["title"][:1].isascii() else embed["title"]
    return {"subject": subject, "text": "\n".join(lines) + "\n"}


def _webhook_run(run: RunSummary, redact: bool) -> dict[str, Any]:
    summary: dict[str, Any] = {"successful": run.successful, "failed": run.failed}
    if not redact:
        summary["totalSize"] = human_bytes(run.total_bytes)
    summary["duration"] = format_duration(run.duration_seconds)
    payload: dict[str, Any] = {
        "type": "backup_completed" if run.status == "success" else "backup_failed",
        "jobId": run.job_id,
        "job": run.job_name,
        "status": run.status,
        "timestamp": format_timestamp(run.finished_at),
        "day": run.partition,
        "summary": summary,
    }
    if run.status == "success":
        payload["details"] = [
            {"database": o.label, "status": "success"}
            if redact
            else {"database": o.name, "status": "success", "size": human_bytes(o.size_bytes or 0)}
            for o in run.outcomes
        ]
    else:
        payload["failures"] = [
            {"database": o.label} if redact else {"database": o.name, "error": one_line(o.error) or "did not run"}
            for o in run.outcomes
            if not o.succeeded
        ]
        if run.failed == 0 and not redact:
            payload["error"] = one_line(run.run_error) or "unknown"
        payload["canceled"] = run.canceled
        payload["willRetry"] = run.will_retry
    return payload


def _webhook_check(check: CheckFailure, redact: bool) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "name": check.check_name,
        "severity": check.severity,
        "database": check.label if redact else check.database,
        "day": check.partition,
    }
    if not redact:
        detail["asset"] = check.asset
        detail["description"] = check.description
        detail["metadata"] = dict(check.metadata)
    return {
        "type": "check_failed",
        "jobId": check.job_id,
        "status": "error" if check.is_error else "warning",
        "timestamp": format_timestamp(check.finished_at),
        "check": detail,
    }


def _webhook_streak(streak: FailureStreak, redact: bool) -> dict[str, Any]:
    last = None
    if streak.last_success_at is not None:
        last = {"timestamp": format_timestamp(streak.last_success_at), "day": streak.last_success_day}
    payload: dict[str, Any] = {
        "type": "backup_failure_streak",
        "jobId": streak.job_id,
        "status": "escalated",
        "timestamp": format_timestamp(streak.finished_at),
        "database": streak.label if redact else streak.database,
        "consecutiveFailures": streak.failures,
        "threshold": streak.limit,
        "lastSuccess": last,
    }
    if not redact:
        payload["error"] = one_line(streak.error) or None
    return payload


_FLEET_TYPES = {
    FLEET_RUNS_FAILED: "fleet_backup_failed",
    FLEET_CHECK_FAILED: "fleet_check_failed",
    FLEET_BACKED_UP: "fleet_backup_completed",
}


def _webhook_fleet(alert: FleetSummary, redact: bool) -> dict[str, Any]:
    counted = "successful" if alert.kind == FLEET_BACKED_UP else "failed"
    summary: dict[str, Any] = {counted: alert.count, "tenants": alert.tenants, "notFinished": alert.running}
    if alert.kind == FLEET_BACKED_UP and not redact:
        summary["totalSize"] = human_bytes(alert.total_bytes)
    if alert.kind == FLEET_BACKED_UP:
        status = "success"
    elif alert.kind == FLEET_CHECK_FAILED:
        status = "error" if alert.check_severity == "ERROR" else "warning"
    else:
        status = "escalated" if alert.escalated else "failure"
    payload: dict[str, Any] = {
        "type": _FLEET_TYPES[alert.kind],
        "jobId": alert.job_id,
        "job": alert.job_name,
        "status": status,
        "timestamp": format_timestamp(alert.finished_at),
        "fleet": alert.fleet,
        "day": alert.day,
        "summary": summary,
        "part": alert.part,
        f"{counted}SoFar": alert.count_so_far or alert.count,
        "seeAll": alert.ui_hint,
    }
    if alert.kind == FLEET_RUNS_FAILED:
        payload.update(escalated=alert.escalated, threshold=alert.limit, canceled=alert.canceled)
    if alert.kind == FLEET_CHECK_FAILED:
        payload["check"] = {"name": alert.check, "severity": alert.check_severity, "asset": alert.asset}
    if not redact:
        if alert.kind != FLEET_BACKED_UP:
            payload["cause"] = alert.cause
        payload["tenants"] = list(alert.names[:FLEET_NAMES_SHOWN])
        if alert.kind == FLEET_RUNS_FAILED:
            payload["escalatedTenants"] = list(alert.escalated_names[:FLEET_NAMES_SHOWN])
    return payload


def render(alert: Alert, destination: str, *, redact: bool = False) -> dict[str, Any]:
    """The body of ``alert`` for ``destination`` (:data:`DISCORD`, :data:`WEBHOOK` or :data:`EMAIL`)."""
    if destination == DISCORD:
        return discord_message(alert, redact=redact)
    if destination == WEBHOOK:
        return webhook_payload(alert, redact=redact)
    if destination == EMAIL:
        return email_message(alert, redact=redact)
    raise ValueError(f"unknown alert destination {destination!r}; expected one of {', '.join(DESTINATIONS)}")


# --------------------------------------------------------------------------------------------
# Where messages go
# --------------------------------------------------------------------------------------------


def destination_env(settings: AlertsConfig, destination: str) -> str | None:
    """The NAME of the environment variable holding ``destination``'s URL (for messages; never the URL);
    for email, the one holding the password."""
    if destination == EMAIL:
        return settings.email.password_env if settings.email else None
    return settings.discord_webhook_env if destination == DISCORD else settings.webhook_env


def webhook_urls(settings: AlertsConfig, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{destination: url}`` for each webhook whose environment variable is set, read now."""
    urls = {DISCORD: settings.discord_webhook_url(env), WEBHOOK: settings.webhook_url(env)}
    return {destination: url for destination, url in urls.items() if url}


# --------------------------------------------------------------------------------------------
# Delivery
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard one :func:`deliver` call tries. The sensors keep undelivered messages for later ticks,
    so a call stays short: a sensor tick has about a minute in all."""

    timeout_seconds: float = 5.0
    attempts: int = 3
    backoff_seconds: float = 0.5
    #: A 429's Retry-After is honored up to this long; beyond, the message waits for a later tick.
    max_retry_after_seconds: float = 5.0


@dataclass(frozen=True)
class Delivery:
    """What became of one message. ``reason`` is safe to log: it never holds the URL."""

    delivered: bool
    attempts: int
    status: int | None = None
    #: The webhook refused the message itself (400, 413, ...): sending it again cannot help.
    rejected: bool = False
    reason: str = ""

    @property
    def retry_later(self) -> bool:
        return not self.delivered and not self.rejected


# 401/403/404 mean a revoked or mistyped webhook: fixable by setting the variable again, so the message
# waits rather than being dropped, but retrying at once would not help. Other 4xx: the message is at fault.
_FIX_THE_URL = {401, 403, 404}
_TRANSIENT = {408, 425, 429}


def deliver(
    url: str,
    payload: Mapping[str, Any],
    policy: DeliveryPolicy = DeliveryPolicy(),
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST ``payload`` as JSON to ``url``; retry 5xx, 429 and network trouble with exponential backoff.

    Never raises: a webhook that is down must not break whatever is reporting. The URL is a secret and
    appears in nothing this returns or logs.
    """
    _SECRET_URLS.add(url)
    attempts = 0
    status: int | None = None
    reason = "not attempted"
    try:
        body = json.dumps(payload, ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        return Delivery(False, 0, rejected=True, reason=f"message is not JSON ({type(exc).__name__})")
    try:
        with httpx.Client(timeout=policy.timeout_seconds, transport=transport, follow_redirects=False) as client:
            while attempts < max(1, policy.attempts):
                attempts += 1
                wait = policy.backoff_seconds * (2 ** (attempts - 1))
                try:
                    response = client.post(
                        url, content=body, headers={"Content-Type": "application/json", "User-Agent": "patina-alerts"}
                    )
                except httpx.TimeoutException:
                    status, reason = None, f"timed out after {policy.timeout_seconds:g}s"
                except httpx.TransportError as exc:
                    # The exception text can quote the URL: name the kind of failure only.
                    status, reason = None, f"could not connect ({type(exc).__name__})"
                else:
                    status = response.status_code
                    if 200 <= status < 300:
                        return Delivery(True, attempts, status, reason=f"HTTP {status}")
                    reason = f"HTTP {status}"
                    if status in _FIX_THE_URL:
                        return Delivery(
                            False, attempts, status, reason=f"{reason}: the webhook URL is wrong or revoked"
                        )
                    if 400 <= status < 500 and status not in _TRANSIENT:
                        return Delivery(
                            False, attempts, status, rejected=True, reason=f"{reason}: the webhook refused the message"
                        )
                    retry_after = _retry_after(response)
                    if retry_after is not None:
                        if retry_after > policy.max_retry_after_seconds:
                            return Delivery(False, attempts, status, reason=f"{reason}: asked to wait {retry_after:g}s")
                        wait = max(wait, retry_after)
                if attempts < policy.attempts and wait > 0:
                    sleep(wait)
    except Exception as exc:  # never into the caller; never the URL (str(exc) might hold it)
        return Delivery(False, attempts, status, reason=f"unexpected {type(exc).__name__}")
    return Delivery(False, attempts, status, reason=reason)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None and response.status_code == 429:
        try:  # Discord also says it in the body, in seconds
            value = response.json().get("retry_after")
        except Exception:
            value = None
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


# httpx logs every request at INFO with its full URL ("HTTP Request: POST https://discord.com/api/webhooks/
# <id>/<token> ..."). Whoever reads the logs would get the webhook; this filter hides the URLs we post to.
_SECRET_URLS: set[str] = set()
_HIDDEN = "<webhook URL hidden>"


class _HideWebhookUrls(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRET_URLS:
            if isinstance(record.args, tuple):
                record.args = tuple(_HIDDEN if _is_secret(arg) else arg for arg in record.args)
            if isinstance(record.msg, str) and _is_secret(record.msg):
                record.msg = _hide(record.msg)
        return True


def _is_secret(value: object) -> bool:
    text = str(value)
    return any(url in text for url in _SECRET_URLS)


def _hide(text: str) -> str:
    for url in _SECRET_URLS:
        text = text.replace(url, _HIDDEN)
    return text


# (httpcore logs hosts and ports, never paths: the token part of a webhook URL stays out of its lines.)
if not any(isinstance(f, _HideWebhookUrls) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(_HideWebhookUrls())


# SMTP replies that mean "try again later" (RFC 5321 4yz); 5yz other than a refused login: the message is at fault.
_SMTP_LOGIN_REFUSED = (530, 534, 535)


def email_target(settings: EmailConfig) -> str:
    """What an outbox shows for the email channel: the server, never the login (``smtp://host:587``)."""
    return f"smtp://{settings.host}:{settings.port}"


def send_email(
    settings: EmailConfig,
    body: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    *,
    smtp: Callable[..., smtplib.SMTP] = smtplib.SMTP,
) -> Delivery:
    """Send one message (``{"subject", "text"}``) over SMTP with STARTTLS, the login from the environment
    variables ``settings`` names. Never raises; the password appears in nothing it returns or logs (the
    server's own reply text is left out too: a reply may echo what it was sent)."""
    try:
        login = settings.credentials(env)
    except Exception as exc:  # the variable is not set: fixable, so the message waits
        return Delivery(False, 0, reason=str(exc).splitlines()[0][:200])
    message = EmailMessage()
    message["Subject"] = str(body.get("subject", "Patina"))
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.to)
    message.set_content(str(body.get("text", "")))
    try:
        context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        return Delivery(False, 0, reason=f"cannot use alerts.email.ca_file {settings.ca_file}: {type(exc).__name__}")
    try:
        with smtp(settings.host, settings.port, timeout=settings.timeout_seconds) as client:
            client.ehlo()
            client.starttls(context=context)  # refuses to go on in clear: SMTPNotSupportedError
            client.ehlo()
            if login is not None:
                client.login(*login)
            client.send_message(message)
    except smtplib.SMTPNotSupportedError:
        return Delivery(False, 1, reason="the mail server does not offer STARTTLS: Patina never sends in clear")
    except smtplib.SMTPAuthenticationError as exc:
        return Delivery(
            False,
            1,
            exc.smtp_code,
            reason=f"SMTP {exc.smtp_code}: the login was refused "
            f"(check ${settings.username_env} / ${settings.password_env})",
        )
    except smtplib.SMTPResponseException as exc:
        code = exc.smtp_code
        rejected = 500 <= code < 600 and code not in _SMTP_LOGIN_REFUSED
        return Delivery(False, 1, code, rejected=rejected, reason=f"SMTP {code}")
    except smtplib.SMTPRecipientsRefused:
        return Delivery(False, 1, rejected=True, reason="every recipient was refused")
    except ssl.SSLError as exc:
        return Delivery(False, 1, reason=f"TLS failed ({type(exc).__name__}: {exc.reason or 'handshake'})")
    except (OSError, smtplib.SMTPException) as exc:
        return Delivery(False, 1, reason=f"could not send ({type(exc).__name__})")
    return Delivery(True, 1, 250, reason="SMTP 250")


@dataclass
class Channels:
    """Where messages go and how each is sent: webhooks by HTTP POST, email by SMTP. ``targets()`` are read
    from the environment at each call; an email target is the server's address (the login stays in the
    environment until a message is sent)."""

    settings: AlertsConfig
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    env: Mapping[str, str] | None = None

    def targets(self) -> dict[str, str]:
        found = webhook_urls(self.settings, self.env)
        if self.settings.email is not None:
            found[EMAIL] = email_target(self.settings.email)
        return found

    def send(self, target: str, body: Mapping[str, Any]) -> Delivery:
        if self.settings.email is not None and target == email_target(self.settings.email):
            return send_email(self.settings.email, body, self.env)
        return deliver(target, body, self.policy)

    def missing(self, destination: str) -> str:
        return f"${destination_env(self.settings, destination)} is not set"

    def names(self, destinations: Iterable[str]) -> dict[str, str]:
        """``discord ($PATINA_DISCORD_WEBHOOK)``: how logs name a destination."""
        return {
            d: f"{d} (${destination_env(self.settings, d)})"
            if d != EMAIL
            else f"email ({email_target(self.settings.email)})"
            for d in destinations
            if d != EMAIL or self.settings.email is not None
        }


# --------------------------------------------------------------------------------------------
# A fleet's failures, held until they can be told apart from a fleet-wide failure
# --------------------------------------------------------------------------------------------

_DATABASE_ID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def fleet_cause(error: str | None, tenant: str, *, day: str | None = None) -> str:
    """One tenant's error as the cause its fleet's tenants may share: its first line with the tenant's name
    and any D1 database id (a uuid) replaced, so a revoked token reads the same for every tenant. The text
    is the error the run message would show (it holds no token: the engine's errors never quote one).
    With ``day`` (a check's result, which quotes what it measured): the day, and every number, replaced
    too, so "412 bytes of SQL is 8% of the average" reads the same for each tenant whose dump shrank."""
    text = one_line(error, 10 * _ERROR_LIMIT) or "did not run"
    text = re.sub(rf"(?<![\w.-]){re.escape(tenant)}(?![\w-])", "<tenant>", text)
    text = _DATABASE_ID.sub("<database id>", text)
    if day is not None:
        text = _NUMBER.sub("<n>", text.replace(day, "<day>"))
    return _cut(text, _ERROR_LIMIT)


def fleet_group_key(fleet: str, day: str, cause: str, kind: str = FLEET_RUNS_FAILED) -> str:
    """``tenants|2026-11-30|<12 hex>``: one fleet, one night, one kind and cause (hashed: the key goes into
    ids; a failed run's kind adds nothing to the hash, so its keys are those of before checks were grouped)."""
    what = cause if kind == FLEET_RUNS_FAILED else f"{kind}\n{cause}"
    return f"{fleet}|{day}|{hashlib.sha256(what.encode()).hexdigest()[:12]}"


@dataclass
class HeldGroup:
    """Alerts of one fleet's tenants, one night, one kind and cause, not sent yet: failed runs
    (:data:`FLEET_RUNS_FAILED`), one check's failures (:data:`FLEET_CHECK_FAILED`: ``kind`` is
    ``check:<name>:<severity>``), successful runs (:data:`FLEET_BACKED_UP`)."""

    fleet: str
    day: str
    cause: str
    job_name: str
    #: When the tick that read its first run ran (it is sent at the latest ``hold_seconds`` after).
    held_since: float
    job_id: str
    finished_at: float
    #: Distinct tenants, in the order their runs were read.
    tenants: list[str] = field(default_factory=list)
    #: While it holds one tenant only: that tenant's runs, to be sent as they would be alone.
    runs: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    canceled: bool = True
    kind: str = FLEET_RUNS_FAILED
    #: The stored bytes of the tenants' backups (a success summary's total size).
    total_bytes: int = 0

    @property
    def key(self) -> str:
        return fleet_group_key(self.fleet, self.day, self.cause, self.kind)


@dataclass
class HeldFailures:
    """A fleet's runs' alerts grouped by (fleet, night, kind, cause) until they are due (:meth:`due`): the sensor
    keeps this in its cursor beside its position, so a run read once is in exactly one group, whichever tick
    read it. ``sent`` counts what went out per group key (messages, tenants, when), so a failure of the same
    cause after a message is a follow-up ("12 more"); kept for two days."""

    groups: list[HeldGroup] = field(default_factory=list)
    sent: dict[str, list[float]] = field(default_factory=dict)

    def add(
        self,
        *,
        fleet: str,
        day: str,
        cause: str,
        job_name: str,
        tenant: str,
        run_id: str,
        finished_at: float,
        escalated: bool,
        canceled: bool,
        now: float,
        kind: str = FLEET_RUNS_FAILED,
        size_bytes: int = 0,
    ) -> HeldGroup:
        key = fleet_group_key(fleet, day, cause, kind)
        group = next((g for g in self.groups if g.key == key), None)
        if group is None:
            group = HeldGroup(
                fleet, day, cause, job_name, held_since=now, job_id=run_id, finished_at=finished_at, kind=kind
            )
            self.groups.append(group)
        if tenant not in group.tenants:
            group.tenants.append(tenant)
            group.total_bytes += size_bytes
        group.runs = [*group.runs, run_id] if len(group.tenants) == 1 else []
        if escalated and tenant not in group.escalated:
            group.escalated.append(tenant)
        group.finished_at = max(group.finished_at, finished_at)
        group.canceled = group.canceled and canceled
        return group

    def due(self, now: float, hold_seconds: float, settled: Callable[[HeldGroup], bool]) -> list[HeldGroup]:
        """Take out the groups to send now: those held ``hold_seconds`` (the bound on any failure's delay),
        and those ``settled`` says are complete (no run of their night left to finish)."""
        ready = [g for g in self.groups if now - g.held_since >= hold_seconds or settled(g)]
        self.groups = [g for g in self.groups if g not in ready]
        return ready

    def count_sent(self, group: HeldGroup, now: float) -> tuple[int, int]:
        """Record that ``group`` goes out: (its part, tenants sent with this cause and night so far)."""
        cutoff = now - 2 * 86400
        self.sent = {key: value for key, value in self.sent.items() if value[2] >= cutoff}
        parts, tenants, _ = self.sent.get(group.key, (0, 0, now))
        self.sent[group.key] = [parts + 1, tenants + len(group.tenants), now]
        return int(parts) + 1, int(tenants) + len(group.tenants)

    def to_json(self) -> dict[str, Any]:
        return {"groups": [asdict(g) for g in self.groups], "sent": self.sent}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> HeldFailures:
        held = cls()
        for item in (data or {}).get("groups", ()):
            try:
                held.groups.append(HeldGroup(**item))
            except TypeError:
                log.warning("dropping an unreadable held fleet failure")
        for key, value in (data or {}).get("sent", {}).items():
            if isinstance(value, list) and len(value) == 3:
                held.sent[str(key)] = [float(v) for v in value]
        return held


# --------------------------------------------------------------------------------------------
# Outbox: messages not delivered yet
# --------------------------------------------------------------------------------------------


@dataclass
class PendingMessage:
    """One rendered message for one destination, with a stable id (the same event -> the same id)."""

    id: str
    destination: str
    body: dict[str, Any]
    created_at: float
    tries: int = 0
    last_error: str = ""
    #: :data:`INFO` .. :data:`CRITICAL`: a full outbox drops the least severe first.
    severity: int = ERROR


@dataclass
class FlushReport:
    """What one :meth:`Outbox.flush` did. Every text here is safe to log (no URLs)."""

    delivered: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    #: ``(message id, why)`` for messages given up on: refused by the webhook, too old, or over the bound.
    dropped: list[tuple[str, str]] = field(default_factory=list)
    #: destination -> why it failed this time.
    failing: dict[str, str] = field(default_factory=dict)

    def describe(self, names: Mapping[str, str] | None = None) -> str:
        """One line for a log or a tick; ``names`` relabels destinations (``discord ($PATINA_DISCORD_WEBHOOK)``)."""
        names = names or {}
        parts = [f"{len(self.delivered)} delivered"]
        if self.waiting:
            parts.append(f"{len(self.waiting)} waiting for a later tick")
        if self.dropped:
            parts.append(f"{len(self.dropped)} dropped")
        text = ", ".join(parts)
        if self.failing:
            text += " (" + "; ".join(f"{names.get(d, d)}: {why}" for d, why in sorted(self.failing.items())) + ")"
        return text


@dataclass
class Outbox:
    """Undelivered messages, oldest first, bounded: at most ``limit`` messages, none older than
    ``max_age_seconds`` (an alert days late is noise; the run history still has it). Over ``limit``, the
    least severe go first, oldest first among equals: a week of success notes never pushes out a failure.

    Stored in a sensor cursor (:meth:`to_json` / :meth:`from_json`), so it holds message bodies and
    destination names only, never URLs.
    """

    messages: list[PendingMessage] = field(default_factory=list)
    limit: int = 50
    max_age_seconds: float = 7 * 24 * 3600

    def add(self, message: PendingMessage) -> bool:
        """Queue ``message`` unless one with its id is already queued."""
        if any(m.id == message.id for m in self.messages):
            return False
        self.messages.append(message)
        return True

    def flush(
        self,
        urls: Mapping[str, str],
        *,
        now: float,
        deadline: float | None = None,
        max_sends: int | None = None,
        send: Callable[[str, Mapping[str, Any]], Delivery] = deliver,
        clock: Callable[[], float] = time.monotonic,
        missing: Callable[[str], str] = lambda d: f"no URL configured for {d}",
    ) -> FlushReport:
        """Try each queued message once, oldest first. A destination that fails is not tried again in this
        flush (its other messages wait: one dead webhook must not use up the tick). Stops sending at
        ``deadline`` (a ``clock()`` value) or after ``max_sends``; what is left waits for the next flush."""
        report = FlushReport()
        kept: list[PendingMessage] = []
        sends = 0
        for message in self.messages:
            destination = message.destination
            url = urls.get(destination)
            out_of_time = (deadline is not None and clock() >= deadline) or (
                max_sends is not None and sends >= max_sends
            )
            if url is None:
                report.failing.setdefault(destination, missing(destination))
                message.last_error = report.failing[destination]
            if url is None or destination in report.failing or out_of_time:
                kept.append(message)
                continue
            sends += 1
            result = send(url, message.body)
            if result.delivered:
                report.delivered.append(message.id)
            elif result.rejected:
                report.dropped.append((message.id, result.reason))
            else:
                message.tries += 1
                message.last_error = result.reason
                report.failing[destination] = result.reason
                kept.append(message)
        self.messages = kept
        self._prune(now, report)
        report.waiting = [m.id for m in self.messages]
        return report

    def _prune(self, now: float, report: FlushReport) -> None:
        fresh = []
        for message in self.messages:
            if now - message.created_at > self.max_age_seconds:
                report.dropped.append((message.id, f"undelivered for {format_duration(now - message.created_at)}"))
            else:
                fresh.append(message)
        overflow = max(0, len(fresh) - self.limit)
        # sorted() is stable: among equal severities the oldest (first queued) goes first.
        dropped = {id(m) for m in sorted(fresh, key=lambda m: m.severity)[:overflow]}
        for message in fresh:
            if id(message) in dropped:
                report.dropped.append((message.id, f"outbox full ({self.limit} messages)"))
        self.messages = [m for m in fresh if id(m) not in dropped]

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(m) for m in self.messages]

    @classmethod
    def from_json(cls, data: Iterable[Mapping[str, Any]] | None, **bounds: Any) -> Outbox:
        messages = []
        for item in data or ():
            try:
                messages.append(
                    PendingMessage(
                        id=str(item["id"]),
                        destination=str(item["destination"]),
                        body=dict(item["body"]),
                        created_at=float(item["created_at"]),
                        tries=int(item.get("tries", 0)),
                        last_error=str(item.get("last_error", "")),
                        severity=int(item.get("severity", ERROR)),
                    )
                )
            except (KeyError, TypeError, ValueError):
                log.warning("dropping an unreadable outbox entry")
        return cls(messages=messages, **bounds)

    def __len__(self) -> int:
        return len(self.messages)


def pending(
    alert_id: str, alert: Alert, destinations: Sequence[str], *, redact: bool, now: float
) -> list[PendingMessage]:
    """``alert`` rendered for each destination, with ids ``<alert_id>@<destination>``."""
    rank = severity(alert)
    return [
        PendingMessage(
            id=f"{alert_id}@{d}", destination=d, body=render(alert, d, redact=redact), created_at=now, severity=rank
        )
        for d in destinations
    ]
