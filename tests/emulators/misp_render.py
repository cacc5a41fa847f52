"""MISP's wire JSON for stored events and attributes.

MISP 2.5 sends numbers as strings (`"timestamp": "1603642920"`, `"id": "12"`) because
PDO returns them so, and tinyint(1) columns as JSON booleans because CakePHP casts them.
Key order follows `JSONConverterTool::convert` and the field lists of `Event::fetchEvent`.

The rendered dicts share the stored `Galaxy` lists instead of copying them, because the
emulator serialises each response while it holds the instance's lock. A caller that hands a
rendered event out for editing must copy it first, as `MispInstance.get_event` does.
"""

from __future__ import annotations

from typing import Any

from .misp_model import StoredAttribute, StoredEvent, StoredObject, StoredReport, Tag, TagLink
from .misp_store import MispStore


def _text(number: int | None) -> str | None:
    return None if number is None else str(number)


def render_organisation(store: MispStore, organisation_id: int) -> dict[str, Any]:
    organisation = store.organisation(organisation_id)
    return {"id": str(organisation.id), "name": organisation.name, "uuid": organisation.uuid, "local": organisation.local}


def render_tag(tag: Tag, link: TagLink) -> dict[str, Any]:
    """Return a tag as `Event::__attachTags` attaches it to an event or attribute."""
    return {
        "id": str(tag.id),
        "name": tag.name,
        "colour": tag.colour,
        "exportable": tag.exportable,
        "user_id": str(tag.user_id),
        "hide_tag": tag.hide_tag,
        "numerical_value": _text(tag.numerical_value),
        "is_galaxy": tag.is_galaxy,
        "is_custom_galaxy": tag.is_custom_galaxy,
        "local_only": tag.local_only,
        "local": link.local,
        "relationship_type": link.relationship_type,
    }


def attribute_fields(attribute: StoredAttribute) -> dict[str, Any]:
    """Return the attribute columns in the order MISP's event JSON lists them."""
    return {
        "id": str(attribute.id),
        "type": attribute.type,
        "category": attribute.category,
        "to_ids": attribute.to_ids,
        "uuid": attribute.uuid,
        "event_id": str(attribute.event_id),
        "distribution": str(attribute.distribution),
        "timestamp": str(attribute.timestamp),
        "comment": attribute.comment,
        "sharing_group_id": str(attribute.sharing_group_id),
        "deleted": attribute.deleted,
        "disable_correlation": attribute.disable_correlation,
        "object_id": str(attribute.object_id),
        "object_relation": attribute.object_relation,
        "first_seen": attribute.first_seen,
        "last_seen": attribute.last_seen,
        "value": attribute.value,
    }


def render_event_attribute(store: MispStore, attribute: StoredAttribute, tag_links: list[TagLink], warnings: list[dict[str, Any]] | None,
                           galaxies: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return an attribute as it appears inside an event (`Event.Attribute` or `Object.Attribute`).

    `galaxies` replaces the attribute's stored galaxies when given.
    """
    rendered = attribute_fields(attribute)
    if warnings:
        rendered["warnings"] = warnings
    rendered["Galaxy"] = attribute.galaxies if galaxies is None else galaxies
    rendered["ShadowAttribute"] = []
    if tag_links:
        rendered["Tag"] = [render_tag(store.tags[link.tag_id], link) for link in tag_links]
    return rendered


def render_object(stored_object: StoredObject, attributes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        **object_fields(stored_object),
        "ObjectReference": [_render_reference(reference) for reference in stored_object.references],
        "Attribute": attributes,
    }


def object_fields(stored_object: StoredObject) -> dict[str, Any]:
    """Return the object columns in the order MISP's JSON lists them."""
    return {
        "id": str(stored_object.id),
        "name": stored_object.name,
        "meta-category": stored_object.meta_category,
        "description": stored_object.description,
        "template_uuid": stored_object.template_uuid,
        "template_version": str(stored_object.template_version),
        "event_id": str(stored_object.event_id),
        "uuid": stored_object.uuid,
        "timestamp": str(stored_object.timestamp),
        "distribution": str(stored_object.distribution),
        "sharing_group_id": str(stored_object.sharing_group_id),
        "comment": stored_object.comment,
        "deleted": stored_object.deleted,
        "first_seen": stored_object.first_seen,
        "last_seen": stored_object.last_seen,
    }


def render_object_search_result(
    store: MispStore,
    event: StoredEvent,
    stored_object: StoredObject,
    attributes: list[tuple[StoredAttribute, list[TagLink]]] | None,
) -> dict[str, Any]:
    """Return one element of `/objects/restSearch`'s response (`JSONConverterTool::convertObject`).

    fetchObjects contains the event's id, info, org_id and orgc_id, and, unless `attributes`
    is None (a `metadata` search), the attribute rows with their AttributeTag rows, which
    the converter leaves in CakePHP's shape.
    """
    rendered = object_fields(stored_object)
    rendered["Event"] = {"id": str(event.id), "info": event.info, "org_id": str(event.org_id), "orgc_id": str(event.orgc_id)}
    if attributes is not None:
        rows = []
        for attribute, tag_links in attributes:
            row = {**attribute_fields(attribute), "value1": attribute.value1, "value2": attribute.value2}
            row["AttributeTag"] = [
                {
                    "id": str(index + 1), "attribute_id": str(attribute.id), "event_id": str(event.id),
                    "tag_id": str(link.tag_id), "local": link.local, "relationship_type": link.relationship_type,
                    "Tag": render_tag(store.tags[link.tag_id], link),
                }
                for index, link in enumerate(tag_links)
            ]
            rows.append(row)
        rendered["Attribute"] = rows
    return {"Object": rendered}


def _render_reference(reference: dict[str, Any]) -> dict[str, Any]:
    rendered = dict(reference)
    for key in ("id", "timestamp", "object_id", "referenced_id", "referenced_type"):
        rendered[key] = str(rendered[key])
    return rendered


def render_report(report: StoredReport) -> dict[str, Any]:
    return {
        "id": str(report.id),
        "uuid": report.uuid,
        "event_id": str(report.event_id),
        "name": report.name,
        "content": report.content,
        "distribution": str(report.distribution),
        "sharing_group_id": str(report.sharing_group_id),
        "timestamp": str(report.timestamp),
        "deleted": report.deleted,
    }


def render_event(
    store: MispStore,
    event: StoredEvent,
    *,
    tag_links: list[TagLink],
    attributes: list[dict[str, Any]] | None,
    objects: list[dict[str, Any]] | None,
    reports: list[dict[str, Any]] | None,
    include_galaxies: bool = True,
    include_shadow_attributes: bool = True,
) -> dict[str, Any]:
    """Return `{"Event": {...}}`, without the Attribute, Object or EventReport key where that argument is None."""
    rendered: dict[str, Any] = {
        "id": str(event.id),
        "orgc_id": str(event.orgc_id),
        "org_id": str(event.org_id),
        "date": event.date,
        "threat_level_id": str(event.threat_level_id),
        "info": event.info,
        "published": event.published,
        "uuid": event.uuid,
        "attribute_count": str(event.attribute_count),
        "analysis": str(event.analysis),
        "timestamp": str(event.timestamp),
        "distribution": str(event.distribution),
        "proposal_email_lock": event.proposal_email_lock,
        "locked": event.locked,
        "publish_timestamp": str(event.publish_timestamp),
        "sharing_group_id": str(event.sharing_group_id),
        "disable_correlation": event.disable_correlation,
        "extends_uuid": event.extends_uuid,
        "protected": event.protected,
        "Org": render_organisation(store, event.org_id),
        "Orgc": render_organisation(store, event.orgc_id),
    }
    if attributes is not None:
        rendered["Attribute"] = attributes
        if include_shadow_attributes:
            rendered["ShadowAttribute"] = []
    rendered["RelatedEvent"] = []
    rendered["Galaxy"] = event.galaxies if include_galaxies else []
    if objects is not None:
        rendered["Object"] = objects
    if reports is not None:
        rendered["EventReport"] = reports
    rendered["CryptographicKey"] = []
    if tag_links:
        rendered["Tag"] = [render_tag(store.tags[link.tag_id], link) for link in tag_links]
    return {"Event": rendered}


def render_search_attribute(
    store: MispStore,
    event: StoredEvent,
    attribute: StoredAttribute,
    stored_object: StoredObject | None,
    *,
    tag_links: list[TagLink],
    event_tags: list[Tag],
    warnings: list[dict[str, Any]] | None,
    include_event_uuid: bool,
    galaxies: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Return one element of `/attributes/restSearch`'s `response.Attribute` (`JsonExport::__attributeHandler`).

    `galaxies` is the attribute's `Galaxy` list, present only with `includeGalaxy`.
    """
    rendered = attribute_fields(attribute)
    if include_event_uuid:
        rendered["event_uuid"] = event.uuid
    if warnings:
        rendered["warnings"] = warnings
    rendered["Event"] = {
        "org_id": str(event.org_id),
        "distribution": str(event.distribution),
        "publish_timestamp": str(event.publish_timestamp),
        "id": str(event.id),
        "info": event.info,
        "orgc_id": str(event.orgc_id),
        "uuid": event.uuid,
    }
    if stored_object is not None:
        rendered["Object"] = {
            "id": str(stored_object.id),
            "distribution": str(stored_object.distribution),
            "sharing_group_id": str(stored_object.sharing_group_id),
        }
    tags = []
    for link in tag_links:
        tag = store.tags[link.tag_id]
        tags.append({"id": str(tag.id), "name": tag.name, "colour": tag.colour, "numerical_value": _text(tag.numerical_value), "is_galaxy": tag.is_galaxy, "local": link.local})
    for tag in event_tags:
        # JsonExport marks tags copied from the event with "inherited": 1.
        tags.append({"id": str(tag.id), "name": tag.name, "colour": tag.colour, "numerical_value": _text(tag.numerical_value), "inherited": 1})
    if tags:
        rendered["Tag"] = tags
    if galaxies is not None:
        rendered["Galaxy"] = galaxies
    return rendered
