"""One nightly backup of one database, as plain Python: dump it, store it with its manifest.

The Dagster asset (`defs/dumps.py`) is a thin shell over `back_up`, so the same steps can be read,
tested and run without Dagster.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .config import DatabaseConfig, DumpConfig, PatinaConfig
from .engine import D1Source, DumpResult, Source, SqliteSource, dump_database
from .engine.errors import AuthenticationFailed
from .storage import BackupStore, LocalBucket, Manifest, S3Bucket, make_s3_client


@dataclass(frozen=True)
class Cloudflare:
    """How to reach D1: the API base URL and the token (from the environment, never from a file)."""

    api_url: str
    token: str | None


def open_database(database: DatabaseConfig, cloudflare: Cloudflare, settings: DumpConfig) -> Source:
    """The engine Source for a configured database."""
    if database.is_d1:
        if not cloudflare.token:
            raise AuthenticationFailed(
                f"{database.name}: no Cloudflare API token: set the environment variable named by "
                "cloudflare.api_token_env (CLOUDFLARE_API_TOKEN by default)"
            )
        return D1Source(
            database.account_id,
            database.database_id,
            token=cloudflare.token,
            api_url=cloudflare.api_url,
            page_bytes=settings.page_bytes,
            deadline_seconds=settings.deadline_seconds,
            max_attempts=settings.request_attempts,
            backoff_seconds=settings.request_backoff_seconds,
        )
    return SqliteSource(database.sqlite_path)


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
        schema_fingerprint=result.schema_fingerprint,
        source=result.source,
        point_in_time=result.point_in_time,
        requests=result.requests,
        started_at=result.started_at.isoformat(),
        finished_at=result.finished_at.isoformat(),
        job_id=result.job_id,
        dagster_run_id=run_id,
    )


def back_up(
    database: DatabaseConfig,
    day: str,
    store: BackupStore,
    cloudflare: Cloudflare,
    settings: DumpConfig,
    *,
    run_id: str | None = None,
) -> tuple[Manifest, DumpResult]:
    """Dump `database` and publish it as the backup of `day`. On failure the bucket is unchanged."""
    with tempfile.TemporaryDirectory(prefix="patina-") as tmp:
        path = Path(tmp) / f"{database.name}.{settings.format}"
        with open_database(database, cloudflare, settings) as source:
            result = dump_database(source, path, database=database.name, job_id=run_id)
        manifest = store.publish_daily(day, database.name, path, manifest_for(result, day, run_id))
    return manifest, result


def open_store(config: PatinaConfig, env: Mapping[str, str] = os.environ, *, create: bool = True) -> BackupStore:
    """The backup store a configuration names, without Dagster (the command line, tests, recovery).
    ``create=False`` (the read commands): a local bucket directory that does not exist is an error."""
    s3 = config.bucket.s3
    if s3 is None:
        return BackupStore(LocalBucket(config.bucket.local.path, create=create))
    key_id, secret = s3.credentials(env)
    client = make_s3_client(s3.endpoint_url, s3.region, key_id, secret)
    return BackupStore(S3Bucket(client, s3.bucket, prefix=s3.prefix, part_size=s3.multipart_part_size_bytes))
