"""Retention, as plain Python (no Dagster).

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
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from . import history
from .archive import ArchiveStore, ArchiveVerification
from .config import RetentionConfig
from .storage import (
    DAILY_PREFIX,
    FAILED,
    VERIFIED,
    WEEKLY_PREFIX,
    ArchiveManifest,
    BackupStore,
    Manifest,
    StorageError,
    VerificationRecord,
    by_capture,
    daily_manifest_key,
    daily_verification_key,
    format_day,
    parse_weekly_key,
    week_start_of,
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
    for database in sorted({d.database for d in result.dailies}):
        history.forget(store, database, {d.day for d in result.dailies if d.database == database})
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
