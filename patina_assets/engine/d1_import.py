"""Restore a dump into a D1 database through Cloudflare's import API, the way `wrangler d1 execute --file` does.

The protocol (``POST /accounts/{account}/d1/database/{id}/import``):

1. ``init`` with the file's MD5 as ``etag``: D1 answers a presigned ``upload_url`` and a ``filename`` (or, if it
   already holds a file with that MD5, starts ingesting it at once);
2. ``PUT`` the file to ``upload_url``; the answer's ``ETag`` must be the same MD5, so the bytes arrived whole;
3. ``ingest`` with the etag and filename: D1 starts running the SQL and answers ``at_bookmark``;
4. ``poll`` with ``current_bookmark`` until ``status`` is ``complete`` (with ``num_queries`` and the
   ``final_bookmark``) or ``error``. An import is one transaction: a failed one leaves the database as it was.

The SQL goes up uncompressed, as D1 wants it; a ``.sql.gz``/``.sql.zst`` dump is decompressed to a temporary
file first. A Patina dump restores into an EMPTY database (it has no ``DROP TABLE``): ``tables_in`` lets the
caller check the target before importing, and ``count_rows`` lets it check the result.

Every request to the API (init, ingest, poll, and the queries on the target) takes the token's one request
path, ``CloudflareApi`` (cloudflare_api.py), and so its ``ApiBudget``: a restore and the nightly dumps on one
token stay inside one budget, a 429 the restore meets pauses them all, and a lockout is waited out for up to
``rate_limit_patience_seconds`` rather than spending the import's ``max_attempts``. The upload goes to a
presigned storage URL instead, which is not the API and does not count against the token.

Errors are ``D1ImportError`` (a ``RestoreError``) whose messages say what failed and what to do; they never
contain the token or the presigned URL.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .api_budget import DEFAULT_REQUESTS_PER_5_MINUTES, ApiBudget, BudgetExhausted
from .cloudflare_api import (
    MAX_PAUSE_SECONDS,
    RATE_LIMIT_PATIENCE_SECONDS,
    CloudflareApi,
    error_codes,
    error_text,
    retry_after_seconds,
)
from .errors import (
    AuthenticationFailed,
    DatabaseNotFound,
    RestoreError,
    SourceError,
    SourceUnavailable,
)
from .formats import open_dump_bytes
from .sources import D1Source
from .sqltext import quote_identifier

CHUNK = 1024 * 1024
#: Tables D1 itself owns (`_cf_KV`, `_cf_METADATA`) and SQLite's own; neither is part of a backup.
_USER_TABLES = (
    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
    "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' ORDER BY name"
)


class D1ImportError(RestoreError):
    """The import into D1 failed or could not be confirmed. D1 rolls a failed import back."""

    retryable = False


class D1ImportUnavailable(D1ImportError):
    """The API could not be reached or kept failing (429, 5xx); trying again later may work."""

    retryable = True


@dataclass
class D1ImportResult:
    account_id: str
    database_id: str
    sql_bytes: int
    md5: str
    num_queries: int | None
    at_bookmark: str | None  # Time Travel bookmark from before the import: `wrangler d1 time-travel restore` to undo
    final_bookmark: str | None
    seconds: float
    polls: int
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "target": f"d1://{self.account_id}/{self.database_id}",
            "sqlBytes": self.sql_bytes,
            "md5": self.md5,
            "numQueries": self.num_queries,
            "atBookmark": self.at_bookmark,
            "finalBookmark": self.final_bookmark,
            "seconds": round(self.seconds, 3),
            "polls": self.polls,
        }


class D1Importer:
    """One D1 database's import API.

    ``clock`` (wall-clock seconds) and ``sleep`` make the token's ``ApiBudget`` when none is given; every
    wait and every time the importer reads (backoffs, budget pauses, polls, its timeout) is then the budget's,
    so a test that injects one clock and its sleep never waits for real. With ``budget``, its own serve.
    """

    def __init__(
        self,
        account_id: str,
        database_id: str,
        *,
        token: str,
        api_url: str,
        poll_interval: float = 0.25,
        max_poll_interval: float = 5.0,
        timeout_seconds: float = 3600.0,
        max_attempts: int = 6,
        backoff_seconds: float = 1.0,
        request_timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        requests_per_5_minutes: int = DEFAULT_REQUESTS_PER_5_MINUTES,
        budget: ApiBudget | None = None,
        rate_limit_patience_seconds: float = RATE_LIMIT_PATIENCE_SECONDS,
    ) -> None:
        if not token:
            raise D1ImportError(
                "no Cloudflare API token: set the variable named by cloudflare.api_token_env "
                "(CLOUDFLARE_API_TOKEN by default) to a token with D1 Edit permission"
            )
        self.account_id, self.database_id = account_id, database_id
        self.token, self.api_url = token, api_url.rstrip("/")
        self.poll_interval, self.max_poll_interval = poll_interval, max(poll_interval, max_poll_interval)
        self.timeout_seconds = timeout_seconds
        self.max_attempts, self.backoff_seconds = max_attempts, backoff_seconds
        self.rate_limit_patience_seconds = rate_limit_patience_seconds
        self._transport = transport
        # The token's requests count in the same budget as its dumps' (see engine/api_budget.py).
        self.budget = budget or ApiBudget(self.api_url, token, limit=requests_per_5_minutes, clock=clock, sleep=sleep)
        self._sleep, self._clock = self.budget.sleep, self.budget.now
        self._path = f"/accounts/{account_id}/d1/database/{database_id}/import"
        self._api = CloudflareApi(
            self.api_url,
            token,
            where=self.target,
            operation="import",
            budget=self.budget,
            budget_exhausted=self._budget_exhausted,
            max_attempts=max_attempts,
            backoff_seconds=backoff_seconds,
            request_timeout=request_timeout,
            rate_limit_patience_seconds=rate_limit_patience_seconds,
            transport=transport,
        )
        # Uploads go to a presigned URL elsewhere: no Authorization header may travel there.
        self._uploads = httpx.Client(transport=transport, timeout=request_timeout, headers={"User-Agent": "patina"})

    @property
    def target(self) -> str:
        return f"d1://{self.account_id}/{self.database_id}"

    def close(self) -> None:
        self._api.close()
        self._uploads.close()

    def __enter__(self) -> D1Importer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the target database ---------------------------------------------------------------------

    def _source(self) -> D1Source:
        return D1Source(
            self.account_id,
            self.database_id,
            token=self.token,
            api_url=self.api_url,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
            rate_limit_patience_seconds=self.rate_limit_patience_seconds,
            operation="import",
            transport=self._transport,
            sleep=self._sleep,
            budget=self.budget,
        )

    def _query(self, sql: str, what: str) -> list[tuple]:
        """A query on the target through the REST API (the engine's D1 source), with import-minded errors."""
        try:
            with self._source() as source:
                return source.query(sql)
        except AuthenticationFailed as exc:
            raise D1ImportError(
                f"{self.target}: the API refused the token when trying to {what}: it needs D1 Edit "
                "permission on this account"
            ) from exc
        except DatabaseNotFound as exc:
            raise D1ImportError(
                f"{self.target}: no such database: check the account id and database id "
                "(`wrangler d1 list`), or create the database first (`wrangler d1 create`)"
            ) from exc
        except SourceUnavailable as exc:
            raise D1ImportUnavailable(f"could not {what}: {exc}") from exc
        except SourceError as exc:
            raise D1ImportError(f"could not {what}: {exc}") from exc

    def tables_in(self) -> list[str]:
        """The tables and views the target holds (D1's own ``_cf_*`` tables excluded)."""
        return [row[0] for row in self._query(_USER_TABLES, "list the target's tables")]

    def count_rows(self, tables: list[str]) -> dict[str, int]:
        """``count(*)`` of each table, 50 tables a request: one row of scalar subqueries, since D1 allows
        no more than 5 terms in a compound SELECT (UNION ALL) and 100 result columns."""
        counts: dict[str, int] = {}
        for start in range(0, len(tables), 50):
            batch = tables[start : start + 50]
            sql = "SELECT " + ",".join(f"(SELECT count(*) FROM {quote_identifier(t)})" for t in batch)
            [row] = self._query(sql, "count the restored rows")
            counts.update(zip(batch, map(int, row)))
        return counts

    # -- the import ------------------------------------------------------------------------------

    def import_file(self, sql_path: Path | str) -> D1ImportResult:
        """Import a plain ``.sql`` file: init, upload (MD5 checked), ingest, poll until complete or error."""
        started = self._clock()
        path = Path(sql_path)
        size, md5 = _md5_of(path)
        if size == 0:
            raise D1ImportError(f"{path} is empty: there is nothing to import")
        init = self._call({"action": "init", "etag": md5}, "start the import (init)")
        if init.get("upload_url"):
            filename = init.get("filename")
            if not isinstance(filename, str) or not filename:
                raise D1ImportError(f"{self.target}: init answered an upload URL but no filename; cannot continue")
            self._upload(init["upload_url"], path, size, md5)
            ingest = self._call({"action": "ingest", "etag": md5, "filename": filename}, "start ingesting (ingest)")
        else:  # D1 already had this exact file and started ingesting it
            ingest = init
        at_bookmark = ingest.get("at_bookmark")
        outcome, polls = self._poll(ingest, at_bookmark, started)
        result = outcome.get("result") if isinstance(outcome.get("result"), dict) else {}
        return D1ImportResult(
            account_id=self.account_id,
            database_id=self.database_id,
            sql_bytes=size,
            md5=md5,
            num_queries=result.get("num_queries"),
            at_bookmark=at_bookmark,
            final_bookmark=result.get("final_bookmark"),
            seconds=self._clock() - started,
            polls=polls,
            meta=result.get("meta") if isinstance(result.get("meta"), dict) else {},
        )

    def _poll(self, answer: dict, at_bookmark: Any, started: float) -> tuple[dict, int]:
        """Poll until the import ends: soon at first (small imports take a moment), then every few seconds."""
        polls = 0
        interval = self.poll_interval
        while True:
            status = answer.get("status")
            if status == "complete":
                return answer, polls
            if status == "error":
                detail = answer.get("error") or "; ".join(map(str, answer.get("errors") or [])) or "no detail given"
                raise D1ImportError(
                    f"{self.target}: D1 refused the import and rolled it back: {_clip(detail)}. "
                    "The database is as it was before. A Patina dump restores into an EMPTY database: "
                    "if tables already exist, restore into a new database (`wrangler d1 create`)"
                )
            if not isinstance(at_bookmark, str) or not at_bookmark:
                raise D1ImportError(f"{self.target}: the import answered status {status!r} without a bookmark to poll")
            if self._clock() - started >= self.timeout_seconds:
                raise D1ImportError(
                    f"{self.target}: the import was still running after {self.timeout_seconds:.0f}s; it may yet "
                    f'finish: check with `wrangler d1 execute ... --remote --command "SELECT count(*) FROM ..."`'
                )
            self._sleep(interval)
            interval = min(interval * 2, self.max_poll_interval)
            polls += 1
            answer = self._call({"action": "poll", "current_bookmark": at_bookmark}, "poll the import")

    def _upload(self, url: str, path: Path, size: int, md5: str) -> None:
        """PUT the file to the presigned URL with its length (presigned PUTs refuse chunked bodies)."""
        last = ""
        for attempt in range(self.max_attempts):
            try:
                with open(path, "rb") as body:
                    response = self._uploads.put(
                        url,
                        content=_chunks(body),
                        headers={"Content-Length": str(size), "Content-Type": "application/sql"},
                    )
            except httpx.TransportError as exc:
                last = type(exc).__name__
                self._pause(attempt, None)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last = f"HTTP {response.status_code}"
                self._pause(attempt, response.headers.get("Retry-After"))
                continue
            if response.status_code >= 400:
                raise D1ImportError(
                    f"{self.target}: the upload was refused (HTTP {response.status_code}); "
                    "the presigned URL may have expired: run the restore again"
                )
            etag = (response.headers.get("ETag") or "").strip().strip('"').lower()
            if etag != md5:
                raise D1ImportError(
                    f"{self.target}: the uploaded file did not arrive intact (the storage answered ETag "
                    f"{etag[:32] or 'none'}, the file's MD5 is {md5}); nothing was imported: run the restore again"
                )
            return
        raise D1ImportUnavailable(
            f"{self.target}: the upload failed {self.max_attempts} times (last: {last}); "
            "nothing was imported: try again later"
        )

    def _call(self, body: dict, what: str) -> dict:
        """POST to the import endpoint through the token's one request path and return its ``result``."""

        def refused(status: int, envelope: dict) -> Exception:
            if status in (401, 403) or 10000 in error_codes(envelope):
                return D1ImportError(
                    f"{self.target}: the API refused the token (HTTP {status}) when trying to {what}: "
                    "it needs D1 Edit permission on this account"
                )
            if status == 404:
                return D1ImportError(
                    f"{self.target}: no such database (HTTP 404): check the account id and database "
                    "id (`wrangler d1 list`), or create the database first (`wrangler d1 create`)"
                )
            return D1ImportError(f"{self.target}: could not {what}: HTTP {status} {_clip(error_text(envelope))}")

        def gave_up(attempts: int, last: str) -> Exception:
            return D1ImportUnavailable(
                f"{self.target}: could not {what} after {attempts} attempts (last answer: {last}); try again later"
            )

        try:
            envelope = self._api.call("POST", self._path, refused, json=body, gave_up=gave_up)
        except SourceUnavailable as exc:  # 429s past the patience (RateLimited), or a 200 that is not JSON
            raise D1ImportUnavailable(f"could not {what}: {exc}") from exc
        result = envelope.get("result")
        if not isinstance(result, dict):
            raise D1ImportError(f"{self.target}: could not {what}: the API answered without a result")
        if result.get("success") is False:
            raise D1ImportError(f"{self.target}: could not {what}: {_clip(str(result.get('error') or 'refused'))}")
        return result

    def _budget_exhausted(self, e: BudgetExhausted) -> Exception:
        return D1ImportUnavailable(f"{self.target}: {e}; try again later")

    def _pause(self, attempt: int, retry_after: str | None) -> None:
        """The upload's backoff. The presigned URL is storage, not the API: its 429s say nothing of the
        token, so they are retried here and pause no one else."""
        if attempt + 1 >= self.max_attempts:
            return
        delay = self.backoff_seconds * (2**attempt) * random.uniform(0.75, 1.25)
        wanted = retry_after_seconds(retry_after)
        self._sleep(min(max(delay, wanted or 0.0), MAX_PAUSE_SECONDS))


@dataclass
class PlainSQL:
    """A dump as a plain ``.sql`` file (decompressed into a temporary directory when it was compressed)."""

    path: Path
    _tmp: tempfile.TemporaryDirectory | None = None

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def plain_sql(dump_path: Path | str) -> PlainSQL:
    """The dump's SQL as a plain file: itself if it is plain, else a decompressed temporary copy."""
    dump_path = Path(dump_path)
    with open(dump_path, "rb") as probe:
        head = probe.read(4)
    if not (head.startswith(b"\x1f\x8b") or head == b"\x28\xb5\x2f\xfd"):
        return PlainSQL(dump_path)
    tmp = tempfile.TemporaryDirectory(prefix="patina-d1-import-")
    target = Path(tmp.name) / "dump.sql"
    try:
        with open_dump_bytes(dump_path) as source, open(target, "wb") as out:
            shutil.copyfileobj(source, out, CHUNK)
    except BaseException:
        tmp.cleanup()
        raise
    return PlainSQL(target, tmp)


def import_dump(
    dump_path: Path | str,
    account_id: str,
    database_id: str,
    *,
    token: str,
    api_url: str,
    expected_rows: Mapping[str, int] | None = None,
    require_empty: bool = True,
    **options: Any,
) -> D1ImportResult:
    """Import a dump into D1: check the target is empty, import, then check each table's row count.

    ``expected_rows`` (table -> rows, e.g. from ``DumpReader``) is compared with ``count(*)`` on D1 afterwards;
    a difference raises ``D1ImportError`` naming the tables.
    """
    with D1Importer(account_id, database_id, token=token, api_url=api_url, **options) as importer:
        if require_empty:
            existing = importer.tables_in()
            if existing:
                shown = ", ".join(existing[:8]) + (" ..." if len(existing) > 8 else "")
                raise D1ImportError(
                    f"{importer.target} is not empty: it has {len(existing)} table(s)/view(s) ({shown}). A Patina dump "
                    "restores into an EMPTY database: it has no DROP TABLE, so it never destroys what a database "
                    "holds. Create a new database (`wrangler d1 create NAME`), restore into it, then point the "
                    "binding at it; or, if you mean to replace this one, empty it yourself first"
                )
        sql = plain_sql(dump_path)
        try:
            result = importer.import_file(sql.path)
        finally:
            sql.cleanup()
        if expected_rows:
            tables = sorted(expected_rows)
            counts = importer.count_rows(tables)
            wrong = [
                f"{t}: {counts.get(t)} rows, expected {expected_rows[t]}"
                for t in tables
                if counts.get(t) != expected_rows[t]
            ]
            if wrong:
                raise D1ImportError(
                    f"{importer.target}: the import finished but the row counts differ from the "
                    f"dump: {'; '.join(wrong[:10])}"
                )
        return result


def _md5_of(path: Path) -> tuple[int, str]:
    digest, size = hashlib.md5(usedforsecurity=False), 0
    try:
        with open(path, "rb") as source:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise D1ImportError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return size, digest.hexdigest()


def _chunks(body) -> Iterator[bytes]:
    while chunk := body.read(CHUNK):
        yield chunk


def _clip(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."
