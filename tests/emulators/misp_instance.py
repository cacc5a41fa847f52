"""The data of an emulated MISP instance and the test hooks that change it as MISP does.

`MispInstance` contains the organisations, tags, events and warninglists of one MISP server
and its single API user. Its hooks move timestamps the way MISP 2.5 does. An attribute edit
sets the attribute (and object) timestamp and unpublishes the event, which sets
Event.timestamp to now. A local tag changes no timestamp, and publishing sets only
publish_timestamp. Every timestamp comes from the injected clock. `MispEmulator` serves an
instance over HTTP.
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any, Callable

from .misp_model import StoredAttribute, StoredEvent, TagLink, Warninglist
from .misp_search import SearchContext, SearchUser, fetch_event
from .misp_store import MispStore, NotFoundError

DEFAULT_ORG_UUID = "5f6e7c8d-0000-4000-8000-00000000e1a1"
DEFAULT_ORG_NAME = "EMULATOR-ORG"

# Fields of an attribute that `edit_attribute` may change.
EDITABLE_ATTRIBUTE_FIELDS = frozenset((
    "value", "type", "category", "to_ids", "comment", "distribution", "sharing_group_id",
    "first_seen", "last_seen", "disable_correlation", "object_relation",
))


class MispInstance:
    """Organisations, tags, events and warninglists of one MISP server, and the hooks tests use.

    `clock` returns the current epoch seconds (default `time.time`). The API user belongs
    to the organisation `org_uuid`, and `perm_sync` and `site_admin` are its role flags.
    Without perm_sync, soft-deleted rows are visible only in events owned by that
    organisation. For a sync user that is not a site admin, restSearch results leave out
    local tags. All methods are thread-safe.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        org_uuid: str = DEFAULT_ORG_UUID,
        org_name: str = DEFAULT_ORG_NAME,
        perm_sync: bool = True,
        site_admin: bool = False,
        warninglists: list[Warninglist] | None = None,
        tag_names_case_sensitive: bool = False,
    ) -> None:
        self.clock = clock or time.time
        self.perm_sync = perm_sync
        self.site_admin = site_admin
        # NOTE: MISP's db_schema.json gives tags.name the utf8mb3_bin collation, which makes
        # tag LIKE matching case-sensitive on a stock 2.5 database. Databases with a
        # case-insensitive collation match regardless of case, which is the default here.
        self.tag_names_case_sensitive = tag_names_case_sensitive
        self.store = MispStore(org_name, org_uuid)
        self.warninglists: list[Warninglist] = []
        self._lock = threading.RLock()
        for warninglist in warninglists or []:
            self.add_warninglist(warninglist)

    def now(self) -> int:
        return int(self.clock())

    # Data

    def load_events(self, directory: str | Path) -> int:
        """Load the MISP JSON files of a directory and return the number of events stored."""
        with self._lock:
            return self.store.load_directory(directory, self.now())

    def add_event(self, event: dict[str, Any], *, replace: bool = False) -> str:
        """Store an event (`{"Event": {...}}` or bare) and return its uuid.

        Missing ids, uuids and timestamps are filled in (timestamps with the clock's now).
        An existing uuid raises ValueError unless `replace` is true.
        """
        with self._lock:
            return self.store.add_event(event, self.now(), replace=replace).uuid

    def get_event(self, event_uuid: str) -> dict[str, Any]:
        """Return an event in MISP's wire shape with soft-deleted rows, local tags and non-exportable tags included."""
        with self._lock:
            event = self.store.event(event_uuid)
            options = {"deleted": [0, 1], "excludeLocalTags": 0, "includeAllTags": 1}
            # The rendered event shares its Galaxy lists with the store, so the caller gets a copy.
            return copy.deepcopy(fetch_event(self.search_context(), event, options))

    def tag_id(self, name: str) -> int:
        """Return the local id of a tag, as a numeric restSearch tag filter expects it."""
        with self._lock:
            return self.store.tag_named(name).id

    def add_warninglist(self, warninglist: Warninglist) -> Warninglist:
        """Enable a warninglist and assign its id."""
        with self._lock:
            warninglist.id = len(self.warninglists) + 1
            self.warninglists.append(warninglist)
            return warninglist

    # Hooks that change events as MISP does (which timestamp moves on which change)

    def edit_attribute(self, event_uuid: str, attribute_uuid: str, **fields: Any) -> None:
        """Change attribute fields, set the attribute (and object) timestamp to now and unpublish the event."""
        unknown = set(fields) - EDITABLE_ATTRIBUTE_FIELDS
        if unknown:
            raise ValueError(f"cannot edit attribute field(s) {sorted(unknown)}: the editable fields are {sorted(EDITABLE_ATTRIBUTE_FIELDS)}")
        with self._lock:
            event = self.store.event(event_uuid)
            attribute = event.attribute(attribute_uuid)
            for name, value in fields.items():
                setattr(attribute, name, value)
            self._touch_attribute(event, attribute)

    def add_attribute(self, event_uuid: str, attribute: dict[str, Any], *, object_uuid: str | None = None) -> str:
        """Add an attribute with timestamp now (to an object when `object_uuid` is given), unpublish the event and return the attribute uuid."""
        with self._lock:
            event = self.store.event(event_uuid)
            object_id = event.object(object_uuid).id if object_uuid else 0
            row = self.store.new_attribute(event, {**attribute, "timestamp": None}, self.now(), object_id)
            self.store.append_attributes(event, [row])
            self._touch_attribute(event, row)
            return row.uuid

    def add_object(self, event_uuid: str, misp_object: dict[str, Any]) -> str:
        """Add an object and its attributes with timestamp now, unpublish the event and return the object uuid."""
        with self._lock:
            event = self.store.event(event_uuid)
            now = self.now()
            stored_object, rows = self.store.new_object(event, {**misp_object, "timestamp": now}, now)
            for row in rows:
                row.timestamp = now
            event.objects.append(stored_object)
            self.store.append_attributes(event, rows)
            self._unpublish(event)
            return stored_object.uuid

    def soft_delete_attribute(self, event_uuid: str, attribute_uuid: str) -> None:
        """Mark an attribute deleted with timestamp now and unpublish the event (the object timestamp stays)."""
        with self._lock:
            event = self.store.event(event_uuid)
            attribute = event.attribute(attribute_uuid)
            attribute.deleted = True
            attribute.timestamp = self.now()
            self._unpublish(event)

    def hard_delete_attribute(self, event_uuid: str, attribute_uuid: str) -> None:
        """Remove an attribute row and unpublish the event."""
        with self._lock:
            event = self.store.event(event_uuid)
            attribute = event.attribute(attribute_uuid)
            self.store.remove_attribute(event, attribute)
            self._unpublish(event)

    def soft_delete_object(self, event_uuid: str, object_uuid: str) -> None:
        """Mark an object and its attributes deleted with timestamp now and unpublish the event, as MispObject::deleteObject does."""
        with self._lock:
            event = self.store.event(event_uuid)
            stored_object = event.object(object_uuid)
            now = self.now()
            stored_object.deleted = True
            stored_object.timestamp = now
            for attribute in event.attributes:
                if attribute.object_id == stored_object.id:
                    attribute.deleted = True
                    attribute.timestamp = now
            self._unpublish(event)

    def add_event_tag(self, event_uuid: str, name: str, local: bool = False) -> int:
        """Tag an event and return the tag id. A global tag unpublishes the event, and a local one changes no timestamp."""
        with self._lock:
            event = self.store.event(event_uuid)
            tag = self.store.tag_for(name)
            if any(link.tag_id == tag.id for link in event.tags):
                return tag.id
            event.tags.append(TagLink(tag.id, local))
            if not local:
                self._unpublish(event)
            return tag.id

    def remove_event_tag(self, event_uuid: str, name: str) -> None:
        """Remove a tag from an event. Removing a global tag unpublishes the event, removing a local one does not."""
        with self._lock:
            event = self.store.event(event_uuid)
            link = self._link(event.tags, name, f"event {event_uuid}")
            event.tags.remove(link)
            if not link.local:
                self._unpublish(event)

    def add_attribute_tag(self, event_uuid: str, attribute_uuid: str, name: str, local: bool = False) -> int:
        """Tag an attribute and return the tag id. A global tag also moves the attribute timestamp and unpublishes the event."""
        with self._lock:
            event = self.store.event(event_uuid)
            attribute = event.attribute(attribute_uuid)
            tag = self.store.tag_for(name)
            if any(link.tag_id == tag.id for link in attribute.tags):
                return tag.id
            attribute.tags.append(TagLink(tag.id, local))
            if not local:
                self._touch_attribute(event, attribute)
            return tag.id

    def remove_attribute_tag(self, event_uuid: str, attribute_uuid: str, name: str) -> None:
        """Remove a tag from an attribute. Removing a global tag moves the attribute timestamp and unpublishes the event."""
        with self._lock:
            event = self.store.event(event_uuid)
            attribute = event.attribute(attribute_uuid)
            link = self._link(attribute.tags, name, f"attribute {attribute_uuid}")
            attribute.tags.remove(link)
            if not link.local:
                self._touch_attribute(event, attribute)

    def publish(self, event_uuid: str) -> None:
        """Publish an event: set published and publish_timestamp, and leave Event.timestamp as it is."""
        with self._lock:
            event = self.store.event(event_uuid)
            event.published = True
            event.publish_timestamp = self.now()

    def delete_event(self, event_uuid: str) -> None:
        """Delete an event for good, as MISP does, so that restSearch shows no trace of it."""
        with self._lock:
            self.store.delete_event(event_uuid)

    def _touch_attribute(self, event: StoredEvent, attribute: StoredAttribute) -> None:
        # MispAttribute::touch: the attribute and its object get the same timestamp, then the event is unpublished.
        now = self.now()
        attribute.timestamp = now
        if attribute.object_id:
            event.object(attribute.object_id).timestamp = now
        self._unpublish(event)

    def _unpublish(self, event: StoredEvent) -> None:
        # Event::unpublishEvent sets published = 0 and timestamp = now, and leaves publish_timestamp.
        event.published = False
        event.timestamp = self.now()

    def _link(self, links: list[TagLink], name: str, owner: str) -> TagLink:
        tag = self.store.tag_named(name)
        for link in links:
            if link.tag_id == tag.id:
                return link
        raise NotFoundError(f"{owner} has no tag {name!r}")

    def search_context(self) -> SearchContext:
        """Return the data, API user, current time and enabled warninglists that a search reads."""
        user = SearchUser(org_id=self.store.own_org.id, perm_sync=self.perm_sync, site_admin=self.site_admin)
        return SearchContext(self.store, user, self.now(), list(self.warninglists), self.tag_names_case_sensitive)
