"""Retention of R2 snapshots and garbage collection of the objects no kept snapshot names (plain Python).

Per name, the snapshots kept are the newest ``daily_days`` days and the newest snapshot of each of the newest
``weekly_weeks`` ISO weeks (the same numbers as the dumps: 7 and 12).  The rest are deleted in this order, so a
published manifest never names an object that is gone:

1. every entries file of every kept snapshot is read (any that cannot be read stops the collection before
   anything is deleted: it could name objects that would otherwise look unreferenced);
2. the dropped snapshots' manifests, then their entries files;
3. the objects in ``r2/objects/`` that no kept snapshot names and that are older than ``grace`` (a backup in
   progress has copied objects its manifest does not name yet), and none at all while a backup runs (its marker
   in ``r2/in-progress/`` is younger than ``grace``): it may be about to name an old object it found stored.

The referenced sha256s are kept in a SQLite file in a scratch directory, not in memory, so a million keys
cost a few dozen MB of disk and flat memory.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from ..config import RetentionConfig
from ..encryption import AgeKeys, EncryptionError
from ..leftovers import scratch_directory
from ..storage import Bucket, StorageError
from .layout import (
    IN_PROGRESS_PREFIX,
    OBJECTS_PREFIX,
    SnapshotManifest,
    list_snapshots,
    open_entries,
    parse_snapshot_key,
    snapshot_files,
)

logger = logging.getLogger(__name__)

#: Unnamed objects and entries files younger than this are left alone: a backup running now made them.
GRACE = timedelta(hours=24)


class GarbageCollectionRefused(StorageError):
    """A kept snapshot could not be read, so nothing is deleted (it could name any object)."""


@dataclass
class R2RetentionResult:
    kept: list[str] = field(default_factory=list)  # manifest keys
    deleted_snapshots: list[str] = field(default_factory=list)
    deleted_entries: int = 0
    deleted_objects: int = 0
    deleted_bytes: int = 0
    referenced_objects: int = 0
    young_unreferenced: int = 0  # unnamed but within the grace period
    held_back_by: list[str] = field(default_factory=list)  # backups running: no object was deleted

    def summary(self) -> str:
        if self.held_back_by:
            return (
                f"kept {len(self.kept)} snapshots, deleted {len(self.deleted_snapshots)}; no object deleted while "
                f"{len(self.held_back_by)} backup(s) run"
            )
        return (
            f"kept {len(self.kept)} snapshots, deleted {len(self.deleted_snapshots)}; "
            f"{self.referenced_objects} objects named, {self.deleted_objects} unnamed deleted "
            f"({self.deleted_bytes} bytes), {self.young_unreferenced} unnamed kept for now (younger than the grace period)"
        )


def kept_days(days: Iterable[str], retention: RetentionConfig) -> set[str]:
    """The days of one name's snapshots that retention keeps (``days``: YYYY-MM-DD)."""
    ordered = sorted(set(days), reverse=True)
    kept = set(ordered[: retention.daily_days])
    weeks_seen: list[tuple[int, int]] = []
    for day in ordered:
        week = date.fromisoformat(day).isocalendar()[:2]
        if week in weeks_seen:
            continue
        weeks_seen.append(week)
        if len(weeks_seen) > retention.weekly_weeks:
            break
        kept.add(day)  # the newest snapshot of that week
    return kept


def collect_garbage(
    backup: Bucket,
    retention: RetentionConfig,
    *,
    now: datetime | None = None,
    grace: timedelta = GRACE,
    scratch_parent: Path | str | None = None,
    keys: AgeKeys | None = None,
) -> R2RetentionResult:
    """Apply retention to every R2 snapshot in ``backup`` and delete the objects no kept snapshot names.  An
    encrypted snapshot's list of objects needs ``keys`` with the identity: without it nothing is deleted."""
    now = now or datetime.now(UTC)
    result = R2RetentionResult()
    snapshots, corrupt = list_snapshots(backup)
    if corrupt:
        key, why = next(iter(corrupt.items()))
        raise GarbageCollectionRefused(
            f"{len(corrupt)} R2 snapshot manifest(s) cannot be read ({key}: {why}); nothing is deleted, since they "
            "could name any object. Fix or remove them (`patina list` shows them), then retention runs again"
        )
    by_name: dict[str, list[SnapshotManifest]] = {}
    for manifest in snapshots:
        by_name.setdefault(manifest.name, []).append(manifest)
    kept: list[SnapshotManifest] = []
    dropped: list[SnapshotManifest] = []
    for manifests in by_name.values():
        keep = kept_days((m.day for m in manifests), retention)
        for manifest in manifests:
            (kept if manifest.day in keep else dropped).append(manifest)
    result.kept = [m.key for m in kept]

    with scratch_directory("r2-gc", scratch_parent) as scratch:
        names = sqlite3.connect(scratch / "referenced.sqlite")
        try:
            # Object keys, not sha256s: the same bytes may be stored both plain and encrypted (encryption turned
            # on), and each form is kept while a kept snapshot names it.
            names.execute("CREATE TABLE referenced (key TEXT PRIMARY KEY) WITHOUT ROWID")
            for manifest in kept:
                try:
                    names.executemany(
                        "INSERT OR IGNORE INTO referenced VALUES (?)",
                        ((manifest.object_key(entry.sha256),) for entry in open_entries(backup, manifest, keys)),
                    )
                except (StorageError, EncryptionError) as exc:
                    raise GarbageCollectionRefused(
                        f"the kept R2 snapshot {manifest.key} cannot be read ({exc}); nothing is deleted"
                    ) from exc
            names.commit()
            result.referenced_objects = names.execute("SELECT count(*) FROM referenced").fetchone()[0]

            if dropped:
                backup.delete_many(m.key for m in dropped)
                result.deleted_snapshots = [m.key for m in dropped]
            named_entries = {m.entries_key for m in kept}
            stale_entries = []
            for info in snapshot_files(backup):
                parsed = parse_snapshot_key(info.key)
                if parsed is None or parsed.generation is None or info.key in named_entries:
                    continue
                if any(m.entries_key == info.key for m in dropped) or info.last_modified < now - grace:
                    stale_entries.append(info.key)
            backup.delete_many(stale_entries)
            result.deleted_entries = len(stale_entries)

            running = [i.key for i in backup.list(IN_PROGRESS_PREFIX) if i.last_modified >= now - grace]
            if running:
                result.held_back_by = running
                logger.info("R2 retention deletes no object while a backup runs (%s)", ", ".join(running))
                return result
            doomed: list[str] = []
            for info in backup.list(OBJECTS_PREFIX):
                if names.execute("SELECT 1 FROM referenced WHERE key = ?", (info.key,)).fetchone():
                    continue
                if info.last_modified >= now - grace:
                    result.young_unreferenced += 1
                    continue
                doomed.append(info.key)
                result.deleted_bytes += info.size
                if len(doomed) >= 1000:
                    backup.delete_many(doomed)
                    result.deleted_objects += len(doomed)
                    doomed = []
            backup.delete_many(doomed)
            result.deleted_objects += len(doomed)
        finally:
            names.close()
    logger.info("R2 retention: %s", result.summary())
    return result
