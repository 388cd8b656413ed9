"""Is a stored backup usable, and does it look like the nights before it? Plain Python, no Dagster.

Three questions, asked of one night's backup (its manifest in a `BackupStore`):

* `verify_restore`: the stored dump, read back from the bucket, restores into a scratch SQLite file
  (`restore_dump` checks its footer sha256, runs `integrity_check` and `foreign_key_check` and counts the
  rows), and the restored database holds exactly what the dump recorded from the source: the same tables
  and row counts, the same per-table and content digests (recomputed with `table_digests_of`, the very
  function the dump used, with the digest version the manifest names: a backup an older Patina made is
  checked with its SHA-256 digests), the same schema fingerprint. Any difference means that night has no
  usable backup.
* `judge_size`: the dump's SQL size against the average of the last (up to) 7 backups of that database
  captured before it: much smaller suggests data loss, much larger corruption or runaway growth.
* `detect_schema_drift`: the schema fingerprint against the previous backup's (by capture time) and, when it
  changed, the objects added, removed and changed, read back from the two dumps.

`verification_record` is what the bucket keeps of a verdict (``storage.VerificationRecord``).

History comes from the bucket: a backup exists exactly when its manifest does, so this is the record that
matters, and it works without Dagster (the command line, recovery, tests). The database's history index
(`history.py`) says which manifests to read, so a check does not list the whole bucket.
`defs/dumps/checks.py` turns the answers into Dagster asset checks.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from . import history, leftovers
from .encryption import CiphertextDamaged
from .engine import (
    DIGEST_VERSION,
    RestoreError,
    SqliteSource,
    content_digest,
    restore_dump,
    table_digests_of,
)
from .engine.restore import DumpReader
from .engine.schema import SchemaObject, read_schema, schema_fingerprint
from .engine.sqltext import quote_identifier
from .storage import (
    BackupStore,
    Manifest,
    StorageObjectNotFound,
    VerificationRecord,
    by_capture,
    copy_hashing,
    utc_timestamp,
)

HISTORY_WINDOW = 7  # the spec: "the 7-day average"
MIN_HISTORY = 3  # backups before a size verdict: one or two odd days are not a baseline
_COPY_BUFFER = 1024 * 1024
# The dump sections that hold schema statements (see engine/dump.py); rows, sequences and full-text
# rebuilds are skipped when only the schema is wanted.
SCHEMA_SECTIONS = ("Create table", "Index", "View", "Trigger")


# --------------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------------


def previous_backups(store: BackupStore, current: Manifest, limit: int | None = None) -> list[Manifest]:
    """The backups of `current`'s database captured before it (manifest and dump present), oldest first;
    only the last `limit` of them when given.

    "Before" is by capture time, not by day: a backfill of an old day run today holds today's data, so it
    comes after yesterday's nightly, whatever day it is filed under. From the database's history index,
    each backup read back from the bucket (see history.py): the cost does not grow with the bucket."""
    return history.backups_before(store, current, limit)


def latest_backup(store: BackupStore, database: str) -> Manifest | None:
    """The backup of `database` captured last that counts, or None."""
    return history.newest_backup(store, database)


@contextmanager
def scratch_directory(parent: Path | str | None = None) -> Iterator[Path]:
    """A private temporary directory for downloaded dumps and restored databases, removed afterwards
    (and by the next run's sweep if this process is killed: see leftovers.py)."""
    with leftovers.scratch_directory("verify", parent) as tmp:
        yield tmp


def download_dump(store: BackupStore, manifest: Manifest, directory: Path) -> tuple[Path, int, str]:
    """Copy the stored dump of `manifest` into `directory` (decrypted when it is encrypted); return its path,
    size and sha256 as read.

    StorageObjectNotFound when the object is gone; other storage errors (network, access) propagate:
    they say nothing about the backup itself.
    """
    path = Path(directory) / f"{manifest.database}.{manifest.day}.{manifest.format}"
    with store.open_dump(manifest) as reader, open(path, "wb") as out:
        size, sha256 = copy_hashing(reader, out)
    return path, size, sha256


# --------------------------------------------------------------------------------------------------
# Restore verification
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableVerification:
    """One table: what the manifest recorded from the source, and what the restored copy holds."""

    name: str
    recorded_rows: int | None  # None: the manifest does not name the table
    restored_rows: int | None  # None: the table is not in the restored database (or restore failed)
    digest_matches: bool | None  # None: not compared (restore failed, or no recorded digest)


@dataclass
class RestoreVerification:
    """The outcome of restoring one stored backup into a scratch database."""

    database: str
    day: str
    key: str
    recorded_bytes: int
    stored_bytes: int | None = None  # None: nothing could be read
    stored_sha256: str = ""  # of the stored object, as read back ("" when nothing could be read)
    stored_sha256_matches: bool = False
    restored: bool = False
    statements: int = 0
    tables: list[TableVerification] = field(default_factory=list)
    recorded_content_digest: str = ""
    restored_content_digest: str | None = None
    digest_version: int = DIGEST_VERSION  # of both content digests and of every table's: the manifest's
    schema_fingerprint_matches: bool | None = None
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def rows(self) -> int:
        return sum(t.restored_rows or 0 for t in self.tables)

    def summary(self) -> str:
        if self.passed:
            return (
                f"{self.database} {self.day}: the stored dump restores cleanly (integrity_check and foreign_key_check "
                f"ok) with {self.rows} rows in {len(self.tables)} tables, every table's digest equal to the source's"
            )
        return f"{self.database} {self.day}: the backup is NOT usable: " + "; ".join(self.problems)


def verify_restore(
    store: BackupStore, manifest: Manifest, *, scratch_dir: Path | str | None = None
) -> RestoreVerification:
    """Read the stored dump of `manifest` back, restore it into a scratch SQLite file and compare what
    it holds with what the manifest recorded from the source.

    Problems with the backup (missing or altered object, a dump that does not restore, different rows)
    end up in `problems`; storage errors that are not about the backup (network, access) raise.
    """
    started = time.monotonic()
    outcome = RestoreVerification(
        database=manifest.database,
        day=manifest.day,
        key=manifest.key,
        recorded_bytes=manifest.bytes,
        recorded_content_digest=manifest.content_digest,
        digest_version=manifest.digest_version,
    )
    with scratch_directory(scratch_dir) as scratch:
        try:
            dump, size, sha256 = download_dump(store, manifest, scratch)
        except StorageObjectNotFound:
            outcome.problems.append(f"the stored dump {manifest.key} is missing from the bucket")
            outcome.seconds = time.monotonic() - started
            return outcome
        except CiphertextDamaged as exc:  # a wrong or missing identity raises: it says nothing about the backup
            outcome.problems.append(str(exc))
            outcome.seconds = time.monotonic() - started
            return outcome
        outcome.stored_bytes, outcome.stored_sha256 = size, sha256
        outcome.stored_sha256_matches = size == manifest.dump_bytes and sha256 == manifest.dump_sha256
        if outcome.stored_sha256_matches and manifest.encrypted:
            # age opened it, and decrypting checked the stored bytes against the manifest's sha256
            outcome.stored_bytes, outcome.stored_sha256 = manifest.bytes, manifest.sha256
        if not outcome.stored_sha256_matches:
            outcome.problems.append(
                f"the stored dump is {size} bytes with sha256 {sha256[:12]}..., but the manifest recorded "
                f"{manifest.dump_bytes} bytes with sha256 {manifest.dump_sha256[:12]}...: it was altered or damaged after upload"
            )
        restored = scratch / f"{manifest.database}.restored.sqlite"
        try:
            report = restore_dump(dump, restored)
        except RestoreError as e:
            # The message names the scratch copy; name the object in the bucket instead.
            outcome.problems.append(str(e).replace(str(dump), manifest.key))
            outcome.tables = [
                TableVerification(name, rows, None, None) for name, rows in sorted(manifest.table_rows.items())
            ]
        else:
            outcome.restored, outcome.statements = True, report.statements
            _compare_restored(outcome, manifest, restored)
    outcome.seconds = time.monotonic() - started
    return outcome


def verification_record(
    outcome: RestoreVerification, size: SizeVerdict | None, *, run_id: str | None = None, now: datetime | None = None
) -> VerificationRecord:
    """What the bucket keeps of a restore verification (and of the size verdict at that time)."""
    return VerificationRecord(
        key=outcome.key,
        sha256=outcome.stored_sha256,
        passed=outcome.passed,
        checked_at=utc_timestamp(now),
        problems=tuple(outcome.problems),
        size_verdict=size.verdict if size is not None else None,
        dagster_run_id=run_id,
    )


def keep_verdict(store: BackupStore, manifest: Manifest, record: VerificationRecord) -> None:
    """Store the verdict beside the backup, then in its database's history index (what a status reads
    instead of every record). Only the first can fail the caller: a verdict missing from the index is
    found by the next status, which sees the newer record and rebuilds the index."""
    store.record_verification(manifest, record)
    history.record(store, manifest, record)


def _compare_restored(outcome: RestoreVerification, manifest: Manifest, restored: Path) -> None:
    """Tables, rows, digests and schema of the restored database against the manifest (its digests
    recomputed with the manifest's digest version: like with like)."""
    with SqliteSource(restored) as source:
        digests = table_digests_of(source, digest_version=manifest.digest_version)
        fingerprint = read_schema(source).fingerprint
        counts = {name: source.query(f"SELECT count(*) FROM {quote_identifier(name)}")[0][0] for name in digests}
    recorded_rows, recorded_digests = dict(manifest.table_rows), dict(manifest.table_digests)
    table_problems = []
    for name in sorted(set(recorded_rows) | set(digests)):
        want, got = recorded_rows.get(name), counts.get(name)
        digest_matches = (
            recorded_digests[name] == digests[name] if name in recorded_digests and name in digests else None
        )
        outcome.tables.append(TableVerification(name, want, got, digest_matches))
        if want is None:
            table_problems.append(f"table {name!r} is in the restored database but not in the manifest")
        elif got is None:
            table_problems.append(f"table {name!r} ({want} rows in the manifest) is missing from the restored database")
        elif got != want:
            table_problems.append(f"table {name!r} has {got} rows after restore, but the manifest recorded {want}")
        elif digest_matches is not True:
            table_problems.append(
                f"table {name!r} holds different values than the source had when it was dumped (digest mismatch)"
            )
    outcome.problems += table_problems
    outcome.restored_content_digest = content_digest(digests, manifest.digest_version)
    if outcome.restored_content_digest != manifest.content_digest and not table_problems:
        outcome.problems.append("the restored content digest differs from the one recorded from the source")
    outcome.schema_fingerprint_matches = fingerprint == manifest.schema_fingerprint
    if not outcome.schema_fingerprint_matches:
        outcome.problems.append(
            f"the restored schema (fingerprint {fingerprint[:12]}...) is not the source's "
            f"({manifest.schema_fingerprint[:12]}...)"
        )


# --------------------------------------------------------------------------------------------------
# Size anomaly
# --------------------------------------------------------------------------------------------------

SIZE_OK = "ok"
SIZE_TOO_SMALL = "too_small"
SIZE_TOO_LARGE = "too_large"
SIZE_NOT_ENOUGH_HISTORY = "not_enough_history"


@dataclass(frozen=True)
class SizeVerdict:
    """A backup's SQL size against the average of the backups before it.

    Sizes are the dump's uncompressed SQL (`sql_bytes`): it follows the data, while the stored size also
    moves with the compression format and level and with how well the day's data compresses.
    """

    database: str
    day: str
    sql_bytes: int
    stored_bytes: int
    history: tuple[tuple[str, int], ...]  # (day, sql_bytes) of the backups averaged, oldest first
    average_sql_bytes: float | None
    ratio: float | None  # sql_bytes / average_sql_bytes
    verdict: str  # SIZE_OK, SIZE_TOO_SMALL, SIZE_TOO_LARGE or SIZE_NOT_ENOUGH_HISTORY
    decrease_ratio: float
    increase_ratio: float
    min_history: int

    @property
    def anomalous(self) -> bool:
        return self.verdict in (SIZE_TOO_SMALL, SIZE_TOO_LARGE)

    def summary(self) -> str:
        if self.verdict == SIZE_NOT_ENOUGH_HISTORY:
            return (
                f"{self.database} {self.day}: {self.sql_bytes} bytes of SQL; no verdict until {self.min_history} earlier "
                f"backups exist ({len(self.history)} so far)"
            )
        share = f"{self.ratio:.0%} of the average of the last {len(self.history)} backups ({self.average_sql_bytes:.0f} bytes)"
        if self.verdict == SIZE_TOO_SMALL:
            return f"{self.database} {self.day}: {self.sql_bytes} bytes of SQL is {share}, under {self.decrease_ratio:.0%}: possible data loss"
        if self.verdict == SIZE_TOO_LARGE:
            return (
                f"{self.database} {self.day}: {self.sql_bytes} bytes of SQL is {share}, over {self.increase_ratio:.0%}: "
                "possible corruption or runaway growth"
            )
        return f"{self.database} {self.day}: {self.sql_bytes} bytes of SQL is {share}: within bounds"


def judge_size(
    current: Manifest,
    history: Sequence[Manifest],
    *,
    decrease_ratio: float,
    increase_ratio: float,
    window: int = HISTORY_WINDOW,
    min_history: int = MIN_HISTORY,
) -> SizeVerdict:
    """Compare `current` with the average of the last `window` backups in `history` that were captured
    before it (see `previous_backups`). Smaller than `decrease_ratio` times the average is SIZE_TOO_SMALL, larger than
    `increase_ratio` times it SIZE_TOO_LARGE; with fewer than `min_history` backups there is no verdict.

    The average is over the backups that exist (the spec's formula divides by 7 whatever the count,
    which would call every young database's backup "too large")."""
    if not 0 < decrease_ratio < 1 < increase_ratio:
        raise ValueError(f"size ratios must satisfy 0 < decrease ({decrease_ratio}) < 1 < increase ({increase_ratio})")
    earlier = (
        sorted((m for m in history if by_capture(m) < by_capture(current)), key=by_capture)[-window:] if window else []
    )
    days = tuple((m.day, m.sql_bytes) for m in earlier)
    common = dict(
        database=current.database,
        day=current.day,
        sql_bytes=current.sql_bytes,
        stored_bytes=current.bytes,
        history=days,
        decrease_ratio=decrease_ratio,
        increase_ratio=increase_ratio,
        min_history=min_history,
    )
    if len(earlier) < max(min_history, 1):
        return SizeVerdict(**common, average_sql_bytes=None, ratio=None, verdict=SIZE_NOT_ENOUGH_HISTORY)
    average = sum(size for _, size in days) / len(days)
    ratio = current.sql_bytes / average
    if ratio < decrease_ratio:
        verdict = SIZE_TOO_SMALL
    elif ratio > increase_ratio:
        verdict = SIZE_TOO_LARGE
    else:
        verdict = SIZE_OK
    return SizeVerdict(**common, average_sql_bytes=average, ratio=ratio, verdict=verdict)


# --------------------------------------------------------------------------------------------------
# Schema drift
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaChange:
    """One schema object added, removed or changed between two backups."""

    type: str  # table, index, view, trigger
    name: str
    tbl_name: str
    before: str | None  # its SQL in the previous backup (None: added)
    after: str | None  # its SQL in this backup (None: removed)

    @property
    def label(self) -> str:
        on = f" on {self.tbl_name}" if self.type in ("index", "trigger") else ""
        return f"{self.type} {self.name}{on}"


@dataclass(frozen=True)
class SchemaDiff:
    added: tuple[SchemaChange, ...] = ()
    removed: tuple[SchemaChange, ...] = ()
    changed: tuple[SchemaChange, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def compare_schemas(before: Sequence[SchemaObject], after: Sequence[SchemaObject]) -> SchemaDiff:
    """Objects (by type and name) only in `after`, only in `before`, and in both with different SQL."""
    old = {(o.type, o.name): o for o in before}
    new = {(o.type, o.name): o for o in after}
    added = tuple(SchemaChange(o.type, o.name, o.tbl_name, None, o.sql) for k, o in sorted(new.items()) if k not in old)
    removed = tuple(
        SchemaChange(o.type, o.name, o.tbl_name, o.sql, None) for k, o in sorted(old.items()) if k not in new
    )
    changed = tuple(
        SchemaChange(o.type, o.name, o.tbl_name, old[k].sql, o.sql)
        for k, o in sorted(new.items())
        if k in old and (old[k].sql, old[k].tbl_name) != (o.sql, o.tbl_name)
    )
    return SchemaDiff(added, removed, changed)


def schema_objects_of_dump(dump: Path, scratch: Path) -> tuple[list[SchemaObject], str]:
    """The schema objects a dump recreates, and their fingerprint, without restoring any row.

    The dump's CREATE statements (tables, indexes, views, triggers: the sections that hold schema) are
    run into an empty scratch SQLite file, which is then read with the engine's own `read_schema`, so
    the objects are exactly those a dump of it would list and fingerprint. Reading the dump to its end
    also checks its footer sha256, so the statements are the ones that were written.
    """
    target = Path(scratch) / f".schema-{dump.name}.sqlite"
    target.unlink(missing_ok=True)
    db = sqlite3.connect(target, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        for part in DumpReader(dump).parts():
            if part.kind in SCHEMA_SECTIONS:
                try:
                    db.execute(part.sql)
                except sqlite3.Error as e:
                    raise RestoreError(
                        f"{dump.name}: the schema statement of {part.kind.lower()} {part.name!r} fails: {e}"
                    ) from e
    finally:
        db.close()
    with SqliteSource(target) as source:
        plan = read_schema(source)
    objects = [SchemaObject("table", t.name, t.name, t.sql) for t in plan.tables]
    objects += plan.indexes + plan.views + plan.triggers
    return objects, schema_fingerprint(objects)


@dataclass
class SchemaDrift:
    """The schema of one backup against the backup before it."""

    database: str
    day: str
    fingerprint: str
    previous_day: str | None = None
    previous_fingerprint: str | None = None
    diff: SchemaDiff = field(default_factory=SchemaDiff)
    objects_listed: bool = False  # whether `diff` was read from the dumps (only when the fingerprint changed)
    note: str = ""  # why the objects could not be listed, or that they may be incomplete

    @property
    def changed(self) -> bool:
        return self.previous_fingerprint is not None and self.previous_fingerprint != self.fingerprint

    def summary(self) -> str:
        if self.previous_day is None:
            return f"{self.database} {self.day}: the first backup; no earlier schema to compare"
        if not self.changed:
            return f"{self.database} {self.day}: schema unchanged since {self.previous_day}"
        parts = [
            f"{kind} {', '.join(c.label for c in changes)}"
            for kind, changes in (
                ("added", self.diff.added),
                ("removed", self.diff.removed),
                ("changed", self.diff.changed),
            )
            if changes
        ]
        listed = "; ".join(parts) if parts else "objects not listed"
        return f"{self.database} {self.day}: schema changed since {self.previous_day}: {listed}" + (
            f" ({self.note})" if self.note else ""
        )


def detect_schema_drift(
    store: BackupStore, current: Manifest, previous: Manifest | None, *, scratch_dir: Path | str | None = None
) -> SchemaDrift:
    """Compare `current` with `previous` (the backup before it). The fingerprints in the two manifests
    decide whether anything changed, without a download; only then are both dumps read to list what."""
    drift = SchemaDrift(current.database, current.day, current.schema_fingerprint)
    if previous is None:
        return drift
    drift.previous_day, drift.previous_fingerprint = previous.day, previous.schema_fingerprint
    if not drift.changed:
        return drift
    with scratch_directory(scratch_dir) as scratch:
        try:
            listed = []
            for manifest in (previous, current):
                path, _, _ = download_dump(store, manifest, scratch)
                objects, fingerprint = schema_objects_of_dump(path, scratch)
                listed.append((objects, fingerprint == manifest.schema_fingerprint))
        except (StorageObjectNotFound, RestoreError, sqlite3.Error) as e:
            drift.note = f"the objects could not be read back from the dumps: {e}"
            return drift
    (before, before_exact), (after, after_exact) = listed
    drift.diff, drift.objects_listed = compare_schemas(before, after), True
    if not (before_exact and after_exact):
        drift.note = (
            "the schema read back from the dumps does not match the recorded fingerprints; the list may be incomplete"
        )
    return drift
