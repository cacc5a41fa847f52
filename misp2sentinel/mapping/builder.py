"""Build STIX records from a normalised MISP event.

`map_event` is pure and deterministic: the same event, settings and run time give the same records.
It does no I/O and builds plain dicts, never stix2 objects, because the mapper is on the hot path.
Each attribute goes through the same gates in order: deleted, `to_ids`, warninglist hit, a type
and value that make a pattern, TLP at most the maximum, the sanity filter, and a lifetime that
has not ended. Every attribute that is not sent yields a `Skip` with its reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from itertools import chain
from typing import TYPE_CHECKING

from misp2sentinel.mapping import ids, lifetime, stix_objects
from misp2sentinel.mapping.context import build_context, clusters_from
from misp2sentinel.mapping.indicator import Shared, effective_rank, indicator, indicator_notes, shared_properties, tag_labels
from misp2sentinel.mapping.markings import EMPTY, TLP_NAMES, TLP_RANK, marking_id, summarize
from misp2sentinel.mapping.objects import ObjectContext, joined_comparison, relation_builder
from misp2sentinel.mapping.parts import InvalidPart, Part, combined_comparisons, combined_pattern
from misp2sentinel.mapping.plain import plain_record
from misp2sentinel.mapping.record import Record
from misp2sentinel.mapping.sanity import sanity_skip
from misp2sentinel.mapping.types import UnsupportedType, build_parts, short_name
from misp2sentinel.mapping.values import InvalidValue
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

if TYPE_CHECKING:
    from misp2sentinel.config import MappingSettings

COMBINED = "combined"
NOT_IDS_DETAIL = "to_ids is off"


def _ids_defaults() -> dict[str, bool]:
    """Return MISP's default `to_ids` per type, read from PyMISP's describeTypes.json without
    importing PyMISP (which costs start-up time the export path does not need)."""
    global _IDS_DEFAULTS
    if _IDS_DEFAULTS is None:
        import importlib.util
        import json
        import os

        _IDS_DEFAULTS = {}
        spec = importlib.util.find_spec("pymisp")
        if spec is not None and spec.submodule_search_locations:
            path = os.path.join(spec.submodule_search_locations[0], "data", "describeTypes.json")
            try:
                with open(path, encoding="utf-8") as handle:
                    defaults = json.load(handle)["result"]["sane_defaults"]
                _IDS_DEFAULTS = {name: bool(entry.get("to_ids")) for name, entry in defaults.items()}
            except (OSError, ValueError, KeyError):
                pass
    return _IDS_DEFAULTS


_IDS_DEFAULTS: dict[str, bool] | None = None


def default_to_ids(attribute_type: str) -> bool:
    return _ids_defaults().get(attribute_type, False)


class EventContext:
    """The shared context of one event's records, computed once per event."""

    def __init__(self, event: dict, settings: MappingSettings, now: datetime) -> None:
        self.event = event
        self.settings = settings
        self.now = now
        self.modified = lifetime.stix_timestamp(now)
        self.event_uuid = ids.canonical_uuid(event.get("uuid")) or event.get("uuid")
        self.default_rank = TLP_RANK[settings.default_tlp]
        self.max_rank = TLP_RANK[settings.max_tlp]
        self.tags = event["tags"]
        self.summary = summarize(self.tags)
        self.tag_labels = tag_labels(self.tags)
        self.clusters = clusters_from(self.tags, event.get("galaxies"))
        self.context = build_context(self.clusters)
        self.org = event.get("orgc")
        self.identity = stix_objects.identity(self.org, now) if self.org else None
        self.external_references = _external_references(self.event_uuid, settings.misp_url)
        self.event_note = f"MISP event: {event['info']}" if event.get("info") else None
        self.attack_patterns: set[str] = set()
        # Computed once per event for attributes outside objects: (labels from tags, cluster context)
        # per (attribute tags, TLP), and the whole labels per (that key, type, category).
        self.levels: dict[tuple, tuple] = {}
        self.plain_labels: dict[tuple, list[str]] = {}
        # The end of validity of indicators whose lifetime counts from the run time, per lifetime in days.
        self.run_ends: dict[int, datetime] = {}
        # `indicator_types` per (threat types, category), and the marking id per TLP rank.
        self.indicator_types: dict[tuple, list[str]] = {}
        self.marking_ids = [marking_id(rank, settings.tlp_version) for rank in range(len(TLP_NAMES))]
        # For the short path (`plain`): the shared properties per combination, the run time in Unix
        # seconds, the STIX text of each attribute timestamp, and of each run-time end of validity.
        self.templates: dict[tuple, object] = {}
        self.now_seconds = now.timestamp()
        self.epoch_texts: dict[int, str] = {}
        self.plain_ends: dict[int, str] = {}

    def skip(self, attribute: dict, reason: str, detail: str) -> Skip:
        return Skip(reason, detail, self.event_uuid, attribute.get("uuid"), attribute.get("type"))


def map_event(event: dict, settings: MappingSettings, now: datetime, *, itemized: bool = True) -> Iterator[Record | Skip]:
    """Yield the records of an event (its creator's identity first, when enabled) and the skips.

    Without `itemized`, the attributes skipped because `to_ids` is off are counted and yielded as
    one Skip at the end, which saves time on large events when no one logs each skip.
    """
    if event.get("problem"):
        # An event with an impossible timestamp is malformed: its attributes are skipped, not guessed at.
        detail = "the event is invalid: " + "; ".join(event["problem"])
        for attribute in chain(event["attributes"], (a for o in event["objects"] for a in o["attributes"])):
            yield Skip(INVALID_VALUE, detail, event.get("uuid"), attribute.get("uuid"), attribute.get("type"))
        return
    context = EventContext(event, settings, now)
    if context.identity is not None and settings.include_identities and not context.summary.chatham_house:
        yield _identity_record(context.identity, context.org)
    event_uuid = context.event_uuid
    not_ids = 0
    for attribute in event["attributes"]:
        if attribute["to_ids"] is False and not attribute["deleted"] and not attribute.get("problem"):
            # Most attributes that are not sent stop here: the NOT_IDS gate of _parts, taken early.
            if itemized:
                yield Skip(NOT_IDS, NOT_IDS_DETAIL, event_uuid, attribute["uuid"], attribute["type"])
            else:
                not_ids += 1
            continue
        # _map_attribute, inlined for the attributes outside objects, which are most of a large event.
        parts = _parts(context, attribute, None)
        if parts.__class__ is Skip:
            yield parts
        elif (record := plain_record(context, attribute, None, parts)) is not None:
            yield record
        else:
            yield from _map_parts(context, attribute, None, parts)
    for misp_object in event["objects"]:
        if misp_object["deleted"]:
            for attribute in misp_object["attributes"]:
                yield context.skip(attribute, DELETED, f"its object {misp_object['uuid']} is deleted")
            continue
        object_context = ObjectContext(misp_object, event)
        if settings.pattern_style == COMBINED:
            yield from _map_object_combined(context, object_context)
        else:
            for attribute in misp_object["attributes"]:
                if attribute["to_ids"] is False and not attribute["deleted"] and not attribute.get("problem"):
                    if itemized:
                        yield Skip(NOT_IDS, NOT_IDS_DETAIL, event_uuid, attribute["uuid"], attribute["type"])
                    else:
                        not_ids += 1
                else:
                    yield from _map_attribute(context, attribute, object_context)
    if not_ids:
        yield Skip(NOT_IDS, NOT_IDS_DETAIL, event_uuid, count=not_ids)


def _warninglist_names(warnings) -> str:
    names = []
    for warning in warnings if isinstance(warnings, list) else [warnings]:
        name = warning.get("warninglist_name") or warning.get("name") if isinstance(warning, dict) else str(warning)
        names.append(str(name))
    return ", ".join(names)


def _parts(context: EventContext, attribute: dict, misp_object: ObjectContext | None) -> list | Skip:
    """Return the checked parts of an attribute, or the Skip that stops it before its TLP is known."""
    attribute_type = attribute["type"]
    if attribute["deleted"]:
        return context.skip(attribute, DELETED, "the attribute is deleted")
    if attribute.get("problem"):
        return context.skip(attribute, INVALID_VALUE, "; ".join(attribute["problem"]))
    to_ids = attribute["to_ids"]
    if to_ids is None:
        to_ids = default_to_ids(attribute_type)
    if not to_ids:
        return context.skip(attribute, NOT_IDS, NOT_IDS_DETAIL)
    if attribute["warnings"]:
        return context.skip(attribute, WARNINGLIST, f"hits the warninglists {_warninglist_names(attribute['warnings'])}")
    try:
        builder = None
        if misp_object is not None:
            builder = relation_builder(misp_object.name, attribute.get("object_relation"), attribute_type)
        if builder is None:
            parts = build_parts(attribute_type, attribute["value"], attribute.get("data"))
        elif attribute["value"] is None:
            raise InvalidValue("the value is missing")
        else:
            parts = builder(attribute_type, attribute["value"])
    except UnsupportedType as error:
        detail = str(error)
        if misp_object is not None:
            detail += f" (relation {attribute.get('object_relation')} of object {misp_object.name})"
        return context.skip(attribute, UNSUPPORTED_TYPE, detail)
    except InvalidValue as error:
        return context.skip(attribute, INVALID_VALUE, str(error))
    if misp_object is not None and misp_object.rule_name:
        # A rule object (yara, sigma) names its rule in a sibling attribute.
        for part in parts:
            if isinstance(part, Part) and part.pattern_type != "stix":
                part.name = misp_object.rule_name
    return parts


def _filtered(context: EventContext, parts: list) -> list:
    """Replace the parts that the sanity filter rejects with InvalidParts carrying its reason."""
    checked = []
    for part in parts:
        if part.__class__ is Part and (part.network is not None or part.digest is not None):
            rejected = sanity_skip(part, context.settings.sanity)
            if rejected is not None:
                part = InvalidPart(part.part, rejected[1], rejected[0])
        checked.append(part)
    return checked


def _map_attribute(context: EventContext, attribute: dict, misp_object: ObjectContext | None) -> list[Record | Skip]:
    """Return the records and skips of one attribute."""
    parts = _parts(context, attribute, misp_object)
    if parts.__class__ is Skip:
        return [parts]
    record = plain_record(context, attribute, misp_object, parts)
    if record is not None:
        return [record]
    return list(_map_parts(context, attribute, misp_object, parts))


def _map_parts(context: EventContext, attribute: dict, misp_object: ObjectContext | None, parts: list) -> Iterator[Record | Skip]:
    """Map the parts of one attribute on the general path: every gate after `_parts`, for any number of parts."""
    tags = attribute["tags"]
    own = summarize(tags) if tags else EMPTY
    object_summary = misp_object.summary if misp_object is not None else EMPTY
    rank = effective_rank(context, own, object_summary)
    if rank > context.max_rank:
        yield context.skip(attribute, ABOVE_MAX_TLP, f"TLP {TLP_NAMES[rank]} is above the maximum {context.settings.max_tlp}")
        return

    parts = _filtered(context, parts)
    if context.settings.pattern_style == COMBINED and misp_object is None:
        parts = _combine_attribute(context, parts)
    shared = shared_properties(context, [attribute], misp_object, own, object_summary, rank)
    source, valid_uuid = ids.attribute_source(attribute, context.event)
    first = True
    for part in parts:
        if isinstance(part, InvalidPart):
            yield context.skip(attribute, part.reason or INVALID_VALUE, f"{part.part}: {part.message}")
            first = False
            continue
        until = _valid_until(context, attribute, part, shared)
        if isinstance(until, Skip):
            yield until
            first = False
            continue
        notes = indicator_notes(attribute, part, misp_object, None if shared.chatham_house else context.event_note)
        stix = indicator(context, shared, part, notes, until)
        stix["id"] = ids.indicator_id(source, part.part, 0, first=first, valid_uuid=valid_uuid)
        yield Record(stix, source, part.part, first, valid_uuid, context.event_uuid, attribute.get("uuid"),
                     attribute["type"], rank, attribute.get("timestamp"))
        yield from _attack_pattern_records(context, shared, stix, attribute, rank)
        first = False


def _valid_until(context: EventContext, attribute: dict, part: Part, shared: Shared):
    """Return the end of validity (None for never), or the Skip when it has already passed."""
    days = getattr(context.settings.lifetime_days, part.kind)
    if days != "never" and shared.valid_from <= context.now and not attribute.get("last_seen"):
        # The usual case: the lifetime counts from the run time, the same for every attribute of a kind.
        until = context.run_ends.get(days)
        if until is None:
            until = context.run_ends[days] = lifetime.valid_until(attribute, shared.valid_from, context.now, days)
    else:
        until = lifetime.valid_until(attribute, shared.valid_from, context.now, days, context.settings.use_last_seen)
    if until is not None and until <= context.now:
        detail = f"valid_until {lifetime.stix_timestamp(until)} is already past ({part.kind} lifetime {days} days)"
        return context.skip(attribute, STALE, detail)
    return until


def _combine_attribute(context: EventContext, parts: list) -> list:
    """Join the valid parts of a composite attribute into one combined part (pattern style `combined`)."""
    valid = [part for part in parts if isinstance(part, Part) and part.comparison is not None]
    if len(valid) < 2 and not any(part.extra for part in valid):
        return parts
    combined = _combined_part(context, valid)
    return [part for part in parts if not isinstance(part, Part)] + [combined]


def _combined_part(context: EventContext, parts: list[Part]) -> Part:
    """Return one part whose pattern joins `parts`; it takes the shortest lifetime among their kinds."""
    lifetimes = context.settings.lifetime_days

    def days(kind: str) -> float:
        value = getattr(lifetimes, kind)
        return float("inf") if value == "never" else value

    kind = min((part.kind for part in parts), key=days)
    combined = Part(COMBINED, kind, short_name(", ".join(part.name for part in parts)))
    combined.pattern_text = combined_pattern(combined_comparisons(parts))
    for part in parts:
        combined.notes.extend(note for note in part.notes if note not in combined.notes)
        combined.labels.extend(label for label in part.labels if label not in combined.labels)
    return combined


def _map_object_combined(context: EventContext, misp_object: ObjectContext) -> Iterator[Record | Skip]:
    """Map an object to one indicator whose pattern joins every exportable attribute (pattern style `combined`).

    Detection rules in the object cannot join a STIX pattern and stay indicators of their own.
    """
    rank = effective_rank(context, EMPTY, misp_object.summary)
    members: list[tuple[dict, Part]] = []
    for attribute in misp_object.object["attributes"]:
        parts = _parts(context, attribute, misp_object)
        if isinstance(parts, Skip):
            yield parts
            continue
        if rank > context.max_rank:
            yield context.skip(attribute, ABOVE_MAX_TLP, f"TLP {TLP_NAMES[rank]} is above the maximum {context.settings.max_tlp}")
            continue
        for part in _filtered(context, parts):
            if isinstance(part, InvalidPart):
                yield context.skip(attribute, part.reason or INVALID_VALUE, f"{part.part}: {part.message}")
            elif part.pattern_type != "stix":
                yield from _map_rule_in_object(context, attribute, misp_object, part, rank)
            else:
                relation = attribute.get("object_relation")
                part.joined = part.joined or joined_comparison(misp_object.name, relation, part.comparison)
                members.append((attribute, part))
    if not members:
        return

    attributes = []
    for attribute, _ in members:
        if all(attribute is not known for known in attributes):
            attributes.append(attribute)
    shared = shared_properties(context, attributes, misp_object, EMPTY, misp_object.summary, rank)
    live = []
    untils = []
    for attribute, part in members:
        until = _valid_until(context, attribute, part, shared)
        if isinstance(until, Skip):
            yield until
            continue
        live.append(part)
        if until is not None:
            untils.append(until)
    if not live:
        return
    combined = _combined_part(context, live)
    notes = misp_object.notes(None)
    if context.event_note and not shared.chatham_house:
        notes.append(context.event_note)
    stix = indicator(context, shared, combined, notes, min(untils) if untils else None)
    stix["id"] = ids.indicator_id(misp_object.source, COMBINED, 0, first=False, valid_uuid=misp_object.valid_uuid)
    timestamps = [attribute["timestamp"] for attribute in attributes if attribute.get("timestamp")]
    yield Record(stix, misp_object.source, COMBINED, False, misp_object.valid_uuid, context.event_uuid, None,
                 f"object:{misp_object.name}", rank, max(timestamps) if timestamps else None)
    yield from _attack_pattern_records(context, shared, stix, None, rank)


def _map_rule_in_object(context, attribute, misp_object, part, rank) -> Iterator[Record | Skip]:
    own = summarize(attribute["tags"])
    shared = shared_properties(context, [attribute], misp_object, own, misp_object.summary, rank)
    until = _valid_until(context, attribute, part, shared)
    if isinstance(until, Skip):
        yield until
        return
    stix = indicator(context, shared, part, indicator_notes(attribute, part, misp_object, None if shared.chatham_house else context.event_note), until)
    source, valid_uuid = ids.attribute_source(attribute, context.event)
    stix["id"] = ids.indicator_id(source, part.part, 0, first=True, valid_uuid=valid_uuid)
    yield Record(stix, source, part.part, True, valid_uuid, context.event_uuid, attribute.get("uuid"),
                 attribute["type"], rank, attribute.get("timestamp"))
    yield from _attack_pattern_records(context, shared, stix, attribute, rank)


def _attack_pattern_records(context: EventContext, shared: Shared, stix: dict, attribute: dict | None, rank: int) -> Iterator[Record]:
    """Yield each ATT&CK technique of an indicator once per event, and the indicator's relationship to it."""
    if not context.settings.include_attack_patterns:
        return
    for technique in shared.techniques:
        pattern = stix_objects.attack_pattern(technique, context.now)
        if pattern["id"] not in context.attack_patterns:
            context.attack_patterns.add(pattern["id"])
            yield Record(pattern, f"attack-pattern={technique.attack_id}", "attack-pattern", True, False,
                         None, None, None, 0, None)
        relationship = stix_objects.indicates(stix, pattern["id"], context.modified)
        yield Record(relationship, stix["id"], f"indicates={technique.attack_id}", True, False, context.event_uuid,
                     attribute.get("uuid") if attribute else None, attribute["type"] if attribute else None,
                     rank, attribute.get("timestamp") if attribute else None)


def _identity_record(stix: dict, org: dict) -> Record:
    return Record(stix, org.get("uuid") or org.get("name"), "identity", True, False, None, None, None, 0, None)


def _external_references(event_uuid: str | None, misp_url: str | None) -> list[dict]:
    if not event_uuid:
        return []
    reference = {"source_name": "MISP", "external_id": event_uuid}
    if misp_url:
        reference["url"] = f"{misp_url.rstrip('/')}/events/view/{event_uuid}"
    return [reference]
