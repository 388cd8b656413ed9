"""The D1 databases of one Cloudflare account, as the REST API lists them (a fleet's discovery).

`GET /accounts/{account_id}/d1/database?page=N&per_page=M` answers one page of databases,
`[{uuid, name, version, created_at, file_size?, num_tables?}]`, with `result_info`
`{page, per_page, count, total_count}`; Cloudflare documents `per_page` between 10 and 10,000.
Every page first finds room in the token's `ApiBudget`, the same budget every dump of the token
spends, so a fleet's discovery and its nightly dumps never pass the token's rate limit between them;
a 429 pauses every user of the token, as a dump's does.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
from .errors import AuthenticationFailed, DatabaseNotFound, RateLimited, SourceError

MIN_PER_PAGE = 10  # Cloudflare's documented bounds of `per_page`
MAX_PER_PAGE = 10_000
DEFAULT_PER_PAGE = 1_000
MAX_PAGES = (
    10_000  # D1 allows 50,000 databases an account: 5,000 pages of the smallest size; past this the API is looping
)


@dataclass(frozen=True)
class ListedDatabase:
    """One database of the account, as the list endpoint describes it."""

    uuid: str
    name: str
    created_at: str | None = None
    version: str | None = None
    file_size: int | None = None
    num_tables: int | None = None


@dataclass(frozen=True)
class AccountListing:
    """What one listing found: the databases whose names match the pattern (by name), how many did not,
    and what it cost."""

    account_id: str
    name_pattern: str
    databases: tuple[ListedDatabase, ...]
    not_matching: int
    pages: int
    requests: int
    seconds: float
    waited_seconds: float = 0.0  # for room in the API budget
    total_listed: int = field(default=0)


def list_databases(
    account_id: str,
    *,
    token: str,
    api_url: str = DEFAULT_API_URL,
    name_pattern: str = "*",
    per_page: int = DEFAULT_PER_PAGE,
    requests_per_5_minutes: int = DEFAULT_REQUESTS_PER_5_MINUTES,
    budget: ApiBudget | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
    request_timeout: float = 60.0,
    rate_limit_patience_seconds: float = RATE_LIMIT_PATIENCE_SECONDS,
    budget_wait_seconds: float | None = None,
    transport=None,
    sleep: Callable[[float], None] = time.sleep,
) -> AccountListing:
    """Every D1 database of `account_id` whose name matches the glob `name_pattern` (`fnmatch`, case
    sensitive: `tenant-*`), all pages of the list read. Raises `AuthenticationFailed` (401/403: the
    token, or its permission on the account), `DatabaseNotFound` (404: no such account),
    `RateLimited` (429 for longer than `rate_limit_patience_seconds`), `SourceUnavailable` (5xx or
    network errors past `max_attempts`), `SourceError` (an answer that is not a database list).
    `budget_wait_seconds` bounds each wait for room in the budget (a sensor tick cannot wait for the
    night's dumps to leave room): past it, `RateLimited` too."""
    if not MIN_PER_PAGE <= per_page <= MAX_PER_PAGE:
        raise ValueError(f"per_page must be between {MIN_PER_PAGE} and {MAX_PER_PAGE} (Cloudflare's bounds)")
    if not token:
        raise AuthenticationFailed(
            f"account {account_id}: no Cloudflare API token: set the environment variable the fleet names "
            "(cloudflare.api_token_env, CLOUDFLARE_API_TOKEN by default) to a token with D1 read permission"
        )
    budget = budget or ApiBudget(api_url, token, limit=requests_per_5_minutes, sleep=sleep)
    waited_before = budget.waited
    started = time.monotonic()
    where = f"account {account_id}"

    def budget_exhausted(e: BudgetExhausted) -> Exception:
        return RateLimited(
            f"{where}: the token's API budget (cloudflare.requests_per_5_minutes) has no room for {e.wait:.0f}s "
            "(the night's dumps are using it); the database list is read again at the next try"
        )

    api = CloudflareApi(  # the one request path of D1Source too: budget, retries, 429s
        api_url,
        token,
        where=f"{where}, listing its D1 databases",
        operation="listing",
        budget=budget,
        budget_exhausted=budget_exhausted,
        max_attempts=max_attempts,
        backoff_seconds=backoff_seconds,
        request_timeout=request_timeout,
        rate_limit_patience_seconds=rate_limit_patience_seconds,
        budget_wait_seconds=budget_wait_seconds,
        transport=transport,
        sleep=sleep,
    )
    found: dict[str, ListedDatabase] = {}
    listed = 0
    page = 0
    try:
        while True:
            page += 1
            if page > MAX_PAGES:
                raise SourceError(f"account {account_id}: the database list did not end after {MAX_PAGES} pages")
            body = api.call(
                "GET",
                f"/accounts/{account_id}/d1/database",
                _refused(where),
                params={"page": page, "per_page": per_page},
            )
            entries = body.get("result")
            if not isinstance(entries, list):
                raise SourceError(f"account {account_id}: the database list answered no `result` list")
            for entry in entries:
                database = _listed(entry, account_id)
                listed += database.uuid not in found
                found.setdefault(database.uuid, database)
            info = body.get("result_info") or {}
            total = info.get("total_count")
            if not entries or len(entries) < per_page or (isinstance(total, int) and page * per_page >= total):
                break
    finally:
        api.close()
    matching = sorted((d for d in found.values() if fnmatch.fnmatchcase(d.name, name_pattern)), key=lambda d: d.name)
    return AccountListing(
        account_id=account_id,
        name_pattern=name_pattern,
        databases=tuple(matching),
        not_matching=len(found) - len(matching),
        pages=page,
        requests=api.requests,
        seconds=time.monotonic() - started,
        waited_seconds=budget.waited - waited_before,
        total_listed=listed,
    )


def _listed(entry, account_id: str) -> ListedDatabase:
    if not isinstance(entry, dict) or not isinstance(entry.get("uuid"), str) or not isinstance(entry.get("name"), str):
        raise SourceError(f"account {account_id}: the database list holds an entry without a uuid and a name")
    size, tables = entry.get("file_size"), entry.get("num_tables")
    return ListedDatabase(
        uuid=entry["uuid"],
        name=entry["name"],
        created_at=entry.get("created_at"),
        version=entry.get("version"),
        file_size=size if isinstance(size, int) else None,
        num_tables=tables if isinstance(tables, int) else None,
    )


def _refused(where: str) -> Callable[[int, dict], Exception]:
    """What a final answer of the list endpoint that is not a list means, and what to fix."""

    def refused(status: int, body: dict) -> Exception:
        if status in (401, 403) or 10000 in error_codes(body):
            return AuthenticationFailed(
                f"{where}: the API refused to list D1 databases (HTTP {status}: {error_text(body)}): check that "
                "the fleet's token is current, has D1 read permission, and reaches this account id"
            )
        if status == 404:
            return DatabaseNotFound(
                f"{where}: no such account (HTTP 404): check databases_from[].account "
                "(the Cloudflare dashboard shows the account id)"
            )
        return SourceError(f"{where}: listing D1 databases failed: HTTP {status}: {error_text(body)}")

    return refused
