"""Weekly archives: a week's daily backups packed into one compressed tar, read back and verified.

Plain Python (no Dagster), so the Dagster asset, the operators' tools and the tests share it.

Layout, beside the dailies (key helpers in ``storage``)::

    weekly/2026-01-04.manifest.json                        <- the archive counts once this exists (written last)
    weekly/2026-01-04.20260111T040012123456Z-3f9a1c.tar.zst <- the archive it names

A week runs Sunday to Saturday (UTC) and is named by its Sunday, the Dagster partition key.  (ISO week
names such as ``2026-W02`` start on Monday, so a Sunday-to-Saturday week straddles two of them.)  Each
build gets a fresh key, as daily dumps do: a rebuild never overwrites the archive the current manifest
names, so a failed rebuild leaves the previous archive whole and counted.

Inside the archive (a POSIX tar), for every daily backup of the week, database by database, day by day::

    daily/2026-01-04/groveauth.sql             <- the dump's SQL, uncompressed
    daily/2026-01-04/groveauth.manifest.json   <- its daily manifest, as stored
    ...
    index.json                                 <- week, days, databases, members (sha256, bytes), missing days

Successive days of a database are nearly identical, and the SQL is stored uncompressed inside the tar so
the archive's compressor sees the repeats: zstd with long-distance matching and a 128 MiB window
(``--long=27``) stores each repeat once.  ``tar.gz`` (the spec's format) is the other option; gzip's
32 KiB window finds none of them.  Open an archive with standard tools::

    zstd -d --long=27 2026-01-04.<generation>.tar.zst -o week.tar && tar -xf week.tar
    tar --use-compress-program='zstd -d --long=27' -xf 2026-01-04.<generation>.tar.zst
    tar -xzf 2026-01-04.<generation>.tar.gz

Everything streams: a dump is fetched, decompressed and checked into a temporary file, one at a time, and
the archive is compressed into a temporary file as it is written; nothing holds a whole dump in memory.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import logging
import tarfile
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

import zstandard

from .config import WEEKLY_FORMATS
from .encryption import CiphertextDamaged
from .engine.errors import CorruptDump
from .engine.formats import (
    GZIP_MAGIC,
    ZSTD_MAGIC,
    HashingReader,
    HashingWriter,
    decompressing_reader,
)
from .leftovers import scratch_directory
from .storage import (
    AGE_CONTENT_TYPE,
    AGE_SUFFIX,
    ARCHIVE_CONTENT_TYPES,
    VERIFIED,
    WEEKLY_PREFIX,
    ZSTD_WINDOW_LOG,
    ArchiveIndex,
    ArchiveManifest,
    ArchiveMember,
    BackupStore,
    CorruptManifest,
    Manifest,
    ObjectInfo,
    Publication,
    StorageError,
    StorageIntegrityError,
    StorageObjectNotFound,
    VerificationRecord,
    copy_hashing,
    daily_manifest_key,
    format_day,
    new_generation,
    parse_weekly_key,
    publish,
    read_verification,
    utc_timestamp,
    validate_week,
    week_days,
    weekly_archive_key,
    weekly_manifest_key,
    weekly_verification_key,
)

logger = logging.getLogger(__name__)

INDEX_NAME = "index.json"
ZSTD_LEVEL = 3
GZIP_LEVEL = 6
_COPY_BUFFER = 1024 * 1024


class EmptyWeek(ValueError):
    """The week has no daily backup to archive (and no archive yet)."""


@dataclass
class ArchiveVerification:
    """The stored archive read back from the bucket and checked member by member.

    ``verified`` maps each (day, database) the archive proved to hold to that SQL's sha256; it is empty
    unless ``ok``: a daily may only be deleted on the word of an archive that checked out entirely.
    """

    week: str
    key: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    verified: dict[tuple[str, str], str] = field(default_factory=dict)
    members: int = 0
    bytes_read: int = 0
    sha256: str = ""  # of the stored archive, as read back
    seconds: float = 0.0

    def holds(self, day: str, database: str, sql_sha256: str) -> bool:
        """True when this verified archive holds exactly that SQL for (day, database)."""
        return self.ok and self.verified.get((day, database)) == sql_sha256


@dataclass
class BuildOutcome:
    """What ``ArchiveStore.build`` did.

    ``action``: ``created`` (first archive of the week), ``replaced`` (rebuilt with new or re-run dailies,
    or because the stored one failed verification), ``unchanged`` (the stored archive already holds exactly
    the week's dailies and verified), ``kept`` (the stored archive holds backups whose dailies are gone, so
    it is never replaced; dailies it lacks are listed in ``not_archived``).
    """

    manifest: ArchiveManifest
    action: str
    verification: ArchiveVerification
    reason: str = ""
    not_archived: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class WeeklyInventory:
    """One pass over ``weekly/``, sorted like ``DailyInventory``.

    * ``archives``: manifests that parse and whose archive exists with the recorded size.
    * ``orphans``: archive objects no manifest names (builds that never got their manifest).
    * ``corrupt``: manifest key -> why it cannot be read.
    * ``broken``: manifest key -> why its archive is unusable (missing, or not the recorded size).

    Keys under ``weekly/`` that are neither are ignored here (reconciliation reports them as strays).
    """

    archives: list[ArchiveManifest] = field(default_factory=list)
    orphans: list[ObjectInfo] = field(default_factory=list)
    corrupt: dict[str, str] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    broken_archives: dict[str, ArchiveManifest] = field(default_factory=dict)  # manifest key -> its manifest


# --------------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------------


def zstd_parameters() -> zstandard.ZstdCompressionParameters:
    """Level 3 with long-distance matching over a 128 MiB window: repeats a day apart are stored once."""
    return zstandard.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL, window_log=ZSTD_WINDOW_LOG, enable_ldm=True, write_checksum=True
    )


def decompress_archive(raw: BinaryIO) -> BinaryIO:
    """The tar stream inside a ``.tar.zst`` or ``.tar.gz`` (told by content, not by name)."""
    buffered = raw if hasattr(raw, "peek") else io.BufferedReader(raw, _COPY_BUFFER)  # type: ignore[arg-type]
    head = buffered.peek(4)[:4]
    if head == ZSTD_MAGIC:
        decompressor = zstandard.ZstdDecompressor(max_window_size=1 << ZSTD_WINDOW_LOG)
        return decompressor.stream_reader(buffered, read_across_frames=True, closefd=True)  # type: ignore[return-value]
    if head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    raise CorruptDump("not a Patina weekly archive: it is neither zstd nor gzip")


_READ_ERRORS = (tarfile.TarError, zstandard.ZstdError, zlib.error, gzip.BadGzipFile, EOFError, CorruptDump)


@contextmanager
def iter_tar(raw: BinaryIO) -> Iterator[Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]]:
    """Walk the members of a compressed archive stream in order, each with a reader for its content.

    Works on any stream (an object read from the bucket, a local file): the tar is read sequentially,
    never seeked, and each reader is only valid until the next member.
    """
    with decompress_archive(raw) as tar_stream, tarfile.open(fileobj=tar_stream, mode="r|") as tar:

        def members() -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
            for info in tar:
                yield info, (tar.extractfile(info) if info.isfile() else None)

        yield members()


def read_archive_index(path: Path | str) -> ArchiveIndex:
    """The ``index.json`` of a local archive file (it is the last member, so this reads the whole file)."""
    with open(path, "rb") as raw, iter_tar(raw) as members:
        for info, reader in members:
            if info.name == INDEX_NAME and reader is not None:
                return ArchiveIndex.from_dict(json.loads(reader.read()), key=str(path))
    raise CorruptDump(f"{path} has no {INDEX_NAME}: it is not a complete Patina weekly archive")


class _ArchiveWriter:
    """A tar written through a compressor into a local file, hashed as it goes."""

    def __init__(self, path: Path, fmt: str) -> None:
        if fmt not in WEEKLY_FORMATS:
            raise ValueError(f"unknown archive format {fmt!r}: expected one of {', '.join(WEEKLY_FORMATS)}")
        self._file = open(path, "wb")
        self._hashing = HashingWriter(self._file)  # type: ignore[arg-type]
        if fmt == "tar.zst":
            compressor = zstandard.ZstdCompressor(compression_params=zstd_parameters())
            self._compressed: Any = compressor.stream_writer(self._hashing, closefd=False)
        else:
            self._compressed = gzip.GzipFile(fileobj=self._hashing, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)
        self._tar = tarfile.open(fileobj=self._compressed, mode="w|", format=tarfile.PAX_FORMAT)

    def add(self, name: str, source: IO[bytes], size: int, mtime: float) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, mtime, 0o600
        info.uname = info.gname = "patina"
        self._tar.addfile(info, source)

    def add_bytes(self, name: str, data: bytes, mtime: float) -> None:
        self.add(name, io.BytesIO(data), len(data), mtime)

    def finish(self) -> tuple[int, str]:
        """Close the tar and the compressor; return the archive's size and sha256."""
        self._tar.close()
        self._compressed.close()
        self._file.close()
        return self._hashing.bytes, self._hashing.sha256.hexdigest()

    def abort(self) -> None:
        for closing in (self._tar.close, self._compressed.close, self._file.close):
            try:
                closing()
            except Exception:  # noqa: BLE001 - already failing; the file is discarded with its directory
                pass


# --------------------------------------------------------------------------------------------------
# ArchiveStore
# --------------------------------------------------------------------------------------------------


class ArchiveStore:
    """The ``weekly/`` half of the bucket, on top of a ``BackupStore`` (whose dailies it archives)."""

    def __init__(self, store: BackupStore) -> None:
        self.store = store
        self.bucket = store.bucket

    def describe(self) -> str:
        return f"weekly archives in {self.bucket.describe()}"

    # -- reading -------------------------------------------------------------------------------

    def get_manifest(self, week: date | str) -> ArchiveManifest | None:
        """The manifest of ``week``; None if there is none; ``CorruptManifest`` if unreadable."""
        key = weekly_manifest_key(validate_week(week))
        try:
            raw = self.bucket.get_bytes(key)
        except StorageObjectNotFound:
            return None
        return ArchiveManifest.from_json(raw, key=key)

    def list(self) -> list[ArchiveManifest]:
        """Archives that count (readable manifest, archive present with the recorded size), oldest first."""
        return self.inventory().archives

    def inventory(self, objects: Mapping[str, ObjectInfo] | None = None) -> WeeklyInventory:
        """List ``weekly/`` once (``objects``: such a listing already made, key -> info) and sort every object
        into archives, orphans, corrupt and broken."""
        if objects is None:
            objects = {info.key: info for info in self.bucket.list(WEEKLY_PREFIX)}
        result = WeeklyInventory()
        referenced: set[str] = set()
        unreadable_weeks: set[str] = set()
        for key in sorted(objects):
            parsed = parse_weekly_key(key)
            if parsed is not None and parsed.kind == "manifest":
                try:
                    manifest = self.get_manifest(parsed.week)
                except CorruptManifest as exc:
                    result.corrupt[key] = str(exc)
                    unreadable_weeks.add(parsed.week)
                    continue
                if manifest is None:  # deleted since the listing
                    continue
                referenced.add(manifest.key)
                stored = objects.get(manifest.key) or self.bucket.stat(manifest.key)
                if stored is None:
                    result.broken[key] = f"its archive {manifest.key} is missing"
                elif stored.size != manifest.bytes:
                    result.broken[key] = f"its archive {manifest.key} has {stored.size} bytes, not {manifest.bytes}"
                else:
                    result.archives.append(manifest)
                    continue
                result.broken_archives[key] = manifest
        result.orphans = [
            info
            for key, info in sorted(objects.items())
            if (parsed := parse_weekly_key(key)) is not None
            and parsed.kind == "archive"
            and key not in referenced
            and parsed.week not in unreadable_weeks  # beside an unreadable manifest it may be the only copy
        ]
        return result

    def open_archive(self, manifest: ArchiveManifest) -> BinaryIO:
        """The compressed archive (``archive_bytes``/``archive_sha256``): the stored object, or for an
        encrypted one its plaintext, decrypted whole (needs the identity) before the first byte is returned."""
        raw = self.bucket.open(manifest.key)
        if not manifest.encrypted:
            return raw
        return self.store.keys.open_decrypted(
            raw, what=self.bucket.uri(manifest.key), stored_sha256=manifest.sha256, recipients=manifest.recipients
        )

    def verify(self, manifest: ArchiveManifest) -> ArchiveVerification:
        """Read the stored archive back and check it whole: its size and sha256, every member's SQL against
        the sha256 its daily manifest records, every daily manifest, and the index.

        Storage errors other than a missing object (access, network) raise: they say nothing about the
        archive itself.
        """
        started = time.monotonic()
        result = ArchiveVerification(week=manifest.week, key=manifest.key, ok=False)
        expected_sql = {m.path: m for m in manifest.index.members}
        expected_manifests = {m.manifest_path: m for m in manifest.index.members}
        seen: set[str] = set()
        checked: dict[tuple[str, str], str] = {}
        problems = result.problems
        if manifest.encrypted and not self.store.keys.has_identity():
            return self._verify_stored_bytes(manifest, result, started)
        try:
            raw = HashingReader(self.open_archive(manifest))
        except StorageObjectNotFound:
            problems.append(f"the archive {manifest.key} is missing from the bucket")
            return result
        except CiphertextDamaged as exc:
            problems.append(str(exc))
            result.seconds = time.monotonic() - started
            return result
        try:
            with raw, iter_tar(raw) as members:
                for info, reader in members:
                    self._check_member(
                        info, reader, manifest, expected_sql, expected_manifests, seen, checked, problems
                    )
                raw.drain()
        except _READ_ERRORS + (OSError,) as exc:  # StorageErrors (network, access) are not among them: they raise
            problems.append(f"the archive cannot be read to its end: {exc}")
        result.bytes_read = raw.bytes
        result.sha256 = raw.sha256.hexdigest()
        if not problems and (raw.bytes != manifest.archive_bytes or raw.sha256.hexdigest() != manifest.archive_sha256):
            problems.append(
                f"the stored archive ({raw.bytes} bytes, sha256 {raw.sha256.hexdigest()[:12]}...) is not the one "
                f"its manifest records ({manifest.archive_bytes} bytes, sha256 {manifest.archive_sha256[:12]}...)"
            )
        elif manifest.encrypted:  # decrypting checked the stored bytes against the manifest: they were read
            result.bytes_read, result.sha256 = manifest.bytes, manifest.sha256
        absent = sorted((set(expected_sql) | set(expected_manifests) | {INDEX_NAME}) - seen)
        if absent and not any("cannot be read" in p for p in problems):
            problems.append(f"members missing from the archive: {', '.join(absent[:10])}")
        result.members = len(checked)
        result.ok = not problems
        result.verified = dict(checked) if result.ok else {}
        result.seconds = time.monotonic() - started
        return result

    def _verify_stored_bytes(
        self, manifest: ArchiveManifest, result: ArchiveVerification, started: float
    ) -> ArchiveVerification:
        """An encrypted archive where no identity is at hand (retention, reconciliation): its stored bytes are
        read and must be the ones its manifest records, and a passing verification of exactly those bytes
        (read and decrypted whole when the archive was built, with the identity) vouches for its members."""
        try:
            raw = HashingReader(self.bucket.open(manifest.key))
        except StorageObjectNotFound:
            result.problems.append(f"the archive {manifest.key} is missing from the bucket")
            return result
        with raw:
            raw.drain()
        result.bytes_read, result.sha256 = raw.bytes, raw.sha256.hexdigest()
        record = self.get_verification(manifest.week)
        if (raw.bytes, result.sha256) != (manifest.bytes, manifest.sha256):
            result.problems.append(
                f"the stored archive ({raw.bytes} bytes, sha256 {result.sha256[:12]}...) is not the one its manifest "
                f"records ({manifest.bytes} bytes, sha256 {manifest.sha256[:12]}...)"
            )
        elif record is None or record.status_of(manifest.key, manifest.sha256) != VERIFIED:
            result.problems.append(
                f"{manifest.key} is encrypted, no identity is at hand (${self.store.keys.identity_env}) to read it, "
                "and no passing verification of these bytes vouches for its members: run the weekly archive (or "
                "reconcile) where the identity is set"
            )
        result.members = len(manifest.index.members) if not result.problems else 0
        result.ok = not result.problems
        result.verified = {m.slot: m.sql_sha256 for m in manifest.index.members} if result.ok else {}
        result.seconds = time.monotonic() - started
        return result

    @staticmethod
    def _check_member(
        info: tarfile.TarInfo,
        reader: IO[bytes] | None,
        manifest: ArchiveManifest,
        expected_sql: Mapping[str, ArchiveMember],
        expected_manifests: Mapping[str, ArchiveMember],
        seen: set[str],
        checked: dict[tuple[str, str], str],
        problems: list[str],
    ) -> None:
        name = info.name
        if reader is None or name in seen:
            problems.append(f"unexpected member {name!r} (not a file, or repeated)")
            return
        seen.add(name)
        if name == INDEX_NAME:
            try:
                inside = ArchiveIndex.from_dict(json.loads(reader.read()), key=f"{manifest.key}:{INDEX_NAME}")
            except (CorruptManifest, json.JSONDecodeError, UnicodeDecodeError) as exc:
                problems.append(f"{INDEX_NAME} is unreadable: {exc}")
                return
            if inside != manifest.index:
                problems.append(f"{INDEX_NAME} inside the archive differs from the index in its manifest")
        elif name in expected_sql:
            member = expected_sql[name]
            size, sha = copy_hashing(reader)
            if (size, sha) != (member.sql_bytes, member.sql_sha256):
                problems.append(
                    f"{name}: {size} bytes with sha256 {sha[:12]}..., but its daily manifest records "
                    f"{member.sql_bytes} bytes with sha256 {member.sql_sha256[:12]}..."
                )
            else:
                checked[member.slot] = sha
        elif name in expected_manifests:
            member = expected_manifests[name]
            data = reader.read()
            if hashlib.sha256(data).hexdigest() != member.manifest_sha256:
                problems.append(f"{name}: the daily manifest differs from the one archived")
                return
            try:
                daily = Manifest.from_json(data, key=f"{manifest.key}:{name}")
            except CorruptManifest as exc:
                problems.append(str(exc))
                return
            if (daily.day, daily.database, daily.sql_sha256, daily.sql_bytes) != (
                member.day,
                member.database,
                member.sql_sha256,
                member.sql_bytes,
            ):
                problems.append(f"{name}: the daily manifest does not describe {member.path} as indexed")
        else:
            problems.append(f"unexpected member {name!r}: the index does not list it")

    def extract(
        self, manifest: ArchiveManifest, destination: Path | str, slots: Iterable[tuple[str, str]] | None = None
    ) -> dict[tuple[str, str], Path]:
        """Write members' SQL (all, or the given (day, database) slots) under ``destination`` as
        ``daily/DAY/<db>.sql``, each checked against its sha256; one pass over the stored archive.

        A member that does not match raises ``StorageIntegrityError`` and leaves no file under its name.
        Paths come from the index, never from names inside the tar, so an archive cannot write elsewhere.
        """
        wanted = {m.path: m for m in manifest.index.members if slots is None or m.slot in set(slots)}
        if slots is not None:
            unknown = set(slots) - {m.slot for m in wanted.values()}
            if unknown:
                raise StorageObjectNotFound(
                    f"archive {manifest.key} does not hold {', '.join(f'{db} on {day}' for day, db in sorted(unknown))}"
                )
        out: dict[tuple[str, str], Path] = {}
        root = Path(destination)
        with self.open_archive(manifest) as raw, iter_tar(raw) as members:
            for info, reader in members:
                member = wanted.get(info.name)
                if member is None or reader is None:
                    continue
                target = root.joinpath("daily", member.day, f"{member.database}.sql")
                out[member.slot] = _write_checked(reader, target, member, manifest.key)
                if len(out) == len(wanted):
                    break
        if len(out) != len(wanted):
            lost = sorted(set(wanted) - {m.path for m in wanted.values() if m.slot in out})
            raise StorageIntegrityError(f"archive {manifest.key} lacks members its index lists: {', '.join(lost[:5])}")
        return out

    # -- building ------------------------------------------------------------------------------

    def build(
        self,
        week: date | str,
        databases: Iterable[str],
        fmt: str = "tar.zst",
        *,
        first_day: date | str | None = None,
        run_id: str | None = None,
        now: datetime | None = None,
    ) -> BuildOutcome:
        """Archive the week's daily backups (one object) and read it back to verify it.

        ``databases`` are the configured ones: each day one of them has no usable backup is listed as
        missing (databases found in the bucket are archived too).  ``first_day`` (the configured start
        date) keeps days before it from counting as missing.  An existing archive is kept when it already
        holds exactly these dailies, or when it holds backups whose dailies are gone (it is then the only
        copy: see ``BuildOutcome``).  Raises ``EmptyWeek`` when there is nothing at all to archive.
        """
        outcome = self._build(week, databases, fmt, first_day=first_day, run_id=run_id, now=now)
        self.record_verification(outcome.manifest, outcome.verification, run_id=run_id, now=now)
        return outcome

    def _build(
        self,
        week: date | str,
        databases: Iterable[str],
        fmt: str,
        *,
        first_day: date | str | None,
        run_id: str | None,
        now: datetime | None,
    ) -> BuildOutcome:
        started = time.monotonic()
        week = validate_week(week)
        first = format_day(first_day) if first_day is not None else None
        days = [d for d in week_days(week) if first is None or d >= first]
        current = {(m.day, m.database): m for day in days for m in self.store.list_daily(day=day)}
        existing = self._readable_manifest(week)
        if existing is not None:
            kept = self._keep_existing(existing, current)
            if kept is not None:
                kept.seconds = time.monotonic() - started
                return kept
        if not current:
            raise EmptyWeek(
                f"week {week} has no daily backups in {self.bucket.describe()} to archive: "
                "run the nightly job for its days first"
            )
        manifest = self._write(
            week, days, sorted(set(databases) | {db for _, db in current}), current, fmt, run_id, now
        )
        verification = self.verify(manifest)
        action = "created" if existing is None else "replaced"
        reason = "" if existing is None else "the week's dailies changed or the stored archive failed verification"
        return BuildOutcome(manifest, action, verification, reason, seconds=time.monotonic() - started)

    def record_verification(
        self,
        manifest: ArchiveManifest,
        verification: ArchiveVerification,
        *,
        run_id: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Keep the verdict beside the archive (``weekly/<week>.verification.json``), for the tools; a failure
        to write it is logged (the archive then reads as not yet verified)."""
        record = VerificationRecord(
            key=manifest.key,
            sha256=verification.sha256,
            passed=verification.ok,
            checked_at=utc_timestamp(now),
            problems=tuple(verification.problems),
            dagster_run_id=run_id,
        )
        try:
            self.bucket.put_bytes(
                weekly_verification_key(manifest.week),
                record.to_json().encode("utf-8"),
                content_type="application/json",
            )
        except StorageError as exc:
            logger.warning("could not record the verification of %s: %s", manifest.key, exc)

    def get_verification(self, week: date | str) -> VerificationRecord | None:
        return read_verification(self.bucket, weekly_verification_key(validate_week(week)))

    def _readable_manifest(self, week: str) -> ArchiveManifest | None:
        try:
            return self.get_manifest(week)
        except CorruptManifest as exc:
            logger.warning("rebuilding week %s: its manifest is unreadable (%s)", week, exc)
            return None

    def _keep_existing(
        self, existing: ArchiveManifest, current: Mapping[tuple[str, str], Manifest]
    ) -> BuildOutcome | None:
        held = {m.slot: m.sql_sha256 for m in existing.index.members}
        available = {slot: m.sql_sha256 for slot, m in current.items()}
        if held == available:
            verification = self.verify(existing)
            if verification.ok:
                return BuildOutcome(
                    existing, "unchanged", verification, "the stored archive already holds these dailies"
                )
            logger.warning("rebuilding week %s: %s", existing.week, "; ".join(verification.problems))
            return None
        gone = sorted(slot for slot in held if slot not in available)
        if not gone:
            return None  # new or re-run dailies, and every archived backup is still a daily: rebuild
        verification = self.verify(existing)
        lacking = sorted(slot for slot, sha in available.items() if held.get(slot) != sha)
        reason = (
            f"kept: it holds {len(gone)} backup(s) whose dailies are gone (e.g. {gone[0][1]} on {gone[0][0]}), "
            "so it is the only copy and is never replaced"
        )
        return BuildOutcome(existing, "kept", verification, reason, not_archived=lacking)

    def _write(
        self,
        week: str,
        days: list[str],
        databases: list[str],
        current: Mapping[tuple[str, str], Manifest],
        fmt: str,
        run_id: str | None,
        now: datetime | None,
    ) -> ArchiveManifest:
        members: list[ArchiveMember] = []
        skipped: dict[str, str] = {}
        with scratch_directory("archive") as tmp:  # swept by the next run if this one is killed
            path = tmp / f"{week}.{fmt}"
            writer = _ArchiveWriter(path, fmt)
            try:
                # Database by database, day by day: each day's dump sits right after yesterday's.
                for slot in sorted(current, key=lambda s: (s[1], s[0])):
                    daily = current[slot]
                    member = self._add_daily(writer, daily, Path(tmp) / "member.sql")
                    if isinstance(member, str):
                        skipped[daily_manifest_key(daily.day, daily.database)] = member
                        logger.warning("not archiving %s on %s: %s", daily.database, daily.day, member)
                    else:
                        members.append(member)
                held = {m.slot for m in members}
                index = ArchiveIndex(
                    week=week,
                    format=fmt,
                    days=tuple(days),
                    databases=tuple(databases),
                    members=tuple(members),
                    missing={db: tuple(d for d in days if (d, db) not in held) for db in databases},
                    skipped=skipped,
                    created_at=utc_timestamp(now),
                    dagster_run_id=run_id,
                )
                writer.add_bytes(INDEX_NAME, index.to_json().encode("utf-8"), time.time())
                size, sha256 = writer.finish()
            except BaseException:
                writer.abort()
                raise
            if not members:
                raise EmptyWeek(f"week {week}: no daily backup could be archived ({'; '.join(skipped.values())})")
            keys = self.store.keys
            key = weekly_archive_key(week, fmt, new_generation(now), encrypted=keys.enabled)
            if not keys.enabled:
                return self._publish(path, ArchiveManifest(index, key, size, sha256, created_at=""), now)
            # The archive compressed the plaintext; the age file is encrypted from the compressed archive
            # (ciphertext does not compress).
            sealed_path = path.with_name(path.name + AGE_SUFFIX)
            sealed = keys.seal(path, sealed_path)
            path.unlink()
            if (sealed.plain_bytes, sealed.plain_sha256) != (size, sha256):
                raise StorageIntegrityError(f"the archive {path} changed while it was being encrypted")
            sealed_manifest = ArchiveManifest(
                index,
                key,
                sealed.stored_bytes,
                sealed.stored_sha256,
                created_at="",
                encrypted=True,
                recipients=tuple(keys.fingerprints),
                plaintext_bytes=size,
                plaintext_sha256=sha256,
            )
            return self._publish(sealed_path, sealed_manifest, now)

    def _add_daily(self, writer: _ArchiveWriter, daily: Manifest, scratch: Path) -> ArchiveMember | str:
        """Fetch one dump, decompress it into ``scratch`` checking both digests, and add it with its
        manifest.  Returns the member, or why the dump cannot be archived (it does not match its manifest)."""
        try:
            raw = HashingReader(self.store.open_dump(daily))
        except StorageObjectNotFound:
            return f"its dump {daily.key} is missing"
        except CiphertextDamaged as exc:  # a wrong or missing identity raises: the week is not archived
            return str(exc)
        try:
            with raw, decompressing_reader(raw, daily.key) as sql, open(scratch, "wb") as out:  # type: ignore[arg-type]
                sql_bytes, sql_sha256 = copy_hashing(sql, out)
                raw.drain()
        except _READ_ERRORS + (OSError,) as exc:  # StorageErrors (network, access) raise
            return f"its dump {daily.key} cannot be decompressed: {exc}"
        if (raw.bytes, raw.sha256.hexdigest()) != (daily.dump_bytes, daily.dump_sha256):
            return f"its dump {daily.key} is not the one its manifest records (size or sha256 differs)"
        if (sql_bytes, sql_sha256) != (daily.sql_bytes, daily.sql_sha256):
            return f"the SQL in {daily.key} does not match the sql_sha256 its manifest records"
        manifest_json = daily.to_json().encode("utf-8")  # exactly what publish_daily stored
        member = ArchiveMember(
            database=daily.database,
            day=daily.day,
            sql_bytes=sql_bytes,
            sql_sha256=sql_sha256,
            manifest_bytes=len(manifest_json),
            manifest_sha256=hashlib.sha256(manifest_json).hexdigest(),
            daily_key=daily.key,
            tables=daily.tables,
            rows=daily.rows,
            captured_at=daily.captured_at,
        )
        mtime = _timestamp_seconds(daily.created_at)
        with open(scratch, "rb") as source:
            writer.add(member.path, source, sql_bytes, mtime)
        writer.add_bytes(member.manifest_path, manifest_json, mtime)
        return member

    def needs_reencryption(self, manifest: ArchiveManifest) -> bool:
        """True when the archive is not encrypted to exactly the current recipients (see BackupStore's)."""
        keys = self.store.keys
        return keys.enabled and (not manifest.encrypted or sorted(manifest.recipients) != list(keys.fingerprints))

    def reencrypt(self, manifest: ArchiveManifest, *, now: datetime | None = None) -> ArchiveManifest:
        """Rewrite the week's archive for the current recipients, as ``BackupStore.reencrypt_daily`` does a
        daily: decrypted and checked against its manifest, encrypted again, uploaded, read back, and only then
        published (``storage.publish``) with the old object removed; its verification verdict is kept."""
        keys = self.store.keys
        if not keys.enabled:
            raise ValueError("no recipients to encrypt to: list them under encryption.recipients first")
        with scratch_directory("reencrypt") as tmp:
            plain = tmp / f"{manifest.week}.{manifest.format}"
            with self.open_archive(manifest) as source, open(plain, "wb") as out:
                size, sha256 = copy_hashing(source, out)
            if (size, sha256) != (manifest.archive_bytes, manifest.archive_sha256):
                raise StorageIntegrityError(
                    f"{self.bucket.uri(manifest.key)} does not hold the archive its manifest records: nothing was rewritten"
                )
            sealed_path = tmp / f"{plain.name}{AGE_SUFFIX}"
            sealed = keys.seal(plain, sealed_path)
            record = self.get_verification(manifest.week)
            rewritten = dataclasses.replace(
                manifest,
                key=weekly_archive_key(manifest.week, manifest.format, new_generation(now), encrypted=True),
                bytes=sealed.stored_bytes,
                sha256=sealed.stored_sha256,
                encrypted=True,
                recipients=tuple(keys.fingerprints),
                plaintext_bytes=size,
                plaintext_sha256=sha256,
            )
            final = self._publish(sealed_path, rewritten, now, read_back=True)
        if record is not None and record.status_of(manifest.key, manifest.sha256) == VERIFIED:
            carried = dataclasses.replace(record, key=final.key, sha256=final.sha256)
            try:
                self.bucket.put_bytes(
                    weekly_verification_key(final.week),
                    carried.to_json().encode("utf-8"),
                    content_type="application/json",
                )
            except StorageError as exc:
                logger.warning("the verification of %s was not carried over to %s: %s", manifest.key, final.key, exc)
        return final

    def _publish(
        self, path: Path, manifest: ArchiveManifest, now: datetime | None, *, read_back: bool = False
    ) -> ArchiveManifest:
        """Upload the archive and switch its manifest to it with ``storage.publish``, the publish step the
        dailies use (same order, same rule: confirmed by reading the manifest back, or every object kept)."""
        week = manifest.week
        previous = self._readable_key(week)
        final = dataclasses.replace(manifest, created_at=utc_timestamp(now))
        generation = parse_weekly_key(final.key).generation or ""  # type: ignore[union-attr]

        def named_key() -> str | None:
            current = self.get_manifest(week)
            return current.key if current else None

        def superseded() -> list[str]:
            # The archive the old manifest named and older builds of the week; newer ones may belong to a
            # build still uploading.
            return [
                key
                for key in self._archive_keys(week)
                if key != final.key and (key == previous or (parse_weekly_key(key).generation or "") < generation)  # type: ignore[union-attr]
            ]

        publication = Publication(
            final.key,
            path,
            final.bytes,
            AGE_CONTENT_TYPE if final.encrypted else ARCHIVE_CONTENT_TYPES[final.format],
            weekly_manifest_key(week),
            final.to_json().encode("utf-8"),
            read_back_sha256=final.sha256 if read_back else None,
        )
        publish(self.bucket, publication, named_key=named_key, superseded=superseded)
        return final

    def _readable_key(self, week: str) -> str | None:
        try:
            current = self.get_manifest(week)
        except StorageError:
            return None
        return current.key if current else None

    def _archive_keys(self, week: str) -> list[str]:
        keys = []
        for info in self.bucket.list(f"{WEEKLY_PREFIX}{week}."):
            parsed = parse_weekly_key(info.key)
            if parsed is not None and parsed.kind == "archive" and parsed.week == week:
                keys.append(info.key)
        return keys

    # -- deleting ------------------------------------------------------------------------------

    def delete(self, week: date | str) -> list[str]:
        """Delete a week's archive: the manifest first (from then on it no longer counts), then every
        archive object of the week.  Returns the keys deleted."""
        week = validate_week(week)
        manifest_key = weekly_manifest_key(week)
        archives = self._archive_keys(week)
        had_manifest = self.bucket.stat(manifest_key) is not None
        if had_manifest:
            self.bucket.delete(manifest_key)
        if self.bucket.stat(weekly_verification_key(week)) is not None:
            archives.append(weekly_verification_key(week))
        if archives:
            self.bucket.delete_many(archives)
        return ([manifest_key] if had_manifest else []) + archives


def _write_checked(reader: IO[bytes], target: Path, member: ArchiveMember, archive_key: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with open(partial, "wb") as out:
            size, sha = copy_hashing(reader, out)
        if (size, sha) != (member.sql_bytes, member.sql_sha256):
            raise StorageIntegrityError(
                f"{member.path} in {archive_key} does not match its sha256 ({sha[:12]}... instead of "
                f"{member.sql_sha256[:12]}...): the archive is damaged"
            )
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def _timestamp_seconds(text: str) -> float:
    try:
        return datetime.fromisoformat(text).astimezone(UTC).timestamp()
    except (TypeError, ValueError):
        return time.time()
