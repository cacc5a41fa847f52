"""Counting what a run did: records by outcome, skips and failures by reason, inputs read.

Each skip and failure is logged as it happens on the `misp2sentinel.report` logger (shown at `-v`),
so the report itself keeps counts, per run and per workspace, and the first `KEPT_FAILURE_MESSAGES`
failure messages, and stays small however large the run.

A progress display follows a run through `listen`: its callback gets the report after each change.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

log = logging.getLogger("misp2sentinel.report")


def skips_itemized() -> bool:
    """Tell whether each skip is logged (at INFO), so that the mapper must report skips one by one."""
    return log.isEnabledFor(logging.INFO)

# Failure messages kept for the JSON report; every one is logged, and counted by reason.
KEPT_FAILURE_MESSAGES = 100

# The prefix that the sync and the Sentinel client give the failures of one workspace.
WORKSPACE_PREFIX = re.compile(r"^workspace ([A-Za-z0-9_.-]+): ")

_listeners: list[Callable[[RunReport], None]] = []


@contextmanager
def listen(callback: Callable[[RunReport], None]) -> Iterator[None]:
    """Call `callback(report)` after every change to any report while the block runs."""
    _listeners.append(callback)
    try:
        yield
    finally:
        _listeners.remove(callback)

# Skip reasons: the record was deliberately not sent, and the run still succeeds.
NOT_IDS = "not_ids"
DELETED = "deleted"
UNSUPPORTED_TYPE = "unsupported_type"
INVALID_VALUE = "invalid_value"
ABOVE_MAX_TLP = "above_max_tlp"
STALE = "stale"
DUPLICATE = "duplicate"
WARNINGLIST = "warninglist"
NOT_SELECTED = "not_selected"
UNPUBLISHED = "unpublished"
# With --validate: the pattern failed the STIX pattern grammar.
INVALID_PATTERN = "invalid_pattern"
# The mapper's local sanity filter (each reason has its own switch under `mapping.sanity`).
NON_PUBLIC_ADDRESS = "non_public_address"
BROAD_CIDR = "broad_cidr"
EMPTY_CONTENT_HASH = "empty_content_hash"


@dataclass(slots=True)
class Skip:
    """One candidate indicator that is not sent, with the reason and enough context to find it."""

    reason: str
    detail: str
    event_uuid: str | None = None
    attribute_uuid: str | None = None
    attribute_type: str | None = None
    # More than one when the mapper counts an event's attributes with the same reason as one skip.
    count: int = 1

    def describe(self) -> str:
        if self.count > 1:
            return f"skipped {self.count} attributes of event {self.event_uuid or '?'}: {self.reason}: {self.detail}"
        where = f"event {self.event_uuid or '?'}"
        if self.attribute_uuid or self.attribute_type:
            where += f", attribute {self.attribute_uuid or '?'} ({self.attribute_type or '?'})"
        return f"skipped {where}: {self.reason}: {self.detail}"


@dataclass
class WorkspaceTally:
    """The share of one workspace in a run: records by outcome, failures by reason, and the error
    that stopped the workspace as a whole, if one did."""

    outcomes: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return bool(self.failures)


@dataclass
class RunReport:
    """Counts of one run. `outcomes` holds records by outcome (written, created, updated, ...).

    `workspaces` holds the same counts per workspace for the calls that name one, or whose failure
    message starts with "workspace NAME: ". `unattributed_failures` counts workspace failures that
    named no workspace, so a caller can tell that a workspace's own tally may be incomplete.
    """

    command: str
    outcomes: Counter = field(default_factory=Counter)
    skips: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    inputs_read: int = 0
    inputs_failed: int = 0
    events: int = 0
    workspaces: dict[str, WorkspaceTally] = field(default_factory=dict)
    failure_messages: list[str] = field(default_factory=list)
    unattributed_failures: int = 0
    # For a dry run: what a real run would cost, appended to the summary.
    estimate: str | None = None

    def __setattr__(self, name: str, value) -> None:
        object.__setattr__(self, name, value)
        # `events` is incremented directly by the pipeline, so the progress display hears of it here.
        if name == "events" and _listeners:
            self._notify()

    def _notify(self) -> None:
        for callback in _listeners:
            callback(self)

    def workspace(self, name: str) -> WorkspaceTally:
        """Return the tally of workspace `name`, creating it on first use."""
        tally = self.workspaces.get(name)
        if tally is None:
            tally = self.workspaces[name] = WorkspaceTally()
        return tally

    def count(self, outcome: str, number: int = 1, *, workspace: str | None = None) -> None:
        self.outcomes[outcome] += number
        if workspace is not None:
            self.workspace(workspace).outcomes[outcome] += number
        if _listeners:
            self._notify()

    def skip(self, skip: Skip) -> None:
        self.skips[skip.reason] += skip.count
        if log.isEnabledFor(logging.INFO):
            log.info("%s", skip.describe())
        if _listeners:
            self._notify()

    def fail(self, reason: str, message: str, number: int = 1, *, workspace: str | None = None) -> None:
        self.failures[reason] += number
        log.error("%s", message)
        if len(self.failure_messages) < KEPT_FAILURE_MESSAGES:
            self.failure_messages.append(message)
        if workspace is None:
            match = WORKSPACE_PREFIX.match(message)
            workspace = match.group(1) if match else None
        if workspace is not None:
            tally = self.workspace(workspace)
            tally.failures[reason] += number
            if reason == "workspace" and tally.error is None:
                tally.error = message
        elif reason == "workspace":
            self.unattributed_failures += number
        if _listeners:
            self._notify()

    def input_read(self, name: str) -> None:
        self.inputs_read += 1

    def input_failed(self, name: str, reason: str) -> None:
        self.inputs_failed += 1
        self.failures["input"] += 1
        message = f"input {name} failed: {reason}"
        if len(self.failure_messages) < KEPT_FAILURE_MESSAGES:
            self.failure_messages.append(message)
        log.error("%s", message)

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> str:
        """Return the one-line human summary printed at the end of every run."""
        parts = [f"{n} {outcome}" for outcome, n in sorted(self.outcomes.items()) if n] or ["nothing sent or written"]
        skipped = sum(self.skips.values())
        if skipped:
            parts.append(f"{skipped} skipped (" + ", ".join(f"{reason} {n}" for reason, n in sorted(self.skips.items())) + ")")
        failed = sum(self.failures.values())
        if failed:
            parts.append(f"{failed} failed (" + ", ".join(f"{reason} {n}" for reason, n in sorted(self.failures.items())) + ")")
        else:
            parts.append("0 failed")
        text = ", ".join(parts)
        text += f"; {self.events} event(s)"
        if self.inputs_read or self.inputs_failed:
            text += f" from {self.inputs_read} input(s)"
            if self.inputs_failed:
                text += f", {self.inputs_failed} unreadable"
        if self.estimate:
            text += f"; {self.estimate}"
        return f"{self.command}: {text}"

    def as_dict(self) -> dict:
        """Return the counts as JSON-ready data: the body of `--json` output and of the run report."""
        return {
            "command": self.command,
            "outcomes": dict(self.outcomes),
            "skipped": dict(self.skips),
            "failed": dict(self.failures),
            "events": self.events,
            "inputs_read": self.inputs_read,
            "inputs_failed": self.inputs_failed,
            "exit_code": self.exit_code,
            "failure_messages": list(self.failure_messages),
        }
