"""The restSearch endpoints and the event view of the MISP emulator, after MISP 2.5.

`search_events` follows `Event::restSearch` with the JSON export (selection, count, order,
paging, then `Event::fetchEvent` per event), `search_attributes` follows
`MispAttribute::restSearch` and `view_event` follows `EventsController::view`. Parameters
are first reduced to MISP's whitelist, in whitelist order, as
`AppController::_harvestParameters` does; unknown parameters are dropped silently.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable

from .misp_filters import Filters, Row, attribute_conditions, select_events
from .misp_render import render_event, render_event_attribute, render_object, render_report, render_search_attribute
from .misp_semantics import (
    BOOLEAN,
    column_equals,
    as_list,
    php_empty,
    php_int,
    php_is_numeric,
    php_loose_equals_number,
    php_number,
    php_strval,
    uuid_like,
)
from .misp_store import MispStore, StoredAttribute, StoredEvent, TagLink

# RestSearchComponent::$paramArray; the order decides the order in which filters run.
EVENT_PARAMETERS = (
    "returnFormat", "value", "type", "category", "org", "tags", "searchall", "from", "to", "last", "eventid",
    "withAttachments", "metadata", "uuid", "publish_timestamp", "timestamp", "event_timestamp", "event_tags",
    "published", "enforceWarninglist", "sgReferenceOnly", "limit", "page", "requested_attributes", "includeContext",
    "headerless", "includeWarninglistHits", "attackGalaxy", "to_ids", "deleted", "excludeLocalTags", "date",
    "includeSightingdb", "tag", "object_relation", "threat_level_id", "eventinfo", "sharinggroup", "idList",
    "includeAllTags", "includeAttachments", "event_uuid", "distribution", "sharing_group_id", "disableSiteAdmin",
    "flatten", "blockedAttributeTags", "eventsExtendingUuid", "extended", "extensionList", "excludeGalaxy",
    "includeAnalystData", "includeRelatedTags", "includeDecayScore", "includeScoresOnEvent", "includeFeedCorrelations",
    "includeServerCorrelations", "noEventReports", "noShadowAttributes", "order", "protected",
    "includeGranularCorrelations", "policy", "walled_garden", "ns", "email", "serial", "refresh", "retry", "expiry",
    "minimum_ttl", "ttl", "org.sector", "org.local", "org.nationality",
)
# "galaxy.*" is on MISP's list too, but its key check uses an invalid regular expression
# (`[\w_-. ]`), so preg_match fails and MISP never harvests such a parameter.

ATTRIBUTE_PARAMETERS = (
    "returnFormat", "value", "value1", "value2", "type", "category", "org", "tags", "from", "to", "last", "eventid",
    "withAttachments", "uuid", "publish_timestamp", "published", "timestamp", "enforceWarninglist", "to_ids", "deleted",
    "includeEventUuid", "event_timestamp", "threat_level_id", "includeEventTags", "includeProposals", "limit", "page",
    "requested_attributes", "includeContext", "headerless", "includeWarninglistHits", "attackGalaxy", "object_relation",
    "includeSightings", "includeCorrelations", "includeDecayScore", "decayingModel", "excludeDecayed", "modelOverrides",
    "includeFullModel", "score", "attribute_timestamp", "first_seen", "last_seen", "eventinfo", "sharinggroup",
    "allow_proposal_blocking", "flatten", "list", "event_ids", "includeAllTags", "includeAttributeUuid", "includeGalaxy",
    "order", "policy", "walled_garden", "ns", "email", "serial", "refresh", "retry", "expiry", "minimum_ttl", "ttl",
)

# Event::$validFormats and MispAttribute::$validFormats; the emulator produces json only.
EVENT_FORMATS = frozenset((
    "attack", "attack-sightings", "cache", "context", "context-markdown", "count", "csv", "hashes", "hosts", "json",
    "kunai", "netfilter", "opendata", "openioc", "rpz", "snort", "stix", "stix-json", "stix2", "suricata", "text",
    "xml", "yara", "yara-json",
))
ATTRIBUTE_FORMATS = EVENT_FORMATS - {"attack", "context", "context-markdown"}

# Whitelisted parameters that select or reshape data in ways the emulator does not reproduce.
# A request that sets one of them to a non-empty value is answered with 501, not with a
# silently different result. Other whitelisted options only add data the emulator does not
# hold (correlations, sightings, decay scores, attachments) and are ignored.
UNSUPPORTED_EVENT_PARAMETERS = frozenset((
    "searchall", "sharinggroup", "idList", "event_uuid", "distribution", "sharing_group_id", "flatten",
    "eventsExtendingUuid", "extended", "extensionList", "protected", "org.sector", "org.local", "org.nationality",
))
UNSUPPORTED_ATTRIBUTE_PARAMETERS = frozenset((
    "value1", "value2", "first_seen", "last_seen", "sharinggroup", "includeContext", "excludeDecayed", "decayingModel",
    "modelOverrides", "score", "flatten", "list", "event_ids", "includeGalaxy",
))

EVENT_ORDER_FIELDS = {"Event": ("id", "info", "analysis", "threat_level_id", "distribution", "timestamp", "publish_timestamp")}
ATTRIBUTE_ORDER_FIELDS = {
    "Attribute": ("id", "event_id", "object_id", "type", "category", "value", "distribution", "timestamp", "object_relation"),
    "Event": ("publish_timestamp",),
}

GET_WITHOUT_PARAMETERS = "Restsearch queries using GET and no parameters are not allowed. If you have passed parameters via a JSON body, make sure you use POST requests."


class MispHttpError(Exception):
    """An error MISP answers with `{"name", "message", "url"}` and this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class SearchUser:
    """The emulated API user: its organisation and the role flags that change what it sees."""

    org_id: int
    perm_sync: bool
    site_admin: bool


@dataclass
class Warninglist:
    """An enabled MISP warninglist: `type` is string, substring, hostname or cidr."""

    name: str
    values: list[str]
    type: str = "string"
    attribute_types: tuple[str, ...] = ("ALL",)
    category: str = "false_positive"
    id: int = 0

    def __post_init__(self) -> None:
        if self.type not in ("string", "substring", "hostname", "cidr"):
            raise ValueError(f"unsupported warninglist type {self.type!r}; use string, substring, hostname or cidr")

    def applies_to(self, attribute_type: str) -> bool:
        return "ALL" in self.attribute_types or attribute_type in self.attribute_types

    def match(self, attribute: StoredAttribute) -> tuple[str, str] | None:
        """Return (list entry, value part) that hits, as `Warninglist::checkValue` does, or None."""
        if attribute.type == "malware-sample" or "|" in attribute.type:
            parts = attribute.value.split("|", 1)
        else:
            parts = [attribute.value]
        for part in parts:
            entry = self._match_part(part)
            if entry is not None:
                return entry, part
        return None

    def _match_part(self, value: str) -> str | None:
        if self.type == "string":
            return value if value in self.values else None
        if self.type == "substring":
            return next((entry for entry in self.values if entry in value), None)
        if self.type == "hostname":
            hostname = value.split("/")[2] if "//" in value and len(value.split("/")) > 2 else value.split("/")[0]
            pieces = hostname.rstrip(".").split(".")
            for start in range(len(pieces) - 1, -1, -1):
                candidate = ".".join(pieces[start:])
                if candidate in self.values:
                    return candidate
            return None
        return self._match_cidr(value)

    def _match_cidr(self, value: str) -> str | None:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            return None
        for entry in self.values:
            listed = ipaddress.ip_network(entry, strict=False)
            if network.version == listed.version and network.subnet_of(listed):
                return entry
        return None


@dataclass
class SearchContext:
    store: MispStore
    user: SearchUser
    now: int
    warninglists: list[Warninglist] = field(default_factory=list)
    tag_names_case_sensitive: bool = False
    request_path: str = ""

    def filters(self) -> Filters:
        return Filters(self.store, self.now, tag_names_case_sensitive=self.tag_names_case_sensitive)

    def warnings_for(self, attribute: StoredAttribute, *, to_ids_only: bool) -> list[dict[str, Any]]:
        """Return the warninglist hits of an attribute; inside events MISP checks IDS attributes only."""
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


def harvest_parameters(body: Any, named: dict[str, str], whitelist: tuple[str, ...]) -> dict[str, Any]:
    """Return the whitelisted parameters of a request in whitelist order (null values count as absent)."""
    source = body
    if isinstance(body, dict) and body.get("request") is not None:
        source = body["request"]
    parameters: dict[str, Any] = {}
    for name in whitelist:
        if isinstance(source, dict) and source.get(name) is not None:
            parameters[name] = source[name]
        if name in named:
            parameters[name] = named[name].replace(";", ":")
    for name, value in parameters.items():
        if isinstance(value, str):
            value = value.strip(" \t\n\r\0\x0b")
            # strpos() > 0: a leading "||" does not split the value.
            if value.find("||") > 0:
                value = value.split("||")
            parameters[name] = value
    return parameters


def _check_request(parameters: dict[str, Any], method: str, formats: frozenset[str], unsupported: frozenset[str], accepts_json: bool) -> None:
    if not parameters and method == "GET":
        raise MispHttpError(400, GET_WITHOUT_PARAMETERS)
    return_format = parameters.get("returnFormat")
    if php_empty(return_format):
        return_format = "json"
    if return_format == "download":
        return_format = "json"
    elif return_format == "stix" and accepts_json:
        return_format = "stix-json"
    if return_format not in formats:
        raise MispHttpError(404, "Invalid output format.")
    if return_format != "json":
        raise MispHttpError(501, f"The MISP emulator implements returnFormat json only, not {return_format!r}.")
    for name in parameters:
        if name in unsupported and not php_empty(parameters[name]):
            raise MispHttpError(501, f"The MISP emulator does not implement the restSearch parameter {name!r}.")


def _result_headers(count: int, skipped: int) -> dict[str, str]:
    return {"X-Result-Count": str(count), "X-Export-Module-Used": "json", "X-Response-Format": "json", "X-Skipped-Elements-Count": str(skipped)}


def find_order(order: Any, model: str, valid_fields: dict[str, tuple[str, ...]]) -> list[tuple[str, str, bool]] | None:
    """Return `AppModel::findOrder` as (model, field, descending) rules, or None when any rule is invalid."""
    if isinstance(order, str):
        rules = order.split(",")
    elif isinstance(order, list):
        rules = order
    else:
        return None
    result = []
    for rule in rules:
        if not isinstance(rule, str):
            return None
        items = rule.strip().split(" ")
        descending = len(items) == 2 and items[-1].lower() == "desc"
        path = items[0].split(".")
        if len(path) == 1:
            rule_model, field_name = model, path[0].lower()
        elif len(path) == 2:
            rule_model, field_name = path[0], path[1].lower()
        else:
            return None
        if field_name not in valid_fields.get(rule_model, ()):
            return None
        result.append((rule_model, field_name, descending))
    return result or None


def _sorted(items: list[Any], rules: list[tuple[str, str, bool]] | None, key_for: Callable[[Any, str, str], Any]) -> list[Any]:
    if not rules:
        return items
    ordered = list(items)
    for rule_model, field_name, descending in reversed(rules):
        # SQL puts NULL first in ascending order.
        ordered.sort(key=lambda item: (key_for(item, rule_model, field_name) is not None, key_for(item, rule_model, field_name) or 0), reverse=descending)
    return ordered


def _page_bounds(parameters: dict[str, Any]) -> tuple[int, int] | None:
    """Return (offset, limit) for `limit`/`page`, or None when the request is not paged."""
    if php_empty(parameters.get("limit")):
        return None
    limit = php_int(parameters["limit"])
    if limit <= 0:
        return None
    page = php_number(parameters.get("page", 1))
    offset = limit * (int(page) - 1) if page > 1 else 0
    return offset, limit


# /events/restSearch


def search_events(context: SearchContext, body: Any, named: dict[str, str], method: str, accepts_json: bool = True) -> SearchResult:
    parameters = harvest_parameters(body, named, EVENT_PARAMETERS)
    _check_request(parameters, method, EVENT_FORMATS, UNSUPPORTED_EVENT_PARAMETERS, accepts_json)
    parameters.setdefault("returnFormat", "json")
    if "tag" in parameters and "tags" not in parameters:
        parameters["tags"] = parameters["tag"]

    events = select_events(context.filters(), parameters)
    rules = find_order(parameters["order"], "Event", EVENT_ORDER_FIELDS) if "order" in parameters else None
    events = _sorted(events, rules, lambda event, model, name: getattr(event, name))
    # filterEventIds counts the matching events before it applies LIMIT, so X-Result-Count is the total.
    total = len(events)
    bounds = _page_bounds(parameters)
    if bounds is not None:
        offset, limit = bounds
        events = events[offset:offset + limit]

    options = dict(parameters)
    published = options.get("published")
    if published is not None:
        # The selection skips a parameter sent as false, but fetchEvent still applies
        # `Event.published = false`: such a request returns unpublished events only while
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

    def visible_links(links: list[TagLink]) -> list[TagLink]:
        return [
            link for link in links
            if not (link.local and not php_empty(exclude_local_tags)) and (include_all_tags or store.tags[link.tag_id].exportable)
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
        return render_event_attribute(store, attribute, links[attribute.id], warnings[attribute.id])

    attributes = [rendered(attribute) for attribute in rows if attribute.object_id == 0]
    objects = []
    for stored_object in event.objects:
        object_attributes = [rendered(attribute) for attribute in rows if attribute.object_id == stored_object.id]
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
    _check_request(parameters, method, ATTRIBUTE_FORMATS, UNSUPPORTED_ATTRIBUTE_PARAMETERS, accepts_json)
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

    bounds = _page_bounds(parameters)
    if bounds is not None:
        offset, limit = bounds
        rows = rows[offset:offset + limit]

    enforce = not php_empty(parameters.get("enforceWarninglist"))
    include_hits = not php_empty(parameters.get("includeWarninglistHits"))
    include_all_tags = not php_empty(parameters.get("includeAllTags"))
    include_event_tags = not php_empty(parameters.get("includeEventTags"))
    include_event_uuid = not php_empty(parameters.get("includeEventUuid")) or not php_empty(parameters.get("includeAttributeUuid"))

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
        rendered.append(render_search_attribute(
            store, row.event, row.attribute, row.object,
            tag_links=tag_links, event_tags=event_tags, warnings=warnings, include_event_uuid=include_event_uuid,
        ))
    return SearchResult({"response": {"Attribute": rendered}}, _result_headers(_attribute_result_count(len(rows), rendered, bounds), skipped))


def _attribute_sort_key(row: Row, model: str, field_name: str) -> Any:
    if model == "Event":
        return row.event.publish_timestamp
    value = getattr(row.attribute, field_name)
    return value.casefold() if field_name in ("type", "value") and isinstance(value, str) else value


def _attribute_result_count(fetched: int, kept: list[Any], bounds: tuple[int, int] | None) -> int:
    """Return X-Result-Count as `MispAttribute::__iteratedFetch` computes it.

    Without `limit` it is the number of attributes found. With `limit` it is the number on
    this page, plus one when the page came back full, or when every attribute on it was
    skipped: a hint that more may follow, not a total.
    """
    if bounds is None:
        return fetched
    _, limit = bounds
    if not kept or len(kept) >= limit:
        return fetched + 1
    return fetched


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
