"""The stages that export and sync share: events in, selected and de-duplicated records out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from misp2sentinel.config import MappingSettings, Selection
from misp2sentinel.mapping import Record, map_event
from misp2sentinel.mapping.markings import TLP_NAMES, TLP_RANK
from misp2sentinel.report import ABOVE_MAX_TLP, DUPLICATE, NOT_SELECTED, RunReport, Skip
from misp2sentinel.selection import event_selected, max_rank


def select_records(
    events: Iterable[dict],
    settings: MappingSettings,
    now: datetime,
    report: RunReport,
    selection: Selection | None = None,
) -> Iterator[Record]:
    """Map events and yield the records a workspace (or the export) takes, counting every skip.

    When two inputs carry the same indicator, the first wins and the repeat is counted as a
    duplicate. Identities are yielded once per run.
    """
    seen: set[str] = set()
    ceiling = max_rank(selection, TLP_RANK[settings.max_tlp])
    types = set(selection.types) if selection and selection.types else None
    for event in events:
        report.events += 1
        if selection is not None:
            reason = event_selected(event, selection)
            if reason is not None:
                report.skip(Skip(NOT_SELECTED, reason, event.get("uuid")))
                continue
        for item in map_event(event, settings, now):
            if isinstance(item, Skip):
                report.skip(item)
                continue
            if item.part == "identity":
                if item.id not in seen:
                    seen.add(item.id)
                    yield item
                continue
            if types is not None and item.attribute_type not in types:
                report.skip(Skip(NOT_SELECTED, f"type {item.attribute_type} is not selected", item.event_uuid, item.attribute_uuid, item.attribute_type))
                continue
            if item.tlp_rank > ceiling:
                detail = f"TLP {TLP_NAMES[item.tlp_rank]} is above the workspace maximum {TLP_NAMES[ceiling]}"
                report.skip(Skip(ABOVE_MAX_TLP, detail, item.event_uuid, item.attribute_uuid, item.attribute_type))
                continue
            if item.id in seen:
                report.skip(Skip(DUPLICATE, f"{item.id} was already produced by an earlier input", item.event_uuid, item.attribute_uuid, item.attribute_type))
                continue
            seen.add(item.id)
            yield item
