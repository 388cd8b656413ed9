"""A big rowid table of a SQLite file is written by two processes; the dump must be exactly what one
process writes, and restore exactly."""

import hashlib
import random
import re
import sqlite3

import blake3
from support.compare import assert_same_database

from patina_assets.engine import SqliteSource, dump, dump_database, restore_dump, table_digests_of
from patina_assets.engine.schema import read_schema
from patina_assets.engine.sources import SPLIT_MIN_ROWIDS


def sparse_table(path, wal=False):
    """3,000 rows over a rowid range far wider than SPLIT_MIN_ROWIDS, with REALs, NULs and big values."""
    db = sqlite3.connect(path)
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, r REAL, s TEXT, b BLOB)")
    rng = random.Random(3)
    rows = [
        (i * 1000 + rng.randrange(1000), rng.random() * 1000, f"row {i}\x00\n'", rng.randbytes(20)) for i in range(3000)
    ]
    rows[1700] = (rows[1700][0], 1.5, "x" * 250_000, b"")  # a row over one statement, past the split
    db.executemany("INSERT INTO t VALUES (?,?,?,?)", rows)
    db.commit()
    db.close()
    return path


def body(path):
    return [
        line
        for line in open(path, encoding="utf-8")
        if not re.match(r"^-- (Generated|Job ID|Duration|SHA-256 of the SQL|Size|Patina backup|Backup complete)", line)
    ]


def test_two_processes_write_exactly_what_one_writes(tmp_path, monkeypatch):
    source = sparse_table(tmp_path / "sparse.sqlite")
    with SqliteSource(source) as db:
        (table,) = read_schema(db).tables
        assert db.split_point(table) is not None  # this table is split
        split = dump_database(db, tmp_path / "split.sql")
    monkeypatch.setattr(SqliteSource, "split_point", lambda self, table: None)
    with SqliteSource(source) as db:
        whole = dump_database(db, tmp_path / "whole.sql")
    assert body(tmp_path / "split.sql") == body(tmp_path / "whole.sql")
    assert split.table_digests == whole.table_digests and split.table_rows == whole.table_rows == {"t": 3000}
    restore_dump(tmp_path / "split.sql", tmp_path / "restored.sqlite")
    assert_same_database(source, tmp_path / "restored.sqlite")
    assert not list(tmp_path.glob(".patina-half-*"))


def statements_of(path, table):
    """The bytes of `table`'s INSERT statements in a dump: what its data digest is a hash of."""
    data = path.read_bytes()
    start = data.index(b"CREATE TABLE IF NOT EXISTS %s(" % table.encode())
    start = data.index(b";\n", start) + 2
    return data[start : data.index(b"-- End of table: ", start)]


def test_a_split_tables_digest_is_the_hash_of_the_statements_one_process_writes(tmp_path):
    # The second process hashes nothing: this one hashes its half as it appends it, so the digest is of the
    # very bytes of the dump, in either digest version.
    source = sparse_table(tmp_path / "sparse.sqlite")
    with SqliteSource(source) as db:
        assert db.split_point(read_schema(db).tables[0]) is not None
        split = dump_database(db, tmp_path / "split.sql")
        sha256_digests = table_digests_of(db, digest_version=1)  # one process, as a restore is checked
        blake3_digests = table_digests_of(db)
    statements = statements_of(tmp_path / "split.sql", "t")
    assert statements.startswith(b'INSERT INTO "t"("id","r","s","b") VALUES\n(') and statements.endswith(b");\n")
    assert split.digest_version == 2 and split.table_digests == blake3_digests == {
        "t": blake3.blake3(statements).hexdigest()
    }
    assert sha256_digests == {"t": hashlib.sha256(statements).hexdigest()}


def test_the_second_process_writes_its_half_and_exits_cleanly(tmp_path, monkeypatch):
    # A worker that fails, even at its exit after writing its half, is replaced by this process writing
    # that half again: the dump stays exact but costs one and a half times the work (its exit once
    # aborted on the stdin watch's lock, every time, and nothing but the time showed it).
    answers = []
    append_to = dump._SecondHalf.append_to

    def recorded(self, emit_bytes):
        try:
            rows = append_to(self, emit_bytes)
        except dump._WorkerFailed:
            answers.append(("failed", self.process and self.process.returncode))
            raise
        answers.append(("appended", rows))
        return rows

    monkeypatch.setattr(dump._SecondHalf, "append_to", recorded)
    source = sparse_table(tmp_path / "sparse.sqlite")
    with SqliteSource(source) as db:
        (table,) = read_schema(db).tables
        mid = db.split_point(table)
        second_half = db.query(f"SELECT count(*) FROM t WHERE id >= {mid}")[0][0]
        result = dump_database(db, tmp_path / "split.sql")
    assert answers == [("appended", second_half)] and result.table_rows == {"t": 3000}


def test_wal_files_and_small_tables_are_not_split(tmp_path):
    with SqliteSource(sparse_table(tmp_path / "wal.sqlite", wal=True)) as db:
        assert db.split_point(read_schema(db).tables[0]) is None
    small = tmp_path / "small.sqlite"
    con = sqlite3.connect(small)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(0, SPLIT_MIN_ROWIDS - 1, 7)])
    con.commit()
    con.close()
    with SqliteSource(small) as db:
        assert db.split_point(read_schema(db).tables[0]) is None


def test_without_a_second_process_this_one_writes_both_halves(tmp_path, monkeypatch, caplog):
    source = sparse_table(tmp_path / "sparse.sqlite")
    with SqliteSource(source) as db:
        whole = dump_database(db, tmp_path / "whole.sql")
    monkeypatch.setattr("sys.executable", "/nonexistent/python")  # no worker can start
    with SqliteSource(source) as db:
        alone = dump_database(db, tmp_path / "alone.sql")
    assert body(tmp_path / "alone.sql") == body(tmp_path / "whole.sql")
    assert alone.table_digests == whole.table_digests and alone.table_rows == {"t": 3000}
    assert not list(tmp_path.glob(".patina-half-*"))
    (warning,) = [r.getMessage() for r in caplog.records if "second process" in r.getMessage()]
    assert "table t" in warning and "could not be started" in warning  # a fallback is never silent
    (warning,) = [r.getMessage() for r in caplog.records if "second process" in r.getMessage()]
    assert "table t" in warning and "could not be started" in warning  # a fallback is never silent


def test_finding_the_split_point_reads_two_ends_of_the_rowid_index_not_the_table(tmp_path):
    """`min(id), max(id)` in one SELECT makes SQLite scan the whole table (a second of reading on a big
    file, before the first row is written); each alone is a seek to one end of the b-tree."""
    path = tmp_path / "wide.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT)")
    db.executemany("INSERT INTO t VALUES (?, 'x')", ((i * 8,) for i in range(100_000)))
    db.commit()
    db.close()
    with SqliteSource(path) as source:
        (table,) = read_schema(source).tables
        steps = []
        source._db.set_progress_handler(lambda: steps.append(1), 100)  # called every 100 VM instructions
        assert source.split_point(table) is not None
        source._db.set_progress_handler(None, 100)
    assert len(steps) < 20  # a scan of 100,000 rows is several thousand calls
