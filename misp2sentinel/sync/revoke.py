"""Withdrawing everything the bridge sent to one workspace (`revoke-all`).

It is how a workspace is off-boarded: every live indicator recorded in the state is re-uploaded
with `revoked: true`, using the workspace's configured credentials, which a workspace kept in the
configuration as `retired: true` still has. The guard against mass revocation does not apply,
because the operator asked for exactly that.
"""

from __future__ import annotations

import contextlib
from misp2sentinel.clock import Clock
from misp2sentinel.config import Config
from misp2sentinel.diff import revocation
from misp2sentinel.errors import ConfigError, Misp2SentinelError, UsageError
from misp2sentinel.export import BundleWriter
from misp2sentinel.report import RunReport
from misp2sentinel.state import StateStore
from misp2sentinel.sync.plan import event_text
from misp2sentinel.sync.run import _uploaders, epoch_ms
from misp2sentinel.sync.workspace import WorkspaceRun


def run_revoke_all(config: Config, clock: Clock, workspace_name: str, *, dry_run: bool = False,
                   output: str | None = None) -> RunReport:
    report = RunReport("revoke-all --dry-run" if dry_run else "revoke-all")
    if config.state is None:
        raise ConfigError(config.source_name, ["state.path: required (the state lists what the workspace holds)"])
    workspace = config.workspace(workspace_name)
    if not config.state.path.exists():
        raise UsageError(f"there is no state file at {config.state.path}, so nothing was sent that could be revoked")
    now = clock.now()
    now_ms = epoch_ms(now)
    try:
        with StateStore(config.state.path, readonly=dry_run) as store:
            store.bind_workspace(workspace.name, workspace.workspace_id, workspace.source_system)
            uploader = None if dry_run else _uploaders(config, [workspace], clock)[workspace.name]
            writer = BundleWriter(output, now) if output else None
            with writer or contextlib.nullcontext():
                run = WorkspaceRun(workspace, config, store, report, uploader, writer, now_ms,
                                   hold_unpublished=False, force=True)
                for row, event_key in list(store.live_rows(workspace.name)):
                    run.revocations.append(revocation(row, event_text(event_key), now_ms))
                run.send_revocations()
                run.flush()
    except Misp2SentinelError as error:
        error.report = report
        raise
    return report
