"""Deciding which MISP events a run fetches.

* **The cursor window.** Events whose `Event.timestamp` (and, under the published-only policy,
  `publish_timestamp`) lies in `[cursor - overlap, now]`; a workspace without a cursor starts
  `misp.lookback_days` back. The run uses the lowest cursor of its workspaces.
* **The sweep.** Every run (or every `lifecycle.sweep_interval_hours`), one metadata query lists the
  whole selection. An event recorded in the state that the list no longer contains was deleted or left
  the global filter, so its live indicators are revoked. A known event whose timestamp or tags
  differ from what the state remembers is fetched, which catches tags added or removed without a
  timestamp change (local tags). Events never seen before are fetched when they fall inside the
  look-back, and otherwise only remembered, so a later tag change on them shows.
* **Pending events**: those whose records failed in an earlier run, fetched again by uuid.
* **Refreshes**: events of live indicators last uploaded more than `lifecycle.refresh_days` ago,
  oldest first, at most `lifecycle.refresh_share` of each workspace's live indicators per run.
* **A new selection**: a workspace whose cursor is new (added, or its selection changed) also
  re-evaluates every event it holds live indicators of, since some may no longer be selected.
* `sync --full` fetches every event of the selection, ignoring the cursor, and
  `sync --retry-rejected` the events of records Sentinel rejected.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from dataclasses import dataclass, field

import orjson

from misp2sentinel.config import Config, Workspace
from misp2sentinel.state import StateStore
from misp2sentinel.sync.workspace import WorkspaceRun, tags_digest

DAY_SECONDS = 86400


def selection_key(config: Config, workspace: Workspace) -> bytes:
    """Identify what a cursor covers: a changed selection or global filter starts a new cursor."""
    parts = {
        "selection": workspace.selection.model_dump(mode="json"),
        "filter": config.misp.filter.model_dump(mode="json") if config.misp else None,
        "published_only": config.misp.published_only if config.misp else None,
    }
    return hashlib.blake2b(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


def event_text(event_key: bytes | None) -> str | None:
    """Turn a stored 16-byte event key back into the event uuid; None for a key hashed from text."""
    if event_key is None:
        return None
    value = uuid.UUID(bytes=event_key)
    return str(value) if value.variant == uuid.RFC_4122 and value.version in (1, 2, 3, 4, 5) else None


@dataclass
class FetchPlan:
    """The events to fetch, in order, and when the listing was made."""

    uuids: list[str] = field(default_factory=list)
    listed_until: int = 0
    # Event.timestamp of each event to fetch, 0 where unknown (pending and refreshed events).
    timestamps: dict[str, int] = field(default_factory=dict)
    swept_at: int | None = None
    # Events the sweep listed: one of them that a fetch does not return has no attribute left.
    listed: set[str] = field(default_factory=set)


def plan_fetch(config: Config, store: StateStore, source, runs: list[WorkspaceRun], selections: dict[str, bytes],
               pending: dict[str, set[str]], now_ms: int, *, full: bool, retry_rejected: bool = False) -> FetchPlan:
    misp = config.misp
    until = now_ms // 1000
    lookback_start = until - misp.lookback_days * DAY_SECONDS
    cursors = {run.name: store.cursor(run.name, source.name, selections[run.name]) if store.exists else None for run in runs}
    starts = [c - misp.overlap_seconds if c is not None else lookback_start for c in cursors.values()]
    # PyMISP drops a 0 bound and MISP reads the missing bound as "now", so the lowest bound is 1.
    since = max(1, min(starts))

    wanted: dict[str, int] = {}
    swept_at = None
    catalogue: dict[str, dict] = {}
    if full or _sweep_due(config, store, source.name, runs, selections, until):
        swept_at = until
        catalogue = source.catalogue()
        for event_uuid, meta in catalogue.items():
            timestamp = meta["timestamp"] or 0
            published = meta["publish_timestamp"] or 0
            if full or timestamp >= since or (misp.published_only and published >= since):
                wanted[event_uuid] = timestamp
        for run in runs:
            _plan_sweep(run, store, catalogue, wanted, lookback_start)
    else:
        wanted.update(source.list_changed(since, until))

    for run in runs:
        for event_uuid in pending[run.name]:
            wanted.setdefault(event_uuid, 0)
        if store.exists:
            _plan_refresh(config, store, run, wanted, now_ms)
            keys = store.rejected_event_keys(run.name) if retry_rejected else []
            if cursors[run.name] is None:
                keys += store.live_event_keys(run.name)
            for event_key in keys:
                event_uuid = event_text(event_key)
                if event_uuid:
                    wanted.setdefault(event_uuid, 0)

    order = sorted(wanted, key=lambda u: (wanted[u], u))
    return FetchPlan(order, until, wanted, swept_at, set(catalogue) if swept_at is not None else set())


def _sweep_due(config: Config, store: StateStore, source_name: str, runs, selections, until: int) -> bool:
    interval = config.lifecycle.sweep_interval_hours * 3600
    if interval == 0 or not store.exists:
        return True
    for run in runs:
        last = store.cursor(run.name, f"sweep|{source_name}", selections[run.name])
        if last is None or last + interval <= until:
            return True
    return False


def _plan_sweep(run: WorkspaceRun, store: StateStore, catalogue: dict[str, dict], wanted: dict[str, int],
                lookback_start: int) -> None:
    known = store.known_events(run.name) if store.exists else {}
    live_events = {event_text(key) for key in store.live_event_keys(run.name)} if store.exists else set()
    for event_uuid in (set(known) | live_events) - set(catalogue) - {None}:
        run.revoke_event(event_uuid)
    for event_uuid, meta in catalogue.items():
        digest = tags_digest(meta["tags"])
        remembered = known.get(event_uuid)
        timestamp = meta["timestamp"] or 0
        if remembered is None:
            if timestamp >= lookback_start or event_uuid in live_events:
                wanted.setdefault(event_uuid, timestamp)
            else:
                run.note_listed(event_uuid, meta["timestamp"], digest)
        elif remembered[0] != meta["timestamp"] or remembered[1] != digest:
            wanted.setdefault(event_uuid, timestamp)


def _plan_refresh(config: Config, store: StateStore, run: WorkspaceRun, wanted: dict[str, int], now_ms: int) -> None:
    lifecycle = config.lifecycle
    limit = math.ceil(lifecycle.refresh_share * run.live_at_start)
    cutoff = now_ms - int(lifecycle.refresh_days * DAY_SECONDS * 1000)
    for stix_id, event_key in store.refresh_due(run.name, cutoff, limit):
        event_uuid = event_text(event_key)
        if event_uuid:
            run.refresh_ids.add(stix_id)
            wanted.setdefault(event_uuid, 0)
