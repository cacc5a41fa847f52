"""The JSON document that describes one run: printed by `--json`, and for `sync` also written as
the run report file and turned into Prometheus metrics.

A workspace's `last_success` is carried over from the previous report file, so it keeps the time of
the last run in which that workspace succeeded however many runs failed since. A workspace counts as
successful only in a full run (not `--event`, not `--dry-run`) that ended without an error and with
no failure of its own, and no failure that could not be tied to a single workspace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import orjson

from misp2sentinel import __version__
from misp2sentinel.report import RunReport

log = logging.getLogger(__name__)

REPORT_SCHEMA_VERSION = 1


def stix_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class RunTimer:
    """The run's start as wall-clock time (the run time, which `MISP2SENTINEL_NOW` may fix) and
    its duration on the monotonic clock."""

    def __init__(self, now: datetime, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.started = now
        self.monotonic = monotonic
        self.started_monotonic = monotonic()

    def elapsed(self) -> float:
        return max(self.monotonic() - self.started_monotonic, 0.0)


def base_document(report: RunReport, timer: RunTimer, error: BaseException | None = None) -> dict:
    """Return the document every command prints with `--json`: times, counts and the exit code."""
    duration = timer.elapsed()
    finished = timer.started + timedelta(seconds=duration)
    exit_code = getattr(error, "exit_code", 1) if error is not None else report.exit_code
    document = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "version": __version__,
        **report.as_dict(),
        "started": stix_time(timer.started),
        "finished": stix_time(finished),
        "finished_timestamp": round(finished.timestamp(), 3),
        "duration_seconds": round(duration, 3),
        "outcome": _outcome(report, error),
        "error": None if error is None else str(error),
        "exit_code": exit_code,
    }
    return document


def _outcome(report: RunReport, error: BaseException | None) -> str:
    if error is not None:
        return "error"
    return "failed" if report.failed else "ok"


def error_document(command: str, error: BaseException, exit_code: int) -> dict:
    """Return the `--json` document of a command that stopped before its run started."""
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "version": __version__,
        "command": command,
        "outcome": "error",
        "error": str(error),
        "exit_code": exit_code,
    }


def sync_document(report: RunReport, timer: RunTimer, *, error: BaseException | None, workspaces: list[str],
                  full_run: bool, requests, previous: dict | None) -> dict:
    """Return the sync run's document, with one entry per workspace of this run or the last report."""
    document = base_document(report, timer, error)
    document["requests"] = requests.as_dict() if requests is not None else {
        "sentinel": 0, "sentinel_throttled": 0, "sentinel_retries": 0, "misp_retries": 0,
    }
    attributed = sum(sum(tally.failures.values()) for tally in report.workspaces.values())
    # A failure of the whole workspace that names none (a token error) belongs to an unknown one;
    # any other failure that names none (an unreadable input or page) concerns every workspace.
    unknown_workspace = report.unattributed_failures
    run_wide = sum(report.failures.values()) - attributed - unknown_workspace

    entries: dict[str, dict] = {}
    previous_entries = (previous or {}).get("workspaces") or {}
    for name, entry in previous_entries.items():
        if isinstance(entry, dict) and name not in workspaces:
            entries[name] = {**entry, "in_run": False}
    for name in workspaces:
        tally = report.workspaces.get(name)
        own_failures = dict(tally.failures) if tally else {}
        if error is not None:
            outcome = "failed" if own_failures else "incomplete"
        elif own_failures or run_wide > 0 or (unknown_workspace and len(workspaces) == 1):
            outcome = "failed"
        elif unknown_workspace:
            outcome = "unknown"
        else:
            outcome = "ok"
        before = previous_entries.get(name) if isinstance(previous_entries.get(name), dict) else {}
        last_success = before.get("last_success")
        last_success_timestamp = before.get("last_success_timestamp")
        if outcome == "ok" and full_run:
            last_success = document["finished"]
            last_success_timestamp = document["finished_timestamp"]
        entries[name] = {
            "in_run": True,
            "started": document["started"],
            "outcome": outcome,
            "outcomes": dict(tally.outcomes) if tally else {},
            "failed": own_failures,
            "error": tally.error if tally else None,
            "requests": requests.for_workspace(name) if requests is not None else {
                "sentinel": 0, "sentinel_throttled": 0, "sentinel_retries": 0,
            },
            "last_success": last_success,
            "last_success_timestamp": last_success_timestamp,
        }
    document["workspaces"] = entries
    return document


def dump_document(document: dict) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def describe_workspace_result(name: str, entry: dict) -> str:
    """Return the INFO line that ends a workspace's part of a run."""
    outcomes = ", ".join(f"{number} {outcome}" for outcome, number in sorted(entry["outcomes"].items()) if number)
    failed = sum(entry["failed"].values())
    requests = entry["requests"]
    text = f"workspace {name}: {entry['outcome']}"
    if outcomes:
        text += f", {outcomes}"
    text += f", {failed} failed; {requests['sentinel']} requests, {requests['sentinel_throttled']} throttled, {requests['sentinel_retries']} retries"
    if entry.get("error"):
        text += f"; {entry['error']}"
    return text
