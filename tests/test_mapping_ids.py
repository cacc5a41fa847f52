"""Indicator and identity ids, recomputed here from the documented name strings, and determinism.

Derived ids are UUIDv5 in the project namespace over
`source=<source>|part=<part>|generation=<n>` (indicators) and `org=<uuid>` or `org-name=<name>`
(identities). A single-value attribute has the part `value`; `domain|ip` has `domain` and `ip`.
"""

from __future__ import annotations

import json
import uuid

import orjson
from hypothesis import given
from hypothesis import strategies as st

from misp2sentinel.config import MappingSettings
from misp2sentinel.mapping import map_event
from misp2sentinel.mapping.ids import NAMESPACE, uuid5
from misp2sentinel.sources.normalize import normalize_event
from tests.conftest import (
    EVENT_UUID,
    NOW,
    ORG_NAME,
    ORG_UUID,
    derived_id,
    map_one,
    map_raw,
    misp_attribute,
    misp_event,
    misp_object,
)

ATTRIBUTE_UUID = "0f6b7c58-3a2e-4d51-9c1b-6e8f2a4d7b90"


def test_id_valid_uuid():
    indicator = map_one(misp_attribute("ip-dst", "198.51.100.7", uuid=ATTRIBUTE_UUID)).only

    assert indicator["id"] == f"indicator--{ATTRIBUTE_UUID}"


def test_id_uppercase_uuid_normalised():
    indicator = map_one(misp_attribute("ip-dst", "198.51.100.7", uuid=ATTRIBUTE_UUID.upper())).only

    assert indicator["id"] == f"indicator--{ATTRIBUTE_UUID}"


def test_id_braced_uuid_normalised():
    indicator = map_one(misp_attribute("ip-dst", "198.51.100.7", uuid="{" + ATTRIBUTE_UUID.upper() + "}")).only

    assert indicator["id"] == f"indicator--{ATTRIBUTE_UUID}"


def test_id_invalid_uuid_derived():
    indicator = map_one(misp_attribute("ip-dst", "198.51.100.7", uuid="not-a-uuid")).only

    assert indicator["id"] == derived_id("indicator", "source=not-a-uuid|part=value|generation=0")


def test_id_truncated_uuid_derived():
    truncated = ATTRIBUTE_UUID[:-1]

    indicator = map_one(misp_attribute("ip-dst", "198.51.100.7", uuid=truncated)).only

    assert indicator["id"] == derived_id("indicator", f"source={truncated}|part=value|generation=0")


def test_id_missing_uuid_uses_event():
    attribute = misp_attribute("ip-src", "198.51.100.7", uuid=None)

    indicator = map_one(attribute).only

    name = f"source=event={EVENT_UUID}|type=ip-src|value=198.51.100.7|part=value|generation=0"
    assert indicator["id"] == derived_id("indicator", name)


def test_id_empty_uuid_uses_event():
    indicator = map_one(misp_attribute("ip-src", "198.51.100.7", uuid="")).only

    name = f"source=event={EVENT_UUID}|type=ip-src|value=198.51.100.7|part=value|generation=0"
    assert indicator["id"] == derived_id("indicator", name)


def test_id_missing_uuid_and_event_uuid():
    attribute = misp_attribute("domain", "example.com", uuid=None, category="Network activity")

    indicator = map_one(attribute, uuid=None).only

    name = "source=type=domain|value=example.com|category=Network activity|part=value|generation=0"
    assert indicator["id"] == derived_id("indicator", name)


def test_id_missing_uuid_domain_ip_parts():
    attribute = misp_attribute("domain|ip", "example.com|198.51.100.7", uuid=None)

    first, second = map_one(attribute).indicators

    source = f"event={EVENT_UUID}|type=domain|ip|value=example.com|198.51.100.7"
    assert first["id"] == derived_id("indicator", f"source={source}|part=domain|generation=0")
    assert second["id"] == derived_id("indicator", f"source={source}|part=ip|generation=0")


def test_id_invalid_uuid_domain_ip_parts():
    first, second = map_one(misp_attribute("domain|ip", "example.com|198.51.100.7", uuid="attr-1")).indicators

    assert first["id"] == derived_id("indicator", "source=attr-1|part=domain|generation=0")
    assert second["id"] == derived_id("indicator", "source=attr-1|part=ip|generation=0")


def test_id_ip_half_keeps_part_id():
    # The address is the second part of the composite even when the domain half is invalid.
    attribute = misp_attribute("domain|ip", "bad domain|198.51.100.7", uuid=ATTRIBUTE_UUID)

    indicator = map_one(attribute).only

    assert indicator["id"] == derived_id("indicator", f"source={ATTRIBUTE_UUID}|part=ip|generation=0")


def test_id_object_attribute_uses_own_uuid():
    inside = misp_attribute("url", "https://example.com/x", uuid=ATTRIBUTE_UUID)
    event = misp_event(objects=(misp_object("url", inside),))

    assert map_raw(event).only["id"] == f"indicator--{ATTRIBUTE_UUID}"


def test_id_unique_across_attributes():
    attributes = [
        misp_attribute("ip-dst", "198.51.100.7", uuid=None),
        misp_attribute("ip-dst", "198.51.100.8", uuid=None),
        misp_attribute("ip-src", "198.51.100.7", uuid=None),
        misp_attribute("domain|ip", "example.com|198.51.100.7"),
        misp_attribute("domain", "example.com"),
    ]

    ids = [i["id"] for i in map_raw(misp_event(*attributes)).indicators]

    assert len(ids) == 6
    assert len(set(ids)) == 6


# Creator identity


def test_identity_from_org_uuid():
    mapped = map_one(misp_attribute("ip-dst", "198.51.100.7"))

    expected = derived_id("identity", f"org={ORG_UUID}")
    assert [identity["id"] for identity in mapped.identities] == [expected]
    assert mapped.only["created_by_ref"] == expected


def test_identity_object_fields():
    identity = map_one(misp_attribute("ip-dst", "198.51.100.7")).identities[0]

    assert identity["type"] == "identity"
    assert identity["name"] == ORG_NAME
    assert identity["identity_class"] == "organization"


def test_identity_uppercase_org_uuid_normalised():
    mapped = map_one(misp_attribute("ip-dst", "198.51.100.7"), Orgc={"uuid": ORG_UUID.upper(), "name": ORG_NAME})

    assert mapped.only["created_by_ref"] == derived_id("identity", f"org={ORG_UUID}")


def test_identity_from_org_name():
    mapped = map_one(misp_attribute("ip-dst", "198.51.100.7"), Orgc={"name": "Example CERT"})

    expected = derived_id("identity", "org-name=Example CERT")
    assert mapped.only["created_by_ref"] == expected
    assert mapped.identities[0]["id"] == expected
    assert mapped.identities[0]["name"] == "Example CERT"


def test_identity_absent_without_org():
    mapped = map_one(misp_attribute("ip-dst", "198.51.100.7"), Orgc=None)

    assert mapped.identities == []
    assert "created_by_ref" not in mapped.only


# Determinism


def determinism_event() -> dict:
    attributes = [
        misp_attribute("ip-dst", "198.51.100.7", uuid=ATTRIBUTE_UUID, tags=("tlp:green", "kill-chain:c2")),
        misp_attribute("domain|ip", "example.com|2001:db8::1", uuid=None),
        misp_attribute("filename|sha1", "a'b.exe|a9993e364706816aba3e25717850c26c9cd0d89d", uuid="bad-uuid"),
        misp_attribute("md5", "xyz"),
    ]
    inside = misp_attribute("url", "https://example.com/x", first_seen="2025-11-01T08:30:00.000000+00:00")
    return misp_event(*attributes, objects=(misp_object("url", inside),), tags=("misp:confidence-level=\"usually-confident\"",))


def test_determinism_same_bytes():
    settings = MappingSettings(misp_url="https://misp.example.org")
    event = determinism_event()

    first = map_raw(json.loads(json.dumps(event)), settings, NOW)
    second = map_raw(json.loads(json.dumps(event)), settings, NOW)

    assert orjson.dumps(first.identities + first.indicators) == orjson.dumps(second.identities + second.indicators)
    assert first.skips == second.skips
    assert len(first.indicators) == 5


def test_determinism_combined_with_attack_patterns():
    settings = MappingSettings(pattern_style="combined", include_attack_patterns=True)
    tag = 'misp-galaxy:mitre-attack-pattern="Spearphishing Attachment - T1566.001"'
    inside = misp_attribute("domain", "evil.example", object_relation="domain")
    event = misp_event(
        misp_attribute("domain|ip", "example.com|198.51.100.7", tags=(tag,)),
        objects=(misp_object("domain-ip", inside, misp_attribute("ip-dst", "198.51.100.9", object_relation="ip")),),
    )

    first = [record.stix for record in map_event(normalize_event(json.loads(json.dumps(event))), settings, NOW) if hasattr(record, "stix")]
    second = [record.stix for record in map_event(normalize_event(json.loads(json.dumps(event))), settings, NOW) if hasattr(record, "stix")]

    assert orjson.dumps(first) == orjson.dumps(second)
    assert [stix["type"] for stix in first] == ["identity", "indicator", "attack-pattern", "relationship", "indicator"]


@given(st.text(max_size=200))
def test_fast_uuid5_equals_the_standard_library(name):
    assert uuid5(name) == str(uuid.uuid5(NAMESPACE, name))
