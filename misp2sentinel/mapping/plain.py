"""The short path for the usual attribute: one part, no `first_seen`/`last_seen`, no galaxies of its own.

Most indicators of a large event come from such attributes. Many of their properties do not depend
on the value: labels, indicator types, confidence, marking, cluster context, references and the
creator. They are the same for all attributes with the same tags, TLP, type, category and object
relation, so `plain_record` computes them once per combination and builds the indicator directly.
It returns None for any other attribute, and the general path in `builder` maps that one. Both
paths give the same output; the tests compare them attribute by attribute.
"""

from __future__ import annotations

from misp2sentinel.mapping import lifetime
from misp2sentinel.mapping.ids import CANONICAL_UUID, canonical_uuid
from misp2sentinel.mapping.indicator import (
    effective_rank,
    indicator_confidence,
    indicator_notes,
    indicator_object,
    shared_properties,
    source_properties,
)
from misp2sentinel.mapping.markings import EMPTY, summarize
from misp2sentinel.mapping.parts import Part
from misp2sentinel.mapping.record import Record
from misp2sentinel.mapping.sanity import sanity_skip


class Template:
    """The properties shared by the indicators of one combination of tags, TLP, type, category and relation."""

    __slots__ = ("labels", "indicator_types", "confidence", "marking", "kill_chain_phases", "references",
                 "created_by", "event_note", "has_techniques")

    def __init__(self, context, attribute: dict, misp_object, own, object_summary, rank: int) -> None:
        shared = shared_properties(context, [attribute], misp_object, own, object_summary, rank)
        self.labels = shared.labels
        self.indicator_types = shared.indicator_types
        self.confidence = shared.confidence
        self.marking = shared.marking
        self.kill_chain_phases = shared.kill_chain_phases
        self.references, self.created_by, self.event_note = source_properties(context, shared)
        self.has_techniques = bool(shared.techniques)


def plain_record(context, attribute: dict, misp_object, parts: list) -> Record | None:
    """Return the record of an attribute that passed the gates of `builder._parts`, or None when
    the general path must map it."""
    if len(parts) != 1:
        return None
    part = parts[0]
    settings = context.settings
    timestamp = attribute.get("timestamp")
    if (part.__class__ is not Part or not timestamp or attribute.get("first_seen") or attribute.get("last_seen")
            or attribute.get("galaxies") or (part.extra and settings.pattern_style == "combined")):
        return None
    days = getattr(settings.lifetime_days, part.kind)
    if days == "never" or timestamp > context.now_seconds:
        return None
    moment_text = context.epoch_texts.get(timestamp)
    if moment_text is None:
        moment_text = context.epoch_texts[timestamp] = lifetime.epoch_text(timestamp)
    # Validity starts no later than now and lasts at least a day from now, so it has not ended.
    until_text = context.plain_ends.get(days)
    if until_text is None:
        now = context.now
        until = context.run_ends.get(days)
        if until is None:
            until = context.run_ends[days] = lifetime.valid_until(attribute, lifetime.from_epoch(timestamp), now, days)
        until_text = context.plain_ends[days] = lifetime.stix_timestamp(until)
    if (part.network is not None or part.digest is not None) and sanity_skip(part, settings.sanity) is not None:
        return None

    tags = attribute["tags"]
    own = summarize(tags) if tags else EMPTY
    object_summary = misp_object.summary if misp_object is not None else EMPTY
    rank = effective_rank(context, own, object_summary)
    if rank > context.max_rank:
        return None
    attribute_type = attribute["type"]
    if misp_object is None:
        key = (tuple(tags), rank, attribute_type, attribute.get("category"))
        templates = context.templates
    elif misp_object.has_galaxies:
        # Galaxies of the object's attributes add context that its name and tags do not capture, so
        # such an object keeps its templates to itself.
        key = (tuple(tags), rank, attribute_type, attribute.get("category"), attribute.get("object_relation"))
        templates = misp_object.templates
    else:
        key = (tuple(tags), rank, attribute_type, attribute.get("category"), attribute.get("object_relation"),
               misp_object.name, tuple(misp_object.tags))
        templates = context.templates
    template = templates.get(key)
    if template is None:
        template = templates[key] = Template(context, attribute, misp_object, own, object_summary, rank)
    if template.has_techniques and settings.include_attack_patterns:
        return None
    uuid = attribute.get("uuid")
    if uuid.__class__ is not str or not CANONICAL_UUID.fullmatch(uuid):
        uuid = canonical_uuid(uuid)
        if uuid is None:
            return None

    # With decay scores on, the confidence may come from this attribute's own score.
    confidence = (indicator_confidence(context, [attribute], own, object_summary) if settings.use_decay_score
                  else template.confidence)
    notes = indicator_notes(attribute, part, misp_object, template.event_note)
    stix = indicator_object(
        "indicator--" + uuid, moment_text, context.modified, part, template.indicator_types, moment_text, until_text,
        template.labels, confidence, template.marking, notes, template.kill_chain_phases, list(template.references),
        template.created_by,
    )
    return Record(stix, uuid, part.part, True, True, context.event_uuid, attribute.get("uuid"), attribute_type, rank,
                  timestamp)
