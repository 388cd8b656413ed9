"""`bucket_reconciliation`: the bucket against what Dagster recorded (the logic is `patina_assets.reconciliation`)."""

from collections.abc import Mapping

import dagster as dg

from ...archive import ArchiveStore
from ...config import PatinaConfig
from ...reconciliation import Reconciliation, RecordedBackups, reconcile
from ...storage import StorageError
from ..dumps.assets import dump_asset_key
from ..resources import BucketResource
from .assets import _SHOWN, ARCHIVE_KEY, DELETED, RECONCILIATION_CHECK, RETENTION_MARK


def recorded_partitions(instance: dg.DagsterInstance, key: dg.AssetKey) -> set[str]:
    """Partitions of `key` that Dagster says exist: materialized, and not deleted by retention since."""
    materialized = instance.get_latest_storage_id_by_partition(key, dg.DagsterEventType.ASSET_MATERIALIZATION)
    deleted: dict[str, int] = {}
    cursor = None
    while True:
        page = instance.fetch_observations(key, limit=1000, cursor=cursor)
        for record in page.records:
            observation = record.asset_observation
            mark = observation.metadata.get(RETENTION_MARK) if observation else None
            if record.partition_key and mark is not None and mark.value == DELETED:
                deleted[record.partition_key] = max(record.storage_id, deleted.get(record.partition_key, -1))
        if not page.has_more:
            break
        cursor = page.cursor
    return {partition for partition, storage_id in materialized.items() if storage_id > deleted.get(partition, -1)}


def recorded_backups(instance: dg.DagsterInstance, dump_keys: Mapping[str, dg.AssetKey]) -> RecordedBackups:
    """Dagster's records as reconciliation's `RecordedBackups`."""
    dailies = frozenset(
        (day, database) for database, key in dump_keys.items() for day in recorded_partitions(instance, key)
    )
    return RecordedBackups(dailies=dailies, weeks=frozenset(recorded_partitions(instance, ARCHIVE_KEY)))


def build_reconciliation_check(config: PatinaConfig) -> dg.AssetChecksDefinition:
    dump_keys = {db.name: dump_asset_key(db) for db in config.databases}

    @dg.asset_check(
        asset=ARCHIVE_KEY,
        name=RECONCILIATION_CHECK,
        blocking=False,
        description=(
            "The bucket against Dagster's records (materialized dump and archive partitions, minus those retention "
            "deleted): recorded but missing, in the bucket but unknown, bytes that do not match their manifest "
            "(sha256, read back), and dumps or archives without a manifest (half-finished uploads). Missing or "
            "corrupt fails with ERROR; unknown objects and orphans WARN. Runs after each weekly archive, or on demand."
        ),
    )
    def bucket_reconciliation(context: dg.AssetCheckExecutionContext, bucket: BucketResource) -> dg.AssetCheckResult:
        recorded = recorded_backups(context.instance, dump_keys)
        try:
            report = reconcile(ArchiveStore(bucket.store()), recorded)
        except StorageError as exc:
            raise dg.Failure(description=f"reconciliation could not read the bucket: {exc}") from exc
        for kind, findings in (
            ("missing", report.missing),
            ("corrupt", report.corrupt),
            ("unknown", report.unknown),
            ("orphan", report.orphans),
            ("leftover", report.leftovers),
        ):
            for finding in findings[:_SHOWN]:
                (context.log.error if kind in ("missing", "corrupt") else context.log.warning)(
                    f"{kind}: {finding.key}: {finding.detail}"
                )
        return dg.AssetCheckResult(
            passed=report.clean,
            severity=dg.AssetCheckSeverity.ERROR if report.errors else dg.AssetCheckSeverity.WARN,
            description=_summary(report),
            metadata=_reconciliation_metadata(report, recorded),
        )

    return bucket_reconciliation


def _summary(report: Reconciliation) -> str:
    removed = len(report.leftovers) - report.leftovers_kept
    swept = f"; {removed} leftover(s) of interrupted runs removed" if removed else ""
    if report.leftovers_kept:
        swept += f"; {report.leftovers_kept} leftover(s) could not be removed"
    if report.clean:
        return f"The bucket matches the records ({report.dailies_checked} dailies, {report.archives_checked} archives checked){swept}."
    return (", ".join(f"{n} {kind}" for kind, n in report.counts().items() if n) + swept).lstrip("; ")


def _reconciliation_metadata(report: Reconciliation, recorded: RecordedBackups) -> dict[str, object]:
    metadata: dict[str, object] = {f"{kind}_count": n for kind, n in report.counts().items()}
    metadata["leftovers_count"] = len(report.leftovers)
    for kind, findings in (
        ("missing", report.missing),
        ("corrupt", report.corrupt),
        ("unknown", report.unknown),
        ("orphans", report.orphans),
        ("leftovers", report.leftovers),
    ):
        metadata[kind] = dg.MetadataValue.json([{"key": f.key, "detail": f.detail} for f in findings[:_SHOWN]])
    metadata.update(
        {
            "recorded_dailies": len(recorded.dailies),
            "recorded_archives": len(recorded.weeks),
            "dailies_checked": report.dailies_checked,
            "archives_checked": report.archives_checked,
            "objects": report.objects,
        }
    )
    return metadata
