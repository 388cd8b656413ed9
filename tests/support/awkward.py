"""A corpus of awkward SQLite databases: every hazard a SQL dumper must survive.

``build_all(directory)`` writes one database per case (``<case>.sqlite``) and returns
``{case: path}``; each case is also a function ``build_<case>(path)``. The builds are
deterministic (seeded RNGs, no clocks) and use Python's sqlite3 module (SQLite 3.40), so
every file is readable by it; each build ends with PRAGMA integrity_check and
foreign_key_check, since D1 enforces foreign keys.

The cases modelled on real D1 applications' schemas live in ``real_schemas.py`` and are added
to ``CASES``, ``D1_INCOMPATIBLE`` and ``BUILDERS`` here.

``CASES`` describes the hazard of each case in one line; ``D1_INCOMPATIBLE`` names the
cases that D1 itself cannot hold or restore, with the reason (measured against wrangler
4.20.0's local D1 where noted).
"""

from __future__ import annotations

import math
import random
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path

from . import real_schemas
from .builds import _connect, _exec_many, _finish, _mixed_text, _rng

__all__ = [
    "CASES",
    "D1_INCOMPATIBLE",
    "BUILDERS",
    "build_all",
    "build",
    "INTEGERS",
    "SPECIAL_REALS",
    "MISREAD_BY_3_40",
]

CASES: dict[str, str] = {
    "integers": "64-bit integers at the edges (-2^63 .. 2^63-1, around 2^53) as values, rowids, "
    "INTEGER PRIMARY KEYs and WITHOUT ROWID keys; JavaScript rounds beyond 2^53",
    "reals": "REALs that must survive bit for bit: -0.0 (kept only in untyped columns), "
    "denormals, DBL_MIN/MAX, +-inf (9e999), integral reals (3.0, 1e20, 2^53), 2000 "
    "seeded random doubles, 13 that SQLite 3.40 misparses from their shortest repr, "
    "and 500 random bit patterns (extreme exponents that no decimal literal restores "
    "exactly in SQLite 3.40 or D1's 3.47)",
    "texts": "TEXT hazards: '' vs NULL, embedded NULs (quote() truncates them), CR/LF/lone CR, "
    "quotes, backslashes, -- and /* in strings, semicolons, fake '-- Table:' lines, "
    "astral/combining/RTL characters, 300 KB and 1.5 MB texts (beyond 100 KB statements)",
    "invalid_utf8": "TEXT values that are not valid UTF-8 (CAST(X'fffe' AS TEXT), lone "
    "continuation bytes, surrogates, overlong forms, truncated sequences)",
    "blobs": "BLOBs: X'' vs NULL vs '', all 256 byte values, a 300 KB and a 1.9 MB blob, a blob that is valid UTF-8",
    "mixed_types": "values whose storage class differs from the declared type: TEXT in INTEGER "
    "columns, BLOB in TEXT columns, TEXT '0012' that must stay TEXT, REAL in "
    "INTEGER, odd declared types (FLOATING POINT has INTEGER affinity)",
    "without_rowid": "WITHOUT ROWID tables: TEXT key, composite key with DESC, NOCASE key "
    "(BINARY order differs), mixed-type untyped key, secondary index",
    "strict": "STRICT tables (ANY keeps '0012' as TEXT; REAL turns 3 into 3.0), STRICT "
    "WITHOUT ROWID, and a non-STRICT ANY column (NUMERIC affinity) for contrast",
    "generated_columns": "VIRTUAL and STORED generated columns between ordinary ones (INSERT "
    "must name columns), chained, indexed, added by ALTER TABLE, in "
    "WITHOUT ROWID and STRICT tables",
    "autoincrement": "AUTOINCREMENT tables whose sqlite_sequence counter is above the max rowid "
    "(rows deleted), an emptied one, one never used, one raised by UPDATE",
    "rowids": "rowid tables without INTEGER PRIMARY KEY with sparse, negative, huge and "
    "out-of-insertion-order rowids; columns named rowid/_rowid_/oid shadowing it; "
    "INTEGER PRIMARY KEY DESC and INT PRIMARY KEY, which are not rowid aliases",
    "names": 'quoted, reserved-word and unicode names: tables select, order, "Order Details", '
    'table with spaces, quoted"name, ünïcödé, 日本語, a newline; a column from; an '
    "index named index; a trigger named trigger",
    "views": "views whose sqlite_schema order is not a valid creation order: view_a (rowid "
    "before) selects from view_b, and a table rebuilt by the 12-step ALTER after the "
    "views that read it",
    "triggers": "AFTER INSERT audit trigger (doubles rows if live during restore), BEFORE INSERT "
    "RAISE(IGNORE) (drops rows), BEFORE UPDATE RAISE(ABORT), INSTEAD OF on a view, "
    "bodies with ';' and END in strings, a trigger listed before its target table",
    "indexes": "partial, expression (incl. json_extract), UNIQUE, COLLATE NOCASE and DESC "
    "indexes, an index named index, autoindexes, and sqlite_stat1 from ANALYZE",
    "foreign_keys": "foreign keys in a cycle (a -> b -> a), self-references pointing forward, "
    "ON DELETE/UPDATE CASCADE, a child created before its parent, a FK to a "
    "UNIQUE column, a composite FK, DEFERRABLE INITIALLY DEFERRED",
    "wide_table": "a table with 100 columns (D1's maximum) and no INTEGER PRIMARY KEY: rowid "
    "plus all columns is 101 (too many columns for one D1 INSERT or SELECT)",
    "constraints": "CHECK constraints, DEFAULT expressions, COLLATE NOCASE/RTRIM columns, "
    "conflict clauses (ON CONFLICT REPLACE/IGNORE), ALTER TABLE ADD COLUMN "
    "with a DEFAULT over existing rows",
    "fts5": "FTS5: a standalone table with deleted/updated rows, an external-content table over "
    "posts (content_rowid='id') kept in sync by triggers, porter/prefix/detail=column "
    "options, trigram tokenizer, UNINDEXED column, rank/automerge set in _config",
    "fts4": "FTS4 tables (plain and with tokenize=porter, prefix, order=desc); D1 refuses FTS3/4",
    "fts5_contentless": "a contentless FTS5 table (content=''): its rows read as NULL and the "
    "index cannot be rebuilt from data",
    "empty": "a valid database with no tables at all",
    "empty_tables": "tables, indexes, views, triggers and an FTS5 table, all without rows "
    "(an empty sqlite_sequence too)",
    "many_tables": "200 small tables, each with a few rows and some with an index",
    "big_rows": "rows near D1's 2 MB row limit: 1.9 MB multibyte text, 1.9 MB blob, "
    "0.9 MB + 0.9 MB in one row, 1.9 MB of quotes and NULs",
    "pragmas": "PRAGMA user_version and application_id set (D1 refuses both pragmas)",
    "d1_internal": "D1's own _cf_KV table next to user tables: a dump must skip it",
    "late_dependencies": "a 300 KB value under CHECK(length(...) > 1000) and UNIQUE (so it cannot be built up "
    "from ''), and an external-content FTS5 index whose content is a VIEW",
    "utf16": "a UTF-16le database: text of every kind must come back the same in a UTF-8 restore",
}

D1_INCOMPATIBLE: dict[str, str] = {
    "invalid_utf8": "D1 stores the bytes (CAST(X'fffe' AS TEXT) works) but every result goes "
    "through JavaScript strings: the REST API and Workers return U+FFFD instead; "
    "only hex()/CAST(x AS BLOB) computed in SQL sees them, and a restore must "
    "write CAST(X'..' AS TEXT)",
    "fts4": "D1's authorizer refuses CREATE VIRTUAL TABLE ... USING fts3/fts4 ('not authorized', "
    "local D1 of wrangler 4.20.0); only fts5 is allowed",
    "fts5_contentless": "a contentless index cannot be rebuilt from its rows (they read as NULL) "
    "and D1 refuses writes to shadow tables ('table x_data may not be "
    "modified') and PRAGMA writable_schema, so it cannot be restored",
    "pragmas": "PRAGMA user_version and PRAGMA application_id are 'not authorized' on D1 "
    "(reading or setting), so a restore into D1 cannot carry them",
    "d1_internal": "CREATE TABLE _cf_* is 'not authorized' on D1: those tables belong to D1; a "
    "dump must leave them out (compare ignores them on both sides)",
}

INTEGERS = [
    -(2**63),
    -(2**63) + 1,
    -(2**53) - 1,
    -(2**53),
    -(2**31),
    -1,
    0,
    1,
    2**31 - 1,
    2**32,
    2**53 - 1,
    2**53,
    2**53 + 1,
    10**18,
    2**63 - 2,
    2**63 - 1,
]

SPECIAL_REALS = [
    ("0.1", 0.1),
    ("1/3", 1 / 3),
    ("-0.0", -0.0),
    ("0.0", 0.0),
    ("5e-324 (smallest denormal)", 5e-324),
    ("-5e-324", -5e-324),
    ("1e-310 (denormal)", 1e-310),
    ("2.2250738585072009e-308 (largest denormal)", 2.2250738585072009e-308),
    ("2.2250738585072014e-308 (DBL_MIN)", 2.2250738585072014e-308),
    ("1.7976931348623157e308 (DBL_MAX)", 1.7976931348623157e308),
    ("-1.7976931348623157e308", -1.7976931348623157e308),
    ("+inf", math.inf),
    ("-inf", -math.inf),
    ("3.0", 3.0),
    ("-1.5", -1.5),
    ("100.0", 100.0),
    ("1e20", 1e20),
    ("1e22", 1e22),
    ("1e23", 1e23),
    ("2^53 as real", 2.0**53),
    ("2^53+2 as real", 2.0**53 + 2),
    ("2^63 as real", 2.0**63),
    ("-2^63 as real", -(2.0**63)),
    ("0.30000000000000004", 0.30000000000000004),
    ("pi", math.pi),
    ("e", math.e),
    ("nextafter(1, 2)", 1.0000000000000002),
    ("1e-7", 1e-7),
    ("123456789.12345678", 123456789.12345678),
    ("4.35", 4.35),
    ("0.99", 0.99),
]

# Doubles in [0, 1000) that SQLite 3.40 parses one ulp off from their shortest repr()
# (found by parsing 200,000 seeded random doubles; 17 significant digits parse exactly).
MISREAD_BY_3_40 = [
    461.7089242737907,
    857.159947994785,
    299.2255409411014,
    758.303417320346,
    334.6039250221543,
    492.5777229154954,
    184.0844276707153,
    264.8316630894507,
    473.4977857385758,
    499.4482863725963,
    32.79029640368692,
    315.9049648747351,
    6.543072222775836,
]


# --------------------------------------------------------------------------------------
# Cases


def build_integers(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE int_values(label TEXT NOT NULL, v INTEGER, n NUMERIC, u);
        CREATE TABLE int_pk(id INTEGER PRIMARY KEY, label TEXT);
        CREATE TABLE int_rowid(label TEXT, v INTEGER);
        CREATE TABLE int_wr(k INTEGER PRIMARY KEY, label TEXT) WITHOUT ROWID;
    """,
    )
    order = list(INTEGERS)
    _rng("integers").shuffle(order)  # insertion order is not key order
    for i, v in enumerate(order):
        label = f"int {v}"
        con.execute("INSERT INTO int_values(rowid, label, v, n, u) VALUES(?, ?, ?, ?, ?)", (i * 7 + 3, label, v, v, v))
        con.execute("INSERT INTO int_pk(id, label) VALUES(?, ?)", (v, label))
        con.execute("INSERT INTO int_rowid(rowid, label, v) VALUES(?, ?, ?)", (v, label, v))
        con.execute("INSERT INTO int_wr(k, label) VALUES(?, ?)", (v, label))
    # 2^63 does not fit: as a literal it becomes the REAL 9.2233720368547758e18.
    con.execute(
        "INSERT INTO int_values(rowid, label, v, n, u) VALUES(1000, '2^63 literal', "
        "9223372036854775808, 9223372036854775808, 9223372036854775808)"
    )
    con.execute(
        "INSERT INTO int_values(rowid, label, v, n, u) VALUES(1001, '-2^63 literal', "
        "-9223372036854775808, -9223372036854775808, -9223372036854775808)"
    )
    return _finish(con, path)


def build_reals(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE special_reals(id INTEGER PRIMARY KEY, label TEXT NOT NULL, r REAL, u, t TEXT);
        CREATE TABLE random_reals(id INTEGER PRIMARY KEY, x REAL, y);
        CREATE TABLE random_bits(id INTEGER PRIMARY KEY, x REAL);
    """,
    )
    rows = [(label, v) for label, v in SPECIAL_REALS]
    rows += [(f"misread by 3.40: {v!r}", v) for v in MISREAD_BY_3_40]
    for i, (label, v) in enumerate(rows, 1):
        # r has REAL affinity (SQLite stores integral values as integers on disk, and turns
        # -0.0 into 0.0); u has none (keeps -0.0); t has TEXT affinity (turns REALs to text).
        con.execute("INSERT INTO special_reals VALUES(?, ?, ?, ?, ?)", (i, label, v, v, v))
    n = len(rows)
    # Infinities written the way a dump has to write them.
    con.execute("INSERT INTO special_reals VALUES(?, '9e999 literal', 9e999, 9e999, 9e999)", (n + 1,))
    con.execute("INSERT INTO special_reals VALUES(?, '-9e999 literal', -9e999, -9e999, -9e999)", (n + 2,))
    con.execute("INSERT INTO special_reals VALUES(?, '-0.0 literal', -0.0, -0.0, -0.0)", (n + 3,))
    rng = _rng("reals")
    for i in range(1, 2001):
        x = rng.random() * 1000
        con.execute("INSERT INTO random_reals VALUES(?, ?, ?)", (i, x, x))
    for i in range(1, 501):
        while True:
            x = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
            if not math.isnan(x):
                break
        con.execute("INSERT INTO random_bits VALUES(?, ?)", (i, x))
    return _finish(con, path)


TEXT_VALUES: list[tuple[str, str | None]] = [
    ("NULL", None),
    ("empty string", ""),
    ("single space", " "),
    ("embedded NUL", "a\x00b"),
    ("only NUL", "\x00"),
    ("two NULs", "\x00\x00"),
    ("trailing NUL", "abc\x00"),
    ("leading NUL", "\x00abc"),
    ("LF", "line1\nline2\n"),
    ("CRLF", "line1\r\nline2\r\n"),
    ("lone CR", "line1\rline2\r"),
    ("only newline", "\n"),
    ("single quotes", "it's 'quoted' ''twice''"),
    ("double quotes", 'say "hi" ""'),
    ("backslashes", "C:\\path\\to\\file \\n \\' \\\\"),
    ("sql comment", "value -- not a comment"),
    ("block comment", "value /* not a comment */ end /* unclosed"),
    ("semicolons", "a; b;; DROP TABLE texts; --"),
    ("injection", "'); DROP TABLE texts; --"),
    ("fake dump header", "x\n-- Table: texts\nINSERT INTO texts VALUES(1);\n"),
    ("fake begin", "BEGIN TRANSACTION;\nCOMMIT;\n"),
    ("control chars", "\x01\x02\x07\x08\x0b\x0c\x1a\x1b\x7f"),
    ("unicode line separators", "a\u2028b\u2029c\x85d"),
    ("BOM", "\ufeffstarts with a BOM"),
    ("emoji", "😀🎉👍🏽👨‍👩‍👧‍👦🇺🇳"),
    ("astral", "𝄞 𐍈 𠜎 \U0010fffd"),
    ("noncharacters", "\ufffe\uffff\U0010ffff"),
    ("combining NFD", "e\u0301 a\u0308 n\u0303"),
    ("precomposed NFC", "é ä ñ"),
    ("rtl", "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u202eevil\u202c"),
    ("zero width", "a\u200bb\u200cc\u200dd\u2060e"),
    ("numeric looking", "0012"),
    ("numeric looking 2", "1e5"),
    ("hex looking", "0x1F"),
    ("X literal looking", "X'00'"),
    ("percent", "100% %s %d %%"),
    ("dollar and question", "$1 ?1 ?? :name @x"),
    ("tab", "a\tb"),
    ("long line of quotes", "'" * 1000),
]


def build_texts(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE texts(id INTEGER PRIMARY KEY, label TEXT NOT NULL, t TEXT, u);
        CREATE INDEX texts_t ON texts(t);
    """,
    )
    for i, (label, v) in enumerate(TEXT_VALUES, 1):
        con.execute("INSERT INTO texts VALUES(?, ?, ?, ?)", (i, label, v, v))
    n = len(TEXT_VALUES)
    # NULs written through char(0) rather than bound parameters.
    con.execute("INSERT INTO texts VALUES(?, 'char(0) NUL', 'x' || char(0) || 'y', char(0))", (n + 1,))
    rng = _rng("texts")
    long_300k = _mixed_text(rng, 300_000)
    long_1m5 = _mixed_text(rng, 1_500_000)
    con.execute("INSERT INTO texts VALUES(?, '300 KB text', ?, NULL)", (n + 2, long_300k))
    con.execute("INSERT INTO texts VALUES(?, '1.5 MB text', ?, NULL)", (n + 3, long_1m5))
    con.execute("INSERT INTO texts VALUES(?, '300 KB ascii with NULs', ?, NULL)", (n + 4, ("abc\x00'" * 60_000)))
    return _finish(con, path)


def build_invalid_utf8(path: Path) -> Path:
    con = _connect(path)
    con.execute("CREATE TABLE bad_text(id INTEGER PRIMARY KEY, label TEXT NOT NULL, t TEXT, u)")
    values = [
        ("ff fe", "fffe"),
        ("lone continuation", "80"),
        ("truncated 2-byte", "c3"),
        ("truncated 4-byte", "f09f98"),
        ("surrogate (CESU)", "eda080"),
        ("overlong slash", "c0af"),
        ("beyond U+10FFFF", "f4908080"),
        ("mixed", "61626364ff656667"),
        ("NUL then invalid", "00ff"),
        ("latin-1 cafe", "636166e9"),
        ("valid for contrast", "636166c3a9"),
    ]
    for i, (label, hexbytes) in enumerate(values, 1):
        con.execute(
            f"INSERT INTO bad_text VALUES(?, ?, CAST(X'{hexbytes}' AS TEXT), CAST(X'{hexbytes}' AS TEXT))",
            (i, label),
        )
    return _finish(con, path)


def build_blobs(path: Path) -> Path:
    con = _connect(path)
    con.execute("CREATE TABLE blobs(id INTEGER PRIMARY KEY, label TEXT NOT NULL, b BLOB, u)")
    rng = _rng("blobs")
    values = [
        ("NULL", None),
        ("empty blob", b""),
        ("empty text for contrast", ""),
        ("single zero byte", b"\x00"),
        ("all 256 byte values", bytes(range(256))),
        ("all 256 reversed", bytes(range(255, -1, -1))),
        ("valid utf-8 as blob", "héllo 😀".encode()),
        ("ascii as blob", b"hello"),
        ("quotes as blob", b"'\"'; --"),
        ("300 KB random", rng.randbytes(300_000)),
        ("1.9 MB random", rng.randbytes(1_900_000)),
    ]
    for i, (label, v) in enumerate(values, 1):
        # D1 holds rows of at most ~2 MB: the 1.9 MB value goes in one column only.
        second = None if isinstance(v, bytes) and len(v) > 1_000_000 else v
        con.execute("INSERT INTO blobs VALUES(?, ?, ?, ?)", (i, label, v, second))
    con.execute("INSERT INTO blobs VALUES(?, 'zeroblob(1000)', zeroblob(1000), X'')", (len(values) + 1,))
    return _finish(con, path)


def build_mixed_types(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE mixed(
            id INTEGER PRIMARY KEY, label TEXT NOT NULL,
            i INTEGER, t TEXT, r REAL, n NUMERIC, b BLOB, u,
            fp FLOATING POINT, vc VARCHAR(5), s STRING, dt DATETIME, bo BOOLEAN
        );
    """,
    )
    rows = [
        ("text in INTEGER", "abc", None, None, None, None, None),
        ("numeric-prefix text in INTEGER", "12abc", None, None, None, None, None),
        ("blob in INTEGER", b"\x01\x02", None, None, None, None, None),
        ("REAL 1.5 in INTEGER", 1.5, None, None, None, None, None),
        ("REAL 2.0 in INTEGER becomes 2", 2.0, None, None, None, None, None),
        ("1e20 in INTEGER stays REAL", 1e20, None, None, None, None, None),
        ("blob in TEXT", None, b"\x00\xff", None, None, None, None),
        ("integer-looking text in TEXT", None, "0012", None, None, None, None),
        ("integer in TEXT becomes '12'", None, 12, None, None, None, None),
        ("real in TEXT becomes '1.5'", None, 1.5, None, None, None, None),
        ("text '-0' in TEXT", None, "-0", None, None, None, None),
        ("text ' 7 ' in TEXT", None, " 7 ", None, None, None, None),
        ("text in REAL", None, None, "abc", None, None, None),
        ("integer in REAL becomes 5.0", None, None, 5, None, None, None),
        ("text '1e3' in NUMERIC becomes 1000", None, None, None, "1e3", None, None),
        ("text '3.0' in NUMERIC becomes 3", None, None, None, "3.0", None, None),
        ("text '0x10' in NUMERIC stays text", None, None, None, "0x10", None, None),
        ("text in BLOB column", None, None, None, None, "text in a blob column", None),
        ("integer in BLOB column", None, None, None, None, 42, None),
        ("untyped text '0012'", None, None, None, None, None, "0012"),
        ("untyped text '12'", None, None, None, None, None, "12"),
        ("untyped integer 12", None, None, None, None, None, 12),
        ("untyped real 12.0", None, None, None, None, None, 12.0),
        ("untyped blob '12'", None, None, None, None, None, b"12"),
        ("untyped text 'NULL'", None, None, None, None, None, "NULL"),
    ]
    for idx, (label, i, t, r, n, b, u) in enumerate(rows, 1):
        con.execute(
            "INSERT INTO mixed(id, label, i, t, r, n, b, u) VALUES(?,?,?,?,?,?,?,?)", (idx, label, i, t, r, n, b, u)
        )
    extra = [
        # FLOATING POINT contains INT: INTEGER affinity; STRING: NUMERIC affinity.
        ("FLOATING POINT 3.0 becomes 3", 3.0, None, None, None, None),
        ("VARCHAR(5) holds 50 chars", None, "x" * 50, None, None, None),
        ("STRING '0012' becomes 12", None, None, "0012", None, None),
        ("DATETIME text", None, None, None, "2024-01-02 03:04:05", None),
        ("DATETIME julian day", None, None, None, 2460311.5, None),
        ("BOOLEAN 'yes'", None, None, None, None, "yes"),
        ("BOOLEAN true", None, None, None, None, True),
    ]
    for idx, (label, fp, vc, s, dt, bo) in enumerate(extra, len(rows) + 1):
        con.execute(
            "INSERT INTO mixed(id, label, fp, vc, s, dt, bo) VALUES(?,?,?,?,?,?,?)", (idx, label, fp, vc, s, dt, bo)
        )
    return _finish(con, path)


def build_without_rowid(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE wr_text(code TEXT PRIMARY KEY, v) WITHOUT ROWID;
        CREATE TABLE wr_composite(a INTEGER, b TEXT, v, PRIMARY KEY(a, b DESC)) WITHOUT ROWID;
        CREATE TABLE wr_nocase(name TEXT COLLATE NOCASE PRIMARY KEY, v INTEGER) WITHOUT ROWID;
        CREATE TABLE wr_desc(k INTEGER, v, PRIMARY KEY(k DESC)) WITHOUT ROWID;
        CREATE TABLE wr_mixed(k PRIMARY KEY, v) WITHOUT ROWID;
        CREATE TABLE wr_indexed(a TEXT, b INTEGER, c REAL, PRIMARY KEY(b, a)) WITHOUT ROWID;
        CREATE INDEX wr_indexed_c ON wr_indexed(c);
    """,
    )
    for code, v in [("b", 1), ("a", 2), ("B", 3), ("", 4), ("ä", 5), ("a\x00b", 6), ("😀", 7), ("A", 8)]:
        con.execute("INSERT INTO wr_text VALUES(?, ?)", (code, v))
    for a in (3, -1, 2**62):
        for b in ("z", "a", "M", "é"):
            con.execute("INSERT INTO wr_composite VALUES(?, ?, ?)", (a, b, f"{a}/{b}"))
    for name, v in [("banana", 1), ("Apple", 2), ("cherry", 3), ("apricot", 4), ("Ärger", 5), ("_x", 6)]:
        con.execute("INSERT INTO wr_nocase VALUES(?, ?)", (name, v))
    for k in (5, -(2**63), 2**63 - 1, 0, 17):
        con.execute("INSERT INTO wr_desc VALUES(?, ?)", (k, str(k)))
    for k, v in [
        (1, "int"),
        (2.5, "real"),
        ("1", "text one"),
        (b"\x01", "blob"),
        ("text", "t"),
        (-(2**63), "min"),
        (b"", "empty blob"),
        ("", "empty text"),
    ]:
        con.execute("INSERT INTO wr_mixed VALUES(?, ?)", (k, v))
    for i in range(50):
        con.execute("INSERT INTO wr_indexed VALUES(?, ?, ?)", (f"k{i % 7}", i // 7, i / 7))
    return _finish(con, path)


def build_strict(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE strict_t(id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, a ANY,
                              n INT NOT NULL DEFAULT 0) STRICT;
        CREATE TABLE strict_wr(k TEXT PRIMARY KEY, a ANY NOT NULL, r REAL) STRICT, WITHOUT ROWID;
        CREATE TABLE loose_any(id INTEGER PRIMARY KEY, a ANY);
    """,
    )
    anys = ["0012", 12, 1.5, b"\x00\x01", None, "", -0.0, 3.0, "abc", 2**63 - 1]
    for idx, a in enumerate(anys, 1):
        con.execute(
            "INSERT INTO strict_t VALUES(?, ?, ?, ?, ?, ?, ?)",
            (idx, idx * 10, idx + 0.25, f"t{idx}", bytes([idx]), a, idx),
        )
        con.execute("INSERT INTO loose_any VALUES(?, ?)", (idx, a))
    con.execute("INSERT INTO strict_t(id, r, n) VALUES(100, 3, 1)")  # 3 is stored as REAL 3.0
    for k, a, r in [("b", "0012", 1), ("a", 12, 2.5), ("c", b"x", None), ("", 0.0, -1)]:
        con.execute("INSERT INTO strict_wr VALUES(?, ?, ?)", (k, a, r))
    return _finish(con, path)


def build_generated_columns(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE items(
            id INTEGER PRIMARY KEY,
            price REAL NOT NULL,
            total REAL GENERATED ALWAYS AS (price * qty) STORED,
            qty INTEGER NOT NULL DEFAULT 1,
            label TEXT AS (upper(name) || ' x' || qty) VIRTUAL,
            name TEXT,
            total_tax REAL AS (round(total * 1.2, 2)),
            name_len INTEGER AS (length(name)) STORED
        );
        CREATE INDEX items_total_tax ON items(total_tax);
        CREATE TABLE gen_wr(k TEXT PRIMARY KEY, v INTEGER, k_upper TEXT AS (upper(k)) STORED,
                            double_v AS (v * 2)) WITHOUT ROWID;
        CREATE TABLE gen_strict(id INTEGER PRIMARY KEY, a INTEGER, b INTEGER AS (a + 1) VIRTUAL,
                                c TEXT AS (printf('%05d', a)) STORED) STRICT;
        CREATE TABLE gen_rowid(v TEXT, v_hex TEXT AS (hex(v)) STORED);
    """,
    )
    rng = _rng("generated")
    for i in range(1, 31):
        name = None if i % 7 == 0 else f"item {i} 'é'"
        con.execute(
            "INSERT INTO items(id, price, qty, name) VALUES(?, ?, ?, ?)",
            (i, round(rng.random() * 100, 2), rng.randint(0, 9), name),
        )
    con.execute("ALTER TABLE items ADD COLUMN slug TEXT AS (lower(replace(name, ' ', '-'))) VIRTUAL")
    for k, v in [("b", 1), ("a", 2), ("ß", 3)]:
        con.execute("INSERT INTO gen_wr(k, v) VALUES(?, ?)", (k, v))
    for i in range(1, 6):
        con.execute("INSERT INTO gen_strict(id, a) VALUES(?, ?)", (i, i * 11))
    for i, v in [(40, "x"), (3, None), (17, "ü")]:
        con.execute("INSERT INTO gen_rowid(rowid, v) VALUES(?, ?)", (i, v))
    return _finish(con, path)


def build_autoincrement(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE ai_gap(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
        CREATE TABLE ai_emptied(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
        CREATE TABLE ai_never(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
        CREATE TABLE ai_raised(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
        CREATE TABLE ai_big(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
    """,
    )
    # ai_raised gets its first row first, so its sqlite_sequence row comes first.
    con.execute("INSERT INTO ai_raised(v) VALUES('one')")
    for i in range(10):
        con.execute("INSERT INTO ai_gap(v) VALUES(?)", (f"row {i}",))
    con.execute("DELETE FROM ai_gap WHERE id > 5 OR id = 2")  # seq 10, max(id) 5
    for i in range(3):
        con.execute("INSERT INTO ai_emptied(v) VALUES(?)", (f"gone {i}",))
    con.execute("DELETE FROM ai_emptied")  # seq 3, no rows
    con.execute("UPDATE sqlite_sequence SET seq = 5000 WHERE name = 'ai_raised'")
    con.execute("INSERT INTO ai_big(id, v) VALUES(1000000, 'big')")
    con.execute("INSERT INTO ai_big(id, v) VALUES(-5, 'negative ids do not move seq')")
    con.execute("DELETE FROM ai_big WHERE id = 1000000")
    return _finish(con, path)


def build_rowids(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE sparse(v TEXT);
        CREATE TABLE shadowed(rowid TEXT, v INTEGER);
        CREATE TABLE shadowed_all(rowid TEXT, _rowid_ INTEGER, oid BLOB, v);
        CREATE TABLE ipk_desc(id INTEGER PRIMARY KEY DESC, v TEXT);
        CREATE TABLE int_pk(id INT PRIMARY KEY, v TEXT);
        CREATE TABLE ipk_table_constraint(id INTEGER, v TEXT, PRIMARY KEY(id DESC));
    """,
    )
    for rid in (1000, 5, -3, 2**62, 17, 2**63 - 1, -(2**63), 6, 7):
        con.execute("INSERT INTO sparse(rowid, v) VALUES(?, ?)", (rid, f"rowid {rid}"))
    con.execute("DELETE FROM sparse WHERE rowid IN (6, 17)")
    con.execute("UPDATE sparse SET rowid = 42 WHERE rowid = 7")
    for rid, shadow in [(9, "1"), (2, "the column, not the rowid"), (30, None), (-4, "-4")]:
        con.execute("INSERT INTO shadowed(_rowid_, rowid, v) VALUES(?, ?, ?)", (rid, shadow, rid))
    for i in range(1, 6):  # the real rowid cannot be named here; keep it 1..n
        con.execute(
            "INSERT INTO shadowed_all(rowid, _rowid_, oid, v) VALUES(?, ?, ?, ?)", (f"r{i}", -i, bytes([i]), i * 1.5)
        )
    for rid, pk in [(10, 1), (3, 2), (7, 3), (1, 100)]:
        # id is NOT the rowid here (INTEGER PRIMARY KEY DESC quirk, INT is not INTEGER).
        con.execute("INSERT INTO ipk_desc(rowid, id, v) VALUES(?, ?, ?)", (rid, pk, f"pk {pk}"))
        con.execute("INSERT INTO int_pk(rowid, id, v) VALUES(?, ?, ?)", (rid * 2, -pk, f"pk {-pk}"))
    for pk in (5, 1, 9):  # PRIMARY KEY(id DESC) as a table constraint IS the rowid
        con.execute("INSERT INTO ipk_table_constraint VALUES(?, ?)", (pk, f"pk {pk}"))
    return _finish(con, path)


def build_names(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE "select"("from" TEXT, "order" INTEGER, "group" REAL, "where" BLOB);
        CREATE TABLE [order](id INTEGER PRIMARY KEY, "select" TEXT);
        CREATE TABLE "Order Details"("OrderID" INTEGER REFERENCES [order](id), "Unit Price" REAL,
                                     "Quantity" INTEGER, PRIMARY KEY("OrderID", "Unit Price"));
        CREATE TABLE `table with spaces`(`column with spaces` TEXT, `back``tick` INTEGER);
        CREATE TABLE "quoted""name"("col""quote" TEXT, "it's" TEXT);
        CREATE TABLE ünïcödé(ïd INTEGER PRIMARY KEY, naïve TEXT);
        CREATE TABLE 日本語(番号 INTEGER PRIMARY KEY, 名前 TEXT);
        CREATE TABLE 'single quoted'(a, b);
        CREATE TABLE "semi;colon--dash/*star*/"(x);
        CREATE TABLE "line
break"("tab	col" TEXT);
        CREATE TABLE "123starts_with_digit"("1" INTEGER, "" TEXT);
        CREATE TABLE MiXeD_CaSe(Id INTEGER PRIMARY KEY, ref INTEGER REFERENCES mixed_case(id));
        CREATE TABLE "[brackets]"("]" TEXT);
        CREATE INDEX "index" ON "select"("from");
        CREATE INDEX "ïndex ünïcödé" ON ünïcödé(naïve);
        CREATE VIEW "view" AS SELECT "from", "order" FROM "select" WHERE "order" > 0;
        CREATE TRIGGER "trigger" AFTER INSERT ON [order] BEGIN
            UPDATE [order] SET "select" = coalesce(new."select", 'default') WHERE id = new.id;
        END;
    """,
    )
    _exec_many(
        con,
        """
        INSERT INTO "select" VALUES('from value', 1, 1.5, X'00'), ('another', 2, NULL, NULL), (NULL, -1, 0.0, X'');
        INSERT INTO [order](id, "select") VALUES(1, 'one'), (2, 'two'), (3, NULL);
        INSERT INTO "Order Details" VALUES(1, 9.99, 2), (1, 0.5, 1), (2, 100.0, 3);
        INSERT INTO `table with spaces` VALUES('a b c', 1), ('d e f', 2);
        INSERT INTO "quoted""name" VALUES('q"q', 'it''s');
        INSERT INTO ünïcödé VALUES(1, 'naïve café'), (2, 'Ünïcödé');
        INSERT INTO 日本語 VALUES(1, '東京'), (2, '大阪');
        INSERT INTO 'single quoted' VALUES(1, 2);
        INSERT INTO "semi;colon--dash/*star*/" VALUES(';--/*');
        INSERT INTO "line
break" VALUES('tab	value');
        INSERT INTO "123starts_with_digit" VALUES(1, 'empty column name');
        INSERT INTO MiXeD_CaSe VALUES(1, NULL), (2, 1);
        INSERT INTO "[brackets]" VALUES(']]');
    """,
    )
    return _finish(con, path)


def build_views(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL);
        CREATE INDEX items_name ON items(name);
        CREATE VIEW view_b AS SELECT id, name, price FROM items WHERE price > 0;
        CREATE VIEW view_a AS SELECT name, price * 2 AS double_price FROM view_b;
        CREATE VIEW view_cols(item_name, n) AS
            WITH counted AS (SELECT name, count(*) AS n FROM items GROUP BY name)
            SELECT name, n FROM counted;
        INSERT INTO items VALUES(1, 'apple', 1.5), (2, 'pear', 0), (3, 'plum', 2.25), (4, 'apple', 3);
    """,
    )
    # Recreate view_b: it now comes after view_a, which reads it.
    _exec_many(
        con,
        """
        DROP VIEW view_b;
        CREATE VIEW view_b AS SELECT id, name, price FROM items WHERE price > 0 ORDER BY id;
    """,
    )
    # The 12-step table rebuild (https://sqlite.org/lang_altertable.html#otheralter):
    # items now comes after every view that reads it.
    con.execute("PRAGMA legacy_alter_table=ON")
    _exec_many(
        con,
        """
        CREATE TABLE items_new(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, note TEXT);
        INSERT INTO items_new(id, name, price) SELECT id, name, price FROM items;
        DROP TABLE items;
        ALTER TABLE items_new RENAME TO items;
        CREATE INDEX items_name ON items(name);
        UPDATE items SET note = 'rebuilt' WHERE id = 3;
    """,
    )
    con.execute("PRAGMA legacy_alter_table=OFF")
    con.execute("CREATE VIEW view_top AS SELECT * FROM view_a WHERE double_price > 3")
    return _finish(con, path)


def build_triggers(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT NOT NULL, qty INTEGER NOT NULL,
                            created TEXT NOT NULL, updated TEXT);
        CREATE TABLE audit_log(id INTEGER PRIMARY KEY, order_id INTEGER, action TEXT, at TEXT);
        CREATE VIEW order_summary AS SELECT item, sum(qty) AS total FROM orders GROUP BY item;
    """,
    )
    # A row that the BEFORE INSERT trigger below would silently drop if it were live.
    con.execute("INSERT INTO orders VALUES(1, 'free sample', 0, '2024-01-01', NULL)")
    con.execute("INSERT INTO audit_log VALUES(1, 1, 'manual; END; note', '2024-01-01')")
    _exec_many(
        con,
        """
        CREATE TRIGGER orders_audit AFTER INSERT ON orders BEGIN
            INSERT INTO audit_log(order_id, action, at) VALUES(new.id, 'insert; END;', new.created);
        END;
        CREATE TRIGGER orders_no_zero BEFORE INSERT ON orders WHEN new.qty = 0 BEGIN
            SELECT RAISE(IGNORE);
        END;
        CREATE TRIGGER orders_no_negative BEFORE UPDATE OF qty ON orders WHEN new.qty < 0 BEGIN
            SELECT RAISE(ABORT, 'qty must not be negative; END');
        END;
        CREATE TRIGGER orders_touch AFTER UPDATE OF qty ON orders BEGIN
            UPDATE orders SET updated = new.created || ' (updated)' WHERE id = new.id;
        END;
        CREATE TRIGGER order_summary_insert INSTEAD OF INSERT ON order_summary BEGIN
            INSERT INTO orders(item, qty, created) VALUES(new.item, new.total, '2024-02-02');
        END;
    """,
    )
    for i, (item, qty) in enumerate([("apple", 3), ("pear", 1), ("plum", 7)], 2):
        con.execute("INSERT INTO orders(id, item, qty, created) VALUES(?, ?, ?, ?)", (i, item, qty, f"2024-01-0{i}"))
    con.execute("INSERT INTO orders(id, item, qty, created) VALUES(9, 'dropped', 0, '2024-01-09')")
    con.execute("UPDATE orders SET qty = qty + 1 WHERE id = 3")
    con.execute("INSERT INTO order_summary(item, total) VALUES('via view', 5)")
    # Recreate audit_log so that it comes after the triggers that write into it.
    _exec_many(
        con,
        """
        CREATE TEMP TABLE audit_copy AS SELECT * FROM audit_log;
        DROP TABLE audit_log;
        CREATE TABLE audit_log(id INTEGER PRIMARY KEY, order_id INTEGER, action TEXT, at TEXT);
        INSERT INTO audit_log SELECT * FROM audit_copy;
        DROP TABLE temp.audit_copy;
    """,
    )
    return _finish(con, path)


def build_indexes(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT COLLATE NOCASE,
                           deleted_at TEXT, meta TEXT, score REAL, handle TEXT UNIQUE,
                           code TEXT, UNIQUE(code, id));
        CREATE INDEX users_active_email ON users(email) WHERE deleted_at IS NULL;
        CREATE UNIQUE INDEX users_email_unique ON users(email COLLATE NOCASE) WHERE deleted_at IS NULL;
        CREATE INDEX users_lower_name ON users(lower(name));
        CREATE INDEX users_tier ON users(json_extract(meta, '$.tier'));
        CREATE INDEX users_name_nocase_desc ON users(name COLLATE NOCASE DESC, score DESC);
        CREATE INDEX "index" ON users(score, id);
        CREATE TABLE tags(name TEXT PRIMARY KEY, n INTEGER);
    """,
    )
    rng = _rng("indexes")
    for i in range(1, 101):
        deleted = "2024-01-01" if i % 10 == 0 else None
        # Deleted users may share an address with a live one in another case.
        email = f"User{i % 90}@Example.com" if deleted else f"user{i}@example.com"
        con.execute(
            "INSERT INTO users VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
            (
                i,
                email,
                rng.choice(["Ann", "ann", "Bob", "bob", "Çelik"]),
                deleted,
                f'{{"tier": {i % 3}}}',
                round(rng.random() * 10, 3),
                f"h{i}",
                f"c{i % 5}",
            ),
        )
    for name in ("b", "a", "C"):
        con.execute("INSERT INTO tags VALUES(?, ?)", (name, len(name)))
    con.execute("ANALYZE")
    return _finish(con, path)


def build_foreign_keys(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE aaa_child(id INTEGER PRIMARY KEY,
                               parent_id INTEGER NOT NULL REFERENCES zzz_parent(id)
                                   ON DELETE CASCADE ON UPDATE CASCADE,
                               note TEXT);
        CREATE TABLE zzz_parent(id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE a(id INTEGER PRIMARY KEY, b_id INTEGER REFERENCES b(id));
        CREATE TABLE b(id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a(id));
        CREATE TABLE employees(id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                               manager_id INTEGER REFERENCES employees(id) ON DELETE SET NULL);
        CREATE TABLE countries(code TEXT NOT NULL UNIQUE, name TEXT);
        CREATE TABLE cities(id INTEGER PRIMARY KEY, country TEXT REFERENCES countries(code), name TEXT);
        CREATE TABLE shelves(room INTEGER, pos INTEGER, PRIMARY KEY(room, pos));
        CREATE TABLE books(id INTEGER PRIMARY KEY, room INTEGER, pos INTEGER, title TEXT,
                           FOREIGN KEY(room, pos) REFERENCES shelves(room, pos));
        CREATE TABLE deferred_child(id INTEGER PRIMARY KEY,
                                    p INTEGER REFERENCES zzz_parent(id) DEFERRABLE INITIALLY DEFERRED);
    """,
    )
    _exec_many(
        con,
        """
        INSERT INTO aaa_child VALUES(1, 20, 'child before parent'), (2, 10, NULL);
        INSERT INTO zzz_parent VALUES(20, 'second'), (10, 'first');
        INSERT INTO a VALUES(1, 1), (2, 2), (3, NULL);
        INSERT INTO b VALUES(1, 1), (2, 3);
        INSERT INTO employees VALUES(1, 'worker', 3), (2, 'other worker', 3), (3, 'boss', 4), (4, 'ceo', NULL);
        INSERT INTO countries(rowid, code, name) VALUES(5, 'FR', 'France'), (2, 'JP', 'Japan');
        INSERT INTO cities VALUES(1, 'JP', 'Tokyo'), (2, 'FR', 'Paris'), (3, NULL, 'Nowhere');
        INSERT INTO shelves VALUES(1, 1), (1, 2), (2, 1);
        INSERT INTO books VALUES(1, 2, 1, 'on shelf 2/1'), (2, 1, 2, 'on shelf 1/2');
        INSERT INTO deferred_child VALUES(1, 10);
    """,
    )
    return _finish(con, path)


def build_wide_table(path: Path) -> Path:
    con = _connect(path)
    cols = ", ".join(f"c{i:03d} {['INTEGER', 'TEXT', 'REAL', 'BLOB', ''][i % 5]}" for i in range(1, 101))
    con.execute(f"CREATE TABLE wide({cols})")
    rng = _rng("wide")
    for rid in (7, 3, 1000, 2**40, -2):
        values = []
        for i in range(1, 101):
            kind = i % 5
            values.append(
                [
                    rng.randint(-(2**63), 2**63 - 1),
                    f"text {i} '{rid}'",
                    rng.random(),
                    rng.randbytes(3),
                    None if i % 11 == 0 else i,
                ][kind]
            )
        placeholders = ", ".join("?" * 100)
        # Insert without the rowid (100 columns), then move the row to its rowid.
        cur = con.execute(f"INSERT INTO wide VALUES({placeholders})", values)
        con.execute("UPDATE wide SET rowid = ? WHERE rowid = ?", (rid, cur.lastrowid))
    return _finish(con, path)


def build_constraints(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE accounts(
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL COLLATE NOCASE CHECK (length(name) > 0),
            code TEXT COLLATE RTRIM UNIQUE ON CONFLICT IGNORE,
            balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= -100),
            kind TEXT NOT NULL DEFAULT 'basic' CHECK (kind IN ('basic', 'pro', 'it''s')),
            created TEXT DEFAULT CURRENT_TIMESTAMP,
            token BLOB DEFAULT (randomblob(8)),
            ratio REAL DEFAULT (1.0 / 3),
            neg INTEGER DEFAULT -1,
            hexdef BLOB DEFAULT X'00FF',
            expr TEXT DEFAULT (strftime('%Y', '2024-05-06') || '-x'),
            label TEXT NOT NULL ON CONFLICT REPLACE DEFAULT 'n/a',
            CONSTRAINT positive_ratio CHECK (ratio IS NULL OR ratio > 0),
            CHECK (name <> code)
        );
    """,
    )
    rows = [
        (1, "Alice", "A1  ", 10, "basic", "2024-01-01 00:00:00", b"\x01" * 8, 0.5, -1, b"\x00", "e", "l"),
        (2, "bob", "b2", -100, "it's", "2024-01-02 00:00:00", b"\x02" * 8, 1 / 3, 0, None, None, "n/a"),
        (3, "Çelik", None, 0, "pro", None, None, None, None, b"", "", "x"),
    ]
    for r in rows:
        con.execute(
            "INSERT INTO accounts(id, name, code, balance, kind, created, token, ratio, neg, "
            "hexdef, expr, label) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
            r,
        )
    # A column added later: old rows do not store it, they read its DEFAULT.
    con.execute("ALTER TABLE accounts ADD COLUMN added TEXT NOT NULL DEFAULT 'added later' CHECK (added <> '')")
    con.execute(
        "INSERT INTO accounts(id, name, balance, created, token, added) "
        "VALUES(4, 'dave', 1, '2024-01-04 00:00:00', X'04', 'explicit')"
    )
    return _finish(con, path)


FTS_DOCS = [
    ("Hello world", "The quick brown fox jumps over the lazy dog"),
    ("Unicode", "naïve café résumé Ünïcödé 日本語のテキスト 😀 emoji"),
    ("Quotes", 'it\'s "quoted" text; with -- dashes and /* stars */'),
    ("Running", "runners ran running runs; generously generating generations"),
    ("Numbers", "3.14159 2024-01-02 1e10 0x1F v1.2.3"),
    ("Empty body", ""),
    ("NULL body", None),
    ("Repeats", "fox fox fox dog dog cat"),
]


def _fill_fts(con: sqlite3.Connection) -> None:
    _exec_many(
        con,
        """
        CREATE VIRTUAL TABLE docs_fts USING fts5(title, body);
        CREATE TABLE posts(id INTEGER PRIMARY KEY, title TEXT, body TEXT, author TEXT);
        CREATE VIRTUAL TABLE posts_fts USING fts5(title, body, content='posts', content_rowid='id');
        CREATE TRIGGER posts_ai AFTER INSERT ON posts BEGIN
            INSERT INTO posts_fts(rowid, title, body) VALUES(new.id, new.title, new.body);
        END;
        CREATE TRIGGER posts_ad AFTER DELETE ON posts BEGIN
            INSERT INTO posts_fts(posts_fts, rowid, title, body) VALUES('delete', old.id, old.title, old.body);
        END;
        CREATE TRIGGER posts_au AFTER UPDATE ON posts BEGIN
            INSERT INTO posts_fts(posts_fts, rowid, title, body) VALUES('delete', old.id, old.title, old.body);
            INSERT INTO posts_fts(rowid, title, body) VALUES(new.id, new.title, new.body);
        END;
        CREATE VIRTUAL TABLE tuned_fts USING fts5(title, body, tokenize='porter unicode61',
                                                  prefix='2 3', detail=column);
        CREATE VIRTUAL TABLE tri_fts USING fts5(t, tag UNINDEXED, tokenize='trigram');
    """,
    )
    for i, (title, body) in enumerate(FTS_DOCS, 1):
        con.execute("INSERT INTO docs_fts(rowid, title, body) VALUES(?, ?, ?)", (i * 10, title, body))
        con.execute(
            "INSERT INTO posts(id, title, body, author) VALUES(?, ?, ?, ?)",
            (i * 3 + 100, title, body, f"author {i % 3}"),
        )
        con.execute("INSERT INTO tuned_fts(title, body) VALUES(?, ?)", (title, body))
        con.execute("INSERT INTO tri_fts(t, tag) VALUES(?, ?)", (body, f"tag{i}"))
    con.execute("DELETE FROM docs_fts WHERE rowid = 20")
    con.execute("UPDATE docs_fts SET body = 'updated body text' WHERE rowid = 30")
    con.execute("DELETE FROM posts WHERE id = 106")
    con.execute("UPDATE posts SET body = 'edited: ' || body WHERE id = 109")
    # Persistent configuration lives in the _config shadow table, not in CREATE.
    con.execute("INSERT INTO docs_fts(docs_fts, rank) VALUES('rank', 'bm25(10.0, 1.0)')")
    con.execute("INSERT INTO tuned_fts(tuned_fts, rank) VALUES('automerge', 8)")


def build_fts5(path: Path) -> Path:
    con = _connect(path)
    _fill_fts(con)
    return _finish(con, path)


def build_fts4(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE VIRTUAL TABLE notes_fts4 USING fts4(title, body);
        CREATE VIRTUAL TABLE notes_fts4_opts USING fts4(body, tokenize=porter, prefix="2,3", order=desc);
    """,
    )
    for i, (title, body) in enumerate(FTS_DOCS, 1):
        con.execute("INSERT INTO notes_fts4(docid, title, body) VALUES(?, ?, ?)", (i * 5, title, body))
        con.execute("INSERT INTO notes_fts4_opts(body) VALUES(?)", (body,))
    con.execute("DELETE FROM notes_fts4 WHERE docid = 10")
    return _finish(con, path)


def build_fts5_contentless(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
        CREATE VIRTUAL TABLE notes_idx USING fts5(title, body, content='');
    """,
    )
    for i, (title, body) in enumerate(FTS_DOCS, 1):
        con.execute("INSERT INTO notes VALUES(?, ?)", (i, body))
        con.execute("INSERT INTO notes_idx(rowid, title, body) VALUES(?, ?, ?)", (i * 7, title, body))
    return _finish(con, path)


def build_empty(path: Path) -> Path:
    con = _connect(path)
    # Python's sqlite3 leaves a zero-byte file until something is written: make a real
    # one-page database with no schema.
    con.execute("CREATE TABLE x(y)")
    con.execute("DROP TABLE x")
    con.execute("COMMIT")
    con.execute("VACUUM")
    con.execute("BEGIN")
    return _finish(con, path)


def build_empty_tables(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE plain(id INTEGER PRIMARY KEY, v TEXT);
        CREATE TABLE norowid(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
        CREATE TABLE strict_empty(id INTEGER PRIMARY KEY, a ANY) STRICT;
        CREATE TABLE auto_empty(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
        CREATE TABLE no_pk(a, b, c);
        CREATE INDEX plain_v ON plain(v);
        CREATE VIEW plain_view AS SELECT * FROM plain;
        CREATE TRIGGER plain_ai AFTER INSERT ON plain BEGIN INSERT INTO no_pk VALUES(new.id, 1, 2); END;
        CREATE VIRTUAL TABLE empty_fts USING fts5(body);
    """,
    )
    return _finish(con, path)


def build_many_tables(path: Path) -> Path:
    con = _connect(path)
    for i in range(200):
        con.execute(f"CREATE TABLE t{i:03d}(id INTEGER PRIMARY KEY, v TEXT, n INTEGER)")
        if i % 10 == 0:
            con.execute(f"CREATE INDEX t{i:03d}_n ON t{i:03d}(n)")
        for j in range(i % 4):
            con.execute(f"INSERT INTO t{i:03d} VALUES(?, ?, ?)", (j + 1, f"table {i} row {j}", i * j))
    return _finish(con, path)


def build_big_rows(path: Path) -> Path:
    con = _connect(path)
    con.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, kind TEXT NOT NULL, t TEXT, b BLOB)")
    rng = _rng("big_rows")
    con.execute("INSERT INTO big VALUES(1, '1.9 MB multibyte text', ?, NULL)", (_mixed_text(rng, 1_900_000),))
    con.execute("INSERT INTO big VALUES(2, '1.9 MB blob', NULL, ?)", (rng.randbytes(1_900_000),))
    con.execute(
        "INSERT INTO big VALUES(3, '0.9 MB text + 0.9 MB blob', ?, ?)",
        (_mixed_text(rng, 900_000), rng.randbytes(900_000)),
    )
    con.execute("INSERT INTO big VALUES(4, '1.9 MB of quotes and NULs', ?, NULL)", ("'\x00\"\n" * 475_000,))
    con.execute("INSERT INTO big VALUES(5, 'small row after the big ones', 'small', X'00')")
    return _finish(con, path)


def build_pragmas(path: Path) -> Path:
    con = _connect(path)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("INSERT INTO t VALUES(1, 'x')")
    con.execute("PRAGMA user_version = 42")
    con.execute("PRAGMA application_id = 1346458697")  # 'PATI'
    return _finish(con, path)


def build_d1_internal(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE _cf_KV(key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
        CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);
        INSERT INTO _cf_KV VALUES('internal', X'01');
        INSERT INTO users VALUES(1, 'only this is user data');
    """,
    )
    return _finish(con, path)


def build_late_dependencies(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE docs(id INTEGER PRIMARY KEY, title TEXT, body TEXT NOT NULL UNIQUE CHECK (length(body) > 1000));
        CREATE VIEW doc_text AS SELECT id, title, body FROM docs;
        CREATE VIRTUAL TABLE doc_search USING fts5(title, body, content='doc_text', content_rowid='id');
    """,
    )
    rng = random.Random(11)
    words = ["copper", "patina", "grove", "oxide", "verdigris", "armor", "time"]
    for i in range(1, 4):
        body = " ".join(rng.choice(words) for _ in range(50_000))  # ~300 KB: far over one statement
        con.execute("INSERT INTO docs VALUES (?, ?, ?)", (i, f"doc {i}", body))
    con.execute("INSERT INTO docs VALUES (4, 'short', ?)", ("x" * 1001,))
    con.execute("INSERT INTO doc_search(doc_search) VALUES ('rebuild')")
    return _finish(con, path)


def build_utf16(path: Path) -> Path:
    path = Path(path)
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA encoding='UTF-16le'")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT, b BLOB)")
    values = ["", "plain", "ünïcödé 日本語 🎉", "nul\x00inside", "line\nbreak", "it's"]
    con.executemany("INSERT INTO t(s, b) VALUES (?, ?)", [(v, v.encode("utf-8")) for v in values])
    con.close()
    return path


BUILDERS: dict[str, Callable[[Path], Path]] = {name: globals()[f"build_{name}"] for name in CASES}

# The cases modelled on public D1 applications' schemas join the corpus, so every round trip runs them.
CASES.update(real_schemas.CASES)
D1_INCOMPATIBLE.update(real_schemas.D1_INCOMPATIBLE)
BUILDERS.update(real_schemas.BUILDERS)


def build(case: str, path: Path) -> Path:
    """Build one case into ``path``."""
    return BUILDERS[case](Path(path))


def build_all(directory: Path, cases: list[str] | None = None) -> dict[str, Path]:
    """Build every case (or the named ones) as ``directory/<case>.sqlite``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return {name: build(name, directory / f"{name}.sqlite") for name in (cases or CASES)}


# --------------------------------------------------------------------------------------
# Hazards of reading D1 over its REST API (issue 9): D1's SQLite prints doubles inexactly,
# and every query must stay inside D1's documented limits.


def _random_double(rng: random.Random) -> float:
    while True:
        x = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if not math.isnan(x):
            return x


def build_rest_reals(path: Path) -> Path:
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE doubles(id INTEGER PRIMARY KEY, x REAL, u);
        CREATE TABLE real_keys(k REAL PRIMARY KEY, label TEXT) WITHOUT ROWID;
    """,
    )
    rng = _rng("rest_reals")
    values = [_random_double(rng) for _ in range(2466)]  # every exponent, most beyond +-300
    values += [math.ldexp(rng.getrandbits(52) | 1, -1074) for _ in range(200)]  # subnormals
    values += [rng.choice([-1, 1]) * math.ldexp(1 - 2**-53, k) for k in rng.sample(range(-1021, 1025), 200)]
    values += [rng.choice([-1, 1]) * math.ldexp(1.0, k) for k in rng.sample(range(-1074, 1024), 100)]
    values += [v for _label, v in SPECIAL_REALS] + [-0.0, 0.0, -0.0]
    for i, x in enumerate(values, 1):  # u has no affinity: it keeps -0.0 and any integral REAL as REAL
        con.execute("INSERT INTO doubles VALUES(?, ?, ?)", (i, x, x))
    keys = {_random_double(rng) for _ in range(300)} | {math.inf, -math.inf, 5e-324, -5e-324}
    con.executemany("INSERT INTO real_keys VALUES(?, ?)", [(k, repr(k)) for k in keys])
    return _finish(con, path)


# Names D1's limits make awkward: over 50 bytes (the LIKE/GLOB pattern limit, were a name matched
# with LIKE), with quotes, brackets, dots and spaces.
LONG_NAME = 'a "quoted", [bracketed] and dotted.name with spaces, well over fifty bytes long'


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def build_d1_limits(path: Path) -> Path:
    con = _connect(path)
    wide = ", ".join(
        f"{_q(f'{LONG_NAME} {i:03d}')} {['INTEGER', 'TEXT', 'REAL', 'BLOB', ''][i % 5]}" for i in range(99)
    )
    a, b, c = (_q(f"{LONG_NAME} {x}") for x in "abc")
    _exec_many(
        con,
        f"""
        CREATE TABLE {_q(LONG_NAME)}(id INTEGER PRIMARY KEY, {wide});
        CREATE TABLE "composite [key].table"({a} TEXT, {b} REAL, {c} BLOB, payload TEXT,
                                            PRIMARY KEY({a}, {b}, {c})) WITHOUT ROWID;
        CREATE TABLE uneven(id INTEGER PRIMARY KEY, body TEXT);
    """,
    )
    rng = _rng("d1_limits")
    for rid in range(1, 41):
        values = []
        for i in range(99):
            kind = i % 5
            values.append(
                [
                    rng.randint(-(2**63), 2**63 - 1),
                    f"text {i} '{rid}'",
                    _random_double(rng),
                    rng.randbytes(3),
                    None if i % 11 == 0 else 1e300 * rng.random(),
                ][kind]
            )
        con.execute(f"INSERT INTO {_q(LONG_NAME)} VALUES (?{', ?' * 99})", [rid] + values)
    con.executemany(
        'INSERT INTO "composite [key].table" VALUES (?, ?, ?, ?)',
        [(f"k{i % 3}", _random_double(rng), rng.randbytes(2), "p" * i) for i in range(300)],
    )
    # Mostly small rows with some 100x bigger: those are fetched by key after their page.
    con.executemany(
        "INSERT INTO uneven VALUES (?, ?)",
        [(i, ("big " * 2500) + str(i) if i % 37 == 0 else f"small {i}") for i in range(1, 3001)],
    )
    return _finish(con, path)


CASES.update(
    {
        "rest_reals": "3,000 doubles that D1's SQLite (3.47) prints a few ulps off: random bit patterns (exponents "
        "beyond +-300), subnormals, the largest double below each power of two (where log2 rounds "
        "up), powers of two, -0.0; and a WITHOUT ROWID table keyed by REALs (+-inf included)",
        "d1_limits": "a table named with quotes, brackets, dots and spaces (over 50 bytes) of 100 columns with such "
        "names; a WITHOUT ROWID table with a 3-column key of long names (TEXT, REAL, BLOB); a table of "
        "small rows with a few 100x bigger ones",
    }
)
BUILDERS.update({"rest_reals": build_rest_reals, "d1_limits": build_d1_limits})
