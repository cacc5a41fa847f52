"""Rows of the emulated MISP database: organisations, tags, events with their attributes,
objects and reports, and the enabled warninglists.

The rows have Python types (int, bool, str) and local numeric ids. As in MISP's attributes
table, every attribute of an event, standalone or inside an object, is one row of
`StoredEvent.attributes`, linked to its object by `object_id`. Tags are `TagLink`s into the
tag registry.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TAG_COLOUR = "#ffffff"


class NotFoundError(LookupError):
    """An event, attribute, object or tag that a test hook names does not exist."""


@dataclass
class Organisation:
    id: int
    name: str
    uuid: str | None
    local: bool


@dataclass
class Tag:
    id: int
    name: str
    colour: str = DEFAULT_TAG_COLOUR
    exportable: bool = True
    hide_tag: bool = False
    numerical_value: int | None = None
    is_galaxy: bool = False
    is_custom_galaxy: bool = False
    local_only: bool = False
    user_id: int = 0


@dataclass
class TagLink:
    """A row of event_tags or attribute_tags: which tag, and whether it is local to this instance."""

    tag_id: int
    local: bool = False
    relationship_type: str | None = None


@dataclass
class StoredAttribute:
    id: int
    uuid: str
    event_id: int
    object_id: int
    object_relation: str | None
    type: str
    category: str
    value: str
    to_ids: bool
    distribution: int
    sharing_group_id: int
    timestamp: int
    comment: str
    deleted: bool
    disable_correlation: bool
    first_seen: str | None
    last_seen: str | None
    tags: list[TagLink] = field(default_factory=list)
    galaxies: list[dict[str, Any]] = field(default_factory=list)

    def _value_parts(self) -> tuple[str, str]:
        # MISP splits composite values (types with "|", and malware-sample) into value1 and value2.
        if "|" in self.type or self.type == "malware-sample":
            first, _, second = self.value.partition("|")
            return first, second
        return self.value, ""

    @property
    def value1(self) -> str:
        return self._value_parts()[0]

    @property
    def value2(self) -> str:
        return self._value_parts()[1]


@dataclass
class StoredObject:
    id: int
    uuid: str
    event_id: int
    name: str
    meta_category: str
    description: str
    template_uuid: str | None
    template_version: int
    timestamp: int
    distribution: int
    sharing_group_id: int
    comment: str
    deleted: bool
    first_seen: str | None
    last_seen: str | None
    references: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class StoredReport:
    id: int
    uuid: str
    event_id: int
    name: str
    content: str
    distribution: int
    sharing_group_id: int
    timestamp: int
    deleted: bool


@dataclass
class StoredEvent:
    id: int
    uuid: str
    info: str
    date: str
    threat_level_id: int
    analysis: int
    published: bool
    timestamp: int
    publish_timestamp: int
    sighting_timestamp: int
    distribution: int
    sharing_group_id: int
    proposal_email_lock: bool
    locked: bool
    disable_correlation: bool
    extends_uuid: str
    protected: bool | None
    org_id: int
    orgc_id: int
    tags: list[TagLink] = field(default_factory=list)
    attributes: list[StoredAttribute] = field(default_factory=list)
    objects: list[StoredObject] = field(default_factory=list)
    reports: list[StoredReport] = field(default_factory=list)
    galaxies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def attribute_count(self) -> int:
        """Number of attributes that are not soft-deleted, the count MISP keeps in events.attribute_count."""
        return sum(1 for attribute in self.attributes if not attribute.deleted)

    def attribute(self, attribute_uuid: str) -> StoredAttribute:
        for attribute in self.attributes:
            if attribute.uuid == attribute_uuid.lower():
                return attribute
        raise NotFoundError(f"event {self.uuid} has no attribute with uuid {attribute_uuid}")

    def object(self, object_id_or_uuid: int | str) -> StoredObject:
        for stored_object in self.objects:
            if stored_object.id == object_id_or_uuid or stored_object.uuid == str(object_id_or_uuid).lower():
                return stored_object
        raise NotFoundError(f"event {self.uuid} has no object {object_id_or_uuid}")


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
            raise ValueError(f"unsupported warninglist type {self.type!r}: use string, substring, hostname or cidr")

    def applies_to(self, attribute_type: str) -> bool:
        return "ALL" in self.attribute_types or attribute_type in self.attribute_types

    def match(self, attribute: StoredAttribute) -> tuple[str, str] | None:
        """Return the list entry and the value part that match, as `Warninglist::checkValue` finds them, or None."""
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
