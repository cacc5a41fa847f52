"""The `export` command: MISP data in, a STIX 2.1 bundle out, with no Sentinel involved.

With a configuration, the bundle holds what `sync` would send to the chosen workspace: its
selection applies, events come from the configured local sources or else the MISP server, and when
the state file exists its generations decide the ids of indicators that were revoked and came back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from misp2sentinel.clock import Clock
from misp2sentinel.errors import InputError, Misp2SentinelError, UsageError
from misp2sentinel.export import BundleWriter
from misp2sentinel.mapping.defaults import DEFAULT_MAPPING
from misp2sentinel.pipeline import WorkspaceFilter, stream_records
from misp2sentinel.report import UNPUBLISHED, RunReport, Skip
from misp2sentinel.sources.files import read_sources
from misp2sentinel.validation import PatternValidator

if TYPE_CHECKING:
    from misp2sentinel.config import Config, MappingSettings

log = logging.getLogger(__name__)


def run_export(config_path: Path | None, workspace_name: str | None, sources: list[Path], output: str, *,
               validate: bool = False) -> RunReport:
    clock = Clock.from_environment()
    now = clock.now()
    report = RunReport("export")
    # Without a configuration the defaults are plain data, so the export does not import pydantic.
    settings = DEFAULT_MAPPING
    selection = None
    config = None
    workspace = None
    if config_path is not None:
        from misp2sentinel.config import load_config

        config = load_config(config_path)
        settings = _settings_with_link(config)
        workspace = _chosen_workspace(config, workspace_name)
        selection = workspace.selection if workspace else None
        if not sources:
            sources = list(config.sources)
        if not sources and config.misp is None:
            raise UsageError(
                f"{config_path} defines no local sources and no MISP server",
                hint="add paths under 'sources:', a 'misp:' section, or pass --source PATH",
            )

    events = read_sources(sources, report) if sources else _misp_events(config, report)
    chosen = WorkspaceFilter(settings, selection, report)
    validator = PatternValidator() if validate else None
    store = _open_state(config) if workspace is not None else None
    if store is not None:
        from misp2sentinel.diff import current_stix
    written = 0
    try:
        with BundleWriter(output, now) as writer:
            for event in events:
                rows = store.rows_for_event(workspace.name, event["uuid"]) if store and event.get("uuid") else {}
                for record in chosen.records(event, stream_records(event, settings, now, report, validator)):
                    writer.write(current_stix(record, rows) if rows else record.stix)
            if nothing_read(report):
                # Nothing could be read: keep the previous output rather than replace it with nothing.
                writer.abandon()
            else:
                written = writer.count
    except InputError as error:
        report.fail("output", str(error))
    except Misp2SentinelError as error:
        error.report = report
        raise
    finally:
        if store is not None:
            store.close()
    report.count("written", written)
    return report


def nothing_read(report: RunReport) -> bool:
    """Tell whether every input failed, in which case the export keeps any previous output."""
    return bool(report.inputs_failed) and not report.inputs_read


def _misp_events(config: Config, report: RunReport) -> Iterator[dict]:
    """Yield the events of the MISP server; under the published-only policy, as sync does,
    unpublished events are left out and counted."""
    from misp2sentinel.sources.misp import MispSource

    source = MispSource(config.misp)
    listed = source.list_changed(None, int(Clock.from_environment().now().timestamp()))
    for event in source.fetch(sorted(listed, key=lambda u: (listed[u], u))):
        if config.misp.published_only and not event.get("published"):
            detail = "the event is not published and misp.published_only is on"
            report.skip(Skip(UNPUBLISHED, detail, event.get("uuid")))
            continue
        yield event


def _open_state(config: Config):
    if config.state is None or not config.state.path.exists():
        return None
    from misp2sentinel.state import StateStore

    store = StateStore(config.state.path, readonly=True)
    store.open()
    return store


def _settings_with_link(config: Config) -> MappingSettings:
    """Link indicators to the MISP server's event pages when a server is configured."""
    settings = config.mapping
    if settings.misp_url is None and config.misp is not None:
        settings = settings.model_copy(update={"misp_url": config.misp.url})
    return settings


def _chosen_workspace(config: Config, name: str | None):
    if name is not None:
        return config.workspace(name)
    active = config.active_workspaces
    if len(active) > 1:
        names = ", ".join(w.name for w in active)
        raise UsageError(
            "the configuration defines several workspaces, so --workspace is required",
            hint=f"choose one of: {names}",
        )
    return active[0] if active else None
