"""The properties an indicator takes from its attribute, object and event: times, TLP marking,
confidence, threat type, labels, ATT&CK context and the link back to MISP.

Confidence comes from the first level that has a confidence tag: the attribute's tags, then its
object's (the union of its attributes' tags), then the event's. Within one level the order is
`misp:confidence-level`, the admiralty scale, then `estimative-language`. After the tags come the
MISP decay score (when `use_decay_score` is on) and finally `default_confidence`.

`tlp:ex:chr` (Chatham House Rule) at any level removes the source: no `created_by_ref`, no MISP
event reference or title; ATT&CK references stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from misp2sentinel.mapping import lifetime
from misp2sentinel.mapping.context import Cluster, build_context, clusters_from, indicator_types, is_context_tag
from misp2sentinel.mapping.markings import AMBER_STRICT, TagSummary, decay_confidence
from misp2sentinel.mapping.parts import Part

AMBER_STRICT_LABEL = "tlp:amber+strict"


@dataclass(slots=True)
class Shared:
    """The properties that all indicators of one attribute (or of one combined object) share."""

    created: str
    valid_from: datetime
    confidence: int
    labels: list[str]
    marking: str
    chatham_house: bool
    indicator_types: list[str]
    kill_chain_phases: list[dict] = field(default_factory=list)
    references: list[dict] = field(default_factory=list)
    techniques: list[Cluster] = field(default_factory=list)


def _has_galaxies(attribute: dict) -> bool:
    if attribute.get("galaxies"):
        return True
    tags = attribute["tags"]
    return bool(tags) and any(tag[:12].lower() == "misp-galaxy:" for tag in tags)


def _cluster_context(context, attributes: list[dict], misp_object):
    """Return the ATT&CK and galaxy context; the event's own is reused when nothing below adds to it."""
    own = [attribute for attribute in attributes if _has_galaxies(attribute)]
    if not own and (misp_object is None or not misp_object.clusters):
        return context.context
    clusters = list(context.clusters)
    extra = list(misp_object.clusters) if misp_object is not None else []
    for attribute in own:
        extra.extend(clusters_from(attribute["tags"], attribute.get("galaxies")))
    for cluster in extra:
        if cluster not in clusters:
            clusters.append(cluster)
    return build_context(clusters)


def tag_labels(tags: list[str]) -> list[str]:
    """Return the tags that become labels as they are: all but the galaxy tags replaced by context labels."""
    labels = []
    for tag in tags:
        if tag not in labels and not is_context_tag(tag):
            labels.append(tag)
    return labels


def _level_labels(context, attributes: list[dict], misp_object, cluster_labels: list[str], rank: int) -> list[str]:
    """Return the labels from the tags of the event, the object and the attributes, then the context labels."""
    labels = list(context.tag_labels)
    extra_tags = list(misp_object.tags) if misp_object is not None else []
    for attribute in attributes:
        extra_tags.extend(attribute["tags"])
    for tag in extra_tags:
        if tag not in labels and not is_context_tag(tag):
            labels.append(tag)
    for label in cluster_labels:
        if label not in labels:
            labels.append(label)
    # TLP 1.0 marks amber+strict as amber, so a label keeps the restriction visible.
    if rank == AMBER_STRICT and context.settings.tlp_version == 1:
        if all(label.lower() != AMBER_STRICT_LABEL for label in labels):
            labels.append(AMBER_STRICT_LABEL)
    return labels


def _attribute_labels(level_labels: list[str], attributes: list[dict], misp_object) -> list[str]:
    """Return `level_labels` followed by the MISP type, category and object labels of `attributes`."""
    labels = list(level_labels)
    for attribute in attributes:
        for label in (f'misp:type="{attribute["type"]}"', f'misp:category="{attribute.get("category") or ""}"'):
            if label not in labels and not label.endswith('=""'):
                labels.append(label)
    if misp_object is not None:
        relation = attributes[0].get("object_relation") if len(attributes) == 1 else None
        labels.extend(label for label in misp_object.labels(relation) if label not in labels)
    return labels


def effective_rank(context, own: TagSummary, object_summary: TagSummary) -> int:
    """Return the TLP rank of an indicator: the highest of its event's, object's and attribute's tags,
    else the configured default."""
    rank = context.summary.tlp_rank
    for level in (own.tlp_rank, object_summary.tlp_rank):
        if level is not None and (rank is None or level > rank):
            rank = level
    return context.default_rank if rank is None else rank


def indicator_confidence(context, attributes: list[dict], own: TagSummary, object_summary: TagSummary) -> int:
    for level in (own, object_summary, context.summary):
        if level.confidence is not None:
            return level.confidence
    if context.settings.use_decay_score:
        scores = [decay_confidence(attribute.get("decay_score")) for attribute in attributes]
        scores = [score for score in scores if score is not None]
        if scores:
            return min(scores)
    return context.settings.default_confidence


def shared_properties(context, attributes: list[dict], misp_object, own: TagSummary, object_summary: TagSummary,
                      rank: int) -> Shared:
    """Compute the shared properties of the indicators of `attributes` (one, or a whole object's)."""
    event, now = context.event, context.now
    valid_from = None
    created = None
    for attribute in attributes:
        timestamp = attribute.get("timestamp")
        if timestamp and not attribute.get("first_seen"):
            # The usual case: no first_seen, so validity starts at the attribute's timestamp.
            start = first_sent = lifetime.from_epoch(timestamp)
        else:
            start = lifetime.valid_from(attribute, event, now)
            first_sent = lifetime.from_epoch(timestamp) if timestamp else start
        if valid_from is None or start < valid_from:
            valid_from = start
        if created is None or first_sent < created:
            created = first_sent
    if created > now:
        created = now
    chatham_house = own.chatham_house or object_summary.chatham_house or context.summary.chatham_house
    first = attributes[0]
    threat_types = own.threat_types or object_summary.threat_types or context.summary.threat_types
    types_key = (threat_types, first.get("category"))
    types = context.indicator_types.get(types_key)
    if types is None:
        types = context.indicator_types[types_key] = indicator_types(*types_key, context.settings.default_indicator_type)
    if len(attributes) == 1 and not first.get("galaxies"):
        # The context and the labels from tags depend only on the object, the attribute's own tags and
        # the TLP, so they are computed once for each combination. Attributes outside objects use the
        # event's cache and also share their type and category labels. An object has a cache of its
        # own, so that its entries are freed with it rather than with the event.
        levels = context.levels if misp_object is None else misp_object.levels
        level_key = (tuple(first["tags"]), rank)
        level = levels.get(level_key)
        if level is None:
            clusters = _cluster_context(context, attributes, misp_object)
            level = levels[level_key] = (_level_labels(context, attributes, misp_object, clusters.labels, rank), clusters)
        level_labels, clusters = level
        if misp_object is None:
            key = (level_key, first["type"], first.get("category"))
            labels = context.plain_labels.get(key)
            if labels is None:
                labels = context.plain_labels[key] = _attribute_labels(level_labels, attributes, None)
        else:
            labels = _attribute_labels(level_labels, attributes, misp_object)
    else:
        clusters = _cluster_context(context, attributes, misp_object)
        labels = _attribute_labels(_level_labels(context, attributes, misp_object, clusters.labels, rank), attributes, misp_object)
    return Shared(
        lifetime.stix_timestamp(created),
        valid_from,
        indicator_confidence(context, attributes, own, object_summary),
        labels,
        context.marking_ids[rank],
        chatham_house,
        types,
        clusters.kill_chain_phases,
        clusters.references,
        clusters.techniques,
    )


def indicator_notes(attribute: dict, part: Part, misp_object, event_note: str | None) -> list[str]:
    """Return the description lines of one part: the attribute's comment, the part's notes, the
    object's notes and `event_note` (None under the Chatham House Rule)."""
    comment = attribute.get("comment")
    notes = [comment.strip()] if comment and comment.strip() else []
    if part.notes:
        notes.extend(part.notes)
    if misp_object is not None:
        notes.extend(misp_object.notes(attribute))
    if event_note:
        notes.append(event_note)
    return notes


def source_properties(context, shared: Shared) -> tuple[list[dict], str | None, str | None]:
    """Return the references, the creator id and the event note of indicators with `shared`
    properties. The Chatham House Rule removes the event's reference, its creator and its title."""
    if shared.chatham_house:
        return shared.references, None, None
    creator = context.identity["id"] if context.identity is not None else None
    return context.external_references + shared.references, creator, context.event_note


def indicator(context, shared: Shared, part: Part, notes: list[str], until: datetime | None) -> dict:
    """Return the STIX indicator of one part; the caller sets its id."""
    references, creator, _ = source_properties(context, shared)
    return indicator_object(
        "", shared.created, context.modified, part, shared.indicator_types, lifetime.stix_timestamp(shared.valid_from),
        None if until is None else lifetime.stix_timestamp(until), shared.labels, shared.confidence, shared.marking,
        notes, shared.kill_chain_phases, references, creator,
    )


def indicator_object(stix_id: str, created: str, modified: str, part: Part, indicator_types: list[str], valid_from: str,
                     valid_until: str | None, labels: list[str], confidence: int, marking: str, notes: list[str],
                     kill_chain_phases: list[dict], references: list[dict], created_by: str | None) -> dict:
    """Return a STIX indicator dict from its properties, in the order every bundle writes them.

    Both the general path and the short path (`plain`) build indicators here. The lists it
    receives are copied, except the kill chain phases and references, which it shares.
    """
    stix = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": stix_id,
        "created": created,
        "modified": modified,
        "name": part.name,
        "indicator_types": list(indicator_types),
        "pattern": part.pattern,
        "pattern_type": part.pattern_type,
    }
    if part.pattern_type == "stix":
        stix["pattern_version"] = "2.1"
    stix["valid_from"] = valid_from
    if valid_until is not None:
        stix["valid_until"] = valid_until
    stix["labels"] = labels + [label for label in part.labels if label not in labels] if part.labels else list(labels)
    stix["confidence"] = confidence
    stix["object_marking_refs"] = [marking]
    if notes:
        stix["description"] = "\n".join(notes)
    if kill_chain_phases:
        stix["kill_chain_phases"] = kill_chain_phases
    if references:
        stix["external_references"] = references
    if created_by is not None:
        stix["created_by_ref"] = created_by
    return stix
