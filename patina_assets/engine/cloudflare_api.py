"""Requests to Cloudflare's REST API, with one set of manners for every caller: a D1 database's dump
(`sources.D1Source`), a restore into D1 (`d1_import.D1Importer`) and an account's list of databases
(`d1_accounts`, a fleet's discovery).

Each attempt first finds room in the token's `ApiBudget` (api_budget.py), which every Patina process using
the token shares. A 5xx or a network error is retried, up to `max_attempts`, after an exponential backoff
with jitter (or what Retry-After asks; at most 5 minutes); a 429 pauses every user of the token through
the budget (what Retry-After asks, else the backoff) and is waited out for up to
`rate_limit_patience_seconds`; any other answer that is not a success is the caller's to explain
(`refused`: what to fix depends on what was asked), and so are attempts used up (`gave_up`, when the
caller words it its own way). A caller with a deadline (`remaining`) never waits past it. Every wait is
the budget's (`ApiBudget.sleep`, on its clock), so one injected clock and sleep serve the whole path.
The token travels in the Authorization header only; no message carries it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from .api_budget import ApiBudget, BudgetExhausted
from .errors import DeadlineExceeded, RateLimited, SourceUnavailable

DEFAULT_API_URL = "https://api.cloudflare.com/client/v4"
RATE_LIMIT_PATIENCE_SECONDS = 900.0  # 429s are waited out this long (three of Cloudflare's 5-minute lockouts)
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_BACKOFF_SECONDS = 1.0
MAX_PAUSE_SECONDS = 300.0

#: What a caller raises for an answer that is neither a success nor worth retrying: (HTTP status, JSON body).
Refused = Callable[[int, dict], Exception]
#: What a caller raises when its attempts are used up: (attempts, the last answer, as text).
GaveUp = Callable[[int, str], Exception]


class CloudflareApi:
    """One token's requests to the API at `api_url`. `where` begins every message (`d1://acct/db`,
    `account acct`); `operation` says what the requests are for (``dump``, ``import``, ``listing``), for a
    message about its deadline. `remaining` gives the seconds left before the caller's deadline (None: none; it
    raises `DeadlineExceeded` once passed); `budget_wait_seconds` bounds each wait for room in the budget
    besides; `budget_exhausted` turns a budget that has no room in time into the caller's error. `sleep`
    waits out backoffs: the budget's own unless given (tests inject the budget's clock and sleep)."""

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        where: str,
        operation: str,
        budget: ApiBudget,
        budget_exhausted: Callable[[BudgetExhausted], Exception],
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
        request_timeout: float = 60.0,
        rate_limit_patience_seconds: float = RATE_LIMIT_PATIENCE_SECONDS,
        remaining: Callable[[], float | None] = lambda: None,
        budget_wait_seconds: float | None = None,
        transport: Any = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        import httpx  # here, not at the top: it costs ~17 MB, which a SQLite dump need not carry

        self.where, self.operation, self.budget, self.max_attempts = where, operation, budget, max_attempts
        self.backoff_seconds, self.request_timeout = backoff_seconds, request_timeout
        self.rate_limit_patience_seconds = rate_limit_patience_seconds
        self.budget_wait_seconds = budget_wait_seconds
        self._budget_exhausted, self._remaining = budget_exhausted, remaining
        self._sleep = budget.sleep if sleep is None else sleep
        self._transport_error = httpx.TransportError
        self._client = httpx.Client(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "User-Agent": "patina"},
            transport=transport,
        )
        self.requests = 0  # attempts sent, each one through the budget

    def close(self) -> None:
        self._client.close()

    def call(
        self,
        method: str,
        url: str,
        refused: Refused,
        *,
        json: dict | None = None,
        params: dict | None = None,
        gave_up: GaveUp | None = None,
    ) -> dict:
        """The JSON body of a successful answer (HTTP 200, `success: true`), retrying and waiting as the
        module docstring says. Raises `refused(status, body)` for any other final answer (a 200 with
        `success: false` included), `RateLimited`, `gave_up(attempts, last answer)` when attempts are used
        up (by default `SourceUnavailable`, as for a 200 that is not JSON), `DeadlineExceeded`."""
        last_problem = ""
        failures = 0
        limited_since: float | None = None
        limited = 0  # 429s in a row
        while failures < self.max_attempts:
            self._acquire()
            left = self._remaining()
            timeout = self.request_timeout if left is None else min(self.request_timeout, left)
            self.requests += 1
            try:
                response = self._client.request(method, url, json=json, params=params, timeout=timeout)
            except self._transport_error as e:
                last_problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                failures += 1
                self._back_off(failures, None)
                continue
            status = response.status_code
            if status == 200:
                try:
                    body = response.json()
                except ValueError as e:
                    raise SourceUnavailable(f"{self.where}: the API answered 200 with a body that is not JSON") from e
                body = body if isinstance(body, dict) else {}
                if body.get("success", False):
                    return body
                raise refused(status, body)
            if status == 429:
                now = self.budget.now()
                limited += 1
                limited_since = now if limited_since is None else limited_since
                pause = rate_limit_pause(
                    response.headers.get("Retry-After"),
                    limited,
                    limited_since,
                    now,
                    self.backoff_seconds,
                    self.rate_limit_patience_seconds,
                )
                if pause is None:
                    raise RateLimited(
                        f"{self.where}: the API answered 429 (rate limited) for {now - limited_since:.0f}s; "
                        "lower cloudflare.requests_per_5_minutes if other tools share this token, or try later"
                    )
                self.budget.pause(pause)  # every user of the token waits it out, not only this one
                continue
            limited_since, limited = None, 0
            body = json_or_empty(response)
            if status >= 500:
                last_problem = f"HTTP {status} {error_text(body)}".strip()
                failures += 1
                self._back_off(failures, response.headers.get("Retry-After"))
                continue
            raise refused(status, body)
        if gave_up is not None:
            raise gave_up(self.max_attempts, last_problem)
        raise SourceUnavailable(
            f"{self.where}: gave up after {self.max_attempts} attempts; last answer: {last_problem}"
        )

    def _acquire(self) -> None:
        """Room for one request in the token's budget, waited for no longer than the deadline and
        `budget_wait_seconds` allow."""
        bounds = [b for b in (self._remaining(), self.budget_wait_seconds) if b is not None]
        try:
            self.budget.acquire(self.budget.now() + min(bounds) if bounds else None)
        except BudgetExhausted as e:
            raise self._budget_exhausted(e) from None

    def _back_off(self, failures: int, retry_after: str | None) -> None:
        if failures >= self.max_attempts:
            return
        delay = self.backoff_seconds * (2 ** (failures - 1)) * random.uniform(0.75, 1.25)
        wanted = retry_after_seconds(retry_after)
        if wanted is not None:
            delay = max(delay, wanted)
        left = self._remaining()
        if left is not None and delay >= left:
            raise DeadlineExceeded(
                f"{self.where}: the API asked to wait {delay:.0f}s, past this {self.operation}'s deadline; try later"
            )
        self._sleep(min(delay, MAX_PAUSE_SECONDS))


def json_or_empty(response: Any) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def error_text(body: dict) -> str:
    """The API's own errors of an answer: `message (code N); ...`."""
    errors = body.get("errors") or []
    return "; ".join(f"{e.get('message', '')} (code {e.get('code')})" for e in errors if isinstance(e, dict))


def error_codes(body: dict) -> set:
    return {e.get("code") for e in body.get("errors", []) if isinstance(e, dict)}


def rate_limit_pause(
    retry_after: str | None, limited: int, limited_since: float, now: float, backoff: float, patience: float
) -> float | None:
    """How long every user of the token pauses after the `limited`-th 429 in a row (what Retry-After asks, else an
    exponential backoff; at most 5 minutes), or None when that pause would take the 429s past `patience` seconds
    since `limited_since` (the caller then gives up with its own message)."""
    wanted = retry_after_seconds(retry_after)
    pause = min(MAX_PAUSE_SECONDS, max(wanted or 0.0, backoff * 2 ** min(limited - 1, 8)))
    return None if now + pause - limited_since > patience + 0.001 else pause


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils  # (an HTTP date: rare, and the module costs every command's start)

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
