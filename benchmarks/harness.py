"""Measurement and emulator set-up shared by the benchmarks.

The emulators come from the test suite (`tests/emulators/`) and listen on 127.0.0.1 only. The
Sentinel emulator's rate limit runs on a scaled clock, `time.monotonic() * scale`, so a window of
60 emulated seconds passes in 60 / scale real seconds. The bridge runs with the same scaled clock
(see `sync_child.py`), so its pacing, backoff and CPU time are all seen at the same speed.

The MISP emulator loads its events with Python's cyclic garbage collector paused, then moves
them to the collector's permanent generation (`gc.freeze`). A store of a million indicators
contains millions of objects, and every full collection would otherwise walk them all, which
about doubles the load time and the time to render each response.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.emulators.idp import IdentityProviderEmulator  # noqa: E402
from tests.emulators.misp import MispEmulator  # noqa: E402
from tests.emulators.sentinel import SentinelEmulator  # noqa: E402
from tests.emulators.tls import EmulatorTLS  # noqa: E402
from tests.emulators.tokens import SigningKey  # noqa: E402

MISP_KEY = "BenchmarkMispKey000000000000000000000001"
CLIENT_SECRET = "benchmark-client-secret"
# Microsoft's documented limit of the upload APIs: 100 requests per minute per identity.
RATE_LIMIT = 100
RATE_WINDOW_SECONDS = 60.0
PROXY_AND_CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "HTTP_PROXY", "HTTPS_PROXY",
                          "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy")


PEAK_PREFIX = "benchmark-peak-kb "


@dataclass
class Usage:
    """Resource use of one finished child process."""

    cpu: float
    wall: float
    peak_mb: float
    stderr: str
    exit_code: int


def child_environment(**extra: str) -> dict[str, str]:
    """Return this environment without proxy and CA variables, plus `extra`, for a child on 127.0.0.1."""
    environment = {key: value for key, value in os.environ.items() if key not in PROXY_AND_CA_VARIABLES}
    environment["PYTHONPATH"] = str(REPO_ROOT)
    environment.update(extra)
    return environment


def measure(command: list[str], environment: dict | None = None, *, check: bool = True) -> Usage:
    """Run a command and return the CPU time, wall time and peak resident memory of that process alone.

    `os.wait4` gives the child's own resource usage, whereas RUSAGE_CHILDREN would report the
    largest peak of every child run so far. CPU time is user plus system time, start-up included.
    The child's `ru_maxrss` also counts the memory of this process, which the child shares between
    fork and exec, so a child that prints `benchmark-peak-kb N` (its VmHWM, see `peak.py`) is
    measured by that line instead.
    """
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=environment, cwd=REPO_ROOT)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if check and process.returncode != 0:
        sys.exit(f"{command[0]} failed ({process.returncode}): {stderr[-3000:]}")
    peak_kb = usage.ru_maxrss
    lines = stderr.splitlines()
    for line in reversed(lines):
        if line.startswith(PEAK_PREFIX):
            peak_kb = int(line.split()[1])
            lines.remove(line)
            break
    return Usage(usage.ru_utime + usage.ru_stime, wall, peak_kb / 1024, "\n".join(lines), process.returncode)


def load_frozen(misp: MispEmulator, events: Path) -> int:
    """Load a folder of events into the MISP emulator with the garbage collector paused, then freeze them.

    The loaded rows live as long as this process, so the collector gains nothing by visiting
    them again. Returns the number of events stored.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        stored = misp.load_events(events)
    finally:
        if was_enabled:
            gc.enable()
    gc.freeze()
    return stored


class ScaledMonotonic:
    """`time.monotonic()` running `scale` times faster; every process that uses it agrees on it."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self) -> float:
        return time.monotonic() * self.scale


class Emulators:
    """A MISP emulator serving a feed folder, an identity provider and a Sentinel emulator with one workspace."""

    def __init__(self, folder: Path, events: Path, *, time_scale: float) -> None:
        self.folder = folder
        self.tls = EmulatorTLS.create(folder / "tls")
        key = SigningKey.generate()
        self.tenant_id, self.client_id = str(uuid.uuid4()), str(uuid.uuid4())
        self.misp = MispEmulator(api_key=MISP_KEY)
        load_frozen(self.misp, events)
        self.idp = IdentityProviderEmulator(tls=self.tls, signing_key=key)
        self.sentinel = SentinelEmulator(tls=self.tls, signing_key=key, clock=ScaledMonotonic(time_scale),
                                         rate_limit=RATE_LIMIT, rate_window=RATE_WINDOW_SECONDS)
        self.first_event_page: float | None = None
        self._wrap_misp_dispatch()

    def _wrap_misp_dispatch(self) -> None:
        """Note the real monotonic time at which MISP first returned a page of full events."""
        dispatch = self.misp.dispatch

        def timed(request):
            response = dispatch(request)
            try:
                body = json.loads(request.body or b"null")
            except ValueError:
                body = None
            listing = isinstance(body, dict) and body.get("metadata")
            if self.first_event_page is None and "restSearch" in request.path and not listing and response.status == 200:
                self.first_event_page = time.monotonic()
            return response

        self.misp.dispatch = timed

    def __enter__(self) -> Emulators:
        self.misp.start()
        self.idp.start()
        self.sentinel.start()
        self.idp.register_client(self.tenant_id, self.client_id, secret=CLIENT_SECRET)
        self.workspace_id = self.sentinel.add_workspace(str(uuid.uuid4()), [self.client_id])
        return self

    def __exit__(self, *exc_info) -> None:
        for server in (self.sentinel, self.idp, self.misp):
            server.stop()

    def write_config(self, state: Path, **sections: dict) -> Path:
        """Write a configuration for these emulators; keyword arguments extend its sections."""
        config = {
            "misp": {"url": self.misp.url, "key": MISP_KEY, "lookback_days": 3650, "published_only": False},
            "mapping": {"max_tlp": "amber"},
            "sentinel": {"requests_per_minute": RATE_LIMIT, "batch_size": 100},
            "workspaces": [{
                "name": "bench",
                "workspace_id": self.workspace_id,
                "tenant_id": self.tenant_id,
                "client_id": self.client_id,
                "client_secret": CLIENT_SECRET,
                "authority_host": self.idp.base_url,
                "api_base_url": self.sentinel.base_url,
                "ca_bundle": str(self.tls.ca_bundle_path),
            }],
            "state": {"path": str(state)},
            "reporting": {"report_path": str(state.parent / "last-run.json")},
        }
        for section, value in sections.items():
            config[section] = {**config.get(section, {}), **value}
        path = state.parent / "config.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        path.chmod(0o600)
        return path
