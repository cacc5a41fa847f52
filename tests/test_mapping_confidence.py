"""Confidence from tags at three levels, the MISP decay score and the default.

The first level with a confidence tag decides: the attribute, then its object (the union of its
attributes' tags), then the event. Within a level the order is misp:confidence-level, then the admiralty
scale (the lower of its two halves, or the one present), then estimative-language. Several tags
of one kind give the lowest value. "Cannot be evaluated" and "cannot be judged" give no value.
"""

from __future__ import annotations

import pytest

from misp2sentinel.config import MappingSettings
from misp2sentinel.sources.normalize import normalize_event
from tests.conftest import misp_attribute, misp_event, misp_object
from tests.test_mapping_types import map_checked

DEFAULT = MappingSettings(default_confidence=42)


def level(value: str) -> str:
    return f'misp:confidence-level="{value}"'


def reliability(value: str) -> str:
    return f'admiralty-scale:source-reliability="{value}"'


def credibility(value: str) -> str:
    return f'admiralty-scale:information-credibility="{value}"'


def judgment(value: str) -> str:
    return f'estimative-language:confidence-in-analytic-judgment="{value}"'


def confidence(attribute_tags=(), object_tags=None, event_tags=(), settings=DEFAULT) -> int:
    attribute = misp_attribute("ip-dst", "198.51.100.7", tags=tuple(attribute_tags))
    if object_tags is None:
        event = misp_event(attribute, tags=tuple(event_tags))
    else:
        sibling = misp_attribute("text", "note", to_ids=False, tags=tuple(object_tags))
        event = misp_event(objects=(misp_object("ip-port", attribute, sibling),), tags=tuple(event_tags))
    return map_checked(event, settings).only["confidence"]


@pytest.mark.parametrize(("tags", "expected"), [
    ([level("completely-confident")], 100),
    ([level("usually-confident")], 75),
    ([level("fairly-confident")], 50),
    ([level("rarely-confident")], 25),
    ([level("unconfident")], 0),
    ([level("usually-confident"), level("rarely-confident")], 25),
    ([reliability("a"), credibility("1")], 100),
    ([reliability("b"), credibility("3")], 50),
    ([reliability("d"), credibility("2")], 25),
    ([reliability("a")], 100),
    ([credibility("4")], 25),
    ([reliability("e")], 0),
    ([reliability("g"), credibility("1")], 0),
    ([reliability("f"), credibility("2")], 75),
    ([reliability("b"), credibility("6")], 75),
    ([reliability("a"), reliability("c")], 50),
    ([judgment("low")], 0),
    ([judgment("moderate")], 55),
    ([judgment("high")], 95),
    ([judgment("high"), judgment("moderate")], 55),
    ([level("completely-confident"), reliability("e"), judgment("low")], 100),
    ([reliability("b"), judgment("low")], 75),
    (['MISP:Confidence-Level="Rarely-Confident"'], 25),
])
def test_confidence_values_at_one_level(tags, expected):
    assert confidence(attribute_tags=tags) == expected


@pytest.mark.parametrize("tags", [
    [level("confidence-cannot-be-evaluated")],
    [reliability("f")],
    [credibility("6")],
    [reliability("f"), credibility("6")],
    ["admiralty-scale:source-reliability"],
    ['misp:confidence-level="made-up"'],
])
def test_confidence_cannot_be_judged_passes_on(tags):
    assert confidence(attribute_tags=tags, event_tags=[level("rarely-confident")]) == 25
    assert confidence(attribute_tags=tags) == 42


def test_confidence_attribute_before_object():
    assert confidence(attribute_tags=[judgment("moderate")], object_tags=[level("completely-confident")]) == 55


def test_confidence_object_before_event():
    assert confidence(object_tags=[reliability("c")], event_tags=[level("completely-confident")]) == 50


def test_confidence_event_last_of_tags():
    assert confidence(object_tags=["type:OSINT"], event_tags=[credibility("2")]) == 75


def test_confidence_attribute_before_event_when_lower():
    assert confidence(attribute_tags=[level("unconfident")], event_tags=[level("completely-confident")]) == 0


def test_confidence_object_cannot_be_evaluated_passes_to_event():
    assert confidence(object_tags=[level("confidence-cannot-be-evaluated")], event_tags=[judgment("high")]) == 95


# Decay score


def decayed(decay_score, settings: MappingSettings, tags=()) -> int:
    event = normalize_event(misp_event(misp_attribute("ip-dst", "198.51.100.7", tags=tags)))
    # The normaliser does not carry decay_score yet, so the test sets it on the normalised attribute.
    event["attributes"][0]["decay_score"] = decay_score
    return map_checked(event, settings, normalised=True).only["confidence"]


DECAY = MappingSettings(default_confidence=42, use_decay_score=True)


def test_decay_lowest_model_score():
    scores = [{"score": 80.4, "DecayingModel": {"name": "A"}}, {"score": 61.6, "DecayingModel": {"name": "B"}}]

    assert decayed(scores, DECAY) == 62


def test_decay_after_tags():
    assert decayed([{"score": 10}], DECAY, tags=(level("usually-confident"),)) == 75


def test_decay_off_by_default():
    assert decayed([{"score": 10}], DEFAULT) == 42


@pytest.mark.parametrize("decay_score", [None, [], [{"name": "no score"}], "high", True])
def test_decay_missing_or_unreadable_uses_default(decay_score):
    assert decayed(decay_score, DECAY) == 42


def test_decay_bare_number_clamped():
    assert decayed(130, DECAY) == 100
