"""The REST path against a loopback server that answers like D1 (rounded big integers, BLOBs as byte
arrays, D1's limits), with injected rate limits, server errors, dropped connections and a bad token."""

import sqlite3

import pytest
from support.compare import assert_same_database
from support.d1_server import D1Server, Fault
from support.fake_clock import FakeClock

from patina_assets.engine import (
    AuthenticationFailed,
    D1Source,
    DatabaseNotFound,
    DeadlineExceeded,
    RateLimited,
    SourceError,
    SourceUnavailable,
    dump_database,
    restore_dump,
)
from patina_assets.engine.api_budget import ApiBudget

DB_ID = "0f5c7c7e-4b1e-4f4a-9d55-1b2c3d4e5f60"


def statements(requests) -> list[str]:
    """Every SQL statement the requests sent: a query's `sql`, or each of a batch's."""
    found = []
    for r in requests:
        if isinstance(r.body, dict):
            found += [q["sql"] for q in r.body.get("batch", [r.body]) if isinstance(q, dict) and "sql" in q]
    return found


@pytest.fixture
def awkward_values_db(tmp_path):
    path = tmp_path / "values.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE v(id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, anything);
        CREATE TABLE pairs(a TEXT, b INTEGER, note TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID;
        CREATE TABLE plain(x);
        """
    )
    values = [
        (2**63 - 1, 0.1, "plain", b"\x00\x01\xff", None),
        (-(2**63), float("inf"), "nul\x00inside", b"", ""),
        (2**53 + 1, float("-inf"), "line\nbreak\r\n", None, 2**53 + 1),
        (9007199254740993, 5e-324, "emoji 🎉", b"x" * 3, 1.5),
        (-1, 389.1076970815528, "x" * 300_000, b"\xfe" * 200_000, b"blob"),
        (0, -0.0, "", bytes(range(256)), "text"),
    ]
    db.executemany("INSERT INTO v(i, r, t, b, anything) VALUES (?,?,?,?,?)", values)
    db.execute("INSERT INTO v(id, i) VALUES (9223372036854775807, 1)")
    db.executemany("INSERT INTO pairs VALUES (?,?,?)", [(f"k{i % 7}", i, "n" * (i % 50)) for i in range(3000)])
    db.executemany("INSERT INTO plain(rowid, x) VALUES (?, ?)", [(2**62 + i * 3, i) for i in range(500)])
    db.commit()
    db.close()
    return path


def d1_source(server, clock: FakeClock | None = None, **kw) -> D1Source:
    """A D1Source on `server`; with `clock`, its waits (backoff, API budget) only move that clock on."""
    kw.setdefault("backoff_seconds", 0.001)
    token = kw.pop("token", "good-token")
    if clock is not None:
        kw.update(sleep=clock.sleep, budget=ApiBudget(server.base_url, token, clock=clock.time, sleep=clock.sleep))
    return D1Source("acct", DB_ID, token=token, api_url=server.base_url, **kw)


def dump_and_restore(server, source_path, tmp_path, **kw):
    out = tmp_path / "d1.sql"
    with d1_source(server, **kw) as source:
        result = dump_database(source, out, database="values")
    restore_dump(out, tmp_path / "restored.sqlite")
    assert_same_database(source_path, tmp_path / "restored.sqlite", check_pragmas=False)
    return result


def test_rest_dump_is_exact(awkward_values_db, tmp_path):
    with D1Server({DB_ID: awkward_values_db}) as server:
        result = dump_and_restore(server, awkward_values_db, tmp_path)
    assert result.point_in_time is True and result.bookmark == result.end_bookmark
    assert result.table_rows == {"v": 7, "pairs": 3000, "plain": 500}
    text = (tmp_path / "d1.sql").read_text()
    assert "-- Point in time: yes" in text and f"-- Requests: {result.requests}" in text
    assert f"-- Time Travel bookmark: {result.bookmark}" in text


def test_pages_follow_the_byte_budget(awkward_values_db, tmp_path):
    with D1Server({DB_ID: awkward_values_db}) as server:
        result = dump_and_restore(server, awkward_values_db, tmp_path, page_bytes=40_000)
        requests = server.requests
    # Every statement stays under D1's limits, and pages stay near the budget (one row may pass it).
    assert all(len(sql.encode()) < 100_000 for sql in statements(requests))
    assert result.requests == len(requests)  # the queries, two bookmarks and the database's size
    assert result.requests >= result.sql_bytes // 40_000 // 2


def test_retries_429_500_and_dropped_connections(awkward_values_db, tmp_path):
    clock = FakeClock()
    with D1Server({DB_ID: awkward_values_db}) as server:
        server.inject(
            Fault.status(429, retry_after=3),
            Fault.status(500),
            Fault.disconnect(),
            Fault.status(502),
            Fault.status(503),
        )
        dump_and_restore(server, awkward_values_db, tmp_path, clock=clock)
        statuses = [r.status for r in server.requests[:6]]
    waits = clock.sleeps
    assert statuses[:5] == [429, 500, None, 502, 503]
    assert waits[0] == pytest.approx(3)  # Retry-After honoured
    assert waits[1:5] == sorted(waits[1:5])  # exponential backoff grows


def test_slow_answer_times_out_and_is_retried(awkward_values_db, tmp_path):
    with D1Server({DB_ID: awkward_values_db}) as server:
        server.inject(Fault.delay(5))
        dump_and_restore(server, awkward_values_db, tmp_path, request_timeout=0.5)


def test_bad_token_fails_at_once_and_leaves_no_file(awkward_values_db, tmp_path):
    out = tmp_path / "nothing.sql.zst"
    with D1Server({DB_ID: awkward_values_db}) as server:
        with pytest.raises(AuthenticationFailed) as err:
            with d1_source(server, token="stolen-or-expired") as source:
                dump_database(source, out)
        assert len(server.requests) == 1  # no retries
    assert "stolen-or-expired" not in str(err.value)
    assert list(tmp_path.glob("nothing*")) == [] and list(tmp_path.glob(".nothing*")) == []


def test_unknown_database(awkward_values_db, tmp_path):
    with D1Server({"another-id": awkward_values_db}) as server:
        with pytest.raises(DatabaseNotFound, match="account id and database id"):
            with d1_source(server) as source:
                dump_database(source, tmp_path / "x.sql")


def test_server_down_gives_up_after_retries(awkward_values_db, tmp_path):
    with D1Server({DB_ID: awkward_values_db}) as server:
        server.fail_always(500)
        with pytest.raises(SourceUnavailable, match="gave up after 4 attempts"):
            with d1_source(server, max_attempts=4) as source:
                dump_database(source, tmp_path / "x.sql")
        assert len(server.requests) == 4
    assert list(tmp_path.glob("*x.sql*")) == []


def test_rate_limit_that_does_not_pass_is_reported_as_such(awkward_values_db, tmp_path):
    with D1Server({DB_ID: awkward_values_db}) as server:
        server.fail_always(429, retry_after=60)
        clock = FakeClock()
        with pytest.raises(RateLimited, match="answered 429 .* for 900s"):
            with d1_source(server, clock) as source:
                dump_database(source, tmp_path / "x.sql")
    assert sum(clock.sleeps) == pytest.approx(900) and len(server.requests) == 16  # one a minute, 15 minutes


def test_a_failure_mid_dump_leaves_no_file(awkward_values_db, tmp_path):
    with D1Server({DB_ID: awkward_values_db}) as server:
        with d1_source(server, page_bytes=20_000, max_attempts=2) as source:

            def fail_later(table, rows, sql_bytes):
                if rows > 1000:
                    server.fail_always(500)

            with pytest.raises(SourceUnavailable):
                dump_database(source, tmp_path / "half.sql.gz", progress=fail_later)
    assert list(tmp_path.glob("*half*")) == []


def test_deadline(awkward_values_db, tmp_path):
    with D1Server({DB_ID: awkward_values_db}) as server:
        server.fail_always(503)
        with pytest.raises(DeadlineExceeded):
            with d1_source(server, deadline_seconds=0.3, backoff_seconds=0.2) as source:
                dump_database(source, tmp_path / "x.sql")


def test_a_d1_without_math_functions_fails_loudly_on_reals_and_writes_nothing(awkward_values_db, tmp_path):
    """log2/pow/floor are what carry a REAL exactly; without them a REAL is refused, never rounded."""
    with D1Server({DB_ID: awkward_values_db}, refused_functions={"log2"}) as server:
        with d1_source(server) as source, pytest.raises(SourceError) as refused:
            dump_database(source, tmp_path / "d1.sql")
    assert "table 'v'" in str(refused.value) and "math functions" in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["values.sqlite"]  # no dump, not even in part


def test_each_row_is_read_once(awkward_values_db, tmp_path):
    """D1 bills rows read: the page queries read each row once (no window functions), and rows much
    bigger than their page's average are fetched by key, once more."""
    with D1Server({DB_ID: awkward_values_db}) as server:
        with d1_source(server, page_bytes=40_000) as source:
            result = dump_database(source, tmp_path / "d1.sql")
            pages = [sql for sql in statements(server.requests) if "LIMIT" in sql]
    assert not any(" OVER " in sql for sql in pages)
    assert source.rows_read <= 1.1 * result.rows + len(server.requests) + 10


def test_many_tables_with_long_names_are_listed_in_statements_under_100_kb(tmp_path):
    path = tmp_path / "long_names.sqlite"
    db = sqlite3.connect(path)
    names = [f"table {i} " + "with a long name, 'quoted' and [bracketed]. " * 20 for i in range(150)]  # ~900 bytes
    for name in names:
        db.execute(f'CREATE TABLE "{name}"(id INTEGER PRIMARY KEY, "{name[:60]}" TEXT)')
        db.execute(f'INSERT INTO "{name}" VALUES (1, ?)', (name,))
    db.commit()
    db.close()
    with D1Server({DB_ID: path}) as server:
        result = dump_and_restore(server, path, tmp_path)
        assert max(len(sql.encode()) for sql in statements(server.requests)) < 100_000
    assert len(result.table_rows) == 150
