"""One nightly backup of one database, as plain Python: dump it, store it with its manifest.

The Dagster asset (`defs/dumps/assets.py`) is a thin shell over `back_up`, so the same steps can be read,
tested and run without Dagster.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from . import history, leftovers
from .config import DatabaseConfig, DumpConfig, PatinaConfig
from .encryption import AgeKeys
from .engine.errors import AuthenticationFailed, DatabaseNotFound, PatinaError
from .storage import (
    LATE_AFTER,
    BackupStore,
    Manifest,
    day_end,
    is_captured_late,
    open_bucket,
    utc_timestamp,
)

if TYPE_CHECKING:
    from .engine import DumpResult, Source

# The dump writer and the database readers are imported where they are used: the read commands open the
# store through `open_store` below and need neither (`patina status`, issue 17).


class LateBackfillRefused(PatinaError):
    """A dump for a night long past, with ``dump.late_backfill: refuse``."""


@dataclass(frozen=True)
class Cloudflare:
    """How to reach D1: the API base URL and the token (from the environment, never from a file)."""

    api_url: str
    token: str | None
    requests_per_5_minutes: int = 600  # Patina's share of the token's rate limit (cloudflare.requests_per_5_minutes)


def open_database(database: DatabaseConfig, cloudflare: Cloudflare, settings: DumpConfig) -> Source:
    """The engine Source for a configured database."""
    from .engine.sources import open_source  # (the readers: only a dump needs them)

    if database.is_d1:
        if not cloudflare.token:
            raise AuthenticationFailed(
                f"{database.name}: no Cloudflare API token: set the environment variable named by "
                "cloudflare.api_token_env (CLOUDFLARE_API_TOKEN by default)"
            )
        return open_source(
            database.source,
            token=cloudflare.token,
            env={},
            api_url=cloudflare.api_url,
            requests_per_5_minutes=cloudflare.requests_per_5_minutes,
            **settings.d1_source_options(),
        )
    path = database.sqlite_path
    if path.is_file() and path.stat().st_size == 0:
        # SQLite opens a 0-byte file as an empty database: backing it up would store "no tables" as if the data
        # were gone (and, as the newest backup, push the real ones towards retention).  An interrupted copy, a
        # failed sync or the wrong path is far likelier.  (A restore may legitimately make one: not refused there.)
        raise DatabaseNotFound(
            f"{database.name}: {path} is 0 bytes, which is no SQLite database (an interrupted copy, or the wrong "
            "file?): nothing was backed up; point the source at the real database file"
        )
    return open_source(str(path))


def manifest_for(result: DumpResult, day: str, run_id: str | None) -> Manifest:
    """The manifest of a dump, before the store adds where and when it was stored."""
    return Manifest(
        database=result.database,
        day=day,
        format=result.format,
        sql_bytes=result.sql_bytes,
        sql_sha256=result.sql_sha256,
        tables=result.tables,
        rows=result.rows,
        table_rows=dict(result.table_rows),
        table_digests=dict(result.table_digests),
        content_digest=result.content_digest,
        digest_version=result.digest_version,
        schema_fingerprint=result.schema_fingerprint,
        source=result.source,
        point_in_time=result.point_in_time,
        requests=result.requests,
        consistency=result.consistency,
        bookmark=result.bookmark,
        end_bookmark=result.end_bookmark,
        started_at=result.started_at.isoformat(),
        captured_at=result.started_at.isoformat(),  # the engine reads from the moment it starts (one snapshot where the source allows)
        finished_at=result.finished_at.isoformat(),
        job_id=result.job_id,
        dagster_run_id=run_id,
        warnings=list(result.warnings),
    )


def back_up(
    database: DatabaseConfig,
    day: str,
    store: BackupStore,
    cloudflare: Cloudflare,
    settings: DumpConfig,
    *,
    run_id: str | None = None,
    now: datetime | None = None,
) -> tuple[Manifest, DumpResult]:
    """Dump `database` and publish it as the backup of `day`. On failure the bucket is unchanged.

    A dump run long after its day ended (a backfill) reads the database as it is now: it is stored marked
    ``captured_late``, or refused with ``dump.late_backfill: refuse`` (``LateBackfillRefused``)."""
    from .engine import dump_database

    refuse_late(database, day, settings, now)
    leftovers.sweep(store.bucket)  # what a killed run left: temporaries, uploads, scratch, workers
    with leftovers.scratch_directory("backup") as tmp:
        path = tmp / f"{database.name}.{settings.format}"
        with open_database(database, cloudflare, settings) as source:
            result = dump_database(
                source, path, database=database.name, job_id=run_id, consistency_retries=settings.consistency_retries
            )
        manifest = store.publish_daily(day, database.name, path, manifest_for(result, day, run_id))
    history.record(store, manifest)  # where the checks find this backup without listing the bucket
    return manifest, result


def refuse_late(database: DatabaseConfig, day: str, settings: DumpConfig, now: datetime | None = None) -> None:
    """Raise ``LateBackfillRefused`` when `day` is long past and the configuration refuses late backfills."""
    moment = now or datetime.now(UTC)
    if settings.late_backfill != "refuse" or not is_captured_late(day, moment):
        return
    raise LateBackfillRefused(
        f"{database.name}: refusing to back up {day} at {utc_timestamp(moment)}, more than {LATE_AFTER.days} day(s) "
        f"after that day ended ({utc_timestamp(day_end(day))}). A backfill reads the database as it is NOW, so it "
        f"would store today's data under {day}: it can fill a gap in the list with current data (marked captured "
        f"late), but it cannot bring back what {database.name} held on {day}. For that, restore a backup of that "
        "night (`patina list`); for D1, Time Travel (`wrangler d1 time-travel restore DB --timestamp=...`, within "
        "30 days) rewinds the live database in place, so back it up first. To store late backfills anyway, set dump.late_backfill: store"
    )


def open_store(config: PatinaConfig, env: Mapping[str, str] = os.environ, *, create: bool = True) -> BackupStore:
    """The backup store a configuration names, without Dagster (the command line, tests, recovery).
    ``create=False`` (the read commands): a local bucket directory that does not exist is an error."""
    s3 = config.bucket.s3
    keys = AgeKeys.from_config(config.encryption, env)
    if s3 is None:
        return BackupStore(open_bucket(local_path=config.bucket.local.path, create=create), keys)
    key_id, secret = s3.credentials(env)
    return BackupStore(
        open_bucket(
            s3_bucket=s3.bucket,
            endpoint_url=s3.endpoint_url,
            region=s3.region,
            access_key_id=key_id,
            secret_access_key=secret,
            prefix=s3.prefix,
            part_size=s3.multipart_part_size_bytes,
        ),
        keys,
    )
