"""The object-store contract every bucket keeps: put / get / list / delete of whole objects, all-or-nothing.

``Bucket`` is the protocol; ``LocalBucket`` (storage.local) and ``S3Bucket`` (storage.s3, R2 in production)
implement it, and one contract test runs against both.  Errors are ``StorageError`` subclasses whose messages
name the bucket and key and suggest a fix; they never contain credentials.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from ..engine.errors import PatinaError

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB  # S3 and R2: every part but the last must be at least 5 MiB
MAX_PARTS = 10_000  # S3 and R2 limit on parts per multipart upload
_COPY_BUFFER = 1 * MiB

# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class StorageError(PatinaError):
    """A storage operation failed.  The message names the bucket/key and the likely fix.

    ``retryable`` tells an orchestrator whether trying again later can help (a network blip can;
    a wrong password or a missing bucket cannot).
    """

    retryable = False


class InvalidKey(StorageError, ValueError):
    """A key (or a name used to build one) is malformed: empty, absolute, or with ``..`` segments."""


class StorageAccessDenied(StorageError):
    """The credentials were refused or lack permission."""


class StorageBucketNotFound(StorageError):
    """The bucket (or local backup directory) does not exist."""


class StorageObjectNotFound(StorageError):
    """The object does not exist."""


class StorageUnavailable(StorageError):
    """The endpoint could not be reached, or answered with a server-side error."""

    retryable = True


class PublishUnconfirmed(StorageUnavailable):
    """A publish could not be confirmed: the manifest's write failed or its answer was lost, and reading it
    back failed too (or it names another object).  Every object is kept, so nothing a manifest may name is
    lost; the run fails as retryable and the next run (or reconciliation) settles which one counts."""


class ObjectChanged(StorageError):
    """A conditional write (`Bucket.put_bytes_if_unchanged`) found the object no longer as its writer read
    it: another writer replaced or created it in between, so this write was not made."""


class StorageIntegrityError(StorageError):
    """What was stored is not what was sent (wrong size, changed source file)."""


class CorruptManifest(StorageError):
    """A manifest exists but cannot be read: not JSON, missing fields, or inconsistent with its key."""


# --------------------------------------------------------------------------------------------------
# The Bucket protocol
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or a stat says about one stored object."""

    key: str
    size: int
    last_modified: datetime
    etag: str | None = None


@dataclass(frozen=True)
class ObjectDetails(ObjectInfo):
    """What a GET says about an object besides its bytes (S3 only): for copying objects with what they carry."""

    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Bucket(Protocol):
    """Whole-object storage.  Keys are ``/``-separated relative paths such as ``daily/2026-01-05/x.sql``.

    Every write is all-or-nothing: after ``put_file``/``put_bytes`` returns, the object is complete;
    if it raises, the previous object under that key (if any) is unchanged.
    """

    def put_file(self, key: str, path: Path | str, content_type: str | None = None) -> ObjectInfo: ...

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo: ...

    def put_bytes_if_unchanged(
        self, key: str, data: bytes, etag: str | None, content_type: str | None = None
    ) -> ObjectInfo:
        """``put_bytes``, only if the object still has ``etag`` (None: only if there is no object), in one
        step no other conditional write can come between; else ``ObjectChanged`` and nothing written."""
        ...

    def open(self, key: str) -> BinaryIO: ...

    def get_bytes(self, key: str) -> bytes: ...

    def stat(self, key: str) -> ObjectInfo | None: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def list_folders(self, prefix: str) -> Iterator[str]: ...

    def delete(self, key: str) -> None: ...

    def delete_many(self, keys: Iterable[str]) -> None: ...

    def uri(self, key: str) -> str: ...

    def describe(self) -> str: ...


_TMP_MARKER = ".patina-tmp."  # temporaries of LocalBucket; never a valid key segment


@dataclass(frozen=True)
class IncompleteWrite:
    """What an interrupted write left in a bucket: a local temporary (``.patina-tmp.<pid>.*``, ``where`` is
    its path under the root) or an incomplete S3 multipart upload (``where`` is its key)."""

    where: str
    size: int | None
    started_at: datetime
    writer_pid: int | None = None
    upload_id: str | None = None


_MAX_KEY_BYTES = 1024  # S3's limit
_BAD_KEY_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise ``InvalidKey``.

    The same rules apply to both buckets so that a layout that works locally works on R2 and
    a key can never escape the local root (no absolute paths, no ``.``/``..`` or empty segments).
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"invalid object key {key!r}: it must be a non-empty string")
    if key.endswith("/"):
        raise InvalidKey(f"invalid object key {key!r}: it must not end with '/'")
    _check_key_text(key, what="object key")
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a safe listing prefix ('' lists everything; a trailing '/' is allowed)."""
    if not isinstance(prefix, str):
        raise InvalidKey(f"invalid prefix {prefix!r}: it must be a string")
    if prefix:
        _check_key_text(prefix[:-1] if prefix.endswith("/") else prefix, what="prefix")
    return prefix


def _check_key_text(text: str, *, what: str) -> None:
    if len(text.encode("utf-8")) > _MAX_KEY_BYTES:
        raise InvalidKey(f"invalid {what} {text[:60]!r}...: longer than {_MAX_KEY_BYTES} bytes")
    if _BAD_KEY_CHARS.search(text):
        raise InvalidKey(f"invalid {what} {text!r}: control characters and backslashes are not allowed")
    if text.startswith("/"):
        raise InvalidKey(f"invalid {what} {text!r}: it must be relative (no leading '/')")
    for segment in text.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKey(f"invalid {what} {text!r}: empty, '.' and '..' path segments are not allowed")
        if segment.startswith(_TMP_MARKER):
            raise InvalidKey(f"invalid {what} {text!r}: segments starting with {_TMP_MARKER!r} are reserved")


def copy_hashing(source: BinaryIO, target: BinaryIO | None = None) -> tuple[int, str]:
    """Read ``source`` to its end, writing each chunk to ``target`` when given; return the number of bytes read
    and their sha256 (hex): the one loop behind every read-back, download and digest of stored bytes."""
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(_COPY_BUFFER):
        digest.update(chunk)
        size += len(chunk)
        if target is not None:
            target.write(chunk)
    return size, digest.hexdigest()


def _open_source(path: Path | str) -> BinaryIO:
    """Open a local file to upload; its failure is the caller's file, not the bucket."""
    try:
        return open(path, "rb")
    except OSError as exc:
        raise StorageError(f"cannot read the file to upload {str(path)!r}: {exc.strerror or exc}") from exc


def _source_size(path: Path | str) -> int:
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise StorageError(f"cannot read the file to upload {str(path)!r}: {exc.strerror or exc}") from exc
