"""Tests of the test support modules: the awkward corpus and the exact database comparison."""

from __future__ import annotations

import hashlib
import math
import shutil
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from support import awkward, compare

CORPUS = Path("/work/shared/corpus")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    return awkward.build_all(tmp_path_factory.mktemp("awkward"))


def _copy(src: Path, dst_dir: Path, name: str = "copy.sqlite") -> Path:
    dst = dst_dir / name
    shutil.copyfile(src, dst)
    return dst


def _modify(path: Path, action: str | Callable[[sqlite3.Connection], None]) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    try:
        if callable(action):
            action(con)
        else:
            con.executescript(action)
    finally:
        con.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)


# --------------------------------------------------------------------------------------
# (a) the corpus


def test_build_all_builds_every_case(built):
    assert list(built) == list(awkward.CASES)
    assert set(awkward.D1_INCOMPATIBLE) <= set(awkward.CASES)
    for name, path in built.items():
        assert path == path.parent / f"{name}.sqlite"
        assert callable(awkward.BUILDERS[name])
        with _ro(path) as con:
            assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)], name
            assert con.execute("PRAGMA foreign_key_check").fetchall() == [], name


def test_build_single_case(tmp_path):
    path = awkward.build_integers(tmp_path / "sub" / "ints.sqlite")
    again = awkward.build_integers(path)  # overwrites
    assert again == path and path.exists()


def test_builds_are_deterministic(built, tmp_path):
    again = awkward.build_all(tmp_path)
    for name in awkward.CASES:
        assert compare.compare_databases(built[name], again[name]) == [], name


def test_hazards_are_present(built):
    with _ro(built["reals"]) as con:
        u, r = con.execute("SELECT u, r FROM special_reals WHERE label='-0.0'").fetchone()
        assert struct.pack(">d", u).hex() == "8000000000000000"  # kept in an untyped column
        assert struct.pack(">d", r).hex() == "0000000000000000"  # REAL affinity drops the sign
        assert con.execute("SELECT count(*) FROM random_reals").fetchone() == (2000,)
        infs = con.execute("SELECT u FROM special_reals WHERE label LIKE '%9e999 literal'").fetchall()
        assert sorted(v for (v,) in infs) == [-math.inf, math.inf]
    with _ro(built["integers"]) as con:
        assert con.execute("SELECT min(rowid), max(rowid) FROM int_rowid").fetchone() == (-(2**63), 2**63 - 1)
        assert con.execute("SELECT min(id), max(id) FROM int_pk").fetchone() == (-(2**63), 2**63 - 1)
    with _ro(built["texts"]) as con:
        con.text_factory = bytes
        assert con.execute("SELECT t FROM texts WHERE label='embedded NUL'").fetchone() == (b"a\x00b",)
        assert con.execute("SELECT t, typeof(t) FROM texts WHERE label='NULL'").fetchone() == (None, b"null")
        sizes = [
            n for (n,) in con.execute("SELECT length(CAST(t AS BLOB)) FROM texts WHERE label GLOB '*[0-9] [KM]B *'")
        ]
        assert max(sizes) > 1_400_000 and min(sizes) > 100_000
    with _ro(built["invalid_utf8"]) as con:
        con.text_factory = bytes
        assert con.execute("SELECT t, typeof(t) FROM bad_text WHERE id=1").fetchone() == (b"\xff\xfe", b"text")
    with _ro(built["blobs"]) as con:
        row = con.execute("SELECT b, typeof(b) FROM blobs WHERE label='empty blob'").fetchone()
        assert row == (b"", "blob")
        assert con.execute("SELECT b FROM blobs WHERE label='all 256 byte values'").fetchone() == (bytes(range(256)),)
    with _ro(built["views"]) as con:
        order = [n for (n,) in con.execute("SELECT name FROM sqlite_schema ORDER BY rowid")]
        assert order.index("view_a") < order.index("view_b") < order.index("items")
    with _ro(built["triggers"]) as con:
        order = [n for (n,) in con.execute("SELECT name FROM sqlite_schema ORDER BY rowid")]
        assert order.index("orders_audit") < order.index("audit_log")
        assert con.execute("SELECT qty FROM orders WHERE id=1").fetchone() == (0,)
    with _ro(built["autoincrement"]) as con:
        seq = dict(con.execute("SELECT name, seq FROM sqlite_sequence"))
        assert seq["ai_gap"] == 10 and con.execute("SELECT max(id) FROM ai_gap").fetchone() == (5,)
        assert seq["ai_emptied"] == 3 and "ai_never" not in seq
    with _ro(built["wide_table"]) as con:
        assert len(con.execute("PRAGMA table_info(wide)").fetchall()) == 100
    with _ro(built["big_rows"]) as con:
        sizes = [
            n for (n,) in con.execute("SELECT coalesce(length(CAST(t AS BLOB)), 0) + coalesce(length(b), 0) FROM big")
        ]
        assert sum(1 for n in sizes if 1_700_000 < n < 2_000_000) >= 4
    with _ro(built["names"]) as con:
        names = {n for (n,) in con.execute("SELECT name FROM sqlite_schema")}
        assert {
            "select",
            "order",
            "Order Details",
            "table with spaces",
            'quoted"name',
            "ünïcödé",
            "日本語",
            "index",
        } <= names
    with _ro(built["fts5"]) as con:
        assert con.execute("SELECT count(*) FROM posts_fts WHERE posts_fts MATCH 'fox'").fetchone() == (2,)
    with _ro(built["pragmas"]) as con:
        assert con.execute("PRAGMA user_version").fetchone() == (42,)
    with _ro(built["empty"]) as con:
        assert con.execute("SELECT count(*) FROM sqlite_schema").fetchone() == (0,)
    assert built["empty"].stat().st_size > 0


# --------------------------------------------------------------------------------------
# (b) identical databases


@pytest.mark.parametrize("engine", ["sqlite3", "apsw"])
def test_copy_is_identical(built, tmp_path, engine):
    for name, path in built.items():
        copy = _copy(path, tmp_path, f"{name}.sqlite")
        assert compare.compare_databases(path, copy, engine=engine) == [], name


def test_vacuum_and_schema_order_do_not_matter(built, tmp_path):
    for name, path in built.items():
        dst = tmp_path / f"{name}.sqlite"
        with sqlite3.connect(path) as con:
            con.execute("VACUUM INTO ?", (str(dst),))
        assert compare.compare_databases(path, dst) == [], name
    # Same objects, another sqlite_schema order.
    copy = _copy(built["views"], tmp_path, "views_reordered.sqlite")
    with sqlite3.connect(built["views"]) as con:
        sql = con.execute("SELECT sql FROM sqlite_schema WHERE name='view_a'").fetchone()[0]
    _modify(copy, lambda c: (c.execute("DROP VIEW view_a"), c.execute(sql)))
    assert compare.compare_databases(built["views"], copy) == []


def test_compare_never_writes(built, tmp_path):
    expected = built["fts5"]
    actual = _copy(expected, tmp_path)
    _modify(
        actual,
        "INSERT INTO posts_fts(posts_fts, rowid, title, body) "
        "VALUES('delete', 103, 'Hello world', 'The quick brown fox jumps over the lazy dog');",
    )
    before = (_digest(expected), _digest(actual))
    assert compare.compare_databases(expected, actual)  # runs integrity-check on a copy
    assert (_digest(expected), _digest(actual)) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.sqlite"]


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.sqlite")))
def test_corpus_self_compare(name):
    # (How long a comparison takes is no test's business: timing goals live in bench/.)
    path = CORPUS / name
    assert compare.compare_databases(path, path) == []


# --------------------------------------------------------------------------------------
# (c) each kind of difference is found


def _next_bit(con: sqlite3.Connection) -> None:
    (x,) = con.execute("SELECT x FROM random_reals WHERE id = 1").fetchone()
    con.execute("UPDATE random_reals SET x = ? WHERE id = 1", (math.nextafter(x, math.inf),))


INJECTIONS = {
    "integer 2^63-1 -> 2^63-2": (
        "integers",
        "UPDATE int_values SET v = 9223372036854775806 WHERE v = 9223372036854775807;",
        ['data: table "int_values"', "expected INTEGER 9223372036854775807, actual INTEGER 9223372036854775806"],
    ),
    "REAL off by one bit": ("reals", _next_bit, ['data: table "random_reals": rowid=1 column "x"']),
    "-0.0 vs 0.0": (
        "reals",
        "UPDATE special_reals SET u = 0.0 WHERE label = '-0.0';",
        ["expected REAL -0.0 (bits 8000000000000000), actual REAL 0.0"],
    ),
    "INTEGER vs REAL": (
        "mixed_types",
        "UPDATE mixed SET u = 12.0 WHERE label = 'untyped integer 12';",
        ["expected INTEGER 12, actual REAL 12.0"],
    ),
    "TEXT differs after NUL": (
        "texts",
        "UPDATE texts SET t = 'a' || char(0) || 'c' WHERE label = 'embedded NUL';",
        ['column "t"', "first differing byte at offset 2"],
    ),
    "'' vs NULL": (
        "texts",
        "UPDATE texts SET t = NULL WHERE label = 'empty string';",
        ["expected TEXT '' (0 bytes), actual NULL"],
    ),
    "BLOB vs TEXT": (
        "blobs",
        "UPDATE blobs SET b = CAST(b AS TEXT) WHERE label = 'ascii as blob';",
        ["expected BLOB x'68656c6c6f' (5 bytes), actual TEXT 'hello'"],
    ),
    "invalid UTF-8 byte": (
        "invalid_utf8",
        "UPDATE bad_text SET t = CAST(X'fffd' AS TEXT) WHERE id = 1;",
        ['table "bad_text": rowid=1 column "t"'],
    ),
    "missing row": ("mixed_types", "DELETE FROM mixed WHERE id = 3;", ["rowid=3 missing from actual"]),
    "extra row": ("without_rowid", "INSERT INTO wr_text VALUES('new', 1);", ["unexpected \"code\"=TEXT 'new'"]),
    "changed rowid": (
        "rowids",
        "UPDATE sparse SET rowid = 43 WHERE rowid = 42;",
        ["rowid=42 missing from actual", "unexpected rowid=43 in actual"],
    ),
    "rowid behind a shadowing column": (
        "rowids",
        "UPDATE shadowed SET _rowid_ = 31 WHERE _rowid_ = 30;",
        ['table "shadowed": _rowid_=30 missing'],
    ),
    "all rowid names shadowed": (
        "rowids",
        "UPDATE shadowed_all SET v = 0 WHERE rowid = 'r2';",
        ['table "shadowed_all": row #2 (in scan order) column "v"'],
    ),
    "NOCASE key changes case": (
        "without_rowid",
        "UPDATE wr_nocase SET name = 'apple' WHERE name = 'Apple';",
        ["\"name\"=TEXT 'Apple' (5 bytes) missing", "unexpected \"name\"=TEXT 'apple'"],
    ),
    "generated column follows": (
        "generated_columns",
        "UPDATE gen_strict SET a = 0 WHERE id = 1;",
        ['table "gen_strict": rowid=1 column "b"', 'rowid=1 column "c"'],
    ),
    "missing index": ("indexes", "DROP INDEX users_lower_name;", ['schema: index "users_lower_name" missing']),
    "changed trigger body": (
        "triggers",
        "DROP TRIGGER orders_audit; CREATE TRIGGER orders_audit AFTER INSERT ON orders BEGIN "
        "INSERT INTO audit_log(order_id, action, at) VALUES(new.id, 'insert', new.created); END;",
        ['schema: trigger "orders_audit": sql differs'],
    ),
    "missing view": ("views", "DROP VIEW view_top;", ['schema: view "view_top" missing from actual']),
    "missing table": ("names", 'DROP TABLE "table with spaces";', ['schema: table "table with spaces" missing']),
    "added column": (
        "constraints",
        "ALTER TABLE accounts ADD COLUMN extra;",
        ['schema: table "accounts": sql differs', 'data: table "accounts": columns differ'],
    ),
    "changed sqlite_sequence": (
        "autoincrement",
        "UPDATE sqlite_sequence SET seq = 11 WHERE name = 'ai_gap';",
        [
            'data: table "sqlite_sequence": "name"=TEXT \'ai_gap\' (6 bytes) column "seq": '
            "expected INTEGER 10, actual INTEGER 11"
        ],
    ),
    "duplicate sqlite_sequence row": (
        "autoincrement",
        "INSERT INTO sqlite_sequence(name, seq) VALUES('ai_gap', 10);",
        ["unexpected \"name\"=TEXT 'ai_gap' (6 bytes) (a duplicate key) in actual"],
    ),
    "wide row value": (
        "wide_table",
        "UPDATE wide SET c100 = 'x' WHERE rowid = 1000;",
        ['table "wide": rowid=1000 column "c100"'],
    ),
    "FTS5 visible row": (
        "fts5",
        "UPDATE docs_fts SET title = 'Changed' WHERE rowid = 10;",
        ['vtab: virtual table "docs_fts": rowid=10 column "title"', 'fts: "docs_fts": index entry'],
    ),
    "FTS5 index out of step with its content": (
        "fts5",
        "INSERT INTO posts_fts(posts_fts, rowid, title, body) "
        "VALUES('delete', 103, 'Hello world', 'The quick brown fox jumps over the lazy dog');",
        ['fts: "posts_fts": index entry', 'fts: "posts_fts": MATCH', 'fts: "posts_fts": integrity-check fails'],
    ),
    "FTS5 config": (
        "fts5",
        "INSERT INTO docs_fts(docs_fts, rank) VALUES('rank', 'bm25(1.0, 1.0)');",
        ["fts: \"docs_fts\": config TEXT 'rank'"],
    ),
    "contentless FTS5 entry": (
        "fts5_contentless",
        "INSERT INTO notes_idx(notes_idx, rowid, title, body) "
        "VALUES('delete', 7, 'Hello world', 'The quick brown fox jumps over the lazy dog');",
        ['fts: "notes_idx": index entry'],
    ),
    "FTS4 row": (
        "fts4",
        "DELETE FROM notes_fts4 WHERE docid = 5;",
        ['vtab: virtual table "notes_fts4": rowid=5 missing', 'fts: "notes_fts4"'],
    ),
    "user_version": ("pragmas", "PRAGMA user_version = 7;", ["pragma: user_version: expected 42, actual 7"]),
}


@pytest.mark.parametrize("engine", ["sqlite3", "apsw"])
@pytest.mark.parametrize("label", list(INJECTIONS))
def test_compare_finds_injected_difference(built, tmp_path, label, engine):
    case, action, needles = INJECTIONS[label]
    actual = _copy(built[case], tmp_path)
    _modify(actual, action)
    diffs = compare.compare_databases(built[case], actual, engine=engine)
    for needle in needles:
        assert any(needle in d for d in diffs), f"{needle!r} not in {diffs}"
    with pytest.raises(AssertionError, match="difference"):
        compare.assert_same_database(built[case], actual, engine=engine)


def test_every_difference_has_a_category(built, tmp_path):
    actual = _copy(built["fts5"], tmp_path)
    _modify(actual, "DELETE FROM posts WHERE id = 103; PRAGMA user_version = 1; DROP TRIGGER posts_au;")
    diffs = compare.compare_databases(built["fts5"], actual)
    assert diffs
    assert all(d.split(":", 1)[0] in compare.CATEGORIES for d in diffs), diffs


def test_pragmas_can_be_ignored(built, tmp_path):
    actual = _copy(built["pragmas"], tmp_path)
    _modify(actual, "PRAGMA user_version = 0; PRAGMA application_id = 0;")
    assert len(compare.compare_databases(built["pragmas"], actual)) == 2
    assert compare.compare_databases(built["pragmas"], actual, check_pragmas=False) == []


def test_ignored_and_internal_tables(built, tmp_path):
    actual = _copy(built["d1_internal"], tmp_path, "d1.sqlite")
    _modify(actual, "DROP TABLE _cf_KV; UPDATE users SET name = 'changed';")
    assert compare.compare_databases(built["d1_internal"], actual, ignore_tables=["USERS"]) == []
    assert compare.compare_databases(built["d1_internal"], actual)  # users still compared
    stats = _copy(built["indexes"], tmp_path, "indexes.sqlite")
    _modify(stats, "DELETE FROM sqlite_stat1;")
    assert compare.compare_databases(built["indexes"], stats) == []


def test_rowids_can_be_ignored(built, tmp_path):
    actual = _copy(built["rowids"], tmp_path)
    _modify(actual, "UPDATE sparse SET rowid = rowid + 1 WHERE rowid BETWEEN 0 AND 2000;")
    assert compare.compare_databases(built["rowids"], actual)
    assert compare.compare_databases(built["rowids"], actual, check_rowids=False) == []
    _modify(actual, "UPDATE sparse SET v = 'changed' WHERE rowid = 6;")
    diffs = compare.compare_databases(built["rowids"], actual, check_rowids=False)
    assert any("missing from actual" in d for d in diffs) and any("unexpected" in d for d in diffs)


def test_assertion_message_is_bounded(built, tmp_path):
    actual = _copy(built["many_tables"], tmp_path)
    _modify(actual, lambda c: [c.execute(f"DELETE FROM t{i:03d}") for i in range(200)])
    diffs = compare.compare_databases(built["many_tables"], actual)
    assert len(diffs) > 100
    with pytest.raises(AssertionError) as info:
        compare.assert_same_database(built["many_tables"], actual)
    message = str(info.value)
    assert f"{len(diffs)} difference(s)" in message
    assert message.count("\n") <= 32 and f"and {len(diffs) - 30} more" in message


def test_per_table_detail_is_capped(built, tmp_path):
    actual = _copy(built["reals"], tmp_path)
    _modify(actual, "DELETE FROM random_reals;")
    diffs = compare.compare_databases(built["reals"], actual, max_per_table=5)
    table = [d for d in diffs if '"random_reals"' in d]
    assert len(table) == 6
    assert "1995 more differences (2000 rows missing, 0 unexpected, 0 changed in all)" in table[-1]
