"""Where a dump reads from: a SQLite file, or a D1 database over Cloudflare's REST API.

Both answer two things: small metadata queries (`query`) and the rows of one table in key order
(`scan`), as Python values (int, float, str, bytes, None, or `RawText` for TEXT that is not UTF-8).
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import re
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from .errors import (
    AuthenticationFailed,
    DatabaseNotFound,
    DeadlineExceeded,
    RateLimited,
    SourceError,
    SourceSQLError,
    SourceUnavailable,
)
from .literals import RawText, RowFormatter
from .schema import TablePlan
from .sqltext import quote_identifier

DEFAULT_API_URL = "https://api.cloudflare.com/client/v4"
BIG_ROW_BYTES = 300_000  # JSON escaping can grow text 6x: a row's string must stay under D1's 2 MB
PIECE_BYTES = 500_000  # bytes of one value fetched at a time (1 MB of hex)
MAX_PAGE_ROWS = 50_000
ROWID_BLOCK_BITS = 12  # INSERT statements never span two blocks of 4096 rowids (so a table can be split)
SCAN_BATCH_BYTES = 1 << 20  # about this much row data per batch a SQLite scan yields (see SqliteSource.scan)
SCAN_BATCH_ROWS = 1000
SPLIT_MIN_ROWIDS = 400_000  # smaller tables are not worth a second process  # rows one page may read: D1 bills rows read and stops a query after 30 s
D1_URI = re.compile(r"^d1://(?P<account>[0-9A-Za-z_-]+)/(?P<database>[0-9A-Za-z_-]+)/?$")


class Source(ABC):
    """A database to dump. Use as a context manager."""

    #: Whether the whole dump is read as one consistent snapshot.
    point_in_time: bool = True
    #: Requests made to a remote API (0 for a local file).
    requests: int = 0

    @property
    @abstractmethod
    def description(self) -> str:
        """Where the data comes from, safe to log (no secrets)."""

    @abstractmethod
    def query(self, sql: str) -> list[tuple]:
        """Rows of a small metadata query."""

    @abstractmethod
    def scan(self, table: TablePlan) -> Iterator[list[tuple]]:
        """Batches of `table`'s rows (values in `table.columns` order), in key order."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_source(spec: str, *, env=os.environ, deadline_seconds: float | None = None, page_bytes: int | None = None) -> Source:
    """A Source for `spec`: `d1://ACCOUNT_ID/DATABASE_ID` or the path of a SQLite file."""
    if spec.startswith("d1://"):
        m = D1_URI.match(spec)
        if not m:
            raise SourceError(f"bad D1 source {spec!r}: write it as d1://ACCOUNT_ID/DATABASE_ID")
        token = env.get("CLOUDFLARE_API_TOKEN", "")
        if not token:
            raise AuthenticationFailed(
                "CLOUDFLARE_API_TOKEN is not set: create an API token with D1 read permission and export it"
            )
        return D1Source(
            m["account"],
            m["database"],
            token=token,
            api_url=env.get("PATINA_CLOUDFLARE_API_URL") or DEFAULT_API_URL,
            deadline_seconds=deadline_seconds,
            **({"page_bytes": page_bytes} if page_bytes else {}),
        )
    return SqliteSource(Path(spec))


def _lenient_text(data: bytes):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return RawText(data)


def _rows_per_batch(batch: list[tuple]) -> int:
    """How many rows like those of `batch` make about `SCAN_BATCH_BYTES` (a sample: first, middle, last)."""
    sample = (batch[0], batch[len(batch) // 2], batch[-1])
    row_bytes = max(sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in row) for row in sample)
    return max(1, min(SCAN_BATCH_ROWS, SCAN_BATCH_BYTES // max(1, row_bytes)))


class SqliteSource(Source):
    """A SQLite file, read inside one read transaction: the dump is a single point in time."""

    point_in_time = True

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DatabaseNotFound(f"no SQLite database at {self.path}: check the path")
        try:
            self._db = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True, isolation_level=None)
            self._db.execute("BEGIN")
            # The first read fixes the snapshot every later read of this transaction sees.
            self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as e:
            raise SourceError(f"cannot read {self.path} as a SQLite database: {e}") from e

    @property
    def description(self) -> str:
        return f"sqlite:{self.path}"

    def query(self, sql: str) -> list[tuple]:
        try:
            return self._db.execute(sql).fetchall()
        except sqlite3.Error as e:
            raise SourceSQLError(f"{self.path}: {e}") from e

    def scan(self, table: TablePlan, lo: int | None = None, hi: int | None = None) -> Iterator[list[tuple]]:
        """Rows in key order; `lo` <= rowid < `hi` when given (a rowid table split across processes).

        Batches hold about `SCAN_BATCH_BYTES` of values, not a fixed number of rows: the writer keeps two
        batches in flight and makes several copies of each as SQL text, so 1,000 rows of 20 KB BLOBs
        would cost hundreds of MB. Each batch's size is set from the largest of a few rows of the last.
        """
        keys = [quote_identifier(c) for c in table.key_columns]
        select = "SELECT " + ",".join(quote_identifier(c) for c in table.columns) + " FROM " + table.quoted
        order = " ORDER BY " + ",".join(keys) if table.key else ""
        bounds, bound_params = [], []
        if lo is not None:
            bounds.append(f"{keys[0]} >= ?")
            bound_params.append(lo)
        if hi is not None:
            bounds.append(f"{keys[0]} < ?")
            bound_params.append(hi)
        after: tuple | None = None
        while True:
            conditions, params = list(bounds), list(bound_params)
            if after is not None:  # resuming after TEXT that is not UTF-8, with a slower decoder
                conditions.append("(" + ",".join(keys) + ") > (" + ",".join("?" * len(after)) + ")")
                params += after
            where = " WHERE " + " AND ".join(conditions) if conditions else ""
            cursor = self._db.execute(select + where + order, params)
            try:
                size = 16
                while batch := cursor.fetchmany(size):
                    size = _rows_per_batch(batch)
                    if table.key:
                        after = tuple(batch[-1][i] for i in table.key)
                    yield batch
                return
            except sqlite3.OperationalError as e:
                if "decode" not in str(e) or self._db.text_factory is _lenient_text or not table.key:
                    raise SourceSQLError(f"{self.path}: reading {table.name!r}: {e}") from e
                self._db.text_factory = _lenient_text

    def split_point(self, table: TablePlan) -> int | None:
        """Where a big rowid table can be cut in two for a second process, or None.

        Both halves are read on the snapshot of this connection's open read transaction only when the
        file uses a rollback journal: while this connection holds its shared lock no writer can commit,
        so a second connection sees the same data. A WAL file gives each reader its own snapshot, so it
        is never split. The cut falls on a rowid block boundary (see `dump.ROWID_BLOCK_BITS`), where
        statements always break, so the two halves join into exactly what one process would write.
        """
        if table.without_rowid or table.virtual or not table.key or table.rowid_by_update:
            return None
        if self.query("PRAGMA journal_mode")[0][0].lower() == "wal":
            return None
        key = quote_identifier(table.key_columns[0])
        lo, hi = self.query(f"SELECT min({key}), max({key}) FROM {table.quoted}")[0]
        if lo is None or hi - lo < SPLIT_MIN_ROWIDS:
            return None
        mid = (lo + (hi - lo) // 2) >> ROWID_BLOCK_BITS << ROWID_BLOCK_BITS
        return mid if lo < mid <= hi else None

    def close(self) -> None:
        self._db.close()


class D1Source(Source):
    """A D1 database over Cloudflare's REST API (`/query` and `/raw`).

    Every value travels as text inside one JSON array per row, so nothing passes through a JSON number
    (D1 rounds integers beyond 2**53 and sends BLOBs as arrays of bytes). Rows are read by key, in pages
    sized to a byte budget. Each request is its own transaction, so a dump of many requests is not a
    single point in time.
    """

    point_in_time = False

    def __init__(
        self,
        account_id: str,
        database_id: str,
        *,
        token: str,
        api_url: str = DEFAULT_API_URL,
        page_bytes: int = 2_000_000,
        deadline_seconds: float | None = None,
        max_attempts: int = 8,
        backoff_seconds: float = 1.0,
        request_timeout: float = 60.0,
        transport=None,
        sleep=time.sleep,
    ) -> None:
        self.account_id = account_id
        self.database_id = database_id
        self.page_bytes = page_bytes
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.request_timeout = request_timeout
        self._sleep = sleep
        self._math: bool | None = None
        self.deadline = time.monotonic() + deadline_seconds if deadline_seconds else None
        import httpx  # here, not at the top: it costs ~17 MB, which a SQLite dump need not carry

        self._transport_error = httpx.TransportError
        self._path = f"/accounts/{account_id}/d1/database/{database_id}"
        self._client = httpx.Client(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "User-Agent": "patina"},
            transport=transport,
        )
        self._api_url = api_url.rstrip("/")

    @property
    def description(self) -> str:
        return f"d1://{self.account_id}/{self.database_id}"

    def close(self) -> None:
        self._client.close()

    # -- requests ---------------------------------------------------------------------------------

    def _remaining(self) -> float | None:
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"{self.description}: the dump passed its deadline; raise deadline_seconds for this database")
        return left

    def _post(self, endpoint: str, sql: str) -> dict:
        """POST one batch of SQL, retrying what can pass (429, 5xx, network) with exponential backoff."""
        last_problem = ""
        for attempt in range(self.max_attempts):
            left = self._remaining()
            timeout = self.request_timeout if left is None else min(self.request_timeout, left)
            self.requests += 1
            try:
                response = self._client.post(f"{self._path}/{endpoint}", json={"sql": sql}, timeout=timeout)
            except self._transport_error as e:
                last_problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                self._pause(attempt, None)
                continue
            status = response.status_code
            if status == 200:
                try:
                    body = response.json()
                except ValueError as e:
                    raise SourceUnavailable(f"{self.description}: the API answered 200 with a body that is not JSON") from e
                if body.get("success", False):
                    return body
                raise SourceSQLError(f"{self.description}: {_error_text(body)}")
            if status == 429 or status >= 500:
                last_problem = f"HTTP {status} {_error_text(_json_or_empty(response))}".strip()
                self._pause(attempt, response.headers.get("Retry-After"))
                continue
            body = _json_or_empty(response)
            codes = {e.get("code") for e in body.get("errors", []) if isinstance(e, dict)}
            if status in (401, 403) or 10000 in codes:
                raise AuthenticationFailed(
                    f"{self.description}: the API refused the token (HTTP {status}): check that CLOUDFLARE_API_TOKEN "
                    "is current and has D1 read permission on this account"
                )
            if status == 404:
                raise DatabaseNotFound(
                    f"{self.description}: no such database (HTTP 404): check the account id and database id "
                    "(`wrangler d1 list` shows them)"
                )
            raise SourceSQLError(f"{self.description}: HTTP {status}: {_error_text(body)}")
        error = RateLimited if last_problem.startswith("HTTP 429") else SourceUnavailable
        raise error(f"{self.description}: gave up after {self.max_attempts} attempts; last answer: {last_problem}")

    def _pause(self, attempt: int, retry_after: str | None) -> None:
        if attempt + 1 >= self.max_attempts:
            return
        delay = self.backoff_seconds * (2**attempt) * random.uniform(0.75, 1.25)
        wanted = _retry_after_seconds(retry_after)
        if wanted is not None:
            delay = max(delay, wanted)
        left = self._remaining()
        if left is not None and delay >= left:
            raise DeadlineExceeded(
                f"{self.description}: the API asked to wait {delay:.0f}s, past this dump's deadline; try later"
            )
        self._sleep(min(delay, 300.0))

    # -- Source -----------------------------------------------------------------------------------

    def query(self, sql: str) -> list[tuple]:
        body = self._post("raw", sql)
        return [tuple(row) for row in body["result"][0]["results"]["rows"]]

    def scan(self, table: TablePlan) -> Iterator[list[tuple]]:
        if not table.key:
            yield from self._scan_without_key(table)
            return
        keys = [quote_identifier(c) for c in table.key_columns]
        columns = [quote_identifier(c) for c in table.columns]
        # D1 refuses any string over 2 MB, and each row travels as one JSON string: a row whose values
        # add up to more than BIG_ROW_BYTES comes as a marker with its key, and is fetched in pieces.
        size = "+".join(f"coalesce(length(CAST({c} AS BLOB)),0)" for c in columns)
        row = (
            f"CASE WHEN {size} > {BIG_ROW_BYTES} THEN json_array('R',{','.join(_tagged(k) for k in keys)}) "
            f"ELSE json_array({','.join(_tagged(c, self._has_math_functions()) for c in columns)}) END"
        )
        key_aliases = ",".join(f"{k} AS k{i}" for i, k in enumerate(keys))
        order_inner = ",".join(keys)
        order_outer = ",".join(f"k{i}" for i in range(len(keys)))
        formatter = RowFormatter(len(keys))
        limit = min(MAX_PAGE_ROWS, max(100, self.page_bytes // 200))  # the byte budget cuts it down to size
        after: str | None = None
        while True:
            where = f" WHERE ({','.join(keys)}) > ({after})" if after else ""
            # The window sums cut the page at the byte budget, so a page of large rows stays small.
            sql = (
                f"SELECT r, n FROM (SELECT r, {order_outer}, "
                f"sum(length(r)) OVER (ORDER BY {order_outer} ROWS UNBOUNDED PRECEDING) AS running, count(*) OVER () AS n "
                f"FROM (SELECT {row} AS r, {key_aliases} FROM {table.quoted}{where} "
                f"ORDER BY {order_inner} LIMIT {limit})) WHERE running - length(r) < {int(self.page_bytes)} ORDER BY {order_outer}"
            )
            rows = self.query(sql)
            if not rows:
                return
            batch = []
            for r, _n in rows:
                values = json.loads(r)
                if values and values[0] == "R":
                    where_key = " AND ".join(f"{k}={formatter.format_value(_untag(v))}" for k, v in zip(keys, values[1:]))
                    batch.append(self._big_row(table, columns, where_key))
                else:
                    batch.append(tuple(_untag(v) for v in values))
            yield batch
            scanned = rows[0][1]
            if scanned < limit and len(rows) == scanned:
                return
            last = batch[-1]
            after = ",".join(formatter.format_value(last[i]) for i in table.key)
            # A page cut by the budget sizes the next; a page that was not asks for more rows.
            limit = min(MAX_PAGE_ROWS, limit * 2) if len(rows) == scanned else max(1, len(rows) + len(rows) // 4)

    def _scan_without_key(self, table: TablePlan) -> Iterator[list[tuple]]:
        """A rowid table whose rowid every column name hides (rowid, _rowid_ and oid all taken): nothing
        to page by, so, for this table alone, LIMIT/OFFSET in SQLite's stable scan order."""
        cells = ",".join(_tagged(quote_identifier(c), self._has_math_functions()) for c in table.columns)
        offset, limit = 0, 500
        while True:
            rows = self.query(f"SELECT json_array({cells}) FROM {table.quoted} LIMIT {limit} OFFSET {offset}")
            if rows:
                yield [tuple(_untag(v) for v in json.loads(r)) for (r,) in rows]
            if len(rows) < limit:
                return
            offset += len(rows)

    def _has_math_functions(self) -> bool:
        if self._math is None:
            try:
                self._math = bool(self.query("SELECT atan2(-0.0, -1) < 0")[0][0])
            except SourceSQLError:
                self._math = False
        return self._math

    def _big_row(self, table: TablePlan, columns: list[str], where_key: str) -> tuple:
        """One large row: numbers in one query, each TEXT or BLOB as hex pieces of its bytes."""
        described = ",".join(
            f"CASE typeof({c}) WHEN 'text' THEN 'T'||length(CAST({c} AS BLOB)) "
            f"WHEN 'blob' THEN 'B'||length({c}) ELSE {_tagged(c, self._has_math_functions())} END"
            for c in columns
        )
        rows = self.query(f"SELECT json_array({described}) FROM {table.quoted} WHERE {where_key}")
        if not rows:
            raise SourceUnavailable(f"{self.description}: a row of {table.name!r} changed while it was read; try again")
        values = []
        for column, value in zip(columns, json.loads(rows[0][0])):
            if value is None or value[0] not in "TB":
                values.append(_untag(value))
                continue
            length = int(value[1:])
            data = b"".join(
                bytes.fromhex(self.query(
                    f"SELECT hex(substr(CAST({column} AS BLOB),{start},{PIECE_BYTES})) FROM {table.quoted} WHERE {where_key}"
                )[0][0])
                for start in range(1, length + 1, PIECE_BYTES)
            )
            if value[0] == "B":
                values.append(data)
            else:
                try:
                    values.append(data.decode("utf-8"))
                except UnicodeDecodeError:
                    values.append(RawText(data))
        return tuple(values)


def _tagged(column: str, negative_zero: bool = False) -> str:
    """One value as text tagged with its type: i/r/t/b + digits, quote(), the text, or hex.

    quote() writes -0.0 as 0.0 (and no text function shows its sign); with SQLite's math functions,
    atan2 tells them apart, so a -0.0 kept in an untyped column survives too.
    """
    real = f"'r'||quote({column})"
    if negative_zero:
        real = f"CASE WHEN {column} = 0 AND atan2({column}, -1) < 0 THEN 'r-0.0' ELSE {real} END"
    return (
        f"CASE typeof({column}) WHEN 'integer' THEN 'i'||{column} WHEN 'real' THEN {real} "
        f"WHEN 'text' THEN 't'||{column} WHEN 'blob' THEN 'b'||hex({column}) END"
    )


def _untag(value: str | None):
    if value is None:
        return None
    tag, text = value[0], value[1:]
    if tag == "t":
        return text
    if tag == "i":
        return int(text)
    if tag == "r":
        return float(text)  # SQLite writes infinities as Inf or 9.0e+999; float() reads both
    return bytes.fromhex(text)


def _json_or_empty(response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_text(body: dict) -> str:
    errors = body.get("errors") or []
    return "; ".join(f"{e.get('message', '')} (code {e.get('code')})" for e in errors if isinstance(e, dict))


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
