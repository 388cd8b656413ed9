"""Restore an R2 snapshot into a bucket or a directory, every object verified by its sha256 (plain Python).

Two passes over the snapshot's entries (optionally only keys under ``prefix``):

1. Plan: every target is checked first, so a refused restore writes nothing: a key that is not a safe relative
   path cannot go to a directory (``..``, absolute, empty segments), and an existing target is refused unless
   ``overwrite`` (an S3 destination is listed once, not asked key by key).
2. Copy: each object is streamed from ``r2/objects/<sha256>`` into a scratch file while it is hashed; only when
   size and sha256 match the entry does it become the target (a rename in the directory; an upload with the
   recorded content type and metadata to a bucket, multipart when large).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from ..encryption import AgeKeys
from ..leftovers import scratch_directory
from ..storage import (
    Bucket,
    S3Bucket,
    StorageError,
    StorageIntegrityError,
    StorageObjectNotFound,
    format_day,
    parse_utc_timestamp,
)
from .layout import Entry, SnapshotManifest, open_entries, read_manifest, read_object, snapshot_manifest_key

logger = logging.getLogger(__name__)


class RestoreRefused(StorageError):
    """The restore would overwrite, or write outside its directory; nothing was written."""


class SnapshotNotFound(StorageError):
    """No snapshot of that name on that day."""


@dataclass(frozen=True)
class R2RestoreResult:
    day: str
    name: str
    destination: str
    objects: int
    bytes: int
    overwritten: int

    def summary(self) -> str:
        replaced = f", {self.overwritten} overwritten" if self.overwritten else ""
        return (
            f"restored {self.objects} objects ({self.bytes} bytes) of {self.name} on {self.day} to {self.destination}, "
            f"each verified by sha256{replaced}"
        )


def parse_destination(to: str) -> tuple[str, str] | Path:
    """``s3://bucket[/prefix]`` -> (bucket, prefix); anything else is a directory."""
    if to.startswith("s3://"):
        bucket, _, prefix = to[len("s3://") :].partition("/")
        if not bucket:
            raise RestoreRefused(f"{to!r} names no bucket: give --to s3://BUCKET[/PREFIX] or a directory")
        return bucket, prefix.strip("/")
    if "://" in to:
        raise RestoreRefused(f"{to!r}: only s3://BUCKET[/PREFIX] and directories are supported destinations")
    return Path(to).expanduser()


def find_snapshot(backup: Bucket, day: date | str, name: str) -> SnapshotManifest:
    key = snapshot_manifest_key(day, name)
    try:
        return read_manifest(backup, key)
    except StorageObjectNotFound:
        raise SnapshotNotFound(
            f"there is no R2 snapshot of {name} on {format_day(day)} ({backup.uri(key)}); `patina list` shows the "
            "snapshots there are"
        ) from None


def restore_snapshot(
    backup: Bucket,
    day: date | str,
    name: str,
    to: str | Path,
    *,
    prefix: str = "",
    overwrite: bool = False,
    s3_client: Any = None,
    part_size: int = 16 * 1024 * 1024,
    concurrency: int = 8,
    scratch_parent: Path | str | None = None,
    keys: AgeKeys | None = None,
) -> R2RestoreResult:
    """Restore snapshot ``name`` of ``day`` (keys under ``prefix``) to ``to``: a directory, or
    ``s3://bucket[/prefix]`` through ``s3_client`` (a boto3 S3 client for the destination's account).  An
    encrypted snapshot needs ``keys`` with the identity."""
    manifest = find_snapshot(backup, day, name)
    destination = parse_destination(str(to)) if not isinstance(to, Path) else to
    if isinstance(destination, Path):
        target: _Target = _DirectoryTarget(destination)
    else:
        if s3_client is None:
            raise RestoreRefused("a restore to s3:// needs the destination's S3 credentials")
        target = _BucketTarget(S3Bucket(s3_client, destination[0], prefix=destination[1], part_size=part_size))

    conflicts: list[str] = []
    conflict_count = 0
    planned = 0
    for entry, exists in target.plan(_selected(backup, manifest, prefix, keys)):
        planned += 1
        if exists:
            conflict_count += 1
            if len(conflicts) < 5:
                conflicts.append(entry.key)
    if conflict_count and not overwrite:
        raise RestoreRefused(
            f"{conflict_count} of the {planned} objects to restore already exist at {target.describe()} "
            f"(e.g. {', '.join(repr(k) for k in conflicts)}); nothing was written. Restore somewhere else, or pass "
            "--overwrite to replace them"
        )

    objects = total = 0
    with scratch_directory("r2-restore", scratch_parent) as scratch, ThreadPoolExecutor(concurrency) as pool:

        def restore_one(entry: Entry) -> int:
            temporary = target.temporary_for(entry, scratch)
            try:
                _download_verified(backup, manifest, entry, temporary, keys)
                target.put(entry, temporary)
            finally:
                temporary.unlink(missing_ok=True)
            return entry.size

        pending: deque[Future[int]] = deque()
        try:
            for entry in _selected(backup, manifest, prefix, keys):
                pending.append(pool.submit(restore_one, entry))
                while len(pending) > concurrency * 4:  # a bounded window: flat memory for any number of keys
                    total += pending.popleft().result()
                    objects += 1
            while pending:
                total += pending.popleft().result()
                objects += 1
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    result = R2RestoreResult(manifest.day, manifest.name, target.describe(), objects, total, conflict_count)
    logger.info("%s", result.summary())
    return result


def _selected(backup: Bucket, manifest: SnapshotManifest, prefix: str, keys: AgeKeys | None) -> Iterator[Entry]:
    for entry in open_entries(backup, manifest, keys):
        if entry.key.startswith(prefix):
            yield entry


def _download_verified(
    backup: Bucket, manifest: SnapshotManifest, entry: Entry, path: Path, keys: AgeKeys | None
) -> None:
    key = manifest.object_key(entry.sha256)
    try:
        with open(path, "wb") as out:
            size, sha256 = read_object(backup, manifest, entry, out, keys)
    except StorageObjectNotFound:
        raise StorageIntegrityError(
            f"{backup.uri(key)}, the bytes of {entry.key!r}, is missing from the backup bucket: this snapshot cannot "
            "be restored whole (an earlier snapshot may still hold the object)"
        ) from None
    if size != entry.size or sha256 != entry.sha256:
        raise StorageIntegrityError(
            f"{backup.uri(key)} ({size} bytes, sha256 {sha256[:12]}...) does not match {entry.key!r} "
            f"({entry.size} bytes, sha256 {entry.sha256[:12]}...): the stored object is damaged; nothing was "
            "written for this key"
        )


class _Target:
    def plan(self, entries: Iterator[Entry]) -> Iterator[tuple[Entry, bool]]:
        raise NotImplementedError

    def temporary_for(self, entry: Entry, scratch: Path) -> Path:
        raise NotImplementedError

    def put(self, entry: Entry, path: Path) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class _DirectoryTarget(_Target):
    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return f"directory {self.root}"

    def path_of(self, key: str) -> Path:
        parts = key.split("/")
        if key.endswith("/"):
            parts = parts[:-1]  # a "folder" marker object becomes the directory itself
        if not key or key.startswith("/") or any(p in ("", ".", "..") or "\0" in p for p in parts):
            raise RestoreRefused(
                f"the key {key!r} is not a safe relative path, so it cannot be restored into {self.root} (it would "
                "land outside it or collide); nothing was written. Restore to s3://... instead, or leave it out "
                "with --prefix"
            )
        return self.root.joinpath(*parts)

    def plan(self, entries: Iterator[Entry]) -> Iterator[tuple[Entry, bool]]:
        # S3 keys may make "a" a file and "a/b" one inside it; a directory cannot, so that is refused here,
        # before anything is written.  In key order, every key between "a" and "a/b" starts with "a", so a
        # stack of the keys that prefix the current one (as long as the longest key, at most) finds each case.
        prefixes: list[str] = []
        for entry in entries:
            path = self.path_of(entry.key)
            while prefixes and not entry.key.startswith(prefixes[-1]):
                prefixes.pop()
            clash = next((p for p in prefixes if not p.endswith("/") and entry.key.startswith(p + "/")), None)
            if clash is not None:
                raise RestoreRefused(
                    f"the snapshot holds both {clash!r} and {entry.key!r}, so {clash!r} is both a file and a folder, "
                    f"which {self.describe()} cannot hold; nothing was written. Restore to s3://... instead, or leave "
                    "one of them out with --prefix"
                )
            prefixes.append(entry.key)
            yield entry, (not entry.key.endswith("/")) and os.path.lexists(path)

    def temporary_for(self, entry: Entry, scratch: Path) -> Path:
        path = self.path_of(entry.key)
        directory = path if entry.key.endswith("/") else path.parent
        directory.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".patina-tmp.restore.", dir=directory)
        os.close(handle)
        return Path(name)

    def put(self, entry: Entry, path: Path) -> None:
        if entry.key.endswith("/"):
            return  # the directory exists now
        final = self.path_of(entry.key)
        with open(path, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(path, final)
        moment = parse_utc_timestamp(entry.last_modified.replace("Z", "+00:00")).timestamp()
        os.utime(final, (moment, moment))


class _BucketTarget(_Target):
    def __init__(self, bucket: S3Bucket) -> None:
        self.bucket = bucket

    def describe(self) -> str:
        return self.bucket.describe()

    def plan(self, entries: Iterator[Entry]) -> Iterator[tuple[Entry, bool]]:
        # Both in key order: one listing of the destination answers "exists?" for every key.
        existing = (info.key for info in self.bucket.list(""))
        current = next(existing, None)
        for entry in entries:
            while current is not None and current < entry.key:
                current = next(existing, None)
            yield entry, current == entry.key

    def temporary_for(self, entry: Entry, scratch: Path) -> Path:
        handle, name = tempfile.mkstemp(prefix="object-", dir=scratch)
        os.close(handle)
        return Path(name)

    def put(self, entry: Entry, path: Path) -> None:
        stored = self.bucket.put_file(entry.key, path, entry.content_type, metadata=entry.metadata, foreign_key=True)
        if stored.size != entry.size:
            raise StorageIntegrityError(
                f"{self.bucket.uri(entry.key)} holds {stored.size} bytes after the upload, not {entry.size}"
            )
