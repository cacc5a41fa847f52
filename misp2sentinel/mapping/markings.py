"""TLP, confidence and threat type from MISP tags.

TLP tags are matched case-insensitively and ordered clear = white < green < amber < amber+strict
< red. The marking ids are the TLP 1.0 ids of the STIX 2.1 specification, which Sentinel
documents, or with `tlp_version: 2` the TLP 2.0 ids that misp-stix uses (extension
`extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d`). TLP 1.0 has no amber+strict, so
there it is marked amber. `tlp:ex:chr` (Chatham House Rule) means the source is removed.

Confidence values are the `numerical_value`s of the MISP taxonomies `misp`, `admiralty-scale` and
`estimative-language`. "Cannot be evaluated" and "cannot be judged" carry no value here, so the
next source of confidence decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

TLP_RANK = {"clear": 0, "white": 0, "green": 1, "amber": 2, "amber+strict": 3, "red": 4}
TLP_NAMES = ("clear", "green", "amber", "amber+strict", "red")
AMBER_STRICT = TLP_RANK["amber+strict"]

TLP1_MARKING_IDS = {
    "clear": "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
    "green": "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
    "amber": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    "amber+strict": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    "red": "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
}
TLP2_MARKING_IDS = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
TLP_MARKING_IDS = TLP1_MARKING_IDS
CHATHAM_HOUSE_TAG = "tlp:ex:chr"

CONFIDENCE_LEVELS = {
    "completely-confident": 100,
    "usually-confident": 75,
    "fairly-confident": 50,
    "rarely-confident": 25,
    "unconfident": 0,
}
SOURCE_RELIABILITY = {"a": 100, "b": 75, "c": 50, "d": 25, "e": 0, "g": 0}
INFORMATION_CREDIBILITY = {"1": 100, "2": 75, "3": 50, "4": 25, "5": 0}
ANALYTIC_CONFIDENCE = {"low": 0, "moderate": 55, "high": 95}

# The predicates of MISP's sentinel-threattype taxonomy, which name Sentinel's threat types.
SENTINEL_THREAT_TYPES = {
    name.lower(): name
    for name in ("Botnet", "C2", "CryptoMining", "Darknet", "DDoS", "MaliciousUrl", "Malware", "Phishing",
                 "Proxy", "PUA", "WatchList")
}


@dataclass(frozen=True, slots=True)
class TagSummary:
    """The TLP, Chatham House Rule, confidence and threat type found in one level's tags (an
    attribute's, an object's or an event's)."""

    tlp_rank: int | None = None
    chatham_house: bool = False
    confidence: int | None = None
    threat_types: tuple[str, ...] = ()


EMPTY = TagSummary()


def summarize(tags: list[str]) -> TagSummary:
    """Read the TLP, Chatham House Rule, confidence and Sentinel threat type from one level's tags."""
    if not tags:
        return EMPTY
    return _summarize(tuple(tags))


def _tag_value(lowered: str) -> str:
    return lowered.partition("=")[2].strip().strip('"').strip()


@lru_cache(maxsize=4096)
def _summarize(tags: tuple[str, ...]) -> TagSummary:
    rank = None
    chatham_house = False
    levels, admiralty, analytic = [], [], []
    threat_types = []
    for tag in tags:
        lowered = tag.lower().strip()
        if lowered.startswith("tlp:"):
            if lowered == CHATHAM_HOUSE_TAG:
                chatham_house = True
            found = TLP_RANK.get(lowered[4:].strip())
            if found is not None and (rank is None or found > rank):
                rank = found
        elif lowered.startswith("misp:confidence-level="):
            score = CONFIDENCE_LEVELS.get(_tag_value(lowered))
            if score is not None:
                levels.append(score)
        elif lowered.startswith("admiralty-scale:source-reliability="):
            score = SOURCE_RELIABILITY.get(_tag_value(lowered))
            if score is not None:
                admiralty.append(score)
        elif lowered.startswith("admiralty-scale:information-credibility="):
            score = INFORMATION_CREDIBILITY.get(_tag_value(lowered))
            if score is not None:
                admiralty.append(score)
        elif lowered.startswith("estimative-language:confidence-in-analytic-judgment="):
            score = ANALYTIC_CONFIDENCE.get(_tag_value(lowered))
            if score is not None:
                analytic.append(score)
        elif lowered.startswith("sentinel-threattype:"):
            name = SENTINEL_THREAT_TYPES.get(lowered.split(":", 1)[1].strip().strip('"'))
            if name is not None and name not in threat_types:
                threat_types.append(name)

    # One level: misp:confidence-level first, then the admiralty scale (the lower of source
    # reliability and information credibility, or the one present), then estimative language.
    confidence = None
    for scores in (levels, admiralty, analytic):
        if scores:
            confidence = min(scores)
            break
    return TagSummary(rank, chatham_house, confidence, tuple(threat_types))


def decay_confidence(decay_score) -> int | None:
    """Return the lowest MISP decay score (0-100) of an attribute, or None when it has none.

    MISP returns `decay_score` as a list of `{"score": ..., "DecayingModel": ...}`, one per model,
    when asked with `includeDecayScore`; a bare number is accepted too.
    """
    if decay_score is None or isinstance(decay_score, bool):
        return None
    if isinstance(decay_score, (int, float)):
        scores = [decay_score]
    elif isinstance(decay_score, list):
        scores = [entry.get("score") for entry in decay_score if isinstance(entry, dict)]
    else:
        return None
    numbers = [float(score) for score in scores if isinstance(score, (int, float)) and not isinstance(score, bool)]
    if not numbers:
        return None
    return max(0, min(100, round(min(numbers))))


def tlp_rank(tags: list[str]) -> int | None:
    """Return the rank of the most restrictive TLP tag among `tags`, or None if there is none."""
    return summarize(tags).tlp_rank


def marking_id(rank: int, tlp_version: int) -> str:
    table = TLP2_MARKING_IDS if tlp_version == 2 else TLP1_MARKING_IDS
    return table[TLP_NAMES[rank]]
