"""The manifest of a daily backup (what makes a dump a backup) and the restore-verification record."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..engine.digests import DIGEST_ALGORITHMS, DIGEST_VERSION
from .buckets import Bucket, CorruptManifest, InvalidKey, StorageObjectNotFound
from .layout import (
    AGE_SUFFIX,
    ARCHIVE_FORMATS,
    DATABASE_NAME,
    DATABASE_NAME_RULE,
    DUMP_FORMATS,
    ZSTD_WINDOW_LOG,
    format_day,
    parse_daily_key,
    parse_weekly_key,
    validate_database_name,
    validate_week,
    week_start_of,
    weekly_manifest_key,
)

logger = logging.getLogger(__name__)


MANIFEST_SCHEMA_VERSION = 1
#: A SHA-256 digest as every manifest writes it (`\Z`: `$` would also match before a final line break).
SHA256_HEX = re.compile(r"^[0-9a-f]{64}\Z")


def patina_version() -> str:
    import importlib.metadata  # (15 ms of imports: only a manifest's writer asks)

    try:
        return importlib.metadata.version("patina")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def utc_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 UTC with a ``Z``, to the second: ``2026-01-06T03:00:12Z``."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


_NO_OFFSET = timedelta(0)


def parse_utc_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 timestamp that must carry a UTC offset of zero."""
    parsed = datetime.fromisoformat(text)
    if parsed.utcoffset() != _NO_OFFSET:
        raise ValueError(f"{text!r} is not in UTC")
    return parsed


#: A backup is *captured late* when its data was read more than this after its day ended: the nightly of
#: day D runs at 03:00 on D+1 (retries and a slow export take hours, not a day), so a dump read after
#: D+2 00:00 UTC is a backfill, holding the data of the day it ran, not of D.
LATE_AFTER = timedelta(days=1)


def day_end(day: date | str) -> datetime:
    """00:00 UTC of the day after ``day``: when that day ended."""
    start = date.fromisoformat(format_day(day))
    return datetime(start.year, start.month, start.day, tzinfo=UTC) + timedelta(days=1)


def is_captured_late(day: date | str, captured: datetime) -> bool:
    """True when data read at ``captured`` is too late to be ``day``'s (see ``LATE_AFTER``)."""
    return captured > day_end(day) + LATE_AFTER


def by_capture(manifest: Manifest) -> tuple[datetime, str, str]:
    """Sort key: capture time, then day and database (stable for equal times)."""
    return (manifest.captured, manifest.day, manifest.database)


@dataclass(frozen=True)
class Manifest:
    """What one daily backup contains, written as JSON beside the dump (schema_version 1).

    The dumper fills in what it measured (SQL size and digest, tables, rows, digests, timings);
    ``BackupStore.publish_daily`` fills in the stored object's ``key``, ``bytes``, ``sha256`` and
    ``created_at``.  ``source`` must already be redacted (no tokens, no signed URLs).

    ``table_rows`` and ``table_digests`` map table name to row count / digest; ``tables`` must equal
    ``len(table_rows)`` and ``rows`` must equal the sum of ``table_rows``.

    ``consistency`` says how ``point_in_time`` is known ("one transaction", "one batch", "bookmark
    unchanged", "bookmark moved"); ``bookmark`` and ``end_bookmark`` are D1's Time Travel bookmarks when
    the dump began and ended. These three came later: a manifest without them still loads (as None).

    ``digest_version`` names the hash of ``table_digests`` and ``content_digest`` (``engine/digests.py``:
    1 SHA-256, 2 BLAKE3); a restore is checked with the same version. Manifests written before it existed
    lack it and are version 1.
    """

    database: str
    day: str
    format: str
    sql_bytes: int
    sql_sha256: str
    tables: int
    rows: int
    table_rows: Mapping[str, int]
    table_digests: Mapping[str, str]
    content_digest: str
    schema_fingerprint: str
    source: str
    point_in_time: bool
    requests: int
    started_at: str
    finished_at: str
    job_id: str
    dagster_run_id: str | None = None
    consistency: str | None = None
    bookmark: str | None = None
    end_bookmark: str | None = None
    patina_version: str = field(default_factory=patina_version)
    key: str = ""
    bytes: int = 0
    sha256: str = ""
    created_at: str = ""
    # When the data was read from the source: the truth for "newest" and "before" (a backfill run days
    # later reads today's data).  Manifests written before it existed use started_at.
    captured_at: str = ""
    # captured more than LATE_AFTER after its day ended (see ``is_captured_late``); derived when absent
    captured_late: bool | None = None
    schema_version: int = MANIFEST_SCHEMA_VERSION
    # What the dump warned about (data it could not carry, restores only some tools can do). Manifests
    # written before this field existed have none.
    warnings: list[str] = field(default_factory=list)
    # Encrypted at rest (``encryption.recipients``): ``key`` ends in ``.age`` and ``bytes``/``sha256`` are
    # of the age file; ``recipients`` are the fingerprints of the public keys it was encrypted to, and
    # ``plaintext_bytes``/``plaintext_sha256`` describe what ``age -d`` gives back (the compressed dump an
    # unencrypted backup would store).  Manifests written before encryption existed are unencrypted.
    encrypted: bool = False
    recipients: list[str] = field(default_factory=list)
    plaintext_bytes: int | None = None
    plaintext_sha256: str | None = None
    digest_version: int = DIGEST_VERSION

    def __post_init__(self) -> None:
        if not self.captured_at and isinstance(self.started_at, str):
            object.__setattr__(self, "captured_at", self.started_at)
        if self.captured_late is None:
            try:
                late = is_captured_late(self.day, parse_utc_timestamp(self.captured_at))
            except (TypeError, ValueError, InvalidKey):
                late = None  # problems() reports the bad field
            object.__setattr__(self, "captured_late", late)

    @property
    def captured(self) -> datetime:
        """``captured_at`` as a datetime (the sort key of "newest")."""
        return parse_utc_timestamp(self.captured_at)

    @property
    def dump_bytes(self) -> int:
        """The size of the compressed dump: the stored object, or what decrypting it gives."""
        return self.plaintext_bytes if self.encrypted and self.plaintext_bytes is not None else self.bytes

    @property
    def dump_sha256(self) -> str:
        """The sha256 of the compressed dump: the stored object's, or that of what decrypting it gives."""
        return self.plaintext_sha256 if self.encrypted and self.plaintext_sha256 else self.sha256

    def problems(self) -> list[str]:
        """Everything wrong with this manifest (empty when it is complete and consistent)."""
        found = [
            f"{name}: {problem}" for name, check in _FIELD_CHECKS.items() if (problem := check(getattr(self, name)))
        ]
        if not found:
            found.extend(self._consistency_problems())
        return found

    def _consistency_problems(self) -> list[str]:
        found = []
        if self.tables != len(self.table_rows):
            found.append(f"tables is {self.tables} but table_rows names {len(self.table_rows)} tables")
        if self.rows != sum(self.table_rows.values()):
            found.append(f"rows is {self.rows} but table_rows adds up to {sum(self.table_rows.values())}")
        if parse_utc_timestamp(self.finished_at) < parse_utc_timestamp(self.started_at):
            found.append("finished_at is before started_at")
        found.extend(
            encryption_problems(self.key, self.encrypted, self.recipients, self.plaintext_bytes, self.plaintext_sha256)
        )
        return found

    def to_json(self) -> str:
        """Serialise; raises ValueError if the manifest is incomplete (a bug in the caller)."""
        problems = self.problems()
        if problems:
            raise ValueError(f"manifest for {self.database!r} on {self.day!r} is incomplete: " + "; ".join(problems))
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["table_rows"] = dict(self.table_rows)
        data["table_digests"] = dict(self.table_digests)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, key: str = "<manifest>") -> Manifest:
        """Parse and validate; anything unreadable raises ``CorruptManifest`` naming ``key``."""
        data = _load_json_object(text, key)
        version = data.get("schema_version")
        if version != MANIFEST_SCHEMA_VERSION:
            raise CorruptManifest(
                f"manifest {key} has schema_version {version!r}; this Patina reads version "
                f"{MANIFEST_SCHEMA_VERSION} (a newer Patina may have written it: upgrade)"
            )
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [name for name in names if name not in data and name not in _OPTIONAL_FIELDS]
        if missing:
            raise CorruptManifest(f"manifest {key} lacks the field(s) {', '.join(missing)}")
        manifest = cls(**{name: data[name] if name in data else _OPTIONAL_FIELDS[name]() for name in names})
        try:
            problems = manifest.problems()
        except (TypeError, ValueError, AttributeError) as exc:
            problems = [str(exc)]
        if problems:
            raise CorruptManifest(f"manifest {key} is invalid: " + "; ".join(problems))
        return manifest


def _load_json_object(text: str | bytes, key: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptManifest(
            f"manifest {key} is not valid JSON ({exc}); delete it or re-run the backup of that day"
        ) from exc
    if not isinstance(data, dict):
        raise CorruptManifest(f"manifest {key} is not a JSON object")
    return data


def _check_int(value: Any) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else "expected an integer >= 0"


def _check_text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "expected a non-empty string"


def _check_optional_text(value: Any) -> str | None:
    return None if value is None else _check_text(value)


def _check_hex64(value: Any) -> str | None:
    return None if isinstance(value, str) and SHA256_HEX.match(value) else "expected 64 lowercase hex digits"


def _check_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


def _check_timestamp(value: Any) -> str | None:
    try:
        parse_utc_timestamp(value)
    except (TypeError, ValueError):
        return "expected an ISO 8601 UTC timestamp such as 2026-01-06T03:00:12Z"
    return None


def _check_day(value: Any) -> str | None:
    try:
        return None if isinstance(value, str) and format_day(value) == value else "expected YYYY-MM-DD"
    except InvalidKey:
        return "expected a real date as YYYY-MM-DD"


def _check_database(value: Any) -> str | None:
    if isinstance(value, str) and DATABASE_NAME.match(value):
        return None
    return f"expected a database name ({DATABASE_NAME_RULE})"


def _check_format(value: Any) -> str | None:
    return None if value in DUMP_FORMATS else f"expected one of {', '.join(DUMP_FORMATS)}"


def _check_key(value: Any) -> str | None:
    parsed = parse_daily_key(value) if isinstance(value, str) else None
    return None if parsed is not None and parsed.kind == "dump" else "expected a daily dump key"


def _check_schema_version(value: Any) -> str | None:
    return None if value == MANIFEST_SCHEMA_VERSION else f"expected {MANIFEST_SCHEMA_VERSION}"


def _check_mapping(value_check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return "expected an object"
        for name, item in value.items():
            if not isinstance(name, str) or not name or value_check(item):
                return f"bad entry {name!r}: {value_check(item) or 'expected a table name'}"
        return None

    return check


# Fields a manifest may lack (written by an older Patina), with the value they then take.
_OPTIONAL_FIELDS: dict[str, Callable[[], Any]] = {
    "dagster_run_id": lambda: None,
    "warnings": list,
    "consistency": lambda: None,
    "bookmark": lambda: None,
    "end_bookmark": lambda: None,
    "captured_at": lambda: "",  # then started_at (see Manifest.__post_init__)
    "captured_late": lambda: None,  # then derived from the capture time
    "encrypted": lambda: False,
    "recipients": list,
    "plaintext_bytes": lambda: None,
    "plaintext_sha256": lambda: None,
    "digest_version": lambda: 1,  # written before BLAKE3 digests: SHA-256 ones
}


def encryption_problems(
    key: str, encrypted: bool, recipients: Any, plaintext_bytes: Any, plaintext_sha256: Any
) -> list[str]:
    """What is inconsistent in the encryption fields of a daily or weekly manifest."""
    found = []
    if encrypted != key.endswith(AGE_SUFFIX):
        found.append(
            f"encrypted is {str(encrypted).lower()} but the key {key!r} {'lacks' if encrypted else 'has'} {AGE_SUFFIX}"
        )
    if encrypted:
        if not recipients:
            found.append("an encrypted backup must name its recipients' fingerprints")
        if plaintext_bytes is None or _check_int(plaintext_bytes) or _check_hex64(plaintext_sha256):
            found.append("an encrypted backup needs plaintext_bytes and plaintext_sha256 (64 hex digits)")
    elif recipients or plaintext_bytes is not None or plaintext_sha256 is not None:
        found.append("recipients and plaintext_* belong to encrypted backups only")
    return found


def _check_recipients(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(r, str) and r for r in value):
        return "must be a list of public-key fingerprints"
    return None


def _check_optional_int(value: Any) -> str | None:
    return None if value is None else _check_int(value)


def _check_optional_hex64(value: Any) -> str | None:
    return None if value is None else _check_hex64(value)


def _check_digest_version(value: Any) -> str | None:
    if type(value) is int and value in DIGEST_ALGORITHMS:
        return None
    known = ", ".join(f"{v} ({name})" for v, name in DIGEST_ALGORITHMS.items())
    return f"this Patina knows the digest versions {known}, not {value!r} (a newer Patina may have written it: upgrade)"


def _check_warnings(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(w, str) for w in value):
        return "must be a list of strings"
    return None


_FIELD_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "warnings": _check_warnings,
    "schema_version": _check_schema_version,
    "database": _check_database,
    "day": _check_day,
    "key": _check_key,
    "format": _check_format,
    "bytes": _check_int,
    "sha256": _check_hex64,
    "sql_bytes": _check_int,
    "sql_sha256": _check_hex64,
    "tables": _check_int,
    "rows": _check_int,
    "table_rows": _check_mapping(_check_int),
    "table_digests": _check_mapping(_check_text),
    "content_digest": _check_text,
    "digest_version": _check_digest_version,
    "schema_fingerprint": _check_text,
    "source": _check_text,
    "point_in_time": _check_bool,
    "requests": _check_int,
    "started_at": _check_timestamp,
    "finished_at": _check_timestamp,
    "patina_version": _check_text,
    "dagster_run_id": _check_optional_text,
    "consistency": _check_optional_text,
    "bookmark": _check_optional_text,
    "end_bookmark": _check_optional_text,
    "job_id": _check_text,
    "created_at": _check_timestamp,
    "captured_at": _check_timestamp,
    "captured_late": _check_bool,
    "encrypted": _check_bool,
    "recipients": _check_recipients,
    "plaintext_bytes": _check_optional_int,
    "plaintext_sha256": _check_optional_hex64,
}
# Fields a manifest may lack (written by an older Patina): None, then filled in by ``Manifest.__post_init__``.


VERIFIED, FAILED, NOT_VERIFIED, DAMAGED = "verified", "failed", "not verified", "damaged"
VERIFICATION_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class VerificationRecord:
    """What the last verification of a stored backup (a daily dump, or a weekly archive) concluded, kept in
    the bucket beside it (``<db>.verification.json``, ``weekly/<week>.verification.json``) so the tools see
    it without Dagster.  It vouches only for the object it names with the sha256 it read: a re-run of the
    day writes a new object, which is "not verified" until its own verification.

    ``passed``: restore_verification (dailies: restored, every table's rows and digest equal to the source's)
    or the archive's read-back (every member's sha256).  ``size_verdict`` (dailies) is size_anomaly's verdict
    at that time; ``too_small`` flags possible data loss, and retention never counts such a backup as good.
    """

    key: str  # the object verified
    sha256: str  # its sha256, as read back when verified ("" when it could not be read)
    passed: bool
    checked_at: str
    problems: tuple[str, ...] = ()
    size_verdict: str | None = None
    dagster_run_id: str | None = None
    patina_version: str = field(default_factory=patina_version)
    schema_version: int = VERIFICATION_SCHEMA_VERSION

    def status_of(self, key: str, sha256: str) -> str:
        """VERIFIED or FAILED for the object ``key`` with ``sha256``; NOT_VERIFIED when this record is about another."""
        if self.key != key:
            return NOT_VERIFIED
        if not self.passed:
            return FAILED
        return VERIFIED if self.sha256 == sha256 else NOT_VERIFIED

    @property
    def possible_data_loss(self) -> bool:
        return self.size_verdict == "too_small"

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["problems"] = list(self.problems)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, key: str) -> VerificationRecord:
        data = _load_json_object(text, key)
        try:
            if data.get("schema_version") != VERIFICATION_SCHEMA_VERSION:
                raise ValueError(f"schema_version {data.get('schema_version')!r}")
            record = cls(
                key=_required_text(data["key"]),
                sha256=str(data["sha256"]),
                passed=data["passed"] is True,
                checked_at=_required_text(data["checked_at"]),
                problems=tuple(str(p) for p in data.get("problems", ())),
                size_verdict=data.get("size_verdict"),
                dagster_run_id=data.get("dagster_run_id"),
                patina_version=str(data.get("patina_version", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptManifest(
                f"verification record {key} is invalid ({exc}); it is ignored until the next verification"
            ) from None
        return record


def _required_text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, not {value!r}")
    return value


def read_verification(bucket: Bucket, key: str) -> VerificationRecord | None:
    """The record stored under ``key``; None when there is none or it cannot be read (logged): a record
    that cannot be read vouches for nothing."""
    try:
        return VerificationRecord.from_json(bucket.get_bytes(key), key=key)
    except StorageObjectNotFound:
        return None
    except CorruptManifest as exc:
        logger.warning("%s", exc)
        return None


# -- weekly archives: the index inside each archive, and the manifest beside it ---------------------

ARCHIVE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ArchiveMember:
    """One daily backup inside an archive: its SQL and its daily manifest, with their digests."""

    database: str
    day: str
    sql_bytes: int
    sql_sha256: str
    manifest_bytes: int
    manifest_sha256: str
    daily_key: str  # the stored dump it was taken from
    tables: int
    rows: int
    captured_at: str | None = None  # when its data was read (archives built before it was recorded: None)

    @property
    def slot(self) -> tuple[str, str]:
        """(day, database), as in ``DailyKey.slot``."""
        return (self.day, self.database)

    @property
    def path(self) -> str:
        return f"daily/{self.day}/{self.database}.sql"

    @property
    def manifest_path(self) -> str:
        return f"daily/{self.day}/{self.database}.manifest.json"


@dataclass(frozen=True)
class ArchiveIndex:
    """What an archive holds: stored inside it as ``index.json`` and in its manifest as ``index``.

    ``days`` are the days the archive covers (the week's, from the first configured day on);
    ``missing`` maps each database to the days it has no backup in the archive; ``skipped`` maps a daily
    manifest key to why its backup was left out (its dump did not match its manifest).
    """

    week: str
    format: str
    days: tuple[str, ...]
    databases: tuple[str, ...]
    members: tuple[ArchiveMember, ...]
    missing: Mapping[str, tuple[str, ...]]
    skipped: Mapping[str, str]
    created_at: str
    dagster_run_id: str | None = None
    patina_version: str = field(default_factory=patina_version)
    schema_version: int = ARCHIVE_SCHEMA_VERSION

    @property
    def sql_bytes(self) -> int:
        return sum(m.sql_bytes for m in self.members)

    @property
    def is_complete(self) -> bool:
        return not any(self.missing.values())

    def member(self, day: date | str, database: str) -> ArchiveMember | None:
        slot = (format_day(day), database)
        return next((m for m in self.members if m.slot == slot), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "week": self.week,
            "format": self.format,
            "days": list(self.days),
            "databases": list(self.databases),
            "members": [dataclasses.asdict(m) for m in self.members],
            "missing": {db: list(days) for db, days in sorted(self.missing.items())},
            "skipped": dict(sorted(self.skipped.items())),
            "created_at": self.created_at,
            "dagster_run_id": self.dagster_run_id,
            "patina_version": self.patina_version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any, *, key: str) -> ArchiveIndex:
        """Parse and validate; anything wrong raises ``CorruptManifest`` naming ``key``."""
        try:
            if not isinstance(data, dict):
                raise ValueError("the index is not a JSON object")
            if data.get("schema_version") != ARCHIVE_SCHEMA_VERSION:
                raise ValueError(
                    f"schema_version is {data.get('schema_version')!r}; this Patina reads version "
                    f"{ARCHIVE_SCHEMA_VERSION} (a newer Patina may have written it: upgrade)"
                )
            week = validate_week(data["week"])
            if data["format"] not in ARCHIVE_FORMATS:
                raise ValueError(f"format {data['format']!r} is not one of {', '.join(ARCHIVE_FORMATS)}")
            members = tuple(_member_from_dict(item) for item in data["members"])
            days = tuple(format_day(d) for d in data["days"])
            if any(week_start_of(d).isoformat() != week for d in days) or any(m.day not in days for m in members):
                raise ValueError("a day or member lies outside the week")
            if len({m.slot for m in members}) != len(members):
                raise ValueError("a (day, database) appears twice")
            return cls(
                week=week,
                format=data["format"],
                days=days,
                databases=tuple(validate_database_name(d) for d in data["databases"]),
                members=members,
                missing={
                    validate_database_name(db): tuple(format_day(d) for d in missing_days)
                    for db, missing_days in data["missing"].items()
                },
                skipped={str(k): str(v) for k, v in data["skipped"].items()},
                created_at=_text(data["created_at"]),
                dagster_run_id=data.get("dagster_run_id"),
                patina_version=_text(data["patina_version"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            missing = f"lacks the field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise CorruptManifest(f"archive index in {key} is invalid: {missing}") from None


def _member_from_dict(item: Any) -> ArchiveMember:
    names = [f.name for f in dataclasses.fields(ArchiveMember)]
    member = ArchiveMember(**{name: item[name] if name != "captured_at" else item.get(name) for name in names})
    validate_database_name(member.database)
    format_day(member.day)
    for name in ("sql_bytes", "manifest_bytes", "tables", "rows"):
        value = getattr(member, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"member {member.path}: {name} must be an integer >= 0")
    for name in ("sql_sha256", "manifest_sha256"):
        if not isinstance(getattr(member, name), str) or not SHA256_HEX.match(getattr(member, name)):
            raise ValueError(f"member {member.path}: {name} must be 64 lowercase hex digits")
    _text(member.daily_key)
    return member


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, not {value!r}")
    return value


@dataclass(frozen=True)
class ArchiveManifest:
    """``weekly/<week>.manifest.json``: the stored archive (key, bytes, sha256) and its index."""

    index: ArchiveIndex
    key: str
    bytes: int
    sha256: str
    created_at: str
    zstd_window_log: int | None = ZSTD_WINDOW_LOG
    # Encrypted at rest, as daily manifests say it (``Manifest``): ``bytes``/``sha256`` are of the age file,
    # ``plaintext_*`` of the compressed archive inside it.  Older manifests: unencrypted.
    encrypted: bool = False
    recipients: tuple[str, ...] = ()
    plaintext_bytes: int | None = None
    plaintext_sha256: str | None = None

    @property
    def week(self) -> str:
        return self.index.week

    @property
    def archive_bytes(self) -> int:
        """The compressed archive's size: the stored object, or what decrypting it gives."""
        return self.plaintext_bytes if self.encrypted and self.plaintext_bytes is not None else self.bytes

    @property
    def archive_sha256(self) -> str:
        """The compressed archive's sha256: the stored object's, or that of what decrypting it gives."""
        return self.plaintext_sha256 if self.encrypted and self.plaintext_sha256 else self.sha256

    @property
    def format(self) -> str:
        return self.index.format

    def to_json(self) -> str:
        data = {
            "schema_version": ARCHIVE_SCHEMA_VERSION,
            "week": self.week,
            "key": self.key,
            "format": self.format,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "created_at": self.created_at,
            "zstd_window_log": self.zstd_window_log,
            "index": self.index.to_dict(),
        }
        if self.encrypted:
            data.update(
                encrypted=True,
                recipients=list(self.recipients),
                plaintext_bytes=self.plaintext_bytes,
                plaintext_sha256=self.plaintext_sha256,
            )
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, key: str) -> ArchiveManifest:
        """Parse and validate; anything unreadable raises ``CorruptManifest`` naming ``key``."""
        try:
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptManifest(f"archive manifest {key} is not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise CorruptManifest(f"archive manifest {key} is not a JSON object")
        index = ArchiveIndex.from_dict(data.get("index"), key=key)
        parsed = parse_weekly_key(data.get("key") or "")
        problems = []
        if data.get("week") != index.week or key != weekly_manifest_key(index.week):
            problems.append(f"it describes week {data.get('week')!r} (index: {index.week})")
        if parsed is None or parsed.kind != "archive" or parsed.week != index.week or parsed.format != index.format:
            problems.append(f"it names {data.get('key')!r}, which is not a {index.format} archive of that week")
        if not isinstance(data.get("bytes"), int) or data["bytes"] <= 0:
            problems.append("bytes must be a positive integer")
        if not isinstance(data.get("sha256"), str) or not SHA256_HEX.match(data["sha256"]):
            problems.append("sha256 must be 64 lowercase hex digits")
        encrypted, recipients = data.get("encrypted", False), data.get("recipients", [])
        if not isinstance(encrypted, bool) or not isinstance(recipients, list):
            problems.append("encrypted must be true or false, recipients a list")
        else:
            problems += encryption_problems(
                str(data.get("key") or ""),
                encrypted,
                recipients,
                data.get("plaintext_bytes"),
                data.get("plaintext_sha256"),
            )
        if problems:
            raise CorruptManifest(f"archive manifest {key} is invalid: " + "; ".join(problems))
        return cls(
            index=index,
            key=data["key"],
            bytes=data["bytes"],
            sha256=data["sha256"],
            created_at=str(data.get("created_at") or ""),
            zstd_window_log=data.get("zstd_window_log"),
            encrypted=encrypted,
            recipients=tuple(recipients),
            plaintext_bytes=data.get("plaintext_bytes"),
            plaintext_sha256=data.get("plaintext_sha256"),
        )
