"""One point in time over D1's REST API: a small database in one batch, a bigger one paged and proven by
the Time Travel bookmark, a write during the dump seen and read again, and the dump stored marked
not-point-in-time (with both bookmarks) when the database never held still. Writes happen in the
loopback server's hook between two requests, never on a timer."""

import sqlite3

import pytest
from support.compare import assert_same_database
from support.configs import small_database
from support.d1_server import D1Error, D1Server

from patina_assets.engine import D1Source, dump_database, open_dump_text, restore_dump

DB_ID = "2b0c7c7e-4b1e-4f4a-9d55-1b2c3d4e5f61"
WRITE = "INSERT INTO posts(user_id, body) VALUES (1, 'written during the dump')"


def source(server, **kw) -> D1Source:
    return D1Source("acct", DB_ID, token="good-token", api_url=server.base_url, backoff_seconds=0.001, **kw)


def header(path) -> str:
    with open_dump_text(path) as f:
        return "".join(line for _, line in zip(range(30), f))


def paged(**kw):
    return {"one_batch_bytes": 0, "page_bytes": 10_000, **kw}


def test_a_small_database_is_read_in_one_batch(tmp_path):
    db = small_database(tmp_path / "grove.sqlite")
    with D1Server({DB_ID: db}) as server:
        with source(server) as d1:
            result = dump_database(d1, tmp_path / "grove.sql")
        bodies = [r.body for r in server.requests if r.method == "POST"]
    (batch,) = [b for b in bodies if "batch" in b]
    assert {"users", "posts"} <= {
        s["sql"].split("FROM ")[-1].split()[0].strip('"') for s in batch["batch"] if "json_array" in s["sql"]
    }
    # Nothing but schema reads and the probe for math functions before it, nothing after it.
    assert not any("json_array" in b.get("sql", "") for b in bodies)
    assert result.point_in_time and result.consistency == "one batch" and result.attempts == 1
    assert result.bookmark == result.end_bookmark
    text = header(tmp_path / "grove.sql")
    assert "-- Point in time: yes (read in one batch, which D1 runs as one transaction)" in text
    assert f"-- Time Travel bookmark: {result.bookmark}" in text
    restore_dump(tmp_path / "grove.sql", tmp_path / "restored.sqlite")
    assert_same_database(db, tmp_path / "restored.sqlite", check_pragmas=False)


def test_a_bigger_database_is_paged_and_proven_by_the_bookmark(tmp_path):
    db = small_database(tmp_path / "grove.sqlite", 400)
    with D1Server({DB_ID: db}) as server:
        with source(server, **paged()) as d1:
            result = dump_database(d1, tmp_path / "grove.sql.zst")
        pages = [r for r in server.requests if "json_array" in (r.body or {}).get("sql", "")]
    assert len(pages) > 4 and result.point_in_time and result.consistency == "bookmark unchanged"
    assert "-- Point in time: yes, proven" in header(tmp_path / "grove.sql.zst")


def test_a_write_during_a_paged_dump_is_seen_and_the_dump_read_again(tmp_path):
    db = small_database(tmp_path / "grove.sqlite", 400)
    with D1Server({DB_ID: db}) as server:
        pages = []

        def write_during_the_third_page(path, body):
            if "json_array" in (body or {}).get("sql", ""):
                pages.append(path)
                if len(pages) == 3:
                    server.execute(DB_ID, WRITE)

        server.before_request = write_during_the_third_page
        with source(server, **paged()) as d1:
            result = dump_database(d1, tmp_path / "grove.sql")
    assert result.attempts == 2 and result.point_in_time and result.consistency == "bookmark unchanged"
    assert result.table_rows["posts"] == 801  # the second read holds the row written during the first
    restore_dump(tmp_path / "grove.sql", tmp_path / "restored.sqlite")
    assert_same_database(db, tmp_path / "restored.sqlite", check_pragmas=False)


@pytest.mark.parametrize("retries", [2, 0])
def test_a_database_written_during_every_attempt_is_stored_marked_not_point_in_time(tmp_path, retries):
    db = small_database(tmp_path / "grove.sqlite", 400)
    with D1Server({DB_ID: db}) as server:
        server.before_request = lambda path, body: (
            server.execute(DB_ID, WRITE) if "json_array" in (body or {}).get("sql", "") else None
        )
        with source(server, **paged()) as d1:
            result = dump_database(d1, tmp_path / "grove.sql", consistency_retries=retries)
    assert result.attempts == retries + 1 and not result.point_in_time and result.consistency == "bookmark moved"
    assert result.bookmark < result.end_bookmark
    text = header(tmp_path / "grove.sql")
    assert (
        f"-- Point in time: NO (the database was written while it was read, in each of {retries + 1} attempt(s))"
        in text
    )
    assert (
        f"-- Time Travel bookmark: {result.bookmark}\n-- Time Travel bookmark at the end: {result.end_bookmark}" in text
    )
    assert f"wrangler d1 time-travel restore DB --bookmark={result.bookmark}" in text
    assert any("not one point in time" in w for w in result.warnings)
    assert list(tmp_path.glob(".*")) == []  # no spool or partial file left


def test_a_schema_change_before_the_batch_is_not_mistaken_for_one_point_in_time(tmp_path):
    db = small_database(tmp_path / "grove.sqlite")
    with D1Server({DB_ID: db}) as server:
        batches = []

        def add_a_table_before_the_first_batch(path, body):
            if "batch" in (body or {}):
                batches.append(body)
                if len(batches) == 1:
                    server.execute(
                        DB_ID,
                        "CREATE TABLE tags(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO tags(name) VALUES ('new')",
                    )

        server.before_request = add_a_table_before_the_first_batch
        with source(server) as d1:
            result = dump_database(d1, tmp_path / "grove.sql")
    # The first batch answered for a schema it was not built for: read again, the second is whole.
    assert result.attempts == 2 and result.consistency == "one batch" and result.table_rows["tags"] == 1
    restore_dump(tmp_path / "grove.sql", tmp_path / "restored.sqlite")
    assert_same_database(db, tmp_path / "restored.sqlite", check_pragmas=False)


def test_a_big_row_in_a_small_database_falls_back_on_the_bookmark(tmp_path):
    db = small_database(tmp_path / "grove.sqlite", 5)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE posts SET body = ? WHERE id = 1", ("x" * 400_000,))
    with D1Server({DB_ID: db}) as server:
        with source(server) as d1:
            result = dump_database(d1, tmp_path / "grove.sql")
    assert result.point_in_time and result.consistency == "bookmark unchanged"
    restore_dump(tmp_path / "grove.sql", tmp_path / "restored.sqlite")
    assert_same_database(db, tmp_path / "restored.sqlite", check_pragmas=False)


def test_a_batch_d1_refuses_falls_back_on_pages_and_the_bookmark(tmp_path):
    db = small_database(tmp_path / "grove.sqlite")
    with D1Server({DB_ID: db}) as server:

        def refuse_batches(path, body):
            if "batch" in (body or {}):
                raise D1Error("D1_ERROR: result too large: SQLITE_TOOBIG")

        server.before_request = refuse_batches
        with source(server) as d1:
            result = dump_database(d1, tmp_path / "grove.sql")
    assert result.point_in_time and result.consistency == "bookmark unchanged"
    restore_dump(tmp_path / "grove.sql", tmp_path / "restored.sqlite")
    assert_same_database(db, tmp_path / "restored.sqlite", check_pragmas=False)
