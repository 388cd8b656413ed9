"""Where a dump reads from: a SQLite file, or a D1 database over Cloudflare's REST API.

Both answer two things: small metadata queries (`query`) and the rows of one table in key order
(`scan`), as Python values (int, float, str, bytes, None, or `RawText` for TEXT that is not UTF-8).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from .api_budget import DEFAULT_REQUESTS_PER_5_MINUTES, ApiBudget, BudgetExhausted
from .cloudflare_api import (
    DEFAULT_API_URL,
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    RATE_LIMIT_PATIENCE_SECONDS,
    CloudflareApi,
    error_codes,
    error_text,
)
from .d1_address import DEFAULT_PAGE_BYTES, parse_d1_source
from .errors import (
    AuthenticationFailed,
    DatabaseNotFound,
    DeadlineExceeded,
    SourceError,
    SourceSQLError,
    SourceUnavailable,
    TimeTravelUnavailable,
)
from .literals import RawText, RowFormatter
from .schema import SEQUENCE_SQL, SchemaPlan, TablePlan, read_schema
from .sqltext import quote_identifier

BIG_ROW_BYTES = 300_000  # JSON escaping can grow text 6x: a row's string must stay under D1's 2 MB
PIECE_BYTES = 500_000  # bytes of one value fetched at a time (1 MB of hex)
MAX_PAGE_ROWS = 50_000  # rows one page may read: D1 bills rows read and stops a query after 30 s
MAX_STATEMENT_BYTES = 100_000  # D1's limits on one statement, and on the arguments of one SQL function
MAX_FUNCTION_ARGS = 32
MAX_BOUND_PARAMETERS = 100  # D1's limit on the parameters of one query
LONG_KEY_CHARS = 1_000  # TEXT key values longer than this are bound as parameters, not written into the SQL
ROWID_BLOCK_BITS = 12  # INSERT statements never span two blocks of 4096 rowids (so a table can be split)
SCAN_BATCH_BYTES = 1 << 20  # about this much row data per batch a SQLite scan yields (see SqliteSource.scan)
SCAN_BATCH_ROWS = 1000
SPLIT_MIN_ROWIDS = 400_000  # smaller tables are not worth a second process
ALL_ROWS = 1 << 62  # LIMIT of a table read whole, inside one batch


class Source(ABC):
    """A database to dump. Use as a context manager.

    A dump reads a source in one attempt: `begin()`, `snapshot(read_schema(source))`, the scans, then
    `finish()`, after which `point_in_time` says whether everything read was one state of the database.
    """

    #: Whether the whole dump is read as one consistent snapshot (settled by `finish`).
    point_in_time: bool = True
    #: Whether `point_in_time` is known before the rows are read (else only after `finish`).
    settled_at_start: bool = True
    #: How the reads were made consistent: "one transaction", "one batch", "bookmark unchanged", "bookmark moved".
    consistency: str = "one transaction"
    #: D1's Time Travel bookmarks read when the attempt began and when it finished (None for a file).
    bookmark: str | None = None
    end_bookmark: str | None = None
    #: Requests made to a remote API (0 for a local file).
    requests: int = 0

    def begin(self) -> None:
        """Start one attempt at reading the whole database."""

    def snapshot(self, plan: SchemaPlan) -> SchemaPlan:
        """The plan to dump by; a source may read every row here, in one go, and re-read the schema with it."""
        return plan

    def finish(self) -> None:
        """After the attempt's last read: settle `point_in_time` and `consistency`."""

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


def open_source(
    spec: str,
    *,
    token: str | None = None,
    env=os.environ,
    token_env: str = "CLOUDFLARE_API_TOKEN",
    api_url: str | None = None,
    **d1_options,
) -> Source:
    """A Source for `spec`: `d1://ACCOUNT_ID/DATABASE_ID` or the path of a SQLite file. The one factory of
    sources: the command line, the nightly dumps and restore verification all open theirs here.

    The token is `token`, else the environment variable `token_env`. `d1_options` are D1Source's settings
    (page_bytes, deadline_seconds, max_attempts, requests_per_5_minutes, ...); None means the default."""
    if spec.startswith("d1://"):
        try:
            account_id, database_id = parse_d1_source(spec)
        except ValueError as exc:
            raise SourceError(f"bad D1 source (write it as d1://ACCOUNT_ID/DATABASE_ID): {exc}") from None
        token = token or env.get(token_env, "")
        if not token:
            raise AuthenticationFailed(
                f"{token_env} is not set: create an API token with D1 read permission and export it"
            )
        return D1Source(
            account_id,
            database_id,
            token=token,
            api_url=api_url or env.get("PATINA_CLOUDFLARE_API_URL") or DEFAULT_API_URL,
            **{name: value for name, value in d1_options.items() if value is not None},
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
                size = 1  # until a row tells how big rows are (a first batch of big BLOBs would not fit)
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
        # Two subqueries: SQLite seeks to each end of the b-tree for a lone min() or max(), but scans the
        # whole table for both in one SELECT.
        lo, hi = self.query(f"SELECT (SELECT min({key}) FROM {table.quoted}), (SELECT max({key}) FROM {table.quoted})")[
            0
        ]
        if lo is None or hi - lo < SPLIT_MIN_ROWIDS:
            return None
        mid = (lo + (hi - lo) // 2) >> ROWID_BLOCK_BITS << ROWID_BLOCK_BITS
        return mid if lo < mid <= hi else None

    def close(self) -> None:
        self._db.close()


class D1Source(Source):
    """A D1 database over Cloudflare's REST API (`/query` and `/raw`).

    Every value travels as text inside one JSON array per row, so nothing passes through a JSON number
    (D1 rounds integers beyond 2**53 and sends BLOBs as arrays of bytes), and no REAL as decimal text
    D1 formatted (its SQLite prints some doubles a few ulps off): a REAL comes as two integers computed
    in the query, see `_EXACT_REAL`. Rows are read by key, in pages sized to a byte budget. Every query
    stays inside D1's documented limits (100 KB statements, expression depth 100, 32 arguments per
    function, 5 compound terms, 100 result columns, 2 MB per value) and reads each row once.

    Each request is its own transaction, so each attempt starts by reading D1's Time Travel bookmark
    (which names the database's state and moves on with every write). A database whose file is at most
    `one_batch_bytes` is then read in one batch, which D1 runs as one transaction: its schema queries are
    sent again beside a whole-table read of every table, and the plan is re-read from those answers, so
    the schema and every row come from one state. A bigger one is paged, and the bookmark read again at
    the end: unchanged, no write happened in between, and the dump is one point in time, proven.

    Every request first finds room in the token's `ApiBudget`; a 429 pauses every user of the token.
    """

    point_in_time = False
    settled_at_start = False
    consistency = "not read yet"
    #: Rows D1 read for this source's queries, as its answers' `meta.rows_read` say (D1 bills them).
    rows_read: int = 0

    def __init__(
        self,
        account_id: str,
        database_id: str,
        *,
        token: str,
        api_url: str = DEFAULT_API_URL,
        page_bytes: int = DEFAULT_PAGE_BYTES,
        deadline_seconds: float | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
        request_timeout: float = 60.0,
        one_batch_bytes: int | None = None,
        requests_per_5_minutes: int = DEFAULT_REQUESTS_PER_5_MINUTES,
        budget: ApiBudget | None = None,
        rate_limit_patience_seconds: float = RATE_LIMIT_PATIENCE_SECONDS,
        operation: str = "dump",  # what the reads are for, in messages (an import reads its target too)
        transport=None,
        sleep=time.sleep,
    ) -> None:
        self.account_id = account_id
        self.database_id = database_id
        self.page_bytes = page_bytes
        self.one_batch_bytes = page_bytes if one_batch_bytes is None else one_batch_bytes
        self.budget = budget or ApiBudget(api_url, token, limit=requests_per_5_minutes, sleep=sleep)
        self._math: bool | None = None
        self._batch: dict[str, list[tuple]] | None = None  # answers of the attempt's one batch, by SQL
        self._recorded: list[str] | None = None  # the schema queries of this attempt, to send again in the batch
        self._refused: dict[str, str] = {}  # schema queries D1 refused, and why
        self._outside_batch = False  # whether data was read outside the batch (a big row, a table without key)
        self._one_batch = False
        self.deadline = time.monotonic() + deadline_seconds if deadline_seconds else None
        self._path = f"/accounts/{account_id}/d1/database/{database_id}"
        self._api = CloudflareApi(
            api_url,
            token,
            where=self.description,
            operation=operation,
            budget=self.budget,
            budget_exhausted=self._budget_exhausted,
            max_attempts=max_attempts,
            backoff_seconds=backoff_seconds,
            request_timeout=request_timeout,
            rate_limit_patience_seconds=rate_limit_patience_seconds,
            remaining=self._remaining,
            transport=transport,
            sleep=sleep,
        )

    @property
    def description(self) -> str:
        return f"d1://{self.account_id}/{self.database_id}"

    @property
    def requests(self) -> int:  # type: ignore[override]
        return self._api.requests

    def close(self) -> None:
        self._api.close()

    # -- one point in time -------------------------------------------------------------------------

    def begin(self) -> None:
        self._batch, self._refused, self._outside_batch = None, {}, False
        self.bookmark, self.end_bookmark = self._read_bookmark(), None
        size = self._request("GET", "")["result"].get("file_size")
        self._one_batch = isinstance(size, int) and size <= self.one_batch_bytes
        self._recorded = [] if self._one_batch else None
        self.point_in_time, self.consistency = False, "reading"

    def snapshot(self, plan: SchemaPlan) -> SchemaPlan:
        recorded, self._recorded = self._recorded, None
        if not self._one_batch or recorded is None:
            return plan
        scans = [self._page_sql(t, None, ALL_ROWS) for t in plan.tables if t.data == "rows" and t.key]
        statements = list(dict.fromkeys(recorded + ([SEQUENCE_SQL] if plan.has_sequence else []) + scans))
        try:
            body = self._request("POST", "raw", {"batch": [{"sql": sql} for sql in statements]})
        except SourceSQLError:  # refused whole (too big, too slow): page it, and let the bookmarks decide
            return plan
        self._batch = {
            sql: [tuple(row) for row in answer["results"]["rows"]] for sql, answer in zip(statements, body["result"])
        }
        # The plan as of the batch: when the schema changed after the first read, a query it needs now is
        # not in the batch, so it is read outside it, and `finish` falls back on the bookmarks.
        return read_schema(self)

    def finish(self) -> None:
        self.end_bookmark = self._read_bookmark()
        if self._batch is not None and not self._outside_batch:
            self.point_in_time, self.consistency = True, "one batch"
        elif self.end_bookmark == self.bookmark:
            self.point_in_time, self.consistency = True, "bookmark unchanged"
        else:
            self.point_in_time, self.consistency = False, "bookmark moved"
        self._batch = None

    def _read_bookmark(self) -> str:
        try:
            body = self._request("GET", "time_travel/bookmark", refusal=TimeTravelUnavailable)
        except TimeTravelUnavailable as e:
            raise TimeTravelUnavailable(
                f"{e}. Patina reads the database's Time Travel bookmark to prove each backup is one point in time "
                "and to offer `wrangler d1 time-travel restore` as the exact alternative; only databases on D1's "
                "production storage have Time Travel (`wrangler d1 info DB` shows the version): move the data to a "
                "new D1 database, or give the token D1 read permission on this account"
            ) from None
        bookmark = (body.get("result") or {}).get("bookmark")
        if not isinstance(bookmark, str) or not bookmark:
            raise TimeTravelUnavailable(f"{self.description}: the Time Travel bookmark request answered no bookmark")
        return bookmark

    # -- requests ---------------------------------------------------------------------------------

    def _remaining(self) -> float | None:
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(
                f"{self.description}: the dump passed its deadline; raise deadline_seconds for this database"
            )
        return left

    def _request(self, method: str, endpoint: str, payload: dict | None = None, *, refusal=SourceSQLError) -> dict:
        """One API call through the token's one request path (cloudflare_api.py: budget, retries, 429s);
        a refusal says what to fix for a database, else raises `refusal`."""

        def refused(status: int, body: dict) -> Exception:
            if status == 200:  # answered, but not a success: the query (or the request) was refused
                return refusal(f"{self.description}: {error_text(body)}")
            if status in (401, 403) or 10000 in error_codes(body):
                return AuthenticationFailed(
                    f"{self.description}: the API refused the token (HTTP {status}): check that CLOUDFLARE_API_TOKEN "
                    "is current and has D1 read permission on this account"
                )
            if status == 404 and self.bookmark is not None:
                return DatabaseNotFound(
                    f"{self.description}: the database disappeared during the dump (HTTP 404): it was deleted, or "
                    "its id changed; nothing was stored. `wrangler d1 list` shows the databases there are; fix "
                    "database_id, or remove the database from patina.yaml"
                )
            if status == 404:
                return DatabaseNotFound(
                    f"{self.description}: no such database (HTTP 404): check the account id and database id "
                    "(`wrangler d1 list` shows them)"
                )
            return refusal(f"{self.description}: HTTP {status}: {error_text(body)}")

        url = f"{self._path}/{endpoint}" if endpoint else self._path
        return self._api.call(method, url, refused, json=payload)

    def _budget_exhausted(self, e: BudgetExhausted) -> Exception:
        return DeadlineExceeded(
            f"{self.description}: the API budget (cloudflare.requests_per_5_minutes) has no room for {e.wait:.0f}s, "
            "past this dump's deadline: raise the budget or the deadline, or spread the databases out"
        )

    # -- Source -----------------------------------------------------------------------------------

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        """Rows of `sql` (with bound `params`): from the attempt's batch when it holds them, else over the API."""
        if params:  # a page after a long key, or a row fetched by one: never part of the batch
            if self._batch is not None:
                self._outside_batch = True
            return self._live_query(sql, params)
        if self._batch is not None:
            if sql in self._batch:
                return self._batch[sql]
            if sql in self._refused:
                raise SourceSQLError(self._refused[sql])
            self._outside_batch = True
        try:
            rows = self._live_query(sql)
        except SourceSQLError as e:
            self._refused[sql] = str(e)
            raise
        if self._recorded is not None:
            self._recorded.append(sql)
        return rows

    def _live_query(self, sql: str, params: list | None = None) -> list[tuple]:
        body = self._request("POST", "raw", {"sql": sql, **({"params": params} if params else {})})
        result = body["result"][0]
        self.rows_read += int((result.get("meta") or {}).get("rows_read") or 0)
        return [tuple(row) for row in result["results"]["rows"]]

    def scan(self, table: TablePlan) -> Iterator[list[tuple]]:
        """Pages of rows in key order, each one plain `SELECT ... ORDER BY key LIMIT n`: D1 bills the rows
        a query reads, and a window function (a running byte total, say) reads every row three times.

        The page size follows the bytes the last page carried (`page_bytes` a page); a row much bigger
        than the page's average (over `threshold`) comes as a marker with its size and key instead, so
        no page carries more than about 8 x `page_bytes`, and is fetched by key afterwards: with rows
        like the rest in batches, over BIG_ROW_BYTES (D1 refuses strings over 2 MB) in pieces.
        """
        if not table.key:
            yield from self._scan_without_key(table)
            return
        keys = [quote_identifier(c) for c in table.key_columns]
        columns = [quote_identifier(c) for c in table.columns]
        exact = self._has_math_functions()
        cells = _json_row([_tagged(c, exact) for c in columns])
        formatter = RowFormatter(len(keys))
        limit = max(1, min(1000, self.page_bytes // 200))
        if self._batch is not None and self._page_sql(table, None, ALL_ROWS) in self._batch:
            limit = ALL_ROWS  # the whole table came in the attempt's one batch
        after: str | None = None
        after_params: list = []
        while True:
            rows = self.query(self._page_sql(table, after, limit), after_params)
            if not rows:
                return
            batch: list = []
            later: list[tuple[int, tuple, int]] = []  # (place in batch, key, bytes) of rows fetched by key
            carried = 0
            for (r,) in rows:
                values = _flat(json.loads(r))
                if values[0] == "R":
                    carried += values[1]
                    key = _untag_row(values[2:], table)
                    if values[1] > BIG_ROW_BYTES:
                        batch.append(self._big_row(table, columns, *self._key_condition(keys, [key], formatter)))
                    else:
                        later.append((len(batch), key, values[1]))
                        batch.append(None)
                else:
                    carried += len(r)
                    batch.append(_untag_row(values, table))
            if later:
                self._fetch_by_key(table, cells, keys, formatter, batch, later)
            yield batch
            if len(rows) < limit:
                return
            parts, after_params = _key_sql([batch[-1][i] for i in table.key], formatter)
            after = ",".join(parts)
            average = max(1, carried // len(rows))
            limit = max(1, min(MAX_PAGE_ROWS, limit * 2, self.page_bytes // average))

    @staticmethod
    def _key_condition(keys: list[str], key_values: list[tuple], formatter: RowFormatter) -> tuple[str, list]:
        """SQL true for the rows whose key is one of `key_values` (no compound SELECT, no long OR chain),
        and the parameters it binds (long TEXT keys, see `_key_sql`)."""
        rendered, params = [], []
        for key in key_values:
            parts, bound = _key_sql(list(key), formatter)
            rendered.append(parts)
            params += bound
        if len(keys) == 1:
            return f"{keys[0]} IN ({','.join(parts[0] for parts in rendered)})", params
        tuples = ",".join("(" + ",".join(parts) + ")" for parts in rendered)
        return f"({','.join(keys)}) IN (VALUES {tuples})", params

    def _fetch_by_key(
        self,
        table: TablePlan,
        cells: str,
        keys: list[str],
        formatter: RowFormatter,
        batch: list,
        later: list[tuple[int, tuple, int]],
    ) -> None:
        """Fill the places of `later` in `batch`: a few queries by key, each within the page budget."""
        start = 0
        while start < len(later):
            end, carried = start, 0
            bound = 0
            while end < len(later) and (
                end == start
                or (
                    carried + later[end][2] <= self.page_bytes
                    and end - start < 500
                    and bound + _long_texts(later[end][1]) <= MAX_BOUND_PARAMETERS
                )
            ):
                carried += later[end][2]
                bound += _long_texts(later[end][1])
                end += 1
            group = later[start:end]
            condition, params = self._key_condition(keys, [key for _, key, _ in group], formatter)
            sql = f"SELECT {cells} FROM {table.quoted} WHERE {condition}"
            found = {}
            for (r,) in self.query(self._within_statement_limit(sql, table), params):
                row = _untag_row(_flat(json.loads(r)), table)
                found[tuple(row[i] for i in table.key)] = row
            for place, key, _ in group:
                if key not in found:
                    raise SourceUnavailable(
                        f"{self.description}: a row of {table.name!r} changed while it was read; try again"
                    )
                batch[place] = found[key]
            start = end

    def _within_statement_limit(self, sql: str, table: TablePlan) -> str:
        size = len(sql.encode("utf-8"))
        if size > MAX_STATEMENT_BYTES:
            raise SourceError(
                f"{self.description}: reading table {table.name!r} takes a {size:,}-byte statement, over D1's limit of "
                f"{MAX_STATEMENT_BYTES:,} bytes (its column names or key values are very long); "
                "export it with `wrangler d1 export` or shorten the names"
            )
        return sql

    def _page_sql(self, table: TablePlan, after: str | None, limit: int) -> str:
        """One page of `table`: at most `limit` rows after the key `after`, each a JSON array of tagged
        values, or, for a row over the page's share of `page_bytes` (BIG_ROW_BYTES for a table read whole
        in the one batch), a marker `['R', bytes, key...]` to fetch it by key afterwards."""
        keys = [quote_identifier(c) for c in table.key_columns]
        columns = [quote_identifier(c) for c in table.columns]
        exact = self._has_math_functions()
        # A balanced sum: a chain of 100 `+` passes D1's expression depth of 100.
        size = _balanced_sum([f"coalesce(length(CAST({c} AS BLOB)),0)" for c in columns])
        cells = _json_row([_tagged(c, exact) for c in columns])
        marker = _json_row(["'R'", size] + [_tagged(k, exact) for k in keys])
        order = ",".join(keys)
        threshold = BIG_ROW_BYTES if limit >= ALL_ROWS else min(BIG_ROW_BYTES, max(64, 8 * self.page_bytes // limit))
        where = f" WHERE ({order}) > ({after})" if after else ""
        sql = (
            f"SELECT CASE WHEN {size} > {threshold} THEN {marker} ELSE {cells} END "
            f"FROM {table.quoted}{where} ORDER BY {order} LIMIT {limit}"
        )
        return self._within_statement_limit(sql, table)

    def _scan_without_key(self, table: TablePlan) -> Iterator[list[tuple]]:
        """A rowid table whose rowid every column name hides (rowid, _rowid_ and oid all taken): nothing
        to page by, so, for this table alone, LIMIT/OFFSET in SQLite's stable scan order."""
        exact = self._has_math_functions()
        cells = _json_row([_tagged(quote_identifier(c), exact) for c in table.columns])
        offset, limit = 0, 500
        while True:
            sql = f"SELECT {cells} FROM {table.quoted} LIMIT {limit} OFFSET {offset}"
            rows = self.query(self._within_statement_limit(sql, table))
            if rows:
                yield [_untag_row(_flat(json.loads(r)), table) for (r,) in rows]
            if len(rows) < limit:
                return
            offset += len(rows)

    def _has_math_functions(self) -> bool:
        """Whether D1 has the SQLite math functions the exact REAL carrier needs (see `_EXACT_REAL`)."""
        if self._math is None:
            try:
                self._math = bool(
                    self._live_query(
                        "SELECT atan2(-0.0,-1) < 0 AND log2(8.0) = 3 AND floor(-2.5) = -3 AND pow(2,-1074) > 0"
                    )[0][0]
                )
            except SourceSQLError:
                self._math = False
        return self._math

    def _big_row(self, table: TablePlan, columns: list[str], where_key: str, params: list) -> tuple:
        """One large row (`where_key`, binding `params`, selects it): numbers in one query, each TEXT or BLOB
        as hex pieces."""
        exact = self._has_math_functions()
        described = _json_row(
            [
                f"CASE typeof({c}) WHEN 'text' THEN 'T'||length(CAST({c} AS BLOB)) "
                f"WHEN 'blob' THEN 'B'||length({c}) ELSE {_tagged(c, exact)} END"
                for c in columns
            ]
        )
        rows = self.query(f"SELECT {described} FROM {table.quoted} WHERE {where_key}", params)
        if not rows:
            raise SourceUnavailable(f"{self.description}: a row of {table.name!r} changed while it was read; try again")
        values = []
        for column, value in zip(columns, _flat(json.loads(rows[0][0]))):
            if value is None or value[0] not in "TB":
                values.append(_untag_row([value], table)[0])
                continue
            length = int(value[1:])
            data = b"".join(
                bytes.fromhex(
                    self.query(
                        f"SELECT hex(substr(CAST({column} AS BLOB),{start},{PIECE_BYTES})) FROM {table.quoted} WHERE {where_key}",
                        params,
                    )[0][0]
                )
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


# A REAL `v` as exact integers, computed by D1's SQLite, never as decimal text it formatted (D1's SQLite
# 3.47 prints doubles with large exponents a few ulps off). `s` is the binary exponent of the lowest
# mantissa bit to keep, from floor(log2|v|) less 54: two bits of slack, so a log2 rounded up across a
# power of two still leaves all 53 bits in the integer `m` = v / 2**s (|m| < 2**56; exact, a division by
# a power of two), and clamped at -1074 for subnormals. The same query checks m * 2**s = v and answers
# 'e' when it does not hold: the reader then fails rather than round. 0, -0.0 (told apart by atan2's
# sign) and the infinities (9e999 parses as +inf everywhere) come as 'r' and their text.
_EXACT_REAL = (
    "CASE WHEN v=0 THEN CASE WHEN atan2(v,-1)<0 THEN 'r-0' ELSE 'r0' END "
    "WHEN abs(v)=9e999 THEN CASE WHEN v>0 THEN 'r+inf' ELSE 'r-inf' END "
    "ELSE (SELECT CASE WHEN m*pow(2,s)=v THEN 'p'||m||'p'||s ELSE 'e' END FROM "
    "(SELECT CAST(v/pow(2,s) AS INTEGER) AS m,s FROM (SELECT CAST(max(floor(log2(abs(v)))-54,-1074) AS INTEGER) AS s))) END"
)
# Without SQLite's math functions a REAL cannot be carried exactly: it comes as '!' and the reader fails.
_NO_EXACT_REAL = "'!'"


def _tagged(column: str, exact_reals: bool) -> str:
    """One value as text tagged with its type: i + digits, a REAL's exact form (see `_EXACT_REAL`),
    t + the text, b + hex. The value is named once, as `v` of a subquery, to keep statements short."""
    real = _EXACT_REAL if exact_reals else _NO_EXACT_REAL
    return (
        f"(SELECT CASE typeof(v) WHEN 'integer' THEN 'i'||v WHEN 'real' THEN {real} "
        f"WHEN 'text' THEN 't'||v WHEN 'blob' THEN 'b'||hex(v) END FROM (SELECT {column} AS v))"
    )


def _key_sql(values: list, formatter: RowFormatter) -> tuple[list[str], list]:
    """Key values as SQL for a WHERE clause, and the parameters they bind: literals, except TEXT longer than
    LONG_KEY_CHARS, which is bound as a parameter (D1 allows 100 KB per statement, but 2 MB per value: a TEXT
    primary key of 120 KB can only be named by a parameter). Only TEXT: JSON carries it exactly, whereas
    integers past 2**53 and BLOBs do not survive JSON."""
    parts, params = [], []
    for value in values:
        if type(value) is str and len(value) > LONG_KEY_CHARS:
            parts.append("?")
            params.append(value)
        else:
            parts.append(formatter.format_value(value))
    return parts, params


def _long_texts(key: tuple) -> int:
    """How many parameters `_key_sql` binds for `key`."""
    return sum(1 for value in key if type(value) is str and len(value) > LONG_KEY_CHARS)


def _json_row(cells: list[str]) -> str:
    """`json_array` of `cells`, nested in groups when they pass D1's 32 arguments per function."""
    if len(cells) <= MAX_FUNCTION_ARGS:
        return f"json_array({','.join(cells)})"
    groups = [cells[i : i + MAX_FUNCTION_ARGS] for i in range(0, len(cells), MAX_FUNCTION_ARGS)]
    return _json_row([_json_row(group) for group in groups])


def _flat(values: list) -> list:
    """The values of a `_json_row`, its groups (lists: no tagged value is one) joined again."""
    if values and isinstance(values[0], list):
        return [v for group in values for v in _flat(group)]
    return values


def _balanced_sum(terms: list[str]) -> str:
    """`a+b+...` as a balanced tree: depth grows with log2 of the terms, not with their number."""
    if len(terms) == 1:
        return terms[0]
    middle = len(terms) // 2
    return f"({_balanced_sum(terms[:middle])}+{_balanced_sum(terms[middle:])})"


def _untag_row(values: list, table: TablePlan) -> tuple:
    try:
        return tuple(map(_untag, values))
    except _Unreadable as e:
        raise SourceError(f"table {table.name!r}: {e}") from None


class _Unreadable(Exception):
    pass


def _untag(value: str | None):
    if value is None:
        return None
    tag, text = value[0], value[1:]
    if tag == "t":
        return text
    if tag == "i":
        return int(text)
    if tag == "p":
        mantissa, _, exponent = text.partition("p")
        return math.ldexp(float(int(mantissa)), int(exponent))  # |mantissa| < 2**56 and holds 53 bits: exact
    if tag == "r":
        return float(text)  # only 0, -0, +inf and -inf come as text
    if tag == "b":
        return bytes.fromhex(text)
    if tag == "!":
        raise _Unreadable(
            "it holds REAL values and this D1 lacks SQLite's math functions (log2, pow, floor, atan2) that read "
            "them exactly; Patina does not round them, so nothing was written: export with `wrangler d1 export`"
        )
    raise _Unreadable(
        "D1 could not rebuild a REAL value exactly from its mantissa and exponent; Patina does not round it, "
        "so nothing was written (please report this value)"
    )
