"""One sync run: pull what changed, map it, compare with the state, push, record.

Data flows one way. Events are listed and fetched from the source, mapped once, and offered to each
workspace, which selects its records, plans creates, updates and revocations against the state,
and sends them in batches. The state changes only after Sentinel answered a batch, in one
transaction per batch, so a crash at any point loses nothing: the next run sends again whatever
was not recorded, under the same ids.

A workspace's cursor (per source and selection) moves to the highest `Event.timestamp` among the
events this run committed, capped at the time of listing so that an event edited during the run
is listed again next time. Events whose records failed are kept in a pending list and fetched
again by uuid on the next run. A workspace that failed as a whole keeps its cursor; the others
advance. A dry run reads the state but writes nothing and sends nothing.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

import orjson

from misp2sentinel.clock import Clock
from misp2sentinel.config import Config, Workspace
from misp2sentinel.diff import Action, plan_event
from misp2sentinel.errors import ConfigError, Interrupted, Misp2SentinelError, MispError, UsageError, WorkspaceError
from misp2sentinel.export import BundleWriter
from misp2sentinel.mapping.lifetime import EPOCH
from misp2sentinel.pipeline import WorkspaceFilter, map_records
from misp2sentinel.report import RunReport
from misp2sentinel.state import StateStore

log = logging.getLogger(__name__)


def epoch_ms(moment: datetime) -> int:
    return int((moment - EPOCH).total_seconds() * 1000)


def selection_key(config: Config, workspace: Workspace) -> bytes:
    """Identify what a cursor covers: a changed selection or global filter starts a new cursor."""
    parts = {
        "selection": workspace.selection.model_dump(mode="json"),
        "filter": config.misp.filter.model_dump(mode="json") if config.misp else None,
        "published_only": config.misp.published_only if config.misp else None,
    }
    return hashlib.blake2b(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


class WorkspaceRun:
    """What one workspace does during a run: select, plan, batch, send and record."""

    def __init__(self, workspace: Workspace, config: Config, store: StateStore, report: RunReport,
                 uploader, writer: BundleWriter | None, now_ms: int, *, hold_unpublished: bool) -> None:
        self.workspace = workspace
        self.name = workspace.name
        self.store = store
        self.report = report
        self.uploader = uploader
        self.writer = writer
        self.now_ms = now_ms
        self.batch_size = config.sentinel.batch_size
        self.hold_unpublished = hold_unpublished
        self.filter = WorkspaceFilter(config.mapping, workspace.selection, report, label=f"workspace {workspace.name}")
        self.batch: list[Action] = []
        self.failed: str | None = None
        self.processed: set[str] = set()
        self.failed_events: set[str] = set()
        self.highest_timestamp: int | None = None

    def process(self, event: dict, records: list) -> None:
        if self.failed:
            return
        event_uuid = event.get("uuid")
        selected = list(self.filter.records(event, records))
        rows = self.store.rows_for_event(self.name, event_uuid) if event_uuid else {}
        hold = self.hold_unpublished and not event.get("published")
        actions, counts = plan_event(
            event_uuid, selected, rows, lambda stix_id: self.store.row(self.name, stix_id), self.now_ms,
            hold_changes=hold,
        )
        for verb in ("unchanged", "unpublished"):
            if counts.get(verb):
                self.report.count(verb, counts[verb])
        if event_uuid:
            self.processed.add(event_uuid)
        if event.get("timestamp") is not None:
            self.highest_timestamp = max(self.highest_timestamp or 0, event["timestamp"])
        for action in actions:
            self.batch.append(action)
            if len(self.batch) >= self.batch_size:
                self.flush()
                if self.failed:
                    return

    def flush(self) -> None:
        if not self.batch or self.failed:
            self.batch = []
            return
        batch, self.batch = self.batch, []
        objects = [action.stix for action in batch]
        if self.uploader is None:
            for action in batch:
                self.report.count(action.verb)
                if self.writer is not None:
                    self.writer.write(action.stix)
            return
        try:
            results = self.uploader.upload(objects)
        except WorkspaceError as error:
            self.failed = str(error)
            self.report.fail("workspace", str(error))
            return
        outcomes = []
        for action, result in zip(batch, results):
            outcome = action.outcome
            outcome.ok = result.ok
            outcome.message = result.message
            outcomes.append(outcome)
            if result.ok:
                self.report.count(action.verb)
            else:
                self.report.fail("record", f"workspace {self.name}: {action.stix['id']} ({action.verb}) failed: {result.message}")
                if action.event_uuid:
                    self.failed_events.add(action.event_uuid)
        self.store.record_outcomes(self.name, outcomes, self.now_ms)

    def finish(self, source_name: str | None, selection: bytes, listed_until: int | None, previously_pending: set[str]) -> None:
        """Flush the last batch, then record pending events and move the cursor."""
        self.flush()
        if self.failed or self.uploader is None:
            return
        for event_uuid in self.failed_events:
            self.store.set_pending(self.name, event_uuid, True, self.now_ms)
        for event_uuid in (previously_pending & self.processed) - self.failed_events:
            self.store.set_pending(self.name, event_uuid, False, self.now_ms)
        if source_name is None or listed_until is None or self.highest_timestamp is None:
            return
        current = self.store.cursor(self.name, source_name, selection) or 0
        value = max(current, min(self.highest_timestamp, listed_until))
        self.store.set_cursor(self.name, source_name, selection, value)


def run_sync(config: Config, clock: Clock, *, event_ref: str | None = None, dry_run: bool = False,
             output: str | None = None, workspace_name: str | None = None,
             max_duration: float | None = None) -> RunReport:
    report = RunReport("sync --dry-run" if dry_run else "sync")
    if config.state is None:
        raise ConfigError(config.source_name, ["state.path: required for sync (where the bridge remembers what it sent)"])
    workspaces = [config.workspace(workspace_name)] if workspace_name else config.active_workspaces
    if not workspaces:
        raise ConfigError(config.source_name, ["workspaces: sync needs at least one workspace that is not retired"])
    if config.misp is None and not config.sources:
        raise ConfigError(config.source_name, ["misp: sync needs a MISP server, or local files under 'sources:'"])

    if event_ref is not None and not _is_event_reference(event_ref):
        raise UsageError(
            f"--event {event_ref!r} is not a MISP event id or uuid",
            hint="give the event's numeric id or its uuid, e.g. --event 1234",
        )
    now = clock.now()
    now_ms = epoch_ms(now)
    try:
        with _stop_on_signals() as stop:
            stop.deadline = clock.monotonic() + max_duration if max_duration else None
            _run_with_state(config, clock, report, workspaces, now, now_ms, event_ref, dry_run, output, stop)
    except Misp2SentinelError as error:
        error.report = report
        raise
    return report


@contextmanager
def _stop_on_signals():
    """Turn SIGTERM and SIGINT into a request to stop after the current batch is recorded."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}

    def request_stop(number, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        log.warning("%s received: stopping after the current batch", signal.Signals(number).name)
        stop.set()

    for number in previous:
        signal.signal(number, request_stop)
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _run_with_state(config, clock, report, workspaces, now, now_ms, event_ref, dry_run, output, stop) -> None:
    with StateStore(config.state.path, readonly=dry_run) as store:
        for workspace in workspaces:
            store.bind_workspace(workspace.name, workspace.workspace_id, workspace.source_system)
        run_id = None if dry_run else store.start_run(report.command, now_ms)
        writer = BundleWriter(output, now) if output else None
        try:
            if writer:
                writer.__enter__()
            _run(config, clock, store, report, workspaces, now, now_ms, event_ref, dry_run, writer, stop)
        except BaseException as error:
            if writer:
                writer.__exit__(type(error), error, None)
            if run_id is not None:
                store.finish_run(run_id, epoch_ms(clock.now()), "error", str(error)[:500])
            raise
        if writer:
            writer.__exit__(None, None, None)
        if run_id is not None:
            store.finish_run(run_id, epoch_ms(clock.now()), "failed" if report.failed else "ok", report.summary())


def _run(config, clock, store, report, workspaces, now, now_ms, event_ref, dry_run, writer, stop) -> None:
    source = None
    if config.misp is not None:
        from misp2sentinel.sources.misp import MispSource

        source = MispSource(config.misp, clock)
        settings = config.mapping
        if settings.misp_url is None:
            settings = settings.model_copy(update={"misp_url": config.misp.url})
        config = config.model_copy(update={"mapping": settings})

    uploaders = {} if dry_run else _uploaders(config, workspaces, clock)
    hold = bool(config.misp and config.misp.published_only)
    runs = [
        WorkspaceRun(w, config, store, report, uploaders.get(w.name), writer, now_ms, hold_unpublished=hold)
        for w in workspaces
    ]

    listed_until = None
    pending: dict[str, set[str]] = {w.name: set(store.pending_events(w.name)) for w in workspaces} if store.exists else {w.name: set() for w in workspaces}
    source_name = source.name if source else None
    selections = {w.name: selection_key(config, w) for w in workspaces}

    if event_ref is not None:
        events = _one_event(source, config, report, event_ref)
    elif source is not None:
        listed_until = int(now.timestamp())
        cursors = [store.cursor(w.name, source_name, selections[w.name]) if store.exists else None for w in workspaces]
        lookback_start = listed_until - config.misp.lookback_days * 86400
        starts = [c - config.misp.overlap_seconds if c is not None else lookback_start for c in cursors]
        # PyMISP drops a 0 bound and MISP reads the missing bound as "now", so the lowest bound is 1.
        since = max(1, min(starts))
        listed = source.list_changed(since, listed_until)
        order = sorted(listed, key=lambda u: (listed[u], u))
        extra = sorted(set().union(*pending.values()) - set(listed))
        log.info("listed %d changed event(s) since %d and %d pending event(s)", len(order), since, len(extra))
        events = source.fetch(order + extra)
    else:
        from misp2sentinel.sources.files import read_sources

        events = read_sources(list(config.sources), report)

    for event in events:
        if stop.is_set():
            _stop_early(runs, selections, pending, "stopped by a signal")
        records = map_records(event, config.mapping, now, report)
        for run in runs:
            run.process(event, records)
        # The limit is checked after an event, so every run makes progress however short the limit.
        if stop.deadline is not None and clock.monotonic() >= stop.deadline:
            _stop_early(runs, selections, pending, "the --max-duration time limit was reached")

    for run in runs:
        if event_ref is not None:
            run.flush()
            run.finish(None, selections[run.name], None, pending[run.name])
        else:
            run.finish(source_name, selections[run.name], listed_until, pending[run.name])


def _stop_early(runs, selections, pending, cause: str) -> None:
    """Record what was sent, keep the cursors, and raise so the next run goes on from here."""
    for run in runs:
        run.finish(None, selections[run.name], None, pending[run.name])
    raise Interrupted(
        f"{cause} before the run was complete; what was sent is recorded",
        hint="the next run goes on from the same cursor",
    )


def _is_event_reference(reference: str) -> bool:
    from misp2sentinel.mapping.ids import canonical_uuid

    return reference.isdigit() or canonical_uuid(reference) is not None


def _one_event(source, config: Config, report: RunReport, reference: str) -> Iterator[dict]:
    if source is not None:
        event = source.fetch_one(reference)
        if event is None:
            raise MispError(f"MISP has no event {reference!r} visible to this API key", hint="check the event id or uuid")
        yield event
        return
    from misp2sentinel.sources.files import read_sources

    found = False
    for event in read_sources(list(config.sources), report):
        if reference in (event.get("uuid"), event.get("id")):
            found = True
            yield event
    if not found:
        raise UsageError(f"no event {reference!r} in the configured sources")


def _uploaders(config: Config, workspaces: Iterable[Workspace], clock: Clock) -> dict:
    """Build one client per workspace; workspaces that share an identity share its token and limiter."""
    from misp2sentinel.sentinel.auth import TokenProviders, identity_key, make_session
    from misp2sentinel.sentinel.client import SentinelClient
    from misp2sentinel.sentinel.pacing import RateLimiter

    providers = TokenProviders(timeout_seconds=config.sentinel.timeout_seconds)
    limiters: dict[tuple, RateLimiter] = {}
    clients = {}
    for workspace in workspaces:
        limiter = limiters.get(identity_key(workspace))
        if limiter is None:
            limiter = limiters[identity_key(workspace)] = RateLimiter(config.sentinel.requests_per_minute, clock)
        session = make_session(workspace.ca_bundle, workspace.verify_tls)
        clients[workspace.name] = SentinelClient(
            workspace, config.sentinel, session, providers.provider_for(workspace), limiter, clock, api=workspace.api
        )
    return clients
