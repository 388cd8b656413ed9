"""Where everything lives in the bucket: every key, every generation, and the parsers that read them back."""

from __future__ import annotations

import functools
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from ..engine.formats import FORMATS
from .buckets import InvalidKey

logger = logging.getLogger(__name__)


DAILY_PREFIX = "daily/"
WEEKLY_PREFIX = "weekly/"  # weekly archives: see the weekly layout helpers below and patina_assets.archive
AUDIT_PREFIX = "audit/"  # `patina serve`'s audit log (PATINA_AUDIT_BUCKET=1): one object per batch of lines

# The dump formats are the engine's (it writes them); here, the suffix of each in a key.
DUMP_FORMATS: Mapping[str, str] = {fmt: "." + fmt for fmt in FORMATS}
DUMP_CONTENT_TYPES: Mapping[str, str] = {
    "sql": "application/sql",
    "sql.gz": "application/gzip",
    "sql.zst": "application/zstd",
}
MANIFEST_SUFFIX = ".manifest.json"
#: An encrypted object's key ends in ``.age`` after its format: ``<db>.<generation>.sql.zst.age`` is an age
#: file of the ``.sql.zst`` a plain backup would store (see ``patina_assets.encryption``).
AGE_SUFFIX = ".age"
AGE_CONTENT_TYPE = "application/octet-stream"
MANIFEST_CONTENT_TYPE = "application/json"

# `\Z`, not `$`, ends each pattern: `$` also matches before a final line break ("shop\n" would pass).
DATABASE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}\Z")
#: DATABASE_NAME in words, for messages.
DATABASE_NAME_RULE = "1-63 characters: lower-case letters, digits, '.', '_' or '-', the first a letter or digit"
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")
# A generation makes each upload's dump key unique: UTC time to the microsecond, then randomness.
# It contains 'T' and 'Z', which a database name (lowercase) cannot, so parsing a key is unambiguous.
#: The regular expression of a generation (a UTC moment and 6 random hex digits); R2 snapshots name theirs alike.
GENERATION_PATTERN = r"\d{8}T\d{12}Z-[0-9a-f]{6}"
_GENERATION_RE = re.compile(rf"^{GENERATION_PATTERN}\Z")
VERIFICATION_SUFFIX = ".verification.json"


def validate_database_name(database: str) -> str:
    """D1 database names as they appear in keys: lowercase, digits, ``.``, ``_``, ``-``; no ``/``."""
    if not isinstance(database, str) or not DATABASE_NAME.match(database):
        raise InvalidKey(f"invalid database name {database!r}: use {DATABASE_NAME_RULE}")
    return database


def format_day(day: date | str) -> str:
    """``YYYY-MM-DD`` for a real calendar date (a ``date`` or such a string); anything else raises."""
    if isinstance(day, datetime):
        raise InvalidKey(f"day must be a date, not a datetime ({day!r}): which day is ambiguous across time zones")
    if isinstance(day, date):
        return day.isoformat()
    if isinstance(day, str):
        text = _day_of_text(day)
        if text is not None:
            return text
    raise InvalidKey(f"invalid day {day!r}: expected a real date as YYYY-MM-DD")


@functools.lru_cache(maxsize=4096)
def _day_of_text(text: str) -> str | None:
    """``YYYY-MM-DD`` if ``text`` is a real date written so, else None; once per text (a listing, an index
    and a status name the same few days thousands of times)."""
    if not _DAY.match(text):
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        return None


def validate_format(fmt: str) -> str:
    if fmt not in DUMP_FORMATS:
        raise InvalidKey(f"invalid dump format {fmt!r}: expected one of {', '.join(DUMP_FORMATS)}")
    return fmt


def new_generation(now: datetime | None = None) -> str:
    """A fresh, time-ordered token such as ``20260106T030012123456Z-3f9a1c`` for one upload."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(3)}"


def daily_prefix(day: date | str | None = None) -> str:
    """``daily/`` or ``daily/YYYY-MM-DD/``."""
    return DAILY_PREFIX if day is None else f"{DAILY_PREFIX}{format_day(day)}/"


def daily_dump_key(
    day: date | str, database: str, fmt: str, generation: str | None = None, *, encrypted: bool = False
) -> str:
    """``daily/YYYY-MM-DD/<database>.sql.zst``, or with a generation ``daily/DAY/<database>.<gen>.sql.zst``;
    ``.age`` after it when ``encrypted``.

    BackupStore always uses a generation (see ``BackupStore.publish_daily`` for why); the plain form is
    the spec's original layout and is still recognised when listing.
    """
    name = validate_database_name(database)
    suffix = DUMP_FORMATS[validate_format(fmt)]
    if generation is not None:
        if not _GENERATION_RE.match(generation):
            raise InvalidKey(f"invalid generation {generation!r}: expected something like {new_generation()}")
        name = f"{name}.{generation}"
    return f"{daily_prefix(day)}{name}{suffix}{AGE_SUFFIX if encrypted else ''}"


def daily_verification_key(day: date | str, database: str) -> str:
    """``daily/YYYY-MM-DD/<database>.verification.json``: the last restore verification of that slot's backup."""
    return f"{daily_prefix(day)}{validate_database_name(database)}{VERIFICATION_SUFFIX}"


def daily_manifest_key(day: date | str, database: str) -> str:
    """``daily/YYYY-MM-DD/<database>.manifest.json``: one per database and day, naming the current dump."""
    return f"{daily_prefix(day)}{validate_database_name(database)}{MANIFEST_SUFFIX}"


class DailyKey(NamedTuple):
    """A parsed ``daily/`` key: a manifest (``kind='manifest'``), a dump (``kind='dump'``) or the
    verification record beside them (``kind='verification'``). A named tuple, not a dataclass: a status
    parses every key of the bucket (18,000 at 200 databases x 30 days), and a tuple is made 4x faster."""

    key: str
    day: str
    database: str
    kind: str
    format: str | None = None
    generation: str | None = None
    encrypted: bool = False  # an age file (``.age``)

    @property
    def slot(self) -> tuple[str, str]:
        """(day, database): what one manifest covers."""
        return (self.day, self.database)


@functools.lru_cache(maxsize=65536)
def _listed_name(text: str) -> bool:
    """Whether a name in a key is a database name, once per name (a listing has a key per day and kind)."""
    return DATABASE_NAME.match(text) is not None


_DAY_END = len(DAILY_PREFIX) + len("YYYY-MM-DD")  # where a daily key's day ends (its '/' follows)
#: Dump suffixes, longest first: ``.sql.zst`` is not ``.sql`` plus a name ending in ``.zst``.
_DUMP_SUFFIXES = sorted(((suffix, fmt) for fmt, suffix in DUMP_FORMATS.items()), key=lambda pair: -len(pair[0]))


def parse_daily_key(key: str) -> DailyKey | None:
    """Recognise a daily manifest, verification record or dump key; None for anything else (weekly
    archives, strays): ``daily/<day>/<name>`` then ``.manifest.json``, ``.verification.json`` or
    ``[.<generation>].<format>[.age]``. Read with string operations, not one regular expression: a status
    parses every key of the bucket, and this is twice as fast."""
    if not key.startswith(DAILY_PREFIX) or key[_DAY_END : _DAY_END + 1] != "/":
        return None
    day = _day_of_text(key[len(DAILY_PREFIX) : _DAY_END])
    if day is None:
        return None
    rest = key[_DAY_END + 1 :]
    if rest.endswith(MANIFEST_SUFFIX):
        name, kind = rest[: -len(MANIFEST_SUFFIX)], "manifest"
    elif rest.endswith(VERIFICATION_SUFFIX):
        name, kind = rest[: -len(VERIFICATION_SUFFIX)], "verification"
    else:
        encrypted = rest.endswith(AGE_SUFFIX)
        if encrypted:
            rest = rest[: -len(AGE_SUFFIX)]
        for suffix, fmt in _DUMP_SUFFIXES:  # noqa: B007 (the one found is used below)
            if rest.endswith(suffix):
                break
        else:
            return None
        stem = rest[: -len(suffix)]
        # A generation holds no '.' and a database name no 'T' or 'Z': the last part is one, or there is none.
        name, _, generation = stem.rpartition(".")
        if not name or not _GENERATION_RE.match(generation):
            name, generation = stem, None
        return DailyKey(key, day, name, "dump", fmt, generation, encrypted) if _listed_name(name) else None
    return DailyKey(key, day, name, kind) if _listed_name(name) else None


# Weekly layout (the archives themselves are built and read by ``patina_assets.archive``):
#   weekly/<week-start YYYY-MM-DD>.manifest.json             <- the archive counts once this exists
#   weekly/<week-start>.<generation>.tar.zst (or .tar.gz)    <- the archive it names
ARCHIVE_FORMATS: Mapping[str, str] = {"tar.zst": ".tar.zst", "tar.gz": ".tar.gz"}
ARCHIVE_CONTENT_TYPES: Mapping[str, str] = {"tar.zst": "application/zstd", "tar.gz": "application/gzip"}
#: 2**27 = 128 MiB: the window within which zstd finds yesterday's copy of a table.  Readers must allow it
#: (``zstd -d --long=27``, ``ZstdDecompressor(max_window_size=2**27)``); 27 is also zstd's default limit.
ZSTD_WINDOW_LOG = 27
_WEEKLY_KEY = re.compile(
    rf"^weekly/(?P<week>\d{{4}}-\d{{2}}-\d{{2}})"
    rf"(?:(?P<manifest>\.manifest\.json)|(?P<verification>\.verification\.json)"
    rf"|\.(?P<generation>{GENERATION_PATTERN})\.(?P<format>tar\.zst|tar\.gz)(?P<age>\.age)?)\Z"
)


@dataclass(frozen=True)
class WeeklyKey:
    """A parsed ``weekly/`` key: an archive manifest (``kind='manifest'``) or an archive (``kind='archive'``)."""

    key: str
    week: str
    kind: str
    format: str | None = None
    generation: str | None = None
    encrypted: bool = False  # an age file (``.age``)


def weekly_manifest_key(week: date | str) -> str:
    """``weekly/<week-start>.manifest.json``: one per week, naming the current archive."""
    return f"{WEEKLY_PREFIX}{format_day(week)}{MANIFEST_SUFFIX}"


def weekly_verification_key(week: date | str) -> str:
    """``weekly/<week-start>.verification.json``: the last read-back verification of that week's archive."""
    return f"{WEEKLY_PREFIX}{format_day(week)}{VERIFICATION_SUFFIX}"


def weekly_archive_key(week: date | str, fmt: str, generation: str, *, encrypted: bool = False) -> str:
    """``weekly/<week-start>.<generation>.tar.zst``: a fresh key per build, as for daily dumps (``.age`` after
    it when ``encrypted``)."""
    if fmt not in ARCHIVE_FORMATS:
        raise InvalidKey(f"invalid archive format {fmt!r}: expected one of {', '.join(ARCHIVE_FORMATS)}")
    if not _GENERATION_RE.match(generation):
        raise InvalidKey(f"invalid generation {generation!r}: expected something like {new_generation()}")
    return f"{WEEKLY_PREFIX}{format_day(week)}.{generation}{ARCHIVE_FORMATS[fmt]}{AGE_SUFFIX if encrypted else ''}"


def parse_weekly_key(key: str) -> WeeklyKey | None:
    """Recognise a weekly manifest or archive key; None for anything else."""
    match = _WEEKLY_KEY.match(key)
    if not match:
        return None
    try:
        week = format_day(match["week"])
    except InvalidKey:
        return None
    if match["manifest"]:
        return WeeklyKey(key=key, week=week, kind="manifest")
    if match["verification"]:
        return WeeklyKey(key=key, week=week, kind="verification")
    return WeeklyKey(
        key=key,
        week=week,
        kind="archive",
        format=match["format"],
        generation=match["generation"],
        encrypted=bool(match["age"]),
    )


def week_start_of(day: date | str) -> date:
    """The Sunday that starts the (Sunday-to-Saturday) week holding ``day``."""
    moment = date.fromisoformat(format_day(day))
    return moment - timedelta(days=(moment.weekday() + 1) % 7)


def validate_week(week: date | str) -> str:
    """``YYYY-MM-DD`` of a week's Sunday; anything else raises ``InvalidKey``."""
    text = format_day(week)
    if week_start_of(text).isoformat() != text:
        raise InvalidKey(
            f"invalid week {text!r}: weeks are named by the Sunday they start on (that week: {week_start_of(text)})"
        )
    return text


def week_days(week: date | str) -> list[str]:
    """The seven days of a week, Sunday first."""
    start = date.fromisoformat(validate_week(week))
    return [(start + timedelta(days=i)).isoformat() for i in range(7)]
