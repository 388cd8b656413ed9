"""The awkward corpus (every hazard a dumper must survive, built by tests/support/awkward.py): dumped from
SQLite and over the REST API, restored with `patina restore` and with the sqlite3 CLI, compared exactly."""

import subprocess

import pytest
from support import awkward
from support.compare import compare_databases
from support.d1_server import D1Server

from patina_assets.engine import D1Source, SqliteSource, dump_database, restore_dump

# Cases whose loss is inherent, with what is lost: asserted below rather than hidden.
CONTENTLESS = "fts5_contentless"
REST_UNREADABLE = {"invalid_utf8": "D1 turns bytes that are not UTF-8 into U+FFFD on the way out",
                   "pragmas": "D1 refuses PRAGMA user_version / application_id",
                   "fts4": "D1 does not allow FTS3/4 tables"}
CASES = sorted(awkward.CASES)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return awkward.build_all(tmp_path_factory.mktemp("awkward"))


def differences(source, restored, case, **kw):
    diffs = compare_databases(source, restored, **kw)
    if case == CONTENTLESS:  # no text to rebuild its index from: recreated empty, and the dump says so
        diffs = [d for d in diffs if not d.startswith("fts: \"notes_idx\"")]
    if case == "rowids":  # all of rowid/_rowid_/oid are column names: nothing can read those rowids
        diffs = [d for d in diffs if "shadowed_all" not in d]
    return diffs


@pytest.mark.parametrize("case", CASES)
def test_sqlite_source_round_trip(case, corpus, tmp_path):
    dump = tmp_path / f"{case}.sql"
    with SqliteSource(corpus[case]) as source:
        result = dump_database(source, dump)
    if case == CONTENTLESS:
        assert any("contentless" in w for w in result.warnings)
    text = dump.read_text()
    assert "BEGIN" not in text.split("-- Create table", 1)[0] and "writable_schema" not in text
    assert max(len(line.encode()) for line in text.splitlines()) < 100_000

    restore_dump(dump, tmp_path / "patina.sqlite")
    assert differences(corpus[case], tmp_path / "patina.sqlite", case) == []

    with open(dump, "rb") as sql:
        cli = subprocess.run(["sqlite3", str(tmp_path / "cli.sqlite")], stdin=sql, capture_output=True)
    assert cli.returncode == 0 and not cli.stderr, cli.stderr.decode()[:500]
    # The CLI cannot read the header's user_version note; everything else must match.
    assert differences(corpus[case], tmp_path / "cli.sqlite", case, check_pragmas=False) == []


@pytest.mark.parametrize("case", [c for c in CASES if c not in REST_UNREADABLE])
def test_rest_source_round_trip(case, corpus, tmp_path):
    dump = tmp_path / f"{case}.sql.zst"
    with D1Server({"db": corpus[case]}) as server:
        with D1Source("acct", "db", token="good-token", api_url=server.base_url, page_bytes=200_000) as source:
            dump_database(source, dump)
    restore_dump(dump, tmp_path / "restored.sqlite")
    assert differences(corpus[case], tmp_path / "restored.sqlite", case) == []
