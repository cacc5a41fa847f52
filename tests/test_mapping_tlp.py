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


# TLP tags kept, TLP 2.0 ids and amber+strict

TLP2 = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}


def test_tlp_white_and_clear_together():
    assert marking(map_one(ip("tlp:white", "tlp:clear"))) == [TLP_WHITE]


def test_tlp_original_tags_in_labels():
    labels = map_one(ip("TLP:Amber"), tags=("tlp:white",)).only["labels"]

    assert "TLP:Amber" in labels
    assert "tlp:white" in labels


def test_tlp_amber_strict_label_kept():
    settings = MappingSettings(max_tlp="amber+strict")

    indicator = map_one(ip(), settings, tags=("TLP:AMBER+STRICT",)).only

    assert indicator["object_marking_refs"] == [TLP_AMBER]
    assert "TLP:AMBER+STRICT" in indicator["labels"]
    assert "tlp:amber+strict" not in indicator["labels"]


def test_tlp_amber_strict_label_from_object_tag():
    settings = MappingSettings(max_tlp="amber+strict")
    tagged = misp_attribute("text", "note", to_ids=False, tags=("tlp:amber+strict",))
    event = misp_event(objects=(misp_object("ip-port", tagged, ip()),))

    labels = map_raw(event, settings).only["labels"]

    assert "tlp:amber+strict" in labels


@pytest.mark.parametrize("level", ["clear", "green", "amber", "amber+strict", "red"])
def test_tlp_version_2_ids(level):
    settings = MappingSettings(max_tlp="red", tlp_version=2)

    assert marking(map_one(ip(f"tlp:{level}"), settings)) == [TLP2[level]]


def test_tlp_version_2_white_is_clear():
    settings = MappingSettings(tlp_version=2)

    assert marking(map_one(ip("tlp:white"), settings)) == [TLP2["clear"]]


def test_tlp_version_2_default():
    settings = MappingSettings(tlp_version=2, default_tlp="green")

    assert marking(map_one(ip(), settings)) == [TLP2["green"]]


def test_tlp_version_rejects_other_values():
    with pytest.raises(ValueError):
        MappingSettings(tlp_version=3)


# Chatham House Rule


CHR_SETTINGS = MappingSettings(misp_url="https://misp.example.org")


def assert_source_removed(indicator: dict) -> None:
    assert "created_by_ref" not in indicator
    assert all(reference["source_name"] != "MISP" for reference in indicator.get("external_references", []))
    assert "Test event" not in indicator.get("description", "")


def test_chr_attribute_tag_removes_source():
    mapped = map_one(ip("tlp:ex:chr"), CHR_SETTINGS)

    assert_source_removed(mapped.only)
    assert "tlp:ex:chr" in mapped.only["labels"]


def test_chr_event_tag_removes_identity():
    mapped = map_one(ip(), CHR_SETTINGS, tags=("TLP:EX:CHR", "tlp:green"))

    assert_source_removed(mapped.only)
    assert mapped.identities == []
    assert marking(mapped) == [TLP_GREEN]


def test_chr_object_tag_removes_source():
    tagged = misp_attribute("text", "note", to_ids=False, tags=("tlp:ex:chr",))
    event = misp_event(ip("tlp:green"), objects=(misp_object("ip-port", tagged, ip()),))

    inside, outside = sorted(map_raw(event, CHR_SETTINGS).indicators, key=lambda item: "created_by_ref" in item)

    assert_source_removed(inside)
    assert "created_by_ref" in outside
    assert outside["external_references"][0]["source_name"] == "MISP"


def test_chr_keeps_attack_references():
    attack = 'misp-galaxy:mitre-attack-pattern="Spearphishing Attachment - T1566.001"'

    indicator = map_one(ip("tlp:ex:chr", attack), CHR_SETTINGS).only

    assert [reference["external_id"] for reference in indicator["external_references"]] == ["T1566.001"]
