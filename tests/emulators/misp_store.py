"""In-memory data of the emulated MISP instance: organisations, tags and events.

Events are stored as the rows of `misp_model`, with Python types and local numeric ids in
the shape of MISP's tables. `misp_render` turns the rows back into MISP's wire JSON.

The store is not thread-safe; `MispInstance` holds a lock around every use. It keeps two
indexes for restSearch, built on first use: the event ids in id order, and the events of each
attribute uuid. Code that adds or removes events or attribute rows must go through the store's
methods (`add_event`, `delete_event`, `append_attributes`, `remove_attribute`), which drop them.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid as uuid_module
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pymisp.abstract import describe_types

from .misp_model import DEFAULT_TAG_COLOUR, NotFoundError, Organisation, StoredAttribute, StoredEvent, StoredObject, StoredReport, Tag, TagLink

logger = logging.getLogger(__name__)

# MISP's defaults for fields an imported event may leave out (the settings
# MISP.default_event_distribution and MISP.default_event_threat_level). Attributes and
# objects default to 5, "inherit the event distribution".
DEFAULT_EVENT_DISTRIBUTION = 1
DEFAULT_THREAT_LEVEL = 4
INHERIT_DISTRIBUTION = 5

_EVENT_KEYS = ("info", "Attribute", "Tag", "date", "Orgc", "published", "threat_level_id")


class _IdAllocator:
    """Local numeric ids that behave like MySQL's auto-increment.

    An id given by an input file is kept when it is free. Other rows get one more than the
    highest id so far, and freed ids are not reused.
    """

    def __init__(self) -> None:
        self._used: set[int] = set()
        self._next = 1

    def claim(self, requested: Any = None) -> int:
        try:
            chosen = int(requested)
        except (TypeError, ValueError):
            chosen = 0
        if chosen <= 0 or chosen in self._used:
            chosen = self._next
        self._used.add(chosen)
        self._next = max(self._next, chosen + 1)
        return chosen

    def release(self, used_id: int) -> None:
        self._used.discard(used_id)


class MispStore:
    """Organisations, tags and events of one emulated MISP instance."""

    def __init__(self, own_org_name: str, own_org_uuid: str) -> None:
        self.organisations: list[Organisation] = []
        self.tags: dict[int, Tag] = {}
        self._tag_ids_by_name: dict[str, int] = {}
        self.events: dict[int, StoredEvent] = {}
        self._event_ids_by_uuid: dict[str, int] = {}
        self._event_ids = _IdAllocator()
        self._attribute_ids = _IdAllocator()
        self._object_ids = _IdAllocator()
        self._report_ids = _IdAllocator()
        self._tag_ids = _IdAllocator()
        self._organisation_ids = _IdAllocator()
        self._sorted_event_ids: list[int] | None = None
        # Attribute uuid -> id of the event with that attribute row. A uuid found in several
        # events (files may repeat one) maps to the first, and `_other_event_ids` has the rest.
        self._event_id_by_attribute_uuid: dict[str, int] | None = None
        self._other_event_ids: dict[str, set[int]] = {}
        self.own_org = self.organisation_for({"name": own_org_name, "uuid": own_org_uuid, "local": True})

    # Registries

    def organisation_for(self, data: dict[str, Any]) -> Organisation:
        """Return the organisation with the uuid (else the name) in `data`, registering it if new."""
        org_uuid = data.get("uuid") or None
        name = str(data.get("name") or "")
        for organisation in self.organisations:
            if (org_uuid and organisation.uuid == org_uuid) or (not org_uuid and organisation.name == name):
                return organisation
        organisation = Organisation(self._organisation_ids.claim(), name, org_uuid, _to_bool(data.get("local"), False))
        self.organisations.append(organisation)
        return organisation

    def find_organisation_id(self, name_or_uuid: str) -> int | None:
        """Return the id of the organisation with this exact name or uuid, as `Event::set_filter_org` looks it up."""
        for organisation in self.organisations:
            if name_or_uuid in (organisation.name, organisation.uuid):
                return organisation.id
        return None

    def organisation(self, organisation_id: int) -> Organisation:
        for organisation in self.organisations:
            if organisation.id == organisation_id:
                return organisation
        raise NotFoundError(f"no organisation with id {organisation_id}")

    def tag_for(self, data: dict[str, Any] | str) -> Tag:
        """Return the tag with this exact name, registering it with the given properties if new.

        Names are compared exactly because MISP's `tags.name` column is utf8mb3_bin.
        """
        if isinstance(data, str):
            data = {"name": data}
        name = str(data.get("name") or "").strip()
        if not name:
            raise ValueError(f"a tag needs a non-empty name, got {data!r}")
        existing = self._tag_ids_by_name.get(name)
        if existing is not None:
            return self.tags[existing]
        numerical_value = data.get("numerical_value")
        tag = Tag(
            id=self._tag_ids.claim(),
            name=name,
            colour=str(data.get("colour") or DEFAULT_TAG_COLOUR),
            exportable=_to_bool(data.get("exportable"), True),
            hide_tag=_to_bool(data.get("hide_tag"), False),
            numerical_value=None if numerical_value in (None, "") else int(numerical_value),
            is_galaxy=_to_bool(data.get("is_galaxy"), name.startswith("misp-galaxy:")),
            is_custom_galaxy=_to_bool(data.get("is_custom_galaxy"), False),
            local_only=_to_bool(data.get("local_only"), False),
        )
        self.tags[tag.id] = tag
        self._tag_ids_by_name[name] = tag.id
        return tag

    def tag_named(self, name: str) -> Tag:
        tag_id = self._tag_ids_by_name.get(name)
        if tag_id is None:
            raise NotFoundError(f"no tag named {name!r}")
        return self.tags[tag_id]

    def tags_in_id_order(self) -> list[Tag]:
        return [self.tags[tag_id] for tag_id in sorted(self.tags)]

    # Events

    def events_in_id_order(self) -> list[StoredEvent]:
        if self._sorted_event_ids is None:
            self._sorted_event_ids = sorted(self.events)
        return [self.events[event_id] for event_id in self._sorted_event_ids]

    def has_event_uuid(self, text: str) -> bool:
        """Return whether an event's uuid is exactly `text` (stored uuids are lower case)."""
        return text in self._event_ids_by_uuid

    def event_ids_with_uuid(self, texts: set[str]) -> set[int]:
        """Return the ids of the events whose uuid, or the uuid of one of whose attribute rows, is exactly one of `texts`."""
        if self._event_id_by_attribute_uuid is None:
            self._index_attribute_uuids()
        found = set()
        for text in texts:
            for index in (self._event_ids_by_uuid, self._event_id_by_attribute_uuid):
                event_id = index.get(text)
                if event_id is not None:
                    found.add(event_id)
            found.update(self._other_event_ids.get(text, ()))
        return found

    def _index_attribute_uuids(self) -> None:
        index: dict[str, int] = {}
        others: dict[str, set[int]] = {}
        for event in self.events.values():
            for attribute in event.attributes:
                first = index.setdefault(attribute.uuid, event.id)
                if first != event.id:
                    others.setdefault(attribute.uuid, set()).add(event.id)
        self._event_id_by_attribute_uuid = index
        self._other_event_ids = others

    def _drop_attribute_index(self) -> None:
        self._event_id_by_attribute_uuid = None
        self._other_event_ids = {}

    def _drop_indexes(self) -> None:
        self._sorted_event_ids = None
        self._drop_attribute_index()

    def event(self, event_uuid: str) -> StoredEvent:
        event_id = self._event_ids_by_uuid.get(str(event_uuid).lower())
        if event_id is None:
            raise NotFoundError(f"no event with uuid {event_uuid}")
        return self.events[event_id]

    def event_by_id(self, event_id: int) -> StoredEvent | None:
        return self.events.get(event_id)

    def add_event(self, data: dict[str, Any], now: int, *, replace: bool = False) -> StoredEvent:
        """Store an event given as `{"Event": {...}}` or bare, and return the stored event.

        An event whose uuid is already stored raises ValueError, unless `replace` is true.
        Then the new content takes the old event's place and local id.
        """
        event_data = data.get("Event", data) if isinstance(data, dict) else None
        if not isinstance(event_data, dict):
            raise ValueError(f"an event must be a JSON object, got {type(data).__name__}")
        event_uuid = str(event_data.get("uuid") or uuid_module.uuid4()).lower()
        existing_id = self._event_ids_by_uuid.get(event_uuid)
        if existing_id is not None and not replace:
            raise ValueError(f"an event with uuid {event_uuid} is already stored: pass replace=True to overwrite it")
        if existing_id is not None:
            self.delete_event(event_uuid)
        event = self._event_from_json(event_data, event_uuid, now, existing_id)
        self.events[event.id] = event
        self._event_ids_by_uuid[event.uuid] = event.id
        self._drop_indexes()
        return event

    def delete_event(self, event_uuid: str) -> None:
        """Remove an event and everything in it, as MISP's hard delete does (no tombstone)."""
        event = self.event(event_uuid)
        for attribute in event.attributes:
            self._attribute_ids.release(attribute.id)
        for stored_object in event.objects:
            self._object_ids.release(stored_object.id)
        for report in event.reports:
            self._report_ids.release(report.id)
        self._event_ids.release(event.id)
        del self.events[event.id]
        del self._event_ids_by_uuid[event.uuid]
        self._drop_indexes()

    def load_directory(self, directory: str | Path, now: int) -> int:
        """Load every `*.json` file of a directory, sorted by name, and return the number of events stored.

        A file may hold `{"Event": {...}}`, a bare event or `{"response": [{"Event": ...}]}`.
        Files without events (feed manifests, attribute collections) are skipped with a log
        line. When two files hold the same event uuid, the later one replaces the stored
        event only if its timestamp is greater, the rule MISP applies when it pulls an event.
        """
        path = Path(directory)
        if not path.is_dir():
            raise FileNotFoundError(f"events directory not found: {path}")
        stored = 0
        for file_path in sorted(path.glob("*.json")):
            with file_path.open(encoding="utf-8") as handle:
                content = json.load(handle)
            events = events_in_document(content)
            if not events:
                logger.info("skipped %s: it contains no MISP event", file_path)
                continue
            for event_data in events:
                stored += self._load_one(event_data, now, file_path)
        return stored

    def _load_one(self, event_data: dict[str, Any], now: int, file_path: Path) -> int:
        event_uuid = str(event_data.get("uuid") or "").lower()
        if event_uuid and event_uuid in self._event_ids_by_uuid:
            current = self.event(event_uuid)
            if _to_int(event_data.get("timestamp"), 0) <= current.timestamp:
                logger.info("skipped event %s in %s: the stored event with this uuid has the same or a newer timestamp", event_uuid, file_path)
                return 0
            self.add_event(event_data, now, replace=True)
            return 1
        self.add_event(event_data, now)
        return 1

    # Rows

    def new_attribute(self, event: StoredEvent, data: dict[str, Any], timestamp: int, object_id: int = 0) -> StoredAttribute:
        """Build an attribute row of `event` from MISP JSON, for the caller to add to the event."""
        attribute_type = data.get("type")
        if not attribute_type:
            raise ValueError(f"an attribute needs a type, got {data!r}")
        if "value" not in data or data["value"] is None:
            raise ValueError(f"an attribute needs a value, got {data!r}")
        defaults = describe_types["sane_defaults"].get(attribute_type, {})
        attribute = StoredAttribute(
            id=self._attribute_ids.claim(data.get("id")),
            uuid=str(data.get("uuid") or uuid_module.uuid4()).lower(),
            event_id=event.id,
            object_id=object_id,
            object_relation=data.get("object_relation") if object_id else None,
            type=str(attribute_type),
            category=str(data.get("category") or defaults.get("default_category", "Other")),
            value=str(data["value"]),
            to_ids=_to_bool(data.get("to_ids"), bool(defaults.get("to_ids", 0))),
            distribution=_to_int(data.get("distribution"), INHERIT_DISTRIBUTION),
            sharing_group_id=_to_int(data.get("sharing_group_id"), 0),
            timestamp=_to_int(data.get("timestamp"), timestamp),
            comment=str(data.get("comment") or ""),
            deleted=_to_bool(data.get("deleted"), False),
            disable_correlation=_to_bool(data.get("disable_correlation"), False),
            first_seen=data.get("first_seen") or None,
            last_seen=data.get("last_seen") or None,
            galaxies=_copied_list(data.get("Galaxy")),
        )
        attribute.tags = self._tag_links(data.get("Tag"))
        return attribute

    def new_object(self, event: StoredEvent, data: dict[str, Any], timestamp: int) -> tuple[StoredObject, list[StoredAttribute]]:
        """Build an object of `event` and its attribute rows from MISP JSON, for the caller to add to the event."""
        stored_object = StoredObject(
            id=self._object_ids.claim(data.get("id")),
            uuid=str(data.get("uuid") or uuid_module.uuid4()).lower(),
            event_id=event.id,
            name=str(data.get("name") or ""),
            meta_category=str(data.get("meta-category") or ""),
            description=str(data.get("description") or ""),
            template_uuid=data.get("template_uuid"),
            template_version=_to_int(data.get("template_version"), 0),
            timestamp=_to_int(data.get("timestamp"), timestamp),
            distribution=_to_int(data.get("distribution"), INHERIT_DISTRIBUTION),
            sharing_group_id=_to_int(data.get("sharing_group_id"), 0),
            comment=str(data.get("comment") or ""),
            deleted=_to_bool(data.get("deleted"), False),
            first_seen=data.get("first_seen") or None,
            last_seen=data.get("last_seen") or None,
        )
        stored_object.references = [_reference_from_json(reference, stored_object, timestamp) for reference in data.get("ObjectReference") or []]
        attributes = [self.new_attribute(event, item, stored_object.timestamp, stored_object.id) for item in data.get("Attribute") or []]
        return stored_object, attributes

    def _tag_links(self, tags: Any) -> list[TagLink]:
        links = []
        for item in tags or []:
            tag_data = item.get("Tag", item) if isinstance(item, dict) else item
            tag = self.tag_for(tag_data)
            local = _to_bool(tag_data.get("local"), False) if isinstance(tag_data, dict) else False
            relationship_type = tag_data.get("relationship_type") if isinstance(tag_data, dict) else None
            links.append(TagLink(tag.id, local, relationship_type or None))
        return links

    def _event_from_json(self, data: dict[str, Any], event_uuid: str, now: int, reuse_id: int | None) -> StoredEvent:
        owner = self.organisation_for(data["Org"]) if isinstance(data.get("Org"), dict) else self.own_org
        creator = self.organisation_for(data["Orgc"]) if isinstance(data.get("Orgc"), dict) else owner
        timestamp = _to_int(data.get("timestamp"), now)
        event = StoredEvent(
            id=reuse_id if reuse_id is not None else self._event_ids.claim(data.get("id")),
            uuid=event_uuid,
            info=str(data.get("info") or ""),
            date=str(data.get("date") or datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d")),
            threat_level_id=_to_int(data.get("threat_level_id"), DEFAULT_THREAT_LEVEL),
            analysis=_to_int(data.get("analysis"), 0),
            published=_to_bool(data.get("published"), False),
            timestamp=timestamp,
            publish_timestamp=_to_int(data.get("publish_timestamp"), 0),
            sighting_timestamp=_to_int(data.get("sighting_timestamp"), 0),
            distribution=_to_int(data.get("distribution"), DEFAULT_EVENT_DISTRIBUTION),
            sharing_group_id=_to_int(data.get("sharing_group_id"), 0),
            proposal_email_lock=_to_bool(data.get("proposal_email_lock"), False),
            locked=_to_bool(data.get("locked"), False),
            disable_correlation=_to_bool(data.get("disable_correlation"), False),
            extends_uuid=str(data.get("extends_uuid") or ""),
            protected=None if data.get("protected") is None else _to_bool(data.get("protected"), False),
            org_id=owner.id,
            orgc_id=creator.id,
            galaxies=_copied_list(data.get("Galaxy")),
        )
        if reuse_id is not None:
            self._event_ids.claim(reuse_id)
        event.tags = self._tag_links(data.get("Tag"))
        rows = [self.new_attribute(event, item, timestamp) for item in data.get("Attribute") or []]
        for object_data in data.get("Object") or []:
            stored_object, object_rows = self.new_object(event, object_data, timestamp)
            event.objects.append(stored_object)
            rows.extend(object_rows)
        event.attributes = sorted(rows, key=lambda row: row.id)
        event.reports = [self._report_from_json(event, item, timestamp) for item in data.get("EventReport") or []]
        return event

    def _report_from_json(self, event: StoredEvent, data: dict[str, Any], timestamp: int) -> StoredReport:
        return StoredReport(
            id=self._report_ids.claim(data.get("id")),
            uuid=str(data.get("uuid") or uuid_module.uuid4()).lower(),
            event_id=event.id,
            name=str(data.get("name") or ""),
            content=str(data.get("content") or ""),
            distribution=_to_int(data.get("distribution"), INHERIT_DISTRIBUTION),
            sharing_group_id=_to_int(data.get("sharing_group_id"), 0),
            timestamp=_to_int(data.get("timestamp"), timestamp),
            deleted=_to_bool(data.get("deleted"), False),
        )

    def append_attributes(self, event: StoredEvent, rows: list[StoredAttribute]) -> None:
        """Add attribute rows built by `new_attribute` or `new_object` to `event`."""
        event.attributes.extend(rows)
        self._drop_attribute_index()

    def remove_attribute(self, event: StoredEvent, attribute: StoredAttribute) -> None:
        """Remove an attribute row from `event` and free its id."""
        event.attributes.remove(attribute)
        self._attribute_ids.release(attribute.id)
        self._drop_attribute_index()


def events_in_document(content: Any) -> list[dict[str, Any]]:
    """Return the events of a MISP JSON document: `{"Event": ...}`, `{"response": [...]}` or a bare event."""
    if not isinstance(content, dict):
        return []
    if isinstance(content.get("Event"), dict):
        return [content["Event"]]
    response = content.get("response")
    if isinstance(response, list):
        items = [item.get("Event", item) if isinstance(item, dict) else None for item in response]
        return [item for item in items if _looks_like_event(item)]
    if _looks_like_event(content):
        return [content]
    return []


def _looks_like_event(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    return any(key in data for key in _EVENT_KEYS) or isinstance(data.get("Object"), list)


def _reference_from_json(data: dict[str, Any], stored_object: StoredObject, timestamp: int) -> dict[str, Any]:
    return {
        "id": _to_int(data.get("id"), 0),
        "uuid": str(data.get("uuid") or uuid_module.uuid4()).lower(),
        "timestamp": _to_int(data.get("timestamp"), timestamp),
        "object_id": stored_object.id,
        "referenced_uuid": data.get("referenced_uuid"),
        "referenced_id": _to_int(data.get("referenced_id"), 0),
        "referenced_type": _to_int(data.get("referenced_type"), 0),
        "relationship_type": data.get("relationship_type"),
        "comment": str(data.get("comment") or ""),
        "deleted": _to_bool(data.get("deleted"), False),
    }


def _copied_list(value: Any) -> list[Any]:
    """Return a deep copy of a JSON list, or a new empty list for a missing or empty one."""
    return copy.deepcopy(value) if value else []


def _to_int(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            raise ValueError(f"invalid integer in MISP JSON: {value!r}") from None


def _to_bool(value: Any, default: bool) -> bool:
    """Read a MISP boolean, which older exports and feeds write as "0"/"1", 0/1 or true/false."""
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false")
    return bool(value)
