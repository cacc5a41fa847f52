"""A manually advanced clock for the emulators and the tests that drive them."""

from __future__ import annotations

import threading
import time


class FakeClock:
    """Seconds that move only when a test calls `advance`.

    An instance is a zero-argument callable, so it can stand in for `time.time` (token
    `iat`/`exp`) and for `time.monotonic` (rate-limit windows) at once. It starts at the
    current Unix time by default, so client assertions that MSAL signs with the real
    clock still fall inside their validity window.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds` and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot move backwards: seconds={seconds}")
        with self._lock:
            self._now += seconds
            return self._now
