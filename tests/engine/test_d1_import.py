"""Restoring dumps into D1 through its import API (init, upload with MD5 ETag, ingest, poll), against the
loopback D1 server, which runs the SQL in a real SQLite file."""

import hashlib
import sqlite3

import httpx
import pytest
from support.compare import assert_same_database
from support.configs import empty_database, small_database
from support.d1_server import D1Server, Fault
from support.fake_clock import FakeClock

from patina_assets.engine.d1_import import (
    D1Importer,
    D1ImportError,
    D1ImportUnavailable,
    import_dump,
    plain_sql,
)
from patina_assets.engine.restore import DumpReader

DB_ID = "45eae4c7-8ae7-4078-9218-8e1677a4360f"
TOKEN = "good-token-0123456789"
NO_WAIT = {"sleep": lambda seconds: None}


def expected_rows(path):
    reader = DumpReader(path)
    for _ in reader.parts():
        pass
    return reader.expected_rows


def import_paths(server):
    return [
        (r.method, r.path.rsplit("/", 1)[-1], r.body.get("action") if isinstance(r.body, dict) else None)
        for r in server.requests
    ]


def test_a_dump_imports_into_an_empty_database_and_the_rows_are_counted(dump, tmp_path):
    source, path = dump
    target = empty_database(tmp_path / "target.sqlite")
    waits = []
    with D1Server({DB_ID: target}, token=TOKEN, import_active_polls=2) as server:
        result = import_dump(
            path,
            "acct",
            DB_ID,
            token=TOKEN,
            api_url=server.base_url,
            expected_rows=expected_rows(path),
            sleep=waits.append,
        )
        requests = server.requests
    assert waits == [0.25, 0.5, 1.0]  # soon at first, then less and less often
    assert import_paths(server) == [
        ("POST", "raw", None),  # the target is empty
        ("POST", "import", "init"),
        ("PUT", f"{DB_ID}-{result.md5}.sql", None),
        ("POST", "import", "ingest"),
        ("POST", "import", "poll"),
        ("POST", "import", "poll"),
        ("POST", "import", "poll"),
        ("POST", "raw", None),  # the row counts
    ]
    sql = plain_sql(path)
    body = sql.path.read_bytes()
    sql.cleanup()
    upload = requests[2]
    assert upload.body == body and result.md5 == hashlib.md5(body).hexdigest() and result.sql_bytes == len(body)
    assert upload.headers["Content-Length"] == str(len(body)) and "Authorization" not in upload.headers
    assert requests[1].body == {"action": "init", "etag": result.md5}
    assert requests[3].body == {"action": "ingest", "etag": result.md5, "filename": f"{DB_ID}-{result.md5}.sql"}
    assert requests[4].body == {"action": "poll", "current_bookmark": result.at_bookmark}
    assert result.polls == 3 and result.num_queries > 0 and result.final_bookmark != result.at_bookmark
    assert_same_database(source, target, check_pragmas=False)


def test_a_file_d1_already_holds_is_ingested_without_uploading_again(dump, tmp_path):
    _, path = dump
    target = empty_database(tmp_path / "target.sqlite")
    with D1Server({DB_ID: target}, token=TOKEN) as server:
        first = import_dump(path, "acct", DB_ID, token=TOKEN, api_url=server.base_url, **NO_WAIT)
        db = sqlite3.connect(target)
        db.executescript("PRAGMA foreign_keys=OFF; DROP TABLE posts; DROP TABLE users; DELETE FROM sqlite_sequence;")
        db.close()
        before = len(server.requests)
        second = import_dump(
            path, "acct", DB_ID, token=TOKEN, api_url=server.base_url, expected_rows=expected_rows(path), **NO_WAIT
        )
        later = import_paths(server)[before:]
    assert second.md5 == first.md5
    assert ("PUT", f"{DB_ID}-{first.md5}.sql", None) not in later and ("POST", "import", "ingest") not in later
    assert [a for _, _, a in later if a] == ["init", "poll"]


def test_a_database_that_is_not_empty_is_refused_before_anything_is_sent(dump, tmp_path):
    _, path = dump
    target = small_database(tmp_path / "busy.sqlite", 3)
    with D1Server({DB_ID: target}, token=TOKEN) as server:
        with pytest.raises(D1ImportError) as refused:
            import_dump(path, "acct", DB_ID, token=TOKEN, api_url=server.base_url, **NO_WAIT)
        assert [r.path.rsplit("/", 1)[-1] for r in server.requests] == ["raw"]
    message = str(refused.value)
    assert "is not empty" in message and "posts, users" in message and "no DROP TABLE" in message
    assert "wrangler d1 create" in message


def test_d1_refusing_the_sql_rolls_back_and_says_why(dump, tmp_path):
    _, path = dump
    target = small_database(tmp_path / "busy.sqlite", 3)
    before = hashlib.sha256(target.read_bytes()).hexdigest()
    with D1Server({DB_ID: target}, token=TOKEN) as server:
        with pytest.raises(D1ImportError) as refused:
            import_dump(path, "acct", DB_ID, token=TOKEN, api_url=server.base_url, require_empty=False, **NO_WAIT)
    message = str(refused.value)
    assert "rolled it back" in message and "already exists" in message and "EMPTY database" in message
    assert hashlib.sha256(target.read_bytes()).hexdigest() == before


class CorruptingTransport(httpx.HTTPTransport):
    """Flips one byte of every upload on its way: what a damaged transfer looks like to the storage."""

    def handle_request(self, request):
        if request.method == "PUT":
            data = bytearray(b"".join(request.stream))
            data[len(data) // 2] ^= 0x20
            request = httpx.Request(request.method, request.url, headers=request.headers, content=bytes(data))
        return super().handle_request(request)


def test_an_upload_that_arrives_damaged_is_caught_by_its_md5_and_nothing_is_ingested(dump, tmp_path):
    _, path = dump
    target = empty_database(tmp_path / "target.sqlite")
    sql = plain_sql(path)
    with D1Server({DB_ID: target}, token=TOKEN) as server:
        with D1Importer(
            "acct", DB_ID, token=TOKEN, api_url=server.base_url, transport=CorruptingTransport(), **NO_WAIT
        ) as importer:
            with pytest.raises(D1ImportError, match="did not arrive intact"):
                importer.import_file(sql.path)
        assert [a for _, _, a in import_paths(server) if a] == ["init"]
    assert sqlite3.connect(target).execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_transient_errors_are_retried_and_persistent_ones_give_up_clearly(dump, tmp_path):
    _, path = dump
    target = empty_database(tmp_path / "target.sqlite")
    # One clock for the budget and every wait: a 429 pauses the budget, which a sleep that does not move
    # the budget's clock would never see the end of.
    clock = FakeClock()
    with D1Server({DB_ID: target}, token=TOKEN) as server:
        server.inject(
            Fault.status(503, path="/import"),
            Fault.status(429, retry_after=7, path="/import"),
            Fault.disconnect(path="/import"),
        )
        result = import_dump(
            path,
            "acct",
            DB_ID,
            token=TOKEN,
            api_url=server.base_url,
            sleep=clock.sleep,
            clock=clock.time,
            expected_rows=expected_rows(path),
        )
        assert result.num_queries > 0 and pytest.approx(7, abs=0.01) in clock.sleeps
        server.fail_always(503, path="/import")
        other = empty_database(tmp_path / "other.sqlite")
    with D1Server({DB_ID: other}, token=TOKEN) as server:
        server.fail_always(503, path="/import")
        with pytest.raises(D1ImportUnavailable, match="after 3 attempts") as gave_up:
            import_dump(path, "acct", DB_ID, token=TOKEN, api_url=server.base_url, max_attempts=3, **NO_WAIT)
    assert "try again later" in str(gave_up.value)


def test_a_refused_token_or_a_missing_database_is_named_without_the_token(dump, tmp_path):
    _, path = dump
    target = empty_database(tmp_path / "target.sqlite")
    with D1Server({DB_ID: target}, token=TOKEN) as server:
        with pytest.raises(D1ImportError) as bad_token:
            import_dump(path, "acct", DB_ID, token="wrong-token-value-42", api_url=server.base_url, **NO_WAIT)
        with pytest.raises(D1ImportError) as missing:
            import_dump(
                path, "acct", "00000000-0000-0000-0000-000000000000", token=TOKEN, api_url=server.base_url, **NO_WAIT
            )
    assert "refused the token" in str(bad_token.value) and "D1 Edit" in str(bad_token.value)
    assert "wrong-token-value-42" not in str(bad_token.value)
    assert "no such database" in str(missing.value) and "wrangler d1 create" in str(missing.value)
    with pytest.raises(D1ImportError, match="no Cloudflare API token"):
        D1Importer("acct", DB_ID, token="", api_url="http://127.0.0.1:9")


def test_an_import_that_never_finishes_times_out_with_advice(dump, tmp_path):
    _, path = dump
    target = empty_database(tmp_path / "target.sqlite")
    clock = FakeClock()
    started = clock.now
    sql = plain_sql(path)
    with D1Server({DB_ID: target}, token=TOKEN, import_active_polls=1000) as server:
        with D1Importer(
            "acct",
            DB_ID,
            token=TOKEN,
            api_url=server.base_url,
            poll_interval=10,
            max_poll_interval=10,
            timeout_seconds=60,
            sleep=clock.sleep,
            clock=clock.time,
        ) as importer:
            with pytest.raises(D1ImportError, match="still running after 60s"):
                importer.import_file(sql.path)
        polls = [a for _, _, a in import_paths(server) if a == "poll"]
    assert len(polls) == 6 and clock.now - started == 60


def test_row_counts_that_differ_from_the_dump_fail_the_restore(dump, tmp_path):
    _, path = dump
    target = empty_database(tmp_path / "target.sqlite")
    wrong = {**expected_rows(path), "posts": 1}
    with D1Server({DB_ID: target}, token=TOKEN) as server:
        with pytest.raises(D1ImportError, match="posts: 80 rows, expected 1"):
            import_dump(path, "acct", DB_ID, token=TOKEN, api_url=server.base_url, expected_rows=wrong, **NO_WAIT)


def test_row_counts_of_many_tables_stay_inside_d1s_compound_select_limit(tmp_path):
    target = tmp_path / "many.sqlite"
    db = sqlite3.connect(target)
    for i in range(60):  # more than one request's worth, and far more than 5 UNION ALL terms
        db.execute(f'CREATE TABLE "t {i}"(x)')
        db.executemany(f'INSERT INTO "t {i}" VALUES (?)', [(n,) for n in range(i % 4)])
    db.commit()
    db.close()
    with (
        D1Server({DB_ID: target}, token=TOKEN) as server,
        D1Importer("acct", DB_ID, token=TOKEN, api_url=server.base_url, **NO_WAIT) as importer,
    ):
        counts = importer.count_rows([f"t {i}" for i in range(60)])
        requests = len(server.requests)
    assert counts == {f"t {i}": i % 4 for i in range(60)} and requests == 2


AUTH_ERROR = {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]}


@pytest.mark.parametrize(
    "status, body, message",
    [
        (
            403,
            AUTH_ERROR,
            "the API refused the token (HTTP 403) when trying to start the import (init): it needs D1 Edit",
        ),
        (200, AUTH_ERROR, "the API refused the token (HTTP 200) when trying to start the import (init)"),
        (404, None, "no such database (HTTP 404): check the account id and database id"),
        (
            200,
            {"success": False, "errors": [{"code": 7400, "message": "bad etag"}]},
            "could not start the import (init): HTTP 200 bad etag (code 7400)",
        ),
        (
            200,
            {"success": True, "result": {"success": False, "error": "etag mismatch"}},
            "could not start the import (init): etag mismatch",
        ),
        (200, {"success": True, "result": []}, "could not start the import (init): the API answered without a result"),
    ],
)
def test_the_import_s_refusals_say_what_to_fix_and_are_not_retried(dump, tmp_path, status, body, message):
    _, path = dump
    target = empty_database(tmp_path / "target.sqlite")
    with D1Server({DB_ID: target}, token=TOKEN) as server:
        server.inject(Fault.status(status, body=body, path="/import"))
        with pytest.raises(D1ImportError) as refused:
            import_dump(path, "acct", DB_ID, token=TOKEN, api_url=server.base_url, require_empty=False, **NO_WAIT)
        inits = [a for _, _, a in import_paths(server) if a == "init"]
    assert message in str(refused.value) and not isinstance(refused.value, D1ImportUnavailable)
    assert TOKEN not in str(refused.value) and len(inits) == 1
