"""One workspace's part of a run: select, plan, batch, send and record.

Creates, updates and refreshes are sent in batches as events arrive, by a background sender in a
sync (see `sender.py`) and on the calling thread otherwise. Revocations wait until the end of the
run, where a guard holds them back when they would withdraw more than a configured share of the
workspace at once. A misconfigured MISP key that returns nothing looks exactly like
everything being deleted. Held revocations are reported, make the run exit 1 and are planned again
by the next run; `--force` lets them through.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import Future

from misp2sentinel.config import Config, Workspace
from misp2sentinel.diff import REVOKE, Action, plan_event, revocation
from misp2sentinel.errors import WorkspaceError
from misp2sentinel.export import BundleWriter
from misp2sentinel.pipeline import WorkspaceFilter
from misp2sentinel.report import RunReport
from misp2sentinel.state import LIVE, StateStore
from misp2sentinel.sync.sender import BatchSender, SenderGroup

log = logging.getLogger(__name__)


def tags_digest(tags: list[str]) -> bytes:
    """Return a digest of an event's tag names, to notice tag changes that move no timestamp."""
    text = "\n".join(sorted({tag.lower() for tag in tags}))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


class WorkspaceRun:
    """The plan, the batches and the outcomes of one workspace in one run."""

    def __init__(self, workspace: Workspace, config: Config, store: StateStore, report: RunReport,
                 uploader, writer: BundleWriter | None, now_ms: int, *, hold_unpublished: bool, force: bool,
                 retry_rejected: bool = False) -> None:
        self.workspace = workspace
        self.name = workspace.name
        self.store = store
        self.report = report
        self.uploader = uploader
        self.writer = writer
        self.now_ms = now_ms
        self.batch_size = config.sentinel.batch_size
        self.lifecycle = config.lifecycle
        self.hold_unpublished = hold_unpublished
        self.force = force
        self.retry_rejected = retry_rejected
        # The legacy upload API takes indicators only.
        self.indicators_only = workspace.api == "legacy"
        self.filter = WorkspaceFilter(config.mapping, workspace.selection, report, label=f"workspace {workspace.name}")
        self.batch: list[Action] = []
        self.revocations: list[Action] = []
        self.failed: str | None = None
        # Set when a stop left a planned batch unsent: the run's evaluation is then not recorded.
        self.dropped = False
        self.processed: set[str] = set()
        self.failed_events: set[str] = set()
        # Events whose fetch failed: they are neither processed nor evidence of anything.
        self.unfetched: set[str] = set()
        self.gone_events: set[str] = set()
        self.evaluated: dict[str, tuple[int | None, bytes, bool]] = {}
        self.refresh_ids: set[str] = set()
        self.highest_timestamp: int | None = None
        self.live_at_start = store.live_count(self.name) if store.exists else 0
        # Set by a signal or the time limit: no further batch is sent once it is set.
        self.stop = None
        # Uploads on a background thread when set; see `send_in_background`.
        self.sender: BatchSender[list[Action]] | None = None

    def send_in_background(self, group: SenderGroup | None = None) -> None:
        """Upload this workspace's batches from a background thread from now on.

        The main thread then waits only when two batches are already queued or in flight. It
        still records every outcome itself, when it plans the next event or batch, or when
        `drain` or `finish` waits for the uploads. `group` contains the senders of the run's other
        workspaces, whose finished uploads are recorded during such a wait too.
        """
        if self.uploader is not None and self.sender is None:
            uploads = getattr(self.uploader, "uploads", None) or self.uploader.upload
            self.sender = BatchSender(self.name, uploads, self._record_finished, stop=self.stop, group=group)

    # Planning

    def process(self, event: dict, records: list) -> None:
        """Plan one fetched event: send its creates, updates and refreshes, keep its revocations."""
        if self.sender is not None:
            # Recording a finished upload lets the sender start the next batch.
            self.sender.collect()
        if self.failed:
            return
        event_uuid = event.get("uuid")
        selected = list(self.filter.records(event, records))
        if self.indicators_only:
            selected = [record for record in selected if record.stix["type"] == "indicator"]
        rows = self.store.rows_for_event(self.name, event_uuid) if event_uuid else {}
        hold = self.hold_unpublished and not event.get("published")
        actions, counts = plan_event(
            event_uuid, selected, rows, lambda stix_id: self.store.row(self.name, stix_id), self.now_ms,
            hold_changes=hold, refresh_ids=self.refresh_ids, retry_rejected=self.retry_rejected,
        )
        for verb in ("unchanged", "unpublished", "rejected"):
            if counts.get(verb):
                self.report.count(verb, counts[verb], workspace=self.name)
        if event_uuid:
            self.processed.add(event_uuid)
            is_selected = self.filter.event_reason(event) is None
            self.evaluated[event_uuid] = (event.get("timestamp"), tags_digest(event["tags"]), is_selected)
        if event.get("timestamp") is not None:
            self.highest_timestamp = max(self.highest_timestamp or 0, event["timestamp"])
        for action in actions:
            if action.verb == REVOKE:
                self.revocations.append(action)
                continue
            self.batch.append(action)
            if len(self.batch) >= self.batch_size:
                if self.stop is not None and self.stop.is_set():
                    return
                self.flush()
                if self.failed:
                    return

    def revoke_event(self, event_uuid: str, *, gone: bool = True) -> None:
        """Plan the revocation of every live indicator of an event that MISP no longer lists
        (`gone`), or that it lists but returns without any attribute."""
        rows = self.store.rows_for_event(self.name, event_uuid) if self.store.exists else {}
        for row in rows.values():
            if row.status == LIVE and row.stix_id.startswith("indicator--"):
                self.revocations.append(revocation(row, event_uuid, self.now_ms))
        if gone:
            self.gone_events.add(event_uuid)

    def note_listed(self, event_uuid: str, timestamp: int | None, digest: bytes) -> None:
        """Remember an event the sweep listed but the run did not fetch, so a later tag change shows."""
        self.evaluated.setdefault(event_uuid, (timestamp, digest, False))

    # Sending

    def flush(self) -> None:
        """Send the current batch: queue it for the background sender, or upload it and record the outcome."""
        if not self.batch or self.failed:
            self.batch = []
            return
        batch, self.batch = self.batch, []
        if self.uploader is None:
            for action in batch:
                self.report.count(action.verb, workspace=self.name)
                if self.writer is not None:
                    self.writer.write(action.stix)
            return
        if self.sender is not None:
            self.sender.collect()
            if self.failed:
                return
            if self._stopped():
                self.dropped = True
                return
            self.sender.submit([action.stix for action in batch], batch)
            return
        try:
            results = self.uploader.upload([action.stix for action in batch])
        except WorkspaceError as error:
            self._fail(error)
            return
        self._record(batch, results)

    def drain(self) -> None:
        """Wait for every batch queued for the background sender and record the outcomes."""
        if self.sender is not None:
            self.sender.drain()

    def close(self) -> None:
        """Cancel the batches that have not started and let the background sender end."""
        if self.sender is not None:
            self.sender.close()

    def _stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _record_finished(self, batch: list[Action], future: Future) -> None:
        """Record one upload of the background sender, called on the main thread."""
        if future.cancelled():
            # Never sent: the state keeps the previous content, so the next run plans it again.
            # Batches cancelled after the workspace failed are accounted for by that failure.
            if not self.failed:
                self.dropped = True
            return
        error = future.exception()
        if isinstance(error, WorkspaceError):
            self._fail(error)
        elif error is not None:
            raise error
        else:
            self._record(batch, future.result())

    def _fail(self, error: WorkspaceError) -> None:
        if self.failed:
            return
        self.failed = str(error)
        self.report.fail("workspace", str(error), workspace=self.name)

    def _record(self, batch: list[Action], results: list) -> None:
        """Count the outcome of each object of an acknowledged batch and record them in one transaction."""
        outcomes = []
        for action, result in zip(batch, results):
            outcome = action.outcome
            outcome.ok = result.ok
            outcome.message = result.message
            outcome.validation = result.validation
            outcomes.append(outcome)
            if result.ok:
                self.report.count(action.verb, workspace=self.name)
            else:
                self.report.fail(
                    "record", f"workspace {self.name}: {action.stix['id']} ({action.verb}) failed: {result.message}",
                    workspace=self.name,
                )
                if action.event_uuid:
                    self.failed_events.add(action.event_uuid)
        self.store.record_outcomes(self.name, outcomes, self.now_ms)

    def _guard_blocks(self) -> bool:
        count = len(self.revocations)
        share = self.lifecycle.guard_share * self.live_at_start
        if self.force or count <= self.lifecycle.guard_min or count <= share:
            return False
        self.report.fail(
            "revocation_guard", workspace=self.name, message=
            f"workspace {self.name}: {count} revocations held back, more than {self.lifecycle.guard_share:.0%} of "
            f"its {self.live_at_start} live indicators and more than {self.lifecycle.guard_min}; if MISP really "
            "withdrew them, run again with --force (a MISP key that sees nothing looks the same)",
        )
        return True

    def send_revocations(self) -> None:
        """Send the run's revocations in batches, unless the guard holds them back."""
        if self.sender is not None:
            # Uploads that already failed the workspace leave nothing to guard.
            self.sender.collect()
        if self.failed or not self.revocations:
            return
        if self._guard_blocks():
            self.failed_events.update(a.event_uuid for a in self.revocations if a.event_uuid not in self.gone_events)
            self.gone_events.clear()
            self.revocations = []
            return
        revocations, self.revocations = self.revocations, []
        for start in range(0, len(revocations), self.batch_size):
            self.batch = revocations[start:start + self.batch_size]
            self.flush()

    def abandon(self) -> None:
        """Drop what is planned but not sent, when the run stops early.

        The events evaluated in this run are forgotten too, so the next run, which starts from the
        same cursor, fetches and plans them again.
        """
        self.batch = []
        self.revocations = []
        self.gone_events.clear()
        self.evaluated.clear()
        self.processed.clear()
        if self.sender is not None:
            cancelled = self.sender.cancel_queued()
            if cancelled:
                log.info("workspace %s: %d queued batch(es) not sent; the next run sends them", self.name, cancelled)

    # Recording

    def finish(self, source_name: str | None, selection: bytes, listed_until: int | None,
               previously_pending: set[str], swept_at: int | None = None) -> None:
        """Send what is left and wait for it, then record evaluated and pending events, the cursor
        and the sweep time."""
        self.flush()
        self.send_revocations()
        self.drain()
        self.close()
        if self.dropped:
            # A stop cancelled planned batches: as after `abandon`, the cursor stays and the events
            # evaluated in this run are planned again next run, which then sends what was left.
            self.abandon()
            source_name = listed_until = None
        if self.failed or self.uploader is None:
            return
        store = self.store
        if self.evaluated:
            store.record_events(self.name, [(u, *values) for u, values in self.evaluated.items()])
        revoked_gone = self.gone_events - self.failed_events
        if revoked_gone:
            store.forget_events(self.name, revoked_gone)
        for event_uuid in self.failed_events:
            store.set_pending(self.name, event_uuid, True, self.now_ms)
        for event_uuid in (previously_pending & (self.processed | revoked_gone)) - self.failed_events:
            store.set_pending(self.name, event_uuid, False, self.now_ms)
        if source_name is None or listed_until is None:
            return
        if swept_at is not None:
            store.set_cursor(self.name, f"sweep|{source_name}", selection, swept_at)
        if self.highest_timestamp is not None:
            current = store.cursor(self.name, source_name, selection) or 0
            store.set_cursor(self.name, source_name, selection, max(current, min(self.highest_timestamp, listed_until)))
        elif store.cursor(self.name, source_name, selection) is None:
            # Nothing changed in the look-back: start the next run from the listing time.
            store.set_cursor(self.name, source_name, selection, listed_until)
