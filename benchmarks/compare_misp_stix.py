"""Compare the export's rate with misp-stix's on the same generated events; prints both figures.

    python3 -m venv /tmp/misp-stix && /tmp/misp-stix/bin/pip install misp-stix
    python benchmarks/compare_misp_stix.py --misp-stix-python /tmp/misp-stix/bin/python

misp-stix (MISP's own converter) runs in its own virtual environment, in a subprocess that
converts every event with `MISPtoSTIX21Parser`; misp2sentinel runs `python -m misp2sentinel
export` on the same feed. Both are measured as input attributes per CPU second of the whole
process, start-up and imports included, with peak resident memory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_speed import measure, write_feed  # noqa: E402

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
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--misp-stix-python", required=True, help="Python interpreter of a virtual environment with misp-stix")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--attributes", type=int, default=50, help="attributes per event")
    arguments = parser.parse_args()

    feed = write_feed(arguments.events, arguments.attributes)
    total = arguments.events * arguments.attributes

    theirs = measure([arguments.misp_stix_python, "-c", MISP_STIX_SCRIPT, str(feed)])
    ours = measure(
        [sys.executable, "-m", "misp2sentinel", "export", "--source", str(feed), "--output", str(feed.parent / "bundle.json")],
        {"MISP2SENTINEL_NOW": "2026-02-01T00:00:00Z", "PATH": "/usr/bin:/bin"},
    )
    print(f"input attributes: {total} in {arguments.events} events of {arguments.attributes}")
    for name, (cpu, wall, peak, _) in (("misp-stix", theirs), ("misp2sentinel", ours)):
        print(f"{name}: {total / cpu:,.0f} attributes per CPU second ({cpu:.2f} s CPU, {wall:.2f} s wall, {peak:.0f} MB peak)")
    print(f"ratio: {theirs[0] / ours[0]:.1f} times misp-stix's rate")


if __name__ == "__main__":
    main()
