"""Fetch one large MISP event in pages and assemble the event `normalize_event` would return.

A whole event comes from one `/events/restSearch` response. For an event with hundreds of
thousands of attributes MISP may run out of memory or time building it, and the bridge would
parse it at once. `EventPager` reads the same data in bounded requests instead:

1. `/events/restSearch` with `metadata` and the whole fetch's other parameters: the event's
   tags, galaxies, creator org, timestamps, published flag, distribution and sharing group.
2. `/attributes/restSearch` for the event with `limit`/`page` in `Attribute.id` order,
   `deleted: [0, 1]`, `includeWarninglistHits` and `includeGalaxy`. MISP 2.5 flattens this
   search, so object attributes come too, each with its `object_id` and `object_relation` and
   its own tags and galaxy clusters. `includeEventTags` is not sent, because with
   `includeGalaxy` MISP would then append the event's galaxies to every attribute's.
   `includeContext` is not sent either: it repeats the event's metadata on every attribute and
   still names no object.
3. `/objects/restSearch` for the event with `metadata` and `limit`/`page`: the uuid, name,
   meta-category, comment, distribution and deleted flag of each object, by object id. MISP
   objects carry no tags of their own. `deleted` is not sent, because MISP 2.5 turns it into an
   SQL condition on `Attribute.object_id`, a column that query does not join, and responds 500.
   Without it the search returns soft-deleted objects too.
4. `/events/restSearch` with `metadata` again: when the event's timestamp moved, the event
   changed while it was paged and an offset may have skipped a row, so it is paged again.

Where the whole fetch and this assembly could differ, the assembly follows the whole fetch.
It orders attributes and objects by id. It leaves out objects without a returned attribute,
as MISP's JSON converter does. It drops local tags and their galaxy clusters when MISP hides
them from the whole event, which it does for a `perm_sync` role that is not a site admin.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from misp2sentinel.errors import MispError
from misp2sentinel.sources.normalize import as_list, normalize_attribute, normalize_event, normalize_object, to_bool, to_int

log = logging.getLogger(__name__)

Search = Callable[..., Any]

# How often an event that changes while it is paged is read again before it fails for this run.
MAX_PAGING_ATTEMPTS = 2


class EventPager:
    """Read one event from MISP in pages.

    `search_events`, `search_attributes` and `search_objects` run one restSearch request
    each (with the source's retries) and return the events list, the attribute list and
    the object list. `hides_local_tags` returns whether MISP leaves local tags out of a
    whole event for this API key.
    """

    def __init__(self, search_events: Search, search_attributes: Search, search_objects: Search, page_size: int,
                 hides_local_tags: Callable[[], bool]) -> None:
        self.search_events = search_events
        self.search_attributes = search_attributes
        self.search_objects = search_objects
        self.page_size = page_size
        self.hides_local_tags = hides_local_tags

    def fetch(self, event_uuid: str) -> dict | None:
        """Return the normalised event, or None when MISP returns no such event.

        Raises MispError when a request fails after its retries, when MISP repeats rows
        across pages, when an attribute names an object the object search did not return,
        or when the event keeps changing while it is paged.
        """
        for attempt in range(1, MAX_PAGING_ATTEMPTS + 1):
            metadata = self._metadata(event_uuid)
            if metadata is None:
                return None
            event = self._assemble(metadata)
            after = self._metadata(event_uuid)
            if after is None:
                # Deleted while it was paged: a whole fetch now returns nothing either.
                return None
            if to_int(after.get("timestamp")) == to_int(metadata.get("timestamp")):
                return event
            log.info("MISP event %s changed while its attributes were paged (attempt %d of %d)",
                     event_uuid, attempt, MAX_PAGING_ATTEMPTS)
        raise MispError(
            f"MISP event {event_uuid} changed while its attributes were paged, {MAX_PAGING_ATTEMPTS} times",
            hint="the event is fetched again by the next run",
        )

    def _metadata(self, event_uuid: str) -> dict | None:
        # The same parameters as the whole fetch, so that the event-level fields and the
        # selection (an event without any attribute row is not returned) match it.
        events = self.search_events(metadata=True, uuid=[event_uuid], deleted=[0, 1], includeWarninglistHits=True)
        for item in events:
            event = item.get("Event", item) if isinstance(item, dict) else None
            if isinstance(event, dict) and str(event.get("uuid", "")).lower() == event_uuid.lower():
                return event
        return None

    def _assemble(self, metadata: dict) -> dict | None:
        event_uuid = str(metadata["uuid"])
        hide_local = self.hides_local_tags()
        standalone: list[tuple[int, dict]] = []
        by_object: dict[int, list[tuple[int, dict]]] = {}
        for raw in self._attribute_rows(event_uuid):
            if hide_local:
                _drop_local_tags(raw)
            row = (to_int(raw.get("id")) or 0, normalize_attribute(raw))
            object_id = to_int(raw.get("object_id")) or 0
            if object_id:
                by_object.setdefault(object_id, []).append(row)
            else:
                standalone.append(row)
        if not standalone and not by_object:
            # The whole fetch (with `deleted`) selects only events that have an attribute row.
            return None

        objects = self._objects(event_uuid) if by_object else {}
        missing = sorted(set(by_object) - set(objects))
        if missing:
            raise MispError(
                f"MISP's object search did not return object(s) {', '.join(map(str, missing[:10]))} of event "
                f"{event_uuid}, which its attributes belong to",
                hint="the event is fetched again by the next run",
            )

        event = normalize_event({key: value for key, value in metadata.items() if key not in ("Attribute", "Object")})
        event["attributes"] = [attribute for _, attribute in sorted(standalone, key=_row_id)]
        event["objects"] = []
        for object_id in sorted(by_object):
            normalized = normalize_object(objects[object_id])
            normalized["attributes"] = [attribute for _, attribute in sorted(by_object[object_id], key=_row_id)]
            event["objects"].append(normalized)
        return event

    def _attribute_rows(self, event_uuid: str):
        """Yield the raw attributes of the event, page by page."""
        seen: set[str] = set()
        page = 1
        while True:
            rows = self.search_attributes(
                eventid=event_uuid, deleted=[0, 1], includeWarninglistHits=True, includeGalaxy=True,
                order="Attribute.id", limit=self.page_size, page=page,
            )
            # NOTE: the search stops at the first empty page, not at a short one, because MISP
            # removes Allowedlist matches from a page after applying LIMIT. A page whose every
            # attribute is on the Allowedlist would still end the search early.
            if not rows:
                return
            for raw in rows:
                if not isinstance(raw, dict):
                    continue
                key = str(raw.get("uuid") or raw.get("id"))
                if key in seen:
                    raise MispError(
                        f"MISP returned attribute {key} of event {event_uuid} on more than one page",
                        hint="the event changed while it was paged, or this MISP ignores `page` on "
                        "/attributes/restSearch; the event is fetched again by the next run",
                    )
                seen.add(key)
                yield raw
            page += 1

    def _objects(self, event_uuid: str) -> dict[int, dict]:
        """Return the raw metadata of the event's objects, soft-deleted ones included, by object id.

        MISP does not accept `order` on `/objects/restSearch`, so offset pages come in SQL
        order. A row seen twice is kept once, and the caller checks that no object is missing.
        """
        objects: dict[int, dict] = {}
        page = 1
        while True:
            rows = self.search_objects(eventid=event_uuid, metadata=True, limit=self.page_size, page=page)
            if not rows:
                return objects
            for item in rows:
                raw = item.get("Object", item) if isinstance(item, dict) else None
                object_id = to_int(raw.get("id")) if isinstance(raw, dict) else None
                if object_id:
                    objects.setdefault(object_id, {key: value for key, value in raw.items() if key != "Attribute"})
            page += 1


def _row_id(row: tuple[int, dict]) -> int:
    return row[0]


def _drop_local_tags(raw: dict) -> None:
    """Remove local tags and the galaxy clusters of local tags from a raw attribute, in place."""
    if "Tag" in raw:
        raw["Tag"] = [tag for tag in as_list(raw["Tag"]) if not (isinstance(tag, dict) and to_bool(tag.get("local")))]
    galaxies = []
    for galaxy in raw.get("Galaxy") or []:
        if not isinstance(galaxy, dict):
            continue
        clusters = [cluster for cluster in as_list(galaxy.get("GalaxyCluster")) if not (isinstance(cluster, dict) and to_bool(cluster.get("local")))]
        if clusters:
            galaxies.append({**galaxy, "GalaxyCluster": clusters})
    if "Galaxy" in raw:
        raw["Galaxy"] = galaxies
