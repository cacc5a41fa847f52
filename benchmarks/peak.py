"""Run a module as `python -m MODULE ARGS...` would, then print its peak resident memory to stderr.

    python benchmarks/peak.py misp2sentinel export --source FEED --output FILE

The peak is VmHWM from /proc/self/status, which counts this process's memory since its exec
only, printed as `benchmark-peak-kb N` for `harness.measure`.
"""

import atexit
import runpy
import sys


def print_peak_memory() -> None:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                print(f"benchmark-peak-kb {line.split()[1]}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    atexit.register(print_peak_memory)
    module = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
