"""The short path for the usual attribute (`mapping.plain`) gives exactly what the general path gives.

Each case maps an event twice, once as the product does and once with the short path turned off,
and compares every record and skip, field by field and in order. The cases are the bundled example
feed and the public corpus when it is present. Generated events vary what the short path's shared
properties depend on. They carry tags at every level (TLP, Chatham House Rule, confidence, threat
type, galaxies) and objects with the same template. Their timestamps fall before and after the run
time, with and without first and last seen; some have comments or uuids that are not canonical.
Every case runs under several mapping settings.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misp2sentinel.config import MappingSettings
from misp2sentinel.mapping import builder, map_event, plain
from misp2sentinel.report import NOT_IDS, Skip
from misp2sentinel.mapping.record import Record
from misp2sentinel.sources.normalize import events_from_document, normalize_event, normalize_object
from tests.conftest import ATTRIBUTE_TIMESTAMP, CORPUS, NOW, PHISHING_GALAXY, REPO_ROOT, misp_attribute, misp_event, misp_object

BOUNDED = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
EXAMPLE_FEED = REPO_ROOT / "examples" / "feed"
CORPUS_FILES = sorted(CORPUS.glob("*.json")) if CORPUS.is_dir() else []

SETTINGS = {
    "default": MappingSettings(),
    "attack patterns, red, TLP 1.0": MappingSettings(max_tlp="red", include_attack_patterns=True, tlp_version=1),
    "combined": MappingSettings(pattern_style="combined", misp_url="https://misp.example.org/"),
    "decay score, no identities": MappingSettings(use_decay_score=True, include_identities=False, default_tlp="green",
                                                  default_confidence=40),
    "ip never expires": MappingSettings(lifetime_days={"ip": "never", "domain": 1}, use_last_seen=False),
}


def both_paths(event: dict, mapping: MappingSettings, monkeypatch: pytest.MonkeyPatch) -> tuple[list, list, int]:
    """Map a normalised event with and without the short path; return both outputs and the short path's count."""
    shortcuts = 0
    real = plain.plain_record

    def counted(*arguments):
        nonlocal shortcuts
        record = real(*arguments)
        shortcuts += record is not None
        return record

    with monkeypatch.context() as patch:
        patch.setattr(builder, "plain_record", counted)
        fast = list(map_event(event, mapping, NOW))
    with monkeypatch.context() as patch:
        patch.setattr(builder, "plain_record", lambda *arguments: None)
        general = list(map_event(event, mapping, NOW))
    return fast, general, shortcuts


def assert_same(fast: list, general: list) -> None:
    assert len(fast) == len(general)
    for mine, theirs in zip(fast, general):
        assert mine == theirs


def read_events(path: Path) -> list[dict]:
    import json

    return events_from_document(json.loads(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("name", list(SETTINGS))
def test_example_feed_same_on_both_paths(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shortcuts = 0
    for path in sorted(EXAMPLE_FEED.glob("*.json")):
        if path.name == "manifest.json":
            continue
        for event in read_events(path):
            fast, general, count = both_paths(event, SETTINGS[name], monkeypatch)
            assert_same(fast, general)
            shortcuts += count
    assert shortcuts > 0


@pytest.mark.skipif(not CORPUS_FILES, reason=f"the MISP event corpus is not at {CORPUS}")
@pytest.mark.parametrize("name", list(SETTINGS))
def test_corpus_same_on_both_paths(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shortcuts = 0
    for path in CORPUS_FILES:
        for event in read_events(path):
            fast, general, count = both_paths(event, SETTINGS[name], monkeypatch)
            assert_same(fast, general)
            shortcuts += count
    assert shortcuts > 0


TAGS = st.lists(st.sampled_from([
    "tlp:green", "tlp:amber", "tlp:amber+strict", "tlp:red", "tlp:clear", "tlp:ex:chr",
    'misp:confidence-level="completely-confident"', 'admiralty-scale:source-reliability="b"',
    'estimative-language:likelihood-probability="very-likely"', "kill-chain:Delivery", "osint:source-type=\"report\"",
    'misp-galaxy:mitre-attack-pattern="Phishing - T1566"', 'misp-galaxy:threat-actor="APT28"', "custom-label",
    'ms-sentinel:threat-type="botnet"',
]), max_size=3, unique=True)
VALUES = st.sampled_from([
    ("ip-dst", "198.51.100.7"), ("ip-src", "203.0.113.0/24"), ("ip-dst", "10.1.2.3"), ("domain", "Example.COM."),
    ("hostname", "mail.example.net"), ("url", "https://example.org/a?b='c'"), ("md5", "D41D8CD98F00B204E9800998ECF8427E"),
    ("sha256", "a" * 64), ("filename|md5", "evil.exe|" + "b" * 32), ("domain|ip", "example.com|198.51.100.8"),
    ("email-src", "attacker@example.com"), ("yara", "rule demo { condition: true }"), ("ip-dst", "not an address"),
])
TIMESTAMPS = st.sampled_from([ATTRIBUTE_TIMESTAMP, ATTRIBUTE_TIMESTAMP + 1, int(NOW.timestamp()) + 3600, 1_000_000_000])


@st.composite
def attributes(draw, in_object: bool = False) -> dict:
    attribute_type, value = draw(VALUES)
    fields = {"timestamp": str(draw(TIMESTAMPS)), "comment": draw(st.sampled_from(["", "  seen in a campaign ", "x"]))}
    if draw(st.booleans()):
        fields["first_seen"] = "2025-11-01T00:00:00.000000+00:00"
    if draw(st.integers(0, 4)) == 0:
        fields["last_seen"] = "2026-03-01T00:00:00Z"
    if draw(st.integers(0, 5)) == 0:
        fields["uuid"] = draw(st.sampled_from(["{7F4D9C2E-1B3A-4C5D-8E6F-0A1B2C3D4E5F}", "not-a-uuid", ""]))
    if draw(st.integers(0, 6)) == 0:
        fields["Galaxy"] = [PHISHING_GALAXY]
    if draw(st.integers(0, 6)) == 0:
        fields["decay_score"] = [{"score": draw(st.integers(0, 100)), "decayed": False}]
    if in_object:
        fields["object_relation"] = draw(st.sampled_from(["ip", "domain", "url", "md5", "filename", "text"]))
    to_ids = draw(st.sampled_from([True, True, True, False, None]))
    return misp_attribute(attribute_type, value, to_ids=to_ids, tags=tuple(draw(TAGS)), **fields)


@st.composite
def events(draw) -> dict:
    objects = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["domain-ip", "file", "url"]))
        members = draw(st.lists(attributes(in_object=True), min_size=1, max_size=3))
        # Objects with the same name and tags share their template, so repeat one now and then.
        objects.append(misp_object(name, *members))
        if draw(st.booleans()):
            objects.append(misp_object(name, *[dict(member, uuid=f"{index:08d}-0000-4000-8000-000000000000")
                                               for index, member in enumerate(members)]))
    return misp_event(*draw(st.lists(attributes(), max_size=6)), objects=tuple(objects), tags=tuple(draw(TAGS)))


@BOUNDED
@given(raw=events(), name=st.sampled_from(list(SETTINGS)))
def test_generated_events_same_on_both_paths(raw: dict, name: str) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, general, _ = both_paths(normalize_event(raw), SETTINGS[name], monkeypatch)
    assert_same(fast, general)


def test_short_path_shares_a_template_between_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two objects with the same name and tags share one template, and their indicators still differ
    in what is their own: the value, the sibling notes and the id."""
    first = misp_object("domain-ip", misp_attribute("domain", "one.example", object_relation="domain"),
                        misp_attribute("ip-dst", "198.51.100.1", object_relation="ip"))
    second = misp_object("domain-ip", misp_attribute("domain", "two.example", object_relation="domain"),
                         misp_attribute("ip-dst", "198.51.100.2", object_relation="ip"))
    created = []
    real = plain.Template.__init__

    def counted(self, *arguments) -> None:
        created.append(arguments[1]["type"])
        real(self, *arguments)

    monkeypatch.setattr(plain.Template, "__init__", counted)
    fast, general, shortcuts = both_paths(normalize_event(misp_event(objects=(first, second))), MappingSettings(), monkeypatch)

    assert shortcuts == 4
    assert sorted(created) == ["domain", "ip-dst"]
    assert_same(fast, general)
    descriptions = [item.stix["description"] for item in fast if item.stix["type"] == "indicator"]
    assert "ip: 198.51.100.1" in descriptions[0]
    assert "ip: 198.51.100.2" in descriptions[2]


def test_short_path_reads_each_decay_score(monkeypatch: pytest.MonkeyPatch) -> None:
    """With `use_decay_score` and no confidence tag, attributes that share a template keep their own score."""
    scored = [misp_attribute("ip-dst", f"198.51.100.{index}", decay_score=[{"score": score, "decayed": False}])
              for index, score in enumerate((72.5, 31, None), start=1)]
    mapping = MappingSettings(use_decay_score=True, default_confidence=55)

    fast, general, shortcuts = both_paths(normalize_event(misp_event(*scored)), mapping, monkeypatch)

    assert shortcuts == 3
    assert_same(fast, general)
    assert [item.stix["confidence"] for item in fast if item.stix["type"] == "indicator"] == [72, 31, 55]


def test_not_itemized_counts_not_ids_once() -> None:
    """Without itemized skips, an event's to_ids-off attributes become one skip with their count."""
    raw = misp_event(
        misp_attribute("domain", "one.example", to_ids=False),
        misp_attribute("ip-dst", "198.51.100.7"),
        misp_attribute("domain", "two.example", to_ids=False),
        objects=(misp_object("domain-ip", misp_attribute("domain", "three.example", to_ids=False, object_relation="domain")),),
    )
    event = normalize_event(raw)

    itemized = list(map_event(event, MappingSettings(), NOW))
    counted = list(map_event(event, MappingSettings(), NOW, itemized=False))

    not_ids = [item for item in counted if isinstance(item, Skip)]
    assert [(skip.reason, skip.count) for skip in not_ids] == [(NOT_IDS, 3)]
    assert not_ids[0].describe().startswith("skipped 3 attributes of event")
    assert [item for item in counted if not isinstance(item, Skip)] == [item for item in itemized if not isinstance(item, Skip)]
    assert sum(1 for item in itemized if isinstance(item, Skip)) == 3


def technique_galaxy(number: int) -> dict:
    """Return an ATT&CK galaxy with one technique of its own, T1000 + `number`."""
    attack_id = f"T{1000 + number}"
    return {
        "type": "mitre-attack-pattern",
        "GalaxyCluster": [{
            "type": "mitre-attack-pattern", "value": f"Technique {number} - {attack_id}",
            "meta": {"external_id": [attack_id], "kill_chain": ["mitre-attack:execution"]},
        }],
    }


def test_streamed_objects_with_galaxies_keep_their_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects read one at a time from a large file are freed after mapping, so a later object can
    reuse a freed one's address. Each object with galaxies must still get its own context."""

    raw_objects = [
        misp_object(
            "domain-ip",
            misp_attribute("domain", f"host{number}.example.com", object_relation="domain", Galaxy=[technique_galaxy(number)]),
            misp_attribute("ip-dst", f"198.51.100.{number + 1}", object_relation="ip"),
        )
        for number in range(40)
    ]

    def streamed_objects():
        # One dict refilled for each object: the extreme case of a freed object's address coming back.
        reused = {}
        for raw in raw_objects:
            reused.clear()
            reused.update(normalize_object(copy.deepcopy(raw)))
            yield reused

    event = normalize_event(misp_event())
    event["objects"] = streamed_objects()
    fast = list(map_event(event, MappingSettings(), NOW))
    with monkeypatch.context() as patch:
        patch.setattr(builder, "plain_record", lambda *arguments: None)
        event["objects"] = streamed_objects()
        general = list(map_event(event, MappingSettings(), NOW))

    assert_same(fast, general)
    addresses = [item for item in fast if isinstance(item, Record) and item.attribute_type == "ip-dst"]
    assert len(addresses) == 40
    for number, record in enumerate(addresses):
        assert f"attack-pattern:Technique {number} - T{1000 + number}" in record.stix["labels"]
