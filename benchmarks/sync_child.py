"""Run one `misp2sentinel sync` in this process for a benchmark, and write its report as JSON.

    python benchmarks/sync_child.py CONFIG REPORT [--time-scale 3] [--acknowledge] [--full] [--events-from FEED]

`--time-scale` runs the bridge's monotonic clock and sleeps that many times faster, matching the
Sentinel emulator of `harness.Emulators`. `--acknowledge` replaces the Sentinel clients with one
that accepts every object without a request, to fill a large state quickly through the same
planning and recording code as a real sync. `--events-from` reads the fetched events from the
feed folder that the MISP emulator serves, while listing still goes to MISP. That measures the
bridge without the emulator's rendering and the HTTP transfer of the events.

At exit it prints its peak resident memory (VmHWM) to stderr for `harness.measure`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from misp2sentinel.clock import Clock  # noqa: E402
from misp2sentinel.config import load_config  # noqa: E402
from misp2sentinel.errors import Misp2SentinelError  # noqa: E402
from misp2sentinel.sentinel.client import RecordResult  # noqa: E402
from misp2sentinel.sources import misp as misp_source  # noqa: E402
from misp2sentinel.sources.normalize import events_from_document  # noqa: E402
from misp2sentinel.sync import run as sync_run  # noqa: E402
from peak import print_peak_memory  # noqa: E402


class ScaledClock(Clock):
    """The system clock with monotonic time and sleeps `scale` times faster; the run time is unchanged."""

    def __init__(self, scale: float) -> None:
        base = Clock.from_environment()
        super().__init__(base._fixed_now)
        self.scale = scale

    def monotonic(self) -> float:
        return time.monotonic() * self.scale

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.scale)


class AcknowledgingUploader:
    """Stands in for a Sentinel client and accepts every object at once."""

    def __init__(self) -> None:
        self.objects = 0

    def upload(self, objects: list[dict]) -> list[RecordResult]:
        self.objects += len(objects)
        return [RecordResult(index, True) for index in range(len(objects))]


def fetch_from_feed(feed: Path):
    """Return a stand-in for `MispSource.fetch` that reads each event from `feed/<uuid>.json`."""

    def fetch(self, uuids: list[str], on_error=None):
        for event_uuid in uuids:
            path = feed / f"{event_uuid}.json"
            if path.exists():
                yield from events_from_document(json.loads(path.read_bytes()))

    return fetch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("report", type=Path, help="file to write the run report to, as JSON")
    parser.add_argument("--time-scale", type=float, default=1.0, help="speed of the monotonic clock (default: 1)")
    parser.add_argument("--acknowledge", action="store_true", help="accept every object without contacting Sentinel")
    parser.add_argument("--full", action="store_true", help="run `sync --full`")
    parser.add_argument("--events-from", type=Path, help="feed folder to read fetched events from, instead of MISP")
    arguments = parser.parse_args()

    if arguments.acknowledge:
        sync_run._uploaders = lambda config, workspaces, clock: {w.name: AcknowledgingUploader() for w in workspaces}
    if arguments.events_from:
        misp_source.MispSource.fetch = fetch_from_feed(arguments.events_from)
    clock = ScaledClock(arguments.time_scale)
    try:
        report = sync_run.run_sync(load_config(arguments.config), clock, full=arguments.full)
    except Misp2SentinelError as error:
        report = error.report
        print(f"sync failed: {error}", file=sys.stderr)
    document = {**report.as_dict(), "summary": report.summary()}
    arguments.report.write_text(json.dumps(document, default=str), encoding="utf-8")
    print_peak_memory()


if __name__ == "__main__":
    main()
