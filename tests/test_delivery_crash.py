"""Crash test: `python -m misp2sentinel sync` killed with SIGKILL at random points, then rerun.

The emulators run in this process; the bridge runs as a subprocess. Every Sentinel upload waits a
little after it is stored and before the response is sent, so a kill often lands in the window
where Sentinel stores a batch that the state does not record yet. Kills come at random times (start-up,
listing, mapping, upload, commit) or right after a randomly chosen upload was stored.

After every kill the state must record nothing that the emulator does not hold. After the last run
of each round, the emulator must hold what a clean run stores, and the state must agree with it.
Every repeated upload of an id must be explained by a kill between the two uploads, because
nothing else in this test makes the bridge send an id twice.

The emulator's rate-limit window is scaled to half a second of real time, so restarts never wait
for a minute-long window. Set MISP2SENTINEL_CRASH_SEED to replay one sequence of kill points.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from misp2sentinel.config import SentinelSettings
from misp2sentinel.diff import content_digest
from misp2sentinel.state import LIVE, REVOKED, StateStore, decode_id
from tests.emulators.tls import EmulatorTLS
from tests.emulators.tokens import SigningKey
from tests.sync_stack import PROXY_AND_CA_VARIABLES, Stack, start_stack, stop_stack
from tests.test_delivery_faults import comparable, state_disagreements, write_events

MIN_KILLS = 20
MAX_KILLS_PER_ROUND = 8
MAX_ROUNDS = 8
BATCH_SIZE = 10
# Batches a workspace keeps in flight at once (sentinel.parallel_requests, left at its default).
IN_FLIGHT = SentinelSettings().parallel_requests
# Real seconds each upload waits between storing and responding.
UPLOAD_DELAY_SECONDS = 0.03
# Estimates for spreading kills by time over a run: start-up until the first upload, and each
# upload request, in real seconds on a 2-core test machine.
STARTUP_SECONDS = 0.5
SECONDS_PER_UPLOAD = (UPLOAD_DELAY_SECONDS + 0.02) / IN_FLIGHT
RUN_TIMEOUT_SECONDS = 30
MISP_URL = "https://misp.example.org"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_AND_CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def start_sync(stack: Stack) -> subprocess.Popen:
    environment = {key: value for key, value in os.environ.items() if key not in PROXY_AND_CA_VARIABLES}
    environment["MISP2SENTINEL_NOW"] = datetime.fromtimestamp(int(stack.source()), timezone.utc).isoformat()
    return subprocess.Popen(
        [sys.executable, "-m", "misp2sentinel", "sync", "--config", str(stack.config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        cwd=stack.tmp_path,
    )


def wait_for_kill_point(process: subprocess.Popen, stack: Stack, rng: random.Random, remaining: int) -> str:
    """Wait for a random kill point; return how it was chosen, or "" when the run ended first.

    `remaining` estimates the objects the run still has to upload, so that kill points spread
    over the run that is left rather than fall after its end.
    """
    if rng.random() < 0.5:
        latest = STARTUP_SECONDS + SECONDS_PER_UPLOAD * (remaining / BATCH_SIZE + 1)
        deadline = time.monotonic() + rng.uniform(0.05, latest)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return ""
            time.sleep(0.005)
        return "time"
    target = stack.sentinel.upload_sequence + rng.randint(1, max(remaining, 1))
    while stack.sentinel.upload_sequence < target:
        if process.poll() is not None:
            return ""
        time.sleep(0.002)
    return "upload"


def recorded_but_not_held(stack: Stack, name: str, state_path: Path) -> list[str]:
    """Return the ids the state records as sent whose content the emulator does not hold."""
    if not state_path.exists():
        return []
    held = stack.holdings(name)
    problems = []
    with StateStore(state_path, readonly=True) as state:
        if state.connection is None:
            return []
        key = state.workspace_id(name)
        if key is None:
            return []
        rows = state.connection.execute("SELECT kind, stix_id, status, digest FROM indicators WHERE workspace = ?", (key,))
        for kind, blob, status, digest in rows:
            if status not in (LIVE, REVOKED):
                continue
            stix_id = decode_id(kind, blob)
            if stix_id not in held:
                problems.append(f"{stix_id} is recorded as sent but not held")
            elif content_digest(held[stix_id]) != digest:
                problems.append(f"{stix_id} is recorded with content that is not held")
    return problems


def unexplained_uploads(stack: Stack, name: str, kill_marks: list[int]) -> list[str]:
    """Return the repeated uploads of an id that no kill between the two uploads explains.

    `kill_marks` contains the emulator's upload sequence number right after each kill, once the
    emulator had finished every request of the killed process.
    """
    problems = []
    for stix_id, records in stack.sentinel.upload_log(stack.workspace_ids[name]).items():
        accepted = [record.sequence for record in records if record.accepted]
        for earlier, later in zip(accepted, accepted[1:]):
            if not any(earlier <= mark < later for mark in kill_marks):
                problems.append(f"{stix_id} was uploaded at {earlier} and again at {later} with no kill in between")
    return problems


def repeats_per_killed_run(stack: Stack, name: str, kill_marks: list[int]) -> list[int]:
    """Return, for each killed run, how many of the ids it stored were uploaded again later.

    Only the batches in flight when the process died can be stored and not yet recorded, so no
    killed run may leave more than `IN_FLIGHT` batches to repeat.
    """
    log = stack.sentinel.upload_log(stack.workspace_ids[name])
    counts = []
    previous_mark = 0
    for mark in kill_marks:
        repeated = 0
        for records in log.values():
            accepted = [record.sequence for record in records if record.accepted]
            if any(previous_mark < sequence <= mark for sequence in accepted[:-1]):
                repeated += 1
        counts.append(repeated)
        previous_mark = mark
    return counts


def use_workspace(stack: Stack, name: str, state_path: Path) -> None:
    """Point the configuration at workspace `name` alone and at its own state file."""
    stack.workspace_ids = {name: stack.workspace_ids[name]}
    stack.write_config(
        sentinel={"batch_size": BATCH_SIZE, "timeout_seconds": 10, "max_attempts": 3, "backoff_base_seconds": 0.05, "backoff_max_seconds": 0.2},
        mapping={"misp_url": MISP_URL},
        state={"path": str(state_path)},
    )


def test_kill_at_random_points_then_rerun(tmp_path: Path) -> None:
    seed = int(os.environ.get("MISP2SENTINEL_CRASH_SEED") or random.SystemRandom().randrange(1 << 32))
    rng = random.Random(seed)
    replay = f"replay with MISP2SENTINEL_CRASH_SEED={seed}"
    tls = EmulatorTLS.create(tmp_path / "tls")
    stack = start_stack(tmp_path, tls, SigningKey.generate(), write_events(tmp_path / "events"))
    try:
        use_workspace(stack, "soc", tmp_path / "reference.sqlite")
        reference = stack.sync()
        assert reference.exit_code == 0, reference.summary()
        clean = comparable(stack.holdings("soc"))

        stack.sentinel.configure_rate_limit(100, window=0.5, clock=time.monotonic)
        stack.sentinel.delay(UPLOAD_DELAY_SECONDS, count=1_000_000, after_processing=True)

        kills: list[str] = []
        for round_number in range(MAX_ROUNDS):
            if len(kills) >= MIN_KILLS:
                break
            name = f"crash{round_number}"
            state_path = tmp_path / f"{name}.sqlite"
            stack.add_workspace(name)
            use_workspace(stack, name, state_path)
            kill_marks: list[int] = []

            while True:
                stack.source.advance(60)
                process = start_sync(stack)
                remaining = len(clean) - len(stack.holdings(name))
                killed_by = wait_for_kill_point(process, stack, rng, remaining) if len(kill_marks) < MAX_KILLS_PER_ROUND else ""
                if not killed_by:
                    _, stderr = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
                    assert process.returncode == 0, f"{replay}: {stderr}"
                    break
                process.send_signal(signal.SIGKILL)
                process.communicate(timeout=RUN_TIMEOUT_SECONDS)
                stack.sentinel.wait_idle()
                kill_marks.append(stack.sentinel.upload_sequence)
                kills.append(killed_by)
                assert recorded_but_not_held(stack, name, state_path) == [], replay

            assert comparable(stack.holdings(name)) == clean, replay
            assert state_disagreements(stack, name, state_path) == [], replay
            assert unexplained_uploads(stack, name, kill_marks) == [], replay
            repeats = repeats_per_killed_run(stack, name, kill_marks)
            assert max(repeats, default=0) <= IN_FLIGHT * BATCH_SIZE, f"{replay}: {repeats}"
            print(f"round {round_number}: {len(kill_marks)} kills, ids repeated per killed run: {repeats}")

        assert len(kills) >= MIN_KILLS, f"{replay}: only {len(kills)} kills in {MAX_ROUNDS} rounds"
        print(f"seed {seed}: {kills.count('time')} kills at a random time, {kills.count('upload')} right after a stored upload")
    finally:
        stop_stack(stack)
