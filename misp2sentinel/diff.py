"""Comparing an event's records with what the state records a workspace contains.

For each record: no live row means create, a live row with another content digest means update,
the same digest means unchanged. Every live indicator of the event that the records no longer
contain is revoked: the event was fetched whole, so its absence is positive evidence (deleted,
`to_ids` off, a warninglist hit, a TLP above the maximum, or the event left the selection).

A revoked id is never reused: when its attribute comes back, the next generation's id is sent.
`created` stays what was first sent; `modified` is the run time, kept strictly above the last
value sent for the id, because Sentinel keeps the newest version.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from misp2sentinel.mapping import Record
from misp2sentinel.mapping.ids import indicator_id
from misp2sentinel.mapping.lifetime import ms_to_stix, stix_to_ms
from misp2sentinel.state import LIVE, REVOKED, Outcome, Row, source_key

DIGEST_EXCLUDED = ("created", "modified", "valid_until")

CREATE = "created"
UPDATE = "updated"
REFRESH = "refreshed"
REVOKE = "revoked"
UNCHANGED = "unchanged"
REJECTED = "rejected"


def content_digest(stix: dict) -> bytes:
    """Return a stable 8-byte digest of an object's content, without its timestamps of sending."""
    content = {key: value for key, value in stix.items() if key not in DIGEST_EXCLUDED}
    return hashlib.blake2b(orjson.dumps(content, option=orjson.OPT_SORT_KEYS), digest_size=8).digest()


@dataclass(slots=True)
class Action:
    """One object to send to one workspace, and what the state records once Sentinel responds."""

    verb: str
    stix: dict
    outcome: Outcome
    event_uuid: str | None


def _latest_by_source(rows: dict[str, Row]) -> dict[bytes, Row]:
    latest: dict[bytes, Row] = {}
    for row in rows.values():
        known = latest.get(row.source_key)
        if known is None or row.generation > known.generation:
            latest[row.source_key] = row
    return latest


def plan_record(
    record: Record, row_lookup, latest: dict[bytes, Row], now_ms: int, refresh_ids: set[str] = frozenset(),
    retry_rejected: bool = False,
) -> tuple[str, Action | None]:
    """Decide what to do with one record; return (verb, action or None when unchanged).

    `row_lookup(stix_id)` returns the state row of an id, and `latest` maps source keys to the
    row of their newest generation. An unchanged record whose id is in `refresh_ids` is sent again
    with a new `modified` and `valid_until`, so that it stays inside Sentinel's analytics look-back.
    """
    key = source_key(record.source, record.part)
    newest = latest.get(key)
    generation = 0
    if newest is not None:
        generation = newest.generation + 1 if newest.status == REVOKED else newest.generation
    stix = dict(record.stix)
    stix["id"] = _current_id(record, latest)
    row = row_lookup(stix["id"])

    digest = content_digest(stix)
    unchanged = row is not None and row.status == LIVE and row.digest == digest
    if unchanged and stix["id"] not in refresh_ids:
        return UNCHANGED, None
    if row is not None and row.rejected_digest == digest and not retry_rejected:
        # Sentinel refused this very content REJECT_AFTER times with the same message.
        return REJECTED, None

    if unchanged:
        verb = REFRESH
    else:
        verb = UPDATE if row is not None and row.status == LIVE else CREATE
    if row is not None:
        stix["created"] = ms_to_stix(row.created)
        modified = max(now_ms, row.modified + 1)
    else:
        modified = now_ms
    stix["modified"] = ms_to_stix(modified)

    outcome = Outcome(
        stix_id=stix["id"],
        source_key=key,
        event_uuid=record.event_uuid,
        attribute_uuid=record.attribute_uuid,
        digest=digest,
        generation=generation,
        created=stix_to_ms(stix["created"]),
        modified=modified,
        valid_from=stix_to_ms(stix.get("valid_from") or stix["created"]),
        pattern=stix.get("pattern"),
        pattern_type=stix.get("pattern_type"),
        revoke=False,
        ok=False,
        message=None,
    )
    return verb, Action(verb, stix, outcome, record.event_uuid)


def revocation(row: Row, event_uuid: str | None, now_ms: int) -> Action:
    """Rebuild a revocation from the state: the same id and pattern with `revoked: true`."""
    modified = max(now_ms, row.modified + 1)
    until = max(now_ms, row.valid_from + 1)
    stix = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": row.stix_id,
        "created": ms_to_stix(row.created),
        "modified": ms_to_stix(modified),
        "pattern": row.pattern,
        "pattern_type": row.pattern_type,
        "valid_from": ms_to_stix(row.valid_from),
        "valid_until": ms_to_stix(until),
        "revoked": True,
    }
    if row.pattern_type == "stix":
        stix["pattern_version"] = "2.1"
    outcome = Outcome(
        stix_id=row.stix_id,
        source_key=row.source_key,
        event_uuid=event_uuid,
        attribute_uuid=None,
        digest=row.digest,
        generation=row.generation,
        created=row.created,
        modified=modified,
        valid_from=row.valid_from,
        pattern=row.pattern,
        pattern_type=row.pattern_type,
        revoke=True,
        ok=False,
        message=None,
    )
    return Action(REVOKE, stix, outcome, event_uuid)


def plan_event(
    event_uuid: str | None,
    records: list[Record],
    rows: dict[str, Row],
    identity_row,
    now_ms: int,
    *,
    hold_changes: bool,
    refresh_ids: set[str] = frozenset(),
    retry_rejected: bool = False,
) -> tuple[list[Action], dict[str, int]]:
    """Plan one event for one workspace: the actions to send and the count of each verb.

    `rows` are the state rows of the event; `identity_row(stix_id)` looks up identities, which
    belong to no event. With `hold_changes` (an unpublished event under the published-only policy)
    creates and updates wait, counted as `unpublished`, while revocations still go out.
    """
    latest = _latest_by_source(rows)
    counts: dict[str, int] = {}
    actions: list[Action] = []
    wanted: set[str] = set()

    def lookup(stix_id: str) -> Row | None:
        # Identities and attack patterns belong to no event; indicators and relationships do.
        if stix_id.startswith(("identity--", "attack-pattern--")):
            return identity_row(stix_id)
        return rows.get(stix_id)

    for record in records:
        verb, action = plan_record(record, lookup, latest, now_ms, refresh_ids, retry_rejected)
        stix_id = action.stix["id"] if action else _current_id(record, latest)
        wanted.add(stix_id)
        if action is not None and hold_changes and verb != REFRESH:
            verb = "unpublished"
            action = None
        counts[verb] = counts.get(verb, 0) + 1
        if action is not None:
            actions.append(action)

    # TODO: relationships whose indicator is revoked stay live, and keep pointing at the revoked id
    # when the indicator returns under its next generation.
    for row in rows.values():
        if row.status == LIVE and row.stix_id not in wanted and row.stix_id.startswith("indicator--"):
            actions.append(revocation(row, event_uuid, now_ms))
            counts[REVOKE] = counts.get(REVOKE, 0) + 1
    return actions, counts


def current_stix(record: Record, rows: dict[str, Row]) -> dict:
    """Return the record's object under the id of its current generation in the state."""
    current = _current_id(record, _latest_by_source(rows))
    if current == record.id:
        return record.stix
    return {**record.stix, "id": current}


def _current_id(record: Record, latest: dict[bytes, Row]) -> str:
    newest = latest.get(source_key(record.source, record.part))
    if newest is None:
        return record.id
    generation = newest.generation + 1 if newest.status == REVOKED else newest.generation
    if generation == 0:
        return record.id
    return indicator_id(record.source, record.part, generation, first=record.first, valid_uuid=record.valid_uuid)
