"""Wall-clock run time, monotonic time and sleeping, passed through the code so tests control them.

The run time (used for mapping, lifetimes and `modified`) comes from `MISP2SENTINEL_NOW` when it is
set, as an RFC 3339 timestamp. Pacing, backoff and timeouts use the monotonic clock and `sleep`.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

from misp2sentinel.errors import UsageError

NOW_VARIABLE = "MISP2SENTINEL_NOW"


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime; raise ValueError when invalid."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return parsed.astimezone(timezone.utc)


class Clock:
    """The system clock, with the run time optionally fixed by `MISP2SENTINEL_NOW`."""

    def __init__(self, fixed_now: datetime | None = None) -> None:
        self._fixed_now = fixed_now

    @classmethod
    def from_environment(cls) -> Clock:
        text = os.environ.get(NOW_VARIABLE)
        if not text:
            return cls()
        try:
            moment = parse_rfc3339(text)
        except ValueError:
            moment = None
        # STIX timestamps need four-digit years, and lifetimes add years to the run time.
        if moment is None or not 1970 <= moment.year <= 9000:
            raise UsageError(
                f"invalid {NOW_VARIABLE} value {text!r}",
                hint="expected an RFC 3339 timestamp between 1970 and 9000, such as 2026-01-31T12:00:00Z, or unset it",
            )
        return cls(moment)

    def now(self) -> datetime:
        """Return the wall-clock time as an aware UTC datetime."""
        if self._fixed_now is not None:
            return self._fixed_now
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
