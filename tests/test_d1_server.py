"""Tests of the fake D1 REST API in tests/support/d1_server.py."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import struct
import subprocess
import threading
from pathlib import Path

import apsw
import httpx
import pytest
from support.d1_server import D1Server, Fault, js_number_json

DB_ID = "5f0c0f0e-1111-4222-8333-944444444444"
OTHER_ID = "7a1b2c3d-5555-4666-8777-988888888888"


def make_db(path: Path, sql: str = "") -> Path:
    conn = apsw.Connection(str(path))
    if sql:
        conn.execute(sql)
    conn.close()
    return path


def read(path: Path, sql: str) -> list[tuple]:
    conn = apsw.Connection(str(path))
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return make_db(
        tmp_path / "blog.sqlite",
        """
        CREATE TABLE author(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
        CREATE TABLE post(id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL REFERENCES author(id),
                          body TEXT, score REAL, data BLOB);
        INSERT INTO author VALUES (1, 'ada');
    """,
    )


@pytest.fixture
def server(db_path: Path, tmp_path: Path):
    other = make_db(tmp_path / "shop.sqlite", "CREATE TABLE item(id INTEGER PRIMARY KEY)")
    with D1Server({DB_ID: db_path, OTHER_ID: other}) as srv:
        yield srv


@pytest.fixture
def client(server: D1Server):
    with httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer good-token"}) as c:
        yield c


def query(
    client: httpx.Client, sql: str, params: list | None = None, kind: str = "query", db: str = DB_ID
) -> httpx.Response:
    body = {"sql": sql} if params is None else {"sql": sql, "params": params}
    return client.post(f"/accounts/acct/d1/database/{db}/{kind}", json=body)


def rows(client: httpx.Client, sql: str, params: list | None = None) -> list[dict]:
    response = query(client, sql, params)
    assert response.status_code == 200, response.text
    return response.json()["result"][-1]["results"]


def d1_error(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["success"] is False and body["result"] is None
    [error] = body["errors"]
    assert error["code"] == 7500
    return error["message"]


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, "0"),
        (-0.0, "0"),
        (1, "1"),
        (1.0, "1"),
        (-1.5, "-1.5"),
        (0.1, "0.1"),
        (0.1 + 0.2, "0.30000000000000004"),
        (123.456, "123.456"),
        (5e-324, "5e-324"),
        (1e-6, "0.000001"),
        (2.5e-5, "0.000025"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (1e20, "100000000000000000000"),
        (1.2345678901234568e20, "123456789012345680000"),
        (1e21, "1e+21"),
        (1.5e300, "1.5e+300"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (2**53, "9007199254740992"),
        (2**53 + 1, "9007199254740992"),
        (2**63 - 1, "9223372036854776000"),
        (-(2**63), "-9223372036854776000"),
        (float("inf"), "null"),
        (float("-inf"), "null"),
        (float("nan"), "null"),
    ],
)
def test_js_number_json_prints_numbers_as_javascript_does(value, expected):
    assert js_number_json(value) == expected


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_js_number_json_matches_node_on_random_doubles_and_int64s():
    rng = random.Random(20240601)
    doubles = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(3000)]
    doubles = [d for d in doubles if d == d and abs(d) != float("inf")]
    doubles += [rng.uniform(-1e25, 1e25) for _ in range(500)] + [rng.uniform(-1e-5, 1e-5) for _ in range(500)]
    ints = [rng.randint(-(2**63), 2**63 - 1) for _ in range(1000)]
    script = (
        "const [d, i] = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify([d.map(x => JSON.stringify(x)),"
        " i.map(x => JSON.stringify(Number(BigInt(x))))]))"
    )
    out = subprocess.run(
        ["node", "-e", script],
        input=json.dumps([doubles, [str(i) for i in ints]]),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    node_doubles, node_ints = json.loads(out)
    assert [js_number_json(d) for d in doubles] == node_doubles
    assert [js_number_json(i) for i in ints] == node_ints


# ----------------------------------------------------------------------------- query and raw


def test_values_come_back_as_d1_serializes_them(client, db_path):
    response = query(
        client,
        """
        INSERT INTO post VALUES (1, 1, 'a' || char(0) || 'b', 1e999, x'00ff10');
        INSERT INTO post VALUES (9223372036854775807, 1, NULL, 0.1, NULL);
        INSERT INTO post VALUES (9007199254740993, 1, 'ünï', 1e21, zeroblob(0));
        SELECT id, body, score, data FROM post ORDER BY rowid""",
    )
    assert response.status_code == 200, response.text
    text = response.text
    assert "9223372036854776000" in text and "9007199254740992" in text and "1e+21" in text
    assert response.json()["result"][3]["results"] == [
        {"id": 1, "body": "a\x00b", "score": None, "data": [0, 255, 16]},
        {"id": 9007199254740992, "body": "ünï", "score": 1e21, "data": []},
        {"id": 9223372036854776000, "body": None, "score": 0.1, "data": None},
    ]
    # The database itself keeps the exact values: only the JSON answer is rounded.
    assert read(db_path, "SELECT max(id) FROM post") == [(2**63 - 1,)]


def test_each_statement_gets_its_own_result_and_meta(client):
    response = query(client, "INSERT INTO author(name) VALUES ('bo'), ('cy'); SELECT name FROM author ORDER BY id")
    body = response.json()
    assert response.status_code == 200 and body["success"] is True
    assert body["errors"] == [] and body["messages"] == []
    insert, select = body["result"]
    assert insert["success"] is True and insert["results"] == []
    assert insert["meta"]["changes"] == 2 and insert["meta"]["last_row_id"] == 3
    assert insert["meta"]["changed_db"] is True and insert["meta"]["rows_written"] == 2
    assert select["results"] == [{"name": "ada"}, {"name": "bo"}, {"name": "cy"}]
    meta = select["meta"]
    assert meta["changed_db"] is False and meta["changes"] == 0 and meta["rows_read"] >= 3
    assert meta["served_by_primary"] is True and meta["size_after"] > 0
    assert set(meta) >= {"duration", "served_by", "served_by_region", "timings"}


def test_raw_returns_columns_and_rows(client):
    response = query(client, "SELECT 1 AS a, 'x' AS a, x'01' AS b", kind="raw")
    assert response.status_code == 200, response.text
    [result] = response.json()["result"]
    assert result["results"] == {"columns": ["a", "a", "b"], "rows": [[1, "x", [1]]]}
    assert result["meta"]["rows_read"] == 1
    # /query builds a JS object: the repeated name keeps the last value.
    assert rows(client, "SELECT 1 AS a, 'x' AS a") == [{"a": "x"}]


def test_params_bind_to_the_last_statement_only(client):
    assert rows(client, "SELECT ? AS t, ? AS n, ? AS b, ? AS z", ["x", 2.0, True, None]) == [
        {"t": "x", "n": 2, "b": 1, "z": None}
    ]
    assert rows(client, "SELECT typeof(?) AS t", [2.0]) == [{"t": "integer"}]
    assert rows(client, "SELECT 1; SELECT ? AS v", [7]) == [{"v": 7}]
    assert d1_error(query(client, "SELECT ?; SELECT 1", [7])).startswith(
        "When executing multiple SQL statements in a single call, only the last statement"
    )
    assert d1_error(query(client, "SELECT ?", [1, 2])) == "Wrong number of parameter bindings for SQL query."


def test_a_failing_batch_changes_nothing(client, db_path):
    message = d1_error(query(client, "INSERT INTO author(name) VALUES ('bo'); SELECT * FROM nosuch"))
    assert message == "no such table: nosuch: SQLITE_ERROR"
    assert read(db_path, "SELECT count(*) FROM author") == [(1,)]


def test_foreign_keys_are_enforced(client, db_path):
    message = d1_error(query(client, "INSERT INTO post(id, author_id) VALUES (1, 42)"))
    assert message == "FOREIGN KEY constraint failed: SQLITE_CONSTRAINT"
    # Turning them off inside the request's transaction does nothing, as on D1.
    d1_error(query(client, "PRAGMA foreign_keys = OFF; INSERT INTO post(id, author_id) VALUES (1, 42)"))
    assert rows(
        client,
        "PRAGMA defer_foreign_keys = ON; "
        "INSERT INTO post(id, author_id) VALUES (1, 2); "
        "INSERT INTO author VALUES (2, 'bo'); SELECT count(*) AS n FROM post",
    ) == [{"n": 1}]


def test_sql_runs_on_a_current_sqlite(client):
    # unhex() is SQLite 3.41+, the JSON -> operator 3.38+: not in Python's sqlite3 here (3.40).
    assert rows(client, "SELECT unhex('00ff') AS b, '{\"a\": 5}' ->> '$.a' AS a") == [{"b": [0, 255], "a": 5}]


# ----------------------------------------------------------------------------- D1's limits


def test_a_statement_over_100_000_bytes_is_refused(client):
    fits = "SELECT '" + "x" * (100_000 - len("SELECT ''")) + "'"
    assert len(fits.encode()) == 100_000
    [[value]] = query(client, fits, kind="raw").json()["result"][0]["results"]["rows"]
    assert len(value) == 100_000 - len("SELECT ''")
    assert d1_error(query(client, fits.replace("x", "é", 1))) == "statement too long: SQLITE_TOOBIG"


def test_parameters_columns_and_values_are_limited(client, db_path):
    ok = query(client, "SELECT " + ",".join(["?"] * 100), list(range(100)), kind="raw")
    assert ok.json()["result"][0]["results"]["rows"] == [list(range(100))]
    assert d1_error(query(client, "SELECT " + ",".join(["?"] * 101), list(range(101)))).startswith(
        "too many SQL variables"
    )
    assert d1_error(query(client, "SELECT " + ",".join(["1"] * 101))) == "too many columns in result set: SQLITE_ERROR"
    assert len(rows(client, "SELECT zeroblob(2000000) AS b")[0]["b"]) == 2_000_000
    assert d1_error(query(client, "SELECT zeroblob(2000001)")) == "string or blob too big: SQLITE_TOOBIG"
    assert (
        d1_error(query(client, "SELECT zeroblob(1500000), zeroblob(1500000)"))
        == "string or blob too big: SQLITE_TOOBIG"
    )


@pytest.mark.parametrize(
    "sql",
    [
        "BEGIN",
        "BEGIN TRANSACTION; INSERT INTO author(name) VALUES ('x'); COMMIT",
        "SAVEPOINT a",
        "COMMIT",
        "ROLLBACK",
    ],
)
def test_transaction_control_is_refused(client, db_path, sql):
    assert d1_error(query(client, sql)).startswith(
        "To execute a transaction, please use the state.storage.transaction() or "
        "state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT"
    )
    assert read(db_path, "SELECT count(*) FROM author") == [(1,)]


def test_writable_schema_and_cf_tables_are_refused(client, db_path):
    make_db(db_path, "CREATE TABLE _cf_KV(key TEXT PRIMARY KEY, value BLOB)")
    assert d1_error(query(client, "PRAGMA writable_schema = ON")) == "not authorized: SQLITE_AUTH"
    assert d1_error(query(client, "SELECT * FROM _cf_KV")) == "access to _cf_KV.key is prohibited: SQLITE_AUTH"
    assert d1_error(query(client, "DROP TABLE _cf_KV")) == "not authorized: SQLITE_AUTH"
    assert rows(client, "SELECT name FROM sqlite_schema WHERE name LIKE '\\_cf\\_%' ESCAPE '\\'") == [
        {"name": "_cf_KV"}
    ]


# ----------------------------------------------------------------------------- databases, auth


def test_list_and_get_databases(client, server):
    page = client.get("/accounts/acct/d1/database", params={"page": 1, "per_page": 10}).json()
    assert page["result_info"] == {"page": 1, "per_page": 10, "count": 2, "total_count": 2}
    [_, shop] = page["result"]
    assert client.get("/accounts/acct/d1/database", params={"page": 2, "per_page": 10}).json()["result"] == []
    for bad in ({"per_page": 9}, {"per_page": 10_001}, {"page": 0}, {"page": "x"}):
        refused = client.get("/accounts/acct/d1/database", params=bad)
        assert refused.status_code == 400 and refused.json()["errors"][0]["code"] == 7400
    assert shop["uuid"] == OTHER_ID and shop["name"] == "shop" and shop["version"] == "production"
    info = client.get(f"/accounts/acct/d1/database/{DB_ID}").json()["result"]
    assert info["uuid"] == DB_ID and info["name"] == "blog" and info["num_tables"] == 2
    assert info["file_size"] > 0 and info["created_at"].endswith("Z")


@pytest.mark.parametrize(
    "headers, status, code",
    [
        ({}, 400, 10000),
        ({"Authorization": "Bearer bad-token"}, 401, 10000),
        ({"Authorization": "good-token"}, 400, 6003),
    ],
)
def test_authentication_errors(server, headers, status, code):
    response = httpx.post(
        f"{server.base_url}/accounts/acct/d1/database/{DB_ID}/query", json={"sql": "SELECT 1"}, headers=headers
    )
    assert response.status_code == status
    assert response.json()["errors"][0]["code"] == code


def test_unknown_account_database_and_route(client):
    assert client.get("/accounts/other/d1/database").json()["errors"][0]["code"] == 7403
    response = query(client, "SELECT 1", db="nope")
    assert response.status_code == 404
    assert response.json()["errors"] == [{"code": 7404, "message": "The database nope could not be found"}]
    assert client.get("/accounts/acct/workers/scripts").status_code == 404


# ----------------------------------------------------------------------------- faults


def test_a_429_fault_is_answered_once_with_retry_after(client, server):
    server.inject(Fault.status(429, retry_after=7))
    limited = query(client, "SELECT 1")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert limited.json()["errors"][0]["code"] == 971
    assert query(client, "SELECT 1").status_code == 200
    assert [r.status for r in server.requests] == [429, 200]
    assert server.requests[0].body == {"sql": "SELECT 1"}


def test_faults_can_target_a_path_and_queue_in_order(client, server):
    server.inject(Fault.status(500, path="/query"), Fault.status(502), Fault.status(503))
    assert client.get(f"/accounts/acct/d1/database/{DB_ID}").status_code == 502
    assert query(client, "SELECT 1").status_code == 500
    gateway = query(client, "SELECT 1")
    assert gateway.status_code == 503 and "cloudflare" in gateway.text
    assert gateway.headers["Content-Type"] == "text/html"
    assert query(client, "SELECT 1").status_code == 200


def test_custom_fault_body(client, server):
    body = {"success": False, "errors": [{"code": 7429, "message": "Too many"}], "messages": [], "result": None}
    server.inject(Fault.status(429, retry_after=0.5, body=body))
    response = query(client, "SELECT 1")
    assert response.json() == body and response.headers["Retry-After"] == "0.5"


def test_disconnect_drops_the_connection_without_an_answer(client, server):
    server.inject(Fault.disconnect())
    with pytest.raises(httpx.RemoteProtocolError):
        query(client, "SELECT 1")
    assert server.requests[-1].status is None
    assert query(client, "SELECT 1").status_code == 200


def test_delay_makes_the_client_time_out_then_answers_normally(client, server):
    server.inject(Fault.delay(30))
    with pytest.raises(httpx.ReadTimeout):
        client.post(f"/accounts/acct/d1/database/{DB_ID}/query", json={"sql": "SELECT 1"}, timeout=0.2)
    server.inject(Fault.delay(0.01))
    assert rows(client, "SELECT 2 AS v") == [{"v": 2}]


def test_fail_always_until_cleared(client, server):
    server.fail_always(503)
    assert [query(client, "SELECT 1").status_code for _ in range(3)] == [503, 503, 503]
    server.clear_faults()
    assert query(client, "SELECT 1").status_code == 200


def test_rate_limit_answers_429_with_retry_after(db_path):
    now = [1000.0]
    with (
        D1Server({DB_ID: db_path}, rate_limit=(3, 300), clock=lambda: now[0]) as server,
        httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer good-token"}) as client,
    ):
        assert [query(client, "SELECT 1").status_code for _ in range(3)] == [200, 200, 200]
        now[0] += 100
        limited = query(client, "SELECT 1")
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "200"
        now[0] += 200
        assert query(client, "SELECT 1").status_code == 200


# ----------------------------------------------------------------------------- concurrency


def test_concurrent_requests_are_each_one_transaction(client, server, db_path):
    make_db(db_path, "CREATE TABLE counter(n INTEGER); INSERT INTO counter VALUES (0)")
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(5):
                response = query(client, "UPDATE counter SET n = n + 1; SELECT n FROM counter")
                assert response.status_code == 200, response.text
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert read(db_path, "SELECT n FROM counter") == [(40,)]
    assert len(server.requests) == 40


# ----------------------------------------------------------------------------- import


def run_import(client: httpx.Client, sql: bytes) -> dict:
    etag = hashlib.md5(sql).hexdigest()
    url = f"/accounts/acct/d1/database/{DB_ID}/import"
    init = client.post(url, json={"action": "init", "etag": etag}).json()["result"]
    if "upload_url" in init:
        assert init["filename"].endswith(".sql")
        upload = httpx.put(init["upload_url"], content=sql)  # presigned: no Authorization
        assert upload.status_code == 200 and upload.headers["ETag"] == f'"{etag}"'
        state = client.post(url, json={"action": "ingest", "etag": etag, "filename": init["filename"]}).json()["result"]
    else:
        state = init
    assert state["success"] is True and state["type"] == "import"
    while state["status"] == "active":
        state = client.post(url, json={"action": "poll", "current_bookmark": state["at_bookmark"]}).json()["result"]
    return state


def test_import_runs_a_sql_file(client, db_path):
    sql = (
        b"CREATE TABLE tag(id INTEGER PRIMARY KEY, name TEXT);\n"
        b"INSERT INTO tag VALUES (1, 'x'), (2, 'y');\n"
        b"CREATE TRIGGER t AFTER INSERT ON tag BEGIN SELECT 1; END;\n"
        b"INSERT INTO post(id, author_id, body) VALUES (1, 1, 'hello;world');\n"
    )
    state = run_import(client, sql)
    assert state["status"] == "complete", state
    assert state["result"]["num_queries"] == 4
    assert state["result"]["final_bookmark"] != state["at_bookmark"]
    assert state["result"]["meta"]["rows_written"] == 3
    assert read(db_path, "SELECT count(*) FROM tag") == [(2,)]
    # The same file again: init finds it uploaded and starts ingesting at once.
    again = run_import(client, sql)
    assert again["status"] == "error" and "table tag already exists" in again["error"]


@pytest.mark.parametrize(
    "bad, message",
    [
        (b"BEGIN TRANSACTION;", "To execute a transaction"),
        (b"PRAGMA writable_schema = 1;", "not authorized: SQLITE_AUTH"),
        (b"CREATE TABLE _cf_METADATA(key);", "not authorized: SQLITE_AUTH"),
        (b"INSERT INTO author(name) VALUES ('" + b"x" * 100_000 + b"');", "statement too long"),
        (b"INSERT INTO post(id, author_id) VALUES (5, 99);", "FOREIGN KEY constraint failed"),
    ],
)
def test_a_failed_import_rolls_everything_back(client, db_path, bad, message):
    state = run_import(
        client, b"INSERT INTO author(name) VALUES ('bo');\n" + bad + b"\nINSERT INTO author(name) VALUES ('cy');\n"
    )
    assert state["status"] == "error"
    assert message in state["error"] and state["errors"] == [state["error"]]
    assert read(db_path, "SELECT name FROM author") == [("ada",)]


def test_import_polls_answer_active_first_when_asked(db_path):
    with (
        D1Server({DB_ID: db_path}, import_active_polls=2) as server,
        httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer good-token"}) as client,
    ):
        state = run_import(client, b"INSERT INTO author(name) VALUES ('bo');")
        assert state["status"] == "complete"
        polls = [r for r in server.requests if isinstance(r.body, dict) and r.body.get("action") == "poll"]
        assert len(polls) == 3


def test_import_refuses_an_upload_that_does_not_match_its_etag(client):
    url = f"/accounts/acct/d1/database/{DB_ID}/import"
    etag = hashlib.md5(b"SELECT 1;").hexdigest()
    init = client.post(url, json={"action": "init", "etag": etag}).json()["result"]
    httpx.put(init["upload_url"], content=b"SELECT 2;")
    result = client.post(url, json={"action": "ingest", "etag": etag, "filename": init["filename"]}).json()["result"]
    assert result["success"] is False and "etag" in result["error"]


def test_responses_are_plain_json(client):
    # What the client parses is ordinary JSON (no NaN/Infinity tokens).
    response = query(client, "SELECT 1e999 AS inf, -1e999 AS ninf")
    assert json.loads(response.text, parse_constant=lambda c: pytest.fail(c))["result"][0]["results"] == [
        {"inf": None, "ninf": None}
    ]


def test_a_chunked_upload_is_refused_for_want_of_a_length(client):
    url = f"/accounts/acct/d1/database/{DB_ID}/import"
    init = client.post(url, json={"action": "init", "etag": "0" * 32}).json()["result"]
    response = httpx.put(init["upload_url"], content=iter([b"SELECT 1;"]))
    assert response.status_code == 411


@pytest.mark.parametrize(
    "limit, make, message",
    [
        # n terms of `+` make a tree n-1 deep under the SELECT's own level: 100 terms are 100 deep
        (
            100,
            lambda n: "SELECT " + "+".join(["1"] * n),
            "Expression tree is too large (maximum depth 100): SQLITE_ERROR",
        ),
        (5, lambda n: " UNION ALL ".join(["SELECT 1"] * n), "too many terms in compound SELECT: SQLITE_ERROR"),
        (50, lambda n: "SELECT 'a' LIKE '" + "a" * n + "'", "LIKE or GLOB pattern too complex: SQLITE_ERROR"),
        (50, lambda n: "SELECT 'a' GLOB '" + "a" * n + "'", "LIKE or GLOB pattern too complex: SQLITE_ERROR"),
        (
            32,
            lambda n: "SELECT json_array(" + ",".join(["1"] * n) + ")",
            "too many arguments on function json_array",
        ),  # local D1 adds " at offset 7"
    ],
    ids=["expression depth", "compound select", "like pattern", "glob pattern", "function arguments"],
)
def test_sqlite_limits_are_d1s(client, limit, make, message):
    """One step past each limit is refused as D1 refuses it (messages measured on local D1); the limit passes."""
    passing = query(client, make(limit))
    assert passing.status_code == 200, passing.text
    assert d1_error(query(client, make(limit + 1))).startswith(message)


def test_a_query_past_its_time_and_a_result_past_its_size_are_refused(db_path):
    slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    with (
        D1Server({DB_ID: db_path}, query_seconds=0.2, max_result_bytes=10_000) as server,
        httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer good-token"}) as c,
    ):
        assert d1_error(query(c, slow)) == "D1 DB exceeded its query time limit of 0.2 s: SQLITE_INTERRUPT"
        assert query(c, "SELECT zeroblob(9000)").status_code == 200
        assert d1_error(query(c, "SELECT zeroblob(6000) UNION ALL SELECT zeroblob(6001)")).startswith(
            "result too large"
        )


# --------------------------------------------------------------------------- Time Travel and batches


def bookmark(client: httpx.Client, db: str = DB_ID, **params) -> str:
    response = client.get(f"/accounts/acct/d1/database/{db}/time_travel/bookmark", params=params)
    assert response.status_code == 200, response.text
    return response.json()["result"]["bookmark"]


def test_the_bookmark_moves_on_every_write_and_only_then(client: httpx.Client):
    first = bookmark(client)
    rows(client, "SELECT * FROM author")
    query(client, "INSERT INTO author VALUES (1, 'dup')")  # refused: nothing written
    assert bookmark(client) == first
    rows(client, "INSERT INTO author VALUES (2, 'grace')")
    second = bookmark(client)
    assert second > first  # bookmarks sort oldest to newest
    assert bookmark(client, db=OTHER_ID) == first  # another database has its own
    assert bookmark(client, timestamp="2000-01-01T00:00:00Z") == first
    assert bookmark(client, timestamp="2999-01-01T00:00:00Z") == second


def test_a_batch_is_one_transaction_with_one_result_per_statement(client: httpx.Client, db_path: Path):
    body = {
        "batch": [
            {"sql": "SELECT count(*) AS n FROM author"},
            {"sql": "SELECT name FROM author WHERE id = ?", "params": [1]},
        ]
    }
    response = client.post(f"/accounts/acct/d1/database/{DB_ID}/raw", json=body)
    assert [r["results"]["rows"] for r in response.json()["result"]] == [[[1]], [["ada"]]]
    failing = {"batch": [{"sql": "INSERT INTO author VALUES (5, 'eve')"}, {"sql": "SELECT * FROM nowhere"}]}
    response = client.post(f"/accounts/acct/d1/database/{DB_ID}/query", json=failing)
    assert response.status_code == 400 and "no such table: nowhere" in response.text
    assert read(db_path, "SELECT count(*) FROM author") == [(1,)]  # the INSERT was rolled back


def test_a_hook_between_requests_can_write(server: D1Server, client: httpx.Client):
    before = bookmark(client)
    server.before_request = lambda path, body: server.execute(DB_ID, "INSERT INTO author(name) VALUES ('hook')")
    assert rows(client, "SELECT count(*) AS n FROM author") == [{"n": 2}]
    server.before_request = None
    assert bookmark(client) > before


def test_time_travel_refused_and_a_token_without_d1_permission(db_path: Path):
    with D1Server({DB_ID: db_path}, time_travel=False, read_less_tokens=("no-d1-token",)) as server:
        with httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer good-token"}) as c:
            response = c.get(f"/accounts/acct/d1/database/{DB_ID}/time_travel/bookmark")
            assert response.status_code == 400 and "Time Travel is not available" in response.text
        with httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer no-d1-token"}) as c:
            response = query(c, "SELECT 1")
            assert response.status_code == 403 and response.json()["errors"][0]["code"] == 10000
