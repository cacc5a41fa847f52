"""Build indicator records from a normalised MISP event.

`map_event` is pure and deterministic: the same event, settings and run time give the same records.
It does no I/O and builds plain dicts, never stix2 objects, because the mapper is on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from misp2sentinel.config import MappingSettings
from misp2sentinel.mapping import ids, lifetime
from misp2sentinel.mapping.markings import (
    TLP_MARKING_IDS,
    TLP_NAMES,
    TLP_RANK,
    confidence_from_tags,
    is_tlp_tag,
    tlp_rank,
)
from misp2sentinel.mapping.patterns import InvalidPart, InvalidValue, UnsupportedType, build_parts
from misp2sentinel.report import (
    ABOVE_MAX_TLP,
    DELETED,
    INVALID_VALUE,
    NOT_IDS,
    STALE,
    UNSUPPORTED_TYPE,
    WARNINGLIST,
    Skip,
)


@dataclass(slots=True)
class Record:
    """One STIX object to send, with what later stages need to select, diff and revoke it."""

    stix: dict
    source: str
    part: str
    first: bool
    valid_uuid: bool
    event_uuid: str | None
    attribute_uuid: str | None
    attribute_type: str | None
    tlp_rank: int
    timestamp: int | None

    @property
    def id(self) -> str:
        return self.stix["id"]


@lru_cache(maxsize=1)
def _ids_defaults() -> dict[str, bool]:
    """Return MISP's default `to_ids` per type, read from PyMISP's describeTypes.json without
    importing PyMISP (which costs start-up time the export path does not need)."""
    import importlib.util
    import json
    import os

    spec = importlib.util.find_spec("pymisp")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = os.path.join(spec.submodule_search_locations[0], "data", "describeTypes.json")
    try:
        with open(path, encoding="utf-8") as handle:
            defaults = json.load(handle)["result"]["sane_defaults"]
    except (OSError, ValueError, KeyError):
        return {}
    return {name: bool(entry.get("to_ids")) for name, entry in defaults.items()}


def default_to_ids(attribute_type: str) -> bool:
    return _ids_defaults().get(attribute_type, False)


class EventContext:
    """What every record of one event shares, computed once per event."""

    def __init__(self, event: dict, settings: MappingSettings, now: datetime) -> None:
        self.event = event
        self.settings = settings
        self.now = now
        self.modified = lifetime.stix_timestamp(now)
        self.event_uuid = ids.canonical_uuid(event.get("uuid")) or event.get("uuid")
        self.default_rank = TLP_RANK[settings.default_tlp]
        self.max_rank = TLP_RANK[settings.max_tlp]
        self.event_tags = event["tags"]
        self.event_rank = tlp_rank(self.event_tags)
        self.event_confidence = confidence_from_tags(self.event_tags)
        self.identity = _identity(event, now) if event.get("orgc") else None
        self.external_references = _external_references(event, self.event_uuid, settings.misp_url)
        self.event_note = f"MISP event: {event['info']}" if event.get("info") else None


def map_event(event: dict, settings: MappingSettings, now: datetime) -> Iterator[Record | Skip]:
    """Yield the records of an event (its creator's identity first, when enabled) and the skips."""
    context = EventContext(event, settings, now)
    if context.identity is not None and settings.include_identities:
        yield context.identity
    for attribute in event["attributes"]:
        yield from _map_attribute(context, attribute, None, [])
    for misp_object in event["objects"]:
        object_tags = [tag for attribute in misp_object["attributes"] for tag in attribute["tags"]]
        for attribute in misp_object["attributes"]:
            if misp_object["deleted"]:
                yield _skip(context, attribute, DELETED, f"its object {misp_object['uuid']} is deleted")
                continue
            yield from _map_attribute(context, attribute, misp_object, object_tags)


def _warninglist_names(warnings) -> str:
    names = []
    for warning in warnings if isinstance(warnings, list) else [warnings]:
        name = warning.get("warninglist_name") or warning.get("name") if isinstance(warning, dict) else str(warning)
        names.append(str(name))
    return ", ".join(names)


def _skip(context: EventContext, attribute: dict, reason: str, detail: str) -> Skip:
    return Skip(reason, detail, context.event_uuid, attribute.get("uuid"), attribute.get("type"))


def _map_attribute(
    context: EventContext, attribute: dict, misp_object: dict | None, object_tags: list[str]
) -> Iterator[Record | Skip]:
    attribute_type = attribute["type"]
    if attribute["deleted"]:
        yield _skip(context, attribute, DELETED, "the attribute is deleted")
        return
    to_ids = attribute["to_ids"]
    if to_ids is None:
        to_ids = default_to_ids(attribute_type)
    if not to_ids:
        yield _skip(context, attribute, NOT_IDS, "to_ids is off")
        return
    if attribute["warnings"]:
        yield _skip(context, attribute, WARNINGLIST, f"hits the warninglists {_warninglist_names(attribute['warnings'])}")
        return

    try:
        parts = build_parts(attribute_type, attribute["value"])
    except UnsupportedType as error:
        yield _skip(context, attribute, UNSUPPORTED_TYPE, str(error))
        return
    except InvalidValue as error:
        yield _skip(context, attribute, INVALID_VALUE, str(error))
        return

    own_tags = attribute["tags"]
    local_tags = own_tags + object_tags if object_tags else own_tags
    ranks = [r for r in (tlp_rank(local_tags), context.event_rank) if r is not None]
    rank = max(ranks) if ranks else context.default_rank
    if rank > context.max_rank:
        detail = f"TLP {TLP_NAMES[rank]} is above the maximum {context.settings.max_tlp}"
        yield _skip(context, attribute, ABOVE_MAX_TLP, detail)
        return

    start = lifetime.valid_from(attribute, context.event, context.now)
    source, valid_uuid = ids.attribute_source(attribute, context.event)
    shared = _shared_properties(context, attribute, misp_object, local_tags, rank, start)
    first = True
    for part in parts:
        if isinstance(part, InvalidPart):
            yield _skip(context, attribute, INVALID_VALUE, f"{part.part}: {part.message}")
            first = False
            continue
        days = getattr(context.settings.lifetime_days, part.kind)
        until = lifetime.valid_until(attribute, start, context.now, days)
        if until <= context.now:
            detail = f"valid_until {lifetime.stix_timestamp(until)} is already past ({part.kind} lifetime {days} days)"
            yield _skip(context, attribute, STALE, detail)
            first = False
            continue
        stix = _indicator(context, shared, part, attribute, misp_object, until)
        stix["id"] = ids.indicator_id(source, part.part, 0, first=first, valid_uuid=valid_uuid)
        yield Record(
            stix=stix,
            source=source,
            part=part.part,
            first=first,
            valid_uuid=valid_uuid,
            event_uuid=context.event_uuid,
            attribute_uuid=attribute.get("uuid"),
            attribute_type=attribute_type,
            tlp_rank=rank,
            timestamp=attribute.get("timestamp"),
        )
        first = False


def _shared_properties(
    context: EventContext,
    attribute: dict,
    misp_object: dict | None,
    local_tags: list[str],
    rank: int,
    start: datetime,
) -> dict:
    """Compute what every part of one attribute has in common."""
    confidence = confidence_from_tags(local_tags)
    if confidence is None:
        confidence = context.event_confidence
    if confidence is None:
        confidence = context.settings.default_confidence

    labels = []
    for tag in context.event_tags + local_tags:
        if not is_tlp_tag(tag) and tag not in labels:
            labels.append(tag)
    if rank == TLP_RANK["amber+strict"]:
        labels.append("tlp:amber+strict")
    labels.append(f'misp:type="{attribute["type"]}"')
    if attribute.get("category"):
        labels.append(f'misp:category="{attribute["category"]}"')

    created_at = lifetime.from_epoch(attribute["timestamp"]) if attribute.get("timestamp") else start
    return {
        "created": lifetime.stix_timestamp(min(created_at, context.now)),
        "valid_from": lifetime.stix_timestamp(start),
        "confidence": confidence,
        "labels": labels,
        "marking": TLP_MARKING_IDS[TLP_NAMES[rank]],
    }


def _indicator(
    context: EventContext,
    shared: dict,
    part,
    attribute: dict,
    misp_object: dict | None,
    until: datetime,
) -> dict:
    notes = []
    if attribute.get("comment"):
        notes.append(attribute["comment"].strip())
    notes.extend(part.notes)
    if misp_object is not None:
        relation = attribute.get("object_relation") or attribute["type"]
        notes.append(f"MISP object: {misp_object['name']} (relation {relation}).")
    if context.event_note:
        notes.append(context.event_note)

    stix = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "",
        "created": shared["created"],
        "modified": context.modified,
        "name": part.name,
        "description": "\n".join(notes),
        "indicator_types": ["malicious-activity"],
        "pattern": part.pattern,
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": shared["valid_from"],
        "valid_until": lifetime.stix_timestamp(until),
        "labels": shared["labels"] + [label for label in part.labels if label not in shared["labels"]],
        "confidence": shared["confidence"],
        "object_marking_refs": [shared["marking"]],
    }
    if not stix["description"]:
        del stix["description"]
    if context.identity is not None:
        stix["created_by_ref"] = context.identity.stix["id"]
    if context.external_references:
        stix["external_references"] = context.external_references
    return stix


def _identity(event: dict, now: datetime) -> Record | None:
    org = event["orgc"]
    identity = ids.identity_id(org)
    if identity is None:
        return None
    moment = lifetime.stix_timestamp(now)
    stix = {
        "type": "identity",
        "spec_version": "2.1",
        "id": identity,
        "created": moment,
        "modified": moment,
        "name": org.get("name") or org.get("uuid"),
        "identity_class": "organization",
    }
    return Record(
        stix=stix,
        source=org.get("uuid") or org.get("name"),
        part="identity",
        first=True,
        valid_uuid=False,
        event_uuid=None,
        attribute_uuid=None,
        attribute_type=None,
        tlp_rank=0,
        timestamp=None,
    )


def _external_references(event: dict, event_uuid: str | None, misp_url: str | None) -> list[dict]:
    if not event_uuid:
        return []
    reference = {"source_name": "MISP", "external_id": event_uuid}
    if misp_url:
        reference["url"] = f"{misp_url.rstrip('/')}/events/view/{event_uuid}"
    return [reference]
