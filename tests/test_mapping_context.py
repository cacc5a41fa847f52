"""Labels from tags and galaxies, ATT&CK context, indicator types, names and descriptions, the
external reference to the MISP event and the creator identity."""

from __future__ import annotations

import pytest

from misp2sentinel.config import MappingSettings
from misp2sentinel.mapping.context import galaxy_clusters
from misp2sentinel.sources.normalize import normalize_event
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
from tests.test_mapping_types import map_checked

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


# Galaxy clusters: ATT&CK, actors, malware and tools

TECHNIQUE_TAG = 'misp-galaxy:mitre-attack-pattern="Spearphishing Attachment - T1566.001"'
RAW_GALAXY = [{
    "type": "mitre-attack-pattern",
    "name": "Attack Pattern",
    "GalaxyCluster": [
        {"type": "mitre-attack-pattern", "value": "Control Panel Items - T1196",
         "tag_name": 'misp-galaxy:mitre-attack-pattern="Control Panel Items - T1196"',
         "meta": {"external_id": ["T1196"], "kill_chain": ["mitre-attack:defense-evasion", "mitre-attack:enterprise-attack:execution"]}},
        {"type": "mitre-attack-pattern", "value": "Malware - T1587.001", "meta": {"external_id": ["T1587.001"]}},
    ],
}]


def with_galaxies(raw_event: dict, event_galaxies=None, attribute_galaxies=None) -> dict:
    """Normalise an event and attach galaxies the way `galaxy_clusters` reduces MISP's `Galaxy` lists."""
    event = normalize_event(raw_event)
    if event_galaxies is not None:
        event["galaxies"] = galaxy_clusters(event_galaxies)
    if attribute_galaxies is not None:
        event["attributes"][0]["galaxies"] = galaxy_clusters(attribute_galaxies)
    return event


def test_galaxy_kill_chain_phases():
    event = with_galaxies(misp_event(ip()), event_galaxies=RAW_GALAXY)

    indicator = map_checked(event, normalised=True).only

    assert indicator["kill_chain_phases"] == [
        {"kill_chain_name": "mitre-attack", "phase_name": "defense-evasion"},
        {"kill_chain_name": "mitre-attack", "phase_name": "execution"},
    ]


def test_galaxy_technique_reference_and_label():
    event = with_galaxies(misp_event(ip()), attribute_galaxies=RAW_GALAXY)

    indicator = map_checked(event, normalised=True).only

    attack = [reference for reference in indicator["external_references"] if reference["source_name"] == "mitre-attack"]
    assert attack == [
        {"source_name": "mitre-attack", "external_id": "T1196", "url": "https://attack.mitre.org/techniques/T1196/",
         "description": "Control Panel Items - T1196"},
        {"source_name": "mitre-attack", "external_id": "T1587.001", "url": "https://attack.mitre.org/techniques/T1587/001/",
         "description": "Malware - T1587.001"},
    ]
    assert "attack-pattern:Malware - T1587.001" in indicator["labels"]


def test_galaxy_tag_only_no_kill_chain():
    indicator = map_checked(misp_event(ip(TECHNIQUE_TAG))).only

    assert "kill_chain_phases" not in indicator
    assert "attack-pattern:Spearphishing Attachment - T1566.001" in indicator["labels"]
    assert TECHNIQUE_TAG not in indicator["labels"]
    assert indicator["external_references"][-1]["external_id"] == "T1566.001"


def test_galaxy_tag_and_cluster_merge():
    tag = 'misp-galaxy:mitre-attack-pattern="Control Panel Items - T1196"'
    event = with_galaxies(misp_event(ip(), tags=(tag,)), event_galaxies=RAW_GALAXY)

    indicator = map_checked(event, normalised=True).only

    assert indicator["labels"].count("attack-pattern:Control Panel Items - T1196") == 1
    assert [r["external_id"] for r in indicator["external_references"][1:]] == ["T1196", "T1587.001"]


@pytest.mark.parametrize(("tag", "label"), [
    ('misp-galaxy:threat-actor="Turla"', "threat-actor:Turla"),
    ('misp-galaxy:mitre-intrusion-set="APT28 - G0007"', "threat-actor:APT28 - G0007"),
    ('misp-galaxy:malpedia="ComRAT"', "malware:ComRAT"),
    ('misp-galaxy:mitre-malware="Mozi - S0000"', "malware:Mozi - S0000"),
    ('misp-galaxy:tool="Mimikatz"', "tool:Mimikatz"),
    ('misp-galaxy:mitre-tool="PsExec - S0029"', "tool:PsExec - S0029"),
])
def test_galaxy_kind_labels(tag, label):
    labels = map_one(ip(), tags=(tag,)).only["labels"]

    assert label in labels
    assert tag not in labels


def test_galaxy_unknown_kind_kept_as_tag():
    tag = 'misp-galaxy:sector="Finance"'

    assert tag in map_one(ip(tag)).only["labels"]


def test_galaxy_clusters_from_corpus_shape():
    clusters = galaxy_clusters(RAW_GALAXY)

    assert clusters[0] == {
        "type": "mitre-attack-pattern",
        "value": "Control Panel Items - T1196",
        "kill_chain": ["mitre-attack:defense-evasion", "mitre-attack:enterprise-attack:execution"],
        "external_id": ["T1196"],
    }
    assert galaxy_clusters(None) == []
    assert galaxy_clusters([{"GalaxyCluster": [{"value": ""}, "junk"]}, "junk"]) == []


# Attack-pattern objects and relationships


def test_attack_patterns_off_by_default():
    mapped = map_checked(misp_event(ip(TECHNIQUE_TAG)))

    assert mapped.attack_patterns == []
    assert mapped.relationships == []


def test_attack_patterns_and_relationships():
    settings = MappingSettings(include_attack_patterns=True)
    event = with_galaxies(misp_event(ip(), misp_attribute("domain", "evil.example")), event_galaxies=RAW_GALAXY)

    mapped = map_checked(event, settings, normalised=True)

    assert [pattern["id"] for pattern in mapped.attack_patterns] == [
        derived_id("attack-pattern", "attack-pattern=T1196"),
        derived_id("attack-pattern", "attack-pattern=T1587.001"),
    ]
    assert mapped.attack_patterns[0]["name"] == "Control Panel Items"
    assert mapped.attack_patterns[0]["kill_chain_phases"][0] == {"kill_chain_name": "mitre-attack", "phase_name": "defense-evasion"}
    assert len(mapped.relationships) == 4
    first = mapped.relationships[0]
    indicator = mapped.indicators[0]
    assert first["relationship_type"] == "indicates"
    assert first["source_ref"] == indicator["id"]
    assert first["target_ref"] == mapped.attack_patterns[0]["id"]
    assert first["id"] == derived_id("relationship", f"indicates|{indicator['id']}|{first['target_ref']}")
    assert first["object_marking_refs"] == indicator["object_marking_refs"]
    assert first["created_by_ref"] == indicator["created_by_ref"]


# Indicator types


@pytest.mark.parametrize(("category", "expected"), [
    ("Network activity", ["malicious-activity"]),
    ("Payload delivery", ["malicious-activity"]),
    ("Attribution", ["attribution"]),
    ("Targeting data", ["compromised"]),
    ("External analysis", ["anomalous-activity"]),
    ("Other", ["anomalous-activity"]),
])
def test_indicator_types_from_category(category, expected):
    settings = MappingSettings(default_indicator_type="anomalous-activity")

    indicator = map_one(misp_attribute("ip-dst", "198.51.100.7", category=category), settings).only

    assert indicator["indicator_types"] == expected


@pytest.mark.parametrize(("tags", "event_tags", "expected"), [
    (("sentinel-threattype:C2",), (), ["C2", "malicious-activity"]),
    (("Sentinel-ThreatType:botnet",), ("sentinel-threattype:Phishing",), ["Botnet", "malicious-activity"]),
    ((), ("sentinel-threattype:MaliciousUrl",), ["MaliciousUrl", "malicious-activity"]),
    (("sentinel-threattype:NotAType",), (), ["malicious-activity"]),
])
def test_indicator_types_from_sentinel_tag(tags, event_tags, expected):
    assert map_one(ip(*tags), tags=event_tags).only["indicator_types"] == expected


def test_indicator_type_setting_validated():
    with pytest.raises(ValueError):
        MappingSettings(default_indicator_type="evil")


# Name and description


def test_description_comment_notes_and_title():
    attribute = misp_attribute("ip-dst|port", "198.51.100.7|443", comment="  C2 of the loader  ")

    indicator = map_one(attribute, info="Turla LightNeuron").only

    assert indicator["description"].splitlines() == [
        "C2 of the loader",
        "Direction: destination address.",
        "Port: 443.",
        "MISP event: Turla LightNeuron",
    ]
    assert indicator["name"] == "198.51.100.7"


def test_name_one_line_and_bounded():
    indicator = map_one(misp_attribute("email-body", "Dear customer,\n" + "pay now " * 60)).only

    assert "\n" not in indicator["name"]
    assert len(indicator["name"]) == 200
    assert indicator["name"].endswith("…")
