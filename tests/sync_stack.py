"""A running MISP, identity provider and Sentinel on 127.0.0.1, and a configuration for them.

One fake clock drives all three emulators and the bridge: `sleep` advances it, so throttling and
backoff cost no real time. `Stack.sync()` runs the bridge in-process with that clock;
`Stack.cli()` runs the real command line in a subprocess with `MISP2SENTINEL_NOW` set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from misp2sentinel.clock import Clock
from misp2sentinel.config import load_config
from misp2sentinel.report import RunReport
from misp2sentinel.sync import run_sync
from tests.emulators.clock import FakeClock
from tests.emulators.idp import IdentityProviderEmulator
from tests.emulators.misp import MispEmulator
from tests.emulators.sentinel import SentinelEmulator
from tests.emulators.tls import EmulatorTLS
from tests.emulators.tokens import SigningKey

REPO_ROOT = Path(__file__).resolve().parents[1]
START = 1769860800  # 2026-01-31T12:00:00Z
CLIENT_SECRET = "sync-test-client-secret-7f3a9c"
MISP_KEY = "SyncTestMispKey0000000000000000000000042"


class StackClock(Clock):
    """The project's clock on the emulators' fake clock: run time, monotonic time and sleep."""

    def __init__(self, source: FakeClock) -> None:
        super().__init__()
        self.source = source
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return datetime.fromtimestamp(int(self.source()), timezone.utc)

    def monotonic(self) -> float:
        return self.source()

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds > 0:
            self.source.advance(seconds)


@dataclass
class Stack:
    tmp_path: Path
    tls: EmulatorTLS
    source: FakeClock
    misp: MispEmulator
    idp: IdentityProviderEmulator
    sentinel: SentinelEmulator
    tenant_id: str
    client_id: str
    workspace_ids: dict[str, str] = field(default_factory=dict)
    config_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def clock(self) -> StackClock:
        return StackClock(self.source)

    @property
    def config_path(self) -> Path:
        return self.tmp_path / "config.yaml"

    @property
    def state_path(self) -> Path:
        return self.tmp_path / "state.sqlite"

    def add_workspace(self, name: str, *, role: bool = True, selection: dict | None = None) -> str:
        workspace_id = self.sentinel.add_workspace(str(uuid.uuid4()), [self.client_id] if role else [])
        self.workspace_ids[name] = workspace_id
        if selection is not None:
            self.config_overrides.setdefault("selections", {})[name] = selection
        return workspace_id

    def write_config(self, **sections: Any) -> Path:
        """Write the configuration; keyword arguments replace or extend its sections."""
        selections = self.config_overrides.get("selections", {})
        config = {
            "misp": {
                "url": self.misp.url,
                "key": MISP_KEY,
                "lookback_days": 20000,
                "published_only": False,
                "fetch_chunk_size": 7,
                "list_page_size": 25,
            },
            "mapping": {"default_tlp": "green", "max_tlp": "amber"},
            "sentinel": {
                "batch_size": 100,
                "requests_per_minute": 100,
                "timeout_seconds": 5,
                "max_attempts": 4,
                "backoff_base_seconds": 1,
                "backoff_max_seconds": 10,
                "max_retry_seconds": 300,
            },
            "workspaces": [
                {
                    "name": name,
                    "workspace_id": workspace_id,
                    "tenant_id": self.tenant_id,
                    "client_id": self.client_id,
                    "client_secret": CLIENT_SECRET,
                    "authority_host": self.idp.base_url,
                    "api_base_url": self.sentinel.base_url,
                    "ca_bundle": str(self.tls.ca_bundle_path),
                    **({"selection": selections[name]} if name in selections else {}),
                }
                for name, workspace_id in self.workspace_ids.items()
            ],
            "state": {"path": str(self.state_path)},
        }
        for section, value in sections.items():
            if isinstance(value, dict) and isinstance(config.get(section), dict):
                config[section] = {**config[section], **value}
            else:
                config[section] = value
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.config_path.chmod(0o600)
        return self.config_path

    def sync(self, **options: Any) -> RunReport:
        if not self.config_path.exists():
            self.write_config()
        return run_sync(load_config(self.config_path), self.clock, **options)

    def cli(self, *arguments: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run `python -m misp2sentinel` with the configuration and the stack's current time."""
        if not self.config_path.exists():
            self.write_config()
        environment = {k: v for k, v in os.environ.items() if k not in PROXY_AND_CA_VARIABLES}
        environment["MISP2SENTINEL_NOW"] = datetime.fromtimestamp(int(self.source()), timezone.utc).isoformat()
        return subprocess.run(
            [sys.executable, "-m", "misp2sentinel", *arguments],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
            cwd=self.tmp_path,
        )

    def holdings(self, name: str = "soc") -> dict[str, dict]:
        return self.sentinel.holdings(self.workspace_ids[name])

    def upload_counts(self, name: str = "soc") -> dict[str, int]:
        return self.sentinel.upload_counts(self.workspace_ids[name])


PROXY_AND_CA_VARIABLES = (
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)


def start_stack(tmp_path: Path, tls: EmulatorTLS, signing_key: SigningKey, events_dir: Path | None, **sentinel_options) -> Stack:
    source = FakeClock(START)
    misp = MispEmulator(events_dir, api_key=MISP_KEY, clock=source).start()
    idp = IdentityProviderEmulator(tls=tls, clock=source, signing_key=signing_key).start()
    sentinel = SentinelEmulator(tls=tls, signing_key=signing_key, clock=source, wall_clock=source, **sentinel_options).start()
    tenant_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    idp.register_client(tenant_id, client_id, secret=CLIENT_SECRET)
    stack = Stack(tmp_path, tls, source, misp, idp, sentinel, tenant_id, client_id)
    stack.add_workspace("soc")
    return stack


def stop_stack(stack: Stack) -> None:
    for server in (stack.sentinel, stack.idp, stack.misp):
        server.stop()
