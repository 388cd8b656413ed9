"""Helpers of the storage tests (tests/storage/): buckets as production builds them, manifests as the dumper
hands them over, and a Breaker that fails writes on either kind of bucket."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import re
from datetime import date
from pathlib import Path

from patina_assets import storage
from patina_assets.storage import (
    Bucket,
    Manifest,
    MiB,
    S3Bucket,
)
from support.s3_server import patina_client

DAY = date(2026, 1, 5)
DB = "groveauth"
BIG = 12_000_000  # three 5 MiB parts: 5 MiB, 5 MiB, ~1.4 MiB


def s3_bucket(endpoint: str, name: str, *, max_retries: int = 0, **options) -> S3Bucket:
    """An S3Bucket as production builds it, with 5 MiB parts (moto's minimum) and tiny list pages
    so every listing in these tests is paginated.  No retries by default: an injected fault stays a fault."""
    options = {"part_size": 5 * MiB, "list_page_size": 2, **options}
    return S3Bucket(patina_client(endpoint, max_retries=max_retries), name, **options)


class Breaker:
    """Makes writes of keys matching a pattern fail, on either kind of bucket.

    S3: the proxy answers 500 to the PutObject, or to the *second* UploadPart of a multipart upload,
    so the failure lands in the middle of the upload.  Local: the final rename fails with EIO.
    """

    def __init__(self, kind: str, request, monkeypatch) -> None:
        self.kind, self.request, self.monkeypatch = kind, request, monkeypatch

    def fail_writes(self, key_pattern: str) -> None:
        if self.kind == "s3":
            proxy = self.request.getfixturevalue("proxy")
            proxy.fail(operation="PutObject", key=key_pattern)
            proxy.fail(operation="UploadPart", key=key_pattern, part_number=2)
            return
        real_replace = os.replace

        def failing_replace(src, dst, *args, **kwargs):
            if re.search(key_pattern, str(dst)):
                raise OSError(errno.EIO, "Input/output error (injected)")
            return real_replace(src, dst, *args, **kwargs)

        self.monkeypatch.setattr(storage.local.os, "replace", failing_replace)


def write_dump(directory: Path, name: str, size: int = 4096, seed: int = 0) -> Path:
    path = directory / name
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def manifest_for(day=DAY, database=DB, fmt="sql.zst", **changes) -> Manifest:
    """A manifest as the dumper would hand it over (the store fills key, bytes, sha256, created_at)."""
    fields = dict(
        database=database,
        day=day.isoformat() if isinstance(day, date) else day,
        format=fmt,
        sql_bytes=10_000,
        sql_sha256=hashlib.sha256(b"sql").hexdigest(),
        tables=2,
        rows=7,
        table_rows={"users": 5, "sessions": 2},
        table_digests={"users": "a" * 64, "sessions": "b" * 64},
        content_digest="c" * 64,
        schema_fingerprint="d" * 64,
        source="d1://account/1f2e…/groveauth (REST API)",
        point_in_time=True,
        requests=3,
        started_at="2026-01-06T03:00:00Z",
        finished_at="2026-01-06T03:00:09Z",
        job_id="job-1",
        dagster_run_id="0b3c6f0e-1111-2222-3333-444455556666",
    )
    fields.update(changes)
    return Manifest(**fields)


def keys_of(bucket: Bucket, prefix: str = "") -> list[str]:
    return [info.key for info in bucket.list(prefix)]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CountingBucket:
    """The real local bucket, counting what is listed (a listing of `daily/` is what the index saves), read
    and stat'ed; ``folders``: the prefixes whose folders were listed."""

    def __init__(self, bucket):
        self._bucket = bucket
        self.listed: list[str] = []
        self.read: list[str] = []
        self.folders: list[str] = []
        self.stats: list[str] = []

    def list(self, prefix=""):
        self.listed.append(prefix)
        return self._bucket.list(prefix)

    def list_folders(self, prefix):
        self.folders.append(prefix)
        return self._bucket.list_folders(prefix)

    def stat(self, key):
        self.stats.append(key)
        return self._bucket.stat(key)

    def get_bytes(self, key):
        self.read.append(key)
        return self._bucket.get_bytes(key)

    def __getattr__(self, name):
        return getattr(self._bucket, name)


class InterleavingBucket:
    """The real bucket, running `meanwhile` once right before the first write of `key` through it: another
    writer's work, exactly between what this one read and what it writes (a race, without threads or sleeps)."""

    def __init__(self, bucket, key, meanwhile):
        self._bucket, self._key, self._meanwhile = bucket, key, meanwhile
        self.interleaved = False

    def _before_write(self, key):
        if key == self._key and not self.interleaved:
            self.interleaved = True
            self._meanwhile()

    def put_bytes(self, key, *args, **kwargs):
        self._before_write(key)
        return self._bucket.put_bytes(key, *args, **kwargs)

    def put_bytes_if_unchanged(self, key, *args, **kwargs):
        self._before_write(key)
        return self._bucket.put_bytes_if_unchanged(key, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._bucket, name)


class RefusingBucket:
    """The real bucket, refusing the next `times` writes of `key` through it with a StorageError (a bucket
    that answers one PUT with an error: the write is not made), then writing as usual."""

    def __init__(self, bucket, key, times=1):
        self._bucket, self._key, self.left = bucket, key, times
        self.refused = 0

    def _refuse(self, key):
        if key == self._key and self.left > 0:
            self.left -= 1
            self.refused += 1
            raise storage.StorageError(f"the bucket refused the write of {key} (a test)")

    def put_bytes(self, key, *args, **kwargs):
        self._refuse(key)
        return self._bucket.put_bytes(key, *args, **kwargs)

    def put_bytes_if_unchanged(self, key, *args, **kwargs):
        self._refuse(key)
        return self._bucket.put_bytes_if_unchanged(key, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._bucket, name)
