"""The one publish step: an object and the manifest that names it (dailies and weekly archives alike)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .buckets import (
    Bucket,
    CorruptManifest,
    PublishUnconfirmed,
    StorageError,
    StorageIntegrityError,
    copy_hashing,
)
from .layout import MANIFEST_CONTENT_TYPE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Publication:
    """One publish: the file to store under ``key`` and the manifest (``manifest_key``, its JSON) that names it."""

    key: str
    path: Path | str
    size: int
    content_type: str
    manifest_key: str
    manifest_json: bytes
    #: When set, the uploaded object is read back whole and must hash to this before the manifest switches
    #: to it (``reencrypt``: the old object is the only other copy, so the new one is proven first).
    read_back_sha256: str | None = None


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
        if publication.read_back_sha256 is not None:
            _check_read_back(bucket, key, publication.read_back_sha256)
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


def _check_read_back(bucket: Bucket, key: str, sha256: str) -> None:
    with bucket.open(key) as reader:
        _, read_back = copy_hashing(reader)
    if read_back != sha256:
        raise StorageIntegrityError(
            f"{bucket.uri(key)} read back with sha256 {read_back[:12]}..., not the {sha256[:12]}... "
            "uploaded; the manifest was left as it was"
        )


def _discard(bucket: Bucket, key: str) -> None:
    """Best-effort removal of an object no manifest names; failing here only leaves an orphan."""
    try:
        bucket.delete(key)
    except StorageError as exc:
        logger.warning("could not remove %s (it stays as an orphan): %s", bucket.uri(key), exc)
