"""The `export` command: MISP data in, a STIX 2.1 bundle out, with no Sentinel involved."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from misp2sentinel.clock import Clock
from misp2sentinel.config import Config, MappingSettings, load_config
from misp2sentinel.errors import UsageError
from misp2sentinel.export import BundleWriter
from misp2sentinel.pipeline import select_records
from misp2sentinel.report import RunReport
from misp2sentinel.sources.files import read_sources

log = logging.getLogger(__name__)


def run_export(config_path: Path | None, workspace_name: str | None, sources: list[Path], output: str) -> RunReport:
    clock = Clock.from_environment()
    now = clock.now()
    report = RunReport("export")
    settings = MappingSettings()
    selection = None
    if config_path is not None:
        config = load_config(config_path)
        settings = _settings_with_link(config)
        workspace = _chosen_workspace(config, workspace_name)
        selection = workspace.selection if workspace else None
        if not sources:
            sources = list(config.sources)
        if not sources:
            raise UsageError(
                f"{config_path} defines no local sources",
                hint="add paths under 'sources:' or pass --source PATH",
            )

    events = read_sources(sources, report)
    with BundleWriter(output, now) as writer:
        for record in select_records(events, settings, now, report, selection):
            writer.write(record.stix)
    report.count("written", writer.count)
    click.echo(f"{report.summary()} -> {output}", err=True)
    return report


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
