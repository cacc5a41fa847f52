"""Labels from tags, the external reference to the MISP event and the creator identity."""

from __future__ import annotations

from misp2sentinel.config import MappingSettings
from tests.conftest import (
    EVENT_UUID,
    ORG_UUID,
    derived_id,
    map_one,
    map_raw,
    misp_attribute,
    misp_event,
    misp_object,
)

MISP_URL = "https://misp.example.org"


def ip(*tags: str) -> dict:
    return misp_attribute("ip-dst", "198.51.100.7", tags=tags)


# Labels


def test_labels_from_attribute_tags():
    labels = map_one(ip('malware_classification:malware-category="Ransomware"', "kill-chain:c2")).only["labels"]

    assert 'malware_classification:malware-category="Ransomware"' in labels
    assert "kill-chain:c2" in labels


def test_labels_from_event_tags():
    labels = map_one(ip(), tags=('circl:incident-classification="malware"',)).only["labels"]

    assert 'circl:incident-classification="malware"' in labels


def test_labels_from_object_attribute_tags():
    inside = misp_attribute("url", "https://example.com/x", tags=("phishing:technique=\"spear\"",))
    event = misp_event(objects=(misp_object("url", inside),))

    assert 'phishing:technique="spear"' in map_raw(event).only["labels"]


def test_labels_without_duplicates():
    labels = map_one(ip("kill-chain:c2"), tags=("kill-chain:c2",)).only["labels"]

    assert labels.count("kill-chain:c2") == 1


# External reference


def test_external_reference_with_misp_url():
    indicator = map_one(ip(), MappingSettings(misp_url=MISP_URL)).only

    urls = [reference.get("url") for reference in indicator["external_references"]]
    assert urls == [f"{MISP_URL}/events/view/{EVENT_UUID}"]


def test_external_reference_trailing_slash():
    indicator = map_one(ip(), MappingSettings(misp_url=MISP_URL + "/")).only

    urls = [reference.get("url") for reference in indicator["external_references"]]
    assert urls == [f"{MISP_URL}/events/view/{EVENT_UUID}"]


def test_external_reference_without_misp_url():
    indicator = map_one(ip(), MappingSettings()).only

    references = indicator.get("external_references", [])
    assert all("url" not in reference for reference in references)


def test_external_reference_names_event():
    indicator = map_one(ip(), MappingSettings(misp_url=MISP_URL)).only

    reference = indicator["external_references"][0]
    assert reference["source_name"]
    assert EVENT_UUID in reference["url"]


# Creator identity


def test_created_by_ref_from_creator_org():
    mapped = map_one(ip())

    assert mapped.only["created_by_ref"] == derived_id("identity", f"org={ORG_UUID}")
    assert mapped.only["created_by_ref"] == mapped.identities[0]["id"]


def test_created_by_ref_same_for_all_indicators():
    event = misp_event(ip(), misp_attribute("domain|ip", "example.com|198.51.100.8"))

    mapped = map_raw(event)

    assert len(mapped.indicators) == 3
    assert {i["created_by_ref"] for i in mapped.indicators} == {derived_id("identity", f"org={ORG_UUID}")}
    assert len(mapped.identities) == 1
