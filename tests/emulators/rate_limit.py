"""A sliding-window request counter for the Sentinel emulator's rate limit."""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable


class SlidingWindowRateLimiter:
    """At most `limit` requests per key in any `window` seconds of `clock`.

    A rejected request does not count. `acquire` returns None when the request may pass,
    or the seconds until the oldest counted request leaves the window.
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        if limit < 1 or window <= 0:
            raise ValueError(f"rate limit needs limit >= 1 and window > 0, got limit={limit}, window={window}")
        self.limit = limit
        self.window = window
        self.clock = clock
        self._requests: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float | None:
        now = self.clock()
        with self._lock:
            timestamps = self._requests.setdefault(key, deque())
            while timestamps and timestamps[0] <= now - self.window:
                timestamps.popleft()
            if len(timestamps) >= self.limit:
                return timestamps[0] + self.window - now
            timestamps.append(now)
            return None

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
