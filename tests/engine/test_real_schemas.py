"""The hazards found dumping real D1 applications' schemas (issue 10), each pinned by a test of its own.

The cases themselves (tests/support/real_schemas.py) run through every round trip with the awkward corpus;
these tests check what a round trip cannot see: the dump's text, its warnings, and the scratch table.
"""

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from support import awkward, real_schemas
from support.compare import compare_databases
from support.d1_server import D1Server

from patina_assets.engine import SqliteSource, dump_database, restore_dump
from patina_assets.engine.d1_import import import_dump
from patina_assets.engine.schema import SCRATCH_NAME, scratch_name
from patina_assets.engine.wrangler_compat import guard, wrangler_split


def make_db(path: Path, script: str, rows: list[tuple[str, tuple]] = ()) -> Path:
    db = sqlite3.connect(path)
    db.executescript(script)
    for sql, params in rows:
        db.execute(sql, params)
    db.commit()
    db.close()
    return path


def dump_and_restore(source: Path, tmp_path: Path):
    dump = tmp_path / "dump.sql"
    with SqliteSource(source) as db:
        result = dump_database(db, dump)
    restore_dump(dump, tmp_path / "patina.sqlite")
    assert compare_databases(source, tmp_path / "patina.sqlite") == []
    with open(dump, "rb") as sql:
        cli = subprocess.run(["sqlite3", str(tmp_path / "cli.sqlite")], stdin=sql, capture_output=True)
    assert cli.returncode == 0 and not cli.stderr, cli.stderr.decode()[:500]
    assert compare_databases(source, tmp_path / "cli.sqlite", check_pragmas=False) == []
    return result, dump.read_text()


TIED = """
    CREATE TABLE posts(id INTEGER PRIMARY KEY, body TEXT NOT NULL, body_len INTEGER NOT NULL, CHECK (length(body) = body_len));
    CREATE TABLE files(key TEXT PRIMARY KEY, data BLOB NOT NULL, size INTEGER NOT NULL, CHECK (size = length(data))) WITHOUT ROWID;
"""


def test_a_big_row_is_built_aside_and_moved_whole(tmp_path):
    source = make_db(
        tmp_path / "src.sqlite",
        TIED,
        [
            ("INSERT INTO posts VALUES(1, ?, 200000)", ("é" * 200_000,)),
            (
                "INSERT INTO files VALUES(?, ?, 150000)",
                ("k" * 100_000, b"\x00\xff" * 75_000),
            ),  # the key alone is too big too
        ],
    )
    _, text = dump_and_restore(source, tmp_path)
    scratch = json.dumps(SCRATCH_NAME)
    assert f'INSERT INTO "posts"("id","body","body_len") SELECT v0,v1,v2 FROM {scratch};' in text
    assert f'INSERT INTO "files"("key","data","size") SELECT v0,v1,v2 FROM {scratch};' in text
    assert text.count(f"CREATE TABLE {scratch}(") == text.count(f"DROP TABLE {scratch};") == 2
    assert 'UPDATE "posts"' not in text and 'UPDATE "files"' not in text  # the tables see only whole rows
    assert max(len(line.encode()) for line in text.splitlines()) < 100_000


def test_the_scratch_name_is_one_the_schema_does_not_use(tmp_path):
    taken = [SCRATCH_NAME, SCRATCH_NAME.upper() + "_", SCRATCH_NAME + "__idx"]
    assert scratch_name(taken) == SCRATCH_NAME + "__"
    source = make_db(
        tmp_path / "src.sqlite",
        f"""
        CREATE TABLE "{SCRATCH_NAME}"(a, b, c);
        CREATE INDEX "{SCRATCH_NAME.upper()}_" ON "{SCRATCH_NAME}"(a);
        CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT);
    """,
        [(f'INSERT INTO "{SCRATCH_NAME}" VALUES(1, 2, 3)', ()), ("INSERT INTO t VALUES(1, ?)", ("x" * 150_000,))],
    )
    _, text = dump_and_restore(source, tmp_path)
    assert f'SELECT v0,v1 FROM "{SCRATCH_NAME}__";' in text


def test_fts5vocab_tables_are_recreated_and_never_inserted_into(tmp_path):
    source = make_db(
        tmp_path / "src.sqlite",
        """
        CREATE VIRTUAL TABLE kb USING fts5(body);
        CREATE VIRTUAL TABLE kb_terms USING fts5vocab(kb, row);
        INSERT INTO kb VALUES ('copper patina'), ('patina oxide');
    """,
    )
    result, text = dump_and_restore(source, tmp_path)
    assert 'INSERT INTO "kb_terms"' not in text and "kb_terms" not in result.table_rows
    assert '-- End of table: "kb_terms"\n' in text  # no row count: it reads kb, which the restore checks
    assert result.warnings == []
    terms = (
        sqlite3.connect(tmp_path / "patina.sqlite").execute("SELECT term, doc FROM kb_terms ORDER BY term").fetchall()
    )
    assert terms == [("copper", 1), ("oxide", 1), ("patina", 2)]


def unknown_module_db(path: Path) -> Path:
    """A table of sqlite-vec's vec0 module, which this SQLite does not have (written as the extension would).

    Only a SQLite file can hold one: local D1 (wrangler 4.20.0) answers `CREATE VIRTUAL TABLE v USING
    vec0(...)` with `not authorized: SQLITE_AUTH`, as it does for rtree and dbstat (fts5 and fts5vocab
    are allowed). So no round trip runs it; this test checks what the dump says.
    """
    make_db(path, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO items VALUES (1, 'x');")
    db = sqlite3.connect(path)
    db.execute("PRAGMA writable_schema=ON")
    db.execute(
        "INSERT INTO sqlite_master(type, name, tbl_name, rootpage, sql) VALUES('table', 'vec_items', 'vec_items', 0, "
        "'CREATE VIRTUAL TABLE vec_items USING vec0(embedding float[4])')"
    )
    db.commit()
    db.close()
    return path


def test_an_unknown_module_is_a_warning_in_the_header_and_the_manifest(tmp_path):
    source = unknown_module_db(tmp_path / "src.sqlite")
    with SqliteSource(source) as db:
        result = dump_database(db, tmp_path / "dump.sql")
    text = (tmp_path / "dump.sql").read_text()
    [warning] = result.warnings
    assert "'vec_items' uses the module 'vec0'" in warning and "NOT in this dump" in warning
    header = text.split("PRAGMA defer_foreign_keys")[0]
    assert f"-- Warning: {warning}" in header
    assert 'INSERT INTO "vec_items"' not in text and "vec_items" not in result.table_rows
    assert "CREATE VIRTUAL TABLE IF NOT EXISTS vec_items USING vec0" in text
    assert result.table_rows == {"items": 1}


@pytest.mark.parametrize(
    "sql",
    [
        'CREATE TABLE t([c"d] TEXT, "semi;colon" TEXT)',  # a quote wrangler opens inside [...], closed too late
        'CREATE TABLE t([a"b] TEXT)',  # one left open: it would run on into the rows
        "CREATE TABLE t(a INT -- a comment wrangler drops\n, b)",
        "CREATE TRIGGER tr AFTER INSERT ON t begin select 1; end",  # lower-case end never closes wrangler's block
        "CREATE VIEW v AS SELECT CASE WHEN 1 THEN 2 END AS x",
        "CREATE TABLE [x;y]([p'q] TEXT, 'it''s' TEXT, [r`s] TEXT, \"u;v\" TEXT)",
        "CREATE TABLE t(a$$b TEXT, c)",  # `$$` opens a PostgreSQL dollar quote for wrangler
    ],
)
def test_guarded_schema_statements_reach_d1_whole(sql):
    text, exact = guard(sql + ";\n")
    assert exact
    split = wrangler_split(text + "INSERT INTO \"t\" VALUES('after');\n")
    assert split.open_quote is None and split.open_blocks == 0
    assert any(sql in s for s in split.statements)  # unchanged, comments included
    assert split.statements[-1] == "INSERT INTO \"t\" VALUES('after')"
    assert all(sqlite3.complete_statement(s + ";") for s in split.statements)


def test_what_cannot_be_kept_in_step_is_a_warning_with_the_way_out(tmp_path):
    # A quote opened ahead for wrangler neutralises a statement up to its first stray quote of that kind:
    # with two strays of each kind, each followed by a quoted `;`, no arrangement keeps wrangler in step.
    source = make_db(
        tmp_path / "src.sqlite",
        """
        CREATE TABLE t([a"b] TEXT, "x;y" TEXT, [c"d] TEXT, "p;q" TEXT,
                       [e'f] TEXT DEFAULT 'r;s', [g'h] TEXT DEFAULT 'u;v',
                       [i`j] TEXT, `w;x` TEXT, [k`l] TEXT, `y;z` TEXT);
        INSERT INTO t("x;y") VALUES (1);""",
    )
    result, text = dump_and_restore(source, tmp_path)
    [warning] = result.warnings
    assert "table 't'" in warning and "patina restore" in warning and "--remote" in warning
    assert f"-- Warning: {warning}" in text.split("PRAGMA defer_foreign_keys")[0]


@pytest.mark.wrangler
def test_the_replayed_splitter_is_wranglers(tmp_path):
    """`wrangler_split` against the splitter in wrangler 4.20.0's own bundle, on 3,000 seeded random texts."""
    import random

    from support.wrangler import ensure_wrangler

    cli = (
        ensure_wrangler().resolve().parents[1] / "wrangler-dist" / "cli.js"
    )  # .bin/wrangler -> wrangler/bin/wrangler.js
    code = cli.read_text()
    splitter = code[code.index("function splitSqlIntoStatements(sql)") : code.index("var init_splitter")]
    rng = random.Random(10)
    atoms = [
        "'",
        '"',
        "`",
        "$",
        "$$",
        "$a$",
        "-",
        "--",
        "/",
        "/*",
        "*/",
        ";",
        "\n",
        " ",
        "BEGIN",
        "begin",
        "CASE",
        "END",
        "end",
        "[",
        "]",
        "x",
        "é",
        "1",
        "_",
        "\t",
        " END;",
        "(",
        ")",
        "😀",
    ]
    texts = ["".join(rng.choice(atoms) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    (tmp_path / "split.js").write_text(
        splitter + "\nconst texts = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));\n"
        "process.stdout.write(JSON.stringify(texts.map(splitSqlIntoStatements)));\n"
    )
    node = subprocess.run(
        ["node", str(tmp_path / "split.js"), str(tmp_path / "texts.json")], capture_output=True, text=True
    )
    assert node.returncode == 0, node.stderr[:500]
    expected = json.loads(node.stdout)
    assert [wrangler_split(t).statements for t in texts] == expected


@pytest.fixture(scope="module")
def real_cases(tmp_path_factory):
    return awkward.build_all(tmp_path_factory.mktemp("real"), list(real_schemas.CASES))


@pytest.mark.parametrize("case", sorted(set(real_schemas.CASES) - set(real_schemas.D1_INCOMPATIBLE)))
def test_real_cases_import_into_d1_through_its_import_api(case, real_cases, tmp_path):
    """The `--remote` path: the dump uploaded to D1's import API (the loopback server enforces D1's limits)."""
    dump = tmp_path / "dump.sql"
    with SqliteSource(real_cases[case]) as db:
        result = dump_database(db, dump)
    target = tmp_path / "d1.sqlite"
    sqlite3.connect(target).close()
    with D1Server({"db": target}, token="good-token") as server:
        import_dump(
            dump,
            "acct",
            "db",
            token="good-token",
            api_url=server.base_url,
            expected_rows=result.table_rows,
            sleep=lambda seconds: None,
        )
    assert compare_databases(real_cases[case], target, check_pragmas=False) == []
