"""On-demand backups (`patina trigger`, `POST /trigger`) and what the operators' tools read from Dagster.

Why a job of its own rather than the nightly job's assets: the dump assets are daily-partitioned and a day's
partition exists only once the day has ended (the nightly at 03:00 backs up the day that just ended), so a
backup taken *now* has no partition to run. ``on_demand_backup`` is an unpartitioned job with one op per
database; each op publishes today's (UTC) backup exactly as the nightly would (``back_up``: the same
layout, manifest and checks) and records it as a materialization of that database's dump asset for today's
partition, so the asset's history in the UI shows it beside the nightly ones. The reason is the run tag
``patina/reason``, visible on the run in the UI; ``patina/day`` fixes the day when the run was requested.

An on-demand backup is today's backup: tonight's nightly run replaces it with the end-of-day state (one backup
per database per day). To keep it beyond tonight, download it (`patina download DAY DB`).
"""

from datetime import UTC, datetime

import dagster as dg

from ...config import DatabaseConfig, PatinaConfig
from ..dumps.assets import back_up_in_dagster, dump_asset_key, dump_metadata
from ..dumps.jobs import NIGHTLY_JOB
from ..policies import EXPORT_POOL, retry_policy, step_executor
from ..resources import BucketResource, CloudflareResource

ON_DEMAND_JOB = "on_demand_backup"
REASON_TAG = "patina/reason"
DAY_TAG = "patina/day"
REQUESTED_BY_TAG = "patina/requested_by"
BACKUP_JOBS = (NIGHTLY_JOB, ON_DEMAND_JOB)
MAX_REASON_LENGTH = 500


# --------------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------------


def backup_op_name(database: DatabaseConfig) -> str:
    return f"backup_{database.asset_name}"


def build_backup_op(database: DatabaseConfig, config: PatinaConfig) -> dg.OpDefinition:
    @dg.op(
        name=backup_op_name(database),
        description=f"Back up {database.name} now, as today's backup (the run tag {REASON_TAG} says why).",
        out=dg.Out(dg.Nothing),
        pool=EXPORT_POOL,
        retry_policy=retry_policy(config.dump),
        tags={"priority": database.priority},
    )
    def backup_now(context: dg.OpExecutionContext, bucket: BucketResource, cloudflare: CloudflareResource) -> None:
        day = context.run.tags.get(DAY_TAG) or today()
        store = bucket.store()
        manifest, result = back_up_in_dagster(context, database, day, store, cloudflare, config)
        reason = context.run.tags.get(REASON_TAG)
        context.log_event(
            dg.AssetMaterialization(
                asset_key=dump_asset_key(database),
                partition=day,
                description=f"On-demand backup{': ' + reason if reason else ''}",
                metadata={
                    **dump_metadata(manifest, result, store.bucket.uri(manifest.key)),
                    "on_demand": True,
                    "reason": reason or "",
                },
            )
        )

    return backup_now


def build_on_demand_job(config: PatinaConfig) -> dg.JobDefinition:
    """Every database's op; ``op_selection`` picks some. Exports share the nightly's pool and concurrency."""
    ops = [build_backup_op(db, config) for db in config.by_priority()]
    return dg.GraphDefinition(
        name=ON_DEMAND_JOB,
        node_defs=ops,
        description="Back up some or all databases now, as today's backup (patina trigger, POST /trigger).",
    ).to_job(
        executor_def=step_executor(config.dump.concurrency),
        tags={dg.MAX_RUNTIME_SECONDS_TAG: str(6 * 3600)},
    )


def today() -> str:
    return datetime.now(UTC).date().isoformat()
