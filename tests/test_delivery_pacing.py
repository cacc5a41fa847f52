"""Pacing: a sync sends several windows' worth of requests under the documented 100 requests per minute.

The bridge runs in-process on the stack's fake clock, which the Sentinel emulator's rate-limit window
also reads, so the limiter and the server count the same seconds and waiting costs no real time.
Two workspaces use one identity and so share one limiter, while the emulator counts per identity,
as Microsoft documents the limit ("per user").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.emulators.tls import EmulatorTLS
from tests.emulators.tokens import SigningKey
from tests.sync_stack import PROXY_AND_CA_VARIABLES, start_stack, stop_stack
from tests.test_delivery_faults import write_events

REQUESTS_PER_MINUTE = 100
WINDOW_SECONDS = 60.0
EVENTS = 25
ATTRIBUTES_PER_EVENT = 10


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_AND_CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def allowance_used(times: list[float]) -> float:
    """Return the shortest time in which the limit lets these requests start, divided by the time they took.

    The limit lets REQUESTS_PER_MINUTE requests start at once and the same number again every
    WINDOW_SECONDS, so n requests need at least (n - 1) // REQUESTS_PER_MINUTE windows. A bridge
    that uses the whole allowance scores 1.0; one that sends half as fast scores 0.5.
    """
    shortest = (len(times) - 1) // REQUESTS_PER_MINUTE * WINDOW_SECONDS
    return shortest / (times[-1] - times[0])


def requests_per_full_window(times: list[float]) -> list[int]:
    """Return the number of requests that started in each whole window from the first request on."""
    start = times[0]
    windows = int((times[-1] - start) // WINDOW_SECONDS)
    return [sum(1 for time in times if start + k * WINDOW_SECONDS <= time < start + (k + 1) * WINDOW_SECONDS) for k in range(windows)]


def test_allowance_measures() -> None:
    full_speed = [0.0] * 100 + [60.0] * 100 + [120.0] * 2
    half_speed = [0.0] * 100 + [120.0] * 100 + [240.0] * 2

    assert allowance_used(full_speed) == pytest.approx(1.0)
    assert allowance_used(half_speed) == pytest.approx(0.5)
    assert requests_per_full_window(full_speed) == [100, 100]
    assert requests_per_full_window(half_speed) == [100, 0, 100, 0]


def test_sync_paces_two_workspaces_without_429(tmp_path: Path) -> None:
    tls = EmulatorTLS.create(tmp_path / "tls")
    events = write_events(tmp_path / "events", events=EVENTS, per_event=ATTRIBUTES_PER_EVENT)
    stack = start_stack(tmp_path, tls, SigningKey.generate(), events, rate_limit=REQUESTS_PER_MINUTE, rate_window=WINDOW_SECONDS)
    try:
        stack.add_workspace("intel")
        # One object per request turns the few hundred indicators into five windows of requests.
        stack.write_config(sentinel={"batch_size": 1, "requests_per_minute": REQUESTS_PER_MINUTE})

        report = stack.sync()

        log = stack.sentinel.request_log
        times = [entry.received_at for entry in log]
        objects_per_workspace = EVENTS * ATTRIBUTES_PER_EVENT + 1
        assert report.exit_code == 0, report.summary()
        assert stack.sentinel.throttled_count == 0
        assert [entry.status for entry in log] == [200] * (2 * objects_per_workspace)
        assert {entry.workspace_id for entry in log} == set(stack.workspace_ids.values())
        assert times[-1] - times[0] >= 4 * WINDOW_SECONDS
        used = allowance_used(times)
        print(f"{len(times)} requests in {times[-1] - times[0]:.3f} s of fake time: {used:.2%} of the allowance used")
        assert used >= 0.9
        assert used <= 1.0
        assert all(count >= 0.9 * REQUESTS_PER_MINUTE for count in requests_per_full_window(times))
    finally:
        stop_stack(stack)
