"""A clock that tests move by hand: `sleep(s)` advances it at once, so waits cost no real time."""

from __future__ import annotations

import threading
import time


class FakeClock:
    """Wall-clock seconds starting at `start` (now by default); `sleep` moves them on and records the wait.

    Several threads may share it: a thread's `sleep(s)` wakes it `s` after the time it last read, so
    three threads that each wait 60 s from the same moment move the clock on by 60 s, not 180 s.
    """

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()
        self._seen = threading.local()

    def time(self) -> float:
        with self._lock:
            self._seen.at = self.now
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            wake = getattr(self._seen, "at", self.now) + seconds
            self.now = max(self.now, wake)
            self._seen.at = self.now
