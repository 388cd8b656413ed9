"""Asset checks on every nightly dump: is the stored backup usable, and does it look like the nights before?

Five checks per database, declared on its dump asset (`check_specs`) and evaluated in the dump's own step
right after the publish (a step costs Dagster a process; five more per database made a night several times
slower than its work). Each can still be run alone, from the UI or a job that selects only checks: the step
then checks the backup already stored and dumps nothing (the asset can be subset).

* `restore_verification` (ERROR, blocking): the stored dump read back from the bucket restores into a
  scratch SQLite database with integrity_check and foreign_key_check clean, and every table's rows and
  digest equal to what the dump recorded from the source. Blocking, so a night without a usable backup
  fails its run (the run's status tells the truth, and a run-failure alert fires even without check alerts).
* `size_anomaly`: the dump's SQL size against the average of the last 7 backups before its day: under
  `alerts.size_decrease_ratio` of it is an ERROR (possible data loss), over `alerts.size_increase_ratio`
  a WARN (possible corruption or runaway growth); no verdict before 3 earlier backups.
* `schema_drift` (WARN): the schema fingerprint changed since the previous backup (by capture time); lists
  the objects added, removed and changed.
* `point_in_time` (WARN): the backup is not one point in time (a D1 database written during each attempt to
  read it); names both Time Travel bookmarks and the `wrangler d1 time-travel restore` that is exact.
* `captured_on_time` (WARN): the data was read more than a day after its day ended (a backfill of a night
  long past holds the data of the moment it ran); see `storage.LATE_AFTER`.

`restore_verification` also keeps its verdict in the bucket beside the backup (`<db>.verification.json`: the
sha256 it read, when, the run, and size_anomaly's verdict at that moment), so `patina list/status/restore`
and retention know which backups are verified without Dagster.

The logic is plain Python in `patina_assets.verify`; these functions only pick the backup to check (the one
just published, the run's partition, or the newest backup when a check is run without one) and turn the answer into an
`AssetCheckResult` with metadata for the UI and for the alert sensors (which read the evaluations of
finished runs: the check names below are constants for them; every result carries `database` and `day`).

A fleet's asset declares the same five checks and evaluates them with the same functions
(`evaluate_checks`) on the tenant's backup its step has just published.

The checks are not partitioned (partitioned asset checks are a preview feature in Dagster 1.13): the day
checked is in each result's metadata, and in the run's `dagster/partition` tag.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg

from ...config import DatabaseConfig, PatinaConfig
from ...engine import DIGEST_ALGORITHMS
from ...storage import LATE_AFTER, BackupStore, CorruptManifest, Manifest, StorageError, daily_verification_key
from ...units import human_bytes
from ...verify import (
    HISTORY_WINDOW,
    MIN_HISTORY,
    SIZE_TOO_LARGE,
    SIZE_TOO_SMALL,
    RestoreVerification,
    SchemaDrift,
    SizeVerdict,
    detect_schema_drift,
    judge_size,
    keep_verdict,
    latest_backup,
    previous_backups,
    verification_record,
    verify_restore,
)
from .assets import dump_asset_key, late_summary

RESTORE_VERIFICATION = "restore_verification"
SIZE_ANOMALY = "size_anomaly"
SCHEMA_DRIFT = "schema_drift"
POINT_IN_TIME = "point_in_time"
CAPTURED_ON_TIME = "captured_on_time"
DUMP_CHECK_NAMES = (RESTORE_VERIFICATION, SIZE_ANOMALY, SCHEMA_DRIFT, POINT_IN_TIME, CAPTURED_ON_TIME)

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


def dump_check_specs(database: DatabaseConfig, config: PatinaConfig) -> list[dg.AssetCheckSpec]:
    """The checks of one database's dump asset, evaluated in its own step (see `evaluate_dump_checks`)."""
    return [
        restore_verification_spec(database),
        size_anomaly_spec(database, config),
        schema_drift_spec(database),
        point_in_time_spec(database),
        captured_on_time_spec(database),
    ]


# --------------------------------------------------------------------------------------------------
# Which backup a check looks at
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """What the checks look at: the asset they belong to (a database's dump asset, or a fleet's), the
    database, and its backup of `day`, or why there is none."""

    key: dg.AssetKey
    database: str
    day: str | None
    manifest: Manifest | None
    why: str = ""

    @classmethod
    def published(cls, key: dg.AssetKey, manifest: Manifest) -> "Checked":
        """The backup a step has just published."""
        return cls(key, manifest.database, manifest.day, manifest)


def _day_checked(context: dg.OpExecutionContext, store: BackupStore, database: DatabaseConfig) -> str | None:
    """The run's partition; without one (checks run by hand from the UI), the newest backup's day."""
    if context.has_partition_key:
        return context.partition_key
    newest = latest_backup(store, database.name)
    return newest.day if newest else None


def _backup_checked(context: dg.OpExecutionContext, store: BackupStore, database: DatabaseConfig) -> Checked:
    """The backup of the run's day (see `_day_checked`). A manifest that cannot be read is no backup."""
    key, name = dump_asset_key(database), database.name
    day = _day_checked(context, store, database)
    if day is None:
        return Checked(key, name, None, None, f"{name} has no backup in the bucket yet")
    try:
        manifest = store.get_manifest(day, name)
    except CorruptManifest as e:
        return Checked(
            key, name, day, None, f"{name} {day}: the manifest cannot be read, so the backup does not count: {e}"
        )
    if manifest is None:
        return Checked(key, name, day, None, f"{name} {day}: no backup is stored for this day (no manifest)")
    return Checked(key, name, day, manifest)


def _no_backup(checked: Checked, severity: dg.AssetCheckSeverity, name: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=checked.key,
        check_name=name,
        passed=False,
        severity=severity,
        description=checked.why,
        metadata={
            "database": checked.database,
            "day": checked.day or "none",
            "verdict": "no_backup",
            "problems": dg.MetadataValue.text(checked.why),
        },
    )


# --------------------------------------------------------------------------------------------------
# restore_verification
# --------------------------------------------------------------------------------------------------


def restore_verification_spec(database: DatabaseConfig) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        RESTORE_VERIFICATION,
        asset=dump_asset_key(database),
        blocking=True,
        description=(
            f"The stored dump of {database.name}, read back from the bucket, restores into a scratch SQLite "
            "database: footer sha256, integrity_check and foreign_key_check clean, and every table's row count "
            "and content digest equal to what the dump recorded from the source. ERROR (and the run fails) when "
            "not: that night has no usable backup."
        ),
        metadata={"database": database.name},
    )


def restore_verification(
    context: dg.OpExecutionContext, store: BackupStore, config: PatinaConfig, checked: Checked
) -> dg.AssetCheckResult:
    manifest = checked.manifest
    if manifest is None:
        return _no_backup(checked, ERROR, RESTORE_VERIFICATION)
    outcome = verify_restore(store, manifest)
    (context.log.info if outcome.passed else context.log.error)(outcome.summary())
    metadata = restore_metadata(outcome, store.bucket.uri(manifest.key))
    metadata["recorded"] = record_verdict(context, store, manifest, outcome, config)
    return dg.AssetCheckResult(
        asset_key=checked.key,
        check_name=RESTORE_VERIFICATION,
        passed=outcome.passed,
        severity=ERROR,
        description=outcome.summary(),
        metadata=metadata,
    )


def record_verdict(
    context: dg.OpExecutionContext,
    store: BackupStore,
    manifest: Manifest,
    outcome: RestoreVerification,
    config: PatinaConfig,
) -> str:
    """Keep the verdict in the bucket beside the backup (``<db>.verification.json``), with the sha256 read
    back and size_anomaly's verdict at this moment (retention never counts a possible data loss as good).
    Returns the record's key, or why it could not be written (the backup then reads as not yet verified)."""
    history = previous_backups(store, manifest, limit=HISTORY_WINDOW)
    size = judge_size(
        manifest,
        history,
        decrease_ratio=config.alerts.size_decrease_ratio,
        increase_ratio=config.alerts.size_increase_ratio,
    )
    try:
        keep_verdict(store, manifest, verification_record(outcome, size, run_id=context.run.run_id))
    except StorageError as e:
        context.log.error(f"{manifest.database} {manifest.day}: the verdict could not be stored in the bucket: {e}")
        return f"not recorded: {e}"
    return daily_verification_key(manifest.day, manifest.database)


def restore_metadata(outcome: RestoreVerification, uri: str) -> dict:
    tables = dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "table": t.name,
                    "recorded_rows": t.recorded_rows,
                    "restored_rows": t.restored_rows,
                    "digest": {True: "equal", False: "DIFFERENT", None: "not compared"}[t.digest_matches],
                }
            )
            for t in outcome.tables
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("table", "string"),
                dg.TableColumn("recorded_rows", "int", description="from the manifest; empty: not recorded"),
                dg.TableColumn("restored_rows", "int", description="counted after restore; empty: not restored"),
                dg.TableColumn("digest", "string"),
            ]
        ),
    )
    return {
        "database": outcome.database,
        "day": outcome.day,
        "verdict": "usable" if outcome.passed else "unusable",
        "uri": dg.MetadataValue.text(uri),
        "key": outcome.key,
        "recorded_bytes": outcome.recorded_bytes,
        **({"stored_bytes": outcome.stored_bytes} if outcome.stored_bytes is not None else {}),
        **({"stored_sha256": outcome.stored_sha256} if outcome.stored_sha256 else {}),
        "stored_sha256_matches": outcome.stored_sha256_matches,
        "restored": outcome.restored,
        "statements": outcome.statements,
        "tables": len(outcome.tables),
        "rows": outcome.rows,
        "table_checks": tables,
        "recorded_content_digest": outcome.recorded_content_digest,
        "restored_content_digest": outcome.restored_content_digest or "none",
        "digest": DIGEST_ALGORITHMS[outcome.digest_version],  # of both, and of the tables' (the manifest's version)
        "schema_fingerprint_matches": bool(outcome.schema_fingerprint_matches),
        "seconds": round(outcome.seconds, 3),
        "problems": dg.MetadataValue.text("\n".join(outcome.problems) or "none"),
    }


# --------------------------------------------------------------------------------------------------
# size_anomaly
# --------------------------------------------------------------------------------------------------


def size_anomaly_spec(database: DatabaseConfig, config: PatinaConfig) -> dg.AssetCheckSpec:
    alerts = config.alerts
    return dg.AssetCheckSpec(
        SIZE_ANOMALY,
        asset=dump_asset_key(database),
        description=(
            f"The SQL size of {database.name}'s dump against the average of its last {HISTORY_WINDOW} backups "
            f"before that day: under {alerts.size_decrease_ratio:.0%} of it is an ERROR (possible data loss), over "
            f"{alerts.size_increase_ratio:.0%} a WARN (possible corruption or runaway growth). No verdict until "
            f"{MIN_HISTORY} earlier backups exist."
        ),
        metadata={"database": database.name},
    )


def size_anomaly(
    context: dg.OpExecutionContext, store: BackupStore, config: PatinaConfig, checked: Checked
) -> dg.AssetCheckResult:
    alerts = config.alerts
    manifest = checked.manifest
    if manifest is None:
        return _no_backup(checked, WARN, SIZE_ANOMALY)
    history = previous_backups(store, manifest, limit=HISTORY_WINDOW)
    verdict = judge_size(
        manifest, history, decrease_ratio=alerts.size_decrease_ratio, increase_ratio=alerts.size_increase_ratio
    )
    if verdict.anomalous:
        context.log.warning(verdict.summary())
    return dg.AssetCheckResult(
        asset_key=checked.key,
        check_name=SIZE_ANOMALY,
        passed=not verdict.anomalous,
        severity=ERROR if verdict.verdict == SIZE_TOO_SMALL else WARN,
        description=verdict.summary(),
        metadata=size_metadata(verdict),
    )


def size_metadata(verdict: SizeVerdict) -> dict:
    history = dg.MetadataValue.table(
        records=[dg.TableRecord({"day": day, "sql_bytes": size}) for day, size in verdict.history],
        schema=dg.TableSchema(columns=[dg.TableColumn("day", "string"), dg.TableColumn("sql_bytes", "int")]),
    )
    explained = {
        SIZE_TOO_SMALL: "possible data loss",
        SIZE_TOO_LARGE: "possible corruption or runaway growth",
    }
    return {
        "database": verdict.database,
        "day": verdict.day,
        "verdict": verdict.verdict,
        "meaning": explained.get(
            verdict.verdict, "no verdict: not enough history" if verdict.average_sql_bytes is None else "within bounds"
        ),
        "sql_bytes": verdict.sql_bytes,
        "sql_size": dg.MetadataValue.text(human_bytes(verdict.sql_bytes)),
        "stored_bytes": verdict.stored_bytes,
        # No verdict yet (too little history): no average and no ratio, rather than a number that means "none".
        **({"average_sql_bytes": round(verdict.average_sql_bytes)} if verdict.average_sql_bytes is not None else {}),
        **({"ratio_percent": round(verdict.ratio * 100, 1)} if verdict.ratio is not None else {}),
        "history_count": len(verdict.history),
        "history_needed": verdict.min_history,
        "history": history,
        "size_decrease_ratio": verdict.decrease_ratio,
        "size_increase_ratio": verdict.increase_ratio,
    }


# --------------------------------------------------------------------------------------------------
# schema_drift
# --------------------------------------------------------------------------------------------------


def schema_drift_spec(database: DatabaseConfig) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        SCHEMA_DRIFT,
        asset=dump_asset_key(database),
        description=(
            f"Whether {database.name}'s schema fingerprint changed since its previous backup. WARN when it did, "
            "listing the tables, indexes, views and triggers added, removed and changed (read back from both dumps)."
        ),
        metadata={"database": database.name},
    )


def schema_drift(
    context: dg.OpExecutionContext, store: BackupStore, config: PatinaConfig, checked: Checked
) -> dg.AssetCheckResult:
    manifest = checked.manifest
    if manifest is None:
        return _no_backup(checked, WARN, SCHEMA_DRIFT)
    previous = previous_backups(store, manifest, limit=1)
    drift = detect_schema_drift(store, manifest, previous[-1] if previous else None)
    if drift.changed:
        context.log.warning(drift.summary())
    return dg.AssetCheckResult(
        asset_key=checked.key,
        check_name=SCHEMA_DRIFT,
        passed=not drift.changed,
        severity=WARN,
        description=drift.summary(),
        metadata=drift_metadata(drift),
    )


# --------------------------------------------------------------------------------------------------
# captured_on_time
# --------------------------------------------------------------------------------------------------


def captured_on_time_spec(database: DatabaseConfig) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        CAPTURED_ON_TIME,
        asset=dump_asset_key(database),
        description=(
            f"Whether {database.name}'s data was read from the source within {LATE_AFTER.days} day(s) of the end "
            "of the day it is filed under. WARN when not: a backfill of a night long past holds the database as it "
            "was when the backfill ran, not as it was that night (`dump.late_backfill: refuse` refuses them)."
        ),
        metadata={"database": database.name},
    )


def captured_on_time(
    context: dg.OpExecutionContext, store: BackupStore, config: PatinaConfig, checked: Checked
) -> dg.AssetCheckResult:
    manifest = checked.manifest
    if manifest is None:
        return _no_backup(checked, WARN, CAPTURED_ON_TIME)
    # (no log line: the dump's step already logged it, and the result's description says it again)
    return dg.AssetCheckResult(
        asset_key=checked.key,
        check_name=CAPTURED_ON_TIME,
        passed=not manifest.captured_late,
        severity=WARN,
        description=late_summary(manifest),
        metadata={
            "database": manifest.database,
            "day": manifest.day,
            "captured_at": manifest.captured_at,
            "captured_late": bool(manifest.captured_late),
            "verdict": "captured_late" if manifest.captured_late else "on_time",
        },
    )


def drift_metadata(drift: SchemaDrift) -> dict:
    diff = drift.diff
    return {
        "database": drift.database,
        "day": drift.day,
        "verdict": "changed" if drift.changed else ("first_backup" if drift.previous_day is None else "unchanged"),
        "previous_day": drift.previous_day or "none",
        "schema_fingerprint": drift.fingerprint,
        "previous_schema_fingerprint": drift.previous_fingerprint or "none",
        "added": dg.MetadataValue.json([c.label for c in diff.added]),
        "removed": dg.MetadataValue.json([c.label for c in diff.removed]),
        "changed": dg.MetadataValue.json([c.label for c in diff.changed]),
        "objects_listed": drift.objects_listed,
        "report": dg.MetadataValue.md(drift_report(drift)),
        "note": dg.MetadataValue.text(drift.note or "none"),
    }


def drift_report(drift: SchemaDrift) -> str:
    """Markdown for the UI: each object added, removed or changed, with its SQL (before and after)."""

    def sql(text: str) -> str:
        return "```sql\n" + text.strip() + "\n```"

    lines = [drift.summary()]
    for title, changes in (
        ("Added", drift.diff.added),
        ("Removed", drift.diff.removed),
        ("Changed", drift.diff.changed),
    ):
        if changes:
            lines.append(f"### {title}")
        for change in changes:
            lines.append(f"**{change.label}**")
            if change.before is not None and change.after is not None:
                lines += ["before:", sql(change.before), "after:", sql(change.after)]
            else:
                lines.append(sql(change.after if change.after is not None else change.before or ""))
    return "\n\n".join(lines)


# --------------------------------------------------------------------------------------------------
# point_in_time
# --------------------------------------------------------------------------------------------------


def point_in_time_spec(database: DatabaseConfig) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        POINT_IN_TIME,
        asset=dump_asset_key(database),
        description=(
            f"Whether {database.name}'s backup is one point in time: read in one transaction or one batch, or "
            "paged with D1's Time Travel bookmark unchanged from start to end. WARN when the database was written "
            "during every attempt to read it: the backup may hold a child row without its parent; the warning "
            "names the `wrangler d1 time-travel restore --bookmark=...` that gives an exact state instead."
        ),
        metadata={"database": database.name},
    )


def point_in_time(
    context: dg.OpExecutionContext, store: BackupStore, config: PatinaConfig, checked: Checked
) -> dg.AssetCheckResult:
    manifest = checked.manifest
    if manifest is None:
        return _no_backup(checked, WARN, POINT_IN_TIME)
    summary = point_in_time_summary(manifest)
    if not manifest.point_in_time:
        context.log.warning(summary)
    return dg.AssetCheckResult(
        asset_key=checked.key,
        check_name=POINT_IN_TIME,
        passed=manifest.point_in_time,
        severity=WARN,
        description=summary,
        metadata={
            "database": manifest.database,
            "day": manifest.day,
            "verdict": "point_in_time" if manifest.point_in_time else "not_point_in_time",
            "consistency": manifest.consistency or "not recorded",
            "time_travel_bookmark": manifest.bookmark or "none",
            "end_bookmark": manifest.end_bookmark or "none",
        },
    )


def point_in_time_summary(manifest: Manifest) -> str:
    """One sentence for the UI and the alert: whether the backup is one point in time, and what to do if not."""
    if manifest.point_in_time:
        return f"{manifest.database} {manifest.day}: one point in time ({manifest.consistency or 'one transaction'})"
    return (
        f"{manifest.database} {manifest.day}: NOT one point in time: the database was written while it was read "
        f"(Time Travel bookmark {manifest.bookmark} at the start, {manifest.end_bookmark} at the end), so it may "
        f"hold rows without the rows they refer to. Exact alternative: wrangler d1 time-travel restore "
        f"{manifest.database} --bookmark={manifest.bookmark} (the database as the dump started, in place)"
    )


# --------------------------------------------------------------------------------------------------
# All of them, in the dump's step
# --------------------------------------------------------------------------------------------------

EVALUATIONS = {
    RESTORE_VERIFICATION: restore_verification,
    SIZE_ANOMALY: size_anomaly,
    SCHEMA_DRIFT: schema_drift,
    POINT_IN_TIME: point_in_time,
    CAPTURED_ON_TIME: captured_on_time,
}


def evaluate_dump_checks(
    context: dg.OpExecutionContext,
    store: BackupStore,
    database: DatabaseConfig,
    config: PatinaConfig,
    published: Manifest | None = None,
) -> Iterator[dg.AssetCheckResult]:
    """The selected checks of `database`'s dump asset, on the backup the step has just `published`, or
    (checks run alone) on the run's partition's backup, else the newest (see `evaluate_checks`)."""
    key = dump_asset_key(database)
    checked = Checked.published(key, published) if published else _backup_checked(context, store, database)
    yield from evaluate_checks(context, store, config, checked)


def evaluate_checks(
    context: dg.OpExecutionContext, store: BackupStore, config: PatinaConfig, checked: Checked
) -> Iterator[dg.AssetCheckResult]:
    """The checks of `checked.key` that the step selected, in the order of DUMP_CHECK_NAMES: a configured
    database's dump asset and a fleet's asset (one tenant's backup per step) alike.

    Each check is evaluated even when one before it raises (a bucket that hiccups on a read-back): the
    others' results are kept and the error is raised after them, so the step's retry policy applies."""
    selected = {key.name for key in context.selected_asset_check_keys if key.asset_key == checked.key}
    error: BaseException | None = None
    for name in DUMP_CHECK_NAMES:
        if name not in selected:
            continue
        try:
            yield EVALUATIONS[name](context, store, config, checked)
        except Exception as e:  # noqa: BLE001  (raised below, after the other checks)
            context.log.error(f"{checked.database}: the check {name} could not be evaluated: {e}")
            error = error or e
    if error is not None:
        raise error
