"""The limits of `patina serve`: sliding windows in a fixed-size table, download slots, a cached snapshot.

Every table is bounded: the per-address windows keep at most ``Limits.addresses_tracked`` addresses (the least
recently seen is forgotten first) and each window at most its limit of timestamps, so 30,000 forged
addresses cost what 4,096 do, and each request costs O(1) (a dictionary lookup, a move to the end, at most
``limit`` expired timestamps dropped). IPv6 clients are counted per /64, the block one host usually holds.
"""

from __future__ import annotations

import ipaddress
import math
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """The server's limits; tests make them small. Windows are in seconds of the injected clock."""

    requests_per_hour: int = 30  # per key (or allowed address), protected endpoints
    failures_per_hour: int = 30  # per address, requests without a valid key (so keys cannot be guessed quickly)
    downloads_per_hour: int = 10  # per client, counted when a transfer starts
    concurrent_downloads: int = 2
    window_seconds: float = 3600.0
    busy_retry_after: int = 10  # when every download slot is taken
    public_per_minute: int = 60  # per address, /status /list /metrics
    addresses_tracked: int = 4096  # per table; the least recently seen address is forgotten first
    snapshot_seconds: float = 10.0  # how old the /status /list /metrics snapshot may be
    stall_seconds: float = 30.0  # a download that makes no progress for this long is cut
    min_bytes_per_second: int = 4096  # ... or that averages less over the rate window
    rate_window_seconds: float = 120.0
    watch_interval: float = 0.5  # real seconds between progress checks of a download
    trigger_body_bytes: int = 4096
    max_headers: int = 100
    max_target_bytes: int = 2048  # path and query
    max_head_bytes: int = 16 * 1024  # request line and headers (h11's incomplete-event limit)


class WindowLimiter:
    """At most ``limit`` admissions per key in any ``window`` seconds of ``clock``, for at most ``capacity`` keys."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float], capacity: int = 4096) -> None:
        self.limit, self.window, self.clock, self.capacity = limit, window, clock, capacity
        self._hits: OrderedDict[str, array] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, key: str) -> int | None:
        """Count one more for ``key`` and return None, or return the seconds to wait (and count nothing)."""
        with self._lock:
            now = self.clock()
            hits = self._hits.get(key)
            if hits is None:
                if len(self._hits) >= self.capacity:
                    self._hits.popitem(last=False)
                hits = self._hits[key] = array("d")  # 8 bytes a timestamp, no float objects
            else:
                self._hits.move_to_end(key)
            expired = 0
            while expired < len(hits) and hits[expired] <= now - self.window:
                expired += 1
            del hits[:expired]
            if len(hits) >= self.limit:
                return max(1, math.ceil(hits[0] + self.window - now))
            hits.append(now)
            return None

    def refund(self, key: str) -> None:
        """Take back the last admission of ``key`` (the request it admitted did not happen)."""
        with self._lock:
            hits = self._hits.get(key)
            if hits:
                hits.pop()

    def __len__(self) -> int:
        return len(self._hits)

    def timestamps(self) -> int:
        return sum(len(h) for h in self._hits.values())


def address_key(ip: str) -> str:
    """What a per-address limit counts: the address, or its /64 for IPv6."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class Slots:
    """At most ``size`` downloads at once."""

    def __init__(self, size: int) -> None:
        self.size, self.used = size, 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.size:
                return False
            self.used += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.used -= 1


class Cached(Generic[T]):
    """A value read at most once every ``seconds`` of ``clock``: one reader refreshes it while the others get
    the previous value (or, before the first read, wait for it), so the public endpoints' bucket operations
    stay bounded and a slow bucket ties up one thread, not one per request."""

    def __init__(self, read: Callable[[], T], seconds: float, clock: Callable[[], float]) -> None:
        self.read, self.seconds, self.clock = read, seconds, clock
        self._value: T | None = None
        self._taken: float | None = None
        self._lock = threading.Lock()
        self.reads = 0

    def _stale(self) -> bool:
        return self._taken is None or self.clock() - self._taken >= self.seconds

    def get(self) -> T:
        if not self._stale():
            return self._value  # type: ignore[return-value]
        if not self._lock.acquire(blocking=self._value is None):
            return self._value  # type: ignore[return-value]  # being refreshed: the previous one meanwhile
        try:
            if self._stale():
                self._value = self.read()
                self._taken = self.clock()
                self.reads += 1
            return self._value  # type: ignore[return-value]
        finally:
            self._lock.release()
