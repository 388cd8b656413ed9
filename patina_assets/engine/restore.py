"""Restore a Patina dump into a new SQLite file, and prove the result matches what the dump recorded.

The dump is checked as it is read: its footer must be there (a truncated dump has none) and the sha256
of everything above the footer must match the one the footer records. After loading, the database must
pass `PRAGMA integrity_check` and `PRAGMA foreign_key_check`, every full-text index its own integrity
check, and every table must hold the row count its section recorded. The new file appears under its
name only when all of that passed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .dump import FOOTER_START
from .errors import CorruptDump, RestoreError
from .formats import open_dump_text
from .sqltext import quote_identifier

MARKER = re.compile(
    r"^-- (Create table|Table|End of table|Sequence|Index|Rebuild|View|Trigger): (\"(?:[^\"\\]|\\.)*\")(?: on (\"(?:[^\"\\]|\\.)*\"))?(?: \((\d+) rows\))?\s*$"
)
PRAGMA_LINE = re.compile(r"^-- SQLite (user_version|application_id): (-?\d+)\b")
FOOTER_SHA = re.compile(r"^-- SHA-256 of the SQL above this footer: ([0-9a-f]{64})\s*$")


@dataclass
class RestoreReport:
    target: Path
    table_rows: dict[str, int]
    statements: int
    seconds: float
    foreign_key_violations: list[tuple] = field(default_factory=list)


@dataclass
class _Part:
    """One statement of the dump and the section it belongs to."""

    kind: str  # the marker kind, or "" before any marker (header PRAGMA)
    name: str
    table: str
    sql: str


class DumpReader:
    """Walks a dump's statements with their sections, hashing as it goes, and checks the footer at the end."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.expected_rows: dict[str, int] = {}
        self.footer: dict[str, str] = {}
        self.pragmas: dict[str, int] = {}  # from the header: what D1 cannot hold but a SQLite file can
        self.bytes_read = 0

    def parts(self) -> Iterator[_Part]:
        sha = hashlib.sha256()
        kind = name = table = ""
        buffer: list[str] = []
        footer_sha = None
        in_footer = False
        try:
            with open_dump_text(self.path) as lines:
                for line in lines:
                    if in_footer:
                        m = FOOTER_SHA.match(line)
                        if m:
                            footer_sha = m.group(1)
                        key, _, value = line[3:].partition(": ")
                        if value:
                            self.footer[key.strip()] = value.strip()
                        continue
                    if not buffer and line.startswith(FOOTER_START):
                        in_footer = True
                        continue
                    data = line.encode("utf-8")
                    sha.update(data)
                    self.bytes_read += len(data)
                    if not buffer:
                        stripped = line.strip()
                        if not stripped:
                            continue
                        if stripped.startswith("--"):
                            m = MARKER.match(line)
                            pragma = PRAGMA_LINE.match(line) if not kind else None
                            if pragma:
                                self.pragmas[pragma.group(1)] = int(pragma.group(2))
                            if m:
                                kind, name = m.group(1), json.loads(m.group(2))
                                table = json.loads(m.group(3)) if m.group(3) else name
                                if kind == "End of table" and m.group(4) is not None:
                                    self.expected_rows[name] = int(m.group(4))
                            continue
                    buffer.append(line)
                    if line.rstrip().endswith(";") and sqlite3.complete_statement("".join(buffer)):
                        yield _Part(kind, name, table, "".join(buffer))
                        buffer = []
        except (OSError, EOFError, UnicodeDecodeError) as e:  # zstd/gzip errors surface as these or their own
            raise CorruptDump(f"{self.path}: cannot read the dump to its end ({e}); it is damaged or truncated") from e
        except Exception as e:
            if type(e).__module__.startswith(("zstd", "gzip", "zlib")) or "zstd" in type(e).__name__.lower():
                raise CorruptDump(f"{self.path}: the compressed stream is damaged ({e})") from e
            raise
        if buffer and "".join(buffer).strip():
            raise CorruptDump(f"{self.path}: the dump ends in the middle of a statement: it is truncated")
        if footer_sha is None:
            raise CorruptDump(
                f"{self.path}: the dump has no footer: it is truncated or not a Patina dump; do not trust it"
            )
        if footer_sha != sha.hexdigest():
            raise CorruptDump(
                f"{self.path}: the SQL does not match the sha256 in its footer: the dump was altered or damaged"
            )


def restore_dump(
    dump_path: Path,
    target: Path,
    *,
    table: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    allow_foreign_key_violations: bool = False,
) -> RestoreReport:
    """Restore `dump_path` into the new SQLite file `target` (all of it, or one table with its indexes).

    Rows that break a foreign key fail the restore unless `allow_foreign_key_violations`: a dump of a
    D1 database never has any (D1 enforces foreign keys), and D1 would refuse such a dump; a SQLite
    file may hold them, and then the restored copy holds the same ones.
    """
    target = Path(target)
    if target.exists():
        raise RestoreError(f"{target} already exists; restore never overwrites a database: choose a new path")
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(fd)
    tmp_path = Path(tmp)
    reader = DumpReader(dump_path)
    statements = 0
    try:
        db = sqlite3.connect(tmp_path, isolation_level=None)
        try:
            # A new file renamed into place only at the end: no journal is needed while loading.
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("BEGIN")
            seen_table = table is None
            parts = reader.parts()
            for part in parts:
                if table is not None:
                    if part.table != table or part.kind not in ("Table", "Sequence", "Index", "Rebuild"):
                        continue
                    seen_table = True
                try:
                    db.execute(part.sql)
                except sqlite3.Error as e:
                    where = f" ({part.kind} {part.name!r})" if part.kind else ""
                    failure = RestoreError(f"{dump_path}: statement {statements + 1}{where} failed: {e}")
                    # A damaged dump often shows first as a statement that fails: read on to the footer so
                    # the error says which it is.
                    for _ in parts:
                        pass
                    raise failure from e
                statements += 1
                if progress:  # the callback decides how often to show it
                    progress(part.name, db.total_changes, reader.bytes_read)
            if table is None:
                for pragma, value in reader.pragmas.items():
                    db.execute(f"PRAGMA {pragma} = {int(value)}")
            if not seen_table:
                raise RestoreError(
                    f"{dump_path} has no table {table!r}; its tables: {', '.join(sorted(reader.expected_rows))}"
                )
            db.execute("COMMIT")
            expected = reader.expected_rows if table is None else {table: reader.expected_rows.get(table, 0)}
            counts = verify_database(db, expected)
            violations = db.execute("PRAGMA foreign_key_check").fetchall() if table is None else []
        finally:
            db.close()
        if violations and not allow_foreign_key_violations:
            shown = ", ".join(f"{t} rowid {r} -> {p}" for t, r, p, _ in violations[:5])
            raise RestoreError(
                f"{dump_path}: the restored data breaks {len(violations)} foreign key(s) ({shown}); "
                "D1 enforces foreign keys and would refuse this dump. If the source held them too, "
                "restore anyway with --allow-foreign-key-violations"
            )
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return RestoreReport(target, counts, statements, time.monotonic() - started, violations)


def verify_database(db: sqlite3.Connection, expected_rows: dict[str, int]) -> dict[str, int]:
    """integrity_check, full-text index checks and row counts against `expected_rows`; returns the counts."""
    problems = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
    if problems != ["ok"]:
        raise RestoreError("integrity_check failed: " + "; ".join(problems[:10]))
    for name, sql in db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'"
    ):
        if re.search(r"USING\s+fts5\s*\(", sql, re.IGNORECASE) and not re.search(r"content\s*=\s*(''|\"\")", sql):
            try:
                db.execute(f"INSERT INTO {quote_identifier(name)}({quote_identifier(name)}) VALUES('integrity-check')")
            except sqlite3.Error as e:
                raise RestoreError(f"full-text index {name!r} fails its integrity check: {e}") from e
    counts = {}
    for name, want in expected_rows.items():
        got = db.execute(f"SELECT count(*) FROM {quote_identifier(name)}").fetchone()[0]
        counts[name] = got
        if got != want:
            raise RestoreError(f"table {name!r} has {got} rows after restore, but the dump recorded {want}")
    return counts
