"""The corpus test: real public MISP events (ESET reports, PyMISP, misp-stix and MISP test files).

Every object the mapper produces parses with `stix2.parse(obj, allow_custom=False)`, and every STIX
pattern passes stix2-patterns, in both pattern styles and with attack patterns on. Every attribute
is either sent or skipped with a documented reason. The corpus lives beside the checkout
(`shared/corpus/misp-events`); the tests are skipped when it is absent.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from misp2sentinel import report
from misp2sentinel.config import MappingSettings
from misp2sentinel.mapping import Record, map_event
from misp2sentinel.mapping.context import galaxy_clusters
from misp2sentinel.report import Skip
from misp2sentinel.sources.normalize import events_from_document
from tests.conftest import CORPUS
from tests.test_mapping_types import check_object

NOW = datetime(2026, 1, 31, tzinfo=timezone.utc)
FILES = sorted(CORPUS.glob("*.json")) if CORPUS.is_dir() else []
MAPPING_REASONS = {
    report.DELETED, report.NOT_IDS, report.WARNINGLIST, report.UNSUPPORTED_TYPE, report.INVALID_VALUE,
    report.ABOVE_MAX_TLP, report.NON_PUBLIC_ADDRESS, report.BROAD_CIDR, report.EMPTY_CONTENT_HASH, report.STALE,
}
STYLES = {
    "simple": MappingSettings(max_tlp="red", include_attack_patterns=True,
                              sanity={"empty_content_hashes": True}),
    "combined": MappingSettings(max_tlp="red", include_attack_patterns=True, pattern_style="combined",
                                sanity={"empty_content_hashes": True}),
}

pytestmark = pytest.mark.skipif(not FILES, reason=f"the MISP event corpus is not at {CORPUS}")


def raw_events(document) -> list[dict]:
    """Return the raw `Event` objects of a document, in the order the normaliser reads them."""
    if isinstance(document, list):
        return [event for item in document for event in raw_events(item)]
    if not isinstance(document, dict):
        return []
    if isinstance(document.get("Event"), dict):
        return [document["Event"]]
    if "response" in document:
        return raw_events(document["response"])
    return [document] if "info" in document or "Attribute" in document else []


def corpus_events(path) -> list[dict]:
    document = json.loads(path.read_text(encoding="utf-8"))
    try:
        events = events_from_document(document)
    except ValueError:
        return []
    # The normaliser keeps tags, not galaxies; attach each event's clusters as galaxy_clusters reduces them.
    raws = raw_events(document)
    if len(raws) == len(events):
        for event, raw in zip(events, raws):
            event["galaxies"] = galaxy_clusters(raw.get("Galaxy"))
    return events


@pytest.mark.parametrize("style", sorted(STYLES))
@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_corpus_objects_valid_and_attributes_accounted(path, style):
    settings = STYLES[style]
    for event in corpus_events(path):
        accounted: set[str | None] = set()
        combined_objects: set[str] = set()
        for item in map_event(event, settings, NOW):
            if isinstance(item, Skip):
                assert item.reason in MAPPING_REASONS, item
                assert item.detail, item
                accounted.add(item.attribute_uuid)
                continue
            assert isinstance(item, Record)
            check_object(item.stix, settings)
            accounted.add(item.attribute_uuid)
            if item.part == "combined" and item.attribute_uuid is None:
                combined_objects.add(item.source)

        for attribute in event["attributes"]:
            assert attribute["uuid"] in accounted, attribute
        for misp_object in event["objects"]:
            if style == "combined" and misp_object["uuid"] in combined_objects:
                continue
            for attribute in misp_object["attributes"]:
                assert attribute["uuid"] in accounted, (misp_object["name"], attribute)


def test_corpus_kill_chain_phases():
    with_tactics = [path for path in FILES if "kill_chain" in path.read_text(encoding="utf-8")]
    assert with_tactics, "the corpus has ATT&CK clusters with kill chains"

    phases = set()
    for path in with_tactics:
        for event in corpus_events(path):
            for item in map_event(event, STYLES["simple"], NOW):
                if isinstance(item, Record) and item.stix["type"] == "indicator":
                    phases.update(phase["phase_name"] for phase in item.stix.get("kill_chain_phases", ()))
    assert {"defense-evasion", "command-and-control", "impact"} <= phases


def test_corpus_indicator_count_stable():
    # A guard against silent regressions: the simple style sends at least this many indicators.
    indicators = 0
    for path in FILES:
        for event in corpus_events(path):
            indicators += sum(
                1 for item in map_event(event, STYLES["simple"], NOW)
                if isinstance(item, Record) and item.stix["type"] == "indicator"
            )
    assert indicators >= 1300
