"""The two D1 REST stand-ins answer alike: the loopback server (tests/support/d1_server.py, apsw and an
imitation of JavaScript) against workerd's D1 behind `wrangler dev` (tests/support/rest_worker.py), for
values that JavaScript changes and for queries past D1's limits."""

import httpx
import pytest
from support.d1_server import D1Server

pytestmark = pytest.mark.wrangler

DB = "awkward-integers"


@pytest.fixture(scope="module")
def clients(workerd_d1, awkward_corpus):
    headers = {"Authorization": f"Bearer {workerd_d1.token}"}
    with (
        D1Server({DB: awkward_corpus["integers"]}, token=workerd_d1.token) as loopback,
        httpx.Client(base_url=loopback.base_url, headers=headers) as fake,
        httpx.Client(base_url=workerd_d1.base_url, headers=headers) as workerd,
    ):
        yield fake, workerd


def post(client, sql, kind="raw", db=DB):
    response = client.post(f"/accounts/acct/d1/database/{db}/{kind}", json={"sql": sql})
    body = response.json()
    if body["success"]:
        return response.status_code, [r["results"] for r in body["result"]]
    return response.status_code, [(e["code"], e["message"]) for e in body["errors"]]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 9007199254740993 AS big, -9223372036854775808 AS min, 0.1 AS r, -0.0 AS nz, 9e999 AS inf",
        "SELECT X'00ff10' AS b, '' AS e, NULL AS n, 'émoji 🎉' AS t, 1e21 AS e21, 1e-7 AS small",
        "SELECT typeof(9007199254740993) AS t, CAST(9007199254740993 AS TEXT) AS exact",
        "SELECT 1 AS a, 2 AS a",
    ],
)
@pytest.mark.parametrize("kind", ["raw", "query"])
def test_values_pass_through_javascript_alike(clients, sql, kind):
    fake, workerd = clients
    assert post(fake, sql, kind) == post(workerd, sql, kind)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + "+".join(["1"] * 101),
        " UNION ALL ".join(["SELECT 1"] * 6),
        "SELECT 'a' LIKE '" + "a" * 51 + "'",
        "SELECT " + ",".join(["1"] * 101),
        "SELECT '" + "x" * 100_000 + "'",
        "SELECT nope FROM nowhere",
    ],
)
def test_queries_past_d1s_limits_are_refused_alike(clients, sql):
    fake, workerd = clients
    answer = post(workerd, sql)
    assert answer[0] == 400 and post(fake, sql) == answer


def test_the_worker_checks_the_token_account_and_database(workerd_d1):
    with httpx.Client(base_url=workerd_d1.base_url) as c:
        path = f"/accounts/acct/d1/database/{DB}/raw"
        assert c.post(path, json={"sql": "SELECT 1"}).status_code == 400
        assert c.post(path, json={"sql": "SELECT 1"}, headers={"Authorization": "Bearer wrong"}).json()["errors"] == [
            {"code": 10000, "message": "Authentication error"}
        ]
        good = {"Authorization": f"Bearer {workerd_d1.token}"}
        assert c.post(path.replace("acct", "other"), json={"sql": "SELECT 1"}, headers=good).status_code == 403
        missing = c.post(path.replace(DB, "nope"), json={"sql": "SELECT 1"}, headers=good)
        assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == 7404


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 AS a; SELECT 2 AS b",
        "SELECT 'a;b' AS \"c;d\", [e;f] FROM (SELECT 1 AS [e;f]) -- x;y\n; /* ; */ SELECT count(*) AS n FROM int_pk",
        "SELECT CASE WHEN 1 THEN 'END;' END AS e; SELECT ?1 AS missing",
    ],
)
def test_several_statements_are_answered_one_result_each(clients, sql):
    fake, workerd = clients
    answer = post(workerd, sql)
    assert post(fake, sql) == answer and (answer[0] == 400 or len(answer[1]) == 2)


def test_a_failing_statement_rolls_back_the_whole_call_alike(clients):
    fake, workerd = clients
    count = "SELECT count(*) AS n FROM int_pk"
    for client in (fake, workerd):
        before = post(client, count)
        status, errors = post(client, "INSERT INTO int_pk(id, label) VALUES (12345, 'x'); SELECT nope")
        assert status == 400 and errors[0][1].startswith("no such column: nope")
        assert post(client, count) == before
