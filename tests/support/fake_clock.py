"""A clock that tests move by hand: `sleep(s)` advances it at once, so waits cost no real time."""

from __future__ import annotations

import threading
import time


class FakeClock:
    """Wall-clock seconds starting at `start` (now by default); `sleep` moves them on and records the wait."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds
