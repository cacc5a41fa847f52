"""Fixtures for command-line tests against the MISP, identity-provider and Sentinel emulators.

Import the fixtures a test module needs by name; `invoke` runs the real command line in-process
with the stack's current time as the run time, so a test reads exit code, stdout and stderr.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from misp2sentinel.cli import cli
from tests.emulators.tls import EmulatorTLS
from tests.emulators.tokens import SigningKey
from tests.sync_stack import PROXY_AND_CA_VARIABLES, REPO_ROOT, Stack, start_stack, stop_stack

EXAMPLE_FEED = REPO_ROOT / "examples" / "feed"
PHISHING_EVENT = "87e64764-5f69-59b6-97b0-44dd8a14d25a"
# Tests that revoke set the guard explicitly; these values keep it out of the way.
NO_GUARD = {"guard_share": 1.0, "guard_min": 1000}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in PROXY_AND_CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MISP2SENTINEL_LOG_FORMAT", raising=False)


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return EmulatorTLS.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def signing_key():
    return SigningKey.generate()


@pytest.fixture
def make_stack(tmp_path, tls, signing_key):
    stacks = []

    def make(events_dir: Path | None = EXAMPLE_FEED, **sentinel_options) -> Stack:
        stack = start_stack(tmp_path, tls, signing_key, events_dir, **sentinel_options)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stop_stack(stack)


@pytest.fixture
def stack(make_stack) -> Stack:
    return make_stack()


def invoke(stack: Stack, *arguments: str, env: dict | None = None) -> Result:
    """Run the command line in-process with the stack's time as MISP2SENTINEL_NOW."""
    if not stack.config_path.exists():
        stack.write_config()
    now = datetime.fromtimestamp(int(stack.source()), timezone.utc).isoformat()
    return CliRunner().invoke(cli, list(arguments), env={"MISP2SENTINEL_NOW": now, **(env or {})}, catch_exceptions=False)
