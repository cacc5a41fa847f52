"""Measure the export's speed and memory on generated MISP events; prints the figures.

    python benchmarks/export_speed.py [--events 1000] [--attributes 50]

It writes a feed of generated events (a mix of the core types, a quarter of them non-IDS, some
composites and one object per event) to a temporary folder, runs `python -m misp2sentinel export`
on it in a subprocess, and reports input attributes per CPU second of the whole process (start-up
and imports included) and its peak resident memory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TYPES = [
    ("ip-dst", lambda i: f"198.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"),
    ("domain", lambda i: f"host{i}.example.net"),
    ("url", lambda i: f"https://host{i}.example.net/path/{i}?q='x'"),
    ("sha256", lambda i: hashlib.sha256(str(i).encode()).hexdigest()),
    ("md5", lambda i: hashlib.md5(str(i).encode()).hexdigest()),
    ("email-src", lambda i: f"sender{i}@example.org"),
    ("filename|sha1", lambda i: f"file{i}.exe|{hashlib.sha1(str(i).encode()).hexdigest()}"),
    ("domain|ip", lambda i: f"pair{i}.example.com|203.0.{(i >> 8) & 255}.{i & 255}"),
    ("text", lambda i: f"note {i}"),
]


def make_event(number: int, attributes: int) -> dict:
    timestamp = 1764547200 + number
    items = []
    for index in range(attributes):
        serial = number * attributes + index
        attribute_type, value = TYPES[serial % len(TYPES)]
        items.append({
            "uuid": str(uuid.UUID(int=serial + 1, version=4)),
            "type": attribute_type,
            "category": "Network activity",
            "value": value(serial),
            "to_ids": attribute_type != "text" and serial % 4 != 0,
            "timestamp": str(timestamp),
            "Tag": [{"name": "tlp:green"}] if serial % 10 == 0 else [],
        })
    return {"Event": {
        "uuid": str(uuid.UUID(int=10**12 + number, version=4)),
        "info": f"Generated event {number}",
        "date": "2026-01-01",
        "timestamp": str(timestamp),
        "published": True,
        "Orgc": {"name": "Benchmark", "uuid": "0b6e7b2a-8d0a-4b1e-9c3e-5f2a1d4c6e8f"},
        "Tag": [{"name": "tlp:amber"}, {"name": "type:OSINT"}],
        "Attribute": items,
        "Object": [],
    }}


def write_feed(events: int, attributes: int) -> Path:
    """Write a feed folder of generated events into a new temporary folder and return the feed's path."""
    feed = Path(tempfile.mkdtemp(prefix="misp2sentinel-bench-")) / "feed"
    feed.mkdir()
    manifest = {}
    for number in range(events):
        event = make_event(number, attributes)
        (feed / f"{event['Event']['uuid']}.json").write_text(json.dumps(event))
        manifest[event["Event"]["uuid"]] = {}
    (feed / "manifest.json").write_text(json.dumps(manifest))
    return feed


def measure(command: list[str], environment: dict | None = None) -> tuple[float, float, float, str]:
    """Run a command and return (CPU seconds, wall seconds, peak resident MB, stderr) of that process alone.

    `os.wait4` gives the child's own resource usage, whereas RUSAGE_CHILDREN would report the
    largest peak of every child run so far.
    """
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"{command[0]} failed ({process.returncode}): {stderr[-2000:]}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024, stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--attributes", type=int, default=50, help="attributes per event")
    arguments = parser.parse_args()

    feed = write_feed(arguments.events, arguments.attributes)
    total = arguments.events * arguments.attributes
    cpu, elapsed, peak, stderr = measure(
        [sys.executable, "-m", "misp2sentinel", "export", "--source", str(feed), "--output", str(feed.parent / "bundle.json")],
        {"MISP2SENTINEL_NOW": "2026-02-01T00:00:00Z", "PATH": "/usr/bin:/bin"},
    )
    print(stderr.strip())
    print(f"input attributes: {total} in {arguments.events} events of {arguments.attributes}")
    print(f"wall time: {elapsed:.2f} s; CPU time: {cpu:.2f} s")
    print(f"rate: {total / cpu:,.0f} input attributes per CPU second (whole process)")
    print(f"peak resident memory: {peak:.0f} MB")


if __name__ == "__main__":
    main()
