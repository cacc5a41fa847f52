"""TLP markings and confidence.

The TLP of an indicator is the most restrictive of its attribute's tags, its object's tags (the
union of the object's attribute tags) and the event's tags, matched case-insensitively, in the order
clear = white < green < amber < amber+strict < red. Untagged data takes the configured default; data
above the configured maximum is skipped and counted. Markings are the TLP 1.0 ids.
"""

from __future__ import annotations

import pytest

from misp2sentinel.config import MappingSettings
from misp2sentinel.report import ABOVE_MAX_TLP
from tests.conftest import (
    TLP_AMBER,
    TLP_GREEN,
    TLP_RED,
    TLP_WHITE,
    map_one,
    map_raw,
    misp_attribute,
    misp_event,
    misp_object,
)

MAX_RED = MappingSettings(max_tlp="red")


def ip(*tags: str, **fields) -> dict:
    return misp_attribute("ip-dst", "198.51.100.7", tags=tags, **fields)


def marking(mapped) -> list[str]:
    return mapped.only["object_marking_refs"]


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("tlp:white", TLP_WHITE),
        ("tlp:clear", TLP_WHITE),
        ("tlp:green", TLP_GREEN),
        ("tlp:amber", TLP_AMBER),
        ("tlp:red", TLP_RED),
        ("TLP:GREEN", TLP_GREEN),
        ("Tlp:Clear", TLP_WHITE),
        ("TLP:White", TLP_WHITE),
        ("TLP:RED", TLP_RED),
    ],
)
def test_tlp_tag_marking_id(tag, expected):
    assert marking(map_one(ip(tag), MAX_RED)) == [expected]


def test_tlp_amber_strict_marked_amber():
    # TLP 1.0 has no amber+strict, and only the four TLP 1.0 ids may appear.
    settings = MappingSettings(max_tlp="amber+strict")

    assert marking(map_one(ip("tlp:amber+strict"), settings)) == [TLP_AMBER]


def test_tlp_event_tag_applies():
    assert marking(map_one(ip(), tags=("tlp:green",))) == [TLP_GREEN]


def test_tlp_attribute_above_event():
    assert marking(map_one(ip("tlp:amber"), tags=("tlp:white",))) == [TLP_AMBER]


def test_tlp_event_above_attribute():
    assert marking(map_one(ip("tlp:clear"), tags=("tlp:amber",))) == [TLP_AMBER]


def test_tlp_several_tags_most_restrictive():
    assert marking(map_one(ip("tlp:white", "tlp:green", "tlp:clear"))) == [TLP_GREEN]


def test_tlp_object_union_of_attribute_tags():
    tagged = misp_attribute("domain", "example.com", to_ids=False, tags=("tlp:amber",))
    exported = misp_attribute("ip-dst", "198.51.100.7")
    event = misp_event(objects=(misp_object("domain-ip", tagged, exported),), tags=("tlp:green",))

    assert marking(map_raw(event)) == [TLP_AMBER]


def test_tlp_object_red_sibling_skips():
    tagged = misp_attribute("text", "note", to_ids=False, tags=("TLP:RED",))
    exported = misp_attribute("ip-dst", "198.51.100.7")
    event = misp_event(objects=(misp_object("ip-port", tagged, exported),))

    mapped = map_raw(event)

    assert mapped.indicators == []
    assert ABOVE_MAX_TLP in mapped.skip_reasons()


def test_tlp_object_tags_stay_in_object():
    # A tag inside one object does not reach event-level attributes or other objects.
    first = misp_object("ip-port", misp_attribute("ip-dst", "198.51.100.7", tags=("tlp:amber",)))
    second = misp_object("ip-port", misp_attribute("ip-dst", "198.51.100.8"))
    event = misp_event(misp_attribute("ip-src", "198.51.100.9"), objects=(first, second), tags=("tlp:green",))

    markings = {i["pattern"]: i["object_marking_refs"] for i in map_raw(event).indicators}

    assert markings == {
        "[ipv4-addr:value = '198.51.100.9']": [TLP_GREEN],
        "[ipv4-addr:value = '198.51.100.7']": [TLP_AMBER],
        "[ipv4-addr:value = '198.51.100.8']": [TLP_GREEN],
    }


@pytest.mark.parametrize(
    ("default", "expected"),
    [("clear", TLP_WHITE), ("white", TLP_WHITE), ("green", TLP_GREEN), ("amber", TLP_AMBER)],
)
def test_tlp_default_for_untagged(default, expected):
    settings = MappingSettings(default_tlp=default)

    assert marking(map_one(ip(), settings)) == [expected]


def test_tlp_default_ignored_when_tagged():
    settings = MappingSettings(default_tlp="amber")

    assert marking(map_one(ip("tlp:clear"), settings)) == [TLP_WHITE]


def test_tlp_non_tlp_tags_count_as_untagged():
    settings = MappingSettings(default_tlp="green")

    assert marking(map_one(ip("tlp:ex:chr", "tlp:unclear", "type:OSINT"), settings)) == [TLP_GREEN]


@pytest.mark.parametrize("tag", ["tlp:amber+strict", "tlp:red", "TLP:RED", "TLP:AMBER+STRICT"])
def test_tlp_above_default_max_skipped(tag):
    attribute = ip(tag)

    mapped = map_one(attribute)

    assert mapped.indicators == []
    assert mapped.skip_reasons() == [ABOVE_MAX_TLP]
    assert mapped.skips[0].attribute_uuid == attribute["uuid"]


def test_tlp_event_red_skips_every_attribute():
    event = misp_event(ip(), misp_attribute("domain", "example.com"), tags=("tlp:red",))

    mapped = map_raw(event)

    assert mapped.indicators == []
    assert mapped.skip_reasons() == [ABOVE_MAX_TLP, ABOVE_MAX_TLP]


def test_tlp_configured_max_green():
    settings = MappingSettings(max_tlp="green")
    event = misp_event(ip("tlp:green"), misp_attribute("domain", "example.com", tags=("tlp:amber",)))

    mapped = map_raw(event, settings)

    assert [i["pattern"] for i in mapped.indicators] == ["[ipv4-addr:value = '198.51.100.7']"]
    assert mapped.skip_reasons() == [ABOVE_MAX_TLP]


def test_tlp_default_above_max_skipped():
    settings = MappingSettings(default_tlp="red", max_tlp="amber")

    assert map_one(ip(), settings).skip_reasons() == [ABOVE_MAX_TLP]


def test_tlp_one_marking_per_indicator():
    indicator = map_one(ip("tlp:green", "tlp:white"), tags=("tlp:amber",)).only

    assert indicator["object_marking_refs"] == [TLP_AMBER]


# Confidence


def confidence_tag(level: str) -> str:
    return f'misp:confidence-level="{level}"'


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("completely-confident", 100),
        ("usually-confident", 75),
        ("fairly-confident", 50),
        ("rarely-confident", 25),
        ("unconfident", 0),
    ],
)
def test_confidence_attribute_level(level, expected):
    settings = MappingSettings(default_confidence=65)

    assert map_one(ip(confidence_tag(level)), settings).only["confidence"] == expected


def test_confidence_attribute_over_event():
    indicator = map_one(ip(confidence_tag("completely-confident")), tags=(confidence_tag("rarely-confident"),)).only

    assert indicator["confidence"] == 100


def test_confidence_attribute_zero_over_event():
    indicator = map_one(ip(confidence_tag("unconfident")), tags=(confidence_tag("completely-confident"),)).only

    assert indicator["confidence"] == 0


def test_confidence_event_when_attribute_untagged():
    settings = MappingSettings(default_confidence=65)

    indicator = map_one(ip(), settings, tags=(confidence_tag("rarely-confident"),)).only

    assert indicator["confidence"] == 25


def test_confidence_event_zero_over_default():
    settings = MappingSettings(default_confidence=65)

    indicator = map_one(ip(), settings, tags=(confidence_tag("unconfident"),)).only

    assert indicator["confidence"] == 0


@pytest.mark.parametrize("default", [0, 65, 100])
def test_confidence_configured_default(default):
    settings = MappingSettings(default_confidence=default)

    assert map_one(ip("type:OSINT"), settings).only["confidence"] == default


def test_confidence_object_sibling_tag():
    tagged = misp_attribute("text", "note", to_ids=False, tags=(confidence_tag("usually-confident"),))
    event = misp_event(objects=(misp_object("ip-port", tagged, ip()),), tags=(confidence_tag("rarely-confident"),))

    assert map_raw(event).only["confidence"] == 75
