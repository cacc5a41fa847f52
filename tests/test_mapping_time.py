"""Indicator timestamps and lifetime.

`created` is the attribute timestamp, `modified` the run time. `valid_from` is `first_seen`, else the
attribute timestamp, else the event timestamp, else the event date, else the run time.
`valid_until` is `last_seen` (else the run time) plus the configured days for the indicator kind,
always later than `valid_from`. An indicator whose `valid_until` is already past is skipped as stale.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misp2sentinel.config import LifetimeDays, MappingSettings
from misp2sentinel.mapping import lifetime
from misp2sentinel.report import STALE
from misp2sentinel.sources.normalize import LATEST_TIMESTAMP
from tests.conftest import (
    ATTRIBUTE_TIMESTAMP,
    EVENT_TIMESTAMP,
    NOW,
    epoch,
    map_one,
    map_raw,
    misp_attribute,
    misp_event,
    stix_time,
)

UTC = timezone.utc
FIRST_SEEN = datetime(2025, 11, 1, 8, 30, 0, tzinfo=UTC)
FIRST_SEEN_TEXT = "2025-11-01T08:30:00.000000+00:00"
DAYS = LifetimeDays(ip=11, domain=12, url=13, email=14, file_hash=15, file_name=16, other=17)
SETTINGS = MappingSettings(lifetime_days=DAYS)
MD5 = "900150983cd24fb0d6963f7d28e17f72"


def from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


# created and modified


def test_created_is_attribute_timestamp():
    indicator = map_one(misp_attribute("ip-dst", "198.51.100.7")).only

    assert stix_time(indicator["created"]) == from_epoch(ATTRIBUTE_TIMESTAMP)


def test_created_ignores_first_seen():
    indicator = map_one(misp_attribute("ip-dst", "198.51.100.7", first_seen=FIRST_SEEN_TEXT)).only

    assert stix_time(indicator["created"]) == from_epoch(ATTRIBUTE_TIMESTAMP)


def test_modified_is_run_time():
    indicator = map_one(misp_attribute("ip-dst", "198.51.100.7")).only

    assert stix_time(indicator["modified"]) == NOW


def test_modified_follows_run_time():
    later = NOW + timedelta(hours=5, seconds=3)
    event = misp_event(misp_attribute("ip-dst", "198.51.100.7"))

    indicator = map_raw(event, now=later).only

    assert stix_time(indicator["modified"]) == later


# valid_from order


def test_valid_from_first_seen_first():
    indicator = map_one(misp_attribute("ip-dst", "198.51.100.7", first_seen=FIRST_SEEN_TEXT)).only

    assert stix_time(indicator["valid_from"]) == FIRST_SEEN


def test_valid_from_first_seen_offset_converted():
    attribute = misp_attribute("ip-dst", "198.51.100.7", first_seen="2025-11-01T10:30:00.000000+02:00")

    indicator = map_one(attribute).only

    assert stix_time(indicator["valid_from"]) == FIRST_SEEN


def test_valid_from_attribute_timestamp_second():
    indicator = map_one(misp_attribute("ip-dst", "198.51.100.7")).only

    assert stix_time(indicator["valid_from"]) == from_epoch(ATTRIBUTE_TIMESTAMP)


def test_valid_from_event_timestamp_third():
    indicator = map_one(misp_attribute("ip-dst", "198.51.100.7", timestamp=None)).only

    assert stix_time(indicator["valid_from"]) == from_epoch(EVENT_TIMESTAMP)


def test_valid_from_event_date_fourth():
    attribute = misp_attribute("ip-dst", "198.51.100.7", timestamp=None)

    indicator = map_one(attribute, timestamp=None, date="2025-11-20").only

    assert stix_time(indicator["valid_from"]) == datetime(2025, 11, 20, tzinfo=UTC)


def test_valid_from_run_time_last():
    attribute = misp_attribute("ip-dst", "198.51.100.7", timestamp=None)

    indicator = map_one(attribute, timestamp=None, date=None).only

    assert stix_time(indicator["valid_from"]) == NOW


def test_valid_from_string_timestamps():
    # MISP writes timestamps as strings of epoch seconds.
    attribute = misp_attribute("ip-dst", "198.51.100.7", timestamp=None)

    indicator = map_one(attribute, timestamp="1700000000").only

    assert stix_time(indicator["valid_from"]) == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


# valid_until


@pytest.mark.parametrize(
    ("attribute_type", "value", "days"),
    [
        ("ip-src", "198.51.100.7", DAYS.ip),
        ("ip-dst", "2001:db8::1", DAYS.ip),
        ("ip-dst|port", "198.51.100.7|443", DAYS.ip),
        ("domain", "example.com", DAYS.domain),
        ("hostname", "www.example.com", DAYS.domain),
        ("hostname|port", "www.example.com|443", DAYS.domain),
        ("url", "https://example.com/a", DAYS.url),
        ("email-src", "alice@example.com", DAYS.email),
        ("email", "alice@example.com", DAYS.email),
        ("md5", MD5, DAYS.file_hash),
        ("filename|md5", f"a.exe|{MD5}", DAYS.file_hash),
        ("filename", "a.exe", DAYS.file_name),
    ],
)
def test_valid_until_days_per_kind(attribute_type, value, days):
    indicator = map_one(misp_attribute(attribute_type, value), SETTINGS).only

    assert stix_time(indicator["valid_until"]) == NOW + timedelta(days=days)


def test_valid_until_domain_ip_per_half():
    domain, address = map_one(misp_attribute("domain|ip", "example.com|198.51.100.7"), SETTINGS).indicators

    assert stix_time(domain["valid_until"]) == NOW + timedelta(days=DAYS.domain)
    assert stix_time(address["valid_until"]) == NOW + timedelta(days=DAYS.ip)


def test_valid_until_from_last_seen():
    attribute = misp_attribute("ip-dst", "198.51.100.7", last_seen="2026-01-25T06:00:00.000000+00:00")

    indicator = map_one(attribute, SETTINGS).only

    assert stix_time(indicator["valid_until"]) == datetime(2026, 1, 25, 6, tzinfo=UTC) + timedelta(days=DAYS.ip)


def test_valid_until_default_ip_shorter_than_hash():
    ip = map_one(misp_attribute("ip-dst", "198.51.100.7")).only
    digest = map_one(misp_attribute("md5", MD5)).only

    assert stix_time(ip["valid_until"]) < stix_time(digest["valid_until"])


def test_valid_until_after_future_first_seen():
    future = NOW + timedelta(days=60)
    attribute = misp_attribute("ip-dst", "198.51.100.7", first_seen=future.isoformat())

    indicator = map_one(attribute, SETTINGS).only

    assert stix_time(indicator["valid_from"]) == future
    assert stix_time(indicator["valid_until"]) > stix_time(indicator["valid_from"])


def test_valid_until_after_first_seen_when_last_seen_earlier():
    attribute = misp_attribute(
        "ip-dst",
        "198.51.100.7",
        first_seen="2026-01-30T00:00:00.000000+00:00",
        last_seen="2025-12-31T00:00:00.000000+00:00",
    )

    indicator = map_one(attribute, SETTINGS).only

    assert stix_time(indicator["valid_until"]) > stix_time(indicator["valid_from"])


def test_valid_until_old_intelligence_without_last_seen():
    old = datetime(2015, 3, 1, tzinfo=UTC)
    attribute = misp_attribute("ip-dst", "198.51.100.7", timestamp=str(epoch(old)))

    indicator = map_one(attribute, SETTINGS, timestamp=str(epoch(old)), date="2015-03-01").only

    assert stix_time(indicator["valid_from"]) == old
    assert stix_time(indicator["valid_until"]) == NOW + timedelta(days=DAYS.ip)


# stale


def test_stale_skipped_and_counted():
    attribute = misp_attribute("ip-dst", "198.51.100.7", last_seen="2025-06-01T00:00:00.000000+00:00")

    mapped = map_one(attribute, SETTINGS)

    assert mapped.indicators == []
    assert mapped.skip_reasons() == [STALE]
    assert mapped.skips[0].attribute_uuid == attribute["uuid"]


def test_stale_depends_on_kind():
    # 2026-01-18 + 11 days (ip) is past NOW, + 16 days (file name) is not.
    last_seen = "2026-01-18T00:00:00.000000+00:00"
    event = misp_event(
        misp_attribute("ip-dst", "198.51.100.7", last_seen=last_seen),
        misp_attribute("filename", "a.exe", last_seen=last_seen),
    )

    mapped = map_raw(event, SETTINGS)

    assert [i["pattern"] for i in mapped.indicators] == ["[file:name = 'a.exe']"]
    assert mapped.skip_reasons() == [STALE]


def test_stale_domain_ip_each_half():
    # The domain half lives 12 days, the IP half 11: with last_seen 11.5 days ago only the domain stays.
    last_seen = (NOW - timedelta(days=11, hours=12)).isoformat()

    mapped = map_one(misp_attribute("domain|ip", "example.com|198.51.100.7", last_seen=last_seen), SETTINGS)

    assert [i["pattern"] for i in mapped.indicators] == ["[domain-name:value = 'example.com']"]
    assert mapped.skip_reasons() == [STALE]


# never, use_last_seen and the kinds of the newer types


def test_valid_until_never_omitted():
    settings = MappingSettings(lifetime_days=LifetimeDays(ip="never"))

    indicator = map_one(misp_attribute("ip-dst", "198.51.100.7"), settings).only

    assert "valid_until" not in indicator


def test_valid_until_never_not_stale():
    settings = MappingSettings(lifetime_days=LifetimeDays(ip="never"))
    attribute = misp_attribute("ip-dst", "198.51.100.7", last_seen="2015-06-01T00:00:00.000000+00:00")

    mapped = map_one(attribute, settings)

    assert len(mapped.indicators) == 1
    assert mapped.skips == []


def test_valid_until_never_only_for_its_kind():
    settings = MappingSettings(lifetime_days=LifetimeDays(domain="never", ip=11))

    domain, address = map_one(misp_attribute("domain|ip", "example.com|198.51.100.7"), settings).indicators

    assert "valid_until" not in domain
    assert stix_time(address["valid_until"]) == NOW + timedelta(days=11)


def test_last_seen_ignored_when_off():
    settings = MappingSettings(lifetime_days=DAYS, use_last_seen=False)
    attribute = misp_attribute("ip-dst", "198.51.100.7", last_seen="2025-06-01T00:00:00.000000+00:00")

    indicator = map_one(attribute, settings).only

    assert stix_time(indicator["valid_until"]) == NOW + timedelta(days=DAYS.ip)


@pytest.mark.parametrize("days", [0, -3, "forever", "30", True, 1.5])
def test_lifetime_days_validated(days):
    with pytest.raises(ValueError, match="whole number of days"):
        LifetimeDays(ip=days)


def test_lifetime_days_cover_every_kind():
    from misp2sentinel.mapping.reference import EXAMPLES
    from misp2sentinel.mapping.types import BUILDERS, build_parts

    kinds = {part.kind for name in BUILDERS for part in build_parts(name, EXAMPLES[name], "AA==")}

    assert kinds == set(LifetimeDays.model_fields)


def test_created_never_after_run_time():
    future = str(epoch(NOW + timedelta(days=3)))

    indicator = map_one(misp_attribute("ip-dst", "198.51.100.7", timestamp=future)).only

    assert stix_time(indicator["created"]) == NOW


@settings(max_examples=200, deadline=None, database=None)
@given(seconds=st.integers(0, LATEST_TIMESTAMP))
def test_epoch_text_matches_stix_timestamp(seconds: int) -> None:
    assert lifetime.epoch_text(seconds) == lifetime.stix_timestamp(lifetime.from_epoch(seconds))


@pytest.mark.parametrize("seen", ["9999-12-31T23:59:59.999999+00:00", "0001-01-01T00:00:00+01:00", "9500-01-01T00:00:00Z"])
@pytest.mark.parametrize("field", ["first_seen", "last_seen"])
def test_seen_out_of_range_ignored(field, seen):
    """A first_seen or last_seen that UTC or a lifetime cannot carry is ignored, as an unreadable one is."""
    indicator = map_one(misp_attribute("ip-dst", "198.51.100.7", **{field: seen})).only

    assert indicator["valid_from"] == "2025-12-06T05:46:40.000Z"
