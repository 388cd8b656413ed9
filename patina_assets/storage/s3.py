"""``S3Bucket``: any S3 API (Cloudflare R2 in production, moto in tests) through a boto3 client.

Uploads are all-or-nothing: a small file is one PUT (atomic on S3 and R2); a large one is a multipart upload
with equal-sized parts (R2 refuses anything else) that is aborted on any failure, so an object only ever
appears whole.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit, urlunsplit

from .buckets import (
    _COPY_BUFFER,
    DEFAULT_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    IncompleteWrite,
    InvalidKey,
    MiB,
    ObjectChanged,
    ObjectDetails,
    ObjectInfo,
    StorageAccessDenied,
    StorageBucketNotFound,
    StorageError,
    StorageIntegrityError,
    StorageObjectNotFound,
    StorageUnavailable,
    _open_source,
    _source_size,
    validate_key,
    validate_prefix,
)

logger = logging.getLogger(__name__)


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

    def put_file(
        self,
        key: str,
        path: Path | str,
        content_type: str | None = None,
        *,
        metadata: dict[str, str] | None = None,
        foreign_key: bool = False,
    ) -> ObjectInfo:
        """Upload the file at ``path``; returns the stored object's stat.  All or nothing.

        For restoring another bucket's objects (R2 bucket backups; S3 only, a directory has nowhere to keep
        them): ``metadata`` becomes the object's user metadata, and ``foreign_key`` accepts any key S3 does
        (``folder/``, ``a//b``), not only the keys of Patina's own layout."""
        if not foreign_key:
            validate_key(key)
        size = _source_size(path)
        if size <= self.multipart_threshold:
            with _open_source(path) as source:
                data = _read_exactly(source, size, path)
            self._put_object(key, data, content_type, metadata)
        else:
            self._multipart_upload(key, path, size, content_type, metadata)
        return self._stat_after_write(key, foreign_key=foreign_key)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        """Store ``data`` under ``key`` with one (atomic) PUT; returns the stored object's stat."""
        validate_key(key)
        self._put_object(key, bytes(data), content_type, None)
        return self._stat_after_write(key)

    def put_bytes_if_unchanged(
        self, key: str, data: bytes, etag: str | None, content_type: str | None = None
    ) -> ObjectInfo:
        """One PUT with ``If-Match: "<etag>"`` (``If-None-Match: *`` when ``etag`` is None): S3 and R2 compare
        and write in one step. ``ObjectChanged`` when the object is no longer that one (412), is gone (404),
        or another conditional write of it was under way (409)."""
        from botocore.exceptions import BotoCoreError, ClientError

        validate_key(key)
        payload = bytes(data)
        condition = {"IfMatch": f'"{etag}"'} if etag is not None else {"IfNoneMatch": "*"}
        try:
            self.client.put_object(**self._put_args(key, payload, content_type, None), **condition)
        except ClientError as exc:
            status, code = _http_status(exc), exc.response.get("Error", {}).get("Code")
            if status in (409, 412) or (status == 404 and etag is not None and code != "NoSuchBucket"):
                raise ObjectChanged(
                    f"cannot upload {self.uri(key)}: it changed since it was read (another writer "
                    f"{'replaced' if etag else 'created'} it; HTTP {status}); nothing was written"
                ) from exc
            raise self._error("upload", key, exc) from exc
        except BotoCoreError as exc:
            raise self._error("upload", key, exc) from exc
        return self._stat_after_write(key)

    def _put_object(self, key: str, data: bytes, content_type: str | None, metadata: dict[str, str] | None) -> None:
        self._call("upload", key, "put_object", **self._put_args(key, data, content_type, metadata))

    def _put_args(
        self, key: str, data: bytes, content_type: str | None, metadata: dict[str, str] | None
    ) -> dict[str, Any]:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full_key(key), "Body": data}
        if content_type:
            args["ContentType"] = content_type
        if metadata:
            args["Metadata"] = dict(metadata)
        if self.content_md5:
            args["ContentMD5"] = _base64_md5(data)
        return args

    def _multipart_upload(
        self, key: str, path: Path | str, size: int, content_type: str | None, metadata: dict[str, str] | None
    ) -> None:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full_key(key)}
        if content_type:
            args["ContentType"] = content_type
        if metadata:
            args["Metadata"] = dict(metadata)
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

    def _stat_after_write(self, key: str, *, foreign_key: bool = False) -> ObjectInfo:
        info = self._head(key) if foreign_key else self.stat(key)
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

    def open_with_details(self, key: str) -> tuple[BinaryIO, ObjectDetails]:
        """Stream ``key``'s bytes together with what S3 says of the object in the same answer (size, ETag,
        time, content type, user metadata): one GET, so the details are those of the bytes read.  Raises
        StorageObjectNotFound when there is no such object.  For copying another bucket's objects: ``key``
        is any key its listing returned (S3 allows ``folder/`` and ``a//b``; Patina's own layout does not)."""
        response = self._call("read", key, "get_object", Bucket=self.bucket, Key=self._full_key(key))
        raw = _S3Reader(response["Body"], lambda exc: self._error("read", key, exc))
        details = ObjectDetails(
            key=key,
            size=int(response["ContentLength"]),
            last_modified=response["LastModified"],
            etag=strip_etag(response.get("ETag")),
            content_type=response.get("ContentType"),
            metadata=dict(response.get("Metadata") or {}),
        )
        return io.BufferedReader(raw, buffer_size=_COPY_BUFFER), details  # type: ignore[return-value]

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as reader:
            return reader.read()

    def stat(self, key: str) -> ObjectInfo | None:
        """HEAD the object; None if it does not exist (but a missing *bucket* raises)."""
        validate_key(key)
        return self._head(key)

    def _head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import BotoCoreError, ClientError

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
            etag=strip_etag(response.get("ETag")),
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
        for page in self._listing_pages(prefix):
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    key=item["Key"][len(self.prefix) :],
                    size=int(item["Size"]),
                    last_modified=item["LastModified"],
                    etag=strip_etag(item.get("ETag")),
                )

    def _listing_pages(self, prefix: str, **options) -> Iterator[dict]:
        """The pages of ListObjectsV2 under ``prefix`` (``options``: e.g. a ``Delimiter``); a failure on any page
        is the listing's StorageError."""
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=self.prefix + prefix,
            PaginationConfig={"PageSize": self.list_page_size},
            **options,
        )
        try:
            yield from pages
        except (BotoCoreError, ClientError) as exc:
            raise self._error("list", prefix or None, exc, listing=True) from exc

    def list_folders(self, prefix: str) -> Iterator[str]:
        """The common prefixes one level under ``prefix`` (ending in ``/``), in key order: ``daily/2026-03-01/``,
        ... (a listing with the delimiter ``/``: a page holds up to a thousand of them, not their objects)."""
        validate_prefix(prefix)
        if prefix and not prefix.endswith("/"):
            raise InvalidKey(f"invalid folder prefix {prefix!r}: it must end with '/'")
        return self._iter_folders(prefix)

    def _iter_folders(self, prefix: str) -> Iterator[str]:
        for page in self._listing_pages(prefix, Delimiter="/"):
            for item in page.get("CommonPrefixes", []):
                yield item["Prefix"][len(self.prefix) :]

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


def strip_etag(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


def _base64_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


def _read_exactly(source: BinaryIO, size: int, path: Path | str) -> bytes:
    """Read exactly ``size`` bytes; a shorter file means it changed under us (parts must be equal)."""
    data = source.read(size)
    if len(data) != size:
        raise StorageIntegrityError(f"the file {str(path)!r} shrank while it was being uploaded")
    return data
