"""Which MISP filter runs for which restSearch parameter, and in which order.

`select_events` walks the parameters as `Event::filterEventIds` does and returns the events
that `/events/restSearch` selects. `attribute_conditions` walks them as
`MispAttribute::buildFilterConditions` does for `/attributes/restSearch`. The filters
themselves are in `misp_filters`.

On `/events/restSearch` the Attribute-scope parameters (`type`, `value`, `to_ids`, `deleted`,
the NOT part of `tags`, ...) each become a separate sub-query: "the event has at least one
attribute row, soft-deleted or inside an object included, that matches". Two such
parameters may therefore be satisfied by two different attributes.
"""

from __future__ import annotations

from typing import Any, Callable

from .misp_filters import ATTRIBUTE_SCOPE, EVENT_SCOPE, OBJECT_SCOPE, FilterOptions, Filters, Row
from .misp_model import StoredEvent
from .misp_semantics import Predicate


# Which filter handles which parameter in each scope, and whether it is "popped" (removed or
# reduced for the filters after it), after the tables in Event::filterEventIds and
# MispAttribute::buildFilterConditions.
Handler = Callable[[dict[str, Any], list[Predicate], FilterOptions], None]


def _event_scope_handlers(filters: Filters) -> dict[str, tuple[Handler, bool]]:
    return {
        "eventid": (filters.set_filter_eventid, True),
        "eventinfo": (filters.set_filter_eventinfo, False),
        "tags": (filters.set_filter_tags, True),
        "from": (filters.set_filter_timestamp, True),
        "to": (filters.set_filter_timestamp, True),
        "date": (filters.set_filter_date, True),
        "last": (filters.set_filter_timestamp, True),
        "timestamp": (filters.set_filter_timestamp, True),
        "event_timestamp": (filters.set_filter_timestamp, True),
        "publish_timestamp": (filters.set_filter_timestamp, True),
        "org": (filters.set_filter_org, True),
        "published": (filters.set_filter_published, True),
        "threat_level_id": (filters.set_filter_threat_level_id, True),
    }


def _attribute_scope_handlers(filters: Filters) -> dict[str, tuple[Handler, bool]]:
    return {
        "value": (filters.set_filter_value, False),
        "category": (filters.set_filter_simple_attribute, False),
        "type": (filters.set_filter_type, False),
        "object_relation": (filters.set_filter_simple_attribute, False),
        "tags": (filters.set_filter_tags, True),
        "deleted": (filters.set_filter_deleted, False),
        "to_ids": (filters.set_filter_to_ids, False),
    }


def select_events(filters: Filters, params: dict[str, Any]) -> list[StoredEvent]:
    """Return the events `Event::filterEventIds` selects, in id order, and rewrite `params` as MISP does."""
    # NOTE: MISP starts from the events the user may read (distribution, sharing groups).
    # The emulator applies no such access rule, so its API user can read every event.
    event_handlers = _event_scope_handlers(filters)
    event_handlers["event_tags"] = event_handlers["tags"]
    event_handlers["uuid"] = (filters.set_filter_event_uuid, True)
    attribute_handlers = _attribute_scope_handlers(filters)

    conditions: list[Predicate] = []
    # PHP's foreach walks a copy of the parameters. A parameter removed by an earlier filter is
    # still visited, and the value as sent decides whether it is skipped (false is skipped).
    for name, sent_value in list(params.items()):
        if sent_value is False:
            continue
        if name in event_handlers:
            handler, pop = event_handlers[name]
            handler(params, conditions, FilterOptions(name, EVENT_SCOPE, pop))
        if name in attribute_handlers:
            handler, pop = attribute_handlers[name]
            attribute_conditions: list[Predicate] = []
            handler(params, attribute_conditions, FilterOptions(name, ATTRIBUTE_SCOPE, pop))
            if attribute_conditions:
                conditions.append(_any_attribute_row(attribute_conditions))

    if filters.event_ids is None:
        candidates = filters.store.events_in_id_order()
    else:
        candidates = [filters.store.events[event_id] for event_id in sorted(filters.event_ids)]
    return [event for event in candidates if all(condition(Row(event)) for condition in conditions)]


def _any_attribute_row(conditions: list[Predicate]) -> Predicate:
    def matches(row: Row) -> bool:
        return any(all(condition(Row(row.event, attribute)) for condition in conditions) for attribute in row.event.attributes)

    return matches


def attribute_conditions(filters: Filters, params: dict[str, Any]) -> list[Predicate]:
    """Return the row conditions `MispAttribute::buildFilterConditions` builds, and rewrite `params` as MISP does."""
    attribute_handlers = _attribute_scope_handlers(filters)
    attribute_handlers["uuid"] = (filters.set_filter_attribute_uuid, False)
    attribute_handlers["timestamp"] = (filters.set_filter_timestamp, True)
    attribute_handlers["attribute_timestamp"] = (filters.set_filter_timestamp, False)
    event_handlers = _event_scope_handlers(filters)
    for name in ("eventid", "tags", "from", "to", "date", "publish_timestamp", "org", "published", "threat_level_id"):
        handler, _ = event_handlers[name]
        event_handlers[name] = (handler, False)
    object_handlers = {"deleted": attribute_handlers["deleted"]}
    scopes = ((ATTRIBUTE_SCOPE, attribute_handlers), (EVENT_SCOPE, event_handlers), (OBJECT_SCOPE, object_handlers))

    conditions: list[Predicate] = []
    for name in list(params):
        for scope, handlers in scopes:
            # Unlike filterEventIds, this loop checks the current value, so a popped parameter is skipped.
            if name in handlers and params.get(name) is not None and params[name] is not False:
                handler, pop = handlers[name]
                handler(params, conditions, FilterOptions(name, scope, pop))
    return conditions
