"""Measure the state file's size per indicator and the cost of the reads a quiet sync makes.

    python benchmarks/state_size.py [--indicators 1000000] [--per-event 50]

It records synthetic acknowledged batches of 100 indicators (realistic patterns and ids) into a
new state file through the same `record_outcomes` call a sync uses, then prints the file size per
indicator and the time of the per-run reads: live count, refresh candidates, the live event keys,
and one event's rows.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

from misp2sentinel.state import Outcome, StateStore, key16, source_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--indicators", type=int, default=1_000_000)
    parser.add_argument("--per-event", type=int, default=50)
    arguments = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="misp2sentinel-state-"))
    path = folder / "state.sqlite"
    started = time.perf_counter()
    base_ms = 1_767_225_600_000
    with StateStore(path) as store:
        batch = []
        event_uuid = None
        for number in range(arguments.indicators):
            if number % arguments.per_event == 0:
                event_uuid = str(uuid.UUID(int=number + 1, version=4))
            attribute_uuid = str(uuid.uuid4())
            batch.append(Outcome(
                stix_id=f"indicator--{attribute_uuid}",
                source_key=source_key(attribute_uuid, "value"),
                event_uuid=event_uuid,
                attribute_uuid=attribute_uuid,
                digest=os.urandom(8),
                generation=0,
                created=base_ms,
                modified=base_ms + 1000,
                valid_from=base_ms,
                pattern=f"[domain-name:value = 'host{number}.example-domain.net']",
                pattern_type="stix",
                revoke=False,
                ok=True,
                message=None,
            ))
            if len(batch) == 100:
                store.record_outcomes("bench", batch, base_ms + number)
                batch = []
        if batch:
            store.record_outcomes("bench", batch, base_ms)
        written = time.perf_counter() - started
        store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        timings = {}
        for name, call in (
            ("live count", lambda: store.live_count("bench")),
            ("refresh candidates (10%)", lambda: store.refresh_due("bench", base_ms + arguments.indicators // 2, arguments.indicators // 10)),
            ("live event keys", lambda: store.live_event_keys("bench")),
            ("rows of one event", lambda: store.rows_for_event("bench", str(uuid.UUID(int=1, version=4)))),
        ):
            begin = time.perf_counter()
            call()
            timings[name] = time.perf_counter() - begin

    size = path.stat().st_size
    print(f"indicators: {arguments.indicators:,} in events of {arguments.per_event}")
    print(f"recorded in {written:.1f} s ({arguments.indicators / written:,.0f} per second, one transaction per 100)")
    print(f"state file: {size / 1e6:.1f} MB, {size / arguments.indicators:.0f} bytes per indicator")
    for name, seconds in timings.items():
        print(f"{name}: {seconds * 1000:.1f} ms")


if __name__ == "__main__":
    main()
