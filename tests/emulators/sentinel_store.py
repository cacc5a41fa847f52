"""Per-workspace state of the Sentinel emulator: stored objects and the request log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .stix_validation import parse_timestamp


@dataclass
class StoredObject:
    """The latest accepted version of one (sourcesystem, STIX id) in a workspace."""

    sourcesystem: str
    stix_id: str
    stix_object: dict[str, Any]
    api: str
    upload_count: int
    first_uploaded: float
    last_uploaded: float
    """Wall-clock Unix seconds of the first and the latest accepted upload (`TimeGenerated`)."""


@dataclass(frozen=True)
class RequestLogEntry:
    """One request and the emulator's response to it."""

    method: str
    path: str
    status: int
    """HTTP status, or 0 when the connection was reset without a response."""
    object_count: int | None
    client_id: str | None
    workspace_id: str | None
    api: str | None
    detail: str | None = None
    """Why the request failed, for test diagnostics (e.g. the token check that failed)."""
    received_at: float | None = None
    """When the emulator took the request, in seconds of its rate-limit clock."""


@dataclass(frozen=True)
class UploadRecord:
    """One object of one upload request that reached validation, accepted or not."""

    sequence: int
    """Position among every object the emulator has validated, from 1; later uploads have higher numbers."""
    sourcesystem: str
    stix_id: str
    accepted: bool
    messages: tuple[str, ...] = ()
    """The per-record error messages when the object was not accepted."""


@dataclass
class Workspace:
    """A Log Analytics workspace: who may upload, and the objects it holds."""

    workspace_id: str
    allowed_client_ids: set[str]
    objects: dict[tuple[str, str], StoredObject] = field(default_factory=dict)
    """Current version per (sourcesystem, STIX id), as Sentinel de-duplicates."""
    unrevocations: list[tuple[str, str]] = field(default_factory=list)
    uploads: list[UploadRecord] = field(default_factory=list)
    """Every object of every upload that reached validation, in arrival order."""

    def is_unrevoke(self, sourcesystem: str, stix_object: dict[str, Any]) -> bool:
        """Return whether storing `stix_object` would restore a revoked object."""
        stored = self.objects.get((sourcesystem, stix_object["id"]))
        return stored is not None and stored.stix_object.get("revoked") is True and stix_object.get("revoked") is not True

    def store(self, sourcesystem: str, stix_object: dict[str, Any], api_name: str, now: float, *, ignore_older_modified: bool) -> None:
        """Record an accepted upload; the object replaces the stored version.

        With `ignore_older_modified`, an object whose `modified` is older than the stored
        one is counted as uploaded but does not replace it.
        """
        key = (sourcesystem, stix_object["id"])
        stored = self.objects.get(key)
        if stored is None:
            self.objects[key] = StoredObject(sourcesystem, stix_object["id"], stix_object, api_name, 1, now, now)
            return
        stored.upload_count += 1
        stored.last_uploaded = now
        if ignore_older_modified:
            new_modified = parse_timestamp(stix_object.get("modified"))
            old_modified = parse_timestamp(stored.stix_object.get("modified"))
            if new_modified is not None and old_modified is not None and new_modified < old_modified:
                return
        stored.stix_object = stix_object
        stored.api = api_name
