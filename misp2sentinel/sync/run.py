"""Driving one sync run.

Data flows one way. Events are listed and fetched from the source, mapped once, and offered to each
workspace, which selects its records, plans creates, updates, refreshes and revocations against
the state, and sends them in batches. The state changes only after Sentinel acknowledged a batch, in
one transaction per batch, so a crash at any point loses nothing: the next run sends again
whatever was not recorded, under the same ids.

A workspace's cursor (per source and selection) moves to the highest `Event.timestamp` among the
events this run processed, capped at the time of listing so that an event edited during the run
is listed again next time. Events whose records failed are kept in a pending list and fetched
again by uuid on the next run. A workspace that failed as a whole keeps its cursor; the others
advance. A dry run reads the state but writes nothing and sends nothing.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from misp2sentinel.clock import Clock
from misp2sentinel.config import Config, Workspace
from misp2sentinel.errors import ConfigError, Interrupted, Misp2SentinelError, MispError, UsageError
from misp2sentinel.export import BundleWriter
from misp2sentinel.mapping.ids import canonical_uuid
from misp2sentinel.mapping.lifetime import EPOCH
from misp2sentinel.pipeline import map_records
from misp2sentinel.report import RunReport
from misp2sentinel.state import StateStore
from misp2sentinel.sync.plan import plan_fetch, selection_key
from misp2sentinel.sync.sender import SenderGroup
from misp2sentinel.sync.workspace import WorkspaceRun
from misp2sentinel.validation import PatternValidator

log = logging.getLogger(__name__)


def epoch_ms(moment: datetime) -> int:
    return int((moment - EPOCH).total_seconds() * 1000)


@dataclass(frozen=True)
class SyncOptions:
    event_ref: str | None = None
    dry_run: bool = False
    output: str | None = None
    full: bool = False
    force: bool = False
    retry_rejected: bool = False
    validate: bool = False


def run_sync(config: Config, clock: Clock, *, event_ref: str | None = None, dry_run: bool = False,
             output: str | None = None, workspace_name: str | None = None,
             max_duration: float | None = None, full: bool = False, force: bool = False,
             retry_rejected: bool = False, validate: bool = False) -> RunReport:
    """Run one sync and return its report; raise a `Misp2SentinelError` carrying the report on failure."""
    report = RunReport("sync --dry-run" if dry_run else "sync")
    if config.state is None:
        raise ConfigError(config.source_name, ["state.path: required for sync (where the bridge remembers what it sent)"])
    workspaces = [config.workspace(workspace_name)] if workspace_name else config.active_workspaces
    if not workspaces:
        raise ConfigError(config.source_name, ["workspaces: sync needs at least one workspace that is not retired"])
    if config.misp is None and not config.sources:
        raise ConfigError(config.source_name, ["misp: sync needs a MISP server, or local files under 'sources:'"])
    if event_ref is not None and not (event_ref.isdigit() or canonical_uuid(event_ref)):
        raise UsageError(
            f"--event {event_ref!r} is not a MISP event id or uuid",
            hint="give the event's numeric id or its uuid, e.g. --event 1234",
        )
    if full and event_ref is not None:
        raise UsageError("--full and --event exclude each other", hint="--full re-evaluates every event; --event one")

    options = SyncOptions(event_ref, dry_run, output, full, force, retry_rejected, validate)
    now = clock.now()
    try:
        with _stop_on_signals() as stop:
            stop.deadline = clock.monotonic() + max_duration if max_duration else None
            _run_with_state(config, clock, report, workspaces, now, options, stop)
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


def _run_with_state(config: Config, clock: Clock, report: RunReport, workspaces: list[Workspace],
                    now: datetime, options: SyncOptions, stop) -> None:
    now_ms = epoch_ms(now)
    with StateStore(config.state.path, readonly=options.dry_run) as store:
        for workspace in workspaces:
            store.bind_workspace(workspace.name, workspace.workspace_id, workspace.source_system)
        run_id = None if options.dry_run else store.start_run(report.command, now_ms)
        started = clock.monotonic()

        def finished_ms() -> int:
            # Measured on the monotonic clock: MISP2SENTINEL_NOW fixes the wall-clock run time.
            return now_ms + int((clock.monotonic() - started) * 1000)

        writer = BundleWriter(options.output, now) if options.output else None
        try:
            if writer:
                writer.__enter__()
            _run(config, clock, store, report, workspaces, now, options, writer, stop)
        except BaseException as error:
            if writer:
                writer.__exit__(type(error), error, None)
            if run_id is not None:
                store.finish_run(run_id, finished_ms(), "error", str(error)[:500])
            raise
        if writer:
            writer.__exit__(None, None, None)
        if run_id is not None:
            store.finish_run(run_id, finished_ms(), "failed" if report.failed else "ok", report.summary())


def _run(config: Config, clock: Clock, store: StateStore, report: RunReport, workspaces: list[Workspace],
         now: datetime, options: SyncOptions, writer: BundleWriter | None, stop) -> None:
    now_ms = epoch_ms(now)
    source = None
    if config.misp is not None:
        from misp2sentinel.sources.misp import MispSource

        source = MispSource(config.misp, clock)
        if config.mapping.misp_url is None:
            config = config.model_copy(update={"mapping": config.mapping.model_copy(update={"misp_url": config.misp.url})})

    uploaders = {} if options.dry_run else _uploaders(config, workspaces, clock)
    hold = bool(config.misp and config.misp.published_only)
    runs = [
        WorkspaceRun(w, config, store, report, uploaders.get(w.name), writer, now_ms, hold_unpublished=hold,
                     force=options.force, retry_rejected=options.retry_rejected)
        for w in workspaces
    ]
    senders = SenderGroup()
    for run in runs:
        run.stop = stop
        run.send_in_background(senders)
    try:
        _run_workspaces(config, clock, store, report, runs, source, now, options, stop)
    finally:
        # Reached with batches still queued only when the run raised: they are not sent, and the
        # next run plans them again.
        for run in runs:
            run.close()


def _run_workspaces(config: Config, clock: Clock, store: StateStore, report: RunReport, runs: list[WorkspaceRun],
                    source, now: datetime, options: SyncOptions, stop) -> None:
    workspaces = [run.workspace for run in runs]
    now_ms = epoch_ms(now)
    pending = {w.name: set(store.pending_events(w.name)) if store.exists else set() for w in workspaces}
    selections = {w.name: selection_key(config, w) for w in workspaces}

    plan = None
    if options.event_ref is not None:
        events = _one_event(source, config, report, options.event_ref)
    elif source is not None:
        plan = plan_fetch(config, store, source, runs, selections, pending, now_ms, full=options.full,
                          retry_rejected=options.retry_rejected)
        log.info("fetching %d event(s)", len(plan.uuids))

        def page_failed(uuids: list[str], error: Exception) -> None:
            # The other pages go on; these events are fetched again by the next run, and the cursor
            # stays below them so that it never passes what was not processed.
            report.fail("page", f"fetching {len(uuids)} event(s) from MISP failed, they are retried next run: {error}")
            lowest = min(plan.timestamps.get(event_uuid, 0) for event_uuid in uuids)
            plan.listed_until = min(plan.listed_until, lowest - 1)
            for run in runs:
                run.failed_events.update(uuids)
                run.unfetched.update(uuids)

        events = source.fetch(plan.uuids, on_error=page_failed)
    else:
        from misp2sentinel.sources.files import read_sources

        events = read_sources(list(config.sources), report)

    validator = PatternValidator() if options.validate else None
    fetched: set[str] = set()
    for event in events:
        if stop.is_set():
            _stop_early(runs, selections, pending, "stopped by a signal")
        fetched.add(event.get("uuid"))
        records = map_records(event, config.mapping, now, report, validator)
        for run in runs:
            run.process(event, records)
        # The limit is checked after an event, so every run makes progress however short the limit.
        if stop.deadline is not None and clock.monotonic() >= stop.deadline:
            _stop_early(runs, selections, pending, "the --max-duration time limit was reached")

    if plan is not None:
        # MISP leaves out of a fetch with deleted attributes an event that has no attribute row at
        # all, so a listed event missing from the fetch has lost every attribute.
        unfetched = set().union(*(run.unfetched for run in runs))
        for event_uuid in (set(plan.uuids) & plan.listed) - fetched - unfetched:
            for run in runs:
                run.revoke_event(event_uuid, gone=False)

    # Every workspace's last batch and revocations are queued before the main thread waits for
    # any of them, so the workspaces' senders keep working at the same time.
    for run in runs:
        run.flush()
    for run in runs:
        run.send_revocations()
    for run in runs:
        if plan is None:
            run.finish(None, selections[run.name], None, pending[run.name])
        else:
            run.finish(source.name, selections[run.name], plan.listed_until, pending[run.name], plan.swept_at)
    if any(run.dropped for run in runs):
        # A signal after the last event still stops batches from starting.
        raise _interrupted("stopped by a signal")
    if options.dry_run:
        _estimate(config, report)


def _estimate(config: Config, report: RunReport) -> None:
    """Add to the dry run's summary what its uploads would cost at the configured batch size and rate."""
    objects = sum(report.outcomes.get(verb, 0) for verb in ("created", "updated", "refreshed", "revoked"))
    requests = math.ceil(objects / config.sentinel.batch_size)
    minutes = requests / config.sentinel.requests_per_minute
    report.estimate = (
        f"a real run would send {objects} object(s) in {requests} request(s), about {minutes:.1f} minute(s) "
        f"at {config.sentinel.requests_per_minute} requests per minute"
    )


def _stop_early(runs: list[WorkspaceRun], selections, pending, cause: str) -> None:
    """Record what was sent, keep the cursors, and raise so the next run goes on from here."""
    # Every queued batch is cancelled before the first wait for a batch in flight.
    for run in runs:
        run.abandon()
    for run in runs:
        run.finish(None, selections[run.name], None, pending[run.name])
    raise _interrupted(cause)


def _interrupted(cause: str) -> Interrupted:
    """Return the error of a run that stopped before it was complete, with the cursors kept."""
    return Interrupted(
        f"{cause} before the run was complete; what was sent is recorded",
        hint="the next run goes on from the same cursor",
    )


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
    """Build the uploaders of each workspace; workspaces that share an identity share its token and limiter.

    A workspace gets `sentinel.parallel_requests` clients, one per sender thread. Each paces its
    requests through its own `LimiterUser` of the shared limiter, so that all the threads of the
    workspaces of one identity together stay under its allowance.
    """
    from misp2sentinel.sentinel.auth import TokenProviders, identity_key, make_session
    from misp2sentinel.sentinel.client import SentinelClient
    from misp2sentinel.sentinel.pacing import RateLimiter

    providers = TokenProviders(timeout_seconds=config.sentinel.timeout_seconds)
    limiters: dict[tuple, RateLimiter] = {}
    pools = {}
    for workspace in workspaces:
        limiter = limiters.get(identity_key(workspace))
        if limiter is None:
            limiter = limiters[identity_key(workspace)] = RateLimiter(config.sentinel.requests_per_minute, clock)
        uploaders = []
        for _ in range(config.sentinel.parallel_requests):
            session = make_session(workspace.ca_bundle, workspace.verify_tls)
            user = limiter.user()
            client = SentinelClient(
                workspace, config.sentinel, session, providers.provider_for(workspace), user, clock, api=workspace.api
            )
            uploaders.append(_PacedUploader(client, user))
        pools[workspace.name] = _UploaderPool(uploaders)
    return pools


class _PacedUploader:
    """A Sentinel client whose last request stops holding a rate-limit slot open when `upload` returns."""

    def __init__(self, client, user) -> None:
        self.client = client
        self._user = user

    def upload(self, objects: list[dict]) -> list:
        try:
            return self.client.upload(objects)
        finally:
            self._user.release()


class _UploaderPool:
    """The uploaders of one workspace: `uploads` for the sender's threads, `upload` for a caller
    that sends on its own thread."""

    def __init__(self, uploaders: list[_PacedUploader]) -> None:
        self.uploads = [uploader.upload for uploader in uploaders]
        self.upload = self.uploads[0]
