"""Normalise MISP event JSON into plain dicts with consistent types.

MISP writes numbers as strings (`"timestamp": "1603642920"`) and, in older exports and feeds,
booleans as `"0"`/`"1"` or `0`/`1`. The mapper sees one shape only:

    event = {uuid, id, info, date, timestamp, publish_timestamp, published, distribution,
             sharing_group: {id, uuid, name} | None, orgc: {uuid, name} | None, galaxies: [cluster], tags: [name], attributes: [attribute], objects: [object]}
    object = {uuid, name, meta_category, comment, deleted, distribution, tags: [name],
              attributes: [attribute]}
    attribute = {uuid, type, category, value, to_ids (bool | None), timestamp, first_seen,
                 last_seen, comment, deleted, tags: [name], object_relation, distribution, warnings,
                 galaxies: [cluster], decay_score, data (base64 of an attachment or sample)}

`to_ids` stays None when the input omits it; the mapper then applies MISP's default for the type.
"""

from __future__ import annotations

from typing import Any

from misp2sentinel.mapping.context import galaxy_clusters

TRUE_TEXT = {"1", "true", "yes", "on"}
FALSE_TEXT = {"0", "false", "no", "off", ""}


def to_bool(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    text = str(value).strip().lower()
    if text in TRUE_TEXT:
        return True
    if text in FALSE_TEXT:
        return False
    return None


def to_int(value: Any) -> int | None:
    if value.__class__ is str and value.isdigit() and value.isascii():
        return int(value)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(float(str(value).strip()))
    except (ValueError, OverflowError):
        # Not a number, or an infinite one ("inf", "1e400").
        return None


# The latest time a STIX timestamp can carry with a lifetime added: 9000-01-01T00:00:00Z.
LATEST_TIMESTAMP = 221845392000


def to_timestamp(value: Any, problems: list[str], what: str) -> int | None:
    """Return a Unix time in seconds; a value outside 1970 to 9000 is noted in `problems` and dropped."""
    number = to_int(value)
    if number is not None and not 0 <= number <= LATEST_TIMESTAMP:
        problems.append(f"its {what} {value!r} is not a Unix time between 1970 and 9000")
        return None
    return number


def to_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return str(value)


def tag_names(*tag_lists: Any) -> list[str]:
    """Return the tag names of MISP `Tag`, `EventTag` or `AttributeTag` values, in order.

    MISP writes a tag list as a list or a dict keyed by index, a single tag as a dict, and each
    tag as `{"name": ...}`, `{"Tag": {"name": ...}}` (EventTag and AttributeTag rows) or a bare
    string. Every shape is read, because a TLP tag that is missed would let data out unmarked.
    """
    names: list[str] = []
    for tags in tag_lists:
        if not tags:
            continue
        for tag in as_list(tags) if not isinstance(tags, str) else [tags]:
            if isinstance(tag, dict):
                inner = tag.get("Tag")
                if isinstance(inner, list) or (isinstance(inner, dict) and "name" not in inner):
                    # A row that contains a list of tags rather than one.
                    candidates: list = tag_names(inner)
                else:
                    candidates = [inner.get("name") if isinstance(inner, dict) else tag.get("name")]
            else:
                candidates = [tag]
            for name in candidates:
                if isinstance(name, str):
                    name = name.strip()
                    if name and name not in names:
                        names.append(name)
    return names


def as_list(value: Any) -> list:
    """MISP gives `Object`, `Attribute` and `Tag` as a list, a single dict, or a dict keyed by index."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        if value and all(str(key).isdigit() for key in value):
            # Keyed by index. The caller drops an entry that is not a dict, as in a list.
            return list(value.values())
        return [value]
    return []


def value_text(value: Any) -> str | None:
    """Return an attribute value as text; None for a list, object or other non-scalar."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    return None


def _text_or_none(value: Any) -> str | None:
    """`to_text(value) or None`, inlined for strings on the hot path."""
    if value.__class__ is str:
        return value or None
    return to_text(value) or None


def normalize_attribute(raw: dict, *, reuse: bool = False) -> dict:
    """Normalise one MISP attribute; see the module docstring for the shape.

    This runs once per attribute, so the common types (strings, booleans, digit strings) are read
    inline and the general converters run only for the other shapes. With `reuse`, the raw dict
    itself becomes the normalised attribute: its keys are set to their normalised values, `Tag`,
    `AttributeTag` and `Galaxy` are dropped, and the other raw keys stay. A large file then never
    holds two dicts per attribute.
    """
    problems: list[str] = []
    get = raw.get
    uuid = get("uuid")
    attribute_type = get("type")
    value = get("value")
    to_ids = get("to_ids")
    deleted = get("deleted")
    comment = get("comment")
    category = get("category")
    tags = get("Tag")
    attribute_tags = get("AttributeTag")
    galaxies = get("Galaxy")
    data = get("data")
    timestamp = get("timestamp")
    first_seen = get("first_seen")
    last_seen = get("last_seen")
    relation = get("object_relation")
    # MISP writes a digit string, and one of 11 digits stays below LATEST_TIMESTAMP.
    if timestamp.__class__ is str and len(timestamp) < 12 and timestamp.isdigit() and timestamp.isascii():
        timestamp = int(timestamp)
    else:
        timestamp = to_timestamp(timestamp, problems, "timestamp")
    if not reuse:
        return {
            "problem": problems,
            "uuid": uuid if uuid.__class__ is str else to_text(uuid),
            "type": attribute_type.strip() if attribute_type.__class__ is str else (to_text(attribute_type) or "").strip(),
            "category": category if category.__class__ is str else to_text(category),
            "value": value if value.__class__ is str else value_text(value),
            "to_ids": to_ids if to_ids.__class__ is bool else to_bool(to_ids),
            "timestamp": timestamp,
            "first_seen": None if first_seen is None else _text_or_none(first_seen),
            "last_seen": None if last_seen is None else _text_or_none(last_seen),
            "comment": comment if comment.__class__ is str else to_text(comment) or "",
            "deleted": deleted if deleted.__class__ is bool else bool(to_bool(deleted)),
            "tags": tag_names(tags, attribute_tags) if tags or attribute_tags else [],
            "object_relation": None if relation is None else _text_or_none(relation),
            "distribution": to_int(get("distribution")),
            "warnings": get("warnings") or None,
            "galaxies": galaxy_clusters(galaxies) if galaxies else [],
            "decay_score": get("decay_score") or None,
            "data": data if data.__class__ is str else None,
        }
    # The same values as above, set only where the raw value differs from the normalised one.
    raw["problem"] = problems
    if uuid.__class__ is not str:
        raw["uuid"] = to_text(uuid)
    raw["type"] = attribute_type.strip() if attribute_type.__class__ is str else (to_text(attribute_type) or "").strip()
    if category.__class__ is not str:
        raw["category"] = to_text(category)
    if value.__class__ is not str:
        raw["value"] = value_text(value)
    if to_ids.__class__ is not bool:
        raw["to_ids"] = to_bool(to_ids)
    raw["timestamp"] = timestamp
    raw["first_seen"] = None if first_seen is None else _text_or_none(first_seen)
    raw["last_seen"] = None if last_seen is None else _text_or_none(last_seen)
    if comment.__class__ is not str:
        raw["comment"] = to_text(comment) or ""
    if deleted.__class__ is not bool:
        raw["deleted"] = bool(to_bool(deleted))
    raw["tags"] = tag_names(tags, attribute_tags) if tags or attribute_tags else []
    raw["object_relation"] = None if relation is None else _text_or_none(relation)
    raw["distribution"] = to_int(get("distribution"))
    raw["warnings"] = get("warnings") or None
    raw["galaxies"] = galaxy_clusters(galaxies) if galaxies else []
    raw["decay_score"] = get("decay_score") or None
    if data.__class__ is not str:
        raw["data"] = None
    if tags is not None:
        del raw["Tag"]
    if attribute_tags is not None:
        del raw["AttributeTag"]
    if galaxies is not None:
        del raw["Galaxy"]
    return raw


def _reused_attribute(raw: dict) -> dict:
    return normalize_attribute(raw, reuse=True)


def normalize_object(raw: dict, *, reuse: bool = False) -> dict:
    """Normalise one MISP object. With `reuse`, its attributes' raw dicts become the normalised ones
    (see `normalize_attribute`)."""
    normalize = _reused_attribute if reuse else normalize_attribute
    return {
        "uuid": to_text(raw.get("uuid")),
        "name": to_text(raw.get("name")) or "",
        "meta_category": to_text(raw.get("meta-category")),
        "comment": to_text(raw.get("comment")) or "",
        "deleted": bool(to_bool(raw.get("deleted"))),
        "distribution": to_int(raw.get("distribution")),
        "attributes": [normalize(a) for a in as_list(raw.get("Attribute")) if isinstance(a, dict)],
    }


def _reused_object(raw: dict) -> dict:
    return normalize_object(raw, reuse=True)


def normalize_org(raw: Any) -> dict | None:
    if not isinstance(raw, dict):
        return None
    uuid = to_text(raw.get("uuid"))
    name = to_text(raw.get("name"))
    if not uuid and not name:
        return None
    return {"uuid": uuid, "name": name}


def _sharing_group(raw: dict) -> dict | None:
    """Return {id, uuid, name} of an event's sharing group, from `SharingGroup` or `sharing_group_id`."""
    group = raw.get("SharingGroup") if isinstance(raw.get("SharingGroup"), dict) else {}
    group_id = to_text(group.get("id")) or to_text(raw.get("sharing_group_id"))
    if not group and group_id in (None, "", "0"):
        return None
    return {"id": group_id, "uuid": to_text(group.get("uuid")), "name": to_text(group.get("name"))}


def normalize_event(raw: dict, *, reuse: bool = False) -> dict:
    """Normalise one MISP event (the content of `{"Event": ...}`).

    `problem` lists what makes the event unusable (an impossible timestamp); the mapper then skips
    its attributes as invalid rather than guess. With `reuse`, the raw attribute dicts become the
    normalised ones (see `normalize_attribute`), so the caller must not read `raw` afterwards.
    """
    problems: list[str] = []
    normalize_attributes = _reused_attribute if reuse else normalize_attribute
    normalize_objects = _reused_object if reuse else normalize_object
    return {
        "problem": problems,
        "uuid": to_text(raw.get("uuid")),
        "id": to_text(raw.get("id")),
        "info": to_text(raw.get("info")) or "",
        "date": to_text(raw.get("date")),
        "timestamp": to_timestamp(raw.get("timestamp"), problems, "timestamp"),
        "publish_timestamp": to_timestamp(raw.get("publish_timestamp"), problems, "publish_timestamp"),
        "published": bool(to_bool(raw.get("published"))),
        "distribution": to_int(raw.get("distribution")),
        "sharing_group": _sharing_group(raw),
        "orgc": normalize_org(raw.get("Orgc")),
        "tags": tag_names(raw.get("Tag"), raw.get("EventTag")),
        "galaxies": galaxy_clusters(raw.get("Galaxy")),
        "attributes": [normalize_attributes(a) for a in as_list(raw.get("Attribute")) if isinstance(a, dict)],
        "objects": [normalize_objects(o) for o in as_list(raw.get("Object")) if isinstance(o, dict)],
    }


def json_type(value: Any) -> str:
    """Name the JSON type of a parsed value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def looks_like_event(raw: Any) -> bool:
    """Tell a bare MISP event from other JSON objects."""
    return isinstance(raw, dict) and ("Attribute" in raw or "Object" in raw or "info" in raw)


def events_from_attribute_search(attributes: list) -> list[dict]:
    """Group `/attributes/restSearch` results into events, keeping what event context they carry.

    Results arrive ordered by attribute, so consecutive attributes of one event form one event;
    an event whose attributes are not consecutive appears more than once, which is harmless
    because repeated indicators are counted as duplicates.
    """
    events: list[dict] = []
    current_key = object()
    for raw in attributes:
        if not isinstance(raw, dict):
            continue
        stub = raw.get("Event") if isinstance(raw.get("Event"), dict) else {}
        key = stub.get("uuid") or raw.get("event_uuid") or raw.get("event_id")
        if key != current_key or not events:
            current_key = key
            event = normalize_event({k: v for k, v in stub.items() if k not in ("Attribute", "Object")})
            if not event["uuid"]:
                event["uuid"] = to_text(raw.get("event_uuid"))
            if not event["id"]:
                event["id"] = to_text(raw.get("event_id"))
            events.append(event)
        else:
            # Any row's event stub may carry the event's tags (a TLP among them), not only the first.
            _add_tags(events[-1], tag_names(stub.get("Tag"), stub.get("EventTag")))
        attribute = normalize_attribute(raw)
        # Tags copied from the event by includeEventTags carry "inherited": 1; they are event tags.
        # Every other shape (a name, a string, an AttributeTag row) is the attribute's own, read by
        # tag_names as in a whole event, so that no TLP tag is missed.
        tags = raw.get("Tag")
        inherited, own = [], []
        for entry in [tags] if isinstance(tags, str) else as_list(tags):
            if isinstance(entry, dict) and to_bool(entry.get("inherited")):
                inherited.append(entry)
            else:
                own.append(entry)
        attribute["tags"] = tag_names(own, raw.get("AttributeTag"))
        _add_tags(events[-1], tag_names(inherited))
        events[-1]["attributes"].append(attribute)
    return events


def _add_tags(event: dict, names: list[str]) -> None:
    """Add tag names to a normalised event's tags, each once."""
    for name in names:
        if name not in event["tags"]:
            event["tags"].append(name)


def events_from_document(document: Any, *, reuse: bool = False) -> list[dict]:
    """Return the normalised events of one MISP JSON document, in any shape MISP writes.

    With `reuse`, the events' raw attribute dicts become the normalised ones (see
    `normalize_attribute`), so the caller must not read the document afterwards. Raises ValueError
    when the document contains no MISP event or attribute.
    """
    events: list[dict] = []
    _collect(document, events, 0, reuse)
    return events


def _collect(document: Any, events: list[dict], depth: int, reuse: bool) -> None:
    if depth > 3:
        raise ValueError("nested too deeply to be MISP JSON")
    if isinstance(document, list):
        for item in document:
            _collect(item, events, depth + 1, reuse)
        return
    if not isinstance(document, dict):
        raise ValueError(f"expected a JSON object or array, found {json_type(document)}")
    if "Event" in document and isinstance(document["Event"], dict):
        events.append(normalize_event(document["Event"], reuse=reuse))
        return
    if "response" in document:
        response = document["response"]
        if isinstance(response, dict) and "Attribute" in response:
            events.extend(events_from_attribute_search(as_list(response["Attribute"])))
            return
        _collect(response, events, depth + 1, reuse)
        return
    if isinstance(document.get("Attribute"), list) and "info" not in document and "uuid" not in document:
        # An attribute search result without the "response" envelope.
        events.extend(events_from_attribute_search(document["Attribute"]))
        return
    if looks_like_event(document):
        events.append(normalize_event(document, reuse=reuse))
        return
    raise ValueError("no MISP event found (expected {\"Event\": ...}, an event object or {\"response\": ...})")
