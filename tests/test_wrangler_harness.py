"""What D1 accepts when a dump is restored, measured for real in wrangler 4.20.0's local D1.

Each test executes a small SQL file into a fresh local D1 (workerd, with D1's authorizer and
limits) through tests/support/wrangler.py and checks the resulting SQLite file with Python's
sqlite3. A file runs as one batch (one transaction): one refused statement rolls the whole file
back, so every refusal gets its own execute. These facts decide Patina's dump format.

Needs Node.js >= 20 and npm (the first test installs wrangler with `npm ci` in tests/wrangler).
Without them these tests FAIL with what to install; they never skip.
"""

from __future__ import annotations

import math
import random
import shutil
import sqlite3
import struct
from pathlib import Path

import pytest
from support.wrangler import (
    D1_INTERNAL_TABLE_PREFIX,
    LocalD1,
    WranglerError,
    WranglerSetupError,
    _check_node,
    ensure_wrangler,
    restore_into_local_d1,
)

pytestmark = pytest.mark.wrangler

TXN_REFUSAL = (
    "To execute a transaction, please use the state.storage.transaction() or "
    "state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT "
    "statements."
)
SEVERAL_TXNS = "Wrangler could not process the provided SQL file, as it contains several transactions."
NOT_AUTHORIZED = "not authorized: SQLITE_AUTH"
TOO_BIG = "statement too long: SQLITE_TOOBIG"


# ----------------------------------------------------------------------------------------------
# fixtures and helpers
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def wrangler_bin() -> Path:
    return ensure_wrangler()


@pytest.fixture
def new_d1(tmp_path, wrangler_bin):
    """Factory of fresh local D1 databases, each in its own directory."""
    count = 0

    def make() -> LocalD1:
        nonlocal count
        count += 1
        return LocalD1(tmp_path / f"d1-{count}", wrangler=wrangler_bin)

    return make


@pytest.fixture
def restore(new_d1):
    """restore(sql) -> sqlite3 connection to a snapshot of a fresh D1 that executed `sql`."""
    cons: list[sqlite3.Connection] = []

    def run(sql: str, *more: str) -> sqlite3.Connection:
        db = new_d1()
        for part in (sql, *more):
            db.execute_sql(part)
        con = sqlite3.connect(db.snapshot(db.workdir / "snapshot.sqlite"))
        cons.append(con)
        return con

    yield run
    for con in cons:
        con.close()


@pytest.fixture
def refused(new_d1):
    """refused(sql) -> the error message D1/wrangler gives for `sql`, run into a fresh D1."""

    def run(sql: str) -> str:
        db = new_d1()
        with pytest.raises(WranglerError) as info:
            db.execute_sql(sql)
        return info.value.message

    return run


def user_tables(con: sqlite3.Connection) -> list[str]:
    return [
        name
        for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        if not name.startswith(D1_INTERNAL_TABLE_PREFIX)
    ]


def bits(x: float) -> str:
    return struct.pack(">d", x).hex()


# ----------------------------------------------------------------------------------------------
# the harness itself
# ----------------------------------------------------------------------------------------------


def test_missing_node_fails_with_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no node, no npm
    with pytest.raises(WranglerSetupError) as info:
        _check_node()
    assert "Node.js >= 20 with npm" in str(info.value)
    assert "`node` was not found on PATH" in str(info.value)


def test_ensure_wrangler_is_pinned_and_idempotent(wrangler_bin):
    assert wrangler_bin.name == "wrangler" and wrangler_bin.exists()
    assert ensure_wrangler() == wrangler_bin  # second call: stamp matches, no npm run
    pkg = Path(wrangler_bin).resolve().parents[1] / "package.json"
    assert '"version": "4.20.0"' in pkg.read_text()


def test_restore_returns_a_standalone_sqlite_file(tmp_path, wrangler_bin):
    sql = tmp_path / "dump.sql"
    sql.write_text("CREATE TABLE t(a);\nINSERT INTO t VALUES(1);\n")
    out = restore_into_local_d1(sql, tmp_path / "work")
    assert out == tmp_path / "work" / "restored.sqlite"
    assert not Path(str(out) + "-wal").exists()
    con = sqlite3.connect(out)
    try:
        assert con.execute("SELECT a FROM t").fetchall() == [(1,)]
        assert con.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        # D1 adds its own table; comparisons must leave out every _cf_* table.
        names = {n for (n,) in con.execute("SELECT name FROM sqlite_master")}
        assert "_cf_METADATA" in names
        assert user_tables(con) == ["t"]
    finally:
        con.close()


def test_live_file_needs_its_wal(new_d1, tmp_path):
    """workerd leaves the committed data in the -wal: the .sqlite alone is not the database."""
    db = new_d1()
    db.execute_sql("CREATE TABLE t(a);\nINSERT INTO t VALUES(1);\n")
    live = db.live_sqlite_path()
    wal = Path(str(live) + "-wal")
    assert wal.exists() and wal.stat().st_size > 0
    alone = tmp_path / "alone.sqlite"
    shutil.copyfile(live, alone)  # without the WAL
    con = sqlite3.connect(alone)
    try:
        assert con.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'").fetchone() == (0,)
    finally:
        con.close()
    snap = db.snapshot(tmp_path / "snap.sqlite")
    con = sqlite3.connect(snap)
    try:
        assert con.execute("SELECT a FROM t").fetchall() == [(1,)]
    finally:
        con.close()
    assert wal.exists(), "snapshot must not touch wrangler's own state"


def test_start_up_cost_and_several_files_into_one_database(new_d1, tmp_path, record_property):
    db = new_d1()
    first = db.execute_sql("CREATE TABLE t(a);\nINSERT INTO t VALUES(1);\n", name="a.sql")
    second = db.execute_sql("INSERT INTO t VALUES(2);\n", name="b.sql")
    # A refused file rolls back only itself (each execute is its own batch/transaction).
    with pytest.raises(WranglerError) as info:
        db.execute_sql("INSERT INTO t VALUES(3);\nINSERT INTO nope VALUES(1);\n", name="c.sql")
    assert info.value.message == "no such table: nope: SQLITE_ERROR"
    rows = db.execute_command("SELECT a FROM t ORDER BY a").rows()
    assert rows == [{"a": 1}, {"a": 2}]
    record_property("first_execute_seconds", round(first.seconds, 2))
    record_property("second_execute_seconds", round(second.seconds, 2))
    print(f"\nlocal D1 execute of a small file: {first.seconds:.2f} s, then {second.seconds:.2f} s")
    assert first.seconds < 60 and second.seconds < 60


def test_results_of_a_command_come_back_as_json(new_d1):
    db = new_d1()
    res = db.execute_command("SELECT 1 AS one, 'x' AS s")
    assert res.rows() == [{"one": 1, "s": "x"}]
    with pytest.raises(WranglerError) as info:
        db.execute_command("SELECT sqlite_version()")
    assert info.value.message == ("not authorized to use function: sqlite_version at offset 7: SQLITE_ERROR")


# ----------------------------------------------------------------------------------------------
# a. foreign keys
# ----------------------------------------------------------------------------------------------

FK_CYCLE = """\
CREATE TABLE a(id INTEGER PRIMARY KEY, b_id INTEGER REFERENCES b(id));
CREATE TABLE b(id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a(id));
INSERT INTO a VALUES(1, 10);
INSERT INTO b VALUES(10, 1);
"""


def test_a_defer_foreign_keys_lets_children_come_first(restore):
    con = restore("PRAGMA defer_foreign_keys=TRUE;\n" + FK_CYCLE)
    assert con.execute("SELECT * FROM a").fetchall() == [(1, 10)]
    assert con.execute("SELECT * FROM b").fetchall() == [(10, 1)]
    assert con.execute("PRAGMA foreign_key_check").fetchall() == []


def test_a_without_deferral_child_first_is_refused(refused):
    assert refused(FK_CYCLE) == "FOREIGN KEY constraint failed: SQLITE_CONSTRAINT"


def test_a_foreign_keys_off_is_ignored(refused):
    # Accepted as a statement but without effect: D1 always enforces foreign keys.
    assert refused("PRAGMA foreign_keys=OFF;\n" + FK_CYCLE) == ("FOREIGN KEY constraint failed: SQLITE_CONSTRAINT")


def test_a_deferred_violation_left_at_the_end_is_refused(refused):
    msg = refused(
        "PRAGMA defer_foreign_keys=TRUE;\n"
        "CREATE TABLE p(id INTEGER PRIMARY KEY);\n"
        "CREATE TABLE c(id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p(id));\n"
        "INSERT INTO c VALUES(1, 99);\n"
    )
    assert msg.endswith("constraints were violated: FOREIGN KEY constraint failed: SQLITE_CONSTRAINT")
    assert msg.startswith("Durable Object was reset and rolled back to its last known good state")


# ----------------------------------------------------------------------------------------------
# b, c. transactions and writable_schema
# ----------------------------------------------------------------------------------------------


def test_b_one_begin_commit_pair_is_stripped(restore):
    con = restore("BEGIN TRANSACTION;\nCREATE TABLE t(a);\nINSERT INTO t VALUES(1);\nCOMMIT;\n")
    assert con.execute("SELECT a FROM t").fetchall() == [(1,)]


@pytest.mark.parametrize(
    "sql, expected",
    [
        pytest.param(
            "BEGIN TRANSACTION;\nCREATE TABLE t(a);\nCOMMIT;\nBEGIN TRANSACTION;\nINSERT INTO t VALUES(1);\nCOMMIT;\n",
            SEVERAL_TXNS,
            id="two-begin-commit-pairs",
        ),
        pytest.param("BEGIN;\nCREATE TABLE t(a);\nCOMMIT;\n", TXN_REFUSAL, id="bare-BEGIN"),
        pytest.param(
            "CREATE TABLE t(a);\nSAVEPOINT sp;\nINSERT INTO t VALUES(1);\nRELEASE sp;\n",
            TXN_REFUSAL,
            id="savepoint",
        ),
        pytest.param("CREATE TABLE t(a);\nCOMMIT;\n", TXN_REFUSAL, id="lone-COMMIT"),
        pytest.param("PRAGMA writable_schema=ON;\nCREATE TABLE t(a);\n", NOT_AUTHORIZED, id="writable_schema"),
    ],
)
def test_b_c_transaction_control_is_refused(refused, sql, expected):
    assert refused(sql).startswith(expected)


def test_b_begin_transaction_inside_a_string_is_mangled(restore, refused):
    """wrangler deletes the first 'BEGIN TRANSACTION;' and 'COMMIT;' anywhere in the file, inside
    string literals too, when the text 'BEGIN TRANSACTION' occurs: data is silently changed."""
    con = restore("CREATE TABLE t(a);\nINSERT INTO t VALUES('BEGIN TRANSACTION; x COMMIT; y');\n")
    assert con.execute("SELECT a FROM t").fetchall() == [(" x  y",)]
    # ... and two occurrences make wrangler refuse the file.
    assert refused(
        "CREATE TABLE t(a);\nINSERT INTO t VALUES('BEGIN TRANSACTION');\nINSERT INTO t VALUES('BEGIN TRANSACTION');\n"
    ).startswith(SEVERAL_TXNS)
    # Written in two pieces the value survives: 'COMMIT;' alone is harmless.
    con = restore("CREATE TABLE t(a);\nINSERT INTO t VALUES('BEGIN TRANS' || 'ACTION; x COMMIT; y');\n")
    assert con.execute("SELECT a FROM t").fetchall() == [("BEGIN TRANSACTION; x COMMIT; y",)]


# ----------------------------------------------------------------------------------------------
# d. sqlite_sequence
# ----------------------------------------------------------------------------------------------


def test_d_sqlite_sequence_is_writable(restore):
    con = restore(
        "CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, v);\n"
        "CREATE TABLE u(id INTEGER PRIMARY KEY AUTOINCREMENT, v);\n"
        "DELETE FROM sqlite_sequence WHERE name='t';\n"
        "INSERT INTO sqlite_sequence(name, seq) VALUES('t', 1000);\n"
        "INSERT INTO u(v) VALUES('x');\n"
        "UPDATE sqlite_sequence SET seq = 500 WHERE name = 'u';\n"
    )
    assert con.execute("SELECT name, seq FROM sqlite_sequence ORDER BY name").fetchall() == [("t", 1000), ("u", 500)]
    con.execute("INSERT INTO t(v) VALUES('next')")
    assert con.execute("SELECT max(id) FROM t").fetchone() == (1001,)


# ----------------------------------------------------------------------------------------------
# e. FTS5
# ----------------------------------------------------------------------------------------------


def test_e_fts5_tables_restore_and_match(restore):
    con = restore(
        "CREATE VIRTUAL TABLE ft USING fts5(a, b);\n"
        "INSERT INTO ft(rowid, a, b) VALUES(3, 'hello world', 'one');\n"
        "INSERT INTO ft(rowid, a, b) VALUES(8, 'goodbye moon', 'two');\n"
        "CREATE TABLE posts(id INTEGER PRIMARY KEY, title TEXT);\n"
        "INSERT INTO posts VALUES(1, 'hello world'), (5, 'goodbye moon'), (7, 'world peace');\n"
        "CREATE VIRTUAL TABLE pf USING fts5(title, content='posts', content_rowid='id');\n"
        "INSERT INTO pf(pf) VALUES('rebuild');\n"
    )
    assert con.execute("SELECT rowid, a, b FROM ft WHERE ft MATCH 'world'").fetchall() == [(3, "hello world", "one")]
    assert con.execute("SELECT rowid, title FROM pf WHERE pf MATCH 'world' ORDER BY rowid").fetchall() == [
        (1, "hello world"),
        (7, "world peace"),
    ]
    con.execute("INSERT INTO pf(pf) VALUES('integrity-check')")
    # The shadow tables are made by CREATE VIRTUAL TABLE: a dump must not write them.
    assert {"ft_data", "ft_idx", "ft_content", "ft_docsize", "ft_config", "pf_data"} <= {
        n for (n,) in con.execute("SELECT name FROM sqlite_master")
    }


def test_e_fts5_match_inside_d1(new_d1):
    db = new_d1()
    db.execute_sql("CREATE VIRTUAL TABLE ft USING fts5(a);\nINSERT INTO ft VALUES('hello world');\n")
    assert db.execute_command("SELECT a FROM ft WHERE ft MATCH 'hello'").rows() == [{"a": "hello world"}]


@pytest.mark.parametrize(
    "sql, expected",
    [
        pytest.param(
            "CREATE VIRTUAL TABLE ft USING fts5(a);\nINSERT INTO ft_data(id, block) VALUES(99, X'00');\n",
            "table ft_data may not be modified: SQLITE_ERROR",
            id="fts5-shadow-write",
        ),
        pytest.param("CREATE VIRTUAL TABLE ft USING fts4(a);\n", NOT_AUTHORIZED, id="fts4"),
        pytest.param("CREATE VIRTUAL TABLE r USING rtree(id, x0, x1);\n", NOT_AUTHORIZED, id="rtree"),
    ],
)
def test_e_other_virtual_tables_are_refused(refused, sql, expected):
    assert refused(sql) == expected


# ----------------------------------------------------------------------------------------------
# f. values
# ----------------------------------------------------------------------------------------------


def test_f_values_survive_exactly(restore):
    con = restore(
        "CREATE TABLE v(k TEXT PRIMARY KEY, x);\n"
        "INSERT INTO v VALUES('imin', -9223372036854775808);\n"
        "INSERT INTO v VALUES('imax', 9223372036854775807);\n"
        "INSERT INTO v VALUES('big', 9007199254740993);\n"
        "INSERT INTO v VALUES('pinf', 9e999);\n"
        "INSERT INTO v VALUES('ninf', -9e999);\n"
        "INSERT INTO v VALUES('denorm', 5e-324);\n"
        "INSERT INTO v VALUES('r17', 389.1076970815528);\n"
        "INSERT INTO v VALUES('r17b', 0.30000000000000004);\n"
        "INSERT INTO v VALUES('negzero', -0.0);\n"
        "INSERT INTO v VALUES('one', 1.0);\n"
        "INSERT INTO v VALUES('nul', CAST(X'410042' AS TEXT));\n"
        "INSERT INTO v VALUES('badutf8', CAST(X'41FF42' AS TEXT));\n"
        "INSERT INTO v VALUES('nl', 'a'||char(10)||'b');\n"
        "INSERT INTO v VALUES('rawnl', 'a\nb\r\nc');\n"
        "INSERT INTO v VALUES('emptyblob', X'');\n"
        "INSERT INTO v VALUES('emptytext', '');\n"
        "INSERT INTO v VALUES('blob', X'00FF80');\n"
        "INSERT INTO v VALUES('emoji', '😀é中');\n"
        "INSERT INTO v VALUES('null', NULL);\n"
    )
    con.text_factory = bytes
    got = {k.decode(): (t.decode(), x) for k, t, x in con.execute("SELECT k, typeof(x), x FROM v")}
    assert got["imin"] == ("integer", -9223372036854775808)
    assert got["imax"] == ("integer", 9223372036854775807)
    assert got["big"] == ("integer", 9007199254740993)
    expected_reals = {
        "pinf": "7ff0000000000000",
        "ninf": "fff0000000000000",
        "denorm": "0000000000000001",
        "r17": bits(389.1076970815528),
        "r17b": bits(0.30000000000000004),
        "negzero": "8000000000000000",
        "one": "3ff0000000000000",
    }
    for k, b in expected_reals.items():
        assert got[k][0] == "real", k
        assert bits(got[k][1]) == b, k
    assert got["nul"] == ("text", b"A\x00B")
    assert got["badutf8"] == ("text", b"A\xffB")
    assert got["nl"] == ("text", b"a\nb")
    assert got["rawnl"] == ("text", b"a\nb\r\nc")
    assert got["emptyblob"] == ("blob", b"")
    assert got["emptytext"] == ("text", b"")
    assert got["blob"] == ("blob", b"\x00\xff\x80")
    assert got["emoji"] == ("text", "😀é中".encode())
    assert got["null"] == ("null", None)


def _exact_real(x: float) -> str:
    """x as integer arithmetic on powers of two (exact in any SQLite): m * 2**e, with m < 2**53
    and 2**e applied in steps of at most 2**62, whose decimal forms SQLite reads exactly."""
    m, e = math.frexp(x)
    m, e = int(m * 2**53), e - 53
    expr = f"{m}.0"
    op = "*" if e > 0 else "/"
    e = abs(e)
    while e:
        step = min(e, 62)
        expr += f" {op} {2**step}.0"
        e -= step
    return f"({expr})"


def test_f_decimal_doubles_of_extreme_magnitude_are_misread(restore):
    """D1's SQLite reads Python's shortest repr exactly for everyday magnitudes, but misreads many
    doubles with exponents beyond about +-80 (one in six of doubles drawn from random bits
    here). Integer-and-power-of-two arithmetic restores every one of them exactly."""
    rng = random.Random(1)
    everyday = [rng.uniform(-1, 1) * 10 ** rng.randint(-20, 20) for _ in range(1000)]
    anybits = []
    while len(anybits) < 1000:
        (x,) = struct.unpack(">d", rng.getrandbits(64).to_bytes(8, "big"))
        if math.isfinite(x):
            anybits.append(x)
    stmts = [
        "CREATE TABLE everyday(i INTEGER PRIMARY KEY, x REAL);",
        "CREATE TABLE decimal(i INTEGER PRIMARY KEY, x REAL);",
        "CREATE TABLE exact(i INTEGER PRIMARY KEY, x REAL);",
    ]
    for table, values, literal in (
        ("everyday", everyday, repr),
        ("decimal", anybits, repr),
        ("exact", anybits, _exact_real),
    ):
        for k in range(0, 1000, 250):
            rows = ",".join(f"({i}, {literal(v)})" for i, v in enumerate(values[k : k + 250], start=k))
            stmts.append(f"INSERT INTO {table} VALUES {rows};")
    con = restore("\n".join(stmts) + "\n")

    def wrong(table, values):
        got = dict(con.execute(f"SELECT i, x FROM {table}"))
        return [values[i] for i in range(len(values)) if bits(got[i]) != bits(values[i])]

    assert wrong("everyday", everyday) == []
    misread = wrong("decimal", anybits)
    assert len(misread) > 50
    assert all(abs(math.log10(abs(x))) > 80 for x in misread)
    assert wrong("exact", anybits) == []


def test_f_quote_of_infinity_in_d1_is_valid_sql(new_d1):
    # D1's SQLite (newer than Python's 3.40, which prints 'Inf') quotes infinities as 9.0e+999.
    res = new_d1().execute_command("SELECT quote(9e999) AS p, quote(-9e999) AS n")
    assert res.rows() == [{"p": "9.0e+999", "n": "-9.0e+999"}]


# ----------------------------------------------------------------------------------------------
# g. sizes
# ----------------------------------------------------------------------------------------------


def _insert_of(n_bytes: int, ch: str = "x") -> str:
    """An INSERT statement whose text (without its ';') is exactly n_bytes of UTF-8."""
    head, tail = "INSERT INTO t VALUES('", "')"
    room = n_bytes - len(head) - len(tail)
    width = len(ch.encode())
    assert room % width == 0
    stmt = head + ch * (room // width) + tail
    assert len(stmt.encode()) == n_bytes
    return stmt


def test_g_statement_of_100000_bytes_is_accepted(restore):
    con = restore("CREATE TABLE t(v);\n" + _insert_of(100_000) + ";\n")
    assert con.execute("SELECT length(v) FROM t").fetchone() == (100_000 - 24,)


@pytest.mark.parametrize(
    "stmt",
    [
        pytest.param(_insert_of(100_001), id="100001-bytes"),
        # The limit counts UTF-8 bytes, not characters: 50,991 characters, 101,958 bytes.
        pytest.param(_insert_of(24 + 2 * 50_967, "é"), id="under-100k-chars-over-100k-bytes"),
    ],
)
def test_g_statement_over_100000_bytes_is_refused(refused, stmt):
    assert refused("CREATE TABLE t(v);\n" + stmt + ";\n") == TOO_BIG


def test_g_multi_row_insert_of_1000_rows(restore):
    rows = ",".join(f"({i}, 'row{i}', X'{i:04x}')" for i in range(1000))
    con = restore("CREATE TABLE m(id INTEGER PRIMARY KEY, s TEXT, b BLOB);\nINSERT INTO m VALUES " + rows + ";\n")
    assert con.execute("SELECT count(*), sum(id), max(s) FROM m").fetchone() == (1000, 499500, "row999")
    assert con.execute("SELECT b FROM m WHERE id = 258").fetchone() == (b"\x01\x02",)


def test_g_appending_to_a_blob(restore):
    """`b || X'..'` is TEXT (same bytes); CAST(... AS BLOB) and unhex(hex(b) || '..') give the
    exact BLOB, NUL bytes and invalid UTF-8 included. concat() gives TEXT too."""
    con = restore(
        "CREATE TABLE b(id INTEGER PRIMARY KEY, b BLOB);\n"
        "INSERT INTO b VALUES(1, X'00FF'), (2, X'00FF'), (3, X'00FF'), (4, X'00FF');\n"
        "UPDATE b SET b = b || X'00FF80' WHERE id = 1;\n"
        "UPDATE b SET b = CAST(b || X'00FF80' AS BLOB) WHERE id = 2;\n"
        "UPDATE b SET b = unhex(hex(b) || '00FF80') WHERE id = 3;\n"
        "UPDATE b SET b = concat(b, X'00FF80') WHERE id = 4;\n"
    )
    con.text_factory = bytes
    assert con.execute("SELECT id, typeof(b), b FROM b ORDER BY id").fetchall() == [
        (1, b"text", b"\x00\xff\x00\xff\x80"),
        (2, b"blob", b"\x00\xff\x00\xff\x80"),
        (3, b"blob", b"\x00\xff\x00\xff\x80"),
        (4, b"text", b"\x00\xff\x00\xff\x80"),
    ]


def test_g_a_1_5_mb_value_built_in_pieces(new_d1, tmp_path):
    """1.5 MB of text and of bytes, appended 30,000 characters / 45,000 bytes at a time.
    Spread over several executes of under 1 MB of SQL each: one execute holding more than
    1 MiB of distinct statements can crash workerd 2025-06-04 (its statement cache)."""
    unit = "abcdé😀\n'"
    text = unit * (1_500_000 // len(unit.encode()))
    data = bytes(range(256)) * (1_500_000 // 256)
    # Two rows: one row holding both values would pass the row limit (see test_g_value_limits).
    stmts = [
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB);",
        "INSERT INTO t VALUES(1, '', NULL), (2, NULL, X'');",
    ]
    for i in range(0, len(text), 30_000):
        piece = text[i : i + 30_000].replace("'", "''")
        stmts.append(f"UPDATE t SET v = v || '{piece}' WHERE id = 1;")
    for i in range(0, len(data), 45_000):
        stmts.append(f"UPDATE t SET b = CAST(b || X'{data[i : i + 45_000].hex()}' AS BLOB) WHERE id = 2;")
    files, current, size = [], [], 0
    for s in stmts:
        n = len(s.encode()) + 1
        assert n <= 100_000
        if size + n > 900_000:
            files.append(current)
            current, size = [], 0
        current.append(s)
        size += n
    files.append(current)
    db = new_d1()
    paths = []
    for k, chunk in enumerate(files):
        p = tmp_path / f"part{k}.sql"
        p.write_text("\n".join(chunk) + "\n", encoding="utf-8")
        paths.append(p)
    assert len(paths) >= 4
    assert all(r.ok for r in db.execute_files(paths))
    con = sqlite3.connect(db.snapshot(tmp_path / "big.sqlite"))
    try:
        v, tv = con.execute("SELECT v, typeof(v) FROM t WHERE id = 1").fetchone()
        b, tb = con.execute("SELECT b, typeof(b) FROM t WHERE id = 2").fetchone()
    finally:
        con.close()
    assert (tv, tb) == ("text", "blob")
    assert v == text and b == data


def test_g_value_limits(new_d1):
    """Local D1's SQLITE_LIMIT_LENGTH is 2,200,000 bytes (D1 documents 2 MB): it bounds every
    value, every intermediate string (so unhex(hex(b) || ..) fails past 1.1 MB) and the whole
    row as SQLite encodes it (two 1.1 MB values in one row are refused)."""
    db = new_d1()
    db.execute_sql(
        "CREATE TABLE t(b);\nINSERT INTO t VALUES(zeroblob(1999998));\nUPDATE t SET b = CAST(b || X'010203' AS BLOB);\n"
    )
    assert db.execute_command("SELECT length(b) AS n FROM t").rows() == [{"n": 2_000_001}]
    assert db.execute_command("SELECT length(zeroblob(2200000)) AS n").rows() == [{"n": 2_200_000}]
    for sql in ("SELECT length(zeroblob(2200001)) AS n", "SELECT length(unhex(hex(b) || '00')) AS n FROM t"):
        with pytest.raises(WranglerError) as info:
            db.execute_command(sql)
        assert info.value.message == "string or blob too big: SQLITE_TOOBIG"
    db.execute_sql("CREATE TABLE r(a, b);\nINSERT INTO r VALUES(zeroblob(1000000), zeroblob(1000000));\n")
    with pytest.raises(WranglerError) as info:
        db.execute_sql("INSERT INTO r VALUES(zeroblob(1100000), zeroblob(1100000));\n")
    assert info.value.message == "string or blob too big: SQLITE_TOOBIG"


# ----------------------------------------------------------------------------------------------
# h. schema objects and names
# ----------------------------------------------------------------------------------------------


def test_h_schema_objects_restore(restore):
    con = restore(
        "CREATE TABLE g(id INTEGER PRIMARY KEY, a INTEGER, b TEXT,"
        " v INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL, s TEXT GENERATED ALWAYS AS (upper(b)) STORED);\n"
        "INSERT INTO g(id, a, b) VALUES(1, 21, 'x');\n"
        "CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID;\n"
        "INSERT INTO w VALUES('b', 2), ('a', 1);\n"
        "CREATE TABLE s(id INTEGER PRIMARY KEY, n INTEGER NOT NULL, t TEXT, r REAL, b BLOB, x ANY) STRICT;\n"
        "INSERT INTO s VALUES(1, 5, 't', 1.5, X'00', 'any');\n"
        "CREATE TABLE base(id INTEGER PRIMARY KEY, v TEXT);\n"
        "CREATE VIEW vw AS SELECT id, v FROM base;\n"
        "CREATE TRIGGER vw_ins INSTEAD OF INSERT ON vw BEGIN INSERT INTO base(id, v) VALUES(NEW.id, NEW.v); END;\n"
        "INSERT INTO vw(id, v) VALUES(7, 'via view');\n"
        'CREATE TABLE "select"("from" INTEGER, "where" TEXT, "group" TEXT);\n'
        'INSERT INTO "select"("from", "where", "group") VALUES(1, \'w\', \'g\');\n'
        'CREATE TABLE "we""ird;name"("col;--x" TEXT);\n'
        'INSERT INTO "we""ird;name"("col;--x") VALUES(\'ok\');\n'
        "CREATE TABLE _CF_upper(a);\n"
    )
    assert con.execute("SELECT * FROM g").fetchall() == [(1, 21, "x", 42, "X")]
    assert con.execute("SELECT * FROM w").fetchall() == [("a", 1), ("b", 2)]
    assert con.execute("SELECT * FROM s").fetchall() == [(1, 5, "t", 1.5, b"\x00", "any")]
    assert con.execute("SELECT * FROM base").fetchall() == [(7, "via view")]
    assert con.execute('SELECT * FROM "select"').fetchall() == [(1, "w", "g")]
    assert con.execute('SELECT * FROM "we""ird;name"').fetchall() == [("ok",)]
    # D1's reservation of _cf_ is case-sensitive.
    assert "_CF_upper" in user_tables(con)


@pytest.mark.parametrize(
    "sql, expected",
    [
        pytest.param("CREATE TABLE _cf_x(a);\n", NOT_AUTHORIZED, id="table-_cf_x"),
        pytest.param("CREATE TABLE t(a);\nCREATE INDEX _cf_i ON t(a);\n", NOT_AUTHORIZED, id="index-_cf_i"),
        pytest.param(
            "CREATE TABLE t(a);\nINSERT INTO _cf_METADATA VALUES(99, 1);\n",
            "no such table: _cf_METADATA: SQLITE_ERROR",
            id="write-_cf_METADATA",
        ),
    ],
)
def test_h_cf_names_are_reserved(refused, sql, expected):
    assert refused(sql) == expected


# ----------------------------------------------------------------------------------------------
# i. column counts
# ----------------------------------------------------------------------------------------------

COLS = ", ".join(f"c{i}" for i in range(100))
VALS = ", ".join(str(i) for i in range(100))


def test_i_insert_naming_rowid_and_100_columns_is_accepted(new_d1):
    db = new_d1()
    db.execute_sql(f"CREATE TABLE wide({COLS});\nINSERT INTO wide(rowid, {COLS}) VALUES(42, {VALS});\n")
    assert db.execute_command("SELECT rowid AS r, c99 FROM wide").rows() == [{"r": 42, "c99": 99}]
    # ... but a result set of 101 columns is refused, so is INSERT ... SELECT of 101 columns.
    for sql in ("SELECT rowid, * FROM wide", f"INSERT INTO wide(rowid, {COLS}) SELECT 43, {VALS}"):
        with pytest.raises(WranglerError) as info:
            db.execute_command(sql)
        assert info.value.message == "too many columns in result set: SQLITE_ERROR"


def test_i_table_of_101_columns_is_refused(refused):
    assert refused(f"CREATE TABLE wide(id INTEGER PRIMARY KEY, {COLS});\n") == (
        "too many columns on wide: SQLITE_ERROR"
    )


# ----------------------------------------------------------------------------------------------
# j. comments, blank lines, the end of the file; wrangler's statement splitter
# ----------------------------------------------------------------------------------------------


def test_j_comments_blank_lines_and_no_trailing_newline(restore):
    con = restore(
        "-- Patina dump; a comment with a semicolon; and a 'quote\n"
        "PRAGMA defer_foreign_keys=TRUE;\n\n\n"
        "-- table t\n"
        "CREATE TABLE t(a TEXT); -- trailing comment; with semicolon\n\n"
        "/* block comment; with semicolon */\n"
        "INSERT INTO t VALUES('--not a comment;');\n"
        "INSERT INTO t VALUES('/* not a comment; */');\n"
        "INSERT INTO t VALUES('x') -- comment before the semicolon\n;\n\n"
        "INSERT INTO t VALUES('it''s; fine')"  # no ';', no newline at the end
    )
    assert con.execute("SELECT a FROM t").fetchall() == [
        ("--not a comment;",),
        ("/* not a comment; */",),
        ("x",),
        ("it's; fine",),
    ]
    con2 = restore("CREATE TABLE t(a);\nINSERT INTO t VALUES(1);\n-- last line is a comment")
    assert con2.execute("SELECT a FROM t").fetchall() == [(1,)]


def test_j_lowercase_trigger_end_glues_the_following_statements(new_d1, refused, restore):
    """wrangler's splitter opens a compound statement at ' BEGIN ' / ' CASE ' (any case) and
    closes it only at ' END' in UPPER case followed by ';' or whitespace. Until then it does not
    split: the rest of the file reaches D1 as one statement (which D1 runs), and the 100,000-byte
    limit applies to the glued text. An uppercase END (`SELECT 0 END;`) after such a statement
    closes it again."""
    trigger = (
        "CREATE TABLE t(a);\nCREATE TABLE log(x);\n"
        "CREATE TRIGGER tr AFTER INSERT ON t begin INSERT INTO log VALUES(1); end;\n"
    )
    db = new_d1()
    res = db.execute_sql(trigger + "INSERT INTO t VALUES(1);\nINSERT INTO t VALUES(2);\n")
    assert len(res.results) == 3  # not 5: the trigger and both INSERTs went as one statement
    big = "INSERT INTO t VALUES('" + "x" * 60_000 + "');\n"
    assert refused(trigger + big + big) == TOO_BIG
    con = restore(trigger + "SELECT 0 END;\n" + big + big)
    assert con.execute("SELECT count(*) FROM t").fetchone() == (2,)
    assert con.execute("SELECT count(*) FROM log").fetchone() == (2,)
