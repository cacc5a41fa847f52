"""Counting what a run did: records by outcome, skips and failures by reason, inputs read.

Each skip and failure is logged as it happens on the `misp2sentinel.report` logger (shown at `-v`),
so the report itself keeps counts only and stays small however large the run.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger("misp2sentinel.report")

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
# The mapper's local sanity filter (each reason has its own switch under `mapping.sanity`).
NON_PUBLIC_ADDRESS = "non_public_address"
BROAD_CIDR = "broad_cidr"
EMPTY_CONTENT_HASH = "empty_content_hash"


@dataclass(frozen=True, slots=True)
class Skip:
    """One candidate indicator that is not sent, with the reason and enough context to find it."""

    reason: str
    detail: str
    event_uuid: str | None = None
    attribute_uuid: str | None = None
    attribute_type: str | None = None

    def describe(self) -> str:
        where = f"event {self.event_uuid or '?'}"
        if self.attribute_uuid or self.attribute_type:
            where += f", attribute {self.attribute_uuid or '?'} ({self.attribute_type or '?'})"
        return f"skipped {where}: {self.reason}: {self.detail}"


@dataclass
class RunReport:
    """Counts of one run. `outcomes` holds records by outcome (written, created, updated, ...)."""

    command: str
    outcomes: Counter = field(default_factory=Counter)
    skips: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    inputs_read: int = 0
    inputs_failed: int = 0
    events: int = 0

    def count(self, outcome: str, number: int = 1) -> None:
        self.outcomes[outcome] += number

    def skip(self, skip: Skip) -> None:
        self.skips[skip.reason] += 1
        log.info("%s", skip.describe())

    def fail(self, reason: str, message: str, number: int = 1) -> None:
        self.failures[reason] += number
        log.error("%s", message)

    def input_read(self, name: str) -> None:
        self.inputs_read += 1

    def input_failed(self, name: str, reason: str) -> None:
        self.inputs_failed += 1
        self.failures["input"] += 1
        log.error("input %s failed: %s", name, reason)

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
        return f"{self.command}: {text}"

    def as_dict(self) -> dict:
        return {
            "command": self.command,
            "outcomes": dict(self.outcomes),
            "skipped": dict(self.skips),
            "failed": dict(self.failures),
            "events": self.events,
            "inputs_read": self.inputs_read,
            "inputs_failed": self.inputs_failed,
            "exit_code": self.exit_code,
        }
