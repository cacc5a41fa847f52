"""The `set_filter_*` functions of MISP's restSearch, written after MISP 2.5's Event.php and MispAttribute.php.

Each `Filters.set_filter_*` method mirrors the MISP function of the same name. It reads one
parameter, appends predicates to a condition list and rewrites `params` as MISP does, which
matters to the filters and the event fetch that run after it. For example `tags` keeps only
its NOT tag ids, `to_ids: "exclude"` becomes 0 and the timestamp filters are removed.
`misp_selection` decides which of them runs for which parameter.

A condition is a predicate on a `Row`: an event, and for attribute conditions one attribute
row of it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable

from .misp_semantics import (
    BOOLEAN,
    INTEGER,
    TEXT_CASE_INSENSITIVE,
    TEXT_CASE_SENSITIVE,
    MispInternalError,
    Predicate,
    as_list,
    column_equals,
    convert_filters,
    dissect_args,
    generic_filter,
    mysql_date_text,
    mysql_number,
    php_date,
    php_empty,
    php_is_numeric,
    php_loose_equals_number,
    php_strval,
    resolve_time_delta,
    sql_like,
    uuid_like,
)
from .misp_model import StoredAttribute, StoredEvent, StoredObject, TagLink
from .misp_store import MispStore

EVENT_SCOPE = "Event"
OBJECT_SCOPE = "Object"
ATTRIBUTE_SCOPE = "Attribute"


@dataclass(frozen=True)
class Row:
    event: StoredEvent
    attribute: StoredAttribute | None = None

    @property
    def object(self) -> StoredObject | None:
        if self.attribute is None or not self.attribute.object_id:
            return None
        return self.event.object(self.attribute.object_id)


@dataclass(frozen=True)
class FilterOptions:
    """The `$options` MISP passes to each filter: the parameter, the scope it runs in and whether it is popped."""

    filter: str
    scope: str
    pop: bool


def _never(row: Row) -> bool:
    return False


# Columns: a getter on a row and how MySQL compares the column (collations from db_schema.json).
EVENT_ID = (lambda row: row.event.id, INTEGER)
EVENT_UUID = (lambda row: row.event.uuid, TEXT_CASE_SENSITIVE)
EVENT_INFO = (lambda row: row.event.info, TEXT_CASE_SENSITIVE)
EVENT_ORGC_ID = (lambda row: row.event.orgc_id, INTEGER)
ATTRIBUTE_TYPE = (lambda row: row.attribute.type, TEXT_CASE_INSENSITIVE)
ATTRIBUTE_CATEGORY = (lambda row: row.attribute.category, TEXT_CASE_SENSITIVE)
ATTRIBUTE_VALUE1 = (lambda row: row.attribute.value1, TEXT_CASE_INSENSITIVE)
ATTRIBUTE_VALUE2 = (lambda row: row.attribute.value2, TEXT_CASE_INSENSITIVE)
ATTRIBUTE_OBJECT_RELATION = (lambda row: row.attribute.object_relation, TEXT_CASE_SENSITIVE)
ATTRIBUTE_DELETED = (lambda row: row.attribute.deleted, BOOLEAN)
OBJECT_DELETED = (lambda row: row.object.deleted if row.object is not None else None, BOOLEAN)

SIMPLE_ATTRIBUTE_COLUMNS = {"category": ATTRIBUTE_CATEGORY, "object_relation": ATTRIBUTE_OBJECT_RELATION}

TIMESTAMP_COLUMNS: dict[str, Callable[[Row], int]] = {
    "Event.timestamp": lambda row: row.event.timestamp,
    "Event.publish_timestamp": lambda row: row.event.publish_timestamp,
    "Attribute.timestamp": lambda row: row.attribute.timestamp,
}


class Filters:
    """The `set_filter_*` functions of MISP, producing predicates instead of SQL."""

    def __init__(self, store: MispStore, now: int, *, tag_names_case_sensitive: bool) -> None:
        self.store = store
        self.now = now
        self.tag_names_case_sensitive = tag_names_case_sensitive
        self.event_ids: set[int] | None = None
        """The only events the Event-scope conditions can select, when a filter found them in an index, else None."""

    def restrict_events(self, event_ids: set[int]) -> None:
        """Narrow `event_ids` to these events. The conditions still decide which of them match."""
        self.event_ids = set(event_ids) if self.event_ids is None else self.event_ids & event_ids

    # Tags (MispAttribute::set_filter_tags, L1096-1230)

    def find_tag_ids(self, terms: Any) -> list[Any]:
        """Return `Tag::findTagIdsByTagNames`: the ids of tags whose name is LIKE a term, then the numeric terms, which are ids already."""
        names = [term for term in as_list(terms) if not php_is_numeric(term)]
        numeric_ids = [term for term in as_list(terms) if php_is_numeric(term)]
        matched = []
        if names:
            patterns = [php_strval(name) for name in names]
            for tag in self.store.tags_in_id_order():
                if any(sql_like(tag.name, pattern, self.tag_names_case_sensitive) for pattern in patterns):
                    matched.append(tag.id)
        return matched + numeric_ids

    def fetch_tag_ids_simple(self, terms: Any) -> list[Any]:
        """Return `Tag::fetchTagIdsSimple`: the ids, or [-1] when terms were given but no tag matched."""
        if php_empty(terms):
            return []
        return self.find_tag_ids(terms) or [-1]

    def set_filter_tags(self, params: dict[str, Any], conditions: list[Predicate], options: FilterOptions) -> None:
        if php_empty(params.get("tags")) and php_empty(params.get("event_tags")):
            return
        tag_key = "tags" if not php_empty(params.get("tags")) else "event_tags"
        any_terms, not_terms, all_terms = dissect_args(params[tag_key])
        any_ids = self.fetch_tag_ids_simple(any_terms)
        not_ids = self.fetch_tag_ids_simple(not_terms)
        all_ids = self.fetch_tag_ids_simple(all_terms)
        if all_terms:
            if not isinstance(all_terms, (list, dict)):
                raise MispInternalError(f"count() on the AND tag terms {all_terms!r} fails in PHP 8")
            # If one AND tag does not exist (or a pattern matched several tags), nothing matches.
            if len(all_terms) != len(all_ids):
                all_ids = [-1]
        include_attribute_tags = tag_key != "event_tags"
        scope, pop = options.scope, options.pop

        if any_ids:
            if _is_minus_one(any_ids[0]):
                conditions.append(_never)
            else:
                alternatives = [_event_has_event_tag(any_ids)]
                if include_attribute_tags:
                    alternatives.append(_event_has_attribute_tag(any_ids) if scope == EVENT_SCOPE else _attribute_has_tag(any_ids))
                conditions.append(lambda row, alternatives=alternatives: any(alternative(row) for alternative in alternatives))

        # A NOT list whose tags do not exist is [-1] and is ignored.
        if not_ids and not (len(not_ids) == 1 and php_loose_equals_number(not_ids[0], -1)):
            if scope == EVENT_SCOPE:
                has_tag = _event_has_event_tag(not_ids)
            else:
                has_tag = _attribute_has_tag(not_ids)
            conditions.append(lambda row, has_tag=has_tag: not has_tag(row))

        if all_ids:
            if _is_minus_one(all_ids[0]):
                conditions.append(_never)
            else:
                required = []
                for tag_id in all_ids:
                    alternatives = [_event_has_event_tag([tag_id])]
                    if include_attribute_tags:
                        alternatives.append(_event_has_attribute_tag([tag_id]) if scope == EVENT_SCOPE else _attribute_has_tag([tag_id]))
                    required.append(alternatives)
                conditions.append(lambda row, required=required: all(any(alternative(row) for alternative in alternatives) for alternatives in required))

        # The NOT ids stay behind even when the parameter is popped: the Attribute-scope pass
        # and the event fetch (as blocked attribute tags) use them again.
        remaining: dict[str, list[Any]] = {}
        if any_ids and not pop:
            remaining["OR"] = any_ids
        if not_ids:
            remaining["NOT"] = not_ids
        if all_ids and not pop:
            remaining["AND"] = all_ids
        if remaining:
            params[tag_key] = remaining
        else:
            del params[tag_key]

    # Time (Event::set_filter_timestamp and set_filter_date, MispAttribute::setTimestampConditions)

    def timestamp_conditions(self, value: Any, column: str) -> list[Predicate]:
        """Return `>=`/`<=` conditions for one time value or a [from, to] pair."""
        getter = TIMESTAMP_COLUMNS[column]
        if isinstance(value, (list, dict)):
            lower, upper = self._time_range(value)
            conditions = []
            if lower != 0:
                conditions.append(lambda row: getter(row) >= lower)
            conditions.append(lambda row: getter(row) <= upper)
            return conditions
        resolved = resolve_time_delta(value, self.now)
        if resolved == 0 and isinstance(resolved, int):
            return []
        return [lambda row: getter(row) >= resolved]

    def _time_range(self, value: list[Any] | dict[str, Any]) -> tuple[int | float, int | float]:
        if len(value) != 2:
            raise MispInternalError("Invalid date specification, must be string or array with two elements")
        # PHP reads the JSON object keys "0" and "1" as the array indexes 0 and 1.
        first, second = (value.get("0"), value.get("1")) if isinstance(value, dict) else value
        lower = resolve_time_delta(first, self.now)
        upper = resolve_time_delta(second, self.now)
        return (upper, lower) if lower > upper else (lower, upper)

    def set_filter_timestamp(self, params: dict[str, Any], conditions: list[Predicate], options: FilterOptions) -> None:
        name = options.filter
        value = params.get(name)
        if name in ("from", "to"):
            bound = php_date(value) if php_is_numeric(value) else mysql_date_text(value)
            if name == "from":
                conditions.append(lambda row: row.event.date >= bound)
            else:
                conditions.append(lambda row: row.event.date <= bound)
            return
        column = {
            "timestamp": f"{options.scope}.timestamp",
            "publish_timestamp": "Event.publish_timestamp",
            "last": "Event.publish_timestamp",
            "event_timestamp": "Event.timestamp",
            "attribute_timestamp": "Attribute.timestamp",
        }[name]
        conditions.extend(self.timestamp_conditions(value, column))
        if options.pop:
            params.pop(name, None)

    def set_filter_date(self, params: dict[str, Any], conditions: list[Predicate], options: FilterOptions) -> None:
        value = params["date"]
        if isinstance(value, (list, dict)):
            lower, upper = self._time_range(value)
            lower_date, upper_date = php_date(lower), php_date(upper)
            conditions.append(lambda row: lower_date <= row.event.date <= upper_date)
        else:
            lower_date = php_date(resolve_time_delta(value, self.now))
            conditions.append(lambda row: row.event.date >= lower_date)

    # Event columns

    def set_filter_eventid(self, params: dict[str, Any], conditions: list[Predicate], options: FilterOptions) -> None:
        if php_empty(params.get("eventid")) or params["eventid"] == "all":
            return
        terms = convert_filters(params["eventid"])
        params["eventid"] = terms
        operand_checks = []
        for operand, values in terms.items():
            by_column: dict[str, list[Any]] = {}
            for value in as_list(values):
                by_column.setdefault("uuid" if uuid_like(value) else "id", []).append(value)
            checks = [_column_in(EVENT_UUID if column == "uuid" else EVENT_ID, values) for column, values in by_column.items()]
            operand_checks.append((operand, checks))

        def matches(row: Row) -> bool:
            for operand, checks in operand_checks:
                if operand == "OR" and not any(check(row) for check in checks):
                    return False
                if operand == "AND" and not all(check(row) for check in checks):
                    return False
                if operand == "NOT" and all(check(row) for check in checks):
                    return False
            return True

        conditions.append(matches)

    def set_filter_org(self, params: dict[str, Any], conditions: list[Predicate], options: FilterOptions) -> None:
        if php_empty(params.get("org")):
            return
        terms = convert_filters(params["org"])
        if not php_empty(terms.get("OR")):
            # An unknown organisation becomes -1, which matches no event.
            terms["OR"] = [term if php_is_numeric(term) else self._organisation_id_or(term, -1) for term in as_list(terms["OR"])]
        if not php_empty(terms.get("NOT")):
            known = [term if php_is_numeric(term) else self._organisation_id_or(term, None) for term in as_list(terms["NOT"])]
            known = [term for term in known if term is not None]
            if known:
                terms["NOT"] = known
            else:
                del terms["NOT"]
        params["org"] = terms
        conditions.extend(generic_filter(terms, [EVENT_ORGC_ID]))

    def _organisation_id_or(self, name_or_uuid: Any, missing: int | None) -> Any:
        organisation_id = self.store.find_organisation_id(php_strval(name_or_uuid))
        return missing if organisation_id is None else str(organisation_id)

    def set_filter_event_uuid(self, params: dict[str, Any], conditions: list[Predicate], options: FilterOptions) -> None:
        """Event::set_filter_uuid: the event uuid, or the uuid of any attribute row of the event."""
        if php_empty(params.get("uuid")):
            return
        terms = convert_filters(params["uuid"])
        params["uuid"] = terms
        if not php_empty(terms.get("OR")):
            requested = _uuid_texts(as_list(terms["OR"]))
            # The store's uuid indexes find the few matching events without a scan of every attribute.
            self.restrict_events(self.store.event_ids_with_uuid(requested))
            conditions.append(lambda row: row.event.uuid in requested or any(a.uuid in requested for a in row.event.attributes))
        if not php_empty(terms.get("NOT")):
            excluded = _uuid_texts(as_list(terms["NOT"]))
            # CakePHP reads 'NOT' => [a, b] as NOT (a AND b).
            conditions.append(lambda row: not (row.event.uuid in excluded and any(a.uuid in excluded for a in row.event.attributes)))

    def set_filter_published(self, params: dict[str, Any], conditions: list[Predicate], options: FilterOptions) -> None:
        value = params.get("published")
        if value is None or value == [True, False] and all(isinstance(item, bool) for item in value):
            return
        values = as_list(value)
        conditions.append(lambda row: any(column_equals(BOOLEAN, row.event.published, item) for item in values))

    def set_filter_threat_level_id(self, params: dict[str, Any], conditions: list[Predicate], options: FilterOptions) -> None:
        if params.get("threat_level_id") is None:
            return
        values = as_list(params["threat_level_id"])
        conditions.append(lambda row: any(column_equals(INTEGER, row.event.threat_level_id, item) for item in values))

    def set_filter_eventinfo(self, params: dict[str, Any], conditions: list[Predicate], options: FilterOptions) -> None:
        if php_empty(params.get("eventinfo")):
            return
        params["eventinfo"] = convert_filters(params["eventinfo"])
        conditions.extend(generic_filter(params["eventinfo"], [EVENT_INFO]))

    # Attribute columns

    def set_filter_simple_attribute(self, params: dict[str, Any], conditions: list[Predicate], options: FilterOptions) -> None:
        """Match `Attribute.<parameter>` (category, object_relation) with the generic filter."""
        name = options.filter
        if php_empty(params.get(name)):
            return
        params[name] = convert_filters(params[name])
        conditions.extend(generic_filter(params[name], [SIMPLE_ATTRIBUTE_COLUMNS[name]]))

    def set_filter_type(self, params: dict[str, Any], conditions: list[Predicate], options: FilterOptions) -> None:
        if php_empty(params.get("type")):
            return
        terms = convert_filters(params["type"])
        for operator in ("OR", "NOT"):
            values = terms.get(operator)
            if isinstance(values, list) and ("email-src" in values or "email-dst" in values) and "email" not in values:
                values.append("email")
        params["type"] = terms
        conditions.extend(generic_filter(terms, [ATTRIBUTE_TYPE]))

    def set_filter_value(self, params: dict[str, Any], conditions: list[Predicate], options: FilterOptions) -> None:
        if php_empty(params.get("value")):
            return
        terms = convert_filters(params["value"])
        for operator in ("OR", "AND", "NOT"):
            if php_empty(terms.get(operator)):
                continue
            rewritten = []
            for term in as_list(terms[operator]):
                text = php_strval(term)
                # MISP drops the first character of NOT terms here, although convert_filters
                # already removed the "!", and then prefixes "!" again.
                if operator == "NOT":
                    text = text[1:]
                text = _compress_ipv6(text)
                rewritten.append("!" + text if operator == "NOT" else text)
            terms[operator] = rewritten
        params["value"] = terms
        conditions.extend(generic_filter(terms, [ATTRIBUTE_VALUE1, ATTRIBUTE_VALUE2]))

    def set_filter_deleted(self, params: dict[str, Any], conditions: list[Predicate], options: FilterOptions) -> None:
        if params.get("deleted") is None:
            return
        terms = convert_filters(params["deleted"])
        if options.scope == OBJECT_SCOPE:
            # Attributes outside objects pass the Object-scope condition.
            for predicate in generic_filter(terms, [OBJECT_DELETED]):
                conditions.append(lambda row, predicate=predicate: row.attribute.object_id == 0 or predicate(row))
        else:
            conditions.extend(generic_filter(terms, [ATTRIBUTE_DELETED]))

    def set_filter_to_ids(self, params: dict[str, Any], conditions: list[Predicate], options: FilterOptions) -> None:
        if params.get("to_ids") is None:
            return
        if params["to_ids"] == "exclude":
            params["to_ids"] = 0
        values = as_list(params["to_ids"])
        conditions.append(lambda row: any(column_equals(BOOLEAN, row.attribute.to_ids, value) for value in values))

    def set_filter_attribute_uuid(self, params: dict[str, Any], conditions: list[Predicate], options: FilterOptions) -> None:
        """MispAttribute::set_filter_uuid: the attribute uuid, or the uuid of its event."""
        if php_empty(params.get("uuid")):
            return
        terms = convert_filters(params["uuid"])
        params["uuid"] = terms
        requested = _uuid_texts(as_list(terms["OR"])) if not php_empty(terms.get("OR")) else frozenset()
        if requested:
            if any(self.store.has_event_uuid(text) for text in requested):
                conditions.append(lambda row: row.event.uuid in requested or row.attribute.uuid in requested)
            else:
                conditions.append(lambda row: row.attribute.uuid in requested)
        if not php_empty(terms.get("NOT")):
            excluded = _uuid_texts(as_list(terms["NOT"]))
            # MISP looks the event up by the OR uuids here, so without OR terms only the
            # event part is false and the NOT condition holds for every row.
            conditions.append(lambda row: not (row.event.uuid in requested and row.attribute.uuid in excluded))


def _is_minus_one(value: Any) -> bool:
    return value == -1 and type(value) is int


def _numeric_tag_ids(tag_ids: list[Any]) -> frozenset[float]:
    return frozenset(number for number in (mysql_number(tag_id) for tag_id in tag_ids) if number is not None)


def _links_hit(links: list[TagLink], tag_id_set: frozenset[float]) -> bool:
    return any(link.tag_id in tag_id_set for link in links)


def _event_has_event_tag(tag_ids: list[Any]) -> Predicate:
    tag_id_set = _numeric_tag_ids(tag_ids)
    return lambda row: _links_hit(row.event.tags, tag_id_set)


def _event_has_attribute_tag(tag_ids: list[Any]) -> Predicate:
    # attribute_tags rows carry the event id, so every attribute row of the event counts.
    tag_id_set = _numeric_tag_ids(tag_ids)
    return lambda row: any(_links_hit(attribute.tags, tag_id_set) for attribute in row.event.attributes)


def _attribute_has_tag(tag_ids: list[Any]) -> Predicate:
    tag_id_set = _numeric_tag_ids(tag_ids)
    return lambda row: _links_hit(row.attribute.tags, tag_id_set)


def _column_in(column: tuple[Callable[[Row], Any], str], values: list[Any]) -> Predicate:
    getter, kind = column
    return lambda row: any(column_equals(kind, getter(row), value) for value in values)


def _uuid_texts(values: list[Any]) -> frozenset[str]:
    """Return the texts that a uuid column (utf8mb3_bin, never NULL) equals for these filter values.

    A NULL filter value equals no row, so it is left out.
    """
    return frozenset(php_strval(value) for value in values if value is not None)


def _compress_ipv6(text: str) -> str:
    if ":" not in text:
        return text
    try:
        return ipaddress.IPv6Address(text).compressed
    except ValueError:
        return text
