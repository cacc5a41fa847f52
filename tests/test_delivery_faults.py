"""The fault matrix: every delivery fault during a sync of a few hundred indicators, then one clean run.

Each case starts the MISP, identity-provider and Sentinel emulators with two workspaces that select
the same data, runs `sync` in-process on the stack's fake clock while the fault is active, clears the
fault, and runs `sync` once more. The emulator must then hold, in both workspaces, the same content
as a fault-free run. The comparison leaves out `modified`, `created` and `valid_until`, which depend
on the run time. The state must agree with the content: every held object recorded with its digest,
nothing recorded that is not held, no failed record and no pending event. A fault aimed at one workspace must
leave the other one complete after the first run.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from misp2sentinel.diff import content_digest
from misp2sentinel.state import LIVE, REVOKED, StateStore, decode_id
from tests.emulators.tls import EmulatorTLS
from tests.emulators.tokens import SigningKey
from tests.sync_stack import PROXY_AND_CA_VARIABLES, Stack, start_stack, stop_stack

# Fields that depend on the run time; the digest the bridge keeps leaves out the same three.
TIME_FIELDS = ("created", "modified", "valid_until")

EVENTS = 30
ATTRIBUTES_PER_EVENT = 10
BATCH_SIZE = 25
DATA_NAMESPACE = uuid.UUID("0b5e2a4c-7f1d-4e3a-9c8b-2d6f4a1e9b70")
FIRST_TIMESTAMP = 1764547200  # 2025-12-01T00:00:00Z, before the stack's start time


def write_events(directory: Path, events: int = EVENTS, per_event: int = ATTRIBUTES_PER_EVENT) -> Path:
    """Write `events` published MISP events of `per_event` IDS attributes each, as a folder of JSON files.

    The attributes cycle through IP addresses, domains, URLs and SHA-256 hashes, each with a fixed
    uuid and timestamp, so every run maps them to the same indicators.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for event_number in range(events):
        attributes = []
        for position in range(per_event):
            number = event_number * per_event + position
            attribute_type, value = _attribute_value(number)
            attributes.append({
                "uuid": str(uuid.uuid5(DATA_NAMESPACE, f"attribute {number}")),
                "type": attribute_type,
                "category": "Network activity",
                "value": value,
                "to_ids": True,
                "timestamp": str(FIRST_TIMESTAMP + number),
                "distribution": "5",
            })
        timestamp = str(FIRST_TIMESTAMP + 10_000 + event_number)
        event = {
            "uuid": str(uuid.uuid5(DATA_NAMESPACE, f"event {event_number}")),
            "info": f"Synthetic delivery test event {event_number}",
            "date": "2025-12-01",
            "timestamp": timestamp,
            "publish_timestamp": timestamp,
            "published": True,
            "analysis": "2",
            "threat_level_id": "2",
            "distribution": "3",
            "Orgc": {"name": "Example CERT", "uuid": "5f6e7d8c-1a2b-4c3d-9e8f-7a6b5c4d3e2f"},
            "Tag": [{"name": "tlp:green"}],
            "Attribute": attributes,
        }
        (directory / f"{event['uuid']}.json").write_text(json.dumps({"Event": event}), encoding="utf-8")
    return directory


def _attribute_value(number: int) -> tuple[str, str]:
    kind = number % 4
    if kind == 0:
        return "ip-dst", f"198.51.{100 + number // 250}.{number % 250 + 1}"
    if kind == 1:
        return "domain", f"host{number}.delivery.example.net"
    if kind == 2:
        return "url", f"https://host{number}.delivery.example.org/path/{number}"
    return "sha256", uuid.uuid5(DATA_NAMESPACE, f"hash {number}").hex * 2


def comparable(holdings: dict[str, dict]) -> dict[str, dict]:
    """Return the held objects without the fields that depend on the run time."""
    return {stix_id: {key: value for key, value in obj.items() if key not in TIME_FIELDS} for stix_id, obj in holdings.items()}


def state_disagreements(stack: Stack, name: str, state_path: Path | None = None) -> list[str]:
    """Return every way the state of workspace `name` disagrees with what the emulator holds.

    `state_path` defaults to the stack's state file.
    """
    held = stack.holdings(name)
    problems = []
    with StateStore(state_path or stack.state_path, readonly=True) as state:
        key = state.workspace_id(name)
        rows = state.connection.execute(
            "SELECT kind, stix_id, status, digest, attempts, last_error FROM indicators WHERE workspace = ?", (key,)
        ).fetchall()
        recorded = {}
        for kind, blob, status, digest, attempts, last_error in rows:
            recorded[decode_id(kind, blob)] = (status, digest, attempts, last_error)
        pending = state.pending_events(name)

    for stix_id, obj in held.items():
        if stix_id not in recorded:
            problems.append(f"{stix_id} is held but not recorded")
            continue
        status, digest, attempts, last_error = recorded[stix_id]
        expected_status = REVOKED if obj.get("revoked") else LIVE
        if status != expected_status:
            problems.append(f"{stix_id} is recorded with status {status}, expected {expected_status}")
        if digest != content_digest(obj):
            problems.append(f"{stix_id} is recorded with another content digest than the held object")
        if attempts or last_error:
            problems.append(f"{stix_id} still has {attempts} failed attempt(s): {last_error}")
    for stix_id, (status, _, _, last_error) in recorded.items():
        if stix_id not in held:
            problems.append(f"{stix_id} is recorded with status {status} ({last_error}) but not held")
    if pending:
        problems.append(f"events still pending: {sorted(pending)}")
    return problems


@dataclass
class Fault:
    """One row of the matrix: how to start the stack, break it, and clear the break."""

    name: str
    arm: Callable[[Stack], None]
    clear: Callable[[Stack], None] = lambda stack: None
    sentinel_options: dict[str, Any] = field(default_factory=dict)
    sentinel_settings: dict[str, Any] = field(default_factory=dict)
    first_exit: int = 0
    """Exit code of the run with the fault: 0 when retries absorb it."""
    scoped: bool = True
    """The fault touches only workspace soc, so intel is complete after the first run."""
    statuses: frozenset[int] = frozenset()
    """Statuses the emulator must have sent during the first run (0 is a connection reset), as evidence that the fault struck."""
    failure_text: str | None = None
    """Text that one error logged during the first run must contain."""
    stored_twice: bool = False
    """Some object must have been stored twice, because a response was lost after storing."""


def soc_path(stack: Stack) -> str:
    return f"/workspaces/{stack.workspace_ids['soc']}/"


def chosen_ids(stack: Stack, count: int) -> set[str]:
    """Return the indicator ids of the first `count` attributes of the data set."""
    return {f"indicator--{uuid.uuid5(DATA_NAMESPACE, f'attribute {number}')}" for number in range(0, count * 7, 7)}


def _sequence(*steps: Any) -> Callable[[Stack], None]:
    """Return an arm function that scripts workspace soc's next requests; "revoke" revokes every token seen so far."""

    def arm(stack: Stack) -> None:
        resolved = [stack.sentinel.revoke_tokens if step == "revoke" else step for step in steps]
        stack.sentinel.inject_sequence(resolved, path_contains=soc_path(stack))

    return arm


def _reject_records(stack: Stack) -> None:
    stack.sentinel.reject_records(chosen_ids(stack, 5), message="Error for Property=pattern: rejected by the test.")


def _reject_whole_batch(stack: Stack) -> None:
    # Every object of the first batch is rejected, so the emulator responds with 400 and an errors array.
    stack.sentinel.reject_records(lambda stix_object: True, message="Error for Property=id: rejected by the test.", count=BATCH_SIZE)


def _revoke_role_mid_run(stack: Stack) -> None:
    workspace_id = stack.workspace_ids["soc"]
    stack.sentinel.inject_sequence(
        [None, None, lambda: stack.sentinel.revoke_role(workspace_id, stack.client_id)], path_contains=soc_path(stack)
    )


def _restore_role(stack: Stack) -> None:
    stack.sentinel.grant_role(stack.workspace_ids["soc"], stack.client_id)


def _cap_body_size(stack: Stack) -> None:
    stack.sentinel.max_body_bytes = 9000


def _uncap_body_size(stack: Stack) -> None:
    stack.sentinel.max_body_bytes = None


FAULTS = [
    Fault(
        "5xx status sequence",
        _sequence(503, None, 500, 502, None, 504, 503, 503),
        # Requests run in parallel, so one batch may meet any of the six failures; enough attempts outlast them all.
        sentinel_settings={"max_attempts": 7},
        statuses=frozenset({500, 502, 503, 504}),
    ),
    Fault(
        "429 with Retry-After",
        lambda stack: stack.sentinel.inject(429, count=3, retry_after=7, path_contains=soc_path(stack)),
        statuses=frozenset({429}),
    ),
    Fault(
        "429 with the message only",
        lambda stack: stack.sentinel.inject(429, count=3, retry_after=11, path_contains=soc_path(stack)),
        sentinel_options={"retry_after_header": False},
        statuses=frozenset({429}),
    ),
    Fault(
        "rate limit of 6 requests per minute",
        lambda stack: None,
        sentinel_options={"rate_limit": 6, "rate_window": 60.0},
        sentinel_settings={"max_attempts": 6, "max_retry_seconds": 900},
        scoped=False,
        statuses=frozenset({429}),
    ),
    Fault("connection reset before storing", _sequence(None, "drop", None, "drop"), statuses=frozenset({0})),
    Fault(
        "connection reset after storing",
        _sequence(None, "drop-after", None, None, "drop-after"),
        statuses=frozenset({0}),
        stored_twice=True,
    ),
    Fault(
        "delay past the timeout before storing",
        lambda stack: stack.sentinel.delay(0.5, path_contains=soc_path(stack)),
        sentinel_settings={"timeout_seconds": 0.2},
        stored_twice=True,
    ),
    Fault(
        "delay past the timeout after storing",
        lambda stack: stack.sentinel.delay(0.5, path_contains=soc_path(stack), after_processing=True),
        sentinel_settings={"timeout_seconds": 0.2},
        stored_twice=True,
    ),
    Fault("per-record rejections", _reject_records, first_exit=1, scoped=False, failure_text="rejected by the test"),
    Fault(
        "whole batch rejected with errors",
        _reject_whole_batch,
        first_exit=1,
        scoped=False,
        statuses=frozenset({400}),
        failure_text="rejected by the test",
    ),
    Fault(
        "one object refuses its batch with 400",
        lambda stack: stack.sentinel.reject_batches(chosen_ids(stack, 1), status=400),
        first_exit=1,
        scoped=False,
        statuses=frozenset({400}),
        failure_text="rejected by Sentinel: HTTP 400",
    ),
    Fault(
        "one object refuses its batch with 500",
        lambda stack: stack.sentinel.reject_batches(chosen_ids(stack, 1), status=500),
        first_exit=1,
        scoped=False,
        statuses=frozenset({500}),
        failure_text="last error: HTTP 500",
    ),
    Fault("body over a size cap", _cap_body_size, _uncap_body_size, scoped=False, statuses=frozenset({413})),
    Fault("token revoked during the run", _sequence(None, None, "revoke"), statuses=frozenset({401})),
    Fault("injected 401 during the run", _sequence(None, 401, None), statuses=frozenset({401})),
    Fault(
        "role removed during the run",
        _revoke_role_mid_run,
        _restore_role,
        first_exit=1,
        statuses=frozenset({403}),
        failure_text="Microsoft Sentinel Contributor",
    ),
    Fault("404 during the run", _sequence(None, None, 404), first_exit=1, statuses=frozenset({404}), failure_text="workspace id"),
    Fault(
        "identity provider failure",
        lambda stack: stack.idp.inject(500, count=1),
        first_exit=1,
        scoped=False,
        failure_text="cannot get an access token",
    ),
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_AND_CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> EmulatorTLS:
    return EmulatorTLS.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def events_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_events(tmp_path_factory.mktemp("events"))


def open_stack(tmp_path: Path, tls: EmulatorTLS, signing_key: SigningKey, events_dir: Path, fault: Fault | None = None) -> Stack:
    stack = start_stack(tmp_path, tls, signing_key, events_dir, **(fault.sentinel_options if fault else {}))
    stack.add_workspace("intel")
    settings = {"batch_size": BATCH_SIZE, **(fault.sentinel_settings if fault else {})}
    # A fixed MISP link keeps the content independent of the emulator's port.
    stack.write_config(sentinel=settings, mapping={"misp_url": "https://misp.example.org"})
    return stack


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tls: EmulatorTLS, signing_key: SigningKey, events_dir: Path) -> dict[str, dict]:
    """Return what a fault-free run stores, without the run-time fields."""
    stack = open_stack(tmp_path_factory.mktemp("reference"), tls, signing_key, events_dir)
    try:
        report = stack.sync()
        assert report.exit_code == 0, report.summary()
        assert comparable(stack.holdings("intel")) == comparable(stack.holdings("soc"))
        return comparable(stack.holdings("soc"))
    finally:
        stop_stack(stack)


def test_reference_run_size(reference: dict[str, dict]) -> None:
    indicators = [obj for obj in reference.values() if obj["type"] == "indicator"]

    assert len(indicators) == EVENTS * ATTRIBUTES_PER_EVENT
    assert len(reference) == len(indicators) + 1


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
def test_fault_then_clean_run(
    fault: Fault, tmp_path: Path, tls: EmulatorTLS, signing_key: SigningKey, events_dir: Path, reference: dict[str, dict],
    caplog: pytest.LogCaptureFixture,
) -> None:
    stack = open_stack(tmp_path, tls, signing_key, events_dir, fault)
    caplog.set_level(logging.ERROR, logger="misp2sentinel")
    try:
        fault.arm(stack)
        first = stack.sync()
        stack.sentinel.wait_idle()

        assert first.exit_code == fault.first_exit, first.summary()
        assert stack.sentinel.pending_faults() == 0
        first_statuses = {entry.status for entry in stack.sentinel.request_log}
        assert fault.statuses <= first_statuses
        if fault.failure_text:
            errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
            assert any(fault.failure_text in message for message in errors), errors
        if fault.stored_twice:
            log = stack.sentinel.upload_log(stack.workspace_ids["soc"])
            assert any(sum(record.accepted for record in records) == 2 for records in log.values())
        if fault.scoped:
            assert comparable(stack.holdings("intel")) == reference
            assert state_disagreements(stack, "intel") == []

        stack.sentinel.clear_faults()
        stack.idp.clear_faults()
        fault.clear(stack)
        stack.source.advance(120)
        second = stack.sync()

        assert second.exit_code == 0, second.summary()
        for name in ("soc", "intel"):
            assert comparable(stack.holdings(name)) == reference, name
            assert state_disagreements(stack, name) == [], name
    finally:
        stop_stack(stack)

