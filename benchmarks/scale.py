"""Measure misp2sentinel at scale on synthetic MISP data and print the figures as tables.

    python benchmarks/scale.py --quick                      # a minute or two
    python benchmarks/scale.py --misp-stix-python /tmp/mstix/bin/python --full

Four sections, each selectable with `--only`:

* **export**: `python -m misp2sentinel export` on feeds of many events (50 attributes on average)
  and on one huge event. It reports input attributes per CPU second of the whole process (start-up
  included, measured with `os.wait4`), peak resident memory, memory per attribute, and CPU
  microseconds per attribute to show whether time grows linearly. With `--misp-stix-python`,
  misp-stix's `MISPtoSTIX21Parser` converts the same events in its own virtual environment, and
  the ratio of the two rates is printed.
* **upload**: a sync from the MISP emulator into the Sentinel emulator, whose 100-requests-per-60-s
  limit runs on a clock `--time-scale` times faster than real time, as does the bridge's. It
  reports the requests, their share of what the limit allows over the same span, the 429
  responses, and the real seconds from MISP's first page of events to the first upload.
* **state**: fills a state of `--state-indicators` indicators with one sync whose uploads are
  acknowledged in-process, then times a sync with nothing changed and a `sync --full` against the
  emulators. It reports the upload requests each made, the CPU time the emulators spent serving
  it (they run in this process) and the state file's bytes per indicator. Every run lists and
  fetches its events through the MISP emulator. With `--state-events-from-feed` the first sync
  and `sync --full` read the fetched events from the feed folder instead, which leaves the
  emulator's rendering and the HTTP transfer out of the figures.

Generated data goes to a temporary folder under /tmp (or `--work-dir`), never into the checkout.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic  # noqa: E402
from harness import RATE_LIMIT, RATE_WINDOW_SECONDS, Emulators, child_environment, measure  # noqa: E402

HERE = Path(__file__).resolve().parent

MISP_STIX_SCRIPT = """
import json, sys
from pathlib import Path
from misp_stix_converter import MISPtoSTIX21Parser
count = 0
for path in sorted(Path(sys.argv[1]).glob("*.json")):
    if path.name == "manifest.json":
        continue
    parser = MISPtoSTIX21Parser()
    parser.parse_misp_event(json.loads(path.read_text()))
    count += len(parser.stix_objects)
print(count, file=sys.stderr)
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("benchmark-peak-kb", line.split()[1], file=sys.stderr)
"""

PRESETS = {
    "quick": {"export_sizes": [1_000, 10_000, 100_000], "huge_sizes": [10_000, 100_000], "upload_attributes": 60_000,
              "state_indicators": 100_000},
    "full": {"export_sizes": [1_000, 10_000, 100_000, 1_000_000], "huge_sizes": [10_000, 100_000, 1_000_000],
             "upload_attributes": 250_000, "state_indicators": 1_000_000},
}


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Print a Markdown table, ready to paste into docs/performance.md."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" if index else "---" for index in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    sys.stdout.flush()


def feed_for(work: Path, attributes: int, mean: int | None, seed: int) -> tuple[Path, int]:
    shape = "huge" if mean is None else f"mean{mean}"
    folder = work / f"feed-{shape}-{attributes}"
    if not (folder / "manifest.json").exists():
        synthetic.write_feed(folder, synthetic.generate(attributes, seed=seed, mean=mean))
    events = len(json.loads((folder / "manifest.json").read_text()))
    return folder, events


# -- export


def run_export(arguments, work: Path) -> None:
    environment = child_environment(MISP2SENTINEL_NOW=synthetic.NOW_TEXT)
    rows = []
    cases = [(size, 50) for size in arguments.export_sizes] + [(size, None) for size in arguments.huge_sizes]
    for attributes, mean in cases:
        feed, events = feed_for(work, attributes, mean, arguments.seed)
        ours = measure([sys.executable, str(HERE / "peak.py"), "misp2sentinel", "export", "--source", str(feed), "--output",
                        str(work / "bundle.json")], environment)
        (work / "bundle.json").unlink(missing_ok=True)
        written = ours.stderr.split(" written")[0].rsplit(" ", 1)[-1] if " written" in ours.stderr else "?"
        row = [
            "one event" if mean is None else f"{events:,} events",
            f"{attributes:,}",
            written,
            f"{attributes / ours.cpu:,.0f}",
            f"{ours.cpu * 1e6 / attributes:.1f}",
            f"{ours.peak_mb:.0f}",
            f"{ours.peak_mb * 1024 * 1024 / attributes:,.0f}",
        ]
        if arguments.misp_stix_python and attributes <= arguments.misp_stix_max:
            theirs = measure([arguments.misp_stix_python, "-c", MISP_STIX_SCRIPT, str(feed)])
            row += [f"{attributes / theirs.cpu:,.0f}", f"{theirs.peak_mb:.0f}", f"{theirs.cpu / ours.cpu:.1f}"]
        else:
            row += ["", "", ""]
        rows.append(row)
        print(f"export {row[0]}, {attributes:,} attributes: {ours.cpu:.2f} s CPU, {ours.wall:.2f} s wall", file=sys.stderr)
    print_table(
        "Export (python -m misp2sentinel export, whole process)",
        ["input", "attributes", "objects written", "attributes / CPU s", "CPU µs / attribute", "peak MB",
         "peak bytes / attribute", "misp-stix attributes / CPU s", "misp-stix peak MB", "ratio"],
        rows,
    )


# -- upload


def upload_figures(emulators: Emulators, scale: float) -> dict:
    uploads = [entry for entry in emulators.sentinel.request_log if entry.method == "POST" and entry.workspace_id]
    accepted = [entry for entry in uploads if entry.status == 200]
    throttled = sum(1 for entry in uploads if entry.status == 429)
    figures = {"requests": len(accepted), "throttled": throttled, "share": None, "first_upload_after_page": None}
    if accepted and emulators.first_event_page is not None:
        figures["first_upload_after_page"] = accepted[0].received_at / scale - emulators.first_event_page
    if len(accepted) > RATE_LIMIT:
        # With a sliding window the first RATE_LIMIT requests may go at once, and each further
        # RATE_LIMIT requests need one more window. That is the shortest span the limit allows.
        allowed_span = (math.ceil(len(accepted) / RATE_LIMIT) - 1) * RATE_WINDOW_SECONDS
        span = accepted[-1].received_at - accepted[0].received_at
        figures["share"] = allowed_span / span if span > 0 else None
        figures["span"] = span
    return figures


def run_upload(arguments, work: Path) -> None:
    feed, events = feed_for(work, arguments.upload_attributes, 50, arguments.seed + 1)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=work))
    with Emulators(folder, feed, time_scale=arguments.time_scale) as emulators:
        config = emulators.write_config(folder / "state.sqlite")
        usage = measure([sys.executable, str(HERE / "sync_child.py"), str(config), str(folder / "report.json"),
                         "--time-scale", str(arguments.time_scale)],
                        child_environment(MISP2SENTINEL_NOW=synthetic.NOW_TEXT))
        figures = upload_figures(emulators, arguments.time_scale)
    report = json.loads((folder / "report.json").read_text())
    share = f"{figures['share']:.1%}" if figures["share"] is not None else "n/a"
    first = f"{figures['first_upload_after_page']:.2f}" if figures["first_upload_after_page"] is not None else "n/a"
    print_table(
        f"Upload (Sentinel emulator, {RATE_LIMIT} requests per {RATE_WINDOW_SECONDS:.0f} s on a clock "
        f"{arguments.time_scale:g} times real time)",
        ["attributes", "events", "objects sent", "requests", "share of the rate ceiling", "429 responses",
         "s from first MISP page to first upload", "bridge CPU s", "wall s"],
        [[f"{arguments.upload_attributes:,}", f"{events:,}", f"{report['outcomes'].get('created', 0):,}",
          f"{figures['requests']:,}", share, str(figures["throttled"]), first, f"{usage.cpu:.1f}", f"{usage.wall:.1f}"]],
    )
    if report["exit_code"]:
        print(f"the upload sync exited {report['exit_code']}: {report['summary']}", file=sys.stderr)


# -- state


def state_size(path: Path) -> tuple[int, int, int]:
    """Return (bytes of the state file after a checkpoint, rows, live indicators)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    rows = db.execute("SELECT count(*) FROM indicators").fetchone()[0]
    live = db.execute("SELECT count(*) FROM indicators WHERE status = 0 AND kind = 0").fetchone()[0]
    db.close()
    return path.stat().st_size, rows, live


def run_state(arguments, work: Path) -> None:
    # About 55% of the generated attributes become indicators (IDS and of a mapped type).
    attributes = int(arguments.state_indicators / 0.55)
    feed, events = feed_for(work, attributes, 50, arguments.seed + 2)
    folder = Path(tempfile.mkdtemp(prefix="state-", dir=work))
    environment = child_environment(MISP2SENTINEL_NOW=synthetic.NOW_TEXT)
    rows = []
    started = time.perf_counter()
    with Emulators(folder, feed, time_scale=1) as emulators:
        print(f"MISP emulator loaded {events:,} events in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        state = folder / "state.sqlite"
        config = emulators.write_config(state)
        child = [sys.executable, str(HERE / "sync_child.py"), str(config)]
        from_feed = ["--events-from", str(feed)] if arguments.state_events_from_feed else []
        steps = [
            ("first sync, uploads acknowledged in-process", ["--acknowledge", *from_feed]),
            ("sync, nothing changed", []),
            ("sync --full, nothing changed", ["--full", *from_feed]),
        ]
        for number, (label, options) in enumerate(steps):
            before = len(emulators.sentinel.request_log)
            report_path = folder / f"report-{number}.json"
            # The emulators run in this process, so its CPU time during the run is theirs.
            emulator_cpu = time.process_time()
            usage = measure([*child, str(report_path), *options], environment, check=False)
            emulator_cpu = time.process_time() - emulator_cpu
            uploads = len([entry for entry in emulators.sentinel.request_log[before:] if entry.method == "POST"])
            summary = json.loads(report_path.read_text())["summary"] if report_path.exists() else usage.stderr[-300:]
            rows.append([label, f"{usage.wall:.1f}", f"{usage.cpu:.1f}", f"{usage.peak_mb:.0f}", f"{emulator_cpu:.1f}",
                         str(uploads), str(usage.exit_code), summary[:200]])
            print(f"{label}: {usage.wall:.1f} s wall, {usage.cpu:.1f} s CPU, emulators {emulator_cpu:.1f} s CPU, "
                  f"exit {usage.exit_code}: {summary}", file=sys.stderr)
    size, row_count, live = state_size(state)
    source = "events read from the feed folder" if arguments.state_events_from_feed else "MISP emulator"
    print_table(
        f"Sync over a large state ({attributes:,} attributes in {events:,} events, {source})",
        ["run", "wall s", "bridge CPU s", "peak MB", "emulator CPU s", "upload requests", "exit", "summary"],
        rows,
    )
    print_table(
        "State file",
        ["live indicators", "rows", "bytes", "bytes / live indicator"],
        [[f"{live:,}", f"{row_count:,}", f"{size:,}", f"{size / max(live, 1):.0f}"]],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", dest="preset", action="store_const", const="quick", help="the sizes of a quick run (default)")
    parser.add_argument("--full", dest="preset", action="store_const", const="full", help="the sizes of the documented full run")
    parser.add_argument("--only", action="append", choices=("export", "upload", "state"), help="run only this section; repeatable")
    parser.add_argument("--export-sizes", type=int, nargs="+", help="attribute totals of the many-event feeds")
    parser.add_argument("--huge-sizes", type=int, nargs="+", help="attribute counts of the single-event feeds")
    parser.add_argument("--misp-stix-python", help="Python interpreter of a virtual environment with misp-stix; without it that column is empty")
    parser.add_argument("--misp-stix-max", type=int, default=100_000, help="largest input converted with misp-stix (default: 100000 attributes)")
    parser.add_argument("--upload-attributes", type=int, help="attributes of the upload section's feed")
    parser.add_argument("--time-scale", type=float, default=3.0, help="speed of the rate-limit clock relative to real time (default: 3)")
    parser.add_argument("--state-indicators", type=int, help="live indicators of the state section")
    parser.add_argument("--state-events-from-feed", action="store_true",
                        help="in the state section, let the first sync and `sync --full` read the fetched events from the "
                             "feed folder instead of the MISP emulator (listing still goes to the emulator)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated data (default: 7)")
    parser.add_argument("--work-dir", type=Path, help="folder for generated data, kept and reused (default: a new folder under /tmp, removed at the end)")
    arguments = parser.parse_args()
    for key, value in PRESETS[arguments.preset or "quick"].items():
        if getattr(arguments, key) is None:
            setattr(arguments, key, value)
    if arguments.misp_stix_python and not Path(arguments.misp_stix_python).exists():
        print(f"{arguments.misp_stix_python} not found: the misp-stix columns stay empty", file=sys.stderr)
        arguments.misp_stix_python = None

    work = arguments.work_dir or Path(tempfile.mkdtemp(prefix="misp2sentinel-scale-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    sections = arguments.only or ["export", "upload", "state"]
    try:
        if "export" in sections:
            run_export(arguments, work)
        if "upload" in sections:
            run_upload(arguments, work)
        if "state" in sections:
            run_state(arguments, work)
    finally:
        if arguments.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
