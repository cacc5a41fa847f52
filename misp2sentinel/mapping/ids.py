"""Stable STIX ids, recomputable by anyone from the same MISP data.

* The first (or only) indicator of an attribute whose uuid is a valid RFC 4122 uuid, at generation 0,
  is `indicator--<attribute uuid>` (lower case, no braces).
* Every other indicator is `indicator--<UUIDv5(NAMESPACE, name)>` with the name
  `source=<source>|part=<part>|generation=<n>`, where `<source>` is the normalised attribute uuid, or
  the raw uuid text when it is not a valid uuid, or `event=<event uuid>|type=<type>|value=<value>`
  for an attribute without uuid, or `type=<type>|value=<value>|category=<category>` when the event
  has no uuid either.
* An organisation's identity is `identity--<UUIDv5(NAMESPACE, "org=<org uuid>")>`, or
  `"org-name=<name>"` when it has no uuid.
"""

from __future__ import annotations

import uuid

NAMESPACE = uuid.UUID("bab431ea-3d5a-5dee-a9dc-281372b9912f")


def canonical_uuid(text: str | None) -> str | None:
    """Return the lower-case form of a valid RFC 4122 uuid, else None."""
    if not text:
        return None
    candidate = text.strip()
    if candidate.startswith("{") and candidate.endswith("}"):
        candidate = candidate[1:-1]
    if len(candidate) != 36:
        return None
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


def indicator_id(source: str, part: str, generation: int, *, first: bool, valid_uuid: bool) -> str:
    """Return the STIX id of one indicator of a source; see the module docstring for the rules."""
    if first and valid_uuid and generation == 0:
        return f"indicator--{source}"
    name = f"source={source}|part={part}|generation={generation}"
    return f"indicator--{uuid.uuid5(NAMESPACE, name)}"


def identity_id(org: dict) -> str | None:
    org_uuid = canonical_uuid(org.get("uuid"))
    if org_uuid:
        return f"identity--{uuid.uuid5(NAMESPACE, f'org={org_uuid}')}"
    if org.get("name"):
        return f"identity--{uuid.uuid5(NAMESPACE, 'org-name=' + org['name'])}"
    return None
