"""Request pacing for the Sentinel upload APIs: a sliding-window rate limiter, backoff delays and
the server's requested wait after a 429.

Microsoft documents 100 upload requests per minute per calling identity for both upload APIs
(https://learn.microsoft.com/en-us/azure/sentinel/stix-objects-api), so one `RateLimiter` is shared by
every workspace that uploads with the same identity.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import deque
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, Mapping, Protocol

from misp2sentinel.clock import Clock

log = logging.getLogger(__name__)

# A request waits until it is this far past the edge of the window, so it falls outside the window
# whether the server counts the edge as inside or outside. It also keeps a float clock near 1.7e9
# moving, where a wait of a few ulps would round to no change at all.
WINDOW_EDGE_MARGIN_SECONDS = 0.001

# The 429 body of both upload APIs: "Rate limit is exceeded. Try again in 45 seconds."
TRY_AGAIN_PATTERN = re.compile(r"try again in (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)

# Only the start of a 429 body is searched for the wait; the message is short.
TRY_AGAIN_SEARCH_CHARS = 4096


class HttpResponse(Protocol):
    """The parts of `requests.Response` that `retry_after_seconds` reads."""

    headers: Mapping[str, str]
    text: str


class RateLimiter:
    """Let at most `requests_per_minute` requests count within any `window_seconds` interval.

    It keeps one slot per request in the last window, so a full allowance can go out at once and
    the next request waits only until the oldest slot leaves the window. A request taken with
    `acquire` counts from its start. A request taken through a `LimiterUser` counts as in the
    window while it is in flight, and then for one window from the moment its user closes it. The
    server counts a request when it arrives, which is between those two moments, so it never
    counts more than the allowance in its window, whatever the latency. Times come from
    `clock.monotonic()` and waits go through `clock.sleep`.

    Safe to share between threads. Waiting requests queue behind one another, so only the first
    of them sleeps. This also keeps a test clock whose `sleep` advances time from being advanced
    once per waiting thread.

    NOTE: a request taken with `acquire` is counted from its start, before it reaches the server.
    Latency that varies between requests can then make the server see N + 1 requests in its
    window. The client then gets a 429 and waits as long as the response requests. A larger
    `window_seconds` trades throughput for a margin.
    """

    def __init__(self, requests_per_minute: int, clock: Clock, window_seconds: float = 60.0) -> None:
        if requests_per_minute < 1:
            raise ValueError(f"requests_per_minute must be at least 1, got {requests_per_minute}")
        if not window_seconds > 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        self.requests_per_minute = requests_per_minute
        self.window_seconds = float(window_seconds)
        self._clock = clock
        # Times from which finished slots count, in ascending order: each is appended at the
        # current monotonic time under `_lock`.
        self._slot_times: deque[float] = deque()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._slot_closed = threading.Condition(self._lock)
        # Held by the request that waits for a slot; the others wait for it in turn.
        self._queue = threading.Lock()

    def acquire(self) -> None:
        """Wait through `clock.sleep` until a request may start, then count it from now."""
        self._acquire(in_flight=False)

    def user(self) -> LimiterUser:
        """Return a handle for one thread that sends requests one after another."""
        return LimiterUser(self)

    def _acquire(self, *, in_flight: bool) -> None:
        with self._queue:
            while True:
                with self._lock:
                    now = self._clock.monotonic()
                    wait = self._wait_seconds(now)
                    if wait is None:
                        if in_flight:
                            self._in_flight += 1
                        else:
                            self._slot_times.append(now)
                        return
                    if wait == math.inf:
                        # Every slot is held by a request in flight. The wait is known only once
                        # one of them closes, because its slot then expires a window later.
                        self._slot_closed.wait()
                        continue
                log.debug("rate limit of %d requests per %.0f s reached; waiting %.3f s", self.requests_per_minute, self.window_seconds, wait)
                self._clock.sleep(wait)

    def _close(self) -> None:
        """Count a request that was in flight from now on, for one window (called under `_lock`)."""
        self._in_flight -= 1
        self._slot_times.append(self._clock.monotonic())
        self._slot_closed.notify_all()

    def _wait_seconds(self, now: float) -> float | None:
        """Return None when a slot is free, else the seconds until the oldest finished slot leaves
        the window, or infinity when every slot is held by a request in flight."""
        while self._slot_times and now - self._slot_times[0] > self.window_seconds:
            self._slot_times.popleft()
        if len(self._slot_times) + self._in_flight < self.requests_per_minute:
            return None
        if not self._slot_times:
            return math.inf
        # The elapsed time is computed the same way as in the test above, so the wait is never negative.
        elapsed = now - self._slot_times[0]
        return max(self.window_seconds - elapsed, 0.0) + WINDOW_EDGE_MARGIN_SECONDS


class LimiterUser:
    """One thread's requests through a shared `RateLimiter`, sent one after another.

    `acquire` first closes this user's previous request, since a user sends its next request only
    after the previous one got its response, and then waits for a slot. A slot thus also stays
    held while the client waits to retry. `release` closes the last request when the user stops
    sending for a while, for example after a batch, so that its slot starts to expire. A user
    must not be shared between threads.
    """

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self._open = False

    def acquire(self) -> None:
        """Close the previous request, then wait through `clock.sleep` until the next may start."""
        self.release()
        self._limiter._acquire(in_flight=True)
        self._open = True

    def release(self) -> None:
        """Close the request in flight, if any."""
        if not self._open:
            return
        with self._limiter._lock:
            self._limiter._close()
        self._open = False


def backoff_delay(attempt: int, base: float, maximum: float, random: Callable[[], float]) -> float:
    """Return the wait before retry number `attempt` (1 for the first retry), in seconds.

    Exponential backoff with equal jitter: a uniform draw from [c / 2, c), where
    c = min(maximum, base * 2 ** (attempt - 1)). Half of the delay is always waited, so a retry
    never follows at once; the other half spreads retries of several clients apart.
    `random` returns a float in [0, 1), as `random.random` does.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts retries from 1, got {attempt}")
    # Beyond 2 ** 63 every realistic base is past any maximum, and a larger power overflows a float.
    exponent = min(attempt - 1, 63)
    ceiling = min(maximum, base * 2.0**exponent)
    ceiling = max(ceiling, 0.0)
    return ceiling / 2 + ceiling / 2 * random()


def retry_after_seconds(response: HttpResponse, now: datetime | None = None) -> float | None:
    """Return the wait that a 429 or 503 response requests, in seconds, or None when it gives none.

    The `Retry-After` header comes first, as delay-seconds or as an HTTP-date. An HTTP-date is measured
    from the response's `Date` header when it has one, which avoids clock skew, otherwise from `now`
    (default: the system clock). Without a usable header, the body message "Try again in N seconds"
    of the Sentinel upload APIs gives the wait.
    """
    header = response.headers.get("Retry-After")
    if header:
        seconds = _parse_retry_after(header.strip(), response.headers.get("Date"), now)
        if seconds is not None:
            return seconds
        log.debug("ignoring an invalid Retry-After header %r", header)

    match = TRY_AGAIN_PATTERN.search((response.text or "")[:TRY_AGAIN_SEARCH_CHARS])
    if match:
        return float(match.group(1))
    return None


def _parse_retry_after(value: str, date_header: str | None, now: datetime | None) -> float | None:
    if value.isdigit():
        return float(value)
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # Not RFC 9110 delay-seconds, but some servers send a decimal; a negative or infinite value is invalid.
        return seconds if math.isfinite(seconds) and seconds >= 0 else None

    retry_at = _parse_http_date(value)
    if retry_at is None:
        return None
    reference = _parse_http_date(date_header) if date_header else None
    if reference is None:
        reference = now or datetime.now(timezone.utc)
    return max((retry_at - reference).total_seconds(), 0.0)


def _parse_http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        # RFC 9110 HTTP-dates are always in GMT.
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed
