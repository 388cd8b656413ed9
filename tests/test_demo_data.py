"""patina_assets.demo_data: the six Grove demo databases."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from patina_assets.config import GROVE_DATABASES, default_config
from patina_assets.demo_data import (
    DEMO_BASE_DATE,
    DEMO_TABLES,
    KNOWN_POST_SLUG,
    KNOWN_POST_WORD,
    generate_demo_database,
    generate_demo_databases,
)

DAY = DEMO_BASE_DATE + dt.timedelta(days=4)
LATER = DEMO_BASE_DATE + dt.timedelta(days=12)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, Path]:
    return generate_demo_databases(tmp_path_factory.mktemp("demo"), DAY)


@contextlib.contextmanager
def connect(path: Path, readonly: bool = True) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) if readonly else sqlite3.connect(path)
    try:
        yield conn
    finally:
        conn.close()


def objects(conn: sqlite3.Connection, kind: str) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = ?", (kind,))}


def contents(path: Path) -> dict[str, list[tuple]]:
    """Every table's rows (including sqlite_sequence and FTS shadow tables), in a stable order."""
    with connect(path) as conn:
        tables = sorted(
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL TABLE%'"
            )
        )
        out = {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}
        out["sqlite_schema"] = sorted(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema"), key=repr)
    return out


def total_rows(path: Path) -> int:
    with connect(path) as conn:
        return sum(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in DEMO_TABLES[path.stem])


def test_every_database_is_created(demo, tmp_path):
    assert list(demo) == [g.name for g in GROVE_DATABASES]
    total = 0
    for name, path in demo.items():
        assert path.name == f"{name}.sqlite" and path.is_file()
        total += path.stat().st_size
    assert 2_000_000 < total < 10_000_000, total
    # Exactly where the embedded default config looks for them.
    cfg = default_config(tmp_path)
    assert [db.sqlite_path.name for db in cfg.databases] == [p.name for p in demo.values()]


def test_integrity_and_foreign_keys(demo):
    for name, path in demo.items():
        with connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], name
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == [], name
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not list(next(iter(demo.values())).parent.glob(".*.tmp"))


def test_expected_tables_and_features(demo):
    for name, path in demo.items():
        with connect(path) as conn:
            tables = objects(conn, "table")
            assert set(DEMO_TABLES[name]) <= tables, name
            for t in DEMO_TABLES[name]:
                assert conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] > 0, (name, t)

    with connect(demo["groveauth"]) as conn:
        assert {"users_touch_updated_at"} <= objects(conn, "trigger")
        assert {"idx_sessions_user", "idx_audit_log_user_time"} <= objects(conn, "index")
        assert "_cf_KV" in objects(conn, "table")
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'").fetchone()[0]
        assert seq > conn.execute("SELECT max(id) FROM audit_log").fetchone()[0]
        fks = {r[2] for r in conn.execute("SELECT * FROM pragma_foreign_key_list('oauth_tokens')")}
        assert fks == {"users", "oauth_clients"}

    with connect(demo["scout-db"]) as conn:
        assert "credit_balances" in objects(conn, "view")
        balance = conn.execute("SELECT sum(balance) FROM credit_balances").fetchone()[0]
        assert balance == conn.execute("SELECT sum(delta) FROM credit_ledger").fetchone()[0]

    with connect(demo["grove-engine-db"]) as conn:
        settings_sql = conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'settings'").fetchone()[0]
        assert "WITHOUT ROWID" in settings_sql
        partial = conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'idx_content_published'").fetchone()[0]
        assert "WHERE status = 'published'" in partial
        assert conn.execute("SELECT count(*) FROM content WHERE json_valid(frontmatter)").fetchone()[0] > 0
        assert conn.execute('SELECT "order" FROM navigation LIMIT 1').fetchone() is not None

    with connect(demo["autumnsgrove-posts"]) as conn:
        assert {"posts_fts", "posts_fts_data", "posts_fts_idx"} <= objects(conn, "table")
        assert {"posts_fts_ai", "posts_fts_ad", "posts_fts_au"} <= objects(conn, "trigger")
        body = conn.execute("SELECT markdown_content FROM posts WHERE slug = ?", (KNOWN_POST_SLUG,)).fetchone()[0]
        for fragment in ("'", '"', "\n", "\r\n", "\t", "🌲", "COMMIT;", "-- Table: users"):
            assert fragment in body
        assert conn.execute("SELECT max(length(CAST(markdown_content AS BLOB))) FROM posts").fetchone()[0] > 100_000

    with connect(demo["autumnsgrove-git-stats"]) as conn:
        lo, hi, ms = conn.execute(
            "SELECT min(fingerprint), max(fingerprint), max(committed_at_ms) FROM commits"
        ).fetchone()
        assert (lo, hi) == (-(2**63), 2**63 - 1) and ms > 1_700_000_000_000
        assert conn.execute("SELECT typeof(churn_ratio) FROM commits WHERE churn_ratio IS NOT NULL").fetchone() == (
            "real",
        )
        assert conn.execute("SELECT full_name FROM repos WHERE id = 1").fetchone()[0] == "AutumnsGrove/GroveEngine"
        hidden = {r[1]: r[6] for r in conn.execute("SELECT * FROM pragma_table_xinfo('daily_stats')")}
        assert hidden["net_lines"] == 3  # STORED generated column

    with connect(demo["grove-domain-jobs"]) as conn:
        assert (
            conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'domain_checks'")
            .fetchone()[0]
            .rstrip()
            .endswith("STRICT")
        )
        types = {r[0] for r in conn.execute("SELECT DISTINCT typeof(raw) FROM domain_checks")}
        assert types == {"integer", "real", "text", "blob", "null"}
        sizes = [r[0] for r in conn.execute("SELECT length(payload) FROM job_results")]
        assert None in sizes and 0 in sizes and max(s for s in sizes if s is not None) >= 64 * 1024
        assert conn.execute("SELECT typeof(payload) FROM job_results WHERE length(payload) > 0").fetchone() == ("blob",)


def test_deterministic_for_a_given_day(demo, tmp_path):
    again = generate_demo_databases(tmp_path, DAY)
    for name in demo:
        assert contents(demo[name]) == contents(again[name]), name


def test_base_snapshot_and_seed(tmp_path):
    base = generate_demo_database("groveauth", tmp_path / "a.sqlite")
    before = generate_demo_database("groveauth", tmp_path / "b.sqlite", DEMO_BASE_DATE - dt.timedelta(days=30))
    assert contents(base) == contents(before)  # days before the base date give the base snapshot
    other_seed = generate_demo_database("groveauth", tmp_path / "c.sqlite", seed=7)
    assert contents(base)["users"] != contents(other_seed)["users"]


def test_later_day_has_more_rows(demo, tmp_path):
    later = generate_demo_databases(tmp_path, LATER)
    for name in demo:
        assert total_rows(later[name]) > total_rows(demo[name]), name
        assert contents(later[name]) != contents(demo[name])
    # Growth is gradual, like a live database: well under the 2x size-increase alert.
    grown = sum(p.stat().st_size for p in later.values()) / sum(p.stat().st_size for p in demo.values())
    assert 1.0 < grown < 1.5


def test_fts5_search_finds_known_post(demo):
    with connect(demo["autumnsgrove-posts"], readonly=False) as conn:
        hits = conn.execute(
            "SELECT p.slug FROM posts_fts JOIN posts p ON p.id = posts_fts.rowid WHERE posts_fts MATCH ?",
            (KNOWN_POST_WORD,),
        ).fetchall()
        assert hits == [(KNOWN_POST_SLUG,)]
        # The external-content index agrees with the table (the triggers kept it in sync).
        conn.execute("INSERT INTO posts_fts(posts_fts, rank) VALUES ('integrity-check', 1)")
        # Porter stemming: "weathers" finds the post that says "weathers".
        assert (KNOWN_POST_SLUG,) in conn.execute(
            "SELECT p.slug FROM posts_fts JOIN posts p ON p.id = posts_fts.rowid WHERE posts_fts MATCH 'weathering'"
        )


def test_replaces_existing_files_and_is_quick(tmp_path):
    (tmp_path / "groveauth.sqlite").write_text("not a database")
    start = time.perf_counter()
    paths = generate_demo_databases(tmp_path, LATER)
    assert time.perf_counter() - start < 20
    with connect(paths["groveauth"]) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] > 0
    with pytest.raises(KeyError, match="known"):
        generate_demo_database("nope", tmp_path / "nope.sqlite")
