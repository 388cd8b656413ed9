"""One night's incremental backup of one R2 bucket (plain Python, no Dagster).

``backup_bucket`` lists the source bucket page by page (in key order) beside the previous snapshot's entries
(also in key order), so the two are merged like sorted files: a key whose size and ETag are unchanged keeps its
recorded sha256 and is not read at all; a new or changed key is streamed from the source into a scratch file
(at most ``SPOOL_BYTES`` of it in memory) while its sha256 is computed, then stored as ``r2/objects/<sha256>``
unless an object with that sha256 is already there.  Deleted keys are simply absent from the new entries.
Memory stays flat whatever the bucket's size: the listing, the previous entries and the new entries are all
streams, and at most ``concurrency * 4`` copies are in flight.

With ``keys`` that encrypt (``encryption:`` in patina.yaml), objects and the entries file are stored as age files
(see ``layout``).  A snapshot stored differently from the previous one (encryption turned on or off, or other
recipients) does not reuse the previous entries: every object is read once more from the source and stored in
the new form, so every object a snapshot names opens with the identity of its own recipients.

The entries file and then the manifest are published with :func:`patina_assets.storage.publish`, the one
publish step dumps and archives share: the snapshot exists only once the manifest read back from the bucket
names this run's entries.  A failure before that (a listing that breaks off, a copy that fails) publishes
nothing; objects already copied stay in the store, where the next run reuses them or garbage collection
removes them.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import io
import json
import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ..config import R2BucketConfig
from ..encryption import AgeKeys, encrypt_stream
from ..leftovers import scratch_directory
from ..storage import (
    AGE_CONTENT_TYPE,
    Bucket,
    CorruptManifest,
    ObjectInfo,
    Publication,
    S3Bucket,
    StorageError,
    StorageObjectNotFound,
    copy_hashing,
    format_day,
    make_s3_client,
    new_generation,
    patina_version,
    publish,
    utc_timestamp,
    validate_database_name,
)
from .layout import (
    ENTRIES_CONTENT_TYPE,
    OBJECT_CONTENT_TYPE,
    EntriesWriter,
    Entry,
    SnapshotManifest,
    entries_key,
    in_progress_key,
    list_snapshots,
    object_key,
    open_entries,
    parse_snapshot_key,
    read_manifest,
    recipients_id,
    sealing_of,
    snapshot_manifest_key,
)

logger = logging.getLogger(__name__)

SPOOL_BYTES = 1024 * 1024  # an object up to this size is copied through memory, a larger one through a file
DEFAULT_CONCURRENCY = 8
_CHUNK = 1024 * 1024


class SourceListingOutOfOrder(StorageError):
    """The source listing is not in key order, so it cannot be compared with the previous snapshot."""


def open_source(config: R2BucketConfig, env: Mapping[str, str] = os.environ) -> S3Bucket:
    """The source bucket of an ``r2_buckets:`` entry, with its credentials read from the named variables.
    Its keys are the source's own keys (no prefix is stripped), so a snapshot records them as they are."""
    key_id, secret = config.credentials(env)
    client = make_s3_client(config.endpoint_url, config.region, key_id, secret)
    return S3Bucket(client, config.bucket)


def is_excluded(key: str, patterns: Iterable[str]) -> bool:
    """True when ``key`` matches one of the glob ``patterns`` (``*`` also matches ``/``)."""
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def listed_objects(source: S3Bucket, prefix: str = "", exclude: Iterable[str] = ()) -> Iterator[ObjectInfo]:
    """The source's objects under ``prefix`` not excluded, in key order (checked: the merge depends on it)."""
    patterns = tuple(exclude)
    last: str | None = None
    for info in source.list(prefix):
        if last is not None and info.key <= last:
            raise SourceListingOutOfOrder(
                f"the listing of {source.describe()} returned {info.key!r} after {last!r}: it is not in key order, "
                "as S3 and R2 list. Patina cannot compare it with the previous snapshot"
            )
        last = info.key
        if not is_excluded(info.key, patterns):
            yield info


@dataclass(frozen=True)
class _Copied:
    entry: Entry
    uploaded: bool  # False: an object with its sha256 was already stored


def backup_bucket(
    source: S3Bucket,
    backup: Bucket,
    *,
    name: str,
    day: date | str,
    prefix: str = "",
    exclude: Iterable[str] = (),
    concurrency: int = DEFAULT_CONCURRENCY,
    now: datetime | None = None,
    scratch_parent: Path | str | None = None,
    keys: AgeKeys | None = None,
) -> SnapshotManifest:
    """Snapshot ``source`` (objects under ``prefix`` not matching ``exclude``) as ``name`` on ``day`` in
    ``backup``; return the manifest as published.  See the module docstring for how and why."""
    name, day_text = validate_database_name(name), format_day(day)
    patterns = list(exclude)
    sealing = keys if keys is not None and keys.enabled else None
    sealed_to = recipients_id(sealing.fingerprints) if sealing is not None else None
    previous = _newest_snapshot(backup, name)
    if previous is not None and previous.sealing != sealing_of(sealing.fingerprints if sealing else None):
        logger.info(
            "r2/%s: the previous snapshot (%s) is stored %s, this one %s: every object is read and stored again",
            name,
            previous.day,
            _describe_sealing(previous.encrypted, previous.recipients, previous.legacy_objects),
            _describe_sealing(sealing is not None, sealing.fingerprints if sealing else ()),
        )
        previous = None
    started = time.monotonic()
    listing_started_at = utc_timestamp()
    counts = {"copied": 0, "copied_bytes": 0, "reused": 0, "excluded": 0, "vanished": 0}
    generation = new_generation(now)
    key = entries_key(day_text, name, generation, encrypted=sealing is not None)
    with marked_in_progress(backup, name, day_text, generation, listing_started_at):
        with scratch_directory("r2-backup", scratch_parent) as scratch:
            entries_path = scratch / "entries.jsonl.gz"
            with EntriesWriter(entries_path) as writer, ThreadPoolExecutor(concurrency, "patina-r2-copy") as pool:
                pending: deque[Entry | Future[_Copied | None]] = deque()
                uploads = UploadsInFlight()
                window = max(1, concurrency) * 4

                def settle_one() -> None:
                    item = pending.popleft()
                    if isinstance(item, Entry):
                        writer.write(item)
                        return
                    copied = item.result()
                    if copied is None:  # deleted between the listing and the read
                        counts["vanished"] += 1
                        return
                    writer.write(copied.entry)
                    if copied.uploaded:
                        counts["copied"] += 1
                        counts["copied_bytes"] += copied.entry.size
                    else:
                        counts["reused"] += 1

                try:
                    for info, before in _merge(
                        _counting_exclusions(source, prefix, patterns, counts), previous, backup, keys
                    ):
                        if before is not None and _unchanged(info, before):
                            pending.append(dataclasses.replace(before, last_modified=utc_timestamp(info.last_modified)))
                        else:
                            pending.append(
                                pool.submit(
                                    _copy_object, source, backup, info.key, scratch, uploads, sealing, sealed_to
                                )
                            )
                        while len(pending) > window:
                            settle_one()
                    while pending:
                        settle_one()
                except BaseException:
                    for item in pending:
                        if isinstance(item, Future):
                            item.cancel()
                    raise
            listing_finished_at = utc_timestamp()
            if sealing is not None:
                sealed_path = scratch / "entries.jsonl.gz.age"
                sealed = sealing.seal(entries_path, sealed_path)
                entries_path, size, entries_sha256 = sealed_path, sealed.stored_bytes, sealed.stored_sha256
            else:
                with open(entries_path, "rb") as entries:
                    size, entries_sha256 = copy_hashing(entries)
            manifest = SnapshotManifest(
                name=name,
                day=day_text,
                source=source.describe() if not prefix else f"{source.describe()} under {prefix!r}",
                entries_key=key,
                entries_sha256=entries_sha256,
                entries_bytes=size,
                objects=writer.objects,
                bytes=writer.bytes,
                copied_objects=counts["copied"],
                copied_bytes=counts["copied_bytes"],
                reused_objects=counts["reused"],
                excluded_objects=counts["excluded"],
                listing_started_at=listing_started_at,
                listing_finished_at=listing_finished_at,
                created_at=utc_timestamp(now),
                patina_version=patina_version(),
                exclude=patterns,
                encrypted=sealing is not None,
                recipients=list(sealing.fingerprints) if sealing is not None else [],
            )
            manifest_key = snapshot_manifest_key(day_text, name)
            publish(
                backup,
                Publication(key, entries_path, size, ENTRIES_CONTENT_TYPE, manifest_key, manifest.to_json()),
                named_key=lambda: named_entries_key(backup, manifest_key),
                superseded=lambda: superseded_entries(backup, day_text, name, key),
            )
    logger.info(
        "r2/%s %s: %d objects (%d bytes); copied %d (%d bytes), %d already stored, %d vanished, in %.1fs",
        name,
        day_text,
        manifest.objects,
        manifest.bytes,
        manifest.copied_objects,
        manifest.copied_bytes,
        manifest.reused_objects,
        counts["vanished"],
        time.monotonic() - started,
    )
    return manifest


@contextmanager
def marked_in_progress(backup: Bucket, name: str, day: str, generation: str, started_at: str) -> Iterator[None]:
    """While the body runs, ``r2/in-progress/<name>.<generation>.json`` says so, and garbage collection deletes
    no object: the objects a run stores are named by its manifest only at its end."""
    marker = in_progress_key(name, generation)
    backup.put_bytes(marker, json.dumps({"name": name, "day": day, "started_at": started_at}).encode())
    try:
        yield
    finally:
        try:
            backup.delete(marker)
        except StorageError as exc:  # it only holds garbage collection back until it is a day old
            logger.warning("could not remove %s: %s", backup.uri(marker), exc)


def _counting_exclusions(
    source: S3Bucket, prefix: str, patterns: list[str], counts: dict[str, int]
) -> Iterator[ObjectInfo]:
    for info in listed_objects(source, prefix):
        if is_excluded(info.key, patterns):
            counts["excluded"] += 1
        else:
            yield info


def _unchanged(info: ObjectInfo, before: Entry) -> bool:
    """Same size and ETag as the previous snapshot recorded: the bytes are the ones already stored.  (An
    ETag is the MD5 of a single-PUT object and a digest of the part digests of a multipart one; either way
    it changes when the bytes do.)"""
    return info.etag is not None and info.size == before.size and info.etag == before.etag


def _newest_snapshot(backup: Bucket, name: str) -> SnapshotManifest | None:
    """The newest snapshot of ``name``: the one retention always keeps, so every object it names is stored."""
    snapshots, corrupt = list_snapshots(backup, name)
    for key, why in corrupt.items():
        logger.warning("the R2 snapshot manifest %s cannot be read (%s); it is not compared against", key, why)
    return snapshots[-1] if snapshots else None


def _merge(
    listing: Iterator[ObjectInfo], previous: SnapshotManifest | None, backup: Bucket, keys: AgeKeys | None
) -> Iterator[tuple[ObjectInfo, Entry | None]]:
    """Each listed object with the previous snapshot's entry of the same key (None if it had none)."""
    before = _previous_entries(previous, backup, keys)
    current = next(before, None)
    for info in listing:
        while current is not None and current.key < info.key:
            current = next(before, None)
        if current is not None and current.key == info.key:
            yield info, current
        else:
            yield info, None


def _previous_entries(previous: SnapshotManifest | None, backup: Bucket, keys: AgeKeys | None) -> Iterator[Entry]:
    """The previous snapshot's entries; when they turn out damaged, the rest of the keys are copied as new
    (their bytes are stored again only if no object with their sha256 exists)."""
    if previous is None:
        return
    try:
        yield from open_entries(backup, previous, keys)
    except (CorruptManifest, StorageObjectNotFound) as exc:
        logger.warning(
            "the previous R2 snapshot %s cannot be read to the end (%s); copying the rest", previous.key, exc
        )


def _copy_object(
    source: S3Bucket,
    backup: Bucket,
    key: str,
    scratch: Path,
    uploads: UploadsInFlight,
    sealing: AgeKeys | None,
    sealed_to: str | None,
) -> _Copied | None:
    """Stream one source object into the content-addressed store; None when it vanished since the listing."""
    try:
        body, details = source.open_with_details(key)
    except StorageObjectNotFound:
        return None
    digest = hashlib.sha256()
    size = 0
    held = bytearray()  # the first SPOOL_BYTES; a larger object continues into a scratch file
    spool: Any = None
    spool_path = None
    try:
        try:  # read errors mid-stream arrive as StorageErrors (the bucket translates them)
            while chunk := body.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                if spool is None and size <= SPOOL_BYTES:
                    held += chunk
                    continue
                if spool is None:
                    handle, spool_path = tempfile.mkstemp(prefix="object-", dir=scratch)
                    spool = os.fdopen(handle, "wb")
                    spool.write(held)
                    held = bytearray()
                spool.write(chunk)
        finally:
            body.close()
            if spool is not None:
                spool.close()
        if size != details.size:
            raise StorageError(f"read {size} of {details.size} bytes of {source.uri(key)}: the stream ended early")
        sha256 = digest.hexdigest()
        data = bytes(held) if spool_path is None else Path(spool_path)
        uploaded = _store(backup, sha256, size, data, uploads, sealing, sealed_to, scratch)
    finally:
        if spool_path is not None:
            Path(spool_path).unlink(missing_ok=True)
    entry = Entry(
        key=key,
        size=size,
        etag=details.etag,
        sha256=sha256,
        last_modified=utc_timestamp(details.last_modified),
        content_type=details.content_type,
        metadata=details.metadata,
    )
    return _Copied(entry, uploaded)


class UploadsInFlight:
    """The sha256s one backup is uploading right now: the same bytes under two keys are uploaded once.  Only
    uploads in flight are held, so this stays as small as the thread pool; one per backup, so a run only ever
    relies on its own uploads (or on objects already stored)."""

    def __init__(self) -> None:
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, sha256: str) -> bool:
        with self._lock:
            if sha256 in self._in_flight:
                return False
            self._in_flight.add(sha256)
            return True

    def release(self, sha256: str) -> None:
        with self._lock:
            self._in_flight.discard(sha256)


def _store(
    backup: Bucket,
    sha256: str,
    size: int,
    data: bytes | Path,
    uploads: UploadsInFlight,
    sealing: AgeKeys | None,
    sealed_to: str | None,
    scratch: Path,
) -> bool:
    """Store the bytes as ``r2/objects/<sha256>`` (``.<sealed_to>.age``: encrypted to ``sealing``'s recipients)
    unless they are there already; True if uploaded."""
    target = object_key(sha256, sealed_to)
    if not uploads.claim(sha256):
        return False  # another copy of this backup is storing these bytes; the manifest waits for every copy
    try:
        stored = backup.stat(target)
        if stored is not None and (sealing is not None or stored.size == size):
            return False  # (an age file is larger than its plaintext; its sha256 name vouches for the content)
        if sealing is not None:
            seal_and_put(backup, target, data, sealing, scratch)
        elif isinstance(data, Path):  # multipart when large
            backup.put_file(target, data, content_type=OBJECT_CONTENT_TYPE)
        else:
            backup.put_bytes(target, data, content_type=OBJECT_CONTENT_TYPE)
        return True
    finally:
        uploads.release(sha256)


def seal_and_put(backup: Bucket, target: str, data: bytes | Path, sealing: AgeKeys, scratch: Path) -> None:
    """Encrypt the object's bytes into ``scratch`` and store that age file as ``target``.  The scratch file is
    named by the target's sha256 name: `UploadsInFlight.claim` lets only one copy of those bytes be in flight per run."""
    sealed_path = scratch / target.rsplit("/", 1)[-1]
    try:
        with (
            open(data, "rb") if isinstance(data, Path) else io.BytesIO(data) as plain,
            open(sealed_path, "xb") as sealed,
        ):
            encrypt_stream(plain, sealed, sealing.recipients)
        backup.put_file(target, sealed_path, content_type=AGE_CONTENT_TYPE)
    finally:
        sealed_path.unlink(missing_ok=True)


def _describe_sealing(encrypted: bool, fingerprints, legacy: bool = False) -> str:
    if not encrypted:
        return "unencrypted"
    if legacy:
        return "encrypted under keys that do not name their recipients (schema version 2)"
    return f"encrypted to {', '.join(fingerprints)}"


def named_entries_key(backup: Bucket, manifest_key: str) -> str | None:
    try:
        return read_manifest(backup, manifest_key).entries_key
    except StorageObjectNotFound:
        return None


def superseded_entries(backup: Bucket, day: str, name: str, keep: str) -> list[str]:
    """Entries files of the same day and name other than ``keep`` (an earlier run's, or a failed run's)."""
    stale = []
    for info in backup.list(f"r2/{day}/{name}."):
        parsed = parse_snapshot_key(info.key)
        if parsed and parsed.generation and (parsed.day, parsed.name) == (day, name) and info.key != keep:
            stale.append(info.key)
    return stale
