"""Retention and reconciliation, as plain Python (no Dagster).

Retention (``plan_retention`` then ``apply_retention``): dailies older than ``retention.daily_days`` and
archives older than ``retention.weekly_weeks`` go, under three rules that outrank age:

* a daily is deleted only when a *verified* archive holds exactly its SQL (the archive read back from the
  bucket and every member checked against its sha256, ``ArchiveStore.verify``);
* the newest good backup of each database is never deleted, however old: its newest daily by capture time
  that passed restore verification (the record beside it in the bucket), was not flagged as possible data
  loss (size_anomaly's ``too_small``) and whose stored bytes still match its manifest; or, if it has none,
  the archive holding its newest backup;
* nothing is deleted that changed between planning and deleting.

The plan is the dry run: it lists what would go and why everything else stays.  Ages are counted from
``as_of`` (the last day of the week being archived, not the wall clock), so replaying a week decides the
same way.

Reconciliation (``reconcile``) compares the bucket with what the records say should be there (the Dagster
layer derives ``RecordedBackups`` from its event log) and sorts every difference into: recorded but
missing, corrupt (bytes that do not match their manifest, unreadable manifests), unknown (in the bucket,
not in the records) and orphans (dumps or archives that never got their manifest: half-finished uploads).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from . import leftovers
from .archive import (
    ArchiveManifest,
    ArchiveStore,
    ArchiveVerification,
    validate_week,
    week_start_of,
)
from .config import RetentionConfig
from .storage import (
    AUDIT_PREFIX,
    DAILY_PREFIX,
    FAILED,
    VERIFIED,
    WEEKLY_PREFIX,
    BackupStore,
    Manifest,
    StorageError,
    VerificationRecord,
    by_capture,
    daily_manifest_key,
    daily_verification_key,
    format_day,
    parse_daily_key,
    parse_weekly_key,
    weekly_manifest_key,
)

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Retention
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DailyDeletion:
    """A daily backup that may go: ``archive_key`` is the verified archive that holds its SQL."""

    day: str
    database: str
    sql_sha256: str
    keys: tuple[str, ...]
    bytes: int
    archive_key: str


@dataclass(frozen=True)
class ArchiveDeletion:
    """An archive past the weekly retention."""

    week: str
    keys: tuple[str, ...]
    bytes: int


@dataclass(frozen=True)
class Kept:
    """Something retention would have deleted by age, and why it stays."""

    what: str
    reason: str


@dataclass
class RetentionPlan:
    """What retention would delete (the dry run), and why everything old that stays, stays."""

    as_of: str
    daily_cutoff: str  # dailies from this day on are kept by age
    weekly_cutoff: str  # archives of this week and later are kept by age
    dailies: list[DailyDeletion] = field(default_factory=list)
    archives: list[ArchiveDeletion] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    verifications: dict[str, ArchiveVerification] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(d.bytes for d in self.dailies) + sum(a.bytes for a in self.archives)

    @property
    def keys(self) -> list[str]:
        return [k for d in self.dailies for k in d.keys] + [k for a in self.archives for k in a.keys]


@dataclass
class RetentionResult:
    """What ``apply_retention`` deleted, the bytes freed, and what could not be deleted."""

    plan: RetentionPlan
    dailies: list[DailyDeletion] = field(default_factory=list)
    archives: list[ArchiveDeletion] = field(default_factory=list)
    deleted_keys: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    skipped: list[Kept] = field(default_factory=list)  # changed since planning
    failures: dict[str, str] = field(default_factory=dict)


def daily_cutoff(as_of: date | str, retention: RetentionConfig) -> date:
    """The oldest day whose dailies are kept by age: the last ``daily_days`` days up to ``as_of``."""
    return date.fromisoformat(format_day(as_of)) - timedelta(days=retention.daily_days - 1)


def weekly_cutoff(as_of: date | str, retention: RetentionConfig) -> date:
    """The oldest week whose archive is kept by age: the last ``weekly_weeks`` weeks up to ``as_of``'s."""
    return week_start_of(as_of) - timedelta(weeks=retention.weekly_weeks - 1)


def plan_retention(
    archives: ArchiveStore,
    as_of: date | str,
    retention: RetentionConfig,
    *,
    verifications: Mapping[str, ArchiveVerification] | None = None,
) -> RetentionPlan:
    """Decide what retention deletes, deleting nothing (this is the dry run).

    ``verifications`` are archives already verified in this run (by week), so they are not read twice;
    every other archive that would vouch for a deletion is read back and verified here.
    """
    as_of_day = date.fromisoformat(format_day(as_of))
    store = archives.store
    keep_days, keep_weeks = daily_cutoff(as_of_day, retention), weekly_cutoff(as_of_day, retention)
    plan = RetentionPlan(as_of_day.isoformat(), keep_days.isoformat(), keep_weeks.isoformat())
    plan.verifications.update(verifications or {})
    sizes = {info.key: info.size for prefix in (DAILY_PREFIX, WEEKLY_PREFIX) for info in store.bucket.list(prefix)}
    inventory = store.inventory()
    backups = inventory.backups
    records = store.verifications(inventory)
    weekly = archives.inventory()
    by_week = {m.week: m for m in weekly.archives}

    def verification(manifest: ArchiveManifest) -> ArchiveVerification:
        if manifest.week not in plan.verifications or plan.verifications[manifest.week].key != manifest.key:
            plan.verifications[manifest.week] = archives.verify(manifest)
        return plan.verifications[manifest.week]

    newest_good = _newest_good_dailies(store, backups, records)
    for daily in sorted(backups, key=lambda m: (m.day, m.database)):
        if daily.day >= plan.daily_cutoff:
            continue
        what = f"{daily.database} on {daily.day}"
        if newest_good.get(daily.database) == daily.day:
            plan.kept.append(Kept(what, f"the newest good backup of {daily.database} is never deleted"))
            continue
        week = week_start_of(daily.day).isoformat()
        manifest = by_week.get(week)
        if manifest is None:
            plan.kept.append(Kept(what, f"no archive of week {week} exists to hold it"))
            continue
        checked = verification(manifest)
        if not checked.ok:
            plan.kept.append(
                Kept(what, f"archive {manifest.key} failed verification: {'; '.join(checked.problems[:2])}")
            )
        elif not checked.holds(daily.day, daily.database, daily.sql_sha256):
            plan.kept.append(
                Kept(what, f"archive {manifest.key} does not hold this dump (re-run after archiving, or skipped)")
            )
        else:
            record_key = daily_verification_key(daily.day, daily.database)
            keys = (daily_manifest_key(daily.day, daily.database), daily.key) + (
                (record_key,) if record_key in sizes else ()
            )
            plan.dailies.append(
                DailyDeletion(
                    daily.day, daily.database, daily.sql_sha256, keys, sum(sizes.get(k, 0) for k in keys), manifest.key
                )
            )

    expired_weeks = sorted({p.week for key in sizes if (p := parse_weekly_key(key)) and p.week < plan.weekly_cutoff})
    for week in expired_weeks:
        holder = _holds_newest_backup(by_week.get(week), newest_good, by_week, verification)
        if holder:
            plan.kept.append(Kept(f"archive of week {week}", holder))
            continue
        keys = tuple(sorted(key for key in sizes if (p := parse_weekly_key(key)) and p.week == week))
        plan.archives.append(ArchiveDeletion(week, keys, sum(sizes[k] for k in keys)))
    return plan


def _newest_good_dailies(
    store: BackupStore, backups: list[Manifest], records: Mapping[tuple[str, str], VerificationRecord]
) -> dict[str, str]:
    """database -> day of its newest good daily, by capture time, whatever its age.

    Good: restore_verification passed for these very bytes (its record in the bucket names this dump and
    sha256), size_anomaly did not flag it as possible data loss, and the stored bytes still match the
    manifest (read back here).  A database none of whose backups has a record yet (a bucket from before
    records were kept) falls back to its newest daily whose bytes match and that no record calls failed.
    """
    by_database: dict[str, list[Manifest]] = {}
    for manifest in backups:
        by_database.setdefault(manifest.database, []).append(manifest)
    newest: dict[str, str] = {}
    for database, manifests in by_database.items():
        judged = {m.day: records.get((m.day, m.database)) for m in manifests}
        any_record = any(r is not None and r.key == m.key for m in manifests if (r := judged[m.day]))
        for manifest in sorted(manifests, key=by_capture, reverse=True):
            record = judged[manifest.day]
            status = store.verification_status(manifest, record)
            if any_record and (status != VERIFIED or record is None or record.possible_data_loss):
                continue
            if not any_record and status == FAILED:
                continue
            if store.verify(manifest):
                newest[database] = manifest.day
                break
            logger.warning("the daily backup of %s on %s does not match its manifest", database, manifest.day)
    return newest


def _holds_newest_backup(
    manifest: ArchiveManifest | None,
    newest_good: Mapping[str, str],
    by_week: Mapping[str, ArchiveManifest],
    verification: Callable[[ArchiveManifest], ArchiveVerification],
) -> str:
    """Why an expired archive must stay ('' if it may go): it holds a backup of a database newer than that
    database's newest good daily (which is never deleted), and no newer archive that verifies holds one."""
    if manifest is None:
        return ""  # no readable manifest: nothing in it can be counted as a backup
    newest_held: dict[str, str] = {}
    for member in manifest.index.members:
        newest_held[member.database] = max(member.day, newest_held.get(member.database, ""))
    for database, day in sorted(newest_held.items()):
        if newest_good.get(database, "") >= day:
            continue
        newer = [m for week, m in sorted(by_week.items(), reverse=True) if week > manifest.week]
        if not any(
            any(member.database == database for member in m.index.members) and verification(m).ok for m in newer
        ):
            return f"it holds the newest backup of {database} (no good daily or newer archive has one)"
    return ""


def apply_retention(archives: ArchiveStore, plan: RetentionPlan) -> RetentionResult:
    """Delete what ``plan`` lists.  Each daily is re-read first and skipped if it changed since planning
    (a re-run of that day); a failed deletion is recorded and the rest go on."""
    store = archives.store
    result = RetentionResult(plan)
    for deletion in plan.dailies:
        what = f"{deletion.database} on {deletion.day}"
        try:
            current = store.get_manifest(deletion.day, deletion.database)
            if current is None or current.sql_sha256 != deletion.sql_sha256:
                result.skipped.append(Kept(what, "it changed since the plan was made"))
                continue
            deleted = store.delete_daily(deletion.day, deletion.database)
        except StorageError as exc:
            result.failures[what] = str(exc)
            continue
        result.dailies.append(deletion)
        result.deleted_keys.extend(deleted)
        result.bytes_freed += deletion.bytes
    for deletion in plan.archives:
        try:
            deleted = archives.delete(deletion.week)
        except StorageError as exc:
            result.failures[f"archive of week {deletion.week}"] = str(exc)
            continue
        result.archives.append(deletion)
        result.deleted_keys.extend(deleted)
        result.bytes_freed += deletion.bytes
    return result


# --------------------------------------------------------------------------------------------------
# Reconciliation
# --------------------------------------------------------------------------------------------------


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
    everything = list(store.bucket.list(""))
    result.objects = len(everything)
    for info in everything:
        if info.key.startswith(AUDIT_PREFIX):  # `patina serve`'s audit log: kept, not a stray
            continue
        if parse_daily_key(info.key) is None and parse_weekly_key(info.key) is None:
            result.unknown.append(Finding(info.key, "a stray object: not part of Patina's layout"))

    daily = store.inventory()
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

    # Leftovers of interrupted runs: found, removed where safe, and reported.
    swept = leftovers.sweep(store.bucket)
    for leftover in swept.found:
        result.leftovers.append(Finding(leftover.where, leftover.describe()))
    result.leftovers_kept = len(swept.found) - len(swept.removed)
    return result
