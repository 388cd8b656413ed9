"""Nightly dumps: one daily-partitioned asset per configured database, its checks evaluated in the same step.

Each materialization dumps the database as it is when the run starts and stores the dump with its
manifest as that day's backup (`daily/YYYY-MM-DD/<database>...`). Exports share the `d1_export` pool, so
no more run at once than its limit (the spec's 3; see dagster.yaml).
"""

from collections.abc import Iterator
from datetime import timedelta

import dagster as dg

from ...backup import LateBackfillRefused, back_up
from ...config import DatabaseConfig, PatinaConfig
from ...engine import (
    DIGEST_ALGORITHMS,
    AuthenticationFailed,
    DatabaseNotFound,
    DumpError,
    DumpResult,
    TimeTravelUnavailable,
)
from ...storage import BackupStore, Manifest, StorageError
from ...units import human_bytes
from ..policies import EXPORT_POOL, daily_partitions, retry_policy
from ..resources import BucketResource, CloudflareResource

DUMPS_GROUP = "dumps"


def dump_asset_key(database: DatabaseConfig) -> dg.AssetKey:
    return dg.AssetKey(["dumps", database.asset_name])


def build_dump_asset(
    database: DatabaseConfig, config: PatinaConfig, partitions: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    description = (
        f"Nightly SQL dump of {database.name}"
        + (f" ({database.description})" if database.description else "")
        + f", from {database.describe_source()}. Stored as daily/<day>/{database.name}.<generation>.{config.dump.format} "
        "with a manifest beside it (sha256, tables, rows, digests); the manifest is written last and makes the backup count."
    )

    from .checks import (
        dump_check_specs,
        evaluate_dump_checks,
    )  # checks.py names its asset through this module: imported here, not at the top

    key = dump_asset_key(database)

    @dg.multi_asset(
        name="__".join(key.path),  # the step key, as when this was a plain @asset
        specs=[
            dg.AssetSpec(
                key,
                description=description,
                group_name=DUMPS_GROUP,
                partitions_def=partitions,
                kinds={database.kind, "sql"},
                tags={"priority": database.priority},
                # No backup for alerts.stale_after_days (the spec's 8) fails freshness in the UI; warn from
                # stale_warn_after_days.
                freshness_policy=dg.FreshnessPolicy.time_window(
                    fail_window=timedelta(days=config.alerts.stale_after_days),
                    warn_window=timedelta(days=config.alerts.stale_warn_after_days),
                ),
                metadata={
                    "database": database.name,
                    "source": database.describe_source(),
                    "priority": database.priority,
                },
            )
        ],
        check_specs=dump_check_specs(database, config),
        can_subset=True,  # a check alone (re-run from the UI) checks the stored backup and dumps nothing
        description=description,
        partitions_def=partitions,
        pool=EXPORT_POOL,
        retry_policy=retry_policy(config.dump),
    )
    def dump(
        context: dg.AssetExecutionContext, bucket: BucketResource, cloudflare: CloudflareResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        store = bucket.store()
        manifest = None
        if key in context.selected_asset_keys:
            manifest, result = back_up_in_dagster(context, database, context.partition_key, store, cloudflare, config)
            yield dg.MaterializeResult(
                asset_key=key, metadata=dump_metadata(manifest, result, store.bucket.uri(manifest.key))
            )
        yield from evaluate_dump_checks(context, store, database, config, published=manifest)

    return dump


def back_up_in_dagster(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    database: DatabaseConfig,
    day: str,
    store: BackupStore,
    cloudflare: CloudflareResource,
    config: PatinaConfig,
) -> tuple[Manifest, DumpResult]:
    """`back_up`, with errors that retrying cannot fix (a bad token, a missing database, a bucket that
    refuses access) turned into `Failure(allow_retries=False)`, and the dump's warnings logged."""
    try:
        manifest, result = back_up(
            database, day, store, cloudflare.credentials(), config.dump, run_id=context.run.run_id
        )
    except (AuthenticationFailed, DatabaseNotFound, DumpError, TimeTravelUnavailable, LateBackfillRefused) as e:
        raise dg.Failure(description=str(e), allow_retries=False) from e
    except StorageError as e:
        if not e.retryable:  # access denied, missing bucket: a person has to fix it
            raise dg.Failure(description=str(e), allow_retries=False) from e
        raise
    for warning in result.warnings:
        context.log.warning(f"{database.name}: {warning}")
    if manifest.captured_late:
        context.log.warning(late_summary(manifest))
    context.log.info(
        f"{database.name}: {manifest.rows} rows in {manifest.tables} tables, {manifest.bytes} bytes -> {manifest.key}"
    )
    return manifest, result


def late_summary(manifest: Manifest) -> str:
    if not manifest.captured_late:
        return f"{manifest.database} {manifest.day}: captured at {manifest.captured_at}, on time"
    return (
        f"{manifest.database} {manifest.day}: captured LATE, at {manifest.captured_at}: this backup holds the database "
        f"as it was then, not as it was on {manifest.day} (a backfill cannot read the past of a live source)"
    )


def dump_metadata(manifest: Manifest, result: DumpResult, uri: str) -> dict:
    """What the UI shows for each nightly dump."""
    table_rows = dg.MetadataValue.table(
        records=[dg.TableRecord({"table": name, "rows": rows}) for name, rows in sorted(manifest.table_rows.items())],
        schema=dg.TableSchema(columns=[dg.TableColumn("table", "string"), dg.TableColumn("rows", "int")]),
    )
    return {
        "uri": dg.MetadataValue.text(uri),
        "key": manifest.key,
        "bytes": manifest.bytes,
        "size": dg.MetadataValue.text(human_bytes(manifest.bytes)),
        "sha256": manifest.sha256,
        "format": manifest.format,
        "sql_bytes": manifest.sql_bytes,
        "tables": manifest.tables,
        "rows": manifest.rows,
        "dagster/row_count": manifest.rows,
        "table_rows": table_rows,
        "duration_seconds": round(result.duration_seconds, 3),
        "schema_fingerprint": manifest.schema_fingerprint,
        "content_digest": manifest.content_digest,
        "digest": DIGEST_ALGORITHMS[manifest.digest_version],  # of content_digest and the table digests
        "point_in_time": manifest.point_in_time,
        "consistency": manifest.consistency or "one transaction",
        "time_travel_bookmark": manifest.bookmark or "none",
        "end_bookmark": manifest.end_bookmark or "none",
        "attempts": result.attempts,
        "captured_at": manifest.captured_at,
        "captured_late": bool(manifest.captured_late),
        "requests": manifest.requests,
        "warnings": dg.MetadataValue.text("; ".join(result.warnings) or "none"),
        "encrypted": manifest.encrypted,
        "recipients": dg.MetadataValue.text(", ".join(manifest.recipients) or "none (stored unencrypted)"),
    }


def build_dump_assets(config: PatinaConfig) -> list[dg.AssetsDefinition]:
    partitions = daily_partitions(config)
    return [build_dump_asset(db, config, partitions) for db in config.databases]
