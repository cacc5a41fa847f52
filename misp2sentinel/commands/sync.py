"""The `sync` command around the sync itself: warnings about files and TLS, the run report file,
the Prometheus metrics and the per-workspace result lines.

A dry run writes neither file, because it changes nothing. Any other run writes both, also when it
stops with an error, so that monitoring sees the failure; `--event` runs never count as a
workspace's last success, because they leave the cursor where it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from misp2sentinel.clock import Clock
from misp2sentinel.commands.run_report import RunTimer, describe_workspace_result, dump_document, sync_document
from misp2sentinel.commands.status import default_report_path, indicator_counts, pending_counts, read_previous_report
from misp2sentinel.config import Config, warn_if_readable_by_others
from misp2sentinel.errors import Misp2SentinelError, StateError
from misp2sentinel.files import write_private_file
from misp2sentinel.logs import RequestCounter
from misp2sentinel.report import RunReport

log = logging.getLogger(__name__)


@dataclass
class SyncOptions:
    event_ref: str | None = None
    dry_run: bool = False
    output: str | None = None
    workspace_name: str | None = None
    max_duration: int | None = None
    full: bool = False
    force: bool = False
    retry_rejected: bool = False
    validate: bool = False


def warn_about_settings(config: Config) -> None:
    """Log a warning for each setting that exposes data: TLS checks off, a state file others can read."""
    for workspace in config.workspaces:
        if not workspace.verify_tls:
            log.warning(
                "TLS verification is OFF for workspace %s (verify_tls: false): anyone on the network path can "
                "read its access token and indicators; set ca_bundle to the issuing CA instead",
                workspace.name,
            )
    if config.misp is not None and not config.misp.verify_tls:
        log.warning(
            "TLS verification is OFF for MISP at %s (misp.verify_tls: false): anyone on the network path can "
            "read the API key; set misp.ca_bundle to the issuing CA instead",
            config.misp.url,
        )
    if config.state is not None:
        warn_if_readable_by_others(config.state.path, "state file")


def run_sync_command(config: Config, clock: Clock, options: SyncOptions, counter: RequestCounter | None) -> tuple[RunReport, dict]:
    """Run a sync and return its report and document; write the report and metrics files.

    A Misp2SentinelError is re-raised after the files are written, with the document attached as
    `run_document` so that `--json` can still print it.
    """
    from misp2sentinel.sync import run_sync

    workspaces = [options.workspace_name] if options.workspace_name else [w.name for w in config.active_workspaces]
    report_path = default_report_path(config)
    previous = read_previous_report(report_path)
    timer = RunTimer(clock.now(), clock.monotonic)
    full_run = options.event_ref is None
    try:
        report = run_sync(
            config, clock, event_ref=options.event_ref, dry_run=options.dry_run, output=options.output,
            workspace_name=options.workspace_name, max_duration=options.max_duration, full=options.full,
            force=options.force, retry_rejected=options.retry_rejected, validate=options.validate,
        )
    except Misp2SentinelError as error:
        report = error.report or RunReport("sync --dry-run" if options.dry_run else "sync")
        document = sync_document(report, timer, error=error, workspaces=workspaces, full_run=full_run,
                                 requests=counter, previous=previous)
        if not options.dry_run:
            _write_files(config, report_path, document)
        error.run_document = document
        raise

    document = sync_document(report, timer, error=None, workspaces=workspaces, full_run=full_run,
                             requests=counter, previous=previous)
    if not options.dry_run and not _write_files(config, report_path, document):
        report.fail("report", f"cannot write the run report {report_path}; see the error above")
        document = sync_document(report, timer, error=None, workspaces=workspaces, full_run=full_run,
                                 requests=counter, previous=previous)
    for name in workspaces:
        log.info("%s", describe_workspace_result(name, document["workspaces"][name]))
    return report, document


def _write_files(config: Config, report_path, document: dict) -> bool:
    """Write the report and, when configured, the metrics; return False when a file failed."""
    written = True
    if report_path is not None:
        try:
            write_private_file(report_path, dump_document(document))
        except OSError as error:
            log.error("cannot write the run report %s: %s; set reporting.report_path to a writable file", report_path, error.strerror)
            written = False
    metrics_path = config.reporting.metrics_path
    if metrics_path is not None:
        from misp2sentinel.metrics import render_metrics

        counts, pending = _state_counts(config)
        try:
            write_private_file(metrics_path, render_metrics(document, counts, pending), int(config.reporting.metrics_file_mode, 8))
        except OSError as error:
            log.error("cannot write the metrics file %s: %s; set reporting.metrics_path to a writable file", metrics_path, error.strerror)
            written = False
    return written


def _state_counts(config: Config) -> tuple[dict, dict]:
    """Return the state's indicator counts and pending events per workspace, or empty ones when the
    state cannot be read (the run's own error already says why)."""
    from misp2sentinel.state import StateStore

    if config.state is None:
        return {}, {}
    try:
        with StateStore(config.state.path, readonly=True) as store:
            if store.connection is None:
                return {}, {}
            return indicator_counts(store.connection), pending_counts(store.connection)
    except StateError:
        return {}, {}
