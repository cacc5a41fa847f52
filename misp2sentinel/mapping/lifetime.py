"""STIX timestamps and indicator validity.

`valid_from` is the attribute's `first_seen`, else its timestamp, else the event timestamp, else
the event date, else the run time. `valid_until` is the reference time plus the configured days for
the indicator kind. The reference is `last_seen` when present (and `use_last_seen` is on) and the
run time otherwise. The days count from `valid_from` when that is later, so `valid_until` always
follows `valid_from`. A kind configured as `never` gets no `valid_until`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The latest first_seen or last_seen read, as for attribute timestamps (sources.normalize.LATEST_TIMESTAMP).
LATEST_SEEN = datetime(9000, 1, 1, tzinfo=timezone.utc)


@lru_cache(maxsize=8192)
def stix_timestamp(moment: datetime) -> str:
    """Format an aware datetime as a STIX timestamp with millisecond precision.

    Cached, because the run time and the ends of validity recur on every indicator.
    """
    if moment.tzinfo is not timezone.utc:
        moment = moment.astimezone(timezone.utc)
    return _utc_text(moment)


def _utc_text(moment: datetime) -> str:
    # isoformat ends a UTC time with "+00:00", which STIX writes as "Z".
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


def from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


NAIVE_EPOCH = datetime(1970, 1, 1)


def epoch_text(seconds: int) -> str:
    """Return the STIX timestamp of a whole Unix time (0 or later).

    A naive datetime formats in a third of the time of an aware one, and this runs once per
    distinct attribute timestamp. It also skips the cache of `stix_timestamp`, which those
    timestamps, nearly all distinct across small events, would only churn.
    """
    return (NAIVE_EPOCH + timedelta(seconds=seconds)).isoformat() + ".000Z"


def parse_seen(text: str | None) -> datetime | None:
    """Parse MISP's `first_seen`/`last_seen` (ISO 8601, often with microseconds); None if invalid."""
    if not text:
        return None
    value = text.strip().replace(" ", "T", 1)
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        parsed = parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        # Not ISO 8601, or at the edge of year 1 or 9999 so that UTC falls outside what a datetime holds.
        return None
    if parsed > LATEST_SEEN:
        # Past the year 9000, the limit of attribute timestamps too, so that a lifetime still fits after it.
        return None
    return parsed


def parse_date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text.strip()[:10], "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def valid_from(attribute: dict, event: dict, now: datetime) -> datetime:
    first_seen = parse_seen(attribute.get("first_seen"))
    if first_seen is not None:
        return first_seen
    if attribute.get("timestamp"):
        return from_epoch(attribute["timestamp"])
    if event.get("timestamp"):
        return from_epoch(event["timestamp"])
    return parse_date(event.get("date")) or now


def valid_until(attribute: dict, start: datetime, now: datetime, days: int | str, use_last_seen: bool = True) -> datetime | None:
    """Return the end of an indicator's validity, or None when its kind lives `never`."""
    if days == "never":
        return None
    reference = (parse_seen(attribute.get("last_seen")) if use_last_seen else None) or now
    return max(reference, start) + timedelta(days=days)


def stix_to_ms(text: str) -> int:
    """Parse a STIX timestamp into integer milliseconds since the epoch."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int((moment - EPOCH) // timedelta(milliseconds=1))


def ms_to_stix(milliseconds: int) -> str:
    return stix_timestamp(EPOCH + timedelta(milliseconds=milliseconds))
