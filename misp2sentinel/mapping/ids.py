"""Stable STIX ids, recomputable by anyone from the same MISP data.

* The first (or only) indicator of an attribute whose uuid is a valid RFC 4122 uuid, at generation 0,
  is `indicator--<attribute uuid>` (lower case, no braces).
* Every other indicator is `indicator--<UUIDv5(NAMESPACE, name)>` with the name
  `source=<source>|part=<part>|generation=<n>`, where `<source>` is the normalised attribute uuid, or
  the raw uuid text when it is not a valid uuid, or `event=<event uuid>|type=<type>|value=<value>`
  for an attribute without uuid, or `type=<type>|value=<value>|category=<category>` when the event
  has no uuid either.
* The combined pattern of a MISP object (pattern style `combined`) is an indicator with the part
  `combined` and the object as its source: the normalised object uuid, or the raw uuid text when it
  is not a valid uuid, or `event=<event uuid>|object=<template>|attributes=<attribute sources>`
  (the sorted sources of its attributes, joined by `,`) when it has no uuid.
* An organisation's identity is `identity--<UUIDv5(NAMESPACE, "org=<org uuid>")>`, or
  `"org-name=<name>"` when it has no uuid.
* A MITRE ATT&CK technique is `attack-pattern--<UUIDv5(NAMESPACE, "attack-pattern=<ATT&CK id>")>`,
  and the relationship from an indicator to it is
  `relationship--<UUIDv5(NAMESPACE, "indicates|<indicator id>|<attack-pattern id>")>`.
"""

from __future__ import annotations

import hashlib
import re
import uuid

# The canonical text form of an RFC 4122 uuid; anything else goes through uuid.UUID.
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
NAMESPACE = uuid.UUID("bab431ea-3d5a-5dee-a9dc-281372b9912f")
NAMESPACE_BYTES = NAMESPACE.bytes


def uuid5(name: str) -> str:
    """Return the text of `uuid.uuid5(NAMESPACE, name)`, built from the SHA-1 digest directly,
    which costs a third of going through `uuid.UUID`."""
    digest = bytearray(hashlib.sha1(NAMESPACE_BYTES + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def canonical_uuid(text: str | None) -> str | None:
    """Return the lower-case form of a valid RFC 4122 uuid, else None."""
    if not text:
        return None
    if CANONICAL_UUID.fullmatch(text):
        return text
    candidate = text.strip()
    if candidate.startswith("{") and candidate.endswith("}"):
        candidate = candidate[1:-1]
    if len(candidate) != 36:
        return None
    lowered = candidate.lower()
    if CANONICAL_UUID.fullmatch(lowered):
        return lowered
    try:
        parsed = uuid.UUID(candidate)
    except ValueError:
        return None
    if parsed.variant != uuid.RFC_4122:
        return None
    return str(parsed)


def attribute_source(attribute: dict, event: dict) -> tuple[str, bool]:
    """Return (source string, whether it is a valid attribute uuid) for an attribute."""
    valid = canonical_uuid(attribute.get("uuid"))
    if valid:
        return valid, True
    raw = (attribute.get("uuid") or "").strip()
    if raw:
        return raw, False
    event_uuid = canonical_uuid(event.get("uuid")) or (event.get("uuid") or "").strip()
    if event_uuid:
        return f"event={event_uuid}|type={attribute['type']}|value={attribute.get('value') or ''}", False
    return (
        f"type={attribute['type']}|value={attribute.get('value') or ''}|category={attribute.get('category') or ''}",
        False,
    )


def object_source(misp_object: dict, event: dict) -> tuple[str, bool]:
    """Return (source string, whether it is a valid object uuid) for a MISP object."""
    valid = canonical_uuid(misp_object.get("uuid"))
    if valid:
        return valid, True
    raw = (misp_object.get("uuid") or "").strip()
    if raw:
        return raw, False
    event_uuid = canonical_uuid(event.get("uuid")) or (event.get("uuid") or "").strip()
    members = sorted(attribute_source(attribute, event)[0] for attribute in misp_object["attributes"])
    return f"event={event_uuid}|object={misp_object.get('name') or ''}|attributes={','.join(members)}", False


def indicator_id(source: str, part: str, generation: int, *, first: bool, valid_uuid: bool) -> str:
    """Return the STIX id of one indicator of a source; see the module docstring for the rules."""
    if first and valid_uuid and generation == 0:
        return f"indicator--{source}"
    name = f"source={source}|part={part}|generation={generation}"
    return f"indicator--{uuid5(name)}"


def identity_id(org: dict) -> str | None:
    org_uuid = canonical_uuid(org.get("uuid"))
    if org_uuid:
        return f"identity--{uuid5(f'org={org_uuid}')}"
    if org.get("name"):
        return f"identity--{uuid5('org-name=' + org['name'])}"
    return None


def attack_pattern_id(attack_id: str) -> str:
    return f"attack-pattern--{uuid5('attack-pattern=' + attack_id)}"


def relationship_id(source_id: str, target_id: str) -> str:
    return f"relationship--{uuid5(f'indicates|{source_id}|{target_id}')}"
