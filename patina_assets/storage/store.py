"""``BackupStore``: the backup layout (``daily/YYYY-MM-DD/...``) on a bucket, and its manifests.

A dump only counts as a backup once its manifest exists, and the manifest is written last, after the dump has
been uploaded and checked.  Readers therefore never see a backup whose bytes are missing or half-written; a
crash at any point leaves either the previous backup or the new one, plus at worst an orphan dump object that
``find_orphans`` reports.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from .. import encryption  # a module reference: encryption's errors build on storage's (buckets.py)
from .buckets import (
    _COPY_BUFFER,
    DEFAULT_PART_SIZE,
    Bucket,
    CorruptManifest,
    InvalidKey,
    ObjectInfo,
    StorageError,
    StorageIntegrityError,
    StorageObjectNotFound,
    _open_source,
    copy_hashing,
)
from .layout import (
    AGE_CONTENT_TYPE,
    AGE_SUFFIX,
    DUMP_CONTENT_TYPES,
    MANIFEST_CONTENT_TYPE,
    DailyKey,
    daily_dump_key,
    daily_manifest_key,
    daily_prefix,
    daily_verification_key,
    format_day,
    new_generation,
    parse_daily_key,
    validate_database_name,
    validate_format,
)
from .local import LocalBucket
from .manifests import NOT_VERIFIED, Manifest, VerificationRecord, read_verification, utc_timestamp
from .publish import Publication, publish
from .s3 import S3Bucket, make_s3_client

logger = logging.getLogger(__name__)


def open_bucket(
    *,
    local_path: str | Path | None = None,
    create: bool = True,
    s3_bucket: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    prefix: str = "",
    part_size: int = DEFAULT_PART_SIZE,
) -> Bucket:
    """The one factory of buckets (the command line, `patina serve` and the Dagster resources use it): a
    directory (``local_path``; ``create=False`` refuses one that does not exist) or an S3 API bucket."""
    if s3_bucket is None:
        return LocalBucket(local_path, create=create)
    client = make_s3_client(endpoint_url, region, access_key_id, secret_access_key)
    return S3Bucket(client, s3_bucket, prefix=prefix, part_size=part_size)


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

    def __init__(self, bucket: Bucket, keys: encryption.AgeKeys | None = None) -> None:
        self.bucket = bucket
        #: Encryption at rest: the recipients new backups are encrypted to (none: stored as they are) and
        #: where the identity that opens encrypted ones is found (read only when one is opened).
        self.keys = keys if keys is not None else encryption.AgeKeys()

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

        1. Hash the local dump (sha256, size): the manifest records what the stored object must be.  With
           recipients (``self.keys``), encrypt it with age beside it, streaming: the age file is what is stored
           (key ``...sql.zst.age``), and the manifest records both digests and the recipients' fingerprints.
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
        final = dataclasses.replace(
            manifest,
            bytes=size,
            sha256=sha256,
            encrypted=False,
            recipients=[],
            plaintext_bytes=None,
            plaintext_sha256=None,
        )
        if not self.keys.enabled:
            return self._publish_dump(day_text, name, dump_path, final, now=now)
        # Encrypted as the dump is uploaded: the age file is written beside the dump (the same scratch
        # directory), streaming, and only the age file leaves the machine.
        sealed_path = Path(f"{dump_path}{AGE_SUFFIX}")
        try:
            sealed = self.keys.seal(dump_path, sealed_path)
            if (sealed.plain_bytes, sealed.plain_sha256) != (size, sha256):
                raise StorageIntegrityError(f"the dump {str(dump_path)!r} changed while it was being encrypted")
            final = dataclasses.replace(
                final,
                bytes=sealed.stored_bytes,
                sha256=sealed.stored_sha256,
                encrypted=True,
                recipients=list(self.keys.fingerprints),
                plaintext_bytes=size,
                plaintext_sha256=sha256,
            )
            return self._publish_dump(day_text, name, sealed_path, final, now=now)
        finally:
            sealed_path.unlink(missing_ok=True)

    def _publish_dump(
        self,
        day_text: str,
        name: str,
        stored_path: Path | str,
        manifest: Manifest,
        *,
        now: datetime | None,
        read_back: bool = False,
    ) -> Manifest:
        """Steps 2-5 of ``publish_daily``: ``stored_path`` holds exactly the bytes ``manifest`` records."""
        previous = self._current_dump_key(day_text, name)
        generation = new_generation(now)
        key = daily_dump_key(day_text, name, manifest.format, generation, encrypted=manifest.encrypted)
        final = dataclasses.replace(manifest, key=key, created_at=utc_timestamp(now))
        publication = Publication(
            key,
            stored_path,
            final.bytes,
            AGE_CONTENT_TYPE if final.encrypted else DUMP_CONTENT_TYPES[manifest.format],
            daily_manifest_key(day_text, name),
            final.to_json().encode("utf-8"),
            read_back_sha256=final.sha256 if read_back else None,
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

    def needs_reencryption(self, manifest: Manifest) -> bool:
        """True when ``manifest``'s backup is not encrypted to exactly the current recipients (an unencrypted
        one too, once recipients are configured)."""
        if not self.keys.enabled:
            return False
        return not manifest.encrypted or sorted(manifest.recipients) != list(self.keys.fingerprints)

    def reencrypt_daily(self, manifest: Manifest, scratch: Path, *, now: datetime | None = None) -> Manifest:
        """Rewrite one stored backup for the current recipients, through the one publish step.

        The old object is decrypted (the identity must open it) into ``scratch`` and checked against the
        manifest's digests; it is encrypted again, uploaded, read back whole, and only then does the manifest
        switch to it and the old object go.  Every other field of the manifest is kept, and so is its
        verification verdict: the new object holds the very bytes that were verified (see
        ``_carry_verification``).
        """
        if not self.keys.enabled:
            raise ValueError("no recipients to encrypt to: list them under encryption.recipients first")
        plain = Path(scratch) / f"{manifest.database}.{manifest.day}.{manifest.format}"
        with self.open_dump(manifest) as source, open(plain, "wb") as out:
            while chunk := source.read(_COPY_BUFFER):
                out.write(chunk)
        size, sha256 = _file_digest(plain)
        if (size, sha256) != (manifest.dump_bytes, manifest.dump_sha256):
            raise StorageIntegrityError(
                f"{self.bucket.uri(manifest.key)} does not hold the dump its manifest records: nothing was rewritten"
            )
        sealed_path = Path(f"{plain}{AGE_SUFFIX}")
        try:
            sealed = self.keys.seal(plain, sealed_path)
            rewritten = dataclasses.replace(
                manifest,
                bytes=sealed.stored_bytes,
                sha256=sealed.stored_sha256,
                encrypted=True,
                recipients=list(self.keys.fingerprints),
                plaintext_bytes=size,
                plaintext_sha256=sha256,
            )
            record = self.get_verification(manifest.day, manifest.database)
            final = self._publish_dump(manifest.day, manifest.database, sealed_path, rewritten, now=now, read_back=True)
        finally:
            sealed_path.unlink(missing_ok=True)
            plain.unlink(missing_ok=True)
        self._carry_verification(manifest, final, record)
        return final

    def _carry_verification(self, old: Manifest, new: Manifest, record: VerificationRecord | None) -> None:
        """Restore verification checks the dump's content; a rewrite that proved the plaintext identical
        keeps the verdict, naming the new object (else every rewritten backup would read "not verified")."""
        if record is None or record.status_of(old.key, old.sha256) == NOT_VERIFIED:
            return
        carried = dataclasses.replace(record, key=new.key, sha256=new.sha256)
        try:
            self.record_verification(new, carried)
        except StorageError as exc:
            logger.warning("the verification of %s was not carried over to %s: %s", old.key, new.key, exc)

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
        # Only the database's own keys (`<database>.<generation>...`): a day of a fleet holds thousands of others'.
        # A name that extends this one with a dot (`scout.eu` for `scout`) is listed too, and left out by the parse.
        for info in self.bucket.list(f"{daily_prefix(day)}{database}."):
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

    def inventory(
        self,
        database: str | None = None,
        day: date | str | None = None,
        *,
        objects: Mapping[str, ObjectInfo] | None = None,
    ) -> DailyInventory:
        """List ``daily/`` once and sort every object into backups, orphans, corrupt and broken (``objects``:
        a listing of ``daily/`` already made, key -> info, so one listing serves several inventories)."""
        if database is not None:
            validate_database_name(database)
        if objects is None:
            # One database on one day (a download, a restore): only its keys, not every database's of that day
            # (a fleet's thousands); a name that merely starts alike ("foo" beside "foo.x") is filtered below.
            narrow = f"{database}." if day is not None and database is not None else ""
            objects = {info.key: info for info in self.bucket.list(daily_prefix(day) + narrow)}
        elif day is not None:
            prefix = daily_prefix(day)
            objects = {key: info for key, info in objects.items() if key.startswith(prefix)}
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
        """Stream the compressed dump ``manifest`` describes (``manifest.dump_bytes``/``dump_sha256``): the
        stored object, or for an encrypted backup its plaintext, decrypted whole (needs the identity) before
        the first byte is returned.  A damaged encrypted object raises ``CiphertextDamaged``."""
        raw = self.bucket.open(_dump_key_of(manifest))
        if not manifest.encrypted:
            return raw
        return self.keys.open_decrypted(
            raw, what=self.bucket.uri(manifest.key), stored_sha256=manifest.sha256, recipients=manifest.recipients
        )

    def verify(self, manifest: Manifest) -> bool:
        """Re-read the stored dump and check its size and sha256 against the manifest.

        False when the dump is missing or differs; other storage errors (access, network) raise, since
        they say nothing about the backup itself.
        """
        try:
            reader = self.bucket.open(_dump_key_of(manifest))  # the stored bytes: no identity needed
        except StorageObjectNotFound:
            return False
        with reader:
            size, sha256 = copy_hashing(reader)
        return size == manifest.bytes and sha256 == manifest.sha256

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
    with _open_source(path) as source:
        return copy_hashing(source)


def _older(key: str, generation: str) -> bool:
    """True for a dump from before ``generation`` (plain, generation-less keys count as older)."""
    parsed = parse_daily_key(key)
    return parsed is not None and (parsed.generation is None or parsed.generation < generation)
