"""One database's backup history without listing the whole bucket: a small index per database. Plain Python.

The checks need, for one database, its backups in capture order (the last 7 before tonight's for the size
average, the one before for schema drift, the newest when a check is run by hand). Listing ``daily/`` for
that reads every database's keys for every day kept, and every manifest of the database: a night then
costs databases^2 x days. Instead each database has one index object::

    index/daily/<database>.json   {"database": ..., "version": 2,
                                   "backups": {"<day>": {"key": ..., "captured_at": ..., "facts": {...}}}}

``facts`` is what `patina status` and the API's ``/status``, ``/metrics`` and ``/list`` report of the backup
(sizes, digests, format, timings, run, and its restore verification's verdict), so a status reads one
index per database instead of every manifest and verification record. Indexes written before it existed
(version 1, no ``facts``) are upgraded when they are next rebuilt.

It only says where to look; the bucket stays the truth. Every backup a check takes from it is read back
(its manifest, and its dump's size) before it is used, so a stale entry (a day re-run, deleted or damaged
since) is caught, and then the index is rebuilt from a listing of the bucket, as it is when it is missing or
unreadable. A status checks each index against its one listing of the bucket (``view_from_indexes``): the
days with a manifest, each dump's key and size, which verification records exist, and that no manifest or
record is newer than the index; an index that fails any of that is rebuilt from that database's keys of the
listing, and the status says so. ``record`` adds each new backup after its publish and each verdict after
its verification (re-reading its own entry, so two runs of one database writing at once converge);
retention's reconciliation rebuilds every index from its listing.

An index can also lack a backup the bucket holds: a ``record`` that failed (logged, not raised) or never ran
(the run died after the manifest), an index written empty (a new fleet tenant's) or from a listing older
than a backup. So the checks and ``record`` also look at the days the index lacks (``unindexed``: one
listing of the day folders, not their keys, and a stat of the database's manifest on each such day): the
checks use what they find, and ``record`` writes it in with the backup it adds, so a failed ``record``
leaves a hole until the database's next backup or verdict, never for good.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from .storage import (
    DAILY_PREFIX,
    FAILED,
    NOT_VERIFIED,
    BackupStore,
    CorruptManifest,
    DailyInventory,
    DailyKey,
    InvalidKey,
    Manifest,
    ObjectChanged,
    ObjectInfo,
    StorageError,
    StorageObjectNotFound,
    VerificationRecord,
    by_capture,
    daily_manifest_key,
    daily_verification_key,
    format_day,
    parse_daily_key,
    parse_utc_timestamp,
    validate_database_name,
)

logger = logging.getLogger(__name__)

INDEX_PREFIX = "index/daily/"
INDEX_CONTENT_TYPE = "application/json"
INDEX_VERSION = 2  # 2: each entry has its facts (what the status reports); 1 had only key and captured_at
# How often `record` re-reads and re-writes when another writer replaced the index in between.
RECORD_ATTEMPTS = 3
_UNREAD = object()  # `record`: the verification record was not given, read it
_UNCONDITIONAL = object()  # `write_index`: whatever index is there


def index_key(database: str) -> str:
    """``index/daily/<database>.json``."""
    return f"{INDEX_PREFIX}{validate_database_name(database)}.json"


class Facts(NamedTuple):
    """What the status reports of one daily backup, copied from its manifest and its verification record
    when the entry was written (``verification``: VERIFIED, FAILED or NOT_VERIFIED, as
    ``VerificationRecord.status_of`` says), and the ETags the manifest and the record object had then (no
    record: None), so a listing tells whether either was rewritten since.

    Facts and entries are named tuples, not frozen dataclasses: a status reads one per backup (6,000 at 200
    databases x 30 days), and a frozen dataclass of 18 fields takes 4.5 us to make, a tuple under 1."""

    format: str
    encrypted: bool
    bytes: int
    sha256: str
    sql_bytes: int
    sql_sha256: str
    tables: int
    rows: int
    created_at: str
    started_at: str
    finished_at: str
    captured_late: bool
    dagster_run_id: str | None
    verification: str = NOT_VERIFIED
    problem: str | None = None  # why it failed verification (the record's first three problems)
    checked_at: str | None = None  # when the record was written
    manifest_etag: str | None = None
    record_etag: str | None = None

    @classmethod
    def of(
        cls,
        manifest: Manifest,
        record: VerificationRecord | None,
        *,
        manifest_etag: str | None = None,
        record_etag: str | None = None,
    ) -> Facts:
        status = record.status_of(manifest.key, manifest.sha256) if record is not None else NOT_VERIFIED
        return cls(
            format=manifest.format,
            encrypted=bool(manifest.encrypted),
            bytes=manifest.bytes,
            sha256=manifest.sha256,
            sql_bytes=manifest.sql_bytes,
            sql_sha256=manifest.sql_sha256,
            tables=manifest.tables,
            rows=manifest.rows,
            created_at=manifest.created_at,
            started_at=manifest.started_at,
            finished_at=manifest.finished_at,
            captured_late=bool(manifest.captured_late),
            dagster_run_id=manifest.dagster_run_id,
            verification=status,
            problem="; ".join(record.problems[:3]) if record is not None and status == FAILED else None,
            checked_at=record.checked_at if record is not None else None,
            manifest_etag=manifest_etag,
            record_etag=record_etag,
        )

    @classmethod
    def from_dict(cls, data: dict) -> Facts:
        if data.keys() != _FACT_NAMES:  # written by another version: only the fields this one knows
            data = {name: data[name] for name in _FACT_NAMES if name in data}
        facts = cls(**data)  # a missing required field raises TypeError: the index is unreadable
        if not (
            type(facts.bytes) is int
            and type(facts.sql_bytes) is int
            and type(facts.tables) is int
            and type(facts.rows) is int
        ):
            raise ValueError("a size or count is not a number")
        parse_utc_timestamp(facts.created_at)
        parse_utc_timestamp(facts.started_at)
        parse_utc_timestamp(facts.finished_at)
        return facts


_FACT_NAMES = dict.fromkeys(Facts._fields).keys()


class Entry(NamedTuple):
    """Where one backup of the database is, and when it was captured (its place in the history), with its
    facts (None in an index written before they were kept)."""

    day: str
    key: str
    captured_at: str
    facts: Facts | None = None

    @property
    def order(self) -> tuple[datetime, str]:
        return (parse_utc_timestamp(self.captured_at), self.day)

    @classmethod
    def of(
        cls, manifest: Manifest, record: VerificationRecord | None = None, objects: Mapping[str, ObjectInfo] = {}
    ) -> Entry:
        """The entry of `manifest`'s backup with its verification `record`; `objects` (a listing, or stats):
        the manifest's and the record's ETags."""
        manifest_info = objects.get(daily_manifest_key(manifest.day, manifest.database))
        record_info = objects.get(daily_verification_key(manifest.day, manifest.database))
        facts = Facts.of(
            manifest,
            record,
            manifest_etag=manifest_info.etag if manifest_info else None,
            record_etag=record_info.etag if record_info else None,
        )
        return cls(manifest.day, manifest.key, manifest.captured_at, facts)

    def where(self) -> tuple[str, str, str]:
        """What a check compares: the facts may change (a verdict) while the backup stays the same."""
        return (self.day, self.key, self.captured_at)


def _order(manifest: Manifest) -> tuple[datetime, str]:
    return by_capture(manifest)[:2]


def read_index(store: BackupStore, database: str) -> dict[str, Entry] | None:
    """day -> Entry; None when there is no index or it cannot be read (then the listing decides)."""
    try:
        raw = store.bucket.get_bytes(index_key(database))
    except StorageObjectNotFound:
        return None
    except StorageError as e:
        logger.warning("the history index %s cannot be read (%s); listing the bucket instead", index_key(database), e)
        return None
    return parse_index(raw, database)


def parse_index(raw: bytes, database: str) -> dict[str, Entry] | None:
    try:
        data = json.loads(raw)
        if data.get("database") != database:
            raise ValueError(f"it describes {data.get('database')!r}")
        entries = {}
        for day, e in data["backups"].items():
            day = format_day(day)
            facts = Facts.from_dict(e["facts"]) if e.get("facts") is not None else None
            entries[day] = Entry(day, str(e["key"]), str(e["captured_at"]), facts)
        for entry in entries.values():
            entry.order  # noqa: B018  (a timestamp that does not parse makes the index unreadable)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        logger.warning("the history index %s cannot be read (%s); listing the bucket instead", index_key(database), e)
        return None
    return entries


def read_index_version(store: BackupStore, database: str) -> tuple[dict[str, Entry] | None, str | None]:
    """`read_index`, with the ETag of the index read (None: there is none), for a `write_index` that
    replaces only that version. The ETag is taken first: a write in between makes the later write fail,
    never succeed over what this did not read."""
    info = store.bucket.stat(index_key(database))
    return (read_index(store, database), info.etag) if info is not None else (None, None)


def write_index(
    store: BackupStore, database: str, entries: dict[str, Entry], etag: str | None | object = _UNCONDITIONAL
) -> None:
    """Write the database's index; with `etag`, only over the index of that ETag (None: only where there
    is none), else `ObjectChanged`: an index written since it was read is newer than what the writer knows,
    so a rebuild from an older listing, or an entry added to an older index, never overwrites it."""
    document = {
        "database": database,
        "version": INDEX_VERSION,
        "backups": {
            day: {
                "key": e.key,
                "captured_at": e.captured_at,
                **({"facts": e.facts._asdict()} if e.facts is not None else {}),
            }
            for day, e in sorted(entries.items())
        },
    }
    data = json.dumps(document, indent=1).encode("utf-8")
    if etag is _UNCONDITIONAL:
        store.bucket.put_bytes(index_key(database), data, content_type=INDEX_CONTENT_TYPE)
    else:
        store.bucket.put_bytes_if_unchanged(index_key(database), data, etag, content_type=INDEX_CONTENT_TYPE)  # type: ignore[arg-type]


def entries_of(
    backups: list[Manifest],
    records: Mapping[tuple[str, str], VerificationRecord] | None = None,
    objects: Mapping[str, ObjectInfo] = {},
) -> dict[str, Entry]:
    """The entries of `backups`, with their verification `records` by (day, database) and the ETags of
    the listing `objects`."""
    records = records or {}
    return {m.day: Entry.of(m, records.get((m.day, m.database)), objects) for m in backups}


def _entries_from(store: BackupStore, inventory: DailyInventory, objects: Mapping[str, ObjectInfo]) -> dict[str, Entry]:
    return entries_of(inventory.backups, store.verifications(inventory), objects)


def _listing(store: BackupStore) -> dict[str, ObjectInfo]:
    return {info.key: info for info in store.bucket.list(DAILY_PREFIX)}


def rebuild(store: BackupStore, database: str) -> list[Manifest]:
    """The database's backups from a listing of the bucket (the truth), oldest first; the index rewritten
    unless another writer wrote it after this began (then theirs is the newer)."""
    before = store.bucket.stat(index_key(database))
    objects = _listing(store)
    inventory = store.inventory(database=database, objects=objects)
    try:
        write_index(store, database, _entries_from(store, inventory, objects), before.etag if before else None)
    except ObjectChanged:
        logger.info("the history index of %s was written during its rebuild; that one is kept", database)
    except StorageError as e:  # the next reader lists again
        logger.warning("the history index of %s could not be written: %s", database, e)
    return inventory.backups


def rebuild_all(
    store: BackupStore,
    inventory: DailyInventory,
    databases: set[str] = frozenset(),
    objects: Mapping[str, ObjectInfo] | None = None,
    indexes: Mapping[str, ObjectInfo] | None = None,
) -> int:
    """Every database's index from one listing (retention's reconciliation; `objects`: that listing of
    ``daily/``, for the ETags; listed again when not given); `databases` also get an empty one. Only
    indexes that differ are written, each only over the version `indexes` (a listing of ``index/daily/``
    taken before that of ``daily/``) saw: one written since (a publish's) is newer than the listing and is
    kept. Returns how many were written."""
    by_database: dict[str, list[Manifest]] = {name: [] for name in databases}
    for manifest in inventory.backups:
        by_database.setdefault(manifest.database, []).append(manifest)
    records = store.verifications(inventory)
    indexes = index_listing(store) if indexes is None else indexes
    objects = _listing(store) if objects is None else objects
    written = 0
    for database, backups in sorted(by_database.items()):
        wanted = entries_of(backups, records, objects)
        if read_index(store, database) == wanted:
            continue
        listed = indexes.get(index_key(database))
        try:
            write_index(store, database, wanted, listed.etag if listed else None)
        except ObjectChanged:
            logger.info(
                "the history index of %s was written since reconciliation listed it; that one is kept", database
            )
            continue
        except StorageError as e:  # readers list the bucket instead
            logger.warning("the history index of %s could not be written: %s", database, e)
            continue
        written += 1
    return written


def index_listing(store: BackupStore) -> dict[str, ObjectInfo]:
    """Every history index's key and version, from one listing of ``index/daily/``."""
    return {info.key: info for info in store.bucket.list(INDEX_PREFIX)}


def confirmed(store: BackupStore, database: str, entry: Entry) -> Manifest | None:
    """The backup `entry` points at, read back from the bucket: None unless its manifest still names
    that dump and the dump is there with the recorded size (what `BackupStore.list_daily` counts)."""
    try:
        manifest = store.get_manifest(entry.day, database)
    except CorruptManifest:
        return None
    if manifest is None or manifest.key != entry.key or manifest.captured_at != entry.captured_at:
        return None
    return _with_its_dump(store, manifest)


def _with_its_dump(store: BackupStore, manifest: Manifest) -> Manifest | None:
    dump = store.bucket.stat(manifest.key)
    return manifest if dump is not None and dump.size == manifest.bytes else None


def unindexed(
    store: BackupStore, database: str, entries: Mapping[str, Entry], skip: Iterable[str] = ()
) -> dict[str, tuple[Manifest, Entry]]:
    """The backups of `database` that count on the days of the bucket its index `entries` lacks (day ->
    the manifest and its entry), besides the days `skip`: what a failed `record` (the bucket refused the
    index, the run died before it), or an index written empty or from an older listing, left out of it.

    One listing of the day folders under ``daily/`` (not of their keys: it grows with the days kept, not
    the databases) and a stat of the database's manifest on each day the index lacks: none when it holds
    every day, at most the days kept for a database new since. A manifest found is read back as
    `confirmed` reads an entry's (a damaged backup does not count)."""
    skipped = set(skip)
    found: dict[str, tuple[Manifest, Entry]] = {}
    for folder in store.bucket.list_folders(DAILY_PREFIX):
        try:
            day = format_day(folder[len(DAILY_PREFIX) :].rstrip("/"))
        except InvalidKey:  # not a day's folder: no backup of Patina's in it
            continue
        if day in entries or day in skipped:
            continue
        manifest_key = daily_manifest_key(day, database)
        manifest_info = store.bucket.stat(manifest_key)
        if manifest_info is None:
            continue
        try:
            manifest = store.get_manifest(day, database)
        except CorruptManifest:
            continue
        if manifest is None or _with_its_dump(store, manifest) is None:
            continue
        record_key = daily_verification_key(day, database)
        record_info = store.bucket.stat(record_key)
        record = store.get_verification(day, database) if record_info is not None else None
        stats = {manifest_key: manifest_info, **({record_key: record_info} if record_info is not None else {})}
        found[day] = (manifest, Entry.of(manifest, record, stats))
    return found


def backups_before(store: BackupStore, current: Manifest, limit: int | None = None) -> list[Manifest]:
    """The backups of `current`'s database captured before it, oldest first (the last `limit` when given),
    each confirmed in the bucket; from the index and the days it lacks (`unindexed`), or from a listing
    when the index is missing, unreadable or stale."""
    entries = read_index(store, current.database)
    if entries is not None:
        found = unindexed(store, current.database, entries, skip=[current.day])
        candidates = [*entries.values(), *(entry for _, entry in found.values())]
        earlier = sorted((e for e in candidates if e.order < _order(current)), key=lambda e: e.order)
        picked = [
            found[e.day][0] if e.day in found else confirmed(store, current.database, e)
            for e in (earlier[-limit:] if limit else earlier)
        ]
        if all(m is not None for m in picked):
            return picked  # type: ignore[return-value]
    backups = rebuild(store, current.database)
    earlier = sorted((m for m in backups if _order(m) < _order(current)), key=_order)
    return earlier[-limit:] if limit else earlier


def newest_backup(store: BackupStore, database: str) -> Manifest | None:
    """The backup of `database` captured last that counts, or None; from the index and the days it lacks,
    or from a listing when the index is missing, unreadable or its newest entry stale."""
    entries = read_index(store, database)
    if entries is not None:
        found = unindexed(store, database, entries)
        newest = max([*entries.values(), *(entry for _, entry in found.values())], key=lambda e: e.order, default=None)
        if newest is None:
            return None
        manifest = found[newest.day][0] if newest.day in found else confirmed(store, database, newest)
        if manifest is not None:
            return manifest
    return max(rebuild(store, database), key=_order, default=None)


def record(store: BackupStore, manifest: Manifest, verification: VerificationRecord | None | object = _UNREAD) -> None:
    """Add the backup `manifest` describes (just published, or just verified: `verification` is the record
    just written) to its database's index, replacing the day's previous entry. Without `verification` the
    slot's record is read (a re-run's day may keep the record of the dump it replaced). A missing,
    unreadable or old-format index is rebuilt from the bucket (which already holds the backup), and the
    backups of days the index lacks are added with it (`unindexed`). Errors are logged, not raised: the
    backup counts without its entry, the readers find it as a day their index lacks, and the database's next
    `record` writes it in."""
    database = manifest.database
    published = verification is _UNREAD
    try:
        if published:
            verification = store.get_verification(manifest.day, database)
        stats = {
            key: info
            for key in (daily_manifest_key(manifest.day, database), daily_verification_key(manifest.day, database))
            if (info := store.bucket.stat(key)) is not None
        }
        mine = Entry.of(manifest, verification, stats)  # type: ignore[arg-type]
        for _ in range(RECORD_ATTEMPTS):
            entries, etag = read_index_version(store, database)
            if entries is None or any(e.facts is None for e in entries.values()):
                rebuild(store, database)
            else:
                # The backups an earlier failed `record` (or an index written empty) left out go in with this
                # one: a hole lasts until the database's next backup or verdict, never for good.
                lacking = {day: e for day, (_, e) in unindexed(store, database, entries, [manifest.day]).items()}
                if entries.get(manifest.day) != mine or lacking:
                    try:  # only over the index just read: another writer's entry is never dropped
                        write_index(store, database, {**entries, **lacking, manifest.day: mine}, etag)
                    except ObjectChanged:
                        continue
            now = (read_index(store, database) or {}).get(manifest.day)
            # After a publish, a verdict another writer put on this very backup since we read the record wins.
            if now == mine or (now is not None and now.where() == mine.where() and published):
                return
        logger.warning("%s %s: not in the history index after %d attempts", database, manifest.day, RECORD_ATTEMPTS)
    except StorageError as e:
        logger.warning("%s %s: the history index could not be updated: %s", database, manifest.day, e)


def forget(store: BackupStore, database: str, days: set[str]) -> None:
    """Drop `days` from the database's index (their backups were deleted); a missing index stays missing."""
    try:
        for _ in range(RECORD_ATTEMPTS):
            entries, etag = read_index_version(store, database)
            if entries is None or not days & set(entries):
                return
            try:  # only over the index just read, as `record`
                write_index(store, database, {d: e for d, e in entries.items() if d not in days}, etag)
                return
            except ObjectChanged:
                continue
        logger.warning("%s: %s still in the history index after %d attempts", database, sorted(days), RECORD_ATTEMPTS)
    except StorageError as e:
        logger.warning("%s: the history index could not be updated: %s", database, e)


# --------------------------------------------------------------------------------------------------
# What a status reads: every database's index, checked against one listing
# --------------------------------------------------------------------------------------------------


@dataclass
class DailyView:
    """The daily backups of a bucket as the status reports them: ``entries`` the backups that count (with
    their facts), and what does not count, as ``DailyInventory`` sorts it. ``rebuilt``: database -> why its
    index could not be trusted and was rebuilt from the listing (a view from a full inventory has none)."""

    entries: list[tuple[str, Entry]] = field(default_factory=list)  # (database, entry)
    corrupt: dict[str, str] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    broken_manifests: dict[str, Manifest] = field(default_factory=dict)
    orphans: list[ObjectInfo] = field(default_factory=list)
    rebuilt: dict[str, str] = field(default_factory=dict)

    def add(self, database: str, entries: Iterable[Entry], inventory: DailyInventory | None = None) -> None:
        self.entries += [(database, e) for e in entries]
        if inventory is not None:
            self.corrupt.update(inventory.corrupt)
            self.broken.update(inventory.broken)
            self.broken_manifests.update(inventory.broken_manifests)
            self.orphans += inventory.orphans


def view_from_inventory(
    store: BackupStore, inventory: DailyInventory, objects: Mapping[str, ObjectInfo] = {}
) -> DailyView:
    """Every backup from a full inventory (every manifest and verification record read): the reference."""
    records = store.verifications(inventory)
    view = DailyView()
    for manifest in inventory.backups:
        view.add(manifest.database, entries_of([manifest], records, objects).values())
    view.add("", (), inventory)
    return view


def view_from_indexes(
    store: BackupStore,
    objects: Mapping[str, ObjectInfo],
    indexes: Mapping[str, ObjectInfo],
    databases: Iterable[str] = (),
) -> DailyView:
    """The daily backups from each database's index, checked against `objects` (one listing of ``daily/``)
    and `indexes` (one of ``index/daily/``): per database its index and, beyond it, only the manifests of
    days the index does not hold (damaged ones, or new since: then the index is rebuilt). Databases are
    those with keys in the listing, and `databases` (the configured ones)."""
    by_database: dict[str, dict[str, tuple[ObjectInfo, DailyKey]]] = {name: {} for name in databases}
    for key, info in objects.items():
        parsed = parse_daily_key(key)
        if parsed is not None:
            by_database.setdefault(parsed.database, {})[key] = (info, parsed)
    view = DailyView()
    for database, keys in sorted(by_database.items()):
        index_info = indexes.get(index_key(database))
        if not keys and index_info is None:
            continue
        _view_one(store, database, keys, index_info, view)
    return view


def view_of_database(store: BackupStore, database: str) -> DailyView:
    """One database's daily backups as :func:`view_from_indexes` gives them, without listing any other
    database's keys: the days from one listing of the folders under ``daily/``, that database's own keys of
    each day (``daily/<day>/<database>.``), its index checked against them as a status checks it, and
    rebuilt from them when it does not match. What it reads grows with the days kept, not the databases."""
    keys: dict[str, tuple[ObjectInfo, DailyKey]] = {}
    for folder in store.bucket.list_folders(DAILY_PREFIX):
        for info in store.bucket.list(f"{folder}{database}."):
            parsed = parse_daily_key(info.key)
            if parsed is not None and parsed.database == database:  # not "foo.x" when asked for "foo"
                keys[info.key] = (info, parsed)
    index_info = store.bucket.stat(index_key(database))
    view = DailyView()
    if keys or index_info is not None:
        _view_one(store, database, keys, index_info, view)
    return view


def _view_one(
    store: BackupStore,
    database: str,
    keys: dict[str, tuple[ObjectInfo, DailyKey]],
    index_info: ObjectInfo | None,
    view: DailyView,
) -> None:
    entries = read_index(store, database) if index_info is not None else None
    if entries is None:
        why: str | None = "missing" if index_info is None else "unreadable"
    else:
        assert index_info is not None
        why, rest, orphans = _compare(entries, keys, index_info)
    if why is None:
        assert entries is not None
        # Days with keys the index does not hold: damaged backups (reported as such) or new ones (stale).
        inventory = store.inventory(database=database, objects=rest) if rest else DailyInventory()
        if inventory.backups:
            why = f"stale: it lacks {', '.join(m.day for m in inventory.backups[:3])}"
        else:
            view.add(database, entries.values(), inventory)
            view.orphans += orphans
            return
    listed = {k: info for k, (info, _) in keys.items()}
    inventory = store.inventory(database=database, objects=listed)
    rebuilt = _entries_from(store, inventory, listed)
    view.add(database, rebuilt.values(), inventory)
    view.rebuilt[database] = why
    try:  # only over the index listed: one written since (a publish's, a verdict's) is newer than this listing
        if index_info is None or index_info.etag:
            write_index(store, database, rebuilt, index_info.etag if index_info else None)
    except ObjectChanged:
        logger.info("the history index of %s was written since the status listed it; that one is kept", database)
    except StorageError as e:  # the report stands; the next status rebuilds again
        logger.warning("the history index of %s could not be written: %s", database, e)


def _compare(
    entries: dict[str, Entry], keys: Mapping[str, tuple[ObjectInfo, DailyKey]], index_info: ObjectInfo
) -> tuple[str | None, dict[str, ObjectInfo], list[ObjectInfo]]:
    """Why the index does not describe the listed keys of its database (None: it does); the keys of the
    days it does not hold; the dumps of the days it holds that are not theirs (orphans). One pass."""
    if any(e.facts is None for e in entries.values()):
        return "written by an older Patina (no facts)", {}, []
    rest: dict[str, ObjectInfo] = {}
    orphans: list[ObjectInfo] = []
    manifests: dict[str, ObjectInfo] = {}
    records: dict[str, ObjectInfo] = {}
    newer = None  # the first manifest or record of a day it holds written after it
    for key, (info, parsed) in keys.items():
        entry = entries.get(parsed.day)
        if entry is None:
            rest[key] = info
        elif parsed.kind == "dump":
            if key != entry.key:
                orphans.append(info)
        else:
            (manifests if parsed.kind == "manifest" else records)[parsed.day] = info
            if newer is None and info.last_modified > index_info.last_modified:
                newer = key
    for day, entry in sorted(entries.items()):
        facts = entry.facts
        assert facts is not None
        dump = keys.get(entry.key)
        if day not in manifests:
            return f"stale: the backup of {day} is gone", rest, orphans
        if manifests[day].etag != facts.manifest_etag:
            return f"stale: the manifest of {day} was rewritten", rest, orphans
        if dump is None or dump[0].size != facts.bytes:
            return f"stale: the dump of {day} changed", rest, orphans
        record = records.get(day)
        if (record.etag if record else None) != facts.record_etag:
            return f"stale: the verification record of {day} {'changed' if record else 'went'}", rest, orphans
    # A manifest or record written after the index (a re-run, a verdict) that its writer did not index: what
    # the ETags say already, for buckets whose listings give none. (The days it does not hold are read anyway.)
    return (f"stale: {newer} was written after it" if newer else None), rest, orphans
