"""R2 bucket backups: one daily-partitioned asset per `r2_buckets:` entry, `r2/<name>` in the group `r2_backups`.

Each materialization is a thin shell over :mod:`patina_assets.r2`: the night's incremental snapshot
(`backup_bucket`), then the checks, then retention with garbage collection (`collect_garbage`).  The checks run
inside the asset's own step (declared as `check_specs`), so every step of an R2 backup carries the `patina/area: r2`
tag and the nightly job's executor gives R2 steps at most `R2_SLOTS` of its slots: they never take a dump's.
Across runs (backfills) they share the `r2_backup` pool, apart from the dumps' `d1_export`.  The nightly job (defs/dumps/jobs.py) selects the
group `r2_backups` beside the dump assets.

* `r2_snapshot_complete` (ERROR): the source listed again against the snapshot; an object that existed when the
  snapshot's listing began but is not in it fails the check.
* `r2_objects_verified` (ERROR): the objects the snapshot names exist in `r2/objects/` with their sha256: a sample
  of `SAMPLE` each night, all of them on Sundays' partitions.
* `r2_size_anomaly`: object count and bytes against the average of the previous snapshots (the dumps' ratios:
  under `alerts.size_decrease_ratio` an ERROR, over `alerts.size_increase_ratio` a WARN).

The source's credentials are read from the environment variables the entry names when the step runs, so the
definitions load without them and a missing one fails the step with the variable's name (never its value).
"""

# No `from __future__ import annotations` here: Dagster reads the `context` annotation of the asset function.
from datetime import date, timedelta

import dagster as dg

from ...config import PatinaConfig, R2BucketConfig
from ...encryption import EncryptionError
from ...r2 import backup_bucket, check_complete, check_objects, collect_garbage, judge_size, list_snapshots, open_source
from ...r2.checks import DEFAULT_SAMPLE
from ...r2.retention import GarbageCollectionRefused
from ...storage import StorageError
from ...units import human_bytes
from ..policies import R2_AREA, R2_AREA_TAG, R2_GROUP, R2_POOL, daily_partitions, retry_policy
from ..resources import BucketResource

R2_SNAPSHOT_COMPLETE = "r2_snapshot_complete"
R2_OBJECTS_VERIFIED = "r2_objects_verified"
R2_SIZE_ANOMALY = "r2_size_anomaly"
R2_CHECK_NAMES = (R2_SNAPSHOT_COMPLETE, R2_OBJECTS_VERIFIED, R2_SIZE_ANOMALY)
HISTORY_WINDOW = 7

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


def r2_asset_key(entry: R2BucketConfig) -> dg.AssetKey:
    return dg.AssetKey(["r2", entry.asset_name])


def build_r2_asset(
    entry: R2BucketConfig, config: PatinaConfig, partitions: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    key = r2_asset_key(entry)
    description = (
        f"Nightly incremental snapshot of {entry.describe_source()}"
        + (f" ({entry.description})" if entry.description else "")
        + f". New and changed objects (by size and ETag) are copied into r2/objects/<sha256>, and r2/<day>/{entry.name}"
        ".manifest.json, written last, names every key with its size, ETag, sha256, content type and metadata. "
        f"Retention keeps {config.retention.daily_days} daily and {config.retention.weekly_weeks} weekly snapshots; "
        "an object goes only when no kept snapshot names it. Restore: patina restore-r2 DAY NAME --to ..."
    )

    @dg.asset(
        key=key,
        description=description,
        group_name=R2_GROUP,
        partitions_def=partitions,
        pool=R2_POOL,
        retry_policy=retry_policy(config.dump),
        kinds={"s3", "r2"},
        tags={"priority": entry.priority},
        # As the dumps: no snapshot for alerts.stale_after_days fails freshness in the UI; warn from stale_warn_after_days.
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(days=config.alerts.stale_after_days),
            warn_window=timedelta(days=config.alerts.stale_warn_after_days),
        ),
        op_tags={R2_AREA_TAG: R2_AREA, "dagster/priority": str(-1 - entry.priority_rank)},  # dumps start first
        metadata={"r2_bucket": entry.name, "source": entry.describe_source(), "priority": entry.priority},
        check_specs=[
            dg.AssetCheckSpec(R2_SNAPSHOT_COMPLETE, asset=key, description="every object listed is in the snapshot"),
            dg.AssetCheckSpec(
                R2_OBJECTS_VERIFIED,
                asset=key,
                description=f"named objects exist with their sha256 ({DEFAULT_SAMPLE} sampled nightly, all on Sundays)",
            ),
            dg.AssetCheckSpec(R2_SIZE_ANOMALY, asset=key, description="object count and bytes against recent nights"),
        ],
    )
    def r2_backup(context: dg.AssetExecutionContext, bucket: BucketResource) -> dg.MaterializeResult:
        backup, keys = bucket.bucket(), bucket.age_keys()
        day = context.partition_key
        try:
            source = open_source(entry)
            manifest = backup_bucket(
                source, backup, name=entry.name, day=day, prefix=entry.prefix, exclude=entry.exclude, keys=keys
            )
        except EncryptionError as exc:  # the previous snapshot is encrypted and the identity is not here
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        except StorageError as exc:
            if not exc.retryable:
                raise dg.Failure(description=str(exc), allow_retries=False) from exc
            raise
        context.log.info(
            f"r2/{entry.name} {day}: {manifest.objects} objects ({human_bytes(manifest.bytes)}), copied "
            f"{manifest.copied_objects} ({human_bytes(manifest.copied_bytes)})"
        )

        full = date.fromisoformat(day).isoweekday() == 7
        try:
            complete = check_complete(source, backup, manifest, entry.prefix, keys)
            objects = check_objects(backup, manifest, sample=None if full else DEFAULT_SAMPLE, keys=keys)
        except EncryptionError as exc:  # e.g. an identity that is not the recipients': the checks fail, saying why
            complete = objects = _Unreadable(f"the snapshot was stored but cannot be read back here: {exc}")
        history = [s for s in list_snapshots(backup, entry.name)[0] if s.day < day][-HISTORY_WINDOW:]
        size = judge_size(
            manifest,
            history,
            decrease_ratio=config.alerts.size_decrease_ratio,
            increase_ratio=config.alerts.size_increase_ratio,
        )
        shrunk = any("possible data loss" in problem for problem in size.problems)
        checks = [
            dg.AssetCheckResult(
                check_name=R2_SNAPSHOT_COMPLETE,
                passed=complete.passed,
                severity=ERROR,
                description=complete.summary(),
                metadata={"r2_bucket": entry.name, "day": day, **complete.counts()},
            ),
            dg.AssetCheckResult(
                check_name=R2_OBJECTS_VERIFIED,
                passed=objects.passed,
                severity=ERROR,
                description=objects.summary(),
                metadata={"r2_bucket": entry.name, "day": day, "full": full, **objects.counts()},
            ),
            dg.AssetCheckResult(
                check_name=R2_SIZE_ANOMALY,
                passed=not size.anomalous,
                severity=ERROR if shrunk else WARN,
                description=size.summary(),
                metadata={
                    "r2_bucket": entry.name,
                    "day": day,
                    "objects": size.objects,
                    "bytes": size.bytes,
                    "history": size.history,
                },
            ),
        ]

        retention_note = "not run"
        try:
            retention_note = collect_garbage(backup, config.retention, keys=keys).summary()
        except (GarbageCollectionRefused, StorageError) as exc:  # the snapshot stands; retention waits
            context.log.warning(f"R2 retention did not run: {exc}")
            retention_note = f"did not run: {exc}"

        return dg.MaterializeResult(
            metadata={
                "uri": dg.MetadataValue.text(backup.uri(manifest.key)),
                "key": manifest.key,
                "objects": manifest.objects,
                "bytes": manifest.bytes,
                "size": dg.MetadataValue.text(human_bytes(manifest.bytes)),
                "encrypted": manifest.encrypted,
                "recipients": dg.MetadataValue.text(", ".join(manifest.recipients) or "(none)"),
                "copied_objects": manifest.copied_objects,
                "copied_bytes": manifest.copied_bytes,
                "reused_objects": manifest.reused_objects,
                "excluded_objects": manifest.excluded_objects,
                "entries_key": manifest.entries_key,
                "entries_sha256": manifest.entries_sha256,
                "dagster/row_count": manifest.objects,
                "retention": dg.MetadataValue.text(retention_note),
            },
            check_results=checks,
        )

    return r2_backup


def build_r2_assets(config: PatinaConfig) -> list[dg.AssetsDefinition]:
    partitions = daily_partitions(config)
    return [build_r2_asset(entry, config, partitions) for entry in config.r2_buckets]


class _Unreadable:
    """A check that could not read the snapshot back (the identity is missing or wrong): it fails, saying why."""

    passed = False

    def __init__(self, why: str) -> None:
        self.why = why

    def summary(self) -> str:
        return self.why

    def counts(self) -> dict[str, int]:
        return {}
