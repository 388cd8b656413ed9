"""One database's backup history without listing the whole bucket: a small index per database. Plain Python.

The checks need, for one database, its backups in capture order (the last 7 before tonight's for the size
average, the one before for schema drift, the newest when a check is run by hand). Listing ``daily/`` for
that reads every database's keys for every day kept, and every manifest of the database: a night then
costs databases^2 x days. Instead each database has one index object::

    index/daily/<database>.json   {"database": ..., "backups": {"<day>": {"key": ..., "captured_at": ...}}}

It only says where to look; the bucket stays the truth. Every backup taken from it is read back (its
manifest, and its dump's size) before it is used, so a stale entry (a day re-run, deleted or damaged since)
is caught, and then the index is rebuilt from a listing of the bucket, as it is when it is missing or
unreadable. ``record`` adds each new backup after its publish (re-reading its own entry, so two runs of
one database writing at once converge); retention's reconciliation rebuilds every index from its listing,
so an entry lost to a crash between the manifest and the index comes back at the latest then.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from .storage import (
    BackupStore,
    CorruptManifest,
    DailyInventory,
    Manifest,
    StorageError,
    StorageObjectNotFound,
    by_capture,
    format_day,
    parse_utc_timestamp,
    validate_database_name,
)

logger = logging.getLogger(__name__)

INDEX_PREFIX = "index/daily/"
INDEX_CONTENT_TYPE = "application/json"
# How often `record` re-reads and re-writes when another writer replaced the index in between.
RECORD_ATTEMPTS = 3


def index_key(database: str) -> str:
    """``index/daily/<database>.json``."""
    return f"{INDEX_PREFIX}{validate_database_name(database)}.json"


@dataclass(frozen=True)
class Entry:
    """Where one backup of the database is, and when it was captured (its place in the history)."""

    day: str
    key: str
    captured_at: str

    @property
    def order(self) -> tuple[datetime, str]:
        return (parse_utc_timestamp(self.captured_at), self.day)


def _order(manifest: Manifest) -> tuple[datetime, str]:
    return by_capture(manifest)[:2]


def read_index(store: BackupStore, database: str) -> dict[str, Entry] | None:
    """day -> Entry; None when there is no index or it cannot be read (then the listing decides)."""
    try:
        raw = store.bucket.get_bytes(index_key(database))
    except StorageObjectNotFound:
        return None
    try:
        data = json.loads(raw)
        if data.get("database") != database:
            raise ValueError(f"it describes {data.get('database')!r}")
        entries = {
            format_day(day): Entry(format_day(day), str(e["key"]), str(e["captured_at"]))
            for day, e in data["backups"].items()
        }
        for entry in entries.values():
            entry.order  # noqa: B018  (a timestamp that does not parse makes the index unreadable)
    except (ValueError, KeyError, TypeError, AttributeError, StorageError) as e:
        logger.warning("the history index %s cannot be read (%s); listing the bucket instead", index_key(database), e)
        return None
    return entries


def write_index(store: BackupStore, database: str, entries: dict[str, Entry]) -> None:
    document = {
        "database": database,
        "backups": {day: {"key": e.key, "captured_at": e.captured_at} for day, e in sorted(entries.items())},
    }
    store.bucket.put_bytes(
        index_key(database), json.dumps(document, indent=1).encode("utf-8"), content_type=INDEX_CONTENT_TYPE
    )


def entries_of(backups: list[Manifest]) -> dict[str, Entry]:
    return {m.day: Entry(m.day, m.key, m.captured_at) for m in backups}


def rebuild(store: BackupStore, database: str) -> list[Manifest]:
    """The database's backups from a listing of the bucket (the truth), oldest first; the index rewritten."""
    backups = store.list_daily(database=database)
    try:
        write_index(store, database, entries_of(backups))
    except StorageError as e:  # the next reader lists again
        logger.warning("the history index of %s could not be written: %s", database, e)
    return backups


def rebuild_all(store: BackupStore, inventory: DailyInventory, databases: set[str] = frozenset()) -> int:
    """Every database's index from one listing (retention's reconciliation); `databases` also get an empty
    one. Only indexes that differ are written. Returns how many were written."""
    by_database: dict[str, list[Manifest]] = {name: [] for name in databases}
    for manifest in inventory.backups:
        by_database.setdefault(manifest.database, []).append(manifest)
    written = 0
    for database, backups in sorted(by_database.items()):
        wanted = entries_of(backups)
        if read_index(store, database) != wanted:
            try:
                write_index(store, database, wanted)
            except StorageError as e:  # readers list the bucket instead
                logger.warning("the history index of %s could not be written: %s", database, e)
                continue
            written += 1
    return written


def confirmed(store: BackupStore, database: str, entry: Entry) -> Manifest | None:
    """The backup `entry` points at, read back from the bucket: None unless its manifest still names
    that dump and the dump is there with the recorded size (what `BackupStore.list_daily` counts)."""
    try:
        manifest = store.get_manifest(entry.day, database)
    except CorruptManifest:
        return None
    if manifest is None or manifest.key != entry.key or manifest.captured_at != entry.captured_at:
        return None
    dump = store.bucket.stat(manifest.key)
    return manifest if dump is not None and dump.size == manifest.bytes else None


def backups_before(store: BackupStore, current: Manifest, limit: int | None = None) -> list[Manifest]:
    """The backups of `current`'s database captured before it, oldest first (the last `limit` when given),
    each confirmed in the bucket; from a listing when the index is missing, unreadable or stale."""
    entries = read_index(store, current.database)
    if entries is not None:
        earlier = sorted((e for e in entries.values() if e.order < _order(current)), key=lambda e: e.order)
        picked = [confirmed(store, current.database, e) for e in (earlier[-limit:] if limit else earlier)]
        if all(m is not None for m in picked):
            return picked  # type: ignore[return-value]
    backups = rebuild(store, current.database)
    earlier = sorted((m for m in backups if _order(m) < _order(current)), key=_order)
    return earlier[-limit:] if limit else earlier


def newest_backup(store: BackupStore, database: str) -> Manifest | None:
    """The backup of `database` captured last that counts, or None."""
    entries = read_index(store, database)
    if entries:
        newest = max(entries.values(), key=lambda e: e.order)
        manifest = confirmed(store, database, newest)
        if manifest is not None:
            return manifest
    return max(rebuild(store, database), key=_order, default=None)


def record(store: BackupStore, manifest: Manifest) -> None:
    """Add the backup `manifest` describes (just published) to its database's index, replacing the day's
    previous entry. A missing or unreadable index is rebuilt from the bucket (which already holds it).
    Errors are logged, not raised: the backup counts without its entry, and readers fall back to listing."""
    database = manifest.database
    mine = Entry(manifest.day, manifest.key, manifest.captured_at)
    try:
        for _ in range(RECORD_ATTEMPTS):
            entries = read_index(store, database)
            if entries is None:
                rebuild(store, database)
            elif entries.get(manifest.day) != mine:
                write_index(store, database, {**entries, manifest.day: mine})
            if (read_index(store, database) or {}).get(manifest.day) == mine:
                return
        logger.warning("%s %s: not in the history index after %d attempts", database, manifest.day, RECORD_ATTEMPTS)
    except StorageError as e:
        logger.warning("%s %s: the history index could not be updated: %s", database, manifest.day, e)


def forget(store: BackupStore, database: str, days: set[str]) -> None:
    """Drop `days` from the database's index (their backups were deleted); a missing index stays missing."""
    try:
        entries = read_index(store, database)
        if entries is not None and days & set(entries):
            write_index(store, database, {d: e for d, e in entries.items() if d not in days})
    except StorageError as e:
        logger.warning("%s: the history index could not be updated: %s", database, e)
