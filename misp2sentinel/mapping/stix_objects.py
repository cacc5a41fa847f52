"""The STIX objects the mapper sends besides indicators: the creator identity, ATT&CK attack
patterns and the `indicates` relationships from indicators to them. All are plain dicts."""

from __future__ import annotations

import re
from datetime import datetime

from misp2sentinel.mapping import ids, lifetime
from misp2sentinel.mapping.context import Cluster, technique_reference

TECHNIQUE_SUFFIX = re.compile(r"\s*-\s*T\d{4}(?:\.\d{3})?$")


def identity(org: dict, now: datetime) -> dict | None:
    identity_id = ids.identity_id(org)
    if identity_id is None:
        return None
    moment = lifetime.stix_timestamp(now)
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": identity_id,
        "created": moment,
        "modified": moment,
        "name": org.get("name") or org.get("uuid"),
        "identity_class": "organization",
    }


def attack_pattern(technique: Cluster, now: datetime) -> dict:
    """Return the attack-pattern object of an ATT&CK technique, named without its id suffix."""
    moment = lifetime.stix_timestamp(now)
    stix = {
        "type": "attack-pattern",
        "spec_version": "2.1",
        "id": ids.attack_pattern_id(technique.attack_id),
        "created": moment,
        "modified": moment,
        "name": TECHNIQUE_SUFFIX.sub("", technique.value) or technique.attack_id,
        "external_references": [technique_reference(technique)],
    }
    if technique.phases:
        stix["kill_chain_phases"] = [
            {"kill_chain_name": kill_chain_name, "phase_name": phase_name}
            for kill_chain_name, phase_name in technique.phases
        ]
    return stix


def indicates(indicator: dict, target_id: str, modified: str) -> dict:
    """Return the `indicates` relationship from an indicator to an attack pattern, with its marking and creator."""
    stix = {
        "type": "relationship",
        "spec_version": "2.1",
        "id": ids.relationship_id(indicator["id"], target_id),
        "created": indicator["created"],
        "modified": modified,
        "relationship_type": "indicates",
        "source_ref": indicator["id"],
        "target_ref": target_id,
        "object_marking_refs": indicator["object_marking_refs"],
    }
    if "created_by_ref" in indicator:
        stix["created_by_ref"] = indicator["created_by_ref"]
    return stix
