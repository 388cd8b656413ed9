"""Reconciliation, as plain Python (no Dagster).

``reconcile`` compares the bucket with what the records say should be there (the Dagster
layer derives ``RecordedBackups`` from its event log) and sorts every difference into: recorded but
missing, corrupt (bytes that do not match their manifest, unreadable manifests), unknown (in the bucket,
not in the records) and orphans (dumps or archives that never got their manifest: half-finished uploads).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from . import history, leftovers
from .archive import ArchiveStore
from .fleets import FLEETS_PREFIX
from .r2.layout import is_r2_key
from .storage import (
    AUDIT_PREFIX,
    DAILY_PREFIX,
    daily_manifest_key,
    parse_daily_key,
    parse_weekly_key,
    validate_week,
    weekly_manifest_key,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedBackups:
    """What the records say the bucket holds: daily (day, database) slots and archive weeks."""

    dailies: frozenset[tuple[str, str]] = frozenset()
    weeks: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Finding:
    key: str
    detail: str


@dataclass
class Reconciliation:
    """The bucket against the records.  ``missing`` and ``corrupt`` are errors (a backup someone counts on is
    not there or not intact); ``unknown`` and ``orphans`` are warnings (extra objects)."""

    missing: list[Finding] = field(default_factory=list)
    corrupt: list[Finding] = field(default_factory=list)
    unknown: list[Finding] = field(default_factory=list)
    orphans: list[Finding] = field(default_factory=list)
    #: What interrupted runs left (temporaries, incomplete uploads, scratch directories, workers) and whether
    #: the sweep removed it (leftovers.py); one it could not remove is a warning.
    leftovers: list[Finding] = field(default_factory=list)
    leftovers_kept: int = 0
    dailies_checked: int = 0
    archives_checked: int = 0
    objects: int = 0
    indexes_rewritten: int = 0  # history indexes that differed from the listing (history.rebuild_all)

    @property
    def errors(self) -> bool:
        return bool(self.missing or self.corrupt)

    @property
    def warnings(self) -> bool:
        return bool(self.unknown or self.orphans or self.leftovers_kept)

    @property
    def clean(self) -> bool:
        return not (self.errors or self.warnings)

    def counts(self) -> dict[str, int]:
        return {
            "missing": len(self.missing),
            "corrupt": len(self.corrupt),
            "unknown": len(self.unknown),
            "orphans": len(self.orphans),
        }


def reconcile(archives: ArchiveStore, recorded: RecordedBackups, *, deep: bool = True) -> Reconciliation:
    """Compare the bucket with ``recorded``.  ``deep`` re-reads every daily dump and every archive and checks
    their sha256 (and each archive's members); otherwise sizes are compared."""
    store = archives.store
    result = Reconciliation()
    # The history indexes' versions before the listing: one written after it (a publish's) is newer than the
    # listing, and `history.rebuild_all` keeps it rather than overwrite it with what the listing says.
    indexes = history.index_listing(store)
    everything = list(store.bucket.list(""))
    result.objects = len(everything)
    for info in everything:
        if info.key.startswith(AUDIT_PREFIX):  # `patina serve`'s audit log: kept, not a stray
            continue
        if info.key.startswith(FLEETS_PREFIX):  # a fleet's roster (patina_assets.fleets): kept, not a stray
            continue
        if info.key.startswith(history.INDEX_PREFIX):  # the per-database history indexes (history.py)
            continue
        if is_r2_key(info.key):  # R2 snapshots: their own retention and checks (patina_assets.r2)
            continue
        if parse_daily_key(info.key) is None and parse_weekly_key(info.key) is None:
            result.unknown.append(Finding(info.key, "a stray object: not part of Patina's layout"))

    daily_objects = {info.key: info for info in everything if info.key.startswith(DAILY_PREFIX)}
    daily = store.inventory(objects=daily_objects)  # the one listing, sorted
    for manifest_key, why in sorted(daily.corrupt.items()):
        result.corrupt.append(Finding(manifest_key, why))
    broken_slots = set()
    for manifest_key, why in sorted(daily.broken.items()):
        broken_slots.add(parse_daily_key(manifest_key).slot)  # type: ignore[union-attr]
        (result.missing if "missing" in why else result.corrupt).append(Finding(manifest_key, why))
    unreadable_slots = {parse_daily_key(key).slot for key in daily.corrupt}  # type: ignore[union-attr]
    present = {}
    for manifest in daily.backups:
        slot = (manifest.day, manifest.database)
        present[slot] = manifest
        result.dailies_checked += 1
        if deep and not store.verify(manifest):
            result.corrupt.append(
                Finding(
                    manifest.key,
                    f"the dump's bytes do not match the sha256 in its manifest ({manifest.sha256[:12]}...)",
                )
            )
        elif slot not in recorded.dailies:
            result.unknown.append(
                Finding(daily_manifest_key(*slot), f"a backup of {slot[1]} on {slot[0]} that the records do not know")
            )
    for slot in sorted(recorded.dailies - set(present) - broken_slots - unreadable_slots):
        result.missing.append(
            Finding(daily_manifest_key(*slot), f"recorded backup of {slot[1]} on {slot[0]} is not in the bucket")
        )
    for info in daily.orphans:
        result.orphans.append(
            Finding(info.key, f"a dump with no manifest ({info.size} bytes): an upload that never finished")
        )

    weekly = archives.inventory()
    for manifest_key, why in sorted(weekly.corrupt.items()):
        result.corrupt.append(Finding(manifest_key, why))
    broken_weeks = set()
    for manifest_key, why in sorted(weekly.broken.items()):
        broken_weeks.add(parse_weekly_key(manifest_key).week)  # type: ignore[union-attr]
        (result.missing if "missing" in why else result.corrupt).append(Finding(manifest_key, why))
    unreadable_weeks = {parse_weekly_key(key).week for key in weekly.corrupt}  # type: ignore[union-attr]
    present_weeks = set()
    for manifest in weekly.archives:
        present_weeks.add(manifest.week)
        result.archives_checked += 1
        checked = archives.verify(manifest) if deep else None
        if checked is not None and not checked.ok:
            result.corrupt.append(Finding(manifest.key, "; ".join(checked.problems[:3])))
        elif manifest.week not in recorded.weeks:
            result.unknown.append(
                Finding(manifest.key, f"an archive of week {manifest.week} that the records do not know")
            )
    for week in sorted(recorded.weeks - present_weeks - broken_weeks - unreadable_weeks):
        result.missing.append(
            Finding(weekly_manifest_key(validate_week(week)), f"recorded archive of week {week} is not in the bucket")
        )
    for info in weekly.orphans:
        result.orphans.append(
            Finding(info.key, f"an archive with no manifest ({info.size} bytes): a build that never finished")
        )

    # The history indexes from this listing (the bucket is the truth): an entry lost to a crash comes back.
    result.indexes_rewritten = history.rebuild_all(store, daily, objects=daily_objects, indexes=indexes)

    # Leftovers of interrupted runs: found, removed where safe, and reported.
    swept = leftovers.sweep(store.bucket)
    for leftover in swept.found:
        result.leftovers.append(Finding(leftover.where, leftover.describe()))
    result.leftovers_kept = len(swept.found) - len(swept.removed)
    return result
