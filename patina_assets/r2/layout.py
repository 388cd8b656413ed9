"""Where R2 snapshots live in the backup bucket, and what their manifests say (plain Python, no Dagster).

::

    r2/objects/<sha256>[.<recipients>.age]                     <- each distinct object, once (content-addressed)
    r2/in-progress/grove-media.<generation>.json               <- while a backup runs (holds back garbage collection)
    r2/2026-01-05/grove-media.20260106T030012123456Z-3f9a1c.entries.jsonl.gz[.age]  <- every key of that night
    r2/2026-01-05/grove-media.manifest.json                    <- the snapshot (written last)

A snapshot exists exactly when its manifest does.  The manifest is small (a summary and the key and sha256 of
its entries file), so listing and status read it cheaply whatever the bucket's size; the entries file is gzip
JSON lines in key order, one line per source object (key, size, ETag, sha256, last-modified, content type,
metadata), so a million keys are written and read with flat memory.  Each run's entries file has its own
generation, so re-running a day never overwrites the entries the current manifest names.

With ``encryption:`` configured, a snapshot is encrypted as the dumps are (age, to the configured recipients):
each object is stored as ``r2/objects/<sha256>.<recipients>.age`` (the sha256 of its plaintext, so the same
bytes are still stored once for one list of recipients; ``<recipients>`` names that list, see
``recipients_id``) and the entries file as ``....entries.jsonl.gz.age`` (keys and metadata are as private as the
objects).  Naming the recipients in the key is what lets a snapshot vouch for every object it names: after a
recipient change, an object stored for the old list is not the new list's object, so it is stored again rather
than silently left readable only by the old keys (schema version 2 snapshots, from before, named objects
``<sha256>.age`` whatever their recipients; they are still read, and ``patina reencrypt`` rewrites them).
The manifest stays plaintext (counts, ``encrypted``, the recipients' fingerprints, and the sha256 of the
*stored* entries file, so damage is found without the identity); reading the entries -- an incremental backup,
the checks, restore, garbage collection -- needs the identity.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

from ..encryption import AgeKeys, CiphertextDamaged, EncryptionError, decrypt_stream
from ..storage import (
    AGE_SUFFIX,
    SHA256_HEX,
    Bucket,
    CorruptManifest,
    copy_hashing,
    format_day,
    validate_database_name,
)
from ..storage.layout import GENERATION_PATTERN

R2_PREFIX = "r2/"
OBJECTS_PREFIX = "r2/objects/"
#: One marker per backup running now: garbage collection deletes no object while a fresh one exists, since that
#: backup may be about to name an object no kept snapshot names yet.
IN_PROGRESS_PREFIX = "r2/in-progress/"
MANIFEST_SUFFIX = ".manifest.json"
ENTRIES_SUFFIX = ".entries.jsonl.gz"
ENTRIES_CONTENT_TYPE = "application/gzip"
OBJECT_CONTENT_TYPE = "application/octet-stream"
SCHEMA_VERSION = 1
#: An encrypted snapshot's manifest from before object keys named their recipients (``<sha256>.age``): still read.
LEGACY_ENCRYPTED_SCHEMA_VERSION = 2
#: An encrypted snapshot's manifest (objects ``<sha256>.<recipients>.age``): a Patina that knows only version 1 or
#: 2 refuses it rather than look for its objects under other keys.
ENCRYPTED_SCHEMA_VERSION = 3
READABLE_SCHEMA_VERSIONS = (SCHEMA_VERSION, LEGACY_ENCRYPTED_SCHEMA_VERSION, ENCRYPTED_SCHEMA_VERSION)
KIND = "r2-snapshot"

_SNAPSHOT_KEY = re.compile(
    rf"^r2/(?P<day>\d{{4}}-\d{{2}}-\d{{2}})/(?P<name>[a-z0-9][a-z0-9._-]{{0,62}}?)"
    rf"(?:(?P<manifest>\.manifest\.json)|\.(?P<generation>{GENERATION_PATTERN})\.entries\.jsonl\.gz(?P<age>\.age)?)\Z"
)


def recipients_id(fingerprints: Iterable[str]) -> str:
    """A short name for one list of recipients (their fingerprints, in any order), used in object keys: the
    first 16 hex digits of the sha256 of the sorted fingerprints, one per line.  Fingerprints are of public keys
    and the manifest lists them anyway, so the name reveals nothing new."""
    listed = sorted(fingerprints)
    if not listed:
        raise ValueError("an encrypted object has recipients")
    return hashlib.sha256("\n".join(listed).encode()).hexdigest()[:16]


def object_key(sha256: str, sealed_to: str | None = None, *, legacy_age: bool = False) -> str:
    """The content-addressed key of the object whose bytes hash to ``sha256``: plaintext, encrypted to the
    recipients named ``sealed_to`` (a ``recipients_id``), or (``legacy_age``) as schema version 2 named an
    encrypted object whatever its recipients."""
    if not SHA256_HEX.match(sha256):
        raise ValueError(f"{sha256!r} is not a sha256 hex digest")
    if legacy_age:
        return OBJECTS_PREFIX + sha256 + AGE_SUFFIX
    return OBJECTS_PREFIX + sha256 + (f".{sealed_to}{AGE_SUFFIX}" if sealed_to else "")


def sealing_of(fingerprints: Iterable[str] | None) -> str:
    """How a night with these recipients' fingerprints (None or empty: no encryption) stores its objects; equal
    for two snapshots exactly when one's objects can stand for the other's (see ``SnapshotManifest.sealing``)."""
    listed = list(fingerprints or ())
    return f"age:{recipients_id(listed)}" if listed else "plain"


def in_progress_key(name: str, generation: str) -> str:
    return f"{IN_PROGRESS_PREFIX}{validate_database_name(name)}.{generation}.json"


def snapshot_manifest_key(day: date | str, name: str) -> str:
    return f"{R2_PREFIX}{format_day(day)}/{validate_database_name(name)}{MANIFEST_SUFFIX}"


def entries_key(day: date | str, name: str, generation: str, encrypted: bool = False) -> str:
    suffix = ENTRIES_SUFFIX + (AGE_SUFFIX if encrypted else "")
    return f"{R2_PREFIX}{format_day(day)}/{validate_database_name(name)}.{generation}{suffix}"


@dataclass(frozen=True)
class SnapshotKey:
    """A parsed ``r2/DAY/NAME...`` key: a manifest (``generation`` None) or an entries file."""

    key: str
    day: str
    name: str
    generation: str | None
    encrypted: bool = False  # an entries file stored as age


def parse_snapshot_key(key: str) -> SnapshotKey | None:
    match = _SNAPSHOT_KEY.match(key)
    if match is None:
        return None
    return SnapshotKey(key, match["day"], match["name"], match["generation"], bool(match["age"]))


def is_r2_key(key: str) -> bool:
    """True for anything in the R2 snapshots' part of the backup bucket."""
    return key.startswith(R2_PREFIX)


# --------------------------------------------------------------------------------------------------
# Entries: one line per source object
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One source object as a snapshot records it; its bytes are ``r2/objects/<sha256>``."""

    key: str
    size: int
    etag: str | None
    sha256: str
    last_modified: str
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def to_line(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes, where: str) -> Entry:
        try:
            raw = json.loads(line)
            entry = cls(
                key=raw["key"],
                size=int(raw["size"]),
                etag=raw.get("etag"),
                sha256=raw["sha256"],
                last_modified=raw["last_modified"],
                content_type=raw.get("content_type"),
                metadata=dict(raw.get("metadata") or {}),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptManifest(f"{where}: an entry cannot be read ({type(exc).__name__}: {exc})") from None
        if not isinstance(entry.key, str) or not SHA256_HEX.match(str(entry.sha256)) or entry.size < 0:
            raise CorruptManifest(f"{where}: the entry for {entry.key!r} has no valid key, size or sha256")
        return entry


class EntriesWriter:
    """Writes entries (in key order) to a local gzip file, counting objects and bytes as it goes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "wb")
        self._gzip = gzip.GzipFile(fileobj=self._file, mode="wb", compresslevel=6, mtime=0)
        self.objects = 0
        self.bytes = 0
        self._last_key: str | None = None

    def write(self, entry: Entry) -> None:
        if self._last_key is not None and entry.key <= self._last_key:
            raise ValueError(f"entries out of key order: {entry.key!r} after {self._last_key!r}")
        self._last_key = entry.key
        self._gzip.write(entry.to_line())
        self.objects += 1
        self.bytes += entry.size

    def close(self) -> None:
        self._gzip.close()
        self._file.close()

    def __enter__(self) -> EntriesWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_entries(stream: IO[bytes], where: str) -> Iterator[Entry]:
    """The entries of a gzip JSON-lines stream, one at a time."""
    with gzip.GzipFile(fileobj=stream, mode="rb") as lines:
        try:
            for line in io.BufferedReader(lines):  # type: ignore[arg-type]
                if line.strip():
                    yield Entry.from_line(line, where)
        except (OSError, EOFError) as exc:
            raise CorruptManifest(f"{where}: the entries file is not valid gzip ({exc})") from None


# --------------------------------------------------------------------------------------------------
# The snapshot manifest
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotManifest:
    """One night's snapshot of one R2 bucket: a summary and the entries file that lists every key."""

    name: str
    day: str
    source: str  # s3://bucket/prefix at the endpoint (never credentials)
    entries_key: str
    entries_sha256: str
    entries_bytes: int
    objects: int
    bytes: int
    copied_objects: int
    copied_bytes: int
    reused_objects: int  # already stored under their sha256 (unchanged, or the same bytes elsewhere)
    excluded_objects: int
    listing_started_at: str
    listing_finished_at: str
    created_at: str
    patina_version: str
    exclude: list[str] = field(default_factory=list)
    encrypted: bool = False
    recipients: list[str] = field(default_factory=list)  # fingerprints of the recipients it was encrypted to
    schema_version: int = SCHEMA_VERSION
    kind: str = KIND

    def __post_init__(self) -> None:
        if self.encrypted and self.schema_version == SCHEMA_VERSION:
            object.__setattr__(self, "schema_version", ENCRYPTED_SCHEMA_VERSION)

    @property
    def legacy_objects(self) -> bool:
        """An encrypted snapshot of schema version 2: its objects' keys do not say whom they are encrypted to
        (an object unchanged since a recipient change may be encrypted to the old recipients only)."""
        return self.encrypted and self.schema_version == LEGACY_ENCRYPTED_SCHEMA_VERSION

    @property
    def sealing(self) -> str:
        """How this snapshot's objects are stored: ``plain``, ``age:<recipients_id>`` or ``age:legacy``.  A night
        reuses the previous snapshot's entries only when the two are stored the same way."""
        if self.legacy_objects:
            return "age:legacy"
        return sealing_of(self.recipients if self.encrypted else None)

    def object_key(self, sha256: str) -> str:
        """Where this snapshot's object with ``sha256`` is stored."""
        if not self.encrypted:
            return object_key(sha256)
        if self.legacy_objects:
            return object_key(sha256, legacy_age=True)
        return object_key(sha256, recipients_id(self.recipients))

    @property
    def key(self) -> str:
        return snapshot_manifest_key(self.day, self.name)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, text: bytes | str, *, key: str = "<manifest>") -> SnapshotManifest:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise CorruptManifest(f"{key} is not JSON ({exc})") from None
        if not isinstance(raw, dict) or raw.get("kind") != KIND:
            raise CorruptManifest(f"{key} is not an R2 snapshot manifest (kind {KIND!r})")
        if raw.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
            raise CorruptManifest(
                f"{key} has schema_version {raw.get('schema_version')!r}; this Patina reads "
                f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}: upgrade Patina to read it"
            )
        names = {f for f in cls.__dataclass_fields__}
        try:
            manifest = cls(**{k: v for k, v in raw.items() if k in names})
        except TypeError as exc:
            raise CorruptManifest(f"{key} lacks fields ({exc})") from None
        parsed = parse_snapshot_key(key) if key != "<manifest>" else None
        if parsed is not None and (parsed.day, parsed.name) != (manifest.day, manifest.name):
            raise CorruptManifest(f"{key} describes {manifest.name} on {manifest.day}, not what its key says")
        entries = parse_snapshot_key(manifest.entries_key)
        if (
            entries is None
            or entries.generation is None
            or (entries.day, entries.name) != (manifest.day, manifest.name)
            or entries.encrypted != bool(manifest.encrypted)
        ):
            raise CorruptManifest(f"{key} names {manifest.entries_key!r}, which is not its entries file")
        if manifest.encrypted and not manifest.legacy_objects and not manifest.recipients:
            raise CorruptManifest(f"{key} is encrypted but records no recipients, which name its objects' keys")
        return manifest


def read_manifest(bucket: Bucket, key: str) -> SnapshotManifest:
    return SnapshotManifest.from_json(bucket.get_bytes(key), key=key)


def open_entries(bucket: Bucket, manifest: SnapshotManifest, keys: AgeKeys | None = None) -> Iterator[Entry]:
    """Every entry of ``manifest``, checked against the sha256 the manifest records for its entries file: a
    damaged entries file raises ``CorruptManifest`` at its end (after the entries it held were yielded).  An
    encrypted snapshot's entries need ``keys`` with the identity; they are decrypted whole, and authenticated,
    before the first is yielded."""
    if manifest.encrypted:
        yield from _open_encrypted_entries(bucket, manifest, keys)
        return
    digest = hashlib.sha256()
    size = 0
    with bucket.open(manifest.entries_key) as stream:
        hashing = _HashingReader(stream, digest)
        yield from read_entries(hashing, bucket.uri(manifest.entries_key))
        while hashing.read(1024 * 1024):  # gzip may stop before trailing bytes
            pass
        size = hashing.size
    if size != manifest.entries_bytes or digest.hexdigest() != manifest.entries_sha256:
        raise CorruptManifest(
            f"{bucket.uri(manifest.entries_key)} does not match the size and sha256 its manifest {manifest.key} "
            "records: the snapshot's list of keys is damaged"
        )


def _open_encrypted_entries(bucket: Bucket, manifest: SnapshotManifest, keys: AgeKeys | None) -> Iterator[Entry]:
    where = bucket.uri(manifest.entries_key)
    if keys is None:
        raise EncryptionError(
            f"the R2 snapshot {manifest.key} is encrypted (to {', '.join(manifest.recipients) or 'unrecorded keys'}); "
            "reading its keys needs the age identity: configure encryption in patina.yaml and set its identity variable"
        )
    try:
        plain = keys.open_decrypted(
            bucket.open(manifest.entries_key),
            what=f"the entries of the R2 snapshot {manifest.key}",
            stored_sha256=manifest.entries_sha256,
            recipients=manifest.recipients,
        )
    except CiphertextDamaged as exc:
        raise CorruptManifest(f"{where}: the snapshot's list of keys is damaged ({exc})") from None
    with plain:
        yield from read_entries(plain, where)


def read_object(
    bucket: Bucket, manifest: SnapshotManifest, entry: Entry, out: IO[bytes] | None, keys: AgeKeys | None = None
) -> tuple[int, str]:
    """Stream the bytes ``entry`` had in the source into ``out`` (None: only read them), decrypting those of an
    encrypted snapshot; return their size and sha256, for the caller to compare with the entry.  A missing
    object raises ``StorageObjectNotFound``; an encrypted one that fails to authenticate ``CiphertextDamaged``
    (a ``StorageIntegrityError``), and one the identity cannot open ``WrongIdentity``."""
    key = manifest.object_key(entry.sha256)
    if not manifest.encrypted:
        with bucket.open(key) as stream:
            return copy_hashing(stream, out)
    if keys is None:
        raise EncryptionError(
            f"{bucket.uri(key)} is encrypted; reading it needs the age identity: configure encryption in "
            "patina.yaml and set its identity variable"
        )
    keyring = keys.keyring()
    with bucket.open(key) as stream:
        sealed = decrypt_stream(
            stream,
            out if out is not None else _Discard(),  # type: ignore[arg-type]
            keyring,
            what=f"{bucket.uri(key)} (the bytes of {entry.key!r})",
            recipients=manifest.recipients,
        )
    return sealed.plain_bytes, sealed.plain_sha256


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


class _HashingReader(io.RawIOBase):
    def __init__(self, stream: IO[bytes], digest: Any) -> None:
        self._stream = stream
        self._digest = digest
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        self._digest.update(data)
        self.size += len(data)
        buffer[: len(data)] = data
        return len(data)


def snapshot_files(bucket: Bucket) -> Iterator[Any]:
    """Every object under ``r2/<day>/`` (manifests and entries files), never the content-addressed objects:
    days start with a digit, so ten listings skip ``r2/objects/`` however many objects it holds."""
    for digit in "0123456789":
        yield from bucket.list(f"{R2_PREFIX}{digit}")


def list_snapshots(bucket: Bucket, name: str | None = None) -> tuple[list[SnapshotManifest], dict[str, str]]:
    """Every snapshot manifest under ``r2/`` (of ``name`` if given), oldest day first, and the manifests that
    cannot be read (key -> why)."""
    found: list[SnapshotManifest] = []
    corrupt: dict[str, str] = {}
    for info in snapshot_files(bucket):
        parsed = parse_snapshot_key(info.key)
        if parsed is None or parsed.generation is not None or (name is not None and parsed.name != name):
            continue
        try:
            found.append(read_manifest(bucket, info.key))
        except CorruptManifest as exc:
            corrupt[info.key] = str(exc)
    found.sort(key=lambda m: (m.day, m.name))
    return found, corrupt
