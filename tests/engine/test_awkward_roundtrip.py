"""The awkward corpus (every hazard a dumper must survive, built by tests/support/awkward.py): dumped from
SQLite and over the REST API (from the loopback D1 server and from workerd's D1 behind `wrangler dev`),
restored with `patina restore` and with the sqlite3 CLI, compared exactly."""

import sqlite3
import subprocess

import pytest
from support import awkward
from support.compare import compare_databases
from support.d1_server import D1Server
from support.rest_worker import STAND_IN_REQUESTS_PER_5_MINUTES

from patina_assets.engine import D1Source, SqliteSource, dump_database, restore_dump

# Cases whose loss is inherent, with what is lost: asserted below rather than hidden.
CONTENTLESS = "fts5_contentless"
REST_UNREADABLE = {
    "invalid_utf8": "D1 turns bytes that are not UTF-8 into U+FFFD on the way out",
    "pragmas": "D1 refuses PRAGMA user_version / application_id",
    "fts4": "D1 does not allow FTS3/4 tables",
}
CASES = sorted(awkward.CASES)


@pytest.fixture(scope="module")
def corpus(awkward_corpus):
    return awkward_corpus


def differences(source, restored, case, **kw):
    diffs = compare_databases(source, restored, **kw)
    if case == CONTENTLESS:  # no text to rebuild its index from: recreated empty, and the dump says so
        diffs = [d for d in diffs if not d.startswith('fts: "notes_idx"')]
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


@pytest.mark.wrangler
@pytest.mark.parametrize("case", [c for c in CASES if c not in REST_UNREADABLE])
def test_workerd_rest_round_trip(case, corpus, workerd_d1, tmp_path):
    """The same through workerd's D1 (SQLite 3.47 and JavaScript, as on Cloudflare), with small pages."""
    dump = tmp_path / f"{case}.sql.zst"
    with D1Source(
        "acct",
        f"awkward-{case}",
        token=workerd_d1.token,
        api_url=workerd_d1.base_url,
        requests_per_5_minutes=STAND_IN_REQUESTS_PER_5_MINUTES,
        page_bytes=200_000,
    ) as source:
        dump_database(source, dump)
    restore_dump(dump, tmp_path / "restored.sqlite")
    assert differences(corpus[case], tmp_path / "restored.sqlite", case) == []


@pytest.mark.wrangler
def test_workerd_prints_doubles_inexactly_so_reals_never_travel_as_its_text(corpus, workerd_d1):
    """The hazard itself: workerd's SQLite writes many of these doubles a few ulps off in quote() (and any
    decimal text). The dump above carries them as integers and restores every one bit for bit."""
    with D1Source(
        "acct",
        "awkward-rest_reals",
        token=workerd_d1.token,
        api_url=workerd_d1.base_url,
        requests_per_5_minutes=STAND_IN_REQUESTS_PER_5_MINUTES,
    ) as source:
        printed = source.query("SELECT quote(x), quote(u) FROM doubles ORDER BY id")
    with sqlite3.connect(corpus["rest_reals"]) as db:
        stored = db.execute("SELECT x, u FROM doubles ORDER BY id").fetchall()
    assert len(stored) == 3000
    wrong = [
        text
        for row, texts in zip(stored, printed)
        for value, text in zip(row, texts)
        if isinstance(value, float) and float(text.replace("Inf", "inf")) != value
    ]
    assert len(wrong) > 500
