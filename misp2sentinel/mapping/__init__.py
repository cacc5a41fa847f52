"""Mapping MISP events to STIX 2.1 indicator records: a pure function of event, settings and clock."""

from misp2sentinel.mapping.builder import Record, map_event

__all__ = ["Record", "map_event"]
