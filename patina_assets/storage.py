"""Where Patina's backups live: a small object-store layer and the backup layout on top of it.

Two layers, both plain Python (no Dagster here, so the restore tooling and the tests can use them alone):

``Bucket`` -- put / get / list / delete of whole objects, with two implementations:

* ``S3Bucket`` talks to any S3 API (Cloudflare R2 in production, moto in tests) through a boto3 client.
  Uploads are all-or-nothing: a small file is one PUT (atomic on S3 and R2); a large one is a multipart
  upload with equal-sized parts (R2 refuses anything else) that is aborted on any failure, so an object
  only ever appears whole.
* ``LocalBucket`` keeps objects as files under a directory, with the same all-or-nothing guarantee:
  each write goes to a temporary file in the target directory, is fsynced, then renamed over the target.

``BackupStore`` -- the backup layout (``daily/YYYY-MM-DD/...``) and its manifests.  A dump only counts as a
backup once its manifest exists, and the manifest is written last, after the dump has been uploaded and
checked.  Readers therefore never see a backup whose bytes are missing or half-written; a crash at any
point leaves either the previous backup or the new one, plus at worst an orphan dump object that
``find_orphans`` reports.

Errors are ``StorageError`` subclasses whose messages name the bucket and key and suggest a fix; they
never contain credentials.
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import hashlib
import importlib.metadata
import io
import itertools
import json
import logging
import math
import os
import re
import secrets
import shutil
import stat as stat_module
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from .engine.errors import PatinaError

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


@runtime_checkable
class Bucket(Protocol):
    """Whole-object storage.  Keys are ``/``-separated relative paths such as ``daily/2026-01-05/x.sql``.

    Every write is all-or-nothing: after ``put_file``/``put_bytes`` returns, the object is complete;
    if it raises, the previous object under that key (if any) is unchanged.
    """

    def put_file(self, key: str, path: Path | str, content_type: str | None = None) -> ObjectInfo: ...

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo: ...

    def open(self, key: str) -> BinaryIO: ...

    def get_bytes(self, key: str) -> bytes: ...

    def stat(self, key: str) -> ObjectInfo | None: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

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


# --------------------------------------------------------------------------------------------------
# LocalBucket
# --------------------------------------------------------------------------------------------------


class LocalBucket:
    """Objects as files under ``root`` (a local or mounted backup directory).

    Writes are atomic: data goes to ``<dir>/.patina-tmp.<random>`` in the target's own directory (so the
    rename cannot cross file systems), is fsynced, then ``os.replace``d over the target, and the directory
    is fsynced so the rename survives a power cut.  A crash leaves either the old file or the new one,
    plus at worst a temporary that listings ignore.  Files are created mode 0600: backups hold user data.
    """

    def __init__(self, root: Path | str, *, create: bool = True) -> None:
        self.root = Path(root).expanduser().absolute()
        if create:
            with self._errors("create", None):
                self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise StorageBucketNotFound(
                f"backup directory {self.root} does not exist: create it or fix the configured path"
            )

    # -- writes --------------------------------------------------------------------------------

    def put_file(self, key: str, path: Path | str, content_type: str | None = None) -> ObjectInfo:
        """Copy the file at ``path`` to ``key`` atomically.  ``content_type`` has no meaning on disk."""
        with _open_source(path) as source:
            return self._write_atomically(key, lambda out: shutil.copyfileobj(source, out, _COPY_BUFFER))

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        """Write ``data`` to ``key`` atomically."""
        payload = bytes(data)
        return self._write_atomically(key, lambda out: out.write(payload))

    def _write_atomically(self, key: str, write: Callable[[IO[bytes]], object]) -> ObjectInfo:
        target = self._path(key)
        with self._errors("write", key):
            tmp = self._create_temporary(target.parent)
            try:
                with open(tmp, "wb") as out:
                    write(out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
            except BaseException:
                _remove_quietly(tmp)
                raise
            _fsync_directory(target.parent)
            return self._info(key, target.stat())

    def _create_temporary(self, directory: Path) -> Path:
        # A concurrent delete may prune the (empty) directory between mkdir and mkstemp: retry once.
        for attempt in (1, 2):
            directory.mkdir(parents=True, exist_ok=True)
            try:
                # The writer's pid in the name: cleanup knows a temporary whose writer is gone (leftovers.py).
                fd, name = tempfile.mkstemp(prefix=f"{_TMP_MARKER}{os.getpid()}.", dir=directory)
            except FileNotFoundError:
                if attempt == 2:
                    raise
                continue
            os.close(fd)
            return Path(name)
        raise AssertionError("unreachable")

    # -- reads ---------------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        """Open ``key`` for streaming reads."""
        path = self._path(key)
        with self._errors("read", key):
            return open(path, "rb")

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as reader:
            return reader.read()

    def stat(self, key: str) -> ObjectInfo | None:
        """The object's size, mtime and a change tag, or None if there is no such object."""
        path = self._path(key)
        with self._errors("stat", key):
            try:
                st = path.stat()
            except FileNotFoundError:
                return None
        return self._info(key, st) if stat_module.S_ISREG(st.st_mode) else None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix`` (a plain string prefix, as on S3), sorted by key."""
        validate_prefix(prefix)
        return self._iter_objects(prefix)

    def _iter_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        directory = prefix.rpartition("/")[0]
        start = self.root.joinpath(*directory.split("/")) if directory else self.root
        if not start.is_dir():
            return
        for key in sorted(self._walk_keys(start)):
            if not key.startswith(prefix):
                continue
            info = self.stat(key)
            if info is not None:  # deleted since the walk
                yield info

    def _walk_keys(self, start: Path) -> Iterator[str]:
        def fail(exc: OSError) -> None:
            if not isinstance(exc, FileNotFoundError):
                raise exc

        with self._errors("list", None):
            for dirpath, _dirnames, filenames in os.walk(start, onerror=fail):
                relative = Path(dirpath).relative_to(self.root).as_posix()
                for name in filenames:
                    key = name if relative == "." else f"{relative}/{name}"
                    if not name.startswith(_TMP_MARKER) and _is_valid_key(key):
                        yield key

    # -- leftovers of interrupted writes (see leftovers.py) -----------------------------------

    def incomplete_writes(self) -> list[IncompleteWrite]:
        """Temporaries (``.patina-tmp.*``) that writes left behind or are writing now, oldest first."""
        found = []
        with self._errors("list", None):
            for dirpath, _dirnames, filenames in os.walk(self.root):
                for name in filenames:
                    if name.startswith(_TMP_MARKER):
                        path = Path(dirpath) / name
                        try:
                            st = path.stat()
                        except FileNotFoundError:  # the write just finished
                            continue
                        pid = name[len(_TMP_MARKER) :].split(".", 1)[0]
                        found.append(
                            IncompleteWrite(
                                where=path.relative_to(self.root).as_posix(),
                                size=st.st_size,
                                started_at=datetime.fromtimestamp(st.st_mtime, UTC),
                                writer_pid=int(pid) if pid.isdigit() else None,
                            )
                        )
        return sorted(found, key=lambda w: w.started_at)

    def discard_incomplete_write(self, write: IncompleteWrite) -> None:
        """Remove one temporary found by :meth:`incomplete_writes`."""
        path = self.root.joinpath(*write.where.split("/"))
        if not path.name.startswith(_TMP_MARKER):
            raise InvalidKey(f"{write.where!r} is not a temporary of an interrupted write")
        with self._errors("delete", None):
            path.unlink(missing_ok=True)

    # -- deletes -------------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing object is not an error (as on S3).  Empty directories are pruned."""
        path = self._path(key)
        with self._errors("delete", key):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        self._prune_empty_directories(path.parent)

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.delete(key)

    def _prune_empty_directories(self, directory: Path) -> None:
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()  # fails (harmlessly) unless empty
            except OSError:
                return
            directory = directory.parent

    # -- naming --------------------------------------------------------------------------------

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def describe(self) -> str:
        return f"local directory {self.root}"

    def __repr__(self) -> str:
        return f"LocalBucket({str(self.root)!r})"

    # -- helpers -------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    @staticmethod
    def _info(key: str, st: os.stat_result) -> ObjectInfo:
        modified = datetime.fromtimestamp(st.st_mtime, tz=UTC)
        etag = f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"  # changes whenever the file is replaced
        return ObjectInfo(key=key, size=st.st_size, last_modified=modified, etag=etag)

    @contextmanager
    def _errors(self, action: str, key: str | None) -> Iterator[None]:
        """Turn OSErrors into StorageErrors that say which file and what to do about it."""
        try:
            yield
        except StorageError:
            raise
        except OSError as exc:
            raise self._translate(action, key, exc) from exc

    def _translate(self, action: str, key: str | None, exc: OSError) -> StorageError:
        where = str(self.root / key) if key else str(self.root)
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileNotFoundError):
            return StorageObjectNotFound(f"cannot {action} {where}: no such object in {self.describe()}")
        if isinstance(exc, PermissionError):
            return StorageAccessDenied(
                f"cannot {action} {where}: {reason}. Check that the user running Patina "
                f"(uid {os.getuid()}) may read and write {self.root}"
            )
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageError(f"cannot {action} {where}: {reason}. Free disk space or move the backup directory")
        if exc.errno == errno.EROFS:
            return StorageAccessDenied(f"cannot {action} {where}: {reason}. The backup directory is read-only")
        return StorageError(f"cannot {action} {where}: {reason}")


def _is_valid_key(key: str) -> bool:
    """Stray files whose names could not be keys (say, with a backslash) are not objects."""
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return True


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_directory(directory: Path) -> None:
    """Persist a rename: on POSIX the new directory entry is durable only once the directory is fsynced."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------------
# S3 / R2
# --------------------------------------------------------------------------------------------------


def make_s3_client(
    endpoint_url: str | None,
    region: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    *,
    max_retries: int = 5,
    connect_timeout: float = 10,
    read_timeout: float = 60,
) -> Any:
    """A boto3 S3 client configured for R2 (endpoint ``https://<account>.r2.cloudflarestorage.com``,
    region ``auto``).

    Checksums are only computed when an operation requires them: recent boto3 adds CRC32 checksums to
    every upload by default, which R2 has had trouble with.  Retries use botocore's ``standard`` mode
    (exponential backoff on throttling, 5xx and connection errors); ``max_retries`` is botocore's
    ``retries.max_attempts``, which counts retries *after* the first attempt (5 -> up to 6 requests).
    dagster-aws's ``S3Resource`` has no field for a botocore Config, so prefer this factory where the
    Config matters.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": max_retries, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=config,
    )


_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "Unauthorized",
    }
)
_UNAVAILABLE_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling", "TooManyRequests"}
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
# Codes some S3-compatible servers answer DeleteObjects with when they want Content-MD5 (which recent
# botocore no longer sends): fall back to one DeleteObject per key.
_DELETE_OBJECTS_UNSUPPORTED = frozenset({"MissingContentMD5", "InvalidRequest", "NotImplemented", "InvalidDigest"})
_SECRET_LOOKING = re.compile(r"[A-Za-z0-9+/=_-]{32,}")


def _scrub(text: str, limit: int = 300) -> str:
    """Server-supplied text, shortened and with anything token-like (access key ids, signatures) masked."""
    return _SECRET_LOOKING.sub("[redacted]", " ".join(str(text).split()))[:limit]


def _redacted_url(url: str | None) -> str:
    """The endpoint without userinfo, query or fragment, so it is safe to log."""
    if not url:
        return "the default AWS endpoint"
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class S3Bucket:
    """Objects in an S3-compatible bucket (R2), optionally under a key ``prefix``.

    ``client`` is a boto3 S3 client: ``make_s3_client(...)`` or dagster-aws ``S3Resource(...).get_client()``.

    Uploads no larger than ``multipart_threshold`` are one PUT.  Larger ones are multipart uploads whose
    parts all have exactly ``part_size`` bytes except the last (R2 rejects uneven parts).  If anything
    fails mid-way the multipart upload is aborted, so no partial object ever becomes visible and no
    incomplete upload is left to bill for.  Every PUT carries Content-MD5 so the server rejects bytes
    damaged in transit.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        part_size: int = DEFAULT_PART_SIZE,
        multipart_threshold: int | None = None,
        list_page_size: int = 1000,
        content_md5: bool = True,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid bucket name {bucket!r}")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3/R2 minimum), got {part_size}")
        self.client = client
        self.bucket = bucket
        self.prefix = _normalize_prefix(prefix)
        self.part_size = part_size
        self.multipart_threshold = part_size if multipart_threshold is None else multipart_threshold
        self.list_page_size = list_page_size
        self.content_md5 = content_md5

    # -- writes --------------------------------------------------------------------------------

    def put_file(self, key: str, path: Path | str, content_type: str | None = None) -> ObjectInfo:
        """Upload the file at ``path``; returns the stored object's stat.  All or nothing."""
        validate_key(key)
        size = _source_size(path)
        if size <= self.multipart_threshold:
            with _open_source(path) as source:
                data = _read_exactly(source, size, path)
            self._put_object(key, data, content_type)
        else:
            self._multipart_upload(key, path, size, content_type)
        return self._stat_after_write(key)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        """Store ``data`` under ``key`` with one (atomic) PUT; returns the stored object's stat."""
        validate_key(key)
        self._put_object(key, bytes(data), content_type)
        return self._stat_after_write(key)

    def _put_object(self, key: str, data: bytes, content_type: str | None) -> None:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full_key(key), "Body": data}
        if content_type:
            args["ContentType"] = content_type
        if self.content_md5:
            args["ContentMD5"] = _base64_md5(data)
        self._call("upload", key, "put_object", **args)

    def _multipart_upload(self, key: str, path: Path | str, size: int, content_type: str | None) -> None:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full_key(key)}
        if content_type:
            args["ContentType"] = content_type
        upload_id = self._call("start a multipart upload of", key, "create_multipart_upload", **args)["UploadId"]
        try:
            parts = self._upload_parts(key, upload_id, path, size)
            self._call(
                "complete the multipart upload of",
                key,
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=self._full_key(key),
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException as exc:
            self._abort_upload(key, upload_id, exc)
            raise

    def _upload_parts(self, key: str, upload_id: str, path: Path | str, size: int) -> list[dict[str, Any]]:
        part_size = self.part_size_for(size)
        parts: list[dict[str, Any]] = []
        with _open_source(path) as source:
            for number in range(1, math.ceil(size / part_size) + 1):
                chunk = _read_exactly(source, min(part_size, size - (number - 1) * part_size), path)
                parts.append({"PartNumber": number, "ETag": self._upload_part(key, upload_id, number, chunk)})
            if source.read(1):
                raise StorageIntegrityError(
                    f"the file {str(path)!r} grew while it was being uploaded to {self.uri(key)}"
                )
        return parts

    def _upload_part(self, key: str, upload_id: str, number: int, chunk: bytes) -> str:
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._full_key(key),
            "UploadId": upload_id,
            "PartNumber": number,
            "Body": chunk,
        }
        if self.content_md5:
            args["ContentMD5"] = _base64_md5(chunk)
        return self._call(f"upload part {number} of", key, "upload_part", **args)["ETag"]

    def _abort_upload(self, key: str, upload_id: str, cause: BaseException) -> None:
        """Abort so the parts are discarded.  If even that fails, say how to clean up by hand."""
        try:
            self._call(
                "abort the multipart upload of",
                key,
                "abort_multipart_upload",
                Bucket=self.bucket,
                Key=self._full_key(key),
                UploadId=upload_id,
            )
        except StorageObjectNotFound:
            # NoSuchUpload: nothing is pending (the upload may even have completed, its answer lost).
            logger.info("multipart upload %s of %s no longer exists; nothing to abort", upload_id, self.uri(key))
        except StorageError as abort_error:
            note = (
                f"The incomplete multipart upload {upload_id} of {self.uri(key)} could not be aborted "
                f"({abort_error}). No object was created, but its parts remain until aborted: R2 removes "
                "incomplete uploads after 7 days by default, or abort it with "
                "`aws s3api abort-multipart-upload`."
            )
            logger.warning(note)
            cause.add_note(note)

    def part_size_for(self, size: int) -> int:
        """The part size used for a ``size``-byte upload: ``part_size``, grown in whole MiB when the file
        would otherwise need more than 10,000 parts."""
        needed = math.ceil(size / MAX_PARTS)
        return max(self.part_size, math.ceil(needed / MiB) * MiB)

    def _stat_after_write(self, key: str) -> ObjectInfo:
        info = self.stat(key)
        if info is None:
            raise StorageIntegrityError(
                f"{self.uri(key)} is missing right after a successful upload to {self._endpoint()}: "
                "the endpoint or a proxy in front of it is not behaving like S3"
            )
        return info

    # -- reads ---------------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        """Stream ``key``'s bytes.  Read errors mid-stream surface as StorageErrors too."""
        validate_key(key)
        response = self._call("read", key, "get_object", Bucket=self.bucket, Key=self._full_key(key))
        raw = _S3Reader(response["Body"], lambda exc: self._error("read", key, exc))
        return io.BufferedReader(raw, buffer_size=_COPY_BUFFER)  # type: ignore[return-value]

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as reader:
            return reader.read()

    def stat(self, key: str) -> ObjectInfo | None:
        """HEAD the object; None if it does not exist (but a missing *bucket* raises)."""
        from botocore.exceptions import BotoCoreError, ClientError

        validate_key(key)
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._full_key(key))
        except ClientError as exc:
            if _http_status(exc) != 404:
                raise self._error("stat", key, exc) from exc
            self._raise_if_bucket_missing()  # a HEAD 404 has no body to say which one is missing
            return None
        except BotoCoreError as exc:
            raise self._error("stat", key, exc) from exc
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            last_modified=response["LastModified"],
            etag=_strip_etag(response.get("ETag")),
        )

    def _raise_if_bucket_missing(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _http_status(exc) == 404:
                raise StorageBucketNotFound(self._bucket_missing_message("stat", None)) from exc
            # Other answers (a token that may read objects but not HEAD the bucket): the object is missing.
        except BotoCoreError as exc:
            raise self._error("stat", None, exc) from exc

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order, fetched page by page."""
        validate_prefix(prefix)
        return self._iter_objects(prefix)

    def _iter_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=self.prefix + prefix,
            PaginationConfig={"PageSize": self.list_page_size},
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        key=item["Key"][len(self.prefix) :],
                        size=int(item["Size"]),
                        last_modified=item["LastModified"],
                        etag=_strip_etag(item.get("ETag")),
                    )
        except (BotoCoreError, ClientError) as exc:
            raise self._error("list", prefix or None, exc, listing=True) from exc

    # -- leftovers of interrupted writes (see leftovers.py) -----------------------------------

    def incomplete_writes(self) -> list[IncompleteWrite]:
        """Multipart uploads started under this bucket's prefix and neither completed nor aborted, oldest
        first (a process killed mid-upload leaves one; its parts are billed until aborted)."""
        from botocore.exceptions import BotoCoreError, ClientError

        found = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for upload in page.get("Uploads", []):
                    found.append(
                        IncompleteWrite(
                            where=upload["Key"][len(self.prefix) :],
                            size=None,
                            started_at=upload["Initiated"],
                            upload_id=upload["UploadId"],
                        )
                    )
        except (BotoCoreError, ClientError) as exc:
            raise self._error("list the incomplete uploads of", None, exc, listing=True) from exc
        return sorted(found, key=lambda w: w.started_at)

    def discard_incomplete_write(self, write: IncompleteWrite) -> None:
        """Abort one multipart upload found by :meth:`incomplete_writes` (its parts are discarded)."""
        try:
            self._call(
                "abort the multipart upload of",
                write.where,
                "abort_multipart_upload",
                Bucket=self.bucket,
                Key=self._full_key(write.where),
                UploadId=write.upload_id,
            )
        except StorageObjectNotFound:
            pass  # completed or aborted meanwhile

    # -- deletes -------------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing object succeeds (S3 semantics)."""
        validate_key(key)
        self._call("delete", key, "delete_object", Bucket=self.bucket, Key=self._full_key(key))

    def delete_many(self, keys: Iterable[str]) -> None:
        """Delete ``keys`` with DeleteObjects, 1,000 at a time; raise if any key could not be deleted."""
        from botocore.exceptions import ClientError

        batch_iter = iter([validate_key(k) for k in keys])
        while batch := list(itertools.islice(batch_iter, 1000)):
            try:
                self._delete_batch(batch)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in _DELETE_OBJECTS_UNSUPPORTED:
                    raise self._error("delete", batch[0], exc) from exc
                for key in batch:
                    self.delete(key)

    def _delete_batch(self, keys: list[str]) -> None:
        from botocore.exceptions import BotoCoreError

        objects = [{"Key": self._full_key(key)} for key in keys]
        try:
            response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
        except BotoCoreError as exc:
            raise self._error("delete", keys[0], exc) from exc
        failures = response.get("Errors") or []
        if failures:
            summary = "; ".join(
                f"{item.get('Key')}: {item.get('Code')} {_scrub(item.get('Message', ''), 80)}" for item in failures[:5]
            )
            raise StorageError(f"cannot delete {len(failures)} of {len(keys)} objects in {self.describe()}: {summary}")

    # -- naming --------------------------------------------------------------------------------

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def describe(self) -> str:
        """Bucket, prefix and endpoint -- never credentials."""
        where = f"s3://{self.bucket}/{self.prefix}"
        return f"S3 bucket {where} at {self._endpoint()} (region {self._region()})"

    def __repr__(self) -> str:
        return f"S3Bucket({self.describe()!r})"

    def _endpoint(self) -> str:
        return _redacted_url(getattr(getattr(self.client, "meta", None), "endpoint_url", None))

    def _region(self) -> str:
        return getattr(getattr(self.client, "meta", None), "region_name", None) or "unset"

    def _full_key(self, key: str) -> str:
        return self.prefix + key

    # -- errors --------------------------------------------------------------------------------

    def _call(self, action: str, key: str | None, operation: str, **kwargs: Any) -> Any:
        """Run one client operation, translating botocore's errors into StorageErrors."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(action, key, exc) from exc

    def _error(self, action: str, key: str | None, exc: BaseException, *, listing: bool = False) -> StorageError:
        from botocore.exceptions import (
            ClientError,
            HTTPClientError,
            IncompleteReadError,
            NoCredentialsError,
            PartialCredentialsError,
        )
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )

        where = self._where(key, listing=listing)
        if isinstance(exc, ClientError):
            return self._client_error(action, key, where, exc)
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StorageAccessDenied(
                f"cannot {action} {where}: no complete S3 credentials were configured. "
                "Set the R2 access key id and secret access key"
            )
        if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError, OSError)):
            return StorageUnavailable(
                f"cannot {action} {where}: the endpoint {self._endpoint()} could not be reached or dropped "
                f"the connection ({type(exc).__name__}). Check the endpoint URL (R2: "
                "https://<account_id>.r2.cloudflarestorage.com) and the network; retrying later may help"
            )
        return StorageError(f"cannot {action} {where}: {type(exc).__name__}: {_scrub(str(exc))}")

    def _client_error(self, action: str, key: str | None, where: str, exc: Any) -> StorageError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or _http_status(exc) or "unknown")
        status = _http_status(exc)
        detail = _scrub(error.get("Message", ""))
        reason = f"{code}" + (f" ({detail})" if detail and detail != code else "")
        if code in _ACCESS_CODES or status in (401, 403):
            return StorageAccessDenied(
                f"cannot {action} {where}: access denied, {reason}. Check the access key id and secret "
                f"(an R2 API token with Object Read & Write on bucket {self.bucket!r}) and its permissions"
            )
        if code == "NoSuchBucket":
            return StorageBucketNotFound(self._bucket_missing_message(action, key))
        if code in _NOT_FOUND_CODES or status == 404:
            return StorageObjectNotFound(f"cannot {action} {where}: no such object ({code})")
        if code in _UNAVAILABLE_CODES or (status is not None and status >= 500):
            return StorageUnavailable(
                f"cannot {action} {where}: the server answered {reason} (HTTP {status}) even after retries; "
                "try again later"
            )
        return StorageError(f"cannot {action} {where}: {reason} (HTTP {status})")

    def _bucket_missing_message(self, action: str, key: str | None) -> str:
        return (
            f"cannot {action} {self._where(key)}: bucket {self.bucket!r} does not exist at {self._endpoint()}. "
            f"Create it (`wrangler r2 bucket create {self.bucket}`) or fix the bucket name / account endpoint"
        )

    def _where(self, key: str | None, *, listing: bool = False) -> str:
        target = self.uri(key or "") if (key or listing) else f"s3://{self.bucket}/{self.prefix}"
        return f"{target} (at {self._endpoint()})"


class _S3Reader(io.RawIOBase):
    """A raw stream over a GetObject body whose read errors become StorageErrors."""

    def __init__(self, body: Any, translate: Callable[[BaseException], StorageError]) -> None:
        self._body = body
        self._translate = translate

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        from botocore.exceptions import BotoCoreError

        try:
            data = self._body.read(len(buffer))
        except (BotoCoreError, OSError) as exc:
            raise self._translate(exc) from exc
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _normalize_prefix(prefix: str) -> str:
    prefix = (prefix or "").strip("/")
    if not prefix:
        return ""
    validate_prefix(prefix)
    return prefix + "/"


def _http_status(exc: Any) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _strip_etag(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


def _base64_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


def _read_exactly(source: BinaryIO, size: int, path: Path | str) -> bytes:
    """Read exactly ``size`` bytes; a shorter file means it changed under us (parts must be equal)."""
    data = source.read(size)
    if len(data) != size:
        raise StorageIntegrityError(f"the file {str(path)!r} shrank while it was being uploaded")
    return data


# --------------------------------------------------------------------------------------------------
# Publishing: one object and the manifest that names it (dailies and weekly archives alike)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publication:
    """One publish: the file to store under ``key`` and the manifest (``manifest_key``, its JSON) that names it."""

    key: str
    path: Path | str
    size: int
    content_type: str
    manifest_key: str
    manifest_json: bytes


def publish(
    bucket: Bucket,
    publication: Publication,
    *,
    named_key: Callable[[], str | None],
    superseded: Callable[[], list[str]],
) -> None:
    """Store an object and switch its manifest to it, under one rule: the publish succeeds only when the
    manifest read back from the bucket names the object this publish wrote.

    1. Upload the object to its fresh key and stat it (the size must match): a failure here removes it
       and leaves the manifest as it was.
    2. PUT the manifest (the atomic switch).
    3. Read it back (``named_key``: the key the stored manifest names; None when there is none or it is
       unreadable).  It names our object: done, and the objects it superseded are removed (``superseded``,
       best effort: failing there only leaves orphans).  It names another one and our PUT failed: our object
       is removed and the PUT's error raised (the previous backup stands).  When it cannot be read back, or
       names another object although our PUT succeeded, nothing is deleted and ``PublishUnconfirmed``
       (retryable) is raised: the next run or reconciliation settles it.
    """
    key = publication.key
    try:
        bucket.put_file(key, publication.path, content_type=publication.content_type)
        stored = bucket.stat(key)
        if stored is None or stored.size != publication.size:
            found = "nothing" if stored is None else f"{stored.size} bytes"
            raise StorageIntegrityError(
                f"uploaded {publication.size} bytes to {bucket.uri(key)} but the bucket holds {found}"
            )
    except BaseException:
        _discard(bucket, key)
        raise
    put_error: StorageError | None = None
    try:
        bucket.put_bytes(publication.manifest_key, publication.manifest_json, content_type=MANIFEST_CONTENT_TYPE)
    except StorageError as exc:
        put_error = exc
    try:
        named = named_key()
    except CorruptManifest:
        named = None
    except StorageError as exc:
        raise PublishUnconfirmed(
            f"{bucket.uri(publication.manifest_key)} could not be read back to confirm it names {key} "
            f"({'its write failed: ' + str(put_error) + '; ' if put_error else ''}read-back: {exc}); every object is "
            "kept, and the next run or reconciliation settles which one counts"
        ) from exc
    if named != key:
        if put_error is not None:
            _discard(bucket, key)
            raise put_error
        raise PublishUnconfirmed(
            f"{bucket.uri(publication.manifest_key)} names {named or 'nothing'}, not {key} that this run wrote "
            "(another publish of the same slot?); every object is kept: run it again"
        )
    if put_error is not None:
        logger.info("the manifest %s landed although its answer was lost (%s)", publication.manifest_key, put_error)
    try:
        stale = superseded()
        if stale:
            bucket.delete_many(stale)
    except StorageError as exc:
        logger.warning("%s is published, but superseded objects were not removed: %s", key, exc)


def _discard(bucket: Bucket, key: str) -> None:
    """Best-effort removal of an object no manifest names; failing here only leaves an orphan."""
    try:
        bucket.delete(key)
    except StorageError as exc:
        logger.warning("could not remove %s (it stays as an orphan): %s", bucket.uri(key), exc)


# --------------------------------------------------------------------------------------------------
# Backup layout
# --------------------------------------------------------------------------------------------------

DAILY_PREFIX = "daily/"
WEEKLY_PREFIX = "weekly/"  # weekly archives: see the weekly layout helpers below and patina_assets.archive
AUDIT_PREFIX = "audit/"  # `patina serve`'s audit log (PATINA_AUDIT_BUCKET=1): one object per batch of lines

DUMP_FORMATS: Mapping[str, str] = {"sql": ".sql", "sql.gz": ".sql.gz", "sql.zst": ".sql.zst"}
DUMP_CONTENT_TYPES: Mapping[str, str] = {
    "sql": "application/sql",
    "sql.gz": "application/gzip",
    "sql.zst": "application/zstd",
}
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_CONTENT_TYPE = "application/json"

DATABASE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A generation makes each upload's dump key unique: UTC time to the microsecond, then randomness.
# It contains 'T' and 'Z', which a database name (lowercase) cannot, so parsing a key is unambiguous.
_GENERATION = r"\d{8}T\d{12}Z-[0-9a-f]{6}"
_GENERATION_RE = re.compile(rf"^{_GENERATION}$")
_DAILY_KEY = re.compile(
    rf"^daily/(?P<day>\d{{4}}-\d{{2}}-\d{{2}})/(?P<name>[^/]+?)"
    rf"(?:(?P<manifest>\.manifest\.json)|(?P<verification>\.verification\.json)"
    rf"|(?:\.(?P<generation>{_GENERATION}))?\.(?P<format>sql(?:\.gz|\.zst)?))$"
)
VERIFICATION_SUFFIX = ".verification.json"


def validate_database_name(database: str) -> str:
    """D1 database names as they appear in keys: lowercase, digits, ``.``, ``_``, ``-``; no ``/``."""
    if not isinstance(database, str) or not DATABASE_NAME.match(database):
        raise InvalidKey(
            f"invalid database name {database!r}: it must match {DATABASE_NAME.pattern} "
            "(lowercase letters, digits, '.', '_' and '-', at most 63 characters)"
        )
    return database


def format_day(day: date | str) -> str:
    """``YYYY-MM-DD`` for a real calendar date (a ``date`` or such a string); anything else raises."""
    if isinstance(day, datetime):
        raise InvalidKey(f"day must be a date, not a datetime ({day!r}): which day is ambiguous across time zones")
    if isinstance(day, date):
        return day.isoformat()
    if isinstance(day, str) and _DAY.match(day):
        try:
            return date.fromisoformat(day).isoformat()
        except ValueError:
            pass
    raise InvalidKey(f"invalid day {day!r}: expected a real date as YYYY-MM-DD")


def validate_format(fmt: str) -> str:
    if fmt not in DUMP_FORMATS:
        raise InvalidKey(f"invalid dump format {fmt!r}: expected one of {', '.join(DUMP_FORMATS)}")
    return fmt


def new_generation(now: datetime | None = None) -> str:
    """A fresh, time-ordered token such as ``20260106T030012123456Z-3f9a1c`` for one upload."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(3)}"


def daily_prefix(day: date | str | None = None) -> str:
    """``daily/`` or ``daily/YYYY-MM-DD/``."""
    return DAILY_PREFIX if day is None else f"{DAILY_PREFIX}{format_day(day)}/"


def daily_dump_key(day: date | str, database: str, fmt: str, generation: str | None = None) -> str:
    """``daily/YYYY-MM-DD/<database>.sql.zst``, or with a generation ``daily/DAY/<database>.<gen>.sql.zst``.

    BackupStore always uses a generation (see ``BackupStore.publish_daily`` for why); the plain form is
    the spec's original layout and is still recognised when listing.
    """
    name = validate_database_name(database)
    suffix = DUMP_FORMATS[validate_format(fmt)]
    if generation is not None:
        if not _GENERATION_RE.match(generation):
            raise InvalidKey(f"invalid generation {generation!r}: expected something like {new_generation()}")
        name = f"{name}.{generation}"
    return f"{daily_prefix(day)}{name}{suffix}"


def daily_verification_key(day: date | str, database: str) -> str:
    """``daily/YYYY-MM-DD/<database>.verification.json``: the last restore verification of that slot's backup."""
    return f"{daily_prefix(day)}{validate_database_name(database)}{VERIFICATION_SUFFIX}"


def daily_manifest_key(day: date | str, database: str) -> str:
    """``daily/YYYY-MM-DD/<database>.manifest.json``: one per database and day, naming the current dump."""
    return f"{daily_prefix(day)}{validate_database_name(database)}{MANIFEST_SUFFIX}"


@dataclass(frozen=True)
class DailyKey:
    """A parsed ``daily/`` key: a manifest (``kind='manifest'``), a dump (``kind='dump'``) or the
    verification record beside them (``kind='verification'``)."""

    key: str
    day: str
    database: str
    kind: str
    format: str | None = None
    generation: str | None = None

    @property
    def slot(self) -> tuple[str, str]:
        """(day, database): what one manifest covers."""
        return (self.day, self.database)


def parse_daily_key(key: str) -> DailyKey | None:
    """Recognise a daily manifest or dump key; None for anything else (weekly archives, strays)."""
    match = _DAILY_KEY.match(key)
    if not match or not DATABASE_NAME.match(match["name"]):
        return None
    try:
        day = format_day(match["day"])
    except InvalidKey:
        return None
    if match["manifest"]:
        return DailyKey(key=key, day=day, database=match["name"], kind="manifest")
    if match["verification"]:
        return DailyKey(key=key, day=day, database=match["name"], kind="verification")
    return DailyKey(
        key=key,
        day=day,
        database=match["name"],
        kind="dump",
        format=match["format"],
        generation=match["generation"],
    )


# Weekly layout (the archives themselves are built and read by ``patina_assets.archive``):
#   weekly/<week-start YYYY-MM-DD>.manifest.json             <- the archive counts once this exists
#   weekly/<week-start>.<generation>.tar.zst (or .tar.gz)    <- the archive it names
ARCHIVE_FORMATS: Mapping[str, str] = {"tar.zst": ".tar.zst", "tar.gz": ".tar.gz"}
_WEEKLY_KEY = re.compile(
    rf"^weekly/(?P<week>\d{{4}}-\d{{2}}-\d{{2}})"
    rf"(?:(?P<manifest>\.manifest\.json)|(?P<verification>\.verification\.json)"
    rf"|\.(?P<generation>{_GENERATION})\.(?P<format>tar\.zst|tar\.gz))$"
)


@dataclass(frozen=True)
class WeeklyKey:
    """A parsed ``weekly/`` key: an archive manifest (``kind='manifest'``) or an archive (``kind='archive'``)."""

    key: str
    week: str
    kind: str
    format: str | None = None
    generation: str | None = None


def weekly_manifest_key(week: date | str) -> str:
    """``weekly/<week-start>.manifest.json``: one per week, naming the current archive."""
    return f"{WEEKLY_PREFIX}{format_day(week)}{MANIFEST_SUFFIX}"


def weekly_verification_key(week: date | str) -> str:
    """``weekly/<week-start>.verification.json``: the last read-back verification of that week's archive."""
    return f"{WEEKLY_PREFIX}{format_day(week)}{VERIFICATION_SUFFIX}"


def weekly_archive_key(week: date | str, fmt: str, generation: str) -> str:
    """``weekly/<week-start>.<generation>.tar.zst``: a fresh key per build, as for daily dumps."""
    if fmt not in ARCHIVE_FORMATS:
        raise InvalidKey(f"invalid archive format {fmt!r}: expected one of {', '.join(ARCHIVE_FORMATS)}")
    if not _GENERATION_RE.match(generation):
        raise InvalidKey(f"invalid generation {generation!r}: expected something like {new_generation()}")
    return f"{WEEKLY_PREFIX}{format_day(week)}.{generation}{ARCHIVE_FORMATS[fmt]}"


def parse_weekly_key(key: str) -> WeeklyKey | None:
    """Recognise a weekly manifest or archive key; None for anything else."""
    match = _WEEKLY_KEY.match(key)
    if not match:
        return None
    try:
        week = format_day(match["week"])
    except InvalidKey:
        return None
    if match["manifest"]:
        return WeeklyKey(key=key, week=week, kind="manifest")
    if match["verification"]:
        return WeeklyKey(key=key, week=week, kind="verification")
    return WeeklyKey(key=key, week=week, kind="archive", format=match["format"], generation=match["generation"])


# --------------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------------

MANIFEST_SCHEMA_VERSION = 1
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def patina_version() -> str:
    try:
        return importlib.metadata.version("patina")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def utc_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 UTC with a ``Z``, to the second: ``2026-01-06T03:00:12Z``."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_utc_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 timestamp that must carry a UTC offset of zero."""
    parsed = datetime.fromisoformat(text)
    if parsed.utcoffset() != timedelta(0):
        raise ValueError(f"{text!r} is not in UTC")
    return parsed


#: A backup is *captured late* when its data was read more than this after its day ended: the nightly of
#: day D runs at 03:00 on D+1 (retries and a slow export take hours, not a day), so a dump read after
#: D+2 00:00 UTC is a backfill, holding the data of the day it ran, not of D.
LATE_AFTER = timedelta(days=1)


def day_end(day: date | str) -> datetime:
    """00:00 UTC of the day after ``day``: when that day ended."""
    start = date.fromisoformat(format_day(day))
    return datetime(start.year, start.month, start.day, tzinfo=UTC) + timedelta(days=1)


def is_captured_late(day: date | str, captured: datetime) -> bool:
    """True when data read at ``captured`` is too late to be ``day``'s (see ``LATE_AFTER``)."""
    return captured > day_end(day) + LATE_AFTER


def by_capture(manifest: Manifest) -> tuple[datetime, str, str]:
    """Sort key: capture time, then day and database (stable for equal times)."""
    return (manifest.captured, manifest.day, manifest.database)


@dataclass(frozen=True)
class Manifest:
    """What one daily backup contains, written as JSON beside the dump (schema_version 1).

    The dumper fills in what it measured (SQL size and digest, tables, rows, digests, timings);
    ``BackupStore.publish_daily`` fills in the stored object's ``key``, ``bytes``, ``sha256`` and
    ``created_at``.  ``source`` must already be redacted (no tokens, no signed URLs).

    ``table_rows`` and ``table_digests`` map table name to row count / digest; ``tables`` must equal
    ``len(table_rows)`` and ``rows`` must equal the sum of ``table_rows``.

    ``consistency`` says how ``point_in_time`` is known ("one transaction", "one batch", "bookmark
    unchanged", "bookmark moved"); ``bookmark`` and ``end_bookmark`` are D1's Time Travel bookmarks when
    the dump began and ended. These three came later: a manifest without them still loads (as None).
    """

    database: str
    day: str
    format: str
    sql_bytes: int
    sql_sha256: str
    tables: int
    rows: int
    table_rows: Mapping[str, int]
    table_digests: Mapping[str, str]
    content_digest: str
    schema_fingerprint: str
    source: str
    point_in_time: bool
    requests: int
    started_at: str
    finished_at: str
    job_id: str
    dagster_run_id: str | None = None
    consistency: str | None = None
    bookmark: str | None = None
    end_bookmark: str | None = None
    patina_version: str = field(default_factory=patina_version)
    key: str = ""
    bytes: int = 0
    sha256: str = ""
    created_at: str = ""
    # When the data was read from the source: the truth for "newest" and "before" (a backfill run days
    # later reads today's data).  Manifests written before it existed use started_at.
    captured_at: str = ""
    # captured more than LATE_AFTER after its day ended (see ``is_captured_late``); derived when absent
    captured_late: bool | None = None
    schema_version: int = MANIFEST_SCHEMA_VERSION
    # What the dump warned about (data it could not carry, restores only some tools can do). Manifests
    # written before this field existed have none.
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.captured_at and isinstance(self.started_at, str):
            object.__setattr__(self, "captured_at", self.started_at)
        if self.captured_late is None:
            try:
                late = is_captured_late(self.day, parse_utc_timestamp(self.captured_at))
            except (TypeError, ValueError, InvalidKey):
                late = None  # problems() reports the bad field
            object.__setattr__(self, "captured_late", late)

    @property
    def captured(self) -> datetime:
        """``captured_at`` as a datetime (the sort key of "newest")."""
        return parse_utc_timestamp(self.captured_at)

    def problems(self) -> list[str]:
        """Everything wrong with this manifest (empty when it is complete and consistent)."""
        found = [
            f"{name}: {problem}" for name, check in _FIELD_CHECKS.items() if (problem := check(getattr(self, name)))
        ]
        if not found:
            found.extend(self._consistency_problems())
        return found

    def _consistency_problems(self) -> list[str]:
        found = []
        if self.tables != len(self.table_rows):
            found.append(f"tables is {self.tables} but table_rows names {len(self.table_rows)} tables")
        if self.rows != sum(self.table_rows.values()):
            found.append(f"rows is {self.rows} but table_rows adds up to {sum(self.table_rows.values())}")
        if parse_utc_timestamp(self.finished_at) < parse_utc_timestamp(self.started_at):
            found.append("finished_at is before started_at")
        return found

    def to_json(self) -> str:
        """Serialise; raises ValueError if the manifest is incomplete (a bug in the caller)."""
        problems = self.problems()
        if problems:
            raise ValueError(f"manifest for {self.database!r} on {self.day!r} is incomplete: " + "; ".join(problems))
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["table_rows"] = dict(self.table_rows)
        data["table_digests"] = dict(self.table_digests)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, key: str = "<manifest>") -> Manifest:
        """Parse and validate; anything unreadable raises ``CorruptManifest`` naming ``key``."""
        data = _load_json_object(text, key)
        version = data.get("schema_version")
        if version != MANIFEST_SCHEMA_VERSION:
            raise CorruptManifest(
                f"manifest {key} has schema_version {version!r}; this Patina reads version "
                f"{MANIFEST_SCHEMA_VERSION} (a newer Patina may have written it: upgrade)"
            )
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [name for name in names if name not in data and name not in _OPTIONAL_FIELDS]
        if missing:
            raise CorruptManifest(f"manifest {key} lacks the field(s) {', '.join(missing)}")
        manifest = cls(**{name: data[name] if name in data else _OPTIONAL_FIELDS[name]() for name in names})
        try:
            problems = manifest.problems()
        except (TypeError, ValueError, AttributeError) as exc:
            problems = [str(exc)]
        if problems:
            raise CorruptManifest(f"manifest {key} is invalid: " + "; ".join(problems))
        return manifest


def _load_json_object(text: str | bytes, key: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptManifest(
            f"manifest {key} is not valid JSON ({exc}); delete it or re-run the backup of that day"
        ) from exc
    if not isinstance(data, dict):
        raise CorruptManifest(f"manifest {key} is not a JSON object")
    return data


def _check_int(value: Any) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else "expected an integer >= 0"


def _check_text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "expected a non-empty string"


def _check_optional_text(value: Any) -> str | None:
    return None if value is None else _check_text(value)


def _check_hex64(value: Any) -> str | None:
    return None if isinstance(value, str) and _HEX64.match(value) else "expected 64 lowercase hex digits"


def _check_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


def _check_timestamp(value: Any) -> str | None:
    try:
        parse_utc_timestamp(value)
    except (TypeError, ValueError):
        return "expected an ISO 8601 UTC timestamp such as 2026-01-06T03:00:12Z"
    return None


def _check_day(value: Any) -> str | None:
    try:
        return None if isinstance(value, str) and format_day(value) == value else "expected YYYY-MM-DD"
    except InvalidKey:
        return "expected a real date as YYYY-MM-DD"


def _check_database(value: Any) -> str | None:
    if isinstance(value, str) and DATABASE_NAME.match(value):
        return None
    return f"expected a name matching {DATABASE_NAME.pattern}"


def _check_format(value: Any) -> str | None:
    return None if value in DUMP_FORMATS else f"expected one of {', '.join(DUMP_FORMATS)}"


def _check_key(value: Any) -> str | None:
    parsed = parse_daily_key(value) if isinstance(value, str) else None
    return None if parsed is not None and parsed.kind == "dump" else "expected a daily dump key"


def _check_schema_version(value: Any) -> str | None:
    return None if value == MANIFEST_SCHEMA_VERSION else f"expected {MANIFEST_SCHEMA_VERSION}"


def _check_mapping(value_check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return "expected an object"
        for name, item in value.items():
            if not isinstance(name, str) or not name or value_check(item):
                return f"bad entry {name!r}: {value_check(item) or 'expected a table name'}"
        return None

    return check


# Fields a manifest may lack (written by an older Patina), with the value they then take.
_OPTIONAL_FIELDS: dict[str, Callable[[], Any]] = {
    "dagster_run_id": lambda: None,
    "warnings": list,
    "consistency": lambda: None,
    "bookmark": lambda: None,
    "end_bookmark": lambda: None,
    "captured_at": lambda: "",  # then started_at (see Manifest.__post_init__)
    "captured_late": lambda: None,  # then derived from the capture time
}


def _check_warnings(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(w, str) for w in value):
        return "must be a list of strings"
    return None


_FIELD_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "warnings": _check_warnings,
    "schema_version": _check_schema_version,
    "database": _check_database,
    "day": _check_day,
    "key": _check_key,
    "format": _check_format,
    "bytes": _check_int,
    "sha256": _check_hex64,
    "sql_bytes": _check_int,
    "sql_sha256": _check_hex64,
    "tables": _check_int,
    "rows": _check_int,
    "table_rows": _check_mapping(_check_int),
    "table_digests": _check_mapping(_check_text),
    "content_digest": _check_text,
    "schema_fingerprint": _check_text,
    "source": _check_text,
    "point_in_time": _check_bool,
    "requests": _check_int,
    "started_at": _check_timestamp,
    "finished_at": _check_timestamp,
    "patina_version": _check_text,
    "dagster_run_id": _check_optional_text,
    "consistency": _check_optional_text,
    "bookmark": _check_optional_text,
    "end_bookmark": _check_optional_text,
    "job_id": _check_text,
    "created_at": _check_timestamp,
    "captured_at": _check_timestamp,
    "captured_late": _check_bool,
}
# Fields a manifest may lack (written by an older Patina): None, then filled in by ``Manifest.__post_init__``.
# --------------------------------------------------------------------------------------------------
# BackupStore
# --------------------------------------------------------------------------------------------------


VERIFIED, FAILED, NOT_VERIFIED, DAMAGED = "verified", "failed", "not verified", "damaged"
VERIFICATION_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class VerificationRecord:
    """What the last verification of a stored backup (a daily dump, or a weekly archive) concluded, kept in
    the bucket beside it (``<db>.verification.json``, ``weekly/<week>.verification.json``) so the tools see
    it without Dagster.  It vouches only for the object it names with the sha256 it read: a re-run of the
    day writes a new object, which is "not verified" until its own verification.

    ``passed``: restore_verification (dailies: restored, every table's rows and digest equal to the source's)
    or the archive's read-back (every member's sha256).  ``size_verdict`` (dailies) is size_anomaly's verdict
    at that time; ``too_small`` flags possible data loss, and retention never counts such a backup as good.
    """

    key: str  # the object verified
    sha256: str  # its sha256, as read back when verified ("" when it could not be read)
    passed: bool
    checked_at: str
    problems: tuple[str, ...] = ()
    size_verdict: str | None = None
    dagster_run_id: str | None = None
    patina_version: str = field(default_factory=patina_version)
    schema_version: int = VERIFICATION_SCHEMA_VERSION

    def status_of(self, key: str, sha256: str) -> str:
        """VERIFIED or FAILED for the object ``key`` with ``sha256``; NOT_VERIFIED when this record is about another."""
        if self.key != key:
            return NOT_VERIFIED
        if not self.passed:
            return FAILED
        return VERIFIED if self.sha256 == sha256 else NOT_VERIFIED

    @property
    def possible_data_loss(self) -> bool:
        return self.size_verdict == "too_small"

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["problems"] = list(self.problems)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, key: str) -> VerificationRecord:
        data = _load_json_object(text, key)
        try:
            if data.get("schema_version") != VERIFICATION_SCHEMA_VERSION:
                raise ValueError(f"schema_version {data.get('schema_version')!r}")
            record = cls(
                key=_required_text(data["key"]),
                sha256=str(data["sha256"]),
                passed=data["passed"] is True,
                checked_at=_required_text(data["checked_at"]),
                problems=tuple(str(p) for p in data.get("problems", ())),
                size_verdict=data.get("size_verdict"),
                dagster_run_id=data.get("dagster_run_id"),
                patina_version=str(data.get("patina_version", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptManifest(
                f"verification record {key} is invalid ({exc}); it is ignored until the next verification"
            ) from None
        return record


def _required_text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, not {value!r}")
    return value


def read_verification(bucket: Bucket, key: str) -> VerificationRecord | None:
    """The record stored under ``key``; None when there is none or it cannot be read (logged): a record
    that cannot be read vouches for nothing."""
    try:
        return VerificationRecord.from_json(bucket.get_bytes(key), key=key)
    except StorageObjectNotFound:
        return None
    except CorruptManifest as exc:
        logger.warning("%s", exc)
        return None


@dataclass
class DailyInventory:
    """One pass over ``daily/``: what counts as a backup and what does not.

    * ``backups``: manifests that parse and whose dump object exists with the recorded size.
    * ``orphans``: dump objects that no manifest refers to (uploads that never got their manifest).
      Dumps beside an unreadable manifest are *not* orphans: they may be the only copy of that day.
    * ``corrupt``: manifest key -> why it cannot be read.
    * ``broken``: manifest key -> why its dump is unusable (missing, or not the recorded size).
    """

    backups: list[Manifest] = field(default_factory=list)
    orphans: list[ObjectInfo] = field(default_factory=list)
    corrupt: dict[str, str] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    broken_manifests: dict[str, Manifest] = field(default_factory=dict)  # manifest key -> the manifest of a broken one
    verification_keys: set[str] = field(default_factory=set)  # records present in the listing


class BackupStore:
    """The backup layout on a ``Bucket``::

        daily/2026-01-05/groveauth.manifest.json                       <- the backup (written last)
        daily/2026-01-05/groveauth.20260106T030012123456Z-3f9a1c.sql.zst <- the dump it names
        weekly/...                                                     <- weekly archives (later)

    A backup exists exactly when its manifest does.  Each upload gets its own dump key (a time-ordered
    *generation*), so re-running a day never overwrites the dump the current manifest points at: if the new
    run fails at any step, the previous backup of that day stays whole and listed.  The manifest PUT is the
    atomic switch from old to new; only after it succeeds are superseded dumps deleted.

    Concurrent publishes of the same (day, database) are not supported; the orchestrator must serialise
    them (one Dagster run per partition at a time).
    """

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    def describe(self) -> str:
        return f"backups in {self.bucket.describe()}"

    # -- publishing ----------------------------------------------------------------------------

    def publish_daily(
        self,
        day: date | str,
        database: str,
        dump_path: Path | str,
        manifest: Manifest,
        *,
        now: datetime | None = None,
    ) -> Manifest:
        """Store ``dump_path`` as the backup of ``database`` on ``day``; return the manifest as written.

        Steps, and why in this order:

        1. Hash the local dump (sha256, size): the manifest records what the stored object must be.
        2. Upload it to a fresh key ``daily/DAY/<db>.<generation>.<fmt>``.  A failure here leaves no
           object (PUT and aborted multipart uploads are all-or-nothing) and no manifest change.
        3. Stat it and compare the size: the manifest must never vouch for bytes that are not there.
        4. Write the manifest (one atomic PUT) and read it back: the new backup counts once the bucket's
           manifest is confirmed to name its dump.
        5. Delete the dumps it superseded (the previous one, and leftovers of failed runs).

        Steps 2-5 are ``publish``, the one publish step dailies and weekly archives share: if the manifest
        write fails, the new dump is removed again and the previous backup is untouched; if it cannot be
        confirmed either way, everything is kept and ``PublishUnconfirmed`` (retryable) is raised.
        ``created_at`` is when the publish began.
        """
        day_text, name = format_day(day), validate_database_name(database)
        _check_manifest_target(manifest, day_text, name)
        size, sha256 = _file_digest(dump_path)
        _check_recorded_digest(manifest, size, sha256, dump_path)
        previous = self._current_dump_key(day_text, name)
        generation = new_generation(now)
        key = daily_dump_key(day_text, name, manifest.format, generation)
        final = dataclasses.replace(manifest, key=key, bytes=size, sha256=sha256, created_at=utc_timestamp(now))
        publication = Publication(
            key,
            dump_path,
            size,
            DUMP_CONTENT_TYPES[manifest.format],
            daily_manifest_key(day_text, name),
            final.to_json().encode("utf-8"),
        )

        def superseded() -> list[str]:
            # The dump the old manifest named and older leftovers; newer unreferenced dumps may belong to a
            # run still uploading.
            return [
                info.key
                for info in self._dumps_of(day_text, name)
                if info.key != key and (info.key == previous or _older(info.key, generation))
            ]

        publish(
            self.bucket,
            publication,
            named_key=lambda: self._current_dump_key(day_text, name, strict=True),
            superseded=superseded,
        )
        return final

    def _current_dump_key(self, day: str, database: str, *, strict: bool = False) -> str | None:
        """The dump the current manifest names (None if there is none; an unreadable one is None too,
        or raises ``CorruptManifest`` when ``strict``)."""
        try:
            current = self.get_manifest(day, database)
        except CorruptManifest:
            if strict:
                raise
            return None
        return current.key if current else None

    def _dumps_of(self, day: str, database: str) -> list[ObjectInfo]:
        dumps = []
        for info in self.bucket.list(daily_prefix(day)):
            parsed = parse_daily_key(info.key)
            if parsed and parsed.kind == "dump" and parsed.database == database:
                dumps.append(info)
        return dumps

    # -- reading -------------------------------------------------------------------------------

    def get_manifest(self, day: date | str, database: str) -> Manifest | None:
        """The manifest of ``database`` on ``day``; None if there is none; CorruptManifest if unreadable."""
        day_text, name = format_day(day), validate_database_name(database)
        key = daily_manifest_key(day_text, name)
        try:
            raw = self.bucket.get_bytes(key)
        except StorageObjectNotFound:
            return None
        return _manifest_for_slot(raw, key, day_text, name)

    def list_daily(self, database: str | None = None, day: date | str | None = None) -> list[Manifest]:
        """Backups that count (readable manifest, dump present with the recorded size), oldest first."""
        return self.inventory(database=database, day=day).backups

    def find_orphans(self, min_age: timedelta | None = None, *, now: datetime | None = None) -> list[ObjectInfo]:
        """Dump objects no manifest refers to: uploads that failed or crashed before their manifest.

        ``min_age`` skips recent ones, which may belong to an upload still in progress.
        """
        orphans = self.inventory().orphans
        if min_age is None:
            return orphans
        cutoff = (now or datetime.now(UTC)) - min_age
        return [info for info in orphans if info.last_modified <= cutoff]

    def inventory(self, database: str | None = None, day: date | str | None = None) -> DailyInventory:
        """List ``daily/`` once and sort every object into backups, orphans, corrupt and broken."""
        if database is not None:
            validate_database_name(database)
        objects = {info.key: info for info in self.bucket.list(daily_prefix(day))}
        result = DailyInventory()
        manifests: dict[tuple[str, str], DailyKey] = {}
        dumps: dict[tuple[str, str], list[ObjectInfo]] = {}
        for key, info in objects.items():
            parsed = parse_daily_key(key)
            if parsed is None or (database is not None and parsed.database != database):
                continue
            if parsed.kind == "manifest":
                manifests[parsed.slot] = parsed
            elif parsed.kind == "verification":
                result.verification_keys.add(key)
            else:
                dumps.setdefault(parsed.slot, []).append(info)
        referenced: set[str] = set()
        for slot in sorted(manifests):
            self._classify_manifest(manifests[slot], objects, result, referenced)
        unreadable_slots = {parse_daily_key(key).slot for key in result.corrupt}  # type: ignore[union-attr]
        result.orphans = [
            info
            for slot in sorted(dumps)
            if slot not in unreadable_slots
            for info in dumps[slot]
            if info.key not in referenced
        ]
        return result

    def _classify_manifest(
        self,
        parsed: DailyKey,
        objects: Mapping[str, ObjectInfo],
        result: DailyInventory,
        referenced: set[str],
    ) -> None:
        try:
            manifest = self.get_manifest(parsed.day, parsed.database)
        except CorruptManifest as exc:
            result.corrupt[parsed.key] = str(exc)
            return
        if manifest is None:  # deleted since the listing
            return
        referenced.add(manifest.key)
        dump = objects.get(manifest.key) or self.bucket.stat(manifest.key)  # may be newer than the listing
        if dump is None:
            result.broken[parsed.key] = f"its dump {manifest.key} is missing"
        elif dump.size != manifest.bytes:
            result.broken[parsed.key] = f"its dump {manifest.key} has {dump.size} bytes, not {manifest.bytes}"
        else:
            result.backups.append(manifest)
            return
        result.broken_manifests[parsed.key] = manifest

    # -- verification records ------------------------------------------------------------------

    def record_verification(self, manifest: Manifest, record: VerificationRecord) -> None:
        """Store ``record`` beside the backup ``manifest`` describes (replacing the previous record)."""
        if record.key != manifest.key:
            raise ValueError(f"the record is about {record.key}, not {manifest.key}")
        self.bucket.put_bytes(
            daily_verification_key(manifest.day, manifest.database),
            record.to_json().encode("utf-8"),
            content_type=MANIFEST_CONTENT_TYPE,
        )

    def get_verification(self, day: date | str, database: str) -> VerificationRecord | None:
        return read_verification(self.bucket, daily_verification_key(day, database))

    def verification_status(self, manifest: Manifest, record: VerificationRecord | None) -> str:
        """VERIFIED, FAILED or NOT_VERIFIED for the backup ``manifest`` describes."""
        return record.status_of(manifest.key, manifest.sha256) if record is not None else NOT_VERIFIED

    def verifications(self, inventory: DailyInventory) -> dict[tuple[str, str], VerificationRecord]:
        """The records of the slots ``inventory`` listed, read once each."""
        found = {}
        for key in sorted(inventory.verification_keys):
            record = read_verification(self.bucket, key)
            if record is not None:
                found[parse_daily_key(key).slot] = record  # type: ignore[union-attr]
        return found

    def open_dump(self, manifest: Manifest) -> BinaryIO:
        """Stream the stored dump (compressed as stored) that ``manifest`` describes."""
        return self.bucket.open(_dump_key_of(manifest))

    def verify(self, manifest: Manifest) -> bool:
        """Re-read the stored dump and check its size and sha256 against the manifest.

        False when the dump is missing or differs; other storage errors (access, network) raise, since
        they say nothing about the backup itself.
        """
        try:
            reader = self.open_dump(manifest)
        except StorageObjectNotFound:
            return False
        digest, size = hashlib.sha256(), 0
        with reader:
            while chunk := reader.read(_COPY_BUFFER):
                digest.update(chunk)
                size += len(chunk)
        return size == manifest.bytes and digest.hexdigest() == manifest.sha256

    # -- deleting ------------------------------------------------------------------------------

    def delete_daily(self, day: date | str, database: str) -> list[str]:
        """Delete the backup of ``database`` on ``day``; return the keys deleted.

        The manifest goes first: from that instant the backup no longer counts, so an interruption can
        only leave orphan dumps (reported by ``find_orphans``), never a listed backup without its bytes.
        """
        day_text, name = format_day(day), validate_database_name(database)
        manifest_key = daily_manifest_key(day_text, name)
        dump_keys = [info.key for info in self._dumps_of(day_text, name)]
        had_manifest = self.bucket.stat(manifest_key) is not None
        if had_manifest:
            self.bucket.delete(manifest_key)
        record_key = daily_verification_key(day_text, name)
        if self.bucket.stat(record_key) is not None:
            dump_keys.append(record_key)
        if dump_keys:
            self.bucket.delete_many(dump_keys)
        return ([manifest_key] if had_manifest else []) + dump_keys


def _manifest_for_slot(raw: bytes, key: str, day: str, database: str) -> Manifest:
    """Parse a manifest and check it belongs where it was found (its key names its own dump)."""
    manifest = Manifest.from_json(raw, key=key)
    dump = parse_daily_key(manifest.key)
    if manifest.day != day or manifest.database != database:
        raise CorruptManifest(
            f"manifest {key} describes {manifest.database!r} on {manifest.day}, not {database!r} on {day}"
        )
    if dump is None or dump.kind != "dump" or dump.slot != (day, database) or dump.format != manifest.format:
        raise CorruptManifest(
            f"manifest {key} names {manifest.key!r}, which is not a {manifest.format} dump of this day"
        )
    return manifest


def _dump_key_of(manifest: Manifest) -> str:
    parsed = parse_daily_key(manifest.key)
    if parsed is None or parsed.kind != "dump":
        raise InvalidKey(f"manifest key {manifest.key!r} is not a daily dump key")
    return manifest.key


def _check_manifest_target(manifest: Manifest, day: str, database: str) -> None:
    if manifest.day != day or manifest.database != database:
        raise ValueError(
            f"manifest describes {manifest.database!r} on {manifest.day!r} but is being published "
            f"for {database!r} on {day!r}"
        )
    validate_format(manifest.format)


def _check_recorded_digest(manifest: Manifest, size: int, sha256: str, path: Path | str) -> None:
    """If the dumper already recorded the file's size/sha256, the file must still match them."""
    if (manifest.bytes and manifest.bytes != size) or (manifest.sha256 and manifest.sha256 != sha256):
        raise StorageIntegrityError(
            f"the dump {str(path)!r} changed after it was measured: the manifest says "
            f"{manifest.bytes} bytes / sha256 {manifest.sha256[:12]}..., the file has {size} / {sha256[:12]}..."
        )


def _file_digest(path: Path | str) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with _open_source(path) as source:
        while chunk := source.read(_COPY_BUFFER):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _older(key: str, generation: str) -> bool:
    """True for a dump from before ``generation`` (plain, generation-less keys count as older)."""
    parsed = parse_daily_key(key)
    return parsed is not None and (parsed.generation is None or parsed.generation < generation)
