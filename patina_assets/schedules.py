"""When Patina's schedules fire, without Dagster: the one home of their names and crons, and the next tick.

The code location builds its schedules from these (``defs/dumps/jobs.py``, ``defs/archives/jobs.py``;
``defs/fleets/jobs.py`` names its own, checked against ``schedule_crons`` by the definitions' tests), and
`patina status` and `/status` read the next ticks from here, so neither imports Dagster to say when the next
run is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from .config import PatinaConfig

NIGHTLY_SCHEDULE = "nightly_backup_schedule"
NIGHTLY_HOUR, NIGHTLY_MINUTE = 3, 0  # 03:00 UTC: the day that just ended (the spec's `0 3 * * *`)
WEEKLY_SCHEDULE = "weekly_archive_schedule"
WEEKLY_HOUR, WEEKLY_MINUTE, WEEKLY_DAY_OF_WEEK = 4, 0, 0  # Sundays 04:00 UTC (the spec's `0 4 * * 0`)
FLEET_CRON = "0 3 * * *"  # a fleet's nightly, with the other dumps


def fleet_schedule_name(asset_name: str) -> str:
    return f"fleet_{asset_name}_nightly_schedule"


def schedule_crons(config: PatinaConfig) -> list[tuple[str, str, str]]:
    """(name, cron, timezone) of each of the code location's schedules."""
    crons = [
        (NIGHTLY_SCHEDULE, f"{NIGHTLY_MINUTE} {NIGHTLY_HOUR} * * *", "UTC"),
        (WEEKLY_SCHEDULE, f"{WEEKLY_MINUTE} {WEEKLY_HOUR} * * {WEEKLY_DAY_OF_WEEK}", "UTC"),
    ]
    crons += [(fleet_schedule_name(fleet.asset_name), FLEET_CRON, "UTC") for fleet in config.fleets]
    return sorted(crons)


def next_ticks(crons: list[tuple[str, str, str]], now: datetime | None = None) -> dict[str, datetime]:
    """When each schedule fires next (Dagster has no public helper for this; see `next_cron_tick`)."""
    now = now or datetime.now(UTC)
    return {name: next_cron_tick(cron, now, tz) for name, cron, tz in crons}


def next_cron_tick(cron: str, after: datetime, timezone: str = "UTC") -> datetime:
    """The first minute at or after `after` that a five-field cron matches in `timezone`, in UTC (as Dagster's
    scheduler counts: a moment exactly on a tick is that tick).

    Enough cron for the schedules Patina builds (numbers, `*`, lists, ranges and steps; day of week 0-7 with
    Sunday 0 or 7; day of month and day of week both restricted means either, as cron does). Steps through
    wall-clock time (aware datetimes add in wall time), skipping whole months, days and hours that cannot match."""
    minute, hour, dom, month, dow = cron.split()
    minutes, hours = _cron_field(minute, 0, 59), _cron_field(hour, 0, 23)
    days, months = _cron_field(dom, 1, 31), _cron_field(month, 1, 12)
    days_of_week = {d % 7 for d in _cron_field(dow, 0, 7)}
    either = dom != "*" and dow != "*"
    moment = after.astimezone(ZoneInfo(timezone))
    if moment.second or moment.microsecond:
        moment = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(100_000):
        dom_ok, dow_ok = moment.day in days, (moment.isoweekday() % 7) in days_of_week
        if moment.month not in months:
            moment = (moment.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
        elif not ((dom_ok or dow_ok) if either else (dom_ok and dow_ok)):
            moment = moment.replace(hour=0, minute=0) + timedelta(days=1)
        elif moment.hour not in hours:
            moment = moment.replace(minute=0) + timedelta(hours=1)
        elif moment.minute not in minutes:
            moment += timedelta(minutes=1)
        else:
            return moment.astimezone(UTC)
    raise ValueError(f"the cron {cron!r} never fires")


def _cron_field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            start, end = low, high
        elif "-" in span:
            start, end = (int(x) for x in span.split("-"))
        else:
            start = end = int(span)
            if step:
                end = high
        values.update(range(start, end + 1, int(step or 1)))
    return values
