"""A loopback HTTP server that behaves like Cloudflare's D1 REST API, for tests.

``D1Server`` serves ``/client/v4/accounts/{account}/d1/database[...]`` on 127.0.0.1 from real
SQLite files, executing SQL with apsw (a current SQLite, as D1 runs) rather than Python's
``sqlite3`` module. Use it as a context manager and point the client at ``server.base_url``::

    from support.d1_server import D1Server, Fault

    with D1Server({"0f2c...": tmp_path / "blog.sqlite"}) as server:
        client = httpx.Client(base_url=server.base_url,
                              headers={"Authorization": "Bearer good-token"})
        server.inject(Fault.status(429, retry_after=1, path="/query"), Fault.disconnect())
        ...  # the next /query gets a 429, the request after it a dropped connection
        assert [r.status for r in server.requests][-1] == 200

Faithful to D1 (from Cloudflare's API reference, cloudflare/workers-sdk wrangler's
``d1/execute.ts`` and ``d1/types.ts``, the Cloudflare Python SDK's D1 types, and workerd's
``util/sqlite.c++``, which D1's SQLite security setup comes from):

* The envelope ``{"success", "errors": [{"code", "message"}], "messages", "result"}``; SQL errors
  as HTTP 400 with code 7500 and SQLite's message followed by ``: SQLITE_<CODE>`` (and
  ``at offset N`` where SQLite reports one), e.g. ``no such table: x: SQLITE_ERROR``.
* One REST call is one transaction: a batch of ``;``-separated statements commits whole or not
  at all. Foreign keys are enforced (``PRAGMA foreign_keys`` is a no-op inside the transaction,
  as on D1; ``PRAGMA defer_foreign_keys`` works). Requests to one database run one at a time.
* workerd's limits: SQLITE_DBCONFIG_DEFENSIVE; at most 100 bound parameters ("too many SQL
  variables"), 100 result columns ("too many columns in result set"), 2,000,000 bytes per
  string/BLOB ("string or blob too big"); statements over 100,000 bytes ("statement too long:
  SQLITE_TOOBIG"); only the last statement of a batch may have parameters. Expression depth 100
  ("Expression tree is too large (maximum depth 100)"), 5 terms per compound SELECT ("too many
  terms in compound SELECT"), LIKE/GLOB patterns of 50 bytes ("LIKE or GLOB pattern too
  complex"), all measured on local D1, and 32 arguments per SQL function ("too many arguments on
  function json_array"), documented by Cloudflare though local D1 lets 40 through (it refuses
  128); each set with apsw's ``Connection.limit``, so SQLite refuses exactly what D1's SQLite
  would. An authorizer, as workerd's, refuses BEGIN/COMMIT/ROLLBACK/SAVEPOINT/RELEASE with
  workerd's message, PRAGMA writable_schema, ATTACH/DETACH, and any object named ``_cf_*`` ("not authorized: SQLITE_AUTH",
  or "access to _cf_KV.key is prohibited: SQLITE_AUTH" for a read, as SQLite words it).
* Values pass through JavaScript: INTEGERs become doubles (2**53 + 1 comes back as 2**53),
  numbers are printed as ``JSON.stringify`` prints them (``js_number_json``), non-finite REALs
  become ``null``, BLOBs become arrays of byte values, row objects keep JavaScript's key order.
* The batch form of ``/query`` and ``/raw``, ``{"batch": [{"sql", "params"}, ...]}`` (the API's
  ``D1BatchQuery``), runs every statement in one transaction, one ``result`` entry per statement,
  as ``;``-separated statements in one ``sql`` do.
* Time Travel: ``GET .../time_travel/bookmark`` answers ``{"bookmark"}``, the database's current
  bookmark (or, with ``?timestamp=``, the newest at or before that time). Each database's bookmark is
  lexicographically sortable and moves on with every batch that writes, and only then.
* The import protocol (init -> PUT to ``upload_url`` answered with an MD5 ``ETag`` -> ingest ->
  poll), with the response shapes wrangler and the SDK read; the import is one transaction.
* Auth codes 10000 ("Authentication error"), 7403 for an account the token does not reach
  (seen in wrangler issues), and 6003/6111 for an Authorization header that is not ``Bearer``.

Simplified or guessed (not checked against real D1):

* Missing token -> 400 and wrong token -> 401, both code 10000 (Cloudflare answers a token that
  lacks D1 permission with 403/10000). Unknown database -> 404 code 7404 "The database <id>
  could not be found"; unknown route -> 404 code 7003; bad JSON body -> 400 code 7400.
* The transaction refusal is workerd's message alone, without a ``: SQLITE_AUTH`` suffix.
* The 100,000-byte limit is applied per statement. (workerd's own multi-statement prepare
  measures from a statement to the end of the batch; D1's REST API answers per statement, so it
  splits batches itself, and local D1 was measured refusing one long statement.)
* Params: integral numbers (up to 2**53) bind as INTEGER, other numbers as REAL, booleans as
  0/1, arrays of byte values as BLOBs (the API documents only strings).
* Only the pragmas and names above are refused; D1's allowlists of functions and pragmas
  (e.g. ``sqlite_version()`` is refused on D1) are not enforced.
* ``rows_read`` is approximate: the larger of the rows returned, the full-scan steps SQLite
  counted plus one, and the rows changed. ``rows_written`` counts changed rows (no index writes).
  ``size_after`` is the database size at the end of the batch, the same for every statement.
* Import: ``filename`` is ``<database_id>-<etag>.sql``; an ``init`` whose file was already
  uploaded starts ingesting at once (as the API documents); ``ingest`` runs the whole import
  before answering ``status: "active"`` and ``poll`` then answers ``complete`` (after
  ``import_active_polls`` further ``active`` answers); a failed import is
  ``status: "error"`` with ``error`` and ``errors``; ``messages`` are empty; bookmarks are
  made up. An etag that does not match the upload answers ``{"success": false, "error"}``.
* List paging: ``page`` from 1 and ``per_page`` from 10 to 10,000 (Cloudflare's documented bounds; anything else
  answers 400, code 7400, message made up), default 1000 (a guess); ``result_info`` is ``{page, per_page, count,
  total_count}``; ``name`` is not filtered; ``num_tables`` counts every table but ``sqlite_*`` ones.
  ``add_database(id, path)`` and ``remove_database(id)`` create and delete databases while the server runs (a
  fleet's tenants come and go).
* A chunked upload (no Content-Length) gets 411, as S3 answers a presigned PUT without a length.
* The rate limiter is a sliding window; Cloudflare instead blocks a token for 5 minutes, which
  ``lock_out(seconds)`` does: every request (measured with ``clock``) answers 429 with the seconds left
  as Retry-After until the time is up.
* A statement running past ``query_seconds`` (30, D1's documented limit) is interrupted and a
  result over ``max_result_bytes`` (50 MB, counted as the bytes of its TEXT and BLOB values plus
  8 per value) refused: the limits are Cloudflare's, the messages made up.
* ``time_travel=False`` (a database without Time Travel, as D1's legacy alpha databases were) answers
  the bookmark request with HTTP 400, code 7500, "Time Travel is not available for this database".
  ``read_less_tokens`` authenticate but lack D1 permission: HTTP 403, code 10000, as Cloudflare
  answers such a token.
* ``before_request(path, body)``, when set, runs before each API request is answered (after its fault and
  rate-limit checks), so a test can write to a database, or delete it, between two requests of a dump;
  a hook that raises ``D1Error`` has the request refused with it (HTTP 400, code 7500).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import hashlib
import http
import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import apsw

MAX_STATEMENT_BYTES = 100_000
MAX_VALUE_BYTES = 2_000_000
MAX_PARAMS = 100
MAX_COLUMNS = 100
# Documented by Cloudflare (and, but for the function arguments, enforced by local D1 alike): each one is
# an apsw limit of every connection, so a query D1 would refuse fails here too.
MAX_EXPR_DEPTH = 100
MAX_COMPOUND_SELECT = 5
MAX_LIKE_PATTERN_BYTES = 50
MAX_FUNCTION_ARGS = 32  # local D1 lets 40 through; Cloudflare documents 32
MAX_QUERY_SECONDS = 30.0
MAX_RESULT_BYTES = 50_000_000
# The list endpoint's `per_page`: Cloudflare documents 10 to 10,000; the default is a guess.
LIST_MIN_PER_PAGE, LIST_MAX_PER_PAGE, LIST_DEFAULT_PER_PAGE = 10, 10_000, 1000
TRANSACTION_MESSAGE = (
    "To execute a transaction, please use the state.storage.transaction() or "
    "state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT "
    "statements. The JavaScript API is safer because it will automatically roll back on "
    "exceptions, and because it interacts correctly with Durable Objects' automatic atomic "
    "write coalescing."
)
MULTI_PARAMS_MESSAGE = (
    "When executing multiple SQL statements in a single call, only the last statement can have parameters."
)
_BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>{0} {1}</title></head>\r\n<body>\r\n<center><h1>{0} {1}</h1></center>"
    "\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)


# --------------------------------------------------------------------------- JSON as JavaScript


def js_number_json(x: int | float) -> str:
    """Print a number as JavaScript's ``JSON.stringify`` prints the Number it becomes.

    Integers are first rounded to the nearest double (as D1 hands SQLite's int64 to JS);
    NaN and infinities give ``null``; -0 gives ``0``; otherwise ECMAScript's Number::toString:
    the shortest round-trip digits, plain below 1e21 and down to 1e-6, exponent form outside.
    (Checked equal to Node's output on random doubles and int64s: see tests/test_d1_server.py.)
    """
    if isinstance(x, bool):
        raise TypeError("booleans are not numbers here")
    try:
        x = float(x)
    except OverflowError:
        return "null"
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    mantissa, _, exponent = repr(abs(x)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    all_digits = int_part + frac_part
    leading_zeros = len(all_digits) - len(all_digits.lstrip("0"))
    digits = all_digits.strip("0")
    k = len(digits)
    n = len(int_part) - leading_zeros + int(exponent or 0)  # value = 0.digits * 10**n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e >= 0 else "-") + str(abs(e))
    return sign + text


def to_json(value: Any) -> str:
    """Serialize like ``JSON.stringify``: numbers via js_number_json, bytes as arrays of bytes."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return js_number_json(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "[" + ",".join(map(str, bytes(value))) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + to_json(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(to_json, value)) + "]"
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _js_object(columns: list[str], row: tuple) -> dict[str, Any]:
    """A row as the JS object D1 builds: a repeated name keeps the last value, and names that
    are array indices ("0", "1", ...) come first in numeric order, as in every JS object."""
    obj = dict(zip(columns, row))

    def is_index(k: str) -> bool:
        return k.isdigit() and str(int(k)) == k and int(k) < 2**32 - 1

    indices = sorted((k for k in obj if is_index(k)), key=int)
    return {k: obj[k] for k in indices + [k for k in obj if not is_index(k)]}


# --------------------------------------------------------------------------- SQL execution


class D1Error(Exception):
    """An error D1 reports as HTTP 400, code 7500."""


@dataclasses.dataclass
class _Statement:
    sql: str
    columns: list[str]
    readonly: bool
    had_bindings: bool
    started: float
    changes_before: int
    rows: list[tuple] = dataclasses.field(default_factory=list)
    row_count: int = 0
    fullscan_steps: int = 0
    meta: dict[str, Any] | None = None


def _sqlite_message(error: apsw.Error) -> str:
    if isinstance(error, apsw.BindingsError):
        return "Wrong number of parameter bindings for SQL query."
    message = error.args[0] if error.args else str(error)
    offset = getattr(error, "error_offset", -1)
    if offset is not None and offset >= 0:
        message += f" at offset {offset}"
    code = apsw.mapping_result_codes.get((getattr(error, "result", None) or 1) & 0xFF, "SQLITE_ERROR")
    return f"{message}: {code}"


def _binding(value: Any) -> Any:
    """A JSON param as D1 binds it: numbers are JS doubles (integral ones bind as INTEGER),
    booleans as 0/1, arrays of byte values as BLOBs (a convenience; the API documents strings)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        as_float = float(value)
        return int(as_float) if as_float.is_integer() and abs(as_float) <= 2**53 else as_float
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value)
    if value is None or isinstance(value, str):
        return value
    raise D1Error(f"Unsupported parameter type: {type(value).__name__}")


def _open(path: Path) -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.set_busy_timeout(5000)
    conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 1)
    conn.limit(apsw.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
    conn.limit(apsw.SQLITE_LIMIT_COLUMN, MAX_COLUMNS)
    conn.limit(apsw.SQLITE_LIMIT_VARIABLE_NUMBER, MAX_PARAMS)
    conn.limit(apsw.SQLITE_LIMIT_ATTACHED, 0)
    conn.limit(apsw.SQLITE_LIMIT_SQL_LENGTH, MAX_STATEMENT_BYTES * 100)  # a batch; each statement is checked
    conn.limit(apsw.SQLITE_LIMIT_EXPR_DEPTH, MAX_EXPR_DEPTH)
    conn.limit(apsw.SQLITE_LIMIT_COMPOUND_SELECT, MAX_COMPOUND_SELECT)
    conn.limit(apsw.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, MAX_LIKE_PATTERN_BYTES)
    conn.limit(apsw.SQLITE_LIMIT_FUNCTION_ARG, MAX_FUNCTION_ARGS)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _run_batch(
    path: Path,
    queries: list[tuple[str, list[Any]]],
    keep_rows: bool,
    *,
    query_seconds: float = MAX_QUERY_SECONDS,
    result_bytes: int = MAX_RESULT_BYTES,
    refused_functions: frozenset[str] = frozenset(),
) -> tuple[list[_Statement], int]:
    """Run ``queries`` (each SQL text with its params) in one transaction as D1 does; return their
    statements and the size after.

    A statement still running after ``query_seconds`` is interrupted, and a batch whose rows add up
    to more than ``result_bytes`` is refused. Raises D1Error (after rolling back) on any failure.
    """
    conn = _open(path)
    timed_out: list[bool] = []

    def over_time() -> bool:
        if statements and statements[-1].meta is None and time.perf_counter() - statements[-1].started > query_seconds:
            timed_out.append(True)
            return True
        return False

    carried = 0
    refused: list[str] = []

    def authorize(op: int, p1: str | None, p2: str | None, db: str | None, trig: str | None) -> int:
        if op in (apsw.SQLITE_TRANSACTION, apsw.SQLITE_SAVEPOINT):
            refused.append(TRANSACTION_MESSAGE)
            return apsw.SQLITE_DENY
        if op == apsw.SQLITE_PRAGMA and (p1 or "").lower() == "writable_schema":
            return apsw.SQLITE_DENY
        if op in (apsw.SQLITE_ATTACH, apsw.SQLITE_DETACH):
            return apsw.SQLITE_DENY
        if op == apsw.SQLITE_FUNCTION and (p2 or "").lower() in refused_functions:
            return apsw.SQLITE_DENY  # "not authorized to use function: X", as D1 words it
        names = (p2,) if op == apsw.SQLITE_ALTER_TABLE else (p1, p2)
        if op not in (apsw.SQLITE_FUNCTION, apsw.SQLITE_PRAGMA) and any(
            (name or "").lower().startswith("_cf_") for name in names
        ):
            return apsw.SQLITE_DENY
        return apsw.SQLITE_OK

    statements: list[_Statement] = []

    def finish() -> None:
        if not statements or statements[-1].meta is not None:
            return
        s = statements[-1]
        written = conn.total_changes() - s.changes_before
        elapsed = (time.perf_counter() - s.started) * 1000
        s.meta = {
            "duration": elapsed,
            "changes": conn.changes() if written and not s.readonly else 0,
            "last_row_id": conn.last_insert_rowid(),
            "changed_db": not s.readonly,
            "rows_read": max(s.row_count, s.fullscan_steps + 1 if s.fullscan_steps else 0, written),
            "rows_written": written,
        }

    query_starts_at = [0]  # index in `statements` of the current query's first statement

    def on_statement(cursor: apsw.Cursor, text: str, bindings: Any) -> bool:
        finish()
        if len(statements) > query_starts_at[0] and statements[-1].had_bindings:
            raise D1Error(MULTI_PARAMS_MESSAGE)
        if len(text.strip().encode()) > MAX_STATEMENT_BYTES:
            raise D1Error("statement too long: SQLITE_TOOBIG")
        statements.append(
            _Statement(
                text,
                [d[0] for d in cursor.description],
                cursor.is_readonly,
                bool(bindings),
                time.perf_counter(),
                conn.total_changes(),
            )
        )
        return True

    def on_profile(event: dict[str, Any]) -> None:
        if statements and statements[-1].meta is None and "stmt_status" in event:
            statements[-1].fullscan_steps = event["stmt_status"]["SQLITE_STMTSTATUS_FULLSCAN_STEP"]

    conn.set_progress_handler(over_time, 1000)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.authorizer = authorize
            conn.trace_v2(apsw.SQLITE_TRACE_PROFILE, on_profile)
            cursor = conn.cursor()
            cursor.exec_trace = on_statement
            for sql, params in queries:
                query_starts_at[0] = len(statements)
                for row in cursor.execute(sql, [_binding(p) for p in params]):
                    s = statements[-1]
                    s.row_count += 1
                    if keep_rows:
                        size = sum(
                            len(v.encode()) if isinstance(v, str) else len(v)
                            for v in row
                            if isinstance(v, (str, bytes))
                        )
                        if size > MAX_VALUE_BYTES:
                            raise D1Error("string or blob too big: SQLITE_TOOBIG")
                        carried += size + 8 * len(row)
                        if carried > result_bytes:
                            raise D1Error(f"result too large: more than {result_bytes} bytes: SQLITE_TOOBIG")
                        s.rows.append(row)
                finish()
            if not statements:
                raise D1Error("SQL code did not contain a statement.")
            conn.trace_v2(0, None)
            conn.authorizer = None
            size_after = conn.execute("PRAGMA page_count").get * conn.execute("PRAGMA page_size").get
            conn.execute("COMMIT")
        except apsw.InterruptError as error:
            if timed_out:
                raise D1Error(
                    f"D1 DB exceeded its query time limit of {query_seconds:g} s: SQLITE_INTERRUPT"
                ) from error
            raise D1Error(_sqlite_message(error)) from error
        except apsw.Error as error:
            raise D1Error(refused[0] if refused else _sqlite_message(error)) from error
        finally:
            conn.trace_v2(0, None)
            conn.authorizer = None
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    finally:
        conn.close()
    return statements, size_after


def _full_meta(statement: _Statement, size_after: int) -> dict[str, Any]:
    meta = dict(statement.meta or {})
    meta.update(
        size_after=size_after,
        served_by="fake-d1",
        served_by_region="WEUR",
        served_by_primary=True,
        timings={"sql_duration_ms": meta["duration"]},
    )
    return meta


# --------------------------------------------------------------------------- faults


@dataclasses.dataclass(frozen=True)
class Fault:
    """One programmed misbehaviour, consumed by the first request whose path ends with ``path``
    (any request when ``path`` is None). Build with Fault.status/delay/disconnect."""

    kind: str
    status_code: int = 0
    retry_after: float | None = None
    body: Any = None
    seconds: float = 0.0
    path: str | None = None

    @classmethod
    def status(cls, code: int, *, retry_after: float | None = None, body: Any = None, path: str | None = None) -> Fault:
        """Answer ``code`` (with ``Retry-After`` if given). ``body``: a dict (sent as JSON),
        str or bytes; by default a Cloudflare-shaped error (429: code 971; 500: code 7500;
        502/503/504: Cloudflare's HTML error page)."""
        return cls("status", status_code=code, retry_after=retry_after, body=body, path=path)

    @classmethod
    def delay(cls, seconds: float, *, path: str | None = None) -> Fault:
        """Wait ``seconds`` (cut short by stop()), then answer normally."""
        return cls("delay", seconds=seconds, path=path)

    @classmethod
    def disconnect(cls, *, path: str | None = None) -> Fault:
        """Read the request, then close the connection without answering."""
        return cls("disconnect", path=path)

    def matches(self, path: str) -> bool:
        return self.path is None or path.endswith(self.path)


def _error_envelope(code: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"success": False, "errors": [{"code": code, "message": message, **extra}], "messages": [], "result": None}


def _fault_body(fault: Fault) -> tuple[bytes, str]:
    body = fault.body
    if body is None:
        try:
            phrase = http.HTTPStatus(fault.status_code).phrase
        except ValueError:
            phrase = "Error"
        if fault.status_code in (502, 503, 504):
            body = _BAD_GATEWAY_HTML.format(fault.status_code, phrase)
        elif fault.status_code == 429:
            body = _error_envelope(971, "Please wait and consider throttling your request speed")
        elif fault.status_code == 500:
            body = _error_envelope(7500, "internal error; reference = fake-d1-injected")
        else:
            body = _error_envelope(fault.status_code, phrase)
    if isinstance(body, dict):
        return to_json(body).encode(), "application/json"
    if isinstance(body, str):
        return body.encode(), "text/html" if body.lstrip().startswith("<") else "text/plain"
    return bytes(body), "application/octet-stream"


# --------------------------------------------------------------------------- the server


@dataclasses.dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any  # parsed JSON, raw bytes (uploads, invalid JSON) or None
    status: int | None  # None: the connection was dropped (Fault.disconnect or stop())


@dataclasses.dataclass
class _Import:
    database_id: str
    at_bookmark: str
    active_polls_left: int
    outcome: dict[str, Any]


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


class D1Server:
    """A fake D1 REST API on 127.0.0.1 backed by SQLite files (see the module docstring).

    ``databases`` maps database ids to SQLite files; a database's name is its file's stem.
    ``rate_limit=(n, seconds)`` answers 429 with Retry-After once n requests fell within the
    last ``seconds`` (measured with ``clock``). ``import_active_polls`` is how many polls of a
    finished import still answer ``status: "active"``. ``query_seconds`` and ``max_result_bytes``
    lower D1's query time and result size limits (for tests); ``refused_functions`` names SQL
    functions this D1 refuses ("not authorized to use function: X", as D1 refuses sqlite_version()).

    Each request meets, in order: the next matching injected fault (or fail_always's), the rate
    limiter, authentication (not for uploads to ``upload_url``, which is presigned), the API.
    """

    API_PREFIX = "/client/v4"

    def __init__(
        self,
        databases: dict[str, Path],
        account_id: str = "acct",
        token: str = "good-token",
        *,
        rate_limit: tuple[int, float] | None = None,
        import_active_polls: int = 0,
        clock: Callable[[], float] = time.monotonic,
        query_seconds: float = MAX_QUERY_SECONDS,
        max_result_bytes: int = MAX_RESULT_BYTES,
        refused_functions: set[str] = frozenset(),
        time_travel: bool = True,
        read_less_tokens: tuple[str, ...] = (),
    ):
        self.databases = {db_id: Path(path) for db_id, path in databases.items()}
        self.account_id, self.token = account_id, token
        self.rate_limit, self.clock = rate_limit, clock
        self.import_active_polls = import_active_polls
        self.query_seconds, self.max_result_bytes = query_seconds, max_result_bytes
        self.refused_functions = frozenset(name.lower() for name in refused_functions)
        self.created_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        self._lock = threading.Lock()
        self._db_locks = {db_id: threading.Lock() for db_id in self.databases}
        self._log: list[LoggedRequest] = []
        self._faults: collections.deque[Fault] = collections.deque()
        self._sticky: Fault | None = None
        self._recent: collections.deque[float] = collections.deque()
        self._locked_until = float("-inf")
        self._uploads: dict[str, bytes] = {}
        self._imports: dict[str, _Import] = {}
        self.time_travel, self.read_less_tokens = time_travel, read_less_tokens
        self.before_request: Callable[[str, Any], None] | None = None
        # Per database: (time, bookmark) of every state, oldest first; the last is the current one.
        self._bookmarks = {db_id: [(time.time(), _bookmark_text(0))] for db_id in self.databases}
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add_database(self, database_id: str, path: Path) -> None:
        """A database created while the server runs (its name is the file's stem)."""
        with self._lock:
            self._db_locks[database_id] = threading.Lock()
            self._bookmarks[database_id] = [(time.time(), _bookmark_text(0))]
            self.databases[database_id] = Path(path)

    def remove_database(self, database_id: str) -> None:
        """A database deleted while the server runs: it answers 404 and leaves the list."""
        with self._lock:
            del self.databases[database_id]

    # ---- lifecycle
    def start(self) -> D1Server:
        handler = type("_D1Handler", (_Handler,), {"d1": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = None

    def __enter__(self) -> D1Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        assert self._httpd is not None, "the server is not running"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.origin + self.API_PREFIX

    # ---- observation and fault programming
    @property
    def requests(self) -> list[LoggedRequest]:
        """A snapshot of the requests received so far, oldest first (each is logged before its
        answer is sent)."""
        with self._lock:
            return list(self._log)

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def fail_always(self, status: int, **kwargs: Any) -> None:
        """Answer every request with ``Fault.status(status, **kwargs)`` until clear_faults()."""
        with self._lock:
            self._sticky = Fault.status(status, **kwargs)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._sticky = None

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            if self._sticky is not None and self._sticky.matches(path):
                return self._sticky
            for fault in self._faults:
                if fault.matches(path):
                    self._faults.remove(fault)
                    return fault
        return None

    def lock_out(self, seconds: float) -> None:
        """Refuse every request with 429 for `seconds` from now (on `clock`), as Cloudflare does to a
        token that went over its rate limit."""
        with self._lock:
            self._locked_until = self.clock() + seconds

    def _rate_limited(self) -> int | None:
        """Seconds to wait when over the rate limit or locked out, else None (and count this request)."""
        with self._lock:
            left = self._locked_until - self.clock()
        if left > 0:
            return max(1, math.ceil(left))
        if self.rate_limit is None:
            return None
        limit, window = self.rate_limit
        with self._lock:
            now = self.clock()
            while self._recent and self._recent[0] <= now - window:
                self._recent.popleft()
            if len(self._recent) >= limit:
                return max(1, math.ceil(self._recent[0] + window - now))
            self._recent.append(now)
        return None

    def _log_request(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    # ---- request handling
    def _handle(self, h: _Handler) -> None:
        url = urlsplit(h.path)
        if "chunked" in h.headers.get("Transfer-Encoding", "").lower():
            h.close_connection = True  # the body is left unread: S3-style 411, then hang up
            raw_log = dict(
                method=h.command, path=url.path, query=parse_qs(url.query), headers=dict(h.headers.items()), body=None
            )
            self._send(
                h,
                raw_log,
                411,
                to_json(_error_envelope(411, "Length Required")).encode(),
                "application/json",
                {"Connection": "close"},
            )
            return
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw and h.command != "PUT" else (raw or None)
        except ValueError:
            body = raw
        log = dict(
            method=h.command, path=url.path, query=parse_qs(url.query), headers=dict(h.headers.items()), body=body
        )

        fault = self._take_fault(url.path)
        if fault is not None and fault.kind == "delay":
            if self._stopping.wait(fault.seconds):
                fault = Fault.disconnect()
        if fault is not None and fault.kind == "disconnect":
            self._log_request(LoggedRequest(**log, status=None))
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault is not None and fault.kind == "status":
            payload, content_type = _fault_body(fault)
            wait = fault.retry_after
            headers = {} if wait is None else {"Retry-After": str(wait) if isinstance(wait, int) else f"{wait:g}"}
            self._send(h, log, fault.status_code, payload, content_type, headers)
            return
        try:
            reply = self._answer(h.command, url.path, parse_qs(url.query), body, raw, h.headers.get("Authorization"))
        except _Reply as raised:
            reply = raised
        except Exception as error:  # a bug in the fake: make it visible to the test
            reply = _Reply(500, _error_envelope(7500, f"fake-d1 internal error: {error!r}"))
        payload = reply.body if isinstance(reply.body, bytes) else to_json(reply.body).encode()
        self._send(h, log, reply.status, payload, "application/json", reply.headers)

    def _answer(
        self, method: str, path: str, query: dict[str, list[str]], body: Any, raw: bytes, authorization: str | None
    ) -> _Reply:
        wait = self._rate_limited()
        if wait is not None:
            return _Reply(
                429,
                _error_envelope(971, "Please wait and consider throttling your request speed"),
                {"Retry-After": str(wait)},
            )
        if method == "PUT" and path.startswith("/r2-upload/"):
            return self._upload(path.removeprefix("/r2-upload/"), raw)
        self._check_auth(authorization)
        if self.before_request is not None:
            try:
                self.before_request(path, body)
            except D1Error as error:  # the hook refuses this request as D1 refuses SQL
                return _Reply(400, _error_envelope(7500, str(error)))
        return self._route(method, path, query, body, raw)

    def _send(
        self,
        h: _Handler,
        log: dict[str, Any],
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict[str, str],
    ) -> None:
        self._log_request(LoggedRequest(**log, status=status))
        try:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                h.send_header(name, value)
            h.end_headers()
            h.wfile.write(payload)
        except OSError:  # the client gave up (e.g. its timeout during a Fault.delay)
            h.close_connection = True

    def _check_auth(self, header: str | None) -> None:
        if not header:
            raise _Reply(400, _error_envelope(10000, "Authentication error"))
        if not header.startswith("Bearer "):
            raise _Reply(
                400,
                _error_envelope(
                    6003,
                    "Invalid request headers",
                    error_chain=[{"code": 6111, "message": "Invalid format for Authorization header"}],
                ),
            )
        token = header.removeprefix("Bearer ").strip()
        if token in self.read_less_tokens:
            raise _Reply(403, _error_envelope(10000, "Authentication error"))
        if token != self.token:
            raise _Reply(401, _error_envelope(10000, "Authentication error"))

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any, raw: bytes) -> _Reply:
        m = re.fullmatch(
            re.escape(self.API_PREFIX) + r"/accounts/([^/]+)/d1/database"
            r"(?:/([^/]+)(?:/(query|raw|import|time_travel/bookmark))?)?/?",
            path,
        )
        if m is None:
            return _Reply(
                404, _error_envelope(7003, f"Could not route to {path}, perhaps your object identifier is invalid?")
            )
        account, database_id, action = m.groups()
        if account != self.account_id:
            return _Reply(
                403, _error_envelope(7403, "The given account is not valid or is not authorized to access this service")
            )
        if database_id is not None and database_id not in self.databases:
            return _Reply(404, _error_envelope(7404, f"The database {database_id} could not be found"))
        wanted = "GET" if action in (None, "time_travel/bookmark") else "POST"
        if method != wanted:
            return _Reply(405, _error_envelope(10405, f"Method {method} not allowed"))
        if action is None:
            return self._list(query) if database_id is None else _ok(self._info(database_id))
        if action == "time_travel/bookmark":
            return self._time_travel_bookmark(database_id, query)
        if raw and not isinstance(body, dict):
            return _Reply(400, _error_envelope(7400, "The request is not valid JSON"))
        body = body or {}
        if action == "import":
            return self._import(database_id, body)
        return self._query(database_id, body, raw=action == "raw")

    def _list(self, query: dict[str, list[str]]) -> _Reply:
        try:
            page = int(query.get("page", ["1"])[0])
            per_page = int(query.get("per_page", [str(LIST_DEFAULT_PER_PAGE)])[0])
        except ValueError:
            return _Reply(400, _error_envelope(7400, "page and per_page must be numbers"))
        if page < 1 or not LIST_MIN_PER_PAGE <= per_page <= LIST_MAX_PER_PAGE:
            return _Reply(
                400,
                _error_envelope(
                    7400, f"page must be at least 1 and per_page between {LIST_MIN_PER_PAGE} and {LIST_MAX_PER_PAGE}"
                ),
            )
        with self._lock:
            ids = list(self.databases)
        chosen = ids[(page - 1) * per_page : page * per_page]
        result = [self._info(db_id) for db_id in chosen]
        for entry in result:
            entry.pop("read_replication")
        return _Reply(
            200,
            {
                "success": True,
                "errors": [],
                "messages": [],
                "result": result,
                "result_info": {"page": page, "per_page": per_page, "count": len(result), "total_count": len(ids)},
            },
        )

    def _info(self, database_id: str) -> dict[str, Any]:
        path = self.databases[database_id]
        with self._db_locks[database_id]:
            conn = apsw.Connection(str(path))
            try:
                num_tables = conn.execute(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                ).get
            finally:
                conn.close()
        return {
            "uuid": database_id,
            "name": path.stem,
            "created_at": self.created_at,
            "version": "production",
            "num_tables": num_tables,
            "file_size": path.stat().st_size,
            "read_replication": {"mode": "disabled"},
        }

    def _query(self, database_id: str, body: dict[str, Any], raw: bool) -> _Reply:
        queries = body.get("batch") if "batch" in body else [body]
        if (
            not isinstance(queries, list)
            or not queries
            or not all(
                isinstance(q, dict) and isinstance(q.get("sql"), str) and isinstance(q.get("params", []), list)
                for q in queries
            )
        ):
            return _Reply(
                400,
                _error_envelope(
                    7400, "The request body needs a string 'sql' and a list 'params', or a list 'batch' of them"
                ),
            )
        try:
            with self._db_locks[database_id]:
                statements, size_after = _run_batch(
                    self.databases[database_id],
                    [(q["sql"], q.get("params", [])) for q in queries],
                    True,
                    query_seconds=self.query_seconds,
                    result_bytes=self.max_result_bytes,
                    refused_functions=self.refused_functions,
                )
                if any(not s.readonly for s in statements):
                    self._bookmark(database_id, advance=True)
        except D1Error as error:
            return _Reply(400, _error_envelope(7500, str(error)))
        results = []
        for s in statements:
            rows: Any = (
                {"columns": s.columns, "rows": s.rows} if raw else [_js_object(s.columns, row) for row in s.rows]
            )
            results.append({"results": rows, "success": True, "meta": _full_meta(s, size_after)})
        return _ok(results)

    def execute(self, database_id: str, sql: str) -> None:
        """Write to a database as its application would (one batch, moving its bookmark on): for a
        test's ``before_request`` hook."""
        with self._db_locks[database_id]:
            statements, _ = _run_batch(self.databases[database_id], [(sql, [])], False)
            if any(not s.readonly for s in statements):
                self._bookmark(database_id, advance=True)

    # ---- Time Travel
    def _bookmark(self, database_id: str, advance: bool = False) -> str:
        """The database's current Time Travel bookmark; `advance` records a new state first."""
        with self._lock:
            history = self._bookmarks.setdefault(database_id, [(time.time(), _bookmark_text(0))])
            if advance:
                history.append((time.time(), _bookmark_text(len(history))))
            return history[-1][1]

    def _time_travel_bookmark(self, database_id: str, query: dict[str, list[str]]) -> _Reply:
        if not self.time_travel:
            return _Reply(400, _error_envelope(7500, "Time Travel is not available for this database"))
        self._bookmark(database_id)
        with self._lock:
            history = list(self._bookmarks[database_id])
        if "timestamp" not in query:
            return _ok({"bookmark": history[-1][1]})
        try:
            at = datetime.datetime.fromisoformat(query["timestamp"][0].replace("Z", "+00:00")).timestamp()
        except ValueError:
            return _Reply(400, _error_envelope(7400, "Invalid timestamp"))
        earlier = [bookmark for moment, bookmark in history if moment <= at]
        return _ok({"bookmark": (earlier or [history[0][1]])[-1]})

    # ---- import

    def _upload(self, filename: str, data: bytes) -> _Reply:
        with self._lock:
            self._uploads[filename] = data
        return _Reply(200, b"", {"ETag": f'"{hashlib.md5(data).hexdigest()}"'})

    def _import(self, database_id: str, body: dict[str, Any]) -> _Reply:
        action, etag = body.get("action"), body.get("etag")
        if action == "init":
            filename = f"{database_id}-{etag}.sql"
            if filename not in self._uploads:
                return _ok(
                    {
                        "success": True,
                        "filename": filename,
                        "at_bookmark": self._bookmark(database_id),
                        "upload_url": f"{self.origin}/r2-upload/{filename}?X-Amz-Signature=fake",
                    }
                )
            return self._ingest(database_id, filename, etag)
        if action == "ingest":
            return self._ingest(database_id, body.get("filename"), etag)
        if action == "poll":
            job = self._imports.get(body.get("current_bookmark"))
            if job is None or job.database_id != database_id:
                return _ok({"success": False, "error": "No import in progress for that bookmark"})
            if job.active_polls_left > 0:
                job.active_polls_left -= 1
                return _ok(_polling(job.at_bookmark, "active"))
            return _ok(job.outcome)
        return _Reply(400, _error_envelope(7400, f"Unknown import action {action!r}"))

    def _ingest(self, database_id: str, filename: Any, etag: Any) -> _Reply:
        data = self._uploads.get(filename) if isinstance(filename, str) else None
        if data is None or hashlib.md5(data).hexdigest() != etag:
            return _ok({"success": False, "error": "The uploaded file does not match the etag"})
        with self._db_locks[database_id]:
            at_bookmark = self._bookmark(database_id)
            started = time.perf_counter()
            try:
                statements, size_after = _run_batch(
                    self.databases[database_id], [(data.decode(), [])], keep_rows=False, query_seconds=math.inf
                )
            except (D1Error, UnicodeDecodeError) as error:
                outcome = {**_polling(at_bookmark, "error"), "error": str(error), "errors": [str(error)]}
            else:
                meta = {
                    "served_by": "fake-d1",
                    "duration": (time.perf_counter() - started) * 1000,
                    "changes": sum(s.meta["changes"] for s in statements),
                    "last_row_id": statements[-1].meta["last_row_id"],
                    "changed_db": any(s.meta["changed_db"] for s in statements),
                    "size_after": size_after,
                    "rows_read": sum(s.meta["rows_read"] for s in statements),
                    "rows_written": sum(s.meta["rows_written"] for s in statements),
                }
                outcome = {
                    **_polling(at_bookmark, "complete"),
                    "result": {
                        "success": True,
                        "num_queries": len(statements),
                        "final_bookmark": self._bookmark(database_id, advance=True),
                        "meta": meta,
                    },
                }
            self._imports[at_bookmark] = _Import(database_id, at_bookmark, self.import_active_polls, outcome)
        return _ok(_polling(at_bookmark, "active"))


def _bookmark_text(n: int) -> str:
    """A bookmark shaped like D1's (`00000001-00000002-00004e2f-<hex>`), sorting in the order of `n`."""
    return f"{n:08x}-00000000-00000000-{hashlib.md5(str(n).encode()).hexdigest()}"


def _polling(at_bookmark: str, status: str) -> dict[str, Any]:
    return {
        "success": True,
        "type": "import",
        "at_bookmark": at_bookmark,
        "status": status,
        "messages": [],
        "errors": [],
    }


def _ok(result: Any) -> _Reply:
    return _Reply(200, {"success": True, "errors": [], "messages": [], "result": result})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    d1: D1Server

    def _dispatch(self) -> None:
        self.d1._handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass
