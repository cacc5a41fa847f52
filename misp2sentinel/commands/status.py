"""The `status` command: what the state file stores about each workspace, read without the lock.

Counts come from the state's `indicators` table (STIX indicators only; identities are left out):
`live` and `revoked` by status, and the rows whose last upload failed, split by cause. `rejected`
rows carry content Sentinel refused three times with the same validation message, which is not
sent again until it changes or `sync --retry-rejected` is given; `failed` rows are retried by the
next run. Both include updates and revocations that did not go through, for which Sentinel still holds the previous version. The
per-workspace outcome and last successful run come from the JSON report of the latest run, when
the configuration's report file exists.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from misp2sentinel.config import Config
from misp2sentinel.errors import StateError
from misp2sentinel.files import is_special_file
from misp2sentinel.state import KIND_PREFIXES, StateStore, key16

SWEEP_PREFIX = "sweep|"

ACTIVE = "active"
RETIRED = "retired"
NOT_CONFIGURED = "not configured"


def iso_from_ms(value: int | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_from_seconds(value: int | None) -> str | None:
    return None if value is None else iso_from_ms(value * 1000)


def default_report_path(config: Config) -> Path | None:
    """Return where sync writes its JSON report: the configured path, else beside the state file."""
    if config.reporting.report_path is not None:
        return config.reporting.report_path
    if config.state is None:
        return None
    return config.state.path.parent / "last-run.json"


def read_previous_report(path: Path | None) -> dict | None:
    """Return the JSON report at `path`, or None when it is missing or unreadable."""
    if path is None or is_special_file(path):
        # A pipe or device (such as /dev/null) holds no earlier report, and reading a pipe would block.
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def indicator_counts(db: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Return {workspace name: {live, revoked, failed, rejected}} for every workspace in the state.

    `rejected` rows carry content Sentinel refused three times with the same validation message;
    `failed` rows are the others whose last upload failed.
    """
    rows = db.execute(
        """SELECT w.name,
                  coalesce(sum(i.status = 0), 0),
                  coalesce(sum(i.status = 2), 0),
                  coalesce(sum(i.last_error IS NOT NULL AND i.rejected_digest IS NULL), 0),
                  coalesce(sum(i.rejected_digest IS NOT NULL), 0)
           FROM workspaces w LEFT JOIN indicators i ON i.workspace = w.id AND i.kind = 0
           GROUP BY w.id ORDER BY w.name"""
    )
    return {
        name: {"live": live, "revoked": revoked, "failed": failed, "rejected": rejected}
        for name, live, revoked, failed, rejected in rows
    }


def pending_counts(db: sqlite3.Connection) -> dict[str, int]:
    rows = db.execute(
        "SELECT w.name, count(p.event_uuid) FROM workspaces w"
        " LEFT JOIN pending_events p ON p.workspace = w.id GROUP BY w.id"
    )
    return dict(rows)


def oldest_failure(db: sqlite3.Connection, workspace_key: int) -> dict | None:
    """Return the failing row of the event that has been pending longest, else the most retried one.

    The state keeps no time per failed row, so the age is that of the event's pending entry.
    """
    columns = "kind, stix_id, attempts, last_error"
    pending = db.execute(
        "SELECT event_uuid, since FROM pending_events WHERE workspace = ? ORDER BY since LIMIT 20", (workspace_key,)
    ).fetchall()
    for event_uuid, since in pending:
        found = db.execute(
            f"SELECT {columns} FROM indicators WHERE workspace = ? AND event_uuid = ? AND last_error IS NOT NULL"
            " ORDER BY attempts DESC LIMIT 1",
            (workspace_key, key16(event_uuid)),
        ).fetchone()
        if found is not None:
            return _failure(found, event_uuid, since)
    found = db.execute(
        f"SELECT {columns} FROM indicators WHERE workspace = ? AND last_error IS NOT NULL"
        " ORDER BY attempts DESC LIMIT 1",
        (workspace_key,),
    ).fetchone()
    return _failure(found, None, None) if found is not None else None


def _failure(row: tuple, event_uuid: str | None, since: int | None) -> dict:
    import uuid

    kind, blob, attempts, message = row
    stix_id = KIND_PREFIXES.get(kind, "?--") + str(uuid.UUID(bytes=blob))
    return {"since": iso_from_ms(since), "event_uuid": event_uuid, "stix_id": stix_id, "attempts": attempts, "message": message}


def cursors(db: sqlite3.Connection, workspace_key: int, current_selection: bytes | None) -> list[dict]:
    """Return the workspace's cursors and sweep times; the sync stores the time of its last sweep
    of a source's whole selection as a cursor row whose source starts with "sweep|"."""
    rows = db.execute(
        "SELECT source, selection, value FROM cursors WHERE workspace = ? ORDER BY source", (workspace_key,)
    )
    found = []
    for source, selection, value in rows:
        kind = "sweep" if source.startswith(SWEEP_PREFIX) else "cursor"
        found.append({
            "kind": kind,
            "source": source.removeprefix(SWEEP_PREFIX),
            "value": iso_from_seconds(value),
            "current": selection == current_selection,
        })
    return found


def run_row(db: sqlite3.Connection, where: str = "") -> dict | None:
    found = db.execute(
        f"SELECT command, started, finished, outcome, summary FROM runs {where} ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if found is None:
        return None
    command, started, finished, outcome, summary = found
    return {
        "command": command,
        "started": iso_from_ms(started),
        "finished": iso_from_ms(finished),
        "duration_seconds": None if finished is None else round((finished - started) / 1000, 3),
        # A run without an end is still running, or was killed before it could record one.
        "outcome": outcome or "unfinished",
        "summary": summary,
    }


def collect_status(config: Config) -> dict:
    """Return the status document: the state file, the last runs and one entry per workspace."""
    from misp2sentinel.sync import selection_key

    state_path = config.state.path
    report = read_previous_report(default_report_path(config))
    report_workspaces = (report or {}).get("workspaces") or {}
    document: dict = {
        "state_path": str(state_path),
        "state_exists": False,
        "last_run": None,
        "last_successful_run": None,
        "report_path": str(default_report_path(config)),
        "workspaces": [],
    }
    configured = {workspace.name: workspace for workspace in config.workspaces}

    with StateStore(state_path, readonly=True) as store:
        db = store.connection
        if db is None:
            document["workspaces"] = [_empty_entry(w.name, RETIRED if w.retired else ACTIVE) for w in config.workspaces]
            return document
        try:
            document["state_exists"] = True
            document["schema_version"] = db.execute("PRAGMA user_version").fetchone()[0]
            document["last_run"] = run_row(db)
            document["last_successful_run"] = run_row(db, "WHERE outcome = 'ok'")
            counts = indicator_counts(db)
            pending = pending_counts(db)
            keys = dict(db.execute("SELECT name, id FROM workspaces"))
            names = sorted(set(configured) | set(keys))
            for name in names:
                workspace = configured.get(name)
                if workspace is None:
                    label = NOT_CONFIGURED
                elif workspace.retired:
                    label = RETIRED
                else:
                    label = ACTIVE
                entry = _empty_entry(name, label)
                if name in keys:
                    key = keys[name]
                    entry["workspace_id"] = db.execute("SELECT workspace_id FROM workspaces WHERE id = ?", (key,)).fetchone()[0]
                    entry["indicators"] = counts.get(name, entry["indicators"])
                    entry["pending_events"] = pending.get(name, 0)
                    entry["oldest_failure"] = oldest_failure(db, key)
                    current = selection_key(config, workspace) if workspace is not None else None
                    entry["cursors"] = cursors(db, key, current)
                _add_run_outcome(entry, report, report_workspaces.get(name), document["last_run"])
                document["workspaces"].append(entry)
        except sqlite3.DatabaseError as error:
            raise StateError(
                f"cannot read the state file {state_path}: {error}",
                hint="check that it is a misp2sentinel state file of this version; restore a backup if it is damaged",
            ) from None
    return document


def _empty_entry(name: str, configured: str) -> dict:
    return {
        "name": name,
        "configured": configured,
        "workspace_id": None,
        "indicators": {"live": 0, "revoked": 0, "failed": 0, "rejected": 0},
        "pending_events": 0,
        "oldest_failure": None,
        "cursors": [],
        "last_run": None,
        "last_success": None,
    }


def _add_run_outcome(entry: dict, report: dict | None, in_report: dict | None, last_run: dict | None) -> None:
    """Fill the workspace's last run from the JSON report when it covers the workspace, else from
    the state's last run, which has one outcome for all workspaces."""
    if report is not None and isinstance(in_report, dict):
        entry["last_success"] = in_report.get("last_success")
        if in_report.get("outcome") is not None:
            entry["last_run"] = {
                "started": in_report.get("started", report.get("started")),
                "duration_seconds": report.get("duration_seconds"),
                "outcome": in_report.get("outcome"),
                "error": in_report.get("error"),
            }
            return
    if last_run is not None and entry["configured"] == ACTIVE:
        entry["last_run"] = {
            "started": last_run["started"],
            "duration_seconds": last_run["duration_seconds"],
            "outcome": last_run["outcome"],
            "error": None,
        }


def status_exit_code(document: dict) -> int:
    """Return 1 when the last run, or the last run of an active workspace, did not succeed."""
    last_run = document.get("last_run")
    if last_run is not None and last_run["outcome"] != "ok":
        return 1
    for entry in document["workspaces"]:
        run = entry.get("last_run")
        if entry["configured"] == ACTIVE and run is not None and run.get("outcome") not in ("ok", None):
            return 1
    return 0


def render_status(document: dict) -> str:
    """Return the status as text for a person: one block per workspace."""
    lines = []
    if not document["state_exists"]:
        lines.append(f"state file {document['state_path']}: not created yet; no sync has run")
    else:
        lines.append(f"state file {document['state_path']} (schema version {document.get('schema_version')})")
        lines.append("last run: " + _describe_run(document["last_run"]))
        last_ok = document["last_successful_run"]
        lines.append("last successful run: " + (last_ok["finished"] or last_ok["started"] if last_ok else "none"))

    for entry in document["workspaces"]:
        lines.append("")
        lines.extend(_describe_workspace(entry))
    return "\n".join(lines)


def _describe_run(run: dict | None) -> str:
    if run is None:
        return "none"
    duration = "" if run["duration_seconds"] is None else f", {run['duration_seconds']:.1f} s"
    text = f"{run['command']} at {run['started']}, {run['outcome']}{duration}"
    if run["outcome"] == "unfinished":
        text += " (still running, or stopped before it could record its end)"
    if run.get("summary"):
        text += f": {run['summary']}"
    return text


def _describe_workspace(entry: dict) -> list[str]:
    counts = entry["indicators"]
    header = f"workspace {entry['name']} ({entry['configured']}"
    if entry["workspace_id"]:
        header += f", Sentinel workspace {entry['workspace_id']}"
    lines = [header + ")"]

    pending = entry["pending_events"]
    lines.append(
        f"  indicators: {counts['live']} live, {counts['revoked']} revoked, {counts['failed']} failed, "
        f"{counts['rejected']} rejected; {pending} event{'s' if pending != 1 else ''} pending a retry"
    )
    if entry["configured"] == NOT_CONFIGURED:
        lines.append(
            f"  not in the configuration: its {counts['live']} live indicators stay in Sentinel until their valid_until; "
            "add the workspace back with retired: true to keep its credentials for revoking them"
        )

    run = entry["last_run"]
    if run is not None:
        duration = "" if run.get("duration_seconds") is None else f", {run['duration_seconds']:.1f} s"
        text = f"  last run: {run.get('started')}, {run.get('outcome')}{duration}"
        if run.get("error"):
            text += f": {run['error']}"
        lines.append(text)
    if entry["last_success"] or entry["configured"] == ACTIVE:
        lines.append(f"  last success: {entry['last_success'] or 'none recorded in the run report'}")

    for cursor in entry["cursors"]:
        note = "" if cursor["current"] else " (from an earlier selection or filter; not used)"
        what = "cursor" if cursor["kind"] == "cursor" else "last sweep"
        lines.append(f"  {what}: {cursor['source']} at {cursor['value']}{note}")

    failure = entry["oldest_failure"]
    if failure is not None:
        since = f"pending since {failure['since']}, " if failure["since"] else ""
        lines.append(
            f"  oldest failure: {failure['stix_id']} ({since}{failure['attempts']} attempt"
            f"{'s' if failure['attempts'] != 1 else ''}): {failure['message']}"
        )
    return lines
