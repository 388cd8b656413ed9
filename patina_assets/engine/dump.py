"""The dump writer: one pass over a source, streaming SQL that restores exactly, into sqlite3 or D1.

Layout of a dump (every marker is a comment line of its own, so a person or `patina restore --table`
can find each part):

    header comments (database, time, job id, tables, whether it is one point in time and how that is
                    known, D1's Time Travel bookmark)
    PRAGMA defer_foreign_keys=TRUE;
    -- Create table: "t"          every table and virtual table, before any row
    -- Table: "t"                 one section per table: CREATE TABLE IF NOT EXISTS, then its rows
                                  (a row over one statement: built in a scratch table, moved by INSERT ... SELECT)
    -- End of table: "t" (N rows)  (no count for a virtual table that is recreated, never filled)
    -- Sequence: "t"              AUTOINCREMENT counters
    -- Index: "i" on "t"
    -- View: "v"                  in dependency order
    -- Rebuild: "ft"              external-content full-text indexes, rebuilt from their content table or view
    -- Trigger: "tr" on "t"       last, so restoring rows does not fire them
    footer comments (rows, duration, size, sha256 of everything above the footer)

A SQLite file is read in one transaction. A D1 database is read in attempts (see `D1Source`): each one's
SQL is held in a spool file until the attempt is over and the header can say whether it is one point in
time; an attempt during which the database was written is read again (`consistency_retries` times), and
the last one is stored with a warning naming both bookmarks.

No BEGIN/COMMIT (D1 refuses them; its import is one transaction anyway) and no writable_schema.
Rows go into multi-row INSERTs of at most `statement_bytes` (D1 refuses statements over 100 KB); a row
too big for one statement is built in a scratch table without constraints (its largest values cut short,
then completed by UPDATEs that append one piece each) and moved into its table by one INSERT ... SELECT,
so every constraint of the table sees the whole row.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import accumulate, repeat
from operator import add, itemgetter
from pathlib import Path

from .. import __version__
from . import allocator
from .digests import DIGEST_VERSION, content_digest, table_hasher
from .errors import DumpError
from .formats import DumpOutput, WriteBehind, format_of
from .lifeline import child_environment
from .literals import (
    RealChecker,
    RowFormatter,
    chunk_value,
    text_literal,
    utf8_length,
)
from .schema import SchemaPlan, TablePlan, read_schema, sequence_rows
from .sources import ROWID_BLOCK_BITS, Source
from .sqltext import quote_identifier
from .wrangler_compat import guard

logger = logging.getLogger(__name__)

STATEMENT_BYTES = 90_000  # under D1's 100,000-byte statement limit, with room to spare
ROWS_PER_INSERT = 500  # local D1 ran out of memory on one INSERT of ~4,500 rows
CONSISTENCY_RETRIES = 2  # D1 reads read again when the database was written during one
D1_MAX_ROW_BYTES = 2_000_000  # D1 refuses strings, BLOBs and rows past about 2 MB
RULE = "-- " + "=" * 60 + "\n"
FOOTER_START = "-- Backup complete"


@dataclass
class DumpResult:
    """What a dump wrote, for the manifest stored beside it."""

    database: str
    source: str
    path: Path
    format: str
    bytes: int  # of the file as written (compressed)
    sha256: str
    sql_bytes: int  # of the SQL text
    sql_sha256: str
    table_rows: dict[str, int]
    table_digests: dict[str, str]
    content_digest: str
    schema_fingerprint: str
    started_at: datetime
    finished_at: datetime
    point_in_time: bool
    requests: int
    job_id: str
    warnings: list[str] = field(default_factory=list)
    exact_reals: int = 0
    patina_version: str = __version__
    consistency: str = "one transaction"  # how point_in_time is known (see Source.consistency)
    bookmark: str | None = None  # D1's Time Travel bookmark when the stored attempt began...
    end_bookmark: str | None = None  # ...and when it ended (equal: no write in between)
    attempts: int = 1  # reads of the whole database this dump took
    digest_version: int = DIGEST_VERSION  # the hash of table_digests and content_digest (see digests.py)

    @property
    def tables(self) -> int:
        return len(self.table_rows)

    @property
    def rows(self) -> int:
        return sum(self.table_rows.values())

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(
            path=str(self.path),
            started_at=self.started_at.isoformat(),
            finished_at=self.finished_at.isoformat(),
            tables=self.tables,
            rows=self.rows,
            duration_seconds=round(self.duration_seconds, 3),
        )
        return data


ProgressCallback = Callable[[str, int, int], None]  # (table, rows so far in the dump, SQL bytes so far)


def dump_database(
    source: Source,
    out_path: Path,
    *,
    database: str | None = None,
    job_id: str | None = None,
    progress: ProgressCallback | None = None,
    statement_bytes: int = STATEMENT_BYTES,
    rows_per_insert: int = ROWS_PER_INSERT,
    consistency_retries: int = CONSISTENCY_RETRIES,
) -> DumpResult:
    """Dump `source` to `out_path` (.sql, .sql.gz or .sql.zst). Nothing is left at `out_path` on failure.

    A source that settles its consistency only at the end (D1) is read again, up to `consistency_retries`
    times, while the database was written during the read."""
    format_of(out_path)  # a bad name fails before any request
    database = database or Path(str(out_path)).name.split(".")[0]
    job_id = job_id or str(uuid.uuid4())
    out = DumpOutput(Path(out_path))
    try:
        for attempt in range(1, consistency_retries + 2):
            writer = _DumpWriter(source, out, database, job_id, progress, statement_bytes, rows_per_insert)
            try:
                result = writer.run(attempt, last=attempt > consistency_retries)
            finally:
                writer.checker.close()
            if result is not None:
                break
        out.commit()
    except BaseException:
        out.abort()
        raise
    result.bytes, result.sha256 = out.file_bytes, out.file_sha256
    return result


def table_digests_of(
    source: Source,
    statement_bytes: int = STATEMENT_BYTES,
    rows_per_insert: int = ROWS_PER_INSERT,
    *,
    digest_version: int = DIGEST_VERSION,
) -> dict[str, str]:
    """Per-table data digests of a database as a dump of it would record them with `digest_version`
    (to check a restore against the manifest of a dump made with that version)."""
    table_hasher(digest_version)  # an unknown version fails before any row is read
    writer = _DumpWriter(source, None, "", "", None, statement_bytes, rows_per_insert, digest_version)
    plan = read_schema(source)
    try:
        return {t.name: writer.write_rows(t)[1] for t in plan.tables if t.data == "rows"}
    finally:
        writer.checker.close()


class _DumpWriter:
    def __init__(
        self, source, out, database, job_id, progress, statement_bytes, rows_per_insert, digest_version=DIGEST_VERSION
    ) -> None:
        allocator.tune()  # a batch's buffers are reused, not faulted in afresh (see allocator)
        self.source = source
        self.digest_version = digest_version
        self.out: DumpOutput | None = out
        self.database = database
        self.job_id = job_id
        self.progress = progress
        self.statement_bytes = statement_bytes
        self.rows_per_insert = rows_per_insert
        self.checker = RealChecker()
        self.warnings: list[str] = []
        self.oversized_tables: set[str] = set()
        self.rows_written = 0
        self.exact_reals = 0

    def write(self, text: str) -> None:
        if self.out is not None:
            self.out.write(text)

    def statement(self, marker: str | None, sql: str) -> None:
        """A schema statement (with its marker comment), with whatever keeps wrangler's splitter in step."""
        self.write((f"-- {marker}\n" if marker else "") + guard(_terminated(sql))[0])

    def run(self, attempt: int = 1, last: bool = True) -> DumpResult | None:
        """Read the source once and write the dump; None when this attempt is to be read again (the
        database was written during it and it was not the `last`)."""
        started = datetime.now(UTC)
        clock = time.monotonic()
        self.source.begin()
        plan = self.source.snapshot(read_schema(self.source))
        plan.warnings += wrangler_warnings(plan)
        if self.source.settled_at_start:
            self.header(plan, started, attempt)
            table_rows, table_digests = self.body(plan)
            self.source.finish()
        else:
            final = self.out
            spool = self.out = _Spool(final)
            try:
                table_rows, table_digests = self.body(plan)
                self.source.finish()
                if not self.source.point_in_time and not last:
                    return None
                self.out = final
                self.header(plan, started, attempt)
                spool.copy_to(final)
            finally:
                self.out = final
                spool.close()
        finished = datetime.now(UTC)
        result = DumpResult(
            database=self.database,
            source=self.source.description,
            path=self.out.path,
            format=self.out.format,
            bytes=0,
            sha256="",
            sql_bytes=0,
            sql_sha256="",
            table_rows=table_rows,
            table_digests=table_digests,
            content_digest=content_digest(table_digests, self.digest_version),
            schema_fingerprint=plan.fingerprint,
            started_at=started,
            finished_at=finished,
            point_in_time=self.source.point_in_time,
            requests=self.source.requests,
            job_id=self.job_id,
            warnings=list(plan.warnings) + self.warnings,
            exact_reals=self.exact_reals,
            consistency=self.source.consistency,
            bookmark=self.source.bookmark,
            end_bookmark=self.source.end_bookmark,
            attempts=attempt,
            digest_version=self.digest_version,
        )
        self.footer(result, time.monotonic() - clock)
        result.sql_bytes, result.sql_sha256 = self.out.sql_bytes, self.out.sql_sha256.hexdigest()
        return result

    def body(self, plan: SchemaPlan) -> tuple[dict[str, int], dict[str, str]]:
        """Everything between the header and the footer; the row count and digest of each table."""
        self.write("PRAGMA defer_foreign_keys=TRUE;\n\n")
        for table in plan.tables:
            self.statement(f"Create table: {_name(table.name)}", table.sql)
        table_rows: dict[str, int] = {}
        table_digests: dict[str, str] = {}
        for table in plan.tables:
            if table.data == "rebuild":
                continue
            self.write(f"\n-- Table: {_name(table.name)}\n")
            self.statement(None, table.create_if_not_exists())
            if table.note:
                self.write(f"-- Note: {table.note}\n")
            self.write(fts5_settings(table))
            if table.data == "rows":
                rows, digest = self.write_rows(table)
                table_rows[table.name], table_digests[table.name] = rows, digest
                self.write(f"-- End of table: {_name(table.name)} ({rows} rows)\n")
            else:  # recreated, never filled: what it reads (fts5vocab) is no count to check
                self.write(f"-- End of table: {_name(table.name)}\n")
        self.write("\n")
        if plan.has_sequence:
            for name, seq in sequence_rows(self.source, plan.tables):
                self.write(
                    f"-- Sequence: {_name(name)}\nDELETE FROM sqlite_sequence WHERE name = {text_literal(name)};\n"
                    f"INSERT INTO sqlite_sequence(name, seq) VALUES({text_literal(name)}, {seq});\n"
                )
        for index in plan.indexes:
            self.statement(f"Index: {_name(index.name)} on {_name(index.tbl_name)}", index.sql)
        for view in plan.views:
            self.statement(f"View: {_name(view.name)}", view.sql)
        # After the views: an external-content index may read its content from a view.
        for table in plan.tables:
            if table.data == "rebuild":
                self.write(
                    f"-- Rebuild: {_name(table.name)}\n{fts5_settings(table)}"
                    f"INSERT INTO {table.quoted}({table.quoted}) VALUES('rebuild');\n"
                )
        for trigger in plan.triggers:
            self.statement(f"Trigger: {_name(trigger.name)} on {_name(trigger.tbl_name)}", trigger.sql)
        return table_rows, table_digests

    def header(self, plan: SchemaPlan, started: datetime, attempt: int = 1) -> None:
        source = self.source
        consistency = {
            "one transaction": "yes (read in one transaction)",
            "one batch": "yes (read in one batch, which D1 runs as one transaction)",
            "bookmark unchanged": "yes, proven (read in several requests; D1's Time Travel bookmark was the same "
            "at the start and at the end, so nothing was written in between)",
        }.get(source.consistency, f"NO (the database was written while it was read, in each of {attempt} attempt(s))")
        time_travel = []
        if source.bookmark:
            time_travel.append(f"Time Travel bookmark: {source.bookmark}")
        if source.end_bookmark and source.end_bookmark != source.bookmark:
            time_travel.append(f"Time Travel bookmark at the end: {source.end_bookmark}")
        if not source.point_in_time and source.bookmark:
            warning = (
                f"not one point in time: the database was written during the dump (Time Travel bookmark {source.bookmark} "
                f"at the start, {source.end_bookmark} at the end), so rows written meanwhile may be partly in it. "
                f"The database exactly as it was when the dump started: wrangler d1 time-travel restore DB "
                f"--bookmark={source.bookmark} (in place: it undoes every later write)"
            )
            self.warnings.append(warning)
        lines = [
            f"Patina backup: {self.database}",
            f"Source: {self.source.description}",
            f"Generated: {started.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}",
            f"Job ID: {self.job_id}",
            f"Tables: {sum(1 for t in plan.tables if t.data == 'rows')}",
            f"Point in time: {consistency}",
            *time_travel,
            f"Schema fingerprint: {plan.fingerprint}",
            f"Patina {__version__}, dump format 1. Restore into an EMPTY database:",
            "  patina restore DUMP --to new.sqlite | sqlite3 new.sqlite < DUMP | wrangler d1 execute DB --file DUMP",
        ]
        lines += [
            f"SQLite {name}: {value} (D1 cannot hold it; `patina restore` sets it)"
            for name, value in plan.pragmas.items()
        ]
        lines += [f"Warning: {w}" for w in plan.warnings + self.warnings]
        self.write(RULE + "".join(f"-- {line}\n" for line in lines) + RULE + "\n")

    def footer(self, result: DumpResult, seconds: float) -> None:
        self.write("\n")
        extra = [f"Requests: {result.requests}"] if result.requests else []
        lines = [
            f"Tables: {result.tables}",
            f"Total rows: {result.rows}",
            f"Duration: {seconds:.3f}s",
            *extra,
            *[f"Warning: {w}" for w in self.warnings],
            f"Size: {self.out.sql_bytes} bytes of SQL above this footer",
            f"SHA-256 of the SQL above this footer: {self.out.sql_sha256.hexdigest()}",
        ]
        self.write(f"{FOOTER_START}: {self.database}\n" + "".join(f"-- {line}\n" for line in lines) + RULE)

    # -- rows -------------------------------------------------------------------------------------

    def write_rows(
        self, table: TablePlan, lo: int | None = None, split: bool = True, hashed: bool = True
    ) -> tuple[int, str]:
        """Write `table`'s rows as INSERTs; return the row count and the digest of those statements (of
        `digest_version`; "" when not `hashed`: the worker's half, which the main process hashes as it
        appends it, so a split table's digest is of the very bytes one process would write).

        A big rowid table of a SQLite file is written by two processes: a worker writes the rows from a
        split point on into a file of its own while this one writes the rows before it, then that file
        is appended (see `SqliteSource.split_point`). `lo` starts the rows at a rowid (the worker's half).
        """
        digest = table_hasher(self.digest_version)
        out = self.out
        # Hashing, compressing and writing overlap the formatting, and one another.
        behind = WriteBehind(([digest.update] if hashed else []) + (out.consumers() if out is not None else []))
        emit_bytes = behind.put

        def emit(text: str) -> None:
            emit_bytes(text.encode("utf-8"))

        split_point = getattr(self.source, "split_point", None)
        mid = split_point(table) if split and split_point and lo is None else None
        worker = _SecondHalf(self.source, table, mid, self) if mid is not None else None

        prefix = f"INSERT INTO {table.quoted}({','.join(quote_identifier(c) for c in table.columns)}) VALUES\n"
        room = self.statement_bytes - utf8_length(prefix) - 2
        max_rows = self.rows_per_insert
        if table.rowid_by_update:
            room, max_rows = room - 80, 1  # one row a statement, plus the UPDATE that sets its rowid
        formatter = RowFormatter(len(table.columns), self.checker)
        pending: list[bytes] = []  # value tuples in UTF-8, encoded once: their sizes are what D1 counts
        pending_bytes = 0
        rows = 0

        prefix_bytes = prefix.encode("utf-8")

        def flush() -> None:
            nonlocal pending, pending_bytes
            if pending:
                if table.rowid_by_update:  # the tuple's first value is the rowid, an integer
                    rowid, rest = pending[0][1:].decode("utf-8").split(",", 1)
                    emit(self.insert_then_set_rowid(table, "(" + rest, rowid))
                else:
                    # One join, one copy: prefix, tuple, ",\n", tuple, ..., tuple, ";\n".
                    parts = [b",\n"] * (2 * len(pending) + 1)
                    parts[0], parts[1::2], parts[-1] = prefix_bytes, pending, b";\n"
                    emit_bytes(b"".join(parts))
                pending, pending_bytes = [], 0

        # Statements of a rowid table never span two rowid blocks: where they break then depends only on
        # the rows of each block, so a table written in two halves cut at a block reads as one.
        by_block = not table.without_rowid and bool(table.key) and not table.virtual
        key = table.key[0] if by_block else 0
        block = None

        def place(batch: list[tuple], tuples: list[str] | list[bytes]) -> None:
            nonlocal block
            if not by_block:
                pack(batch, tuples)
                return
            rowids = list(map(itemgetter(key), batch))
            start = 0
            while start < len(batch):
                here = rowids[start] >> ROWID_BLOCK_BITS
                end = bisect_left(rowids, (here + 1) << ROWID_BLOCK_BITS, start)
                if here != block:
                    flush()
                    block = here
                pack(batch[start:end], tuples[start:end])
                start = end

        def pack(batch: list[tuple], tuples: list[str] | list[bytes]) -> None:
            """Pack value tuples into statements of at most `room` bytes and `max_rows` rows."""
            nonlocal pending_bytes
            # Each tuple costs its bytes plus ",\n" (computed in C: this runs for every row).
            encoded = list(map(str.encode, tuples)) if tuples and type(tuples[0]) is str else tuples
            sizes = list(map(add, map(len, encoded), repeat(2)))
            i, n = 0, len(tuples)
            while i < n:
                if sizes[i] > room:  # one row alone over the limit
                    flush()
                    self.write_large_row(table, batch[i], formatter, emit)
                    i += 1
                    continue
                take = min(max_rows - len(pending), n - i)
                running = list(accumulate(sizes[i : i + take]))
                fits = bisect_right(running, room - pending_bytes)
                if fits:
                    pending.extend(encoded[i : i + fits])
                    pending_bytes += running[fits - 1]
                    i += fits
                if i < n:
                    flush()

        # Formatting a batch overlaps the background check of the previous batch's REALs.
        def write(scan) -> int:
            count = 0
            previous = None
            for batch in scan:
                handle = formatter.format_rows_async(batch)
                if previous is not None:
                    place(previous[0], previous[1]())
                previous = (batch, handle)
                count += len(batch)
                self.rows_written += len(batch)
                if self.progress:
                    self.progress(table.name, self.rows_written, out.sql_bytes if out else 0)
            if previous is not None:
                place(previous[0], previous[1]())
            flush()
            return count

        try:
            if worker is None:
                scan = self.source.scan(table, lo=lo) if lo is not None else self.source.scan(table)
                rows = write(scan)
            else:
                try:
                    rows = write(self.source.scan(table, hi=mid))
                    second_half = worker.append_to(emit_bytes)
                except _WorkerFailed as failed:  # the second process could not do it: this one writes that half too
                    # Said out loud: the dump stays exact, but a worker failing every night (as one did, unseen,
                    # for a release: its exit aborted) doubles the time of every big table.
                    logger.warning(
                        "table %s: the second process writing its rows from rowid %d on failed (%s); this process "
                        "writes them too (the dump is as exact, only slower)",
                        table.name,
                        mid,
                        failed,
                    )
                    second_half = write(self.source.scan(table, lo=mid))
                finally:
                    worker.close()
                rows += second_half
                self.rows_written += second_half if worker.appended else 0
        finally:
            behind.close()  # every byte is hashed and written before anything else is
        self.exact_reals += formatter.exact_reals
        return rows, digest.hexdigest() if hashed else ""

    @staticmethod
    def insert_then_set_rowid(table: TablePlan, value_tuple: str, rowid: str) -> str:
        """A row of a 100-column table: D1 refuses an INSERT naming 101 columns, so the rowid is set after."""
        columns = ",".join(quote_identifier(c) for c in table.columns[1:])
        return (
            f"INSERT INTO {table.quoted}({columns}) VALUES{value_tuple};\n"
            f"UPDATE {table.quoted} SET {quote_identifier(table.columns[0])}={rowid} WHERE rowid=last_insert_rowid();\n"
        )

    def write_large_row(self, table: TablePlan, row: tuple, formatter: RowFormatter, emit) -> None:
        """A row over the statement limit, built where no constraint can see it half-made.

        The row goes into a scratch table without types or constraints (its largest values cut short,
        then completed by UPDATEs that append one piece each) and moves into its table whole, by one
        `INSERT ... SELECT`: a CHECK that ties columns together (`length(body) = body_len`), a UNIQUE or
        NOT NULL value, a STRICT type, a generated column and a foreign key all see the finished row.
        The scratch table is dropped at once; its name is one the schema does not use.
        """
        literals = [formatter.format_value(v) for v in row]
        # D1 refuses tables of more than 100 columns: a 100-column table's rowid goes in a last UPDATE.
        kept = list(range(1 if table.rowid_by_update else 0, len(row)))
        sizes = {i: utf8_length(literals[i]) for i in kept}
        scratch = quote_identifier(table.scratch)
        head = f"INSERT INTO {scratch} VALUES("
        total = utf8_length(head) + sum(sizes.values()) + len(sizes) + 3
        deferred: list[int] = []
        for i in sorted(kept, key=lambda i: -sizes[i]):
            if total <= self.statement_bytes:
                break
            if not isinstance(row[i], (str, bytes)):
                continue
            deferred.append(i)
            total -= sizes[i]
        raw = sum(
            len(v.encode("utf-8", "surrogatepass")) if isinstance(v, str) else len(v) if isinstance(v, bytes) else 8
            for v in row
        )
        if raw > D1_MAX_ROW_BYTES and table.name not in self.oversized_tables:
            self.oversized_tables.add(table.name)
            self.warnings.append(
                f"table {table.name!r} has rows of more than {D1_MAX_ROW_BYTES:,} bytes, which D1 cannot hold: "
                "this dump restores into SQLite, not into D1"
            )
        if total > self.statement_bytes:
            raise DumpError(
                f"table {table.name!r}: a row cannot be written in statements of {self.statement_bytes} bytes "
                "(its numbers alone are too large)"
            )
        # Each deferred value starts with as much of itself as the INSERT has room for; the rest is appended.
        first = list(literals)
        rest = {}
        share = (self.statement_bytes - total - 32 * len(deferred)) // max(1, len(deferred))
        for i in deferred:
            value = row[i]
            head_piece = chunk_value(value, share)[0] if share >= 64 else value[:0]
            first[i] = formatter.literal(type(value)(head_piece))
            rest[i] = type(value)(value[len(head_piece) :])
        slots = ",".join(f"v{i}" for i in kept)
        emit(f"CREATE TABLE {scratch}({slots});\n{head}{','.join(first[i] for i in kept)});\n")
        for i in sorted(deferred):
            if type(row[i]) is bytes:  # `||` yields TEXT; CAST keeps the bytes and makes it a BLOB again
                start, end = f"UPDATE {scratch} SET v{i}=CAST(v{i}||", " AS BLOB);\n"
            else:
                start, end = f"UPDATE {scratch} SET v{i}=v{i}||", ";\n"
            room = self.statement_bytes - utf8_length(start) - utf8_length(end)
            if rest[i]:
                for piece in chunk_value(rest[i], room):
                    emit(start + formatter.literal(type(rest[i])(piece)) + end)
        columns = ",".join(quote_identifier(table.columns[i]) for i in kept)
        emit(f"INSERT INTO {table.quoted}({columns}) SELECT {slots} FROM {scratch};\n")
        if table.rowid_by_update:
            rowid = quote_identifier(table.columns[0])
            emit(f"UPDATE {table.quoted} SET {rowid}={first[0]} WHERE rowid=last_insert_rowid();\n")
        emit(f"DROP TABLE {scratch};\n")


class _Spool:
    """The SQL between a dump's header and its footer, held in an unnamed temporary file beside the dump
    until the attempt is over and the header can say whether it is one point in time."""

    def __init__(self, final: DumpOutput) -> None:
        self.path, self.format = final.path, final.format
        self._file = tempfile.TemporaryFile(dir=final.path.parent, prefix=".patina-spool-")
        self.sql_bytes = 0

    def write(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def write_bytes(self, data: bytes) -> None:
        self._file.write(data)
        self.sql_bytes += len(data)

    def consumers(self) -> list:
        return [self.write_bytes]

    def copy_to(self, out: DumpOutput) -> None:
        self._file.seek(0)
        while chunk := self._file.read(1 << 20):
            out.write_bytes(chunk)

    def close(self) -> None:
        self._file.close()


class _WorkerFailed(Exception):
    pass


class _SecondHalf:
    """The rows of a table from a split point on, written by `python -m patina_assets.engine.dump_worker`."""

    def __init__(self, source, table: TablePlan, lo: int, writer: _DumpWriter) -> None:
        directory = writer.out.path.parent if writer.out is not None else Path(tempfile.gettempdir())
        fd, name = tempfile.mkstemp(dir=directory, prefix=".patina-half-", suffix=".sql")
        os.close(fd)
        self.path = Path(name)
        self.writer = writer
        self.appended = False
        request = {
            "database": str(source.path),
            "table": asdict(table),
            "lo": lo,
            "statement_bytes": writer.statement_bytes,
            "rows_per_insert": writer.rows_per_insert,
            "output": str(self.path),
        }
        # The package's own directory goes on the worker's path, so it imports even when not installed.
        package_root = str(Path(__file__).resolve().parents[2])
        env = child_environment(
            {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        )
        try:
            self.process: subprocess.Popen | None = subprocess.Popen(
                [sys.executable, "-m", "patina_assets.engine.dump_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            # One line, and stdin stays open: its end tells the worker this process is gone (see lifeline).
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except OSError:
            self.process = None

    def append_to(self, emit_bytes) -> int:
        """Wait for the worker, append what it wrote, and return its row count (`_WorkerFailed` if it could not)."""
        if self.process is None:
            raise _WorkerFailed("it could not be started")
        answer = self.process.stdout.read()
        errors = self.process.stderr.read()
        status = self.process.wait()
        self.process.stdin.close()
        if status != 0:
            last = errors.strip().splitlines()[-1:] or ["no message"]
            raise _WorkerFailed(f"exit status {status}: {last[0][:200]}")
        result = json.loads(answer)
        with open(self.path, "rb") as part:
            while chunk := part.read(1 << 18):  # small: up to WriteBehind.depth of them wait in memory
                emit_bytes(chunk)
        self.appended = True
        self.writer.exact_reals += result["exact_reals"]
        self.writer.warnings += [w for w in result["warnings"] if w not in self.writer.warnings]
        return result["rows"]

    def close(self) -> None:
        """Stop the worker if it still runs (this process failed first) and remove its file."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process is not None:
            for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
                try:
                    stream.close()
                except OSError:  # stdin: the worker is gone, and a flush on close finds no reader
                    pass
        self.path.unlink(missing_ok=True)


def _terminated(sql: str) -> str:
    """A stored statement with its `;` (on a line of its own after a trailing `--` comment, which would swallow it)."""
    return sql + ("\n;\n" if "--" in sql.rsplit("\n", 1)[-1] else ";\n")


def wrangler_warnings(plan: SchemaPlan) -> list[str]:
    """One warning per schema object whose SQL `wrangler d1 execute --local` would break or alter."""
    objects = [("table", t.name, t.sql) for t in plan.tables] + [
        (o.type, o.name, o.sql) for o in plan.indexes + plan.views + plan.triggers
    ]
    return [
        f"{kind} {name!r}: `wrangler d1 execute --local` would split or alter its SQL (wrangler's statement "
        "splitter drops comments and does not know [bracket] names); restore it with `patina restore`, or into "
        "D1 with `wrangler d1 execute --remote` (D1's import API)"
        for kind, name, sql in objects
        if not guard(_terminated(sql))[1]
    ]


def fts5_settings(table: TablePlan) -> str:
    """Statements that replay an FTS5 index's settings (`rank`, `automerge`, ...) onto a new index."""
    return "".join(
        f"INSERT INTO {table.quoted}({table.quoted}, rank) VALUES({text_literal(key)}, "
        f"{value if isinstance(value, int) else text_literal(str(value))});\n"
        for key, value in table.fts5_config
    )


def _name(name: str) -> str:
    """A name as it appears in marker comments: JSON-quoted, so it stays on one line whatever it holds."""
    return json.dumps(name, ensure_ascii=False)
