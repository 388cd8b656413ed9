"""One token's share of Cloudflare's API rate limit, kept by every Patina process on this machine.

Cloudflare allows 1200 requests per 5 minutes per API token; one request past that and every call made
with the token (the user's own wrangler and CI included) is refused with HTTP 429 for 5 minutes. So no
request leaves Patina before `ApiBudget.acquire` found room for it under `limit` (the configured
`cloudflare.requests_per_5_minutes`, 600 by default: half the account's allowance, the rest left to
the user's own tools).

The budget is a sliding-window log: one line per request (its time), in a small file under a directory
named by a hash of the API URL and the token (never the token itself), locked with `fcntl.flock` while
it is read and rewritten. Concurrent dumps of one run, and runs in other processes, share it. A 429
from the API records a pause in the same file ("nobody before T"), so every dump of that token waits it
out instead of each one spending its retries against a locked token.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

WINDOW_SECONDS = 300.0
DEFAULT_REQUESTS_PER_5_MINUTES = 600
BUDGET_DIR_ENV = "PATINA_API_BUDGET_DIR"
_PAUSE = "pause"


def default_directory(env=os.environ) -> Path:
    """Where budgets live: $PATINA_API_BUDGET_DIR, else the user's cache directory."""
    if env.get(BUDGET_DIR_ENV):
        return Path(env[BUDGET_DIR_ENV])
    cache = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "patina" / "api-budget"


def budget_key(api_url: str, token: str) -> str:
    """A name for one token at one API, from which neither can be read back."""
    return hashlib.sha256(f"patina-api-budget\0{api_url.rstrip('/')}\0{token}".encode()).hexdigest()[:24]


class ApiBudget:
    """At most `limit` requests in any `window` seconds, across processes (see the module docstring).

    `clock` is wall-clock time (shared between processes); `sleep` waits. Both are injectable so tests
    run without real waiting.
    """

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        limit: int = DEFAULT_REQUESTS_PER_5_MINUTES,
        window: float = WINDOW_SECONDS,
        directory: Path | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError("the API budget needs a limit of at least 1 request")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self.path = _usable(directory or default_directory()) / budget_key(api_url, token) / "requests.log"
        self.waited = 0.0  # seconds this object spent waiting for room (a dump reports it)

    def acquire(self, deadline: float | None = None) -> float:
        """Wait until a request fits in the window, count it and return the time it was counted at.
        `deadline` (on `clock`) bounds the wait: past it, `BudgetExhausted` says how long it still needed."""
        while True:
            with self._locked() as log:
                now = self._clock()
                times, paused_until = log.read(now - self.window)
                if paused_until <= now and len(times) < self.limit:
                    log.write([*times, now], paused_until)
                    return now
                free_at = max(
                    paused_until, times[len(times) - self.limit] + self.window if len(times) >= self.limit else now
                )
            wait = max(free_at - now, 0.001)
            if deadline is not None and now + wait > deadline:
                raise BudgetExhausted(wait)
            self.waited += wait
            self._sleep(wait)

    def now(self) -> float:
        """The budget's clock (wall-clock seconds)."""
        return self._clock()

    def sleep(self, seconds: float) -> None:
        """Wait on the budget's clock. Every wait of a request path goes through here (its backoffs, an
        import's polls), so a test that injects one clock and one sleep never waits for real, nor spins
        against the real clock while the budget is paused."""
        self._sleep(seconds)

    def pause(self, seconds: float) -> None:
        """The API said 429: nobody sends with this token for `seconds` (the longest pause asked wins)."""
        with self._locked() as log:
            now = self._clock()
            times, paused_until = log.read(now - self.window)
            log.write(times, max(paused_until, now + seconds))

    def used(self) -> int:
        """Requests counted in the current window."""
        with self._locked() as log:
            return len(log.read(self._clock() - self.window)[0])

    def _locked(self) -> _Log:
        return _Log(self.path)


class BudgetExhausted(Exception):
    """The budget had no room before the caller's deadline."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"the API budget has no room for {wait:.0f}s")
        self.wait = wait


class _Log:
    """The budget file, open and exclusively locked for one read-modify-write."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> _Log:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+", encoding="ascii")
        fcntl.flock(self._file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()

    def read(self, since: float) -> tuple[list[float], float]:
        """Request times after `since`, oldest first, and the pause's end (0 when none)."""
        self._file.seek(0)
        times, paused_until = [], 0.0
        for line in self._file.read().split("\n"):
            try:
                if line.startswith(_PAUSE):
                    paused_until = float(line.split()[1])
                elif line and float(line) > since:
                    times.append(float(line))
            except (ValueError, IndexError):  # a line cut by a crash: the rest still counts
                continue
        times.sort()
        return times, paused_until

    def write(self, times: list[float], paused_until: float) -> None:
        self._file.seek(0)
        self._file.truncate()
        # Rounded up: a pause written a microsecond short would let a request meet the end of a lockout.
        pause = [f"{_PAUSE} {math.ceil(paused_until * 1e6) / 1e6:.6f}"] if paused_until else []
        self._file.write("".join(f"{line}\n" for line in pause + [f"{t:.6f}" for t in times]))
        self._file.flush()


def _usable(directory: Path) -> Path:
    """`directory`, or a private one under the system's temporary directory when it cannot be created
    (a read-only home in a container)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return directory
    except OSError:
        fallback = Path(tempfile.gettempdir()) / f"patina-api-budget-{os.getuid()}"
        fallback.mkdir(mode=0o700, parents=True, exist_ok=True)
        return fallback
