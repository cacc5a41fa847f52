"""Background uploads: each workspace sends from its own thread, identities upload in parallel.

The stack tests run the bridge in-process against the MISP, identity-provider and Sentinel
emulators on the stack's fake clock. Workspaces get a second identity (another app registration in
the same tenant) where the test needs two rate limits. The unit tests drive `RateLimiter` and
`BatchSender` with fake clocks and fake uploads. Real-time waits last half a second at most; the
crash test also starts the bridge twice as a subprocess.
"""

from __future__ import annotations

import json

import inspect
import os
import signal
import threading
import time
import uuid
from concurrent.futures import CancelledError
from pathlib import Path

import pytest
import yaml

from misp2sentinel.config import load_config
from misp2sentinel.errors import Interrupted, WorkspaceError
from misp2sentinel.sentinel.auth import TokenProvider, make_session
from misp2sentinel.sentinel.pacing import WINDOW_EDGE_MARGIN_SECONDS, RateLimiter
from misp2sentinel.state import StateStore
from misp2sentinel.sync import run_sync
from misp2sentinel.sync.sender import MAX_PENDING_BATCHES, BatchSender, SenderGroup
from tests.emulators.clock import FakeClock
from tests.stack_fixtures import clean_environment, make_stack, signing_key, tls  # noqa: F401
from tests.sync_stack import Stack, StackClock
from tests.test_delivery_crash import recorded_but_not_held, repeats_per_killed_run, start_sync, unexplained_uploads
from tests.test_delivery_faults import comparable, state_disagreements, write_events

WINDOW_SECONDS = 60.0
SECOND_SECRET = "parallel-test-second-secret-4b8e1d"


@pytest.fixture
def events(tmp_path: Path) -> Path:
    # 40 indicators per workspace: eight batches of five.
    return write_events(tmp_path / "events", events=8, per_event=5)


def add_identity_workspace(stack: Stack, name: str, *, role: bool = True) -> str:
    """Add workspace `name` that uploads with its own app registration; return its client id."""
    client_id = str(uuid.uuid4())
    stack.idp.register_client(stack.tenant_id, client_id, secret=SECOND_SECRET)
    stack.workspace_ids[name] = stack.sentinel.add_workspace(str(uuid.uuid4()), [client_id] if role else [])
    stack.config_overrides.setdefault("identities", {})[name] = client_id
    return client_id


def write_config(stack: Stack, **sections) -> None:
    """Write the stack's configuration with each workspace's own identity and the given sections."""
    path = stack.write_config(**sections)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    identities = stack.config_overrides.get("identities", {})
    for workspace in config["workspaces"]:
        if workspace["name"] in identities:
            workspace["client_id"] = identities[workspace["name"]]
            workspace["client_secret"] = SECOND_SECRET
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


def upload_log(stack: Stack) -> list:
    return [entry for entry in stack.sentinel.request_log if entry.object_count is not None]


def names_in_order(stack: Stack) -> list[str]:
    """Return the workspace name of every request, in the order the emulator responded to them."""
    by_id = {workspace_id: name for name, workspace_id in stack.workspace_ids.items()}
    return [by_id[entry.workspace_id] for entry in stack.sentinel.request_log]


def max_in_any_window(times: list[float], window: float) -> int:
    """Return the largest number of times that fall within one window, as the emulator counts them."""
    ordered = sorted(times)
    return max((sum(1 for other in ordered if start <= other < start + window) for start in ordered), default=0)


def live_indicators(stack: Stack, name: str) -> int:
    with StateStore(stack.state_path, readonly=True) as state:
        return state.live_count(name)


# Workspaces with different identities


def test_identities_upload_in_parallel(make_stack, events):
    stack = make_stack(events)
    add_identity_workspace(stack, "intel")
    write_config(stack, sentinel={"batch_size": 5, "parallel_requests": 1})
    # Soc's first request is held for half a second; intel's uploads go on meanwhile.
    stack.sentinel.delay(0.5, path_contains=stack.workspace_ids["soc"])

    report = stack.sync()

    order = names_in_order(stack)
    assert report.exit_code == 0, report.summary()
    assert order.count("soc") == order.count("intel") == 9
    # Before the emulator responded to soc's first request, intel sent the batches the main thread queued
    # until soc's queue was full.
    assert order.index("soc") == MAX_PENDING_BATCHES
    assert set(order[:MAX_PENDING_BATCHES]) == {"intel"}
    assert comparable(stack.holdings("soc")) == comparable(stack.holdings("intel"))
    assert state_disagreements(stack, "soc") == []
    assert state_disagreements(stack, "intel") == []


def test_workspace_keeps_two_requests_in_flight(make_stack, events, tmp_path):
    stack = make_stack(events)
    write_config(stack, sentinel={"batch_size": 5, "parallel_requests": 2})
    planned = tmp_path / "planned.json"
    stack.sync(dry_run=True, output=str(planned))
    planned_order = [item["id"] for item in json.loads(planned.read_text(encoding="utf-8"))["objects"]]
    # The first request to arrive is held for half a second, so the other thread's batches overtake
    # it. One request at a time would store every batch in the planned order.
    stack.sentinel.delay(0.5, path_contains=stack.workspace_ids["soc"])

    report = stack.sync()

    stored_order = list(stack.holdings("soc"))
    assert report.exit_code == 0, report.summary()
    assert sorted(stored_order) == sorted(planned_order)
    assert stored_order != planned_order
    assert state_disagreements(stack, "soc") == []
    assert live_indicators(stack, "soc") == len([stix_id for stix_id in stored_order if stix_id.startswith("indicator--")])


def test_identities_keep_own_limits(make_stack, events):
    stack = make_stack(events, rate_limit=3, rate_window=WINDOW_SECONDS)
    add_identity_workspace(stack, "intel")
    write_config(stack, sentinel={"batch_size": 5, "requests_per_minute": 3})

    report = stack.sync()

    log = upload_log(stack)
    assert report.exit_code == 0, report.summary()
    assert stack.sentinel.throttled_count == 0
    assert [entry.status for entry in log] == [200] * 18
    for name in ("soc", "intel"):
        times = [entry.received_at for entry in log if entry.workspace_id == stack.workspace_ids[name]]
        # The fake clock moves for both threads when either waits, so only the bound is exact.
        assert max_in_any_window(times, WINDOW_SECONDS) <= 3


def test_failed_workspace_does_not_stop_other(make_stack, events):
    stack = make_stack(events)
    add_identity_workspace(stack, "blocked", role=False)
    write_config(stack, sentinel={"batch_size": 5})

    report = stack.sync()

    order = names_in_order(stack)
    assert report.exit_code == 1
    assert report.failures["workspace"] == 1
    assert "Microsoft Sentinel Contributor" in report.failure_messages[0]
    # The 403 halts blocked's sender: beyond the requests already in flight (two by default),
    # the batches it had queued never start.
    assert order.count("blocked") <= 2
    assert order.count("soc") == 9
    assert stack.holdings("blocked") == {}
    assert state_disagreements(stack, "soc") == []
    assert live_indicators(stack, "blocked") == 0

    stack.sentinel.grant_role(stack.workspace_ids["blocked"], stack.config_overrides["identities"]["blocked"])
    second = stack.sync()
    assert second.exit_code == 0, second.summary()
    assert comparable(stack.holdings("blocked")) == comparable(stack.holdings("soc"))
    assert state_disagreements(stack, "blocked") == []


# Workspaces that share an identity


def test_shared_identity_stays_under_limit(make_stack, events):
    stack = make_stack(events, rate_limit=4, rate_window=WINDOW_SECONDS)
    stack.add_workspace("intel")
    write_config(stack, sentinel={"batch_size": 5, "requests_per_minute": 4})

    report = stack.sync()

    log = upload_log(stack)
    times = [entry.received_at for entry in log]
    assert report.exit_code == 0, report.summary()
    assert stack.sentinel.throttled_count == 0
    assert [entry.status for entry in log] == [200] * 18
    assert max_in_any_window(times, WINDOW_SECONDS) == 4
    # 18 requests at 4 per window need at least four waits of a window.
    assert times[-1] - times[0] >= 4 * WINDOW_SECONDS
    assert state_disagreements(stack, "soc") == []
    assert state_disagreements(stack, "intel") == []


def test_token_provider_shared_by_threads(make_stack, events):
    stack = make_stack(events)
    write_config(stack)
    workspace = load_config(stack.config_path).workspaces[0]
    provider = TokenProvider(workspace, make_session(workspace.ca_bundle, workspace.verify_tls))
    barrier = threading.Barrier(6)
    tokens = []

    def fetch() -> None:
        barrier.wait()
        tokens.append(provider.token())

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(tokens) == 6
    assert len(set(tokens)) == 1
    assert stack.idp.token_request_counts()[stack.client_id] == 1


# Stopping and crashing


def wait_for_stop_event(timeout: float = 5.0) -> None:
    """Wait until the sync's SIGTERM handler has set its stop event."""
    handler = signal.getsignal(signal.SIGTERM)
    stop = inspect.getclosurevars(handler).nonlocals["stop"]
    if not stop.wait(timeout):
        raise AssertionError("the sync did not set its stop event after SIGTERM")


def send_sigterm_to_sync() -> None:
    handler = signal.getsignal(signal.SIGTERM)
    if getattr(handler, "__name__", None) != "request_stop":
        raise AssertionError(f"the sync's SIGTERM handler is not installed, found {handler!r}")
    os.kill(os.getpid(), signal.SIGTERM)
    wait_for_stop_event()


def test_signal_starts_no_new_batch(make_stack, events):
    stack = make_stack(events)
    # One request at a time, so that the counts below are exact.
    write_config(stack, sentinel={"batch_size": 5, "parallel_requests": 1})
    # SIGTERM arrives while the second batch is in flight, with the next batches queued behind it.
    stack.sentinel.inject_sequence([None, send_sigterm_to_sync])

    with pytest.raises(Interrupted) as stopped:
        stack.sync()

    assert "stopped by a signal" in str(stopped.value)
    assert len(upload_log(stack)) == 2
    # The batch in flight at the signal was recorded; the queued ones were neither sent nor recorded.
    assert len(stack.holdings()) == 10
    assert state_disagreements(stack, "soc") == []

    resumed = stack.sync()

    assert resumed.exit_code == 0, resumed.summary()
    assert resumed.outcomes["created"] == 31
    assert set(stack.upload_counts().values()) == {1}
    assert state_disagreements(stack, "soc") == []


def test_late_signal_keeps_cursor(make_stack, events):
    stack = make_stack(events)
    # No look-back, so an event that the cursor passed is never fetched again.
    write_config(stack, sentinel={"batch_size": 5, "parallel_requests": 1}, misp={"overlap_seconds": 0})
    # SIGTERM arrives with the sixth request of nine, once every event was planned and the last
    # batches wait in the queue.
    stack.sentinel.inject_sequence([None] * 5 + [send_sigterm_to_sync])

    with pytest.raises(Interrupted) as stopped:
        stack.sync()

    assert "stopped by a signal" in str(stopped.value)
    assert len(stack.holdings()) < 41
    assert state_disagreements(stack, "soc") == []

    stack.source.advance(60)
    resumed = stack.sync()

    assert resumed.exit_code == 0, resumed.summary()
    assert len(stack.holdings()) == 41
    assert set(stack.upload_counts().values()) == {1}
    assert state_disagreements(stack, "soc") == []


def test_kill_during_parallel_uploads_loses_nothing(make_stack, events):
    stack = make_stack(events)
    add_identity_workspace(stack, "intel")
    write_config(stack, sentinel={"batch_size": 5})
    # Each upload is stored and responded to 50 ms later, so a kill often lands in between.
    stack.sentinel.delay(0.05, count=1000, after_processing=True)

    kill_marks = []
    for kill_after in (3, 7):
        stack.source.advance(60)
        process = start_sync(stack)
        deadline = time.monotonic() + 30
        while stack.sentinel.upload_sequence < kill_after * 5 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL
        stack.sentinel.wait_idle()
        kill_marks.append(stack.sentinel.upload_sequence)
        for name in ("soc", "intel"):
            assert recorded_but_not_held(stack, name, stack.state_path) == []

    stack.sentinel.clear_faults()
    stack.source.advance(60)
    final = stack.sync()

    assert final.exit_code == 0, final.summary()
    assert comparable(stack.holdings("soc")) == comparable(stack.holdings("intel"))
    assert len(stack.holdings("soc")) == 41
    for name in ("soc", "intel"):
        assert state_disagreements(stack, name) == []
        assert unexplained_uploads(stack, name, kill_marks) == []
        # Each kill leaves at most the batches in flight per workspace (two of five objects) to be sent again.
        assert max(repeats_per_killed_run(stack, name, kill_marks)) <= 10


# Units: the shared limiter and the sender


class OneSleeperClock(StackClock):
    """A stack clock that notes how many threads sleep at once; each sleep also takes 20 ms of real time."""

    def __init__(self, source: FakeClock) -> None:
        super().__init__(source)
        self._lock = threading.Lock()
        self.sleeping = 0
        self.most_sleeping = 0

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeping += 1
            self.most_sleeping = max(self.most_sleeping, self.sleeping)
        time.sleep(0.02)
        super().sleep(seconds)
        with self._lock:
            self.sleeping -= 1


def test_limiter_threads_share_one_allowance():
    source = FakeClock(start=1000.0)
    clock = OneSleeperClock(source)
    limiter = RateLimiter(3, clock, window_seconds=WINDOW_SECONDS)
    starts: list[float] = []
    lock = threading.Lock()

    def send(count: int) -> None:
        user = limiter.user()
        for _ in range(count):
            user.acquire()
            with lock:
                starts.append(source())
        user.release()

    threads = [threading.Thread(target=send, args=(4,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(starts) == 12
    assert max_in_any_window(starts, WINDOW_SECONDS) == 3
    assert max(starts) - min(starts) >= 3 * WINDOW_SECONDS
    # Waiting threads queue behind one sleeper, so a test clock is not advanced once per thread.
    assert clock.most_sleeping == 1


def test_limiter_holds_slot_until_response():
    source = FakeClock(start=1000.0)
    clock = StackClock(source)
    limiter = RateLimiter(1, clock, window_seconds=WINDOW_SECONDS)
    first, second = limiter.user(), limiter.user()
    started = []

    first.acquire()
    waiter = threading.Thread(target=lambda: (second.acquire(), started.append(source())))
    waiter.start()
    time.sleep(0.1)
    assert started == []  # the only slot is in flight, so the second request waits for it
    source.advance(5)  # the response to the first request arrives 5 s after it started
    first.release()
    waiter.join(timeout=10)

    assert started == [pytest.approx(1000.0 + 5 + WINDOW_SECONDS + WINDOW_EDGE_MARGIN_SECONDS)]


def test_sender_keeps_order_and_bound():
    release = threading.Event()
    uploaded = []
    recorded = []

    def upload(objects):
        release.wait(5)
        uploaded.append(objects[0]["n"])
        return [objects[0]["n"]]

    sender = BatchSender("test", upload, lambda payload, future: recorded.append((payload, future.result())))
    for number in range(MAX_PENDING_BATCHES):
        sender.submit([{"n": number}], number)
    sender.collect()
    assert recorded == []
    extra = MAX_PENDING_BATCHES
    waiter = threading.Thread(target=sender.submit, args=([{"n": extra}], extra))
    waiter.start()
    time.sleep(0.1)
    assert waiter.is_alive()  # the sender is full, so the caller waits for the oldest batch

    release.set()
    waiter.join(timeout=5)
    sender.drain()
    sender.close()

    assert recorded == [(number, [number]) for number in range(MAX_PENDING_BATCHES + 1)]
    assert uploaded == list(range(MAX_PENDING_BATCHES + 1))
    assert sender.pending == 0


def test_sender_starts_next_after_record():
    uploaded = []
    sender = BatchSender("test", lambda objects: uploaded.append(objects[0]["n"]) or [True], lambda payload, future: None)
    sender.submit([{"n": 0}], 0)
    sender.submit([{"n": 1}], 1)
    time.sleep(0.1)

    # The first batch is acknowledged but not recorded, so the second has not started.
    assert uploaded == [0]
    sender.drain()
    sender.close()
    assert uploaded == [0, 1]


def test_group_records_other_senders_while_waiting():
    slow_release = threading.Event()
    recorded = []
    group = SenderGroup()

    def slow_upload(objects):
        slow_release.wait(5)
        return [True]

    slow = BatchSender("slow", slow_upload, lambda payload, future: recorded.append(payload), group=group)
    fast = BatchSender("fast", lambda objects: [True], lambda payload, future: recorded.append(payload), group=group)
    slow.submit([{}], "slow 1")
    fast.submit([{}], "fast 1")
    fast.submit([{}], "fast 2")
    # Waiting for slow's batch records fast's batches as they finish, so fast's second starts.
    threading.Timer(0.2, slow_release.set).start()
    slow.drain()
    fast.drain()
    slow.close()
    fast.close()

    assert recorded == ["fast 1", "fast 2", "slow 1"]


def test_sender_cancels_after_stop_and_error():
    stop = threading.Event()
    gate = threading.Event()
    results = []

    def upload(objects):
        gate.wait(5)
        if objects[0].get("fail"):
            raise WorkspaceError("workspace test: HTTP 403")
        stop.set()
        return [True]

    def record(payload, future):
        results.append((payload, future))

    stopped = BatchSender("stopped", upload, record, stop=stop)
    stopped.submit([{}], "in flight")
    stopped.submit([{}], "queued")
    gate.set()
    stopped.drain()
    stopped.close()

    assert [payload for payload, _ in results] == ["in flight", "queued"]
    assert results[0][1].result() == [True]
    assert results[1][1].cancelled()

    results.clear()
    gate.clear()
    failing = BatchSender("failing", upload, record)
    failing.submit([{"fail": True}], "403")
    failing.submit([{}], "after the error")
    gate.set()
    failing.drain()
    failing.close()

    assert isinstance(results[0][1].exception(), WorkspaceError)
    with pytest.raises(CancelledError):
        results[1][1].result()


def test_main_thread_records_state(make_stack, events, monkeypatch):
    from misp2sentinel import state

    threads = set()
    original = state.StateStore.record_outcomes

    def record(self, *arguments, **options):
        threads.add(threading.current_thread())
        return original(self, *arguments, **options)

    monkeypatch.setattr(state.StateStore, "record_outcomes", record)
    stack = make_stack(events)
    add_identity_workspace(stack, "intel")
    write_config(stack, sentinel={"batch_size": 5})

    report = run_sync(load_config(stack.config_path), stack.clock)

    assert report.exit_code == 0, report.summary()
    assert threads == {threading.main_thread()}
