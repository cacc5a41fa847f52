"""A one-line progress display on a terminal: counts so far and the rate, rewritten in place.

It is shown only when stderr is a terminal (never under cron, systemd or a pipe) and not with
`-q`. Log lines clear it first, through `ConsoleHandler.progress`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TextIO

from misp2sentinel.report import RunReport

# Redraw at most this often, so a fast export spends its time on the export.
REDRAW_SECONDS = 0.2
SENT_OUTCOMES = ("created", "updated", "refreshed", "revoked")


def wants_progress(stream: TextIO, quiet: bool) -> bool:
    """Return whether a progress line suits `stream`: a terminal that can move the cursor."""
    if quiet or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Redraw one status line on `stream` as a run's report changes."""

    def __init__(self, stream: TextIO, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.monotonic = monotonic
        self.started = monotonic()
        self.last_drawn = float("-inf")
        self.shown = False

    def update(self, report: RunReport) -> None:
        now = self.monotonic()
        if now - self.last_drawn < REDRAW_SECONDS:
            return
        self.last_drawn = now
        self.stream.write("\r" + describe_progress(report, now - self.started) + "\x1b[K")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        """Erase the line, so that the next output starts on a clean line."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False
            # Redraw on the next change rather than after the usual pause.
            self.last_drawn = float("-inf")


def describe_progress(report: RunReport, elapsed: float) -> str:
    """Return the progress text: events, objects sent by outcome, skips, failures and the rate."""
    parts = [f"{report.command}: {report.events:,} events"]
    sent = {outcome: report.outcomes.get(outcome, 0) for outcome in SENT_OUTCOMES if report.outcomes.get(outcome)}
    if sent:
        detail = ", ".join(f"{number:,} {outcome}" for outcome, number in sent.items())
        parts.append(f"{sum(sent.values()):,} sent ({detail})")
    if report.outcomes.get("unchanged"):
        parts.append(f"{report.outcomes['unchanged']:,} unchanged")
    parts.append(f"{sum(report.skips.values()):,} skipped")
    parts.append(f"{sum(report.failures.values()):,} failed")
    rate = report.events / elapsed if elapsed > 0 else 0.0
    minutes, seconds = divmod(int(elapsed), 60)
    return ", ".join(parts) + f" | {rate:,.1f} events/s, {minutes}:{seconds:02d}"
