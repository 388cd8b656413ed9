"""Weekly archives, retention and reconciliation: the Dagster layer over `archive.py` and `retention.py`.

* `archives/weekly`, partitioned by week (Sunday to Saturday, UTC), depends on every database's dumps for
  the seven days of its week, so the UI draws the lineage from each database's dumps to the week's archive.
  A materialization packs the week's dailies into one archive, reads it back to verify it, then applies
  retention (or, with `dry_run`, only shows what retention would delete).
* Checks on it: `archive_verified` (ERROR: the stored archive read back, every member's sha256 checked),
  `week_complete` (WARN: days a database has no backup in the archive), `retention_applied` (ERROR:
  deletions that failed, or archives that failed verification and so keep their dailies), and
  `bucket_reconciliation` (the bucket against Dagster's records; ERROR for missing or corrupt backups,
  WARN for unknown objects and half-finished uploads).
* The job `weekly_archive` and its schedule, Sundays 04:00 UTC (the spec's `0 4 * * 0`), for the week that
  just ended.

Deleted dailies are marked in Dagster with an `AssetObservation` on their dump partition
(`patina/retention: deleted`), logged by the run that deleted them.  Dagster OSS cannot un-materialize one
partition (`DagsterInstance.wipe_asset_partitions` raises NotImplementedError on the SQLite and PostgreSQL
event logs in 1.13), and a runless materialization would look like a fresh backup to freshness policies
and alert sensors; an observation shows in the partition's history and is what reconciliation reads.
"""

import datetime as dt
import warnings
from collections.abc import Iterable, Mapping

import dagster as dg
from pydantic import Field

from ...archive import ArchiveStore, BuildOutcome, EmptyWeek
from ...config import PatinaConfig
from ...retention import (
    RetentionPlan,
    RetentionResult,
    apply_retention,
    plan_retention,
)
from ...storage import StorageError, week_days, week_start_of
from ...units import human_bytes
from ..dumps.assets import dump_asset_key
from ..dumps.jobs import NIGHTLY_JOB
from ..policies import PARTITION_TAG
from ..resources import BucketResource

ARCHIVE_KEY = dg.AssetKey(["archives", "weekly"])
ARCHIVES_GROUP = "archives"
ARCHIVE_VERIFIED_CHECK = "archive_verified"
WEEK_COMPLETE_CHECK = "week_complete"
RETENTION_CHECK = "retention_applied"
RECONCILIATION_CHECK = "bucket_reconciliation"
#: Metadata key of the observation that marks a dump or archive partition as deleted by retention.
RETENTION_MARK = "patina/retention"
DELETED = "deleted"
_WAITING_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
_SHOWN = 200  # rows of a metadata table; counts are always complete


class WeeklyArchiveConfig(dg.Config):
    """Run configuration of the weekly archive (set it in the launchpad)."""

    dry_run: bool = Field(
        default=False,
        description="Build and verify the archive, but only show what retention would delete (nothing is deleted).",
    )
    nightly_wait_retries: int = Field(
        default=36,
        description="While a nightly run for a day of this week is still going, retry this many times...",
    )
    nightly_wait_seconds: int = Field(default=600, description="...this many seconds apart (36 x 10 min = 6 h).")


def weekly_partitions(config: PatinaConfig) -> dg.WeeklyPartitionsDefinition:
    """Weeks Sunday to Saturday, UTC, from the week holding the configured start date."""
    return dg.WeeklyPartitionsDefinition(
        start_date=week_start_of(config.start_date).isoformat(), day_offset=0, timezone="UTC"
    )


def week_of_days_mapping() -> dg.TimeWindowPartitionMapping:
    """A week depends on its seven days.  The first week starts on the Sunday before the configured start
    date, so its early days have no daily partitions: allow that (a beta flag in Dagster 1.13, hence the
    silenced warning) rather than leave those first days without an archive."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)


def build_archive_asset(patina: PatinaConfig, partitions: dg.WeeklyPartitionsDefinition) -> dg.AssetsDefinition:
    dump_keys = {db.name: dump_asset_key(db) for db in patina.databases}
    databases = [db.name for db in patina.databases]
    retention = patina.retention
    week_of_days = week_of_days_mapping()

    @dg.asset(
        key=ARCHIVE_KEY,
        group_name=ARCHIVES_GROUP,
        partitions_def=partitions,
        deps=[dg.AssetDep(key, partition_mapping=week_of_days) for key in dump_keys.values()],
        check_specs=[
            dg.AssetCheckSpec(
                ARCHIVE_VERIFIED_CHECK,
                asset=ARCHIVE_KEY,
                description="The stored archive, read back from the bucket: its sha256, and every member's SQL against the sha256 its daily manifest records.",
            ),
            dg.AssetCheckSpec(
                WEEK_COMPLETE_CHECK,
                asset=ARCHIVE_KEY,
                description="Every configured database has a backup for every day of the week (WARN: a missing day does not fail the week).",
            ),
            dg.AssetCheckSpec(
                RETENTION_CHECK,
                asset=ARCHIVE_KEY,
                description="Retention deleted what it planned, and no archive that should vouch for a daily failed verification.",
            ),
        ],
        kinds={"tar", "zstd" if retention.weekly_format == "tar.zst" else "gzip"},
        # A bucket that hiccups passes with time (StorageUnavailable); other errors are Failures that no
        # retry can fix.  Waiting for a nightly run uses RetryRequested, with its own count.
        retry_policy=dg.RetryPolicy(max_retries=2, delay=120, backoff=dg.Backoff.EXPONENTIAL),
        description=(
            "The week's daily backups (Sunday to Saturday, UTC) packed into one archive, "
            f"weekly/<week-start>.<generation>.{retention.weekly_format}, with an index.json and a manifest "
            "written last. The archive is read back and every member checked before retention deletes any daily "
            f"it holds. Retention keeps {retention.daily_days} days of dailies and {retention.weekly_weeks} weeks "
            "of archives, never the newest good backup of a database, and never a daily that no verified archive holds."
        ),
        metadata={
            "daily_days": retention.daily_days,
            "weekly_weeks": retention.weekly_weeks,
            "format": retention.weekly_format,
        },
    )
    def weekly_archive(
        context: dg.AssetExecutionContext, config: WeeklyArchiveConfig, bucket: BucketResource
    ) -> dg.MaterializeResult:
        week = context.partition_key
        last_day = (context.partition_time_window.end - dt.timedelta(days=1)).date()
        _wait_for_nightly_runs(context, week, dump_keys.values(), config)
        archives = ArchiveStore(bucket.store())
        try:
            outcome = archives.build(
                week, databases, retention.weekly_format, first_day=patina.start_date, run_id=context.run.run_id
            )
        except EmptyWeek as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        except StorageError as exc:
            if exc.retryable:
                raise
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        _log_outcome(context, outcome)
        plan = plan_retention(archives, last_day, retention, verifications={week: outcome.verification})
        for line in _plan_lines(plan):
            context.log.info(line)
        result = None
        if not config.dry_run:
            result = apply_retention(archives, plan)
            _mark_deleted(context, result, dump_keys, partitions)
            for what, error in result.failures.items():
                context.log.error(f"retention could not delete {what}: {error}")
        return dg.MaterializeResult(
            metadata={**_archive_metadata(outcome, archives), **_retention_metadata(plan, result)},
            check_results=_check_results(outcome, plan, result),
        )

    return weekly_archive


# -- waiting for the night ---------------------------------------------------------------------


def nightly_runs_in_progress(
    instance: dg.DagsterInstance, week: str, dump_keys: Iterable[dg.AssetKey], exclude_run_id: str | None = None
) -> list[dg.DagsterRun]:
    """Runs still writing dumps of this week's days: the nightly job's, or any run selecting a dump asset."""
    keys = set(dump_keys)
    runs = instance.get_runs(dg.RunsFilter(statuses=_WAITING_STATUSES, tags={PARTITION_TAG: week_days(week)}))
    return [
        run
        for run in runs
        if run.run_id != exclude_run_id and (run.job_name == NIGHTLY_JOB or bool(keys & set(run.asset_selection or ())))
    ]


def _wait_for_nightly_runs(
    context: dg.AssetExecutionContext, week: str, dump_keys: Iterable[dg.AssetKey], config: WeeklyArchiveConfig
) -> None:
    """The spec's rule: the weekly archive does not start while a nightly backup of its week is running
    (it would miss that night's dumps).  Rather than skip the week, retry the step later."""
    running = nightly_runs_in_progress(context.instance, week, dump_keys, context.run.run_id)
    if not running:
        return
    days = sorted({run.tags.get(PARTITION_TAG, "?") for run in running})
    message = (
        f"{len(running)} run(s) still backing up {', '.join(days)} (e.g. run {running[0].run_id[:8]}): "
        f"archiving week {week} waits for them"
    )
    if context.retry_number >= config.nightly_wait_retries:
        raise dg.Failure(
            description=f"{message}, and they are still going after {config.nightly_wait_retries} retries: "
            "finish or cancel them, then re-run this week",
            allow_retries=False,
        )
    context.log.warning(f"{message}; retrying in {config.nightly_wait_seconds} s")
    raise dg.RetryRequested(max_retries=config.nightly_wait_retries, seconds_to_wait=config.nightly_wait_seconds)


# -- reporting ---------------------------------------------------------------------------------


def _log_outcome(context: dg.AssetExecutionContext, outcome: BuildOutcome) -> None:
    manifest, verification = outcome.manifest, outcome.verification
    context.log.info(
        f"week {manifest.week}: archive {outcome.action} -> {manifest.key}, {len(manifest.index.members)} backups, "
        f"{human_bytes(manifest.index.sql_bytes)} of SQL in {human_bytes(manifest.bytes)}"
        + (f" ({outcome.reason})" if outcome.reason else "")
    )
    for database, days in sorted(manifest.index.missing.items()):
        if days:
            context.log.warning(f"week {manifest.week}: no backup of {database} on {', '.join(days)}")
    for key, why in sorted(manifest.index.skipped.items()):
        context.log.warning(f"week {manifest.week}: not archived: {key}: {why}")
    for day, database in outcome.not_archived:
        context.log.warning(
            f"week {manifest.week}: the daily of {database} on {day} is not in the kept archive; it stays"
        )
    if not verification.ok:
        context.log.error(f"archive {manifest.key} failed verification: {'; '.join(verification.problems)}")


def _archive_metadata(outcome: BuildOutcome, archives: ArchiveStore) -> dict[str, object]:
    manifest, index = outcome.manifest, outcome.manifest.index
    missing = {db: list(days) for db, days in index.missing.items() if days}
    return {
        "action": outcome.action,
        "key": manifest.key,
        "uri": dg.MetadataValue.text(archives.bucket.uri(manifest.key)),
        "format": manifest.format,
        "bytes": manifest.bytes,
        "size": dg.MetadataValue.text(human_bytes(manifest.bytes)),
        "sha256": manifest.sha256,
        "sql_bytes": index.sql_bytes,
        "compression_ratio": round(index.sql_bytes / manifest.bytes, 2) if manifest.bytes else 0.0,
        "encrypted": manifest.encrypted,
        "recipients": dg.MetadataValue.text(", ".join(manifest.recipients) or "none (stored unencrypted)"),
        "backups": len(index.members),
        "databases": dg.MetadataValue.json(list(index.databases)),
        "days": dg.MetadataValue.json(list(index.days)),
        "missing_days": dg.MetadataValue.json(missing),
        "missing_count": sum(len(days) for days in missing.values()),
        "skipped": dg.MetadataValue.json(dict(index.skipped)),
        "verified": outcome.verification.ok,
        "verification_problems": dg.MetadataValue.json(outcome.verification.problems[:20]),
        "seconds": round(outcome.seconds, 3),
        "members": dg.MetadataValue.table(
            records=[
                dg.TableRecord(
                    {
                        "database": m.database,
                        "day": m.day,
                        "sql_bytes": m.sql_bytes,
                        "rows": m.rows,
                        "sha256": m.sql_sha256[:16],
                    }
                )
                for m in index.members[:_SHOWN]
            ],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn("database", "string"),
                    dg.TableColumn("day", "string"),
                    dg.TableColumn("sql_bytes", "int"),
                    dg.TableColumn("rows", "int"),
                    dg.TableColumn("sha256", "string"),
                ]
            ),
        ),
    }


def _plan_lines(plan: RetentionPlan) -> list[str]:
    lines = [
        f"retention as of {plan.as_of}: dailies from {plan.daily_cutoff} and archives from week {plan.weekly_cutoff} "
        f"are kept by age; {len(plan.dailies)} daily backup(s) and {len(plan.archives)} archive(s) to delete, "
        f"{human_bytes(plan.bytes)}"
    ]
    lines += [
        f"retention: delete {d.database} on {d.day} ({', '.join(d.keys)}), held by {d.archive_key}"
        for d in plan.dailies
    ]
    lines += [f"retention: delete archive of week {a.week} ({', '.join(a.keys)})" for a in plan.archives]
    lines += [f"retention: keep {k.what}: {k.reason}" for k in plan.kept]
    return lines


def _retention_metadata(plan: RetentionPlan, result: RetentionResult | None) -> dict[str, object]:
    planned = [
        {"kind": "daily", "what": f"{d.database} {d.day}", "bytes": d.bytes, "keys": ", ".join(d.keys)}
        for d in plan.dailies
    ] + [
        {"kind": "archive", "what": f"week {a.week}", "bytes": a.bytes, "keys": ", ".join(a.keys)}
        for a in plan.archives
    ]
    metadata: dict[str, object] = {
        "retention/dry_run": result is None,
        "retention/as_of": plan.as_of,
        "retention/daily_cutoff": plan.daily_cutoff,
        "retention/weekly_cutoff": plan.weekly_cutoff,
        "retention/planned": dg.MetadataValue.table(
            records=[dg.TableRecord(row) for row in planned[:_SHOWN]],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn("kind", "string"),
                    dg.TableColumn("what", "string"),
                    dg.TableColumn("bytes", "int"),
                    dg.TableColumn("keys", "string"),
                ]
            ),
        ),
        "retention/planned_bytes": plan.bytes,
        "retention/kept": dg.MetadataValue.json([{"what": k.what, "reason": k.reason} for k in plan.kept[:_SHOWN]]),
    }
    if result is not None:
        metadata.update(
            {
                "retention/deleted_dailies": len(result.dailies),
                "retention/deleted_archives": len(result.archives),
                "retention/bytes_freed": result.bytes_freed,
                "retention/freed": dg.MetadataValue.text(human_bytes(result.bytes_freed)),
                "retention/deleted_keys": dg.MetadataValue.json(result.deleted_keys[: _SHOWN * 2]),
                "retention/failures": dg.MetadataValue.json(result.failures),
                "retention/skipped": dg.MetadataValue.json(
                    [{"what": k.what, "reason": k.reason} for k in result.skipped]
                ),
            }
        )
    return metadata


def _check_results(
    outcome: BuildOutcome, plan: RetentionPlan, result: RetentionResult | None
) -> list[dg.AssetCheckResult]:
    verification, index = outcome.verification, outcome.manifest.index
    missing = {db: list(days) for db, days in index.missing.items() if days}
    failed_archives = {week: v.problems[:3] for week, v in plan.verifications.items() if not v.ok}
    failures = result.failures if result is not None else {}
    return [
        dg.AssetCheckResult(
            check_name=ARCHIVE_VERIFIED_CHECK,
            passed=verification.ok,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"{outcome.manifest.week}: the stored archive reads back whole, and its {verification.members} "
                "members match their daily manifests' sha256"
                if verification.ok
                else f"{outcome.manifest.week}: the stored archive FAILED verification: "
                + "; ".join(verification.problems[:3])
            ),
            metadata={
                "key": verification.key,
                "members_checked": verification.members,
                "bytes_read": verification.bytes_read,
                "problems": dg.MetadataValue.json(verification.problems[:20]),
            },
        ),
        dg.AssetCheckResult(
            check_name=WEEK_COMPLETE_CHECK,
            passed=not missing and not index.skipped and not outcome.not_archived,
            severity=dg.AssetCheckSeverity.WARN,
            description=_week_complete_description(outcome, missing),
            metadata={
                "missing_days": dg.MetadataValue.json(missing),
                "missing_count": sum(len(d) for d in missing.values()),
                "skipped": dg.MetadataValue.json(dict(index.skipped)),
                "not_archived": dg.MetadataValue.json([f"{db} {day}" for day, db in outcome.not_archived]),
            },
        ),
        dg.AssetCheckResult(
            check_name=RETENTION_CHECK,
            passed=not failures and not failed_archives,
            severity=dg.AssetCheckSeverity.ERROR,
            description=_retention_description(plan, result, failures, failed_archives),
            metadata={
                "failures": dg.MetadataValue.json(failures),
                "archives_failing_verification": dg.MetadataValue.json(failed_archives),
                "dry_run": result is None,
            },
        ),
    ]


def _week_complete_description(outcome: BuildOutcome, missing: dict[str, list[str]]) -> str:
    index = outcome.manifest.index
    if not missing and not index.skipped and not outcome.not_archived:
        return f"{outcome.manifest.week}: every database has a backup for every day of the week"
    parts = [f"{db} lacks {', '.join(days)}" for db, days in missing.items()]
    parts += [f"{len(index.skipped)} skipped"] if index.skipped else []
    parts += [f"{len(outcome.not_archived)} dailies not archived"] if outcome.not_archived else []
    return f"{outcome.manifest.week}: the week is incomplete: " + "; ".join(parts)


def _retention_description(
    plan: RetentionPlan, result: RetentionResult | None, failures: dict[str, str], failed_archives: dict[str, list[str]]
) -> str:
    if failures or failed_archives:
        return (
            f"retention could not delete {len(failures)} object(s); {len(failed_archives)} archive(s) failed "
            "verification, so the dailies they hold were kept"
        )
    if result is None:
        return f"dry run: retention would delete {len(plan.dailies)} dailies and {len(plan.archives)} archives"
    return (
        f"retention deleted {len(result.dailies)} dailies and {len(result.archives)} archives "
        f"({human_bytes(result.bytes_freed)}); dailies from {plan.daily_cutoff} on are kept"
    )


def _mark_deleted(
    context: dg.AssetExecutionContext,
    result: RetentionResult,
    dump_keys: Mapping[str, dg.AssetKey],
    partitions: dg.WeeklyPartitionsDefinition,
) -> None:
    """Observe each deleted daily and archive on its partition so the UI and reconciliation know it is gone."""
    for deletion in result.dailies:
        key = dump_keys.get(deletion.database)
        if key is None:  # a database no longer configured has no asset to mark
            continue
        context.log_event(
            dg.AssetObservation(
                asset_key=key,
                partition=deletion.day,
                description=f"Deleted by retention; the backup is kept in {deletion.archive_key}.",
                metadata={
                    RETENTION_MARK: DELETED,
                    "archive": deletion.archive_key,
                    "deleted_keys": dg.MetadataValue.json(list(deletion.keys)),
                    "bytes_freed": deletion.bytes,
                },
            )
        )
    known_weeks = set(partitions.get_partition_keys())
    for deletion in result.archives:
        if deletion.week in known_weeks:
            context.log_event(
                dg.AssetObservation(
                    asset_key=ARCHIVE_KEY,
                    partition=deletion.week,
                    description="Archive deleted by retention (older than the weekly retention).",
                    metadata={
                        RETENTION_MARK: DELETED,
                        "deleted_keys": dg.MetadataValue.json(list(deletion.keys)),
                        "bytes_freed": deletion.bytes,
                    },
                )
            )
