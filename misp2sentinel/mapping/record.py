"""The unit the mapper produces: one STIX object and what later stages need to know about it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Record:
    """One STIX object to send, with what later stages need to select, diff and revoke it."""

    stix: dict
    source: str
    part: str
    first: bool
    valid_uuid: bool
    event_uuid: str | None
    attribute_uuid: str | None
    attribute_type: str | None
    tlp_rank: int
    timestamp: int | None

    @property
    def id(self) -> str:
        return self.stix["id"]
