"""TLP and confidence from MISP tags.

TLP tags are matched case-insensitively and ordered clear = white < green < amber < amber+strict
< red. The STIX marking ids are the TLP 1.0 ids of the STIX 2.1 specification, which Sentinel
documents; TLP 1.0 has no amber+strict, so it is marked amber and keeps a `tlp:amber+strict` label.
"""

from __future__ import annotations

TLP_RANK = {"clear": 0, "white": 0, "green": 1, "amber": 2, "amber+strict": 3, "red": 4}
TLP_NAMES = ("clear", "green", "amber", "amber+strict", "red")

TLP_MARKING_IDS = {
    "clear": "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
    "green": "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
    "amber": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    "amber+strict": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    "red": "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
}

# misp:confidence-level values from the MISP taxonomy (numerical_value of each predicate).
CONFIDENCE_LEVELS = {
    "completely-confident": 100,
    "usually-confident": 75,
    "fairly-confident": 50,
    "rarely-confident": 25,
    "unconfident": 0,
    "confidence-cannot-be-evaluated": 50,
}


def tlp_rank(tags: list[str]) -> int | None:
    """Return the rank of the most restrictive TLP tag among `tags`, or None if there is none."""
    best = None
    for tag in tags:
        lowered = tag.lower()
        if not lowered.startswith("tlp:"):
            continue
        rank = TLP_RANK.get(lowered[4:].strip())
        if rank is not None and (best is None or rank > best):
            best = rank
    return best


def is_tlp_tag(tag: str) -> bool:
    lowered = tag.lower()
    return lowered.startswith("tlp:") and lowered[4:].strip() in TLP_RANK


def confidence_from_tags(tags: list[str]) -> int | None:
    """Return the lowest `misp:confidence-level` value among `tags`, or None if there is none."""
    found = None
    for tag in tags:
        lowered = tag.lower()
        if not lowered.startswith("misp:confidence-level"):
            continue
        _, _, value = lowered.partition("=")
        score = CONFIDENCE_LEVELS.get(value.strip().strip('"'))
        if score is not None and (found is None or score < found):
            found = score
    return found
