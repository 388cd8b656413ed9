"""A kept R2 snapshot rewritten to the current recipients (plain Python, no Dagster), for ``patina reencrypt``.

A night after a recipient change already stores every object it names for the new recipients (see ``backup``);
the snapshots kept from before still name objects encrypted to the old ones (or stored plaintext, from before
encryption was turned on, or under schema version 2's keys, which do not say whom an object is encrypted to).
``reencrypt_snapshot`` gives such a snapshot objects of the current recipients: each object it names is read
back (decrypted with the identity, which must open it), checked against the sha256 its entry records, encrypted
to the current recipients and stored under their key (``r2/objects/<sha256>.<recipients>.age``, skipped when a
night or another snapshot stored it already); then its entries file is encrypted to them, and the manifest
switches to it through the one publish step.  A missing or damaged object stops that snapshot before its
manifest changes (the snapshot stays as it was, and is reported).  The old objects are left for garbage
collection, which deletes them once no kept snapshot names them (the next night's R2 run).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from ..encryption import AgeKeys
from ..leftovers import scratch_directory
from ..storage import (
    Bucket,
    Publication,
    StorageIntegrityError,
    new_generation,
    patina_version,
    publish,
    utc_timestamp,
)
from .backup import (
    DEFAULT_CONCURRENCY,
    UploadsInFlight,
    marked_in_progress,
    named_entries_key,
    seal_and_put,
    superseded_entries,
)
from .layout import (
    ENCRYPTED_SCHEMA_VERSION,
    ENTRIES_CONTENT_TYPE,
    EntriesWriter,
    Entry,
    SnapshotManifest,
    entries_key,
    object_key,
    open_entries,
    read_object,
    recipients_id,
    sealing_of,
)

logger = logging.getLogger(__name__)


def snapshot_needs_reencryption(manifest: SnapshotManifest, keys: AgeKeys) -> bool:
    """True when ``manifest``'s objects are not all stored for exactly the current recipients (a plaintext
    snapshot too, once recipients are configured; a schema version 2 one always: its keys do not say)."""
    return keys.enabled and manifest.sealing != sealing_of(keys.fingerprints)


@dataclasses.dataclass(frozen=True)
class Resealed:
    manifest: SnapshotManifest  # as published
    resealed_objects: int  # read, checked and stored again for the current recipients
    stored_objects: int  # already stored for them (by a night since the change, or another snapshot)


def reencrypt_snapshot(
    backup: Bucket,
    manifest: SnapshotManifest,
    keys: AgeKeys,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    scratch_parent: Path | str | None = None,
    now: datetime | None = None,
) -> Resealed:
    """Rewrite ``manifest``'s snapshot for ``keys``' recipients (see the module docstring); every other field
    of the manifest is kept.  ``StorageError`` (a missing or damaged object, ``CiphertextDamaged`` included)
    leaves the snapshot as it was."""
    if not keys.enabled:
        raise ValueError("re-encrypting needs recipients")
    sealed_to = recipients_id(keys.fingerprints)
    generation = new_generation(now)
    key = entries_key(manifest.day, manifest.name, generation, encrypted=True)
    counts = {"resealed": 0, "stored": 0}
    with marked_in_progress(backup, manifest.name, manifest.day, generation, utc_timestamp()):
        with scratch_directory("r2-reencrypt", scratch_parent) as scratch:
            entries_path = scratch / "entries.jsonl.gz"
            with EntriesWriter(entries_path) as writer, ThreadPoolExecutor(concurrency, "patina-r2-reseal") as pool:
                pending: deque[tuple[Entry, Future[bool]]] = deque()
                uploads = UploadsInFlight()

                def settle_one() -> None:
                    entry, done = pending.popleft()
                    counts["resealed" if done.result() else "stored"] += 1
                    writer.write(entry)

                try:
                    for entry in open_entries(backup, manifest, keys):
                        pending.append(
                            (entry, pool.submit(_reseal, backup, manifest, entry, keys, sealed_to, scratch, uploads))
                        )
                        while len(pending) > max(1, concurrency) * 4:
                            settle_one()
                    while pending:
                        settle_one()
                except BaseException:
                    for _, done in pending:
                        done.cancel()
                    raise
            sealed_path = scratch / "entries.jsonl.gz.age"
            sealed = keys.seal(entries_path, sealed_path)
            new = dataclasses.replace(
                manifest,
                entries_key=key,
                entries_sha256=sealed.stored_sha256,
                entries_bytes=sealed.stored_bytes,
                encrypted=True,
                recipients=list(keys.fingerprints),
                schema_version=ENCRYPTED_SCHEMA_VERSION,
                patina_version=patina_version(),
            )
            publish(
                backup,
                Publication(
                    key,
                    sealed_path,
                    sealed.stored_bytes,
                    ENTRIES_CONTENT_TYPE,
                    new.key,
                    new.to_json(),
                    read_back_sha256=sealed.stored_sha256,
                ),
                named_key=lambda: named_entries_key(backup, new.key),
                superseded=lambda: superseded_entries(backup, new.day, new.name, key),
            )
    logger.info(
        "r2/%s %s re-encrypted to %s: %d objects stored again, %d already stored for them",
        new.name,
        new.day,
        ", ".join(new.recipients),
        counts["resealed"],
        counts["stored"],
    )
    return Resealed(new, counts["resealed"], counts["stored"])


def _reseal(
    backup: Bucket,
    manifest: SnapshotManifest,
    entry: Entry,
    keys: AgeKeys,
    sealed_to: str,
    scratch: Path,
    uploads: UploadsInFlight,
) -> bool:
    """Store ``entry``'s object for the current recipients unless it is stored for them already; True if stored.
    The bytes are checked against the entry's size and sha256 before they are encrypted again."""
    target = object_key(entry.sha256, sealed_to)
    if not uploads.claim(entry.sha256):
        return False  # the same bytes under another key of this snapshot, in flight on another thread
    try:
        if backup.stat(target) is not None:
            return False
        handle, plain_path = tempfile.mkstemp(prefix="object-", dir=scratch)
        try:
            with os.fdopen(handle, "wb") as plain:
                size, sha256 = read_object(backup, manifest, entry, plain, keys)
            if (size, sha256) != (entry.size, entry.sha256):
                raise StorageIntegrityError(
                    f"{backup.uri(manifest.object_key(entry.sha256))} (the bytes of {entry.key!r}) is damaged: it holds "
                    f"{size} bytes with sha256 {sha256}, its snapshot {manifest.key} records {entry.size} bytes "
                    f"with sha256 {entry.sha256}"
                )
            seal_and_put(backup, target, Path(plain_path), keys, scratch)
        finally:
            Path(plain_path).unlink(missing_ok=True)
        return True
    finally:
        uploads.release(entry.sha256)
