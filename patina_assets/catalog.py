"""Every backup the bucket holds, read from the bucket alone: list, find, open, verify, download.

This is what the operators' tools stand on (`patina list/download/restore/status`, `patina serve`). It reads
only the bucket -- the daily manifests and the weekly archives' manifests -- never Dagster's records, so it
works on the day the Dagster instance is lost.

A ``Backup`` is one database on one day, wherever it lives:

* ``daily``: ``daily/DAY/<db>.<generation>.sql.zst`` with its manifest (``BackupStore.list_daily``);
* ``weekly``: ``daily/DAY/<db>.sql`` inside a weekly archive (``patina_assets.archive``), as the archive's index
  (in its manifest, ``weekly/<week>.manifest.json``) describes it: listing reads only manifests, never archives.

Both are opened the same way (``Catalog.open_sql``): as the plain SQL of the dump, checked as it streams. At the
end of the stream the SQL's size and sha256 must equal the recorded ``sql_bytes``/``sql_sha256`` (and, for a
daily, the stored object's size and sha256 the manifest's ``bytes``/``sha256``); otherwise the read raises
``BackupMismatch``. ``Catalog.download`` writes to a temporary file and renames it into place only after that
check, so a damaged backup never leaves a file behind that looks whole.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import io
import os
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import zstandard

from .archive import ArchiveStore, WeeklyInventory, iter_tar
from .config import PatinaConfig, RetentionConfig
from .encryption import CiphertextDamaged
from .engine.errors import CorruptDump, PatinaError
from .engine.formats import HashingReader, decompressing_reader
from .history import (
    DailyView,
    Entry,
    Facts,
    index_listing,
    view_from_indexes,
    view_from_inventory,
    view_of_database,
)
from .retention import daily_cutoff, weekly_cutoff
from .storage import (
    AGE_SUFFIX,
    DAILY_PREFIX,
    DAMAGED,
    FAILED,
    NOT_VERIFIED,
    VERIFIED,
    WEEKLY_PREFIX,
    ArchiveManifest,
    BackupStore,
    CorruptManifest,
    Manifest,
    ObjectInfo,
    StorageError,
    StorageObjectNotFound,
    day_end,
    format_day,
    is_captured_late,
    parse_daily_key,
    parse_utc_timestamp,
    validate_database_name,
    week_start_of,
)
from .units import human_bytes

DAILY = "daily"
WEEKLY = "weekly"
AUTO = "auto"  # ``find``: the daily, or the weekly copy when the daily is damaged or failed verification
SOURCES = (AUTO, DAILY, WEEKLY)
CHUNK = 1024 * 1024


class CatalogError(PatinaError):
    """A backup cannot be found or read as asked."""


class BackupNotFound(CatalogError):
    """No backup of that database on that day."""


class BackupMismatch(CatalogError):
    """The stored bytes are not what the manifest recorded: the backup is damaged and must not be used."""


# --------------------------------------------------------------------------------------------------
# Backups
# --------------------------------------------------------------------------------------------------


_paused_lock = threading.Lock()
_paused = 0  # overviews under way (`patina serve` answers in threads)
_resume = False  # whether the collector ran before the first of them paused it


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector waits while an overview is read: it makes three objects per key and
    per backup (60,000 at 200 databases x 30 days), none in a cycle, and the collector's passes over them,
    again and again as they pile up, were 3% of `patina status`. Whatever is garbage is collected after."""
    global _paused, _resume
    with _paused_lock:
        if _paused == 0:
            _resume = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _paused_lock:
            _paused -= 1
            if _paused == 0 and _resume:
                gc.enable()


@dataclass(frozen=True)
class Backup:
    """One database on one day, in a daily object or inside a weekly archive."""

    database: str
    day: str
    location: str  # DAILY or WEEKLY
    key: str  # the bucket object holding it: the daily dump, or the weekly archive
    sql_bytes: int  # bytes of SQL a download or restore gets (the dump uncompressed)
    sql_sha256: str
    tables: int
    rows: int
    created_at: datetime | None  # when the backup was stored (a member of an archive: not recorded)
    expires_at: datetime | None  # from when retention may delete it (see ``expiry_of_daily``)
    member: str | None = None  # the SQL's path inside the weekly archive
    manifest: Manifest | None = None  # the daily manifest (dailies)
    archived_at: datetime | None = None  # when the weekly archive was built (archive members)
    captured_at: datetime | None = None  # when its data was read from the source (None: not recorded)
    captured_late: bool = False  # read long after its day ended (a backfill): it holds the data of captured_at
    status: str = NOT_VERIFIED  # VERIFIED, FAILED, NOT_VERIFIED or DAMAGED (see ``VerificationRecord``)
    problem: str | None = None  # why it is damaged or failed verification
    archive: ArchiveManifest | None = None  # the weekly archive's manifest (archive members)
    #: What a daily's manifest says of its stored object (from the manifest, or its database's history
    #: index: a status reads no manifests); None for archive members and unreadable manifests.
    facts: Facts | None = None

    def __post_init__(self) -> None:
        if self.facts is None and self.manifest is not None:
            object.__setattr__(self, "facts", Facts.of(self.manifest, None))

    @property
    def encrypted(self) -> bool:
        """Stored encrypted with age: reading it needs the identity (``encryption.identity_file_env``)."""
        if self.facts is not None:
            return self.facts.encrypted
        return bool(self.archive is not None and self.archive.encrypted)

    @property
    def captured(self) -> datetime:
        """When its data was read; for archives that did not record it, the end of its day (the earliest
        its nightly can have run)."""
        return self.captured_at or day_end(self.day)

    @property
    def usable(self) -> bool:
        """Not damaged and not failed: it may be restored (a not-yet-verified one is checked as it is read)."""
        return self.status in (VERIFIED, NOT_VERIFIED)

    @property
    def stored_bytes(self) -> int | None:
        """Bytes the daily object takes in the bucket (None inside an archive: it shares the archive's bytes)."""
        return self.facts.bytes if self.facts is not None else None

    @property
    def dagster_run_id(self) -> str | None:
        return self.facts.dagster_run_id if self.facts is not None else None

    @property
    def filename(self) -> str:
        """What a download is called: ``groveauth-2026-01-05.sql`` (the spec's name)."""
        return f"{self.database}-{self.day}.sql"

    @property
    def stored_filename(self) -> str:
        """What a download of the stored object is called: ``groveauth-2026-01-05.sql.zst.age`` for a daily,
        ``week-2026-01-04.tar.zst.age`` for the archive holding the day."""
        suffix = AGE_SUFFIX if self.encrypted else ""
        if self.facts is not None:
            return f"{self.database}-{self.day}.{self.facts.format}{suffix}"
        assert self.archive is not None
        return f"week-{self.archive.week}.{self.archive.format}{suffix}"

    @property
    def stored_digest(self) -> tuple[int, str]:
        """Size and sha256 of the stored object (the daily, or the archive holding the day)."""
        if self.facts is not None:
            return self.facts.bytes, self.facts.sha256
        assert self.archive is not None
        return self.archive.bytes, self.archive.sha256

    @property
    def where(self) -> str:
        return f"{self.key}#{self.member}" if self.member else self.key

    def to_dict(self) -> dict:
        """The spec's ``/list`` entry, with exact numbers beside the human ones."""
        return {
            "database": self.database,
            "date": self.day,
            "location": self.location,
            "key": self.key,
            "member": self.member,
            "size": human_bytes(self.sql_bytes),
            "sizeBytes": self.sql_bytes,
            "storedBytes": self.stored_bytes,
            "tables": self.tables,
            "rows": self.rows,
            "createdAt": iso(self.created_at),
            "archivedAt": iso(self.archived_at),
            "expiresAt": iso(self.expires_at),
            "sqlSha256": self.sql_sha256,
            "dagsterRunId": self.dagster_run_id,
            "capturedAt": iso(self.captured_at),
            "capturedLate": self.captured_late,
            "verification": self.status,
            "problem": self.problem,
            "encrypted": self.encrypted,
        }


def expiry_of_daily(day: str, retention: RetentionConfig) -> datetime:
    """The start of the first weekly run (a Sunday, UTC) whose retention pass may delete ``day``'s daily:
    the first whose week's Saturday puts the day before ``daily_cutoff``. It goes then only if a verified
    archive holds it and it is not its database's newest good backup (``patina_assets.retention``)."""
    as_of = date.fromisoformat(day)
    as_of += timedelta(days=(5 - as_of.weekday()) % 7)  # the Saturday ending its week
    while date.fromisoformat(day) >= daily_cutoff(as_of, retention):
        as_of += timedelta(days=7)
    return _midnight(as_of + timedelta(days=1))


def expiry_of_week(week: str, retention: RetentionConfig) -> datetime:
    """The start of the first weekly run that may delete ``week``'s archive (``weekly_cutoff``)."""
    as_of = date.fromisoformat(week) + timedelta(days=6)
    while date.fromisoformat(week) >= weekly_cutoff(as_of, retention):
        as_of += timedelta(days=7)
    return _midnight(as_of + timedelta(days=1))


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass
class StorageSummary:
    """What the bucket holds, counted from one listing of ``daily/`` and ``weekly/``."""

    backups: int = 0  # database-days that can be restored (daily or inside an archive, counted once)
    daily_backups: int = 0
    weekly_backups: int = 0  # database-days inside archives
    weekly_archives: int = 0
    objects: int = 0
    total_bytes: int = 0
    daily_bytes: int = 0
    weekly_bytes: int = 0
    oldest: str | None = None
    newest: str | None = None
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "totalBackups": self.backups,
            "dailyBackups": self.daily_backups,
            "weeklyBackups": self.weekly_backups,
            "weeklyArchives": self.weekly_archives,
            "objects": self.objects,
            "totalSize": human_bytes(self.total_bytes),
            "totalSizeBytes": self.total_bytes,
            "dailySizeBytes": self.daily_bytes,
            "weeklySizeBytes": self.weekly_bytes,
            "oldestBackup": self.oldest,
            "newestBackup": self.newest,
            "problems": list(self.problems),
        }


def summarise(
    daily_objects: Mapping[str, ObjectInfo],
    weekly_objects: Mapping[str, ObjectInfo],
    daily: DailyView,
    weekly: WeeklyInventory,
) -> StorageSummary:
    """The storage summary of one listing of ``daily/`` and ``weekly/`` and what was found in it."""
    summary = StorageSummary()
    summary.objects = len(daily_objects) + len(weekly_objects)
    summary.daily_bytes = sum(info.size for info in daily_objects.values())
    summary.weekly_bytes = sum(info.size for info in weekly_objects.values())
    summary.total_bytes = summary.daily_bytes + summary.weekly_bytes
    slots = {(entry.day, database) for database, entry in daily.entries}
    archived = {m.slot for archive in weekly.archives for m in archive.index.members}
    summary.daily_backups = len(slots)
    summary.weekly_backups = len(archived)
    summary.weekly_archives = len(weekly.archives)
    slots |= archived
    summary.backups = len(slots)
    if slots:
        summary.oldest = min(day for day, _ in slots)
        summary.newest = max(day for day, _ in slots)
    for found, where in ((daily, DAILY_PREFIX), (weekly, WEEKLY_PREFIX)):
        summary.problems += [f"unreadable manifest {key}: {why}" for key, why in sorted(found.corrupt.items())]
        summary.problems += [f"broken backup {key}: {why}" for key, why in sorted(found.broken.items())]
        if found.orphans:
            summary.problems.append(
                f"{len(found.orphans)} object(s) without a manifest under {where} (unfinished uploads)"
            )
    return summary


@dataclass
class Overview:
    """What a status reads of the bucket in one pass: every backup (as ``Catalog.backups``), the storage
    summary, and the databases whose history index had to be rebuilt (database -> why)."""

    backups: list[Backup]
    storage: StorageSummary
    rebuilt: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# The catalog
# --------------------------------------------------------------------------------------------------


class Catalog:
    """Every backup in one bucket. Cheap to build; each call reads the bucket afresh."""

    def __init__(self, store: BackupStore, retention: RetentionConfig | None = None) -> None:
        self.store = store
        self.archives = ArchiveStore(store)
        self.retention = retention or RetentionConfig()
        self._expiries: dict[str, datetime] = {}  # day -> expiry_of_daily (the same for every database)

    @classmethod
    def for_config(cls, config: PatinaConfig, env: Mapping[str, str] | None = None) -> Catalog:
        from .backup import open_store

        store = open_store(config, os.environ if env is None else env)
        return cls(store, config.retention)

    def describe(self) -> str:
        return self.store.describe()

    # -- listing -------------------------------------------------------------------------------

    def backups(
        self, database: str | None = None, day: date | str | None = None, *, indexed: bool = True
    ) -> list[Backup]:
        """Every backup, newest capture first, hiding nothing: damaged ones (an unreadable manifest, a missing
        or truncated object) are listed with ``status=DAMAGED``.  A day held both as a daily and in an archive
        appears twice (the daily first).

        One database's (``database`` without ``day``) come from its history index, checked against its own
        keys of each day (``history.view_of_database``; a fleet's other tenants are never listed), and carry no
        manifest: :meth:`manifest_of` reads it when it is needed. Without ``indexed``: from a listing of
        ``daily/`` and every manifest and verification record of the database (what the index is checked against)."""
        if database is not None:
            validate_database_name(database)
        day_text = format_day(day) if day is not None else None
        week = week_start_of(day_text).isoformat() if day_text is not None else None
        if database is not None and day_text is None and indexed:
            found = self._view_backups(view_of_database(self.store, database))
        else:
            found = self._dailies(database, day_text)
        found += [
            b
            for b in self._weekly(week)
            if (database is None or b.database == database) and (day_text is None or b.day == day_text)
        ]
        return sorted(found, key=lambda b: (b.captured, b.day, b.database, b.location == DAILY), reverse=True)

    def find(self, day: date | str, database: str, *, source: str = AUTO, any_status: bool = False) -> Backup:
        """The backup of ``database`` on ``day``.  ``source=AUTO``: the daily (one object, quickest to read)
        unless it is damaged or failed verification, then the copy of that day inside the weekly archive;
        ``DAILY`` or ``WEEKLY``: only that copy.  A backup that failed verification is taken only with
        ``any_status``; a damaged one never.  ``BackupNotFound`` says what there is and what to do."""
        day_text, name = format_day(day), validate_database_name(database)
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}: expected one of {', '.join(SOURCES)}")
        candidates = [b for b in self.backups(database=name, day=day_text) if source == AUTO or b.location == source]
        candidates.sort(key=lambda b: b.location != DAILY)  # the daily first
        for backup in candidates:
            if backup.usable or (any_status and backup.status == FAILED):
                return backup
        if candidates:
            described = "; ".join(
                f"the {b.location} copy is {b.status}" + (f" ({b.problem})" if b.problem else "") for b in candidates
            )
            hint = (
                " Give --any to take a copy that failed verification anyway."
                if any(b.status == FAILED for b in candidates)
                else ""
            )
            raise BackupNotFound(
                f"no usable backup of {name} on {day_text}: {described}.{hint} "
                f"`patina list --db {name}` shows the other days"
            )
        days = sorted({b.day for b in self.backups(database=name)}, reverse=True)
        where = "" if source == AUTO else f" as a {source} copy"
        have = f"its backups: {', '.join(days[:10])}{' ...' if len(days) > 10 else ''}" if days else "it has no backups"
        raise BackupNotFound(f"no backup of {name} on {day_text}{where} in {self.describe()}; {have}")

    def latest(self, database: str, *, source: str = AUTO, any_status: bool = False) -> Backup:
        """The newest backup of ``database`` by capture time that passed verification (with ``any_status``:
        the newest that is not damaged, verified or not)."""
        name = validate_database_name(database)
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}: expected one of {', '.join(SOURCES)}")
        backups = [b for b in self.backups(database=name) if source == AUTO or b.location == source]
        wanted = [b for b in backups if (b.status != DAMAGED if any_status else b.status == VERIFIED)]
        if wanted:
            return wanted[0]  # newest capture first; the daily before the weekly copy of the same capture
        counts = {status: sum(1 for b in backups if b.status == status) for status in (NOT_VERIFIED, FAILED, DAMAGED)}
        listed = ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "none at all"
        hint = (
            "; give --any to take the newest one that is not damaged"
            if not any_status and counts[NOT_VERIFIED] + counts[FAILED]
            else ""
        )
        raise BackupNotFound(
            f"no {'usable' if any_status else 'verified'} backup of {name} in {self.describe()} "
            f"({listed}){hint}, or name a DAY"
        )

    def _dailies(self, database: str | None, day: str | None) -> list[Backup]:
        inventory = self.store.inventory(database=database, day=day)
        manifests = {(m.day, m.database): m for m in inventory.backups}
        return self._view_backups(view_from_inventory(self.store, inventory), manifests)

    def _view_backups(
        self, view: DailyView, manifests: Mapping[tuple[str, str], Manifest] | None = None
    ) -> list[Backup]:
        """The daily backups of `view`; with `manifests` (by slot) each carries its manifest (to be opened)."""
        manifests = manifests or {}
        found = [self._entry_backup(db, e, manifests.get((e.day, db))) for db, e in view.entries]
        for key, manifest in view.broken_manifests.items():
            found.append(
                dataclasses.replace(
                    self._entry_backup(manifest.database, Entry.of(manifest), manifest),
                    status=DAMAGED,
                    problem=view.broken[key],
                )
            )
        for key, why in view.corrupt.items():
            parsed = parse_daily_key(key)
            assert parsed is not None
            found.append(
                Backup(
                    database=parsed.database,
                    day=parsed.day,
                    location=DAILY,
                    key=key,
                    sql_bytes=0,
                    sql_sha256="",
                    tables=0,
                    rows=0,
                    created_at=None,
                    expires_at=None,
                    status=DAMAGED,
                    problem=why,
                )
            )
        return found

    def _expiry_of(self, day: str) -> datetime:
        if day not in self._expiries:
            self._expiries[day] = expiry_of_daily(day, self.retention)
        return self._expiries[day]

    def _entry_backup(self, database: str, entry: Entry, manifest: Manifest | None) -> Backup:
        facts = entry.facts
        assert facts is not None  # views hold only entries with their facts
        return Backup(
            database=database,
            day=entry.day,
            location=DAILY,
            key=entry.key,
            sql_bytes=facts.sql_bytes,
            sql_sha256=facts.sql_sha256,
            tables=facts.tables,
            rows=facts.rows,
            created_at=parse_utc_timestamp(facts.created_at),
            expires_at=self._expiry_of(entry.day),
            manifest=manifest,
            captured_at=parse_utc_timestamp(entry.captured_at),
            captured_late=facts.captured_late,
            status=facts.verification,
            problem=facts.problem,
            facts=facts,
        )

    def _weekly(self, week: str | None = None, inventory: WeeklyInventory | None = None) -> list[Backup]:
        if week is not None:
            try:
                archive = self.archives.get_manifest(week)
            except CorruptManifest:
                archive = None
            archives = [(archive, None)] if archive is not None else []
            if archive is not None and self.store.bucket.stat(archive.key) is None:
                archives = [(archive, f"its archive {archive.key} is missing")]
        else:
            inventory = inventory or self.archives.inventory()
            archives = [(a, None) for a in inventory.archives]
            archives += [(a, inventory.broken[key]) for key, a in inventory.broken_archives.items()]
        found = []
        for archive, damage in archives:
            archived = _parse_time(archive.created_at)
            expires = expiry_of_week(archive.week, self.retention)
            record = self.archives.get_verification(archive.week) if damage is None else None
            status = DAMAGED if damage else (record.status_of(archive.key, archive.sha256) if record else NOT_VERIFIED)
            problem = damage or ("; ".join(record.problems[:3]) if record is not None and status == FAILED else None)
            for m in archive.index.members:
                captured = _parse_time(m.captured_at) if m.captured_at else None
                found.append(
                    Backup(
                        database=m.database,
                        day=m.day,
                        location=WEEKLY,
                        key=archive.key,
                        sql_bytes=m.sql_bytes,
                        sql_sha256=m.sql_sha256,
                        tables=m.tables,
                        rows=m.rows,
                        created_at=None,
                        expires_at=expires,
                        member=m.path,
                        archived_at=archived,
                        captured_at=captured,
                        captured_late=bool(captured and is_captured_late(m.day, captured)),
                        status=status,
                        problem=problem,
                        archive=archive,
                    )
                )
        return found

    def storage(self) -> StorageSummary:
        """Counts and bytes of everything under ``daily/`` and ``weekly/``, with the oldest and newest day,
        and whatever the listings found wrong (unreadable manifests, missing objects, unfinished uploads)."""
        daily_objects = {info.key: info for info in self.store.bucket.list(DAILY_PREFIX)}
        weekly_objects = {info.key: info for info in self.store.bucket.list(WEEKLY_PREFIX)}
        daily = self.store.inventory(objects=daily_objects)
        view = DailyView(
            entries=[(m.database, Entry(m.day, m.key, m.captured_at)) for m in daily.backups],
            corrupt=daily.corrupt,
            broken=daily.broken,
            orphans=daily.orphans,
        )
        return summarise(daily_objects, weekly_objects, view, self.archives.inventory(weekly_objects))

    def overview(self, databases: Iterable[str] = (), *, indexed: bool = True) -> Overview:
        """Every backup and the storage summary, from one listing of ``daily/`` and ``weekly/``.

        ``indexed``: each database's daily backups come from its history index (``history.view_from_indexes``:
        per database one index object, checked against the listing, and rebuilt from the listing when it does
        not match it), not from every manifest and verification record; ``databases`` (the configured ones)
        are looked at even without a key in the listing. Without ``indexed``: every manifest and record is
        read (what the index is checked against)."""
        with _collector_paused():
            return self._overview(databases, indexed)

    def _overview(self, databases: Iterable[str], indexed: bool) -> Overview:
        daily_objects = {info.key: info for info in self.store.bucket.list(DAILY_PREFIX)}
        weekly_objects = {info.key: info for info in self.store.bucket.list(WEEKLY_PREFIX)}
        if indexed:
            indexes = index_listing(self.store)
            view = view_from_indexes(self.store, daily_objects, indexes, databases)
        else:
            view = view_from_inventory(self.store, self.store.inventory(objects=daily_objects), daily_objects)
        weekly = self.archives.inventory(weekly_objects)
        backups = self._view_backups(view) + self._weekly(inventory=weekly)
        backups.sort(key=lambda b: (b.captured, b.day, b.database, b.location == DAILY), reverse=True)
        return Overview(backups, summarise(daily_objects, weekly_objects, view, weekly), dict(view.rebuilt))

    # -- reading -------------------------------------------------------------------------------

    def manifest_of(self, backup: Backup) -> Manifest | None:
        """The daily manifest of ``backup`` (None for a day inside an archive), read from the bucket when the
        listing came from the history index. ``BackupNotFound`` if the day's manifest no longer names the dump
        listed (re-run or deleted since), ``BackupMismatch`` if it cannot be read."""
        if backup.location != DAILY:
            return None
        if backup.manifest is not None:
            return backup.manifest
        try:
            manifest = self.store.get_manifest(backup.day, backup.database)
        except CorruptManifest as exc:
            raise BackupMismatch(f"{backup.database} on {backup.day}: its manifest cannot be read ({exc})") from exc
        if manifest is None or (manifest.key, manifest.sha256) != (backup.key, backup.stored_digest[1]):
            raise BackupNotFound(
                f"{backup.database} on {backup.day}: the backup listed was replaced or deleted since; list again"
            )
        return manifest

    def open_sql(self, backup: Backup) -> BinaryIO:
        """The backup's SQL, streamed and checked: reading to the end raises ``BackupMismatch`` if the bytes
        are not the ones the manifest recorded. Close it when done."""
        label = f"{backup.database} on {backup.day} ({backup.where})"
        if backup.location == DAILY:
            manifest = self.manifest_of(backup)
            assert manifest is not None
            try:
                raw = self.store.open_dump(manifest)
            except StorageObjectNotFound as exc:
                raise BackupNotFound(f"{label}: the dump is gone from the bucket ({exc})") from exc
            except CiphertextDamaged as exc:
                raise BackupMismatch(f"{label}: {exc}") from exc
            stored = HashingReader(raw)
            try:
                sql = decompressing_reader(io.BufferedReader(stored, CHUNK), label)
            except BaseException:
                stored.close()
                raise
            expected_stored = (manifest.dump_bytes, manifest.dump_sha256)
            return io.BufferedReader(_CheckedSQL(sql, backup, label, stored, expected_stored), CHUNK)  # type: ignore[return-value]
        return io.BufferedReader(_CheckedSQL(self._open_member(backup, label), backup, label, None, None), CHUNK)  # type: ignore[return-value]

    def open_stored(self, backup: Backup) -> BinaryIO:
        """The object holding the backup exactly as stored (for an encrypted backup: its age file, which needs no
        identity to serve), checked: reading to its end raises ``BackupMismatch`` unless its size and sha256
        are the recorded ones."""
        try:
            raw = self.store.bucket.open(backup.key)
        except StorageObjectNotFound as exc:
            raise BackupNotFound(f"{backup.database} on {backup.day}: {backup.key} is gone from the bucket") from exc
        return io.BufferedReader(_CheckedStored(HashingReader(raw), backup), CHUNK)  # type: ignore[return-value]

    def _open_member(self, backup: Backup, label: str) -> BinaryIO:
        stack = ExitStack()
        try:
            try:
                raw = stack.enter_context(
                    self.archives.open_archive(backup.archive)
                    if backup.archive is not None
                    else self.store.bucket.open(backup.key)
                )
            except StorageObjectNotFound as exc:
                raise BackupNotFound(f"{label}: the archive is gone from the bucket ({exc})") from exc
            except CiphertextDamaged as exc:
                raise BackupMismatch(f"{label}: {exc}") from exc
            members = stack.enter_context(iter_tar(raw))
            for info, reader in members:
                if info.name == backup.member and reader is not None:
                    return _Member(reader, stack)  # type: ignore[return-value]
        except _DAMAGE as exc:
            stack.close()
            raise BackupMismatch(f"{label}: the archive is damaged ({type(exc).__name__}: {exc})") from exc
        except BaseException:
            stack.close()
            raise
        stack.close()
        raise BackupMismatch(f"{label}: the archive does not contain {backup.member} although its index lists it")

    def verify(self, backup: Backup) -> None:
        """Read the whole backup and check it; ``BackupMismatch`` if it is damaged."""
        with self.open_sql(backup) as reader:
            while reader.read(CHUNK):
                pass

    def download(self, backup: Backup, target: Path | str, *, overwrite: bool = False) -> Path:
        """Write the backup's SQL to ``target``, checked against its manifest before it appears under that name.

        On any failure (a mismatch, a lost connection) nothing is left at ``target`` or beside it.
        """
        target = Path(target)
        if target.is_dir():
            raise CatalogError(f"{target} is a directory: give a file name")
        if target.exists() and not overwrite:
            raise CatalogError(f"{target} already exists: choose another name, or remove it first")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, self.open_sql(backup) as reader:
                while chunk := reader.read(CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target


def list_document(
    backups: list[Backup], *, database: str | None = None, day: str | None = None, limit: int | None = None
) -> dict:
    """The spec's ``/list`` document: matching backups (newest first), how many match, how many there are."""
    matching = [b for b in backups if (database is None or b.database == database) and (day is None or b.day == day)]
    shown = matching if limit is None else matching[:limit]
    return {"backups": [b.to_dict() for b in shown], "total": len(backups), "filtered": len(matching)}


def _parse_time(text: str) -> datetime | None:
    try:
        return parse_utc_timestamp(text)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------------
# Checked streams
# --------------------------------------------------------------------------------------------------

# What damaged compressed or tar data raises while it is read.
_DAMAGE = (OSError, EOFError, ValueError, tarfile.TarError, zstandard.ZstdError, zlib.error, CorruptDump)


class _Member(io.RawIOBase):
    """One member of a tar read from the bucket; closing it closes the archive stream."""

    def __init__(self, reader: BinaryIO, stack: ExitStack) -> None:
        self.reader = reader
        self.stack = stack

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.reader.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.stack.close()
        super().close()


class _CheckedStored(io.RawIOBase):
    """A stored object read whole; at its end its size and sha256 must be the ones its manifest records."""

    def __init__(self, raw: HashingReader, backup: Backup) -> None:
        self.raw, self.backup = raw, backup

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        expected = self.backup.stored_digest
        if (n == 0 and len(buffer)) or self.raw.bytes > expected[0]:
            found = (self.raw.bytes, self.raw.sha256.hexdigest())
            if found != expected:
                raise BackupMismatch(
                    f"{self.backup.key}: {found[0]} bytes with sha256 {found[1][:16]}..., the manifest records "
                    f"{expected[0]} bytes with sha256 {expected[1][:16]}...: it is damaged; use another backup"
                )
        return n

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
        super().close()


class _CheckedSQL(io.RawIOBase):
    """The SQL of a backup, hashed as it is read; at its end the digests must match what was recorded."""

    def __init__(
        self,
        sql: BinaryIO,
        backup: Backup,
        label: str,
        stored: HashingReader | None,
        expected_stored: tuple[int, str] | None,
    ) -> None:
        self.sql = sql
        self.backup = backup
        self.label = label
        self.stored = stored
        self.expected_stored = expected_stored
        self.sha256 = hashlib.sha256()
        self.bytes = 0
        self.checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self.sql.read(len(buffer))
        except (StorageError, PatinaError):
            raise
        except _DAMAGE as exc:
            raise BackupMismatch(
                f"{self.label}: the stored data is damaged ({type(exc).__name__}: {exc}); use another day's backup"
            ) from exc
        n = len(data)
        if n == 0:
            if len(buffer):
                self._check()
            return 0
        buffer[:n] = data
        self.sha256.update(data)
        self.bytes += n
        if self.bytes > self.backup.sql_bytes:
            raise BackupMismatch(
                f"{self.label}: more SQL than the {self.backup.sql_bytes} bytes recorded for it: "
                "the backup was altered; do not use it"
            )
        return n

    def _check(self) -> None:
        if self.checked:
            return
        problems = []
        digest = self.sha256.hexdigest()
        if (self.bytes, digest) != (self.backup.sql_bytes, self.backup.sql_sha256):
            problems.append(
                f"its SQL has {self.bytes} bytes with sha256 {digest[:16]}..., the manifest records "
                f"{self.backup.sql_bytes} bytes with sha256 {self.backup.sql_sha256[:16]}..."
            )
        if self.stored is not None and self.expected_stored is not None:
            self.stored.drain()
            stored = (self.stored.bytes, self.stored.sha256.hexdigest())
            if stored != self.expected_stored:
                problems.append(
                    f"the stored object has {stored[0]} bytes with sha256 {stored[1][:16]}..., the "
                    f"manifest records {self.expected_stored[0]} bytes with sha256 "
                    f"{self.expected_stored[1][:16]}..."
                )
        if problems:
            raise BackupMismatch(
                f"{self.label} does not match its manifest: {'; '.join(problems)}. "
                "It is damaged: use another day's backup"
            )
        self.checked = True

    def close(self) -> None:
        if not self.closed:
            try:
                self.sql.close()
            finally:
                if self.stored is not None:
                    self.stored.close()
        super().close()


# --------------------------------------------------------------------------------------------------
# Small helpers shared by the tools
# --------------------------------------------------------------------------------------------------


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with a Z, to the second."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
