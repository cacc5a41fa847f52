"""The restSearch endpoints and the event view of the MISP emulator, after MISP 2.5.

`search_events` follows `Event::restSearch` with the JSON export (selection, count, order,
paging, then `Event::fetchEvent` per event), `search_attributes` follows
`MispAttribute::restSearch` and `view_event` follows `EventsController::view`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .misp_filters import FilterOptions, Filters, Row
from .misp_model import StoredAttribute, StoredEvent, StoredObject, TagLink, Warninglist
from .misp_parameters import (
    ATTRIBUTE_FORMATS,
    ATTRIBUTE_ORDER_FIELDS,
    ATTRIBUTE_PARAMETERS,
    EVENT_FORMATS,
    EVENT_ORDER_FIELDS,
    EVENT_PARAMETERS,
    OBJECT_FORMATS,
    OBJECT_PARAMETERS,
    UNSUPPORTED_ATTRIBUTE_PARAMETERS,
    UNSUPPORTED_EVENT_PARAMETERS,
    UNSUPPORTED_OBJECT_PARAMETERS,
    MispHttpError,
    check_request,
    find_order,
    harvest_parameters,
    page_bounds,
)
from .misp_render import (
    render_event,
    render_event_attribute,
    render_object,
    render_object_search_result,
    render_report,
    render_search_attribute,
)
from .misp_selection import attribute_conditions, select_events
from .misp_semantics import (
    BOOLEAN,
    TEXT_CASE_INSENSITIVE,
    MispInternalError,
    as_list,
    column_equals,
    convert_filters,
    generic_filter,
    php_empty,
    php_int,
    php_is_numeric,
    php_loose_equals_number,
    php_strval,
    uuid_like,
)
from .misp_store import MispStore


@dataclass(frozen=True)
class SearchUser:
    """The emulated API user: its organisation and the role flags that change which rows it can read."""

    org_id: int
    perm_sync: bool
    site_admin: bool


@dataclass
class SearchContext:
    """What a search reads: the data, the API user, the current time, the enabled warninglists and the tag name collation."""

    store: MispStore
    user: SearchUser
    now: int
    warninglists: list[Warninglist] = field(default_factory=list)
    tag_names_case_sensitive: bool = False

    def filters(self) -> Filters:
        return Filters(self.store, self.now, tag_names_case_sensitive=self.tag_names_case_sensitive)

    def warnings_for(self, attribute: StoredAttribute, *, to_ids_only: bool) -> list[dict[str, Any]]:
        """Return the warninglist hits of an attribute. Inside events MISP checks IDS attributes only."""
        if to_ids_only and not attribute.to_ids:
            return []
        warnings = []
        for warninglist in self.warninglists:
            if not warninglist.applies_to(attribute.type):
                continue
            hit = warninglist.match(attribute)
            if hit is not None:
                entry, value = hit
                warnings.append({
                    "value": value,
                    "match": entry,
                    "warninglist_id": str(warninglist.id),
                    "warninglist_name": warninglist.name,
                    "warninglist_category": warninglist.category,
                })
        return warnings


@dataclass
class SearchResult:
    payload: Any
    headers: dict[str, str]


def _result_headers(count: int, skipped: int) -> dict[str, str]:
    return {"X-Result-Count": str(count), "X-Export-Module-Used": "json", "X-Response-Format": "json", "X-Skipped-Elements-Count": str(skipped)}


def _sorted(items: list[Any], rules: list[tuple[str, str, bool]] | None, key_for: Callable[[Any, str, str], Any]) -> list[Any]:
    if not rules:
        return items
    ordered = list(items)
    for rule_model, field_name, descending in reversed(rules):

        def sort_key(item: Any) -> tuple[bool, Any]:
            value = key_for(item, rule_model, field_name)
            # SQL puts NULL first in ascending order.
            return (value is not None, value if value is not None else 0)

        ordered.sort(key=sort_key, reverse=descending)
    return ordered


# /events/restSearch


def search_events(context: SearchContext, body: Any, named: dict[str, str], method: str, accepts_json: bool = True) -> SearchResult:
    parameters = harvest_parameters(body, named, EVENT_PARAMETERS)
    check_request(parameters, method, EVENT_FORMATS, UNSUPPORTED_EVENT_PARAMETERS, accepts_json)
    if "tag" in parameters and "tags" not in parameters:
        parameters["tags"] = parameters["tag"]

    events = select_events(context.filters(), parameters)
    rules = find_order(parameters["order"], "Event", EVENT_ORDER_FIELDS) if "order" in parameters else None
    events = _sorted(events, rules, lambda event, model, name: getattr(event, name))
    # filterEventIds counts the matching events before it applies LIMIT, so X-Result-Count is the total.
    total = len(events)
    bounds = page_bounds(parameters)
    if bounds is not None:
        offset, limit = bounds
        events = events[offset:offset + limit]

    options = dict(parameters)
    published = options.get("published")
    if published is not None:
        # The selection skips a parameter sent as false, but fetchEvent still applies
        # `Event.published = false`. Such a request returns unpublished events only, while
        # X-Result-Count counts the published ones too.
        events = [event for event in events if any(column_equals(BOOLEAN, event.published, value) for value in as_list(published))]
    tags_after_selection = options.get("tags")
    if isinstance(tags_after_selection, dict) and not php_empty(tags_after_selection.get("NOT")):
        options["blockedAttributeTags"] = tags_after_selection["NOT"]
    rendered = [fetch_event(context, event, options) for event in events]
    return SearchResult({"response": rendered}, _result_headers(total, 0))


def fetch_event(context: SearchContext, event: StoredEvent, options: dict[str, Any]) -> dict[str, Any]:
    """Return one event as `Event::fetchEvent` and `JSONConverterTool::convert` shape it for these options."""
    store, user = context.store, context.user
    exclude_local_tags = options.get("excludeLocalTags")
    if exclude_local_tags is None and user.perm_sync and not user.site_admin:
        # fetchEvent forces excludeLocalTags for sync users that are not site admins.
        exclude_local_tags = 1
    include_all_tags = not php_empty(options.get("includeAllTags"))
    hide_local_tags = not php_empty(exclude_local_tags)
    tags = store.tags

    def visible_links(links: list[TagLink]) -> list[TagLink]:
        return [
            link for link in links
            if not (link.local and hide_local_tags) and (include_all_tags or tags[link.tag_id].exportable)
        ]

    event_links = visible_links(event.tags)
    include_galaxies = php_empty(options.get("excludeGalaxy"))
    if not php_empty(options.get("metadata")):
        return render_event(store, event, tag_links=event_links, attributes=None, objects=None, reports=None, include_galaxies=include_galaxies)

    deleted_visible = _deleted_rule(options, user, event)
    to_ids_matches = _to_ids_rule(options)
    rows = [attribute for attribute in event.attributes if deleted_visible(attribute.deleted) and to_ids_matches(attribute)]
    links = {attribute.id: visible_links(attribute.tags) for attribute in rows}

    with_warnings = not php_empty(options.get("includeWarninglistHits")) or not php_empty(options.get("enforceWarninglist"))
    warnings = {attribute.id: context.warnings_for(attribute, to_ids_only=True) if with_warnings else [] for attribute in rows}
    blocked = _blocked_tag_ids(store, options.get("blockedAttributeTags"))
    if blocked:
        rows = [attribute for attribute in rows if not any(link.tag_id in blocked for link in links[attribute.id])]
    if not php_empty(options.get("enforceWarninglist")):
        rows = [attribute for attribute in rows if not warnings[attribute.id]]

    def rendered(attribute: StoredAttribute) -> dict[str, Any]:
        galaxies = attribute.galaxies
        if hide_local_tags and galaxies:
            # MISP builds an attribute's galaxies from its tags after dropping the local ones.
            galaxies = without_local_clusters(galaxies)
        return render_event_attribute(store, attribute, links[attribute.id], warnings[attribute.id], galaxies)

    # The rows in id order, grouped by object id (0 for the attributes outside objects).
    by_object: dict[int, list[StoredAttribute]] = {}
    for attribute in rows:
        by_object.setdefault(attribute.object_id, []).append(attribute)
    attributes = [rendered(attribute) for attribute in by_object.get(0, ())]
    objects = []
    for stored_object in event.objects:
        object_attributes = [rendered(attribute) for attribute in by_object.get(stored_object.id, ())]
        # JSONConverterTool drops objects left without attributes (all filtered out or deleted).
        if deleted_visible(stored_object.deleted) and object_attributes:
            objects.append(render_object(stored_object, object_attributes))
    reports = None
    if php_empty(options.get("noEventReports")):
        reports = [render_report(report) for report in event.reports if deleted_visible(report.deleted)]
    return render_event(
        store, event, tag_links=event_links, attributes=attributes, objects=objects, reports=reports,
        include_galaxies=include_galaxies, include_shadow_attributes=php_empty(options.get("noShadowAttributes")),
    )


def without_local_clusters(galaxies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return galaxies without the clusters that come from local tags (`"local": true`), dropping emptied galaxies."""
    remaining = []
    for galaxy in galaxies:
        clusters = [cluster for cluster in galaxy.get("GalaxyCluster") or [] if php_empty(cluster.get("local"))]
        if clusters:
            remaining.append({**galaxy, "GalaxyCluster": clusters})
    return remaining


def _deleted_rule(options: dict[str, Any], user: SearchUser, event: StoredEvent) -> Callable[[bool], bool]:
    """Return which soft-deleted rows fetchEvent keeps (Event.php L1921-1968)."""
    requested = options.get("deleted")
    if requested is None:
        # Without the parameter MISP forces deleted = 0 for attributes, objects and reports.
        return lambda deleted: not deleted
    values = {1 if value == "only" else php_int(value) for value in as_list(requested)}
    if not user.perm_sync:
        # Without perm_sync the deleted rows are visible only in events owned by the user's organisation.
        own_event = event.org_id == user.org_id
        return lambda deleted: (own_event and int(deleted) in values) or (0 in values and not deleted)
    return lambda deleted: int(deleted) in values


def _to_ids_rule(options: dict[str, Any]) -> Callable[[StoredAttribute], bool]:
    value = options.get("to_ids")
    # fetchEvent applies the filter when `!empty($to_ids) || $to_ids === 0`.
    if php_empty(value) and not (value == 0 and type(value) is int):
        return lambda attribute: True
    values = as_list(value)
    return lambda attribute: any(column_equals(BOOLEAN, attribute.to_ids, item) for item in values)


def _blocked_tag_ids(store: MispStore, blocked: Any) -> frozenset[int]:
    if php_empty(blocked):
        return frozenset()
    tag_ids = set()
    for term in as_list(blocked):
        if php_is_numeric(term):
            tag_ids.add(php_int(term))
        else:
            # Tag::lookupTagIdFromName: an exact name, or -1 when no tag has it.
            tag_ids.add(next((tag.id for tag in store.tags_in_id_order() if tag.name == php_strval(term)), -1))
    return frozenset(tag_ids)


# /attributes/restSearch


def search_attributes(context: SearchContext, body: Any, named: dict[str, str], method: str, accepts_json: bool = True) -> SearchResult:
    parameters = harvest_parameters(body, named, ATTRIBUTE_PARAMETERS)
    check_request(parameters, method, ATTRIBUTE_FORMATS, UNSUPPORTED_ATTRIBUTE_PARAMETERS, accepts_json)
    store = context.store

    conditions = attribute_conditions(context.filters(), parameters)
    deleted = parameters.get("deleted")
    if php_empty(deleted):
        # fetchAttributes keeps active attributes only unless `deleted` is sent and not empty.
        conditions.append(lambda row: not row.attribute.deleted)
    elif deleted == "only":
        conditions.append(lambda row: row.attribute.deleted)

    rows = sorted((Row(event, attribute) for event in store.events.values() for attribute in event.attributes), key=lambda row: row.attribute.id)
    rows = [row for row in rows if all(condition(row) for condition in conditions)]
    rules = find_order(parameters["order"], "Attribute", ATTRIBUTE_ORDER_FIELDS) if not php_empty(parameters.get("order")) else None
    rows = _sorted(rows, rules, _attribute_sort_key)

    bounds = page_bounds(parameters)
    if bounds is not None:
        offset, limit = bounds
        rows = rows[offset:offset + limit]

    enforce = not php_empty(parameters.get("enforceWarninglist"))
    include_hits = not php_empty(parameters.get("includeWarninglistHits"))
    include_all_tags = not php_empty(parameters.get("includeAllTags"))
    include_event_tags = not php_empty(parameters.get("includeEventTags"))
    include_event_uuid = not php_empty(parameters.get("includeEventUuid")) or not php_empty(parameters.get("includeAttributeUuid"))
    include_galaxy = not php_empty(parameters.get("includeGalaxy"))

    rendered, skipped = [], 0
    for row in rows:
        if enforce and context.warnings_for(row.attribute, to_ids_only=False):
            skipped += 1
            continue
        tag_links = [link for link in row.attribute.tags if include_all_tags or store.tags[link.tag_id].exportable]
        event_tags = []
        if include_event_tags:
            event_tags = [store.tags[link.tag_id] for link in row.event.tags if include_all_tags or store.tags[link.tag_id].exportable]
        warnings = context.warnings_for(row.attribute, to_ids_only=True) if include_hits else None
        galaxies = None
        if include_galaxy:
            # fetchAttributes merges the galaxies of the attribute's tags with those of the
            # EventTag rows that includeEventTags attached, with array_merge_recursive: the
            # event's galaxies are appended, and a galaxy on both appears twice.
            galaxies = list(row.attribute.galaxies) + (list(row.event.galaxies) if include_event_tags else [])
        rendered.append(render_search_attribute(
            store, row.event, row.attribute, row.object,
            tag_links=tag_links, event_tags=event_tags, warnings=warnings, include_event_uuid=include_event_uuid,
            galaxies=galaxies,
        ))
    return SearchResult({"response": {"Attribute": rendered}}, _result_headers(_attribute_result_count(len(rows), rendered, bounds), skipped))


def _attribute_sort_key(row: Row, model: str, field_name: str) -> Any:
    if model == "Event":
        return row.event.publish_timestamp
    value = getattr(row.attribute, field_name)
    return value.casefold() if field_name in ("type", "value") and isinstance(value, str) else value


def _attribute_result_count(fetched: int, returned: list[Any], bounds: tuple[int, int] | None) -> int:
    """Return X-Result-Count as `MispAttribute::__iteratedFetch` computes it.

    Without `limit` it is the number of attributes found. With `limit` it is the number on
    this page, plus one when the page came back full, or when every attribute on it was
    skipped: a hint that more may follow, not a total.
    """
    if bounds is None:
        return fetched
    _, limit = bounds
    if not returned or len(returned) >= limit:
        return fetched + 1
    return fetched


# /objects/restSearch


@dataclass(frozen=True)
class ObjectRow:
    """An object and its event, the row `MispObject::fetchObjects` selects."""

    event: StoredEvent
    object: StoredObject


OBJECT_NAME = (lambda row: row.object.name, TEXT_CASE_INSENSITIVE)  # objects.name is utf8mb3_unicode_ci
UNKNOWN_COLUMN = "SQLSTATE[42S22]: Column not found: 1054 Unknown column 'Attribute.object_id' in 'where clause'"


def search_objects(context: SearchContext, body: Any, named: dict[str, str], method: str, accepts_json: bool = True) -> SearchResult:
    """Return `/objects/restSearch` as `MispObject::restSearch` and `fetchObjects` build it.

    The result is `{"response": [{"Object": {..., "Event": {...}, "Attribute": [...]}}]}` in
    object id order. With `metadata` the objects come without their `Attribute` list. Without
    `deleted` no condition on `Object.deleted` applies, so soft-deleted objects are returned too,
    while the attributes inside objects are active ones only.
    """
    parameters = harvest_parameters(body, named, OBJECT_PARAMETERS)
    check_request(parameters, method, OBJECT_FORMATS, UNSUPPORTED_OBJECT_PARAMETERS, accepts_json)
    if parameters.get("deleted") is not None and parameters["deleted"] is not False:
        # buildFilterConditions runs set_filter_deleted in the Object scope, which adds
        # `Attribute.object_id = 0 OR Object.deleted IN (...)`. The objects query does not join
        # attributes (they are a separate hasMany query), so MySQL rejects the column.
        raise MispInternalError(UNKNOWN_COLUMN)
    store = context.store

    conditions = []
    if parameters.get("eventid") is not None and parameters["eventid"] is not False:
        context.filters().set_filter_eventid(parameters, conditions, FilterOptions("eventid", "Event", False))
    if not php_empty(parameters.get("object_name")):
        conditions.extend(generic_filter(convert_filters(parameters["object_name"]), [OBJECT_NAME]))

    rows = [ObjectRow(event, stored_object) for event in store.events_in_id_order() for stored_object in event.objects]
    rows = sorted((row for row in rows if all(condition(row) for condition in conditions)), key=lambda row: row.object.id)
    # fetchObjects applies LIMIT/PAGE only when `limit` is set; `page` alone is ignored.
    bounds = page_bounds(parameters)
    if bounds is not None:
        offset, limit = bounds
        rows = rows[offset:offset + limit]

    metadata = not php_empty(parameters.get("metadata"))
    include_all_tags = not php_empty(parameters.get("includeAllTags"))
    # NOTE: fetchObjects' enforceWarninglist branch unsets $results[$key][$key2] instead of
    # $results[$key]['Attribute'][$key2], so it removes nothing; the emulator ignores it too.
    rendered = []
    for row in rows:
        attributes = None
        if not metadata:
            attributes = [
                (attribute, [link for link in attribute.tags if include_all_tags or store.tags[link.tag_id].exportable])
                for attribute in row.event.attributes
                if attribute.object_id == row.object.id and not attribute.deleted
            ]
        rendered.append(render_object_search_result(store, row.event, row.object, attributes))
    return SearchResult({"response": rendered}, _result_headers(len(rendered), 0))


# /events/view/<id or uuid>


def view_event(context: SearchContext, identifier: str, body: Any, named: dict[str, str]) -> dict[str, Any]:
    """Return `{"Event": {...}}` as `EventsController::view` sends it to an API client."""
    if php_is_numeric(identifier):
        event = context.store.event_by_id(php_int(identifier))
    elif uuid_like(identifier):
        try:
            event = context.store.event(identifier)
        except LookupError:
            event = None
    else:
        raise MispHttpError(404, "Invalid event")
    if event is None:
        raise MispHttpError(404, "Invalid event")

    deleted: Any = named.get("deleted", 0)
    if isinstance(body, dict) and body.get("deleted") is not None:
        deleted = body["deleted"]
    user = context.user
    if user.perm_sync and not user.site_admin and not isinstance(deleted, list) and php_loose_equals_number(deleted, 1):
        deleted_option: Any = [0, 1]
    elif isinstance(deleted, list):
        deleted_option = deleted
    elif php_loose_equals_number(deleted, 1):
        deleted_option = [0, 1]
    elif php_loose_equals_number(deleted, 0):
        deleted_option = 0
    else:
        deleted_option = 1

    options: dict[str, Any] = {"deleted": deleted_option, "excludeLocalTags": named.get("excludeLocalTags", 0), "includeWarninglistHits": 1}
    to_ids = named.get("toIDS")
    if to_ids is not None and not php_loose_equals_number(to_ids, 0):
        options["to_ids"] = 0 if php_loose_equals_number(to_ids, 2) else 1
    return fetch_event(context, event, options)
