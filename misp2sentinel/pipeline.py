"""The stages that export and sync share: events in, mapped once, selected per workspace.

When two inputs carry the same indicator, the first wins and the repeat is counted as a duplicate.
Identities are yielded once per run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from misp2sentinel.gc_pacing import collect_if_due
from misp2sentinel.mapping import Record, map_event
from misp2sentinel.mapping.markings import TLP_NAMES, TLP_RANK
from misp2sentinel.report import ABOVE_MAX_TLP, DUPLICATE, INVALID_PATTERN, NOT_SELECTED, RunReport, Skip, skips_itemized
from misp2sentinel.selection import event_selected, max_rank
from misp2sentinel.validation import PatternValidator

if TYPE_CHECKING:
    from misp2sentinel.config import MappingSettings, Selection


def map_records(event: dict, settings: MappingSettings, now: datetime, report: RunReport,
                validator: PatternValidator | None = None) -> list[Record]:
    """Map one event, count its mapping skips, and return its records."""
    return list(stream_records(event, settings, now, report, validator))


def stream_records(event: dict, settings: MappingSettings, now: datetime, report: RunReport,
                   validator: PatternValidator | None = None) -> Iterator[Record]:
    """Map one event and yield its records as they are built, counting its mapping skips.

    With a `validator` (`--validate`), an indicator whose pattern fails the grammar is skipped.
    """
    collect_if_due()
    report.events += 1
    for item in map_event(event, settings, now, itemized=skips_itemized()):
        if item.__class__ is Skip:
            report.skip(item)
        elif validator is not None and (problem := validator.problem(item.stix)) is not None:
            detail = f"{item.stix['id']}: the pattern {item.stix['pattern']!r} is not valid STIX: {problem}"
            report.skip(Skip(INVALID_PATTERN, detail, item.event_uuid, item.attribute_uuid, item.attribute_type))
        else:
            yield item


def id_key(stix_id: str) -> int:
    """Return the uuid of a STIX id (`type--uuid`) as an integer, a compact key for duplicate detection.

    Every id the mapper makes ends in a canonical uuid, and two uuids of different types do not
    collide (they are random or UUIDv5 hashes of distinct names).
    """
    return int(stix_id[-36:].replace("-", ""), 16)


# Records that many events share (the creator identity, an ATT&CK attack pattern): sent once per
# run, and a repeat is not a duplicate.
SHARED_PARTS = ("identity", "attack-pattern")


class WorkspaceFilter:
    """What one workspace (or an export) takes from each mapped event."""

    def __init__(
        self, settings: MappingSettings, selection: Selection | None, report: RunReport, *, label: str | None = None
    ) -> None:
        self.selection = selection
        self.prefix = f"{label}: " if label else ""
        self.report = report
        self.ceiling = max_rank(selection, TLP_RANK[settings.max_tlp])
        self.types = set(selection.types) if selection and selection.types else None
        # The uuids of the ids seen in this run, as 128-bit integers: about 80 bytes per indicator
        # instead of 150 for the id text.
        # TODO: the set still grows with the run (80 MB per million indicators); bound it.
        self.seen: set[int] = set()

    def event_reason(self, event: dict) -> str | None:
        """Return why the event is outside the selection, or None when it is selected."""
        if self.selection is None:
            return None
        return event_selected(event, self.selection)

    def records(self, event: dict, records: Iterable[Record]) -> Iterator[Record]:
        reason = self.event_reason(event)
        if reason is not None:
            # A stream of records is still drained, so the event's mapping skips are counted.
            for _ in records:
                pass
            self.report.skip(Skip(NOT_SELECTED, self.prefix + reason, event.get("uuid")))
            return
        seen = self.seen
        types = self.types
        ceiling = self.ceiling
        for record in records:
            key = id_key(record.stix["id"])
            if record.part in SHARED_PARTS:
                if key not in seen:
                    seen.add(key)
                    yield record
                continue
            if types is None and record.tlp_rank <= ceiling and key not in seen:
                # The usual record: every type selected, TLP within the ceiling, not seen before.
                seen.add(key)
                yield record
                continue
            skip = self._skip_reason(record, key)
            if skip is not None:
                reason, detail = skip
                self.report.skip(Skip(reason, self.prefix + detail, record.event_uuid, record.attribute_uuid, record.attribute_type))
                continue
            self.seen.add(key)
            yield record

    def _skip_reason(self, record: Record, key: int) -> tuple[str, str] | None:
        if self.types is not None and record.attribute_type not in self.types:
            return NOT_SELECTED, f"type {record.attribute_type} is not selected"
        if record.tlp_rank > self.ceiling:
            return ABOVE_MAX_TLP, f"TLP {TLP_NAMES[record.tlp_rank]} is above the workspace maximum {TLP_NAMES[self.ceiling]}"
        if key in self.seen:
            return DUPLICATE, f"{record.id} was already produced by an earlier attribute or input"
        return None


def select_records(
    events: Iterable[dict],
    settings: MappingSettings,
    now: datetime,
    report: RunReport,
    selection: Selection | None = None,
) -> Iterator[Record]:
    """Map events and yield the records one workspace (or the export) takes, counting every skip."""
    chosen = WorkspaceFilter(settings, selection, report)
    for event in events:
        yield from chosen.records(event, map_records(event, settings, now, report))
