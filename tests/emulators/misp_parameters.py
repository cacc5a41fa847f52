"""The restSearch parameters MISP 2.5 accepts, and how it reads them from a request.

`harvest_parameters` keeps the whitelisted parameters in whitelist order, as
`AppController::_harvestParameters` does (parameters not on the list are dropped silently,
and the order is the order in which the filters run). `check_request` raises the errors
MISP responds with, and 501 for requests the emulator does not reproduce. `find_order` and
`page_bounds` read `order`, `limit` and `page`.
"""

from __future__ import annotations

from typing import Any

from .misp_semantics import MispInternalError, php_empty, php_int, php_number

# RestSearchComponent::$paramArray. This order is the order in which the filters run.
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
# "galaxy.*" is on MISP's list too, but its key check uses the regular expression
# `[\w_-. ]`, whose range `_-.` is out of order, so preg_match fails and MISP never harvests
# such a parameter.

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

OBJECT_PARAMETERS = (
    "returnFormat", "value", "type", "category", "org", "tags", "first_seen", "last_seen", "from", "to", "last",
    "eventid", "withAttachments", "uuid", "publish_timestamp", "published", "timestamp", "enforceWarninglist", "to_ids",
    "deleted", "includeEventUuid", "event_timestamp", "threat_level_id", "includeEventTags", "includeProposals", "limit",
    "page", "requested_attributes", "includeContext", "headerless", "includeWarninglistHits", "attackGalaxy",
    "object_relation", "metadata", "includeAllTags", "object_name", "object_template_uuid", "object_template_version",
)

# Event::$validFormats and MispAttribute::$validFormats. The emulator produces json only.
EVENT_FORMATS = frozenset((
    "attack", "attack-sightings", "cache", "context", "context-markdown", "count", "csv", "hashes", "hosts", "json",
    "kunai", "netfilter", "opendata", "openioc", "rpz", "snort", "stix", "stix-json", "stix2", "suricata", "text",
    "xml", "yara", "yara-json",
))
ATTRIBUTE_FORMATS = EVENT_FORMATS - {"attack", "context", "context-markdown"}
# MispObject::$validFormats.
OBJECT_FORMATS = frozenset(("json",))

# Whitelisted parameters that select or reshape data in ways the emulator does not reproduce.
# A request that sets one of them to a non-empty value gets 501, not a silently different
# result. Other whitelisted options only add data the emulator does not
# hold (correlations, sightings, decay scores, attachments) and are ignored.
UNSUPPORTED_EVENT_PARAMETERS = frozenset((
    "searchall", "sharinggroup", "idList", "event_uuid", "distribution", "sharing_group_id", "flatten",
    "eventsExtendingUuid", "extended", "extensionList", "protected", "org.sector", "org.local", "org.nationality",
))
UNSUPPORTED_ATTRIBUTE_PARAMETERS = frozenset((
    "value1", "value2", "first_seen", "last_seen", "sharinggroup", "includeContext", "excludeDecayed", "decayingModel",
    "modelOverrides", "score", "flatten", "list", "event_ids",
))
# On /objects/restSearch the emulator reproduces `eventid` and `object_name`, and the 500 that
# `deleted` causes (see `misp_search.search_objects`). The options that fetchObjects ignores
# (includeEventTags, includeWarninglistHits) or that only add data the emulator does not hold
# (withAttachments) are ignored.
UNSUPPORTED_OBJECT_PARAMETERS = frozenset((
    "value", "type", "category", "org", "tags", "first_seen", "last_seen", "from", "to", "last", "uuid",
    "publish_timestamp", "published", "timestamp", "to_ids", "event_timestamp", "threat_level_id", "includeContext",
    "object_relation", "object_template_uuid", "object_template_version", "requested_attributes", "includeProposals",
    "attackGalaxy",
))

EVENT_ORDER_FIELDS = {"Event": ("id", "info", "analysis", "threat_level_id", "distribution", "timestamp", "publish_timestamp")}
ATTRIBUTE_ORDER_FIELDS = {
    "Attribute": ("id", "event_id", "object_id", "type", "category", "value", "distribution", "timestamp", "object_relation"),
    "Event": ("publish_timestamp",),
}

GET_WITHOUT_PARAMETERS = "Restsearch queries using GET and no parameters are not allowed. If you have passed parameters via a JSON body, make sure you use POST requests."


class MispHttpError(Exception):
    """An error that MISP returns as `{"name", "message", "url"}` with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


def check_request(parameters: dict[str, Any], method: str, formats: frozenset[str], unsupported: frozenset[str], accepts_json: bool) -> None:
    """Raise MispHttpError for a request that MISP rejects or that needs a feature the emulator does not reproduce."""
    if not parameters and method == "GET":
        raise MispHttpError(400, GET_WITHOUT_PARAMETERS)
    return_format = parameters.get("returnFormat")
    if php_empty(return_format):
        return_format = "json"
    if not isinstance(return_format, str):
        raise MispInternalError(f"PHP cannot use the returnFormat {return_format!r} as an array key")
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


def page_bounds(parameters: dict[str, Any]) -> tuple[int, int] | None:
    """Return (offset, limit) for `limit`/`page`, or None when the request is not paged."""
    if php_empty(parameters.get("limit")):
        return None
    limit = php_int(parameters["limit"])
    if limit <= 0:
        return None
    page = php_number(parameters.get("page", 1))
    offset = limit * (int(page) - 1) if page > 1 else 0
    return offset, limit
