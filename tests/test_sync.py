"""End-to-end tests of `sync` against the MISP, identity-provider and Sentinel emulators.

The bridge runs in-process with the stack's fake clock (so throttling costs no real time), or
through the real command line in a subprocess where the test needs exit codes or a second process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import stix2
from stix2patterns.validator import run_validator

from misp2sentinel.config import load_config
from misp2sentinel.errors import MispError
from misp2sentinel.state import StateStore
from misp2sentinel.sync import selection_key
from tests.conftest import misp_attribute, misp_event
from tests.stack_fixtures import clean_environment, make_stack, signing_key, stack, tls  # noqa: F401
from tests.sync_stack import CLIENT_SECRET, MISP_KEY, PROXY_AND_CA_VARIABLES, REPO_ROOT

EXAMPLE_FEED = REPO_ROOT / "examples" / "feed"
CORPUS = REPO_ROOT.parent / "shared" / "corpus" / "misp-events"

PHISHING_EVENT = "87e64764-5f69-59b6-97b0-44dd8a14d25a"
LOADER_EVENT = "5430c4da-7a09-50a8-bb18-6deee74d4b41"
C2_EVENT = "8b93e7c2-5a01-5872-b704-96184e726098"
BROKEN_EVENT = "0b0b0b0b-0000-4000-8000-00000000dead"


def export_objects(stack, tmp_path, *extra) -> dict[str, dict]:
    output = tmp_path / "export.json"
    result = stack.cli("export", "--config", str(stack.config_path), "--output", str(output), *extra)
    assert result.returncode == 0, result.stderr
    return {obj["id"]: obj for obj in json.loads(output.read_text())["objects"]}


def without_modified(objects: dict[str, dict]) -> dict[str, dict]:
    return {key: {k: v for k, v in obj.items() if k != "modified"} for key, obj in objects.items()}


def upload_requests(stack) -> int:
    return sum(1 for entry in stack.sentinel.request_log if entry.status == 200)


def attribute_uuid(stack, event_uuid: str, value: str) -> str:
    event = stack.misp.get_event(event_uuid)["Event"]
    for attribute in event["Attribute"]:
        if attribute["value"] == value:
            return attribute["uuid"]
    raise AssertionError(f"no attribute {value!r} in event {event_uuid}")


# What a sync stores


def test_sync_stores_what_export_produces(stack, tmp_path):
    report = stack.sync()

    assert report.exit_code == 0
    held = stack.holdings()
    exported = export_objects(stack, tmp_path)
    assert without_modified(held) == without_modified(exported)
    assert report.outcomes["created"] == len(exported)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the public MISP event corpus is not available")
def test_sync_corpus_matches_export(make_stack, tmp_path):
    stack = make_stack(CORPUS)

    report = stack.sync()

    assert report.exit_code == 0, report.summary()
    held = stack.holdings()
    exported = export_objects(stack, tmp_path)
    assert without_modified(held) == without_modified(exported)
    for obj in held.values():
        stix2.parse(obj, allow_custom=False)
        if obj["type"] == "indicator":
            assert run_validator(obj["pattern"]) == []
            assert " AND " not in obj["pattern"]


def test_second_sync_uploads_nothing(stack):
    stack.sync()
    requests_after_first = upload_requests(stack)
    counts_after_first = stack.upload_counts()

    report = stack.sync()

    assert report.exit_code == 0
    assert upload_requests(stack) == requests_after_first
    assert stack.upload_counts() == counts_after_first
    assert report.outcomes["unchanged"] >= 1
    for verb in ("created", "updated", "revoked"):
        assert verb not in report.outcomes


def test_edited_value_updates_one_indicator(stack):
    stack.sync()
    before = stack.upload_counts()
    target = attribute_uuid(stack, PHISHING_EVENT, "203.0.113.45")
    stack.source.advance(60)

    stack.misp.edit_attribute(PHISHING_EVENT, target, value="203.0.113.99")
    report = stack.sync()

    after = stack.upload_counts()
    changed = {stix_id for stix_id in after if after[stix_id] != before.get(stix_id)}
    assert changed == {f"indicator--{target}"}
    assert report.outcomes["updated"] == 1
    stored = stack.holdings()[f"indicator--{target}"]
    assert stored["pattern"] == "[ipv4-addr:value = '203.0.113.99']"
    assert stored["created"] < stored["modified"]


def test_edit_waits_for_publication(stack):
    stack.write_config(misp={"published_only": True})
    stack.sync()
    target = attribute_uuid(stack, PHISHING_EVENT, "203.0.113.45")
    stack.source.advance(60)
    stack.misp.edit_attribute(PHISHING_EVENT, target, value="203.0.113.99")

    waiting = stack.sync()
    stack.source.advance(60)
    stack.misp.publish(PHISHING_EVENT)
    published = stack.sync()

    assert waiting.outcomes["unpublished"] == 1
    assert stack.holdings()[f"indicator--{target}"]["pattern"] == "[ipv4-addr:value = '203.0.113.99']"
    assert published.outcomes["updated"] == 1


def test_soft_delete_revokes_indicator(stack):
    stack.write_config(misp={"published_only": True})
    stack.sync()
    target = attribute_uuid(stack, PHISHING_EVENT, "invoice-portal.example.net")
    stack.source.advance(60)

    stack.misp.soft_delete_attribute(PHISHING_EVENT, target)
    report = stack.sync()

    stored = stack.holdings()[f"indicator--{target}"]
    assert stored["revoked"] is True
    assert stored["valid_until"] > stored["valid_from"]
    assert report.outcomes["revoked"] == 1


def test_event_option_uploads_one_event(stack):
    report = stack.sync(event_ref=C2_EVENT)

    assert report.exit_code == 0
    held = stack.holdings()
    indicators = [obj for obj in held.values() if obj["type"] == "indicator"]
    assert indicators
    assert all(obj["external_references"][0]["external_id"] == C2_EVENT for obj in indicators)
    config = load_config(stack.config_path)
    cursor_key = selection_key(config, config.workspaces[0])
    with StateStore(stack.state_path, readonly=True) as state:
        assert state.cursor("soc", f"misp:{stack.misp.url}", cursor_key) is None
        assert state.pending_events("soc") == []

    stack.sync()

    with StateStore(stack.state_path, readonly=True) as state:
        assert state.cursor("soc", f"misp:{stack.misp.url}", cursor_key) is not None


def test_event_option_by_numeric_id(stack):
    numeric_id = stack.misp.get_event(LOADER_EVENT)["Event"]["id"]

    report = stack.sync(event_ref=str(numeric_id))

    assert report.exit_code == 0
    references = {obj["external_references"][0]["external_id"] for obj in stack.holdings().values() if obj["type"] == "indicator"}
    assert references == {LOADER_EVENT}


@pytest.mark.parametrize("reference", ["0", "\u0663"])
def test_event_option_refuses_what_is_no_event_id(stack, reference):
    """MISP reads eventid 0 as no filter, so the first of all events must not be taken for it."""
    with pytest.raises(MispError, match="has no event"):
        stack.sync(event_ref=reference)

    assert upload_requests(stack) == 0


def test_undecodable_event_does_not_hold_back_its_chunk(stack):
    """An event whose JSON the client cannot decode (a lone UTF-16 surrogate) fails alone. The
    other events fetched in the same request are still sent."""
    bad = stack.misp.add_event(misp_event(misp_attribute("domain", "broken-\ud800.example.com"), uuid=BROKEN_EVENT,
                                          info="Event with a lone surrogate", published=True))

    first = stack.sync()

    assert first.failures["page"] == 1
    assert any(bad in message for message in first.failure_messages)
    fetched = {obj["external_references"][0]["external_id"] for obj in stack.holdings().values() if obj["type"] == "indicator"}
    assert fetched == {PHISHING_EVENT, C2_EVENT, LOADER_EVENT}


def test_dry_run_sends_and_records_nothing(stack, tmp_path):
    output = tmp_path / "pending.json"

    report = stack.sync(dry_run=True, output=str(output))

    assert upload_requests(stack) == 0
    assert not stack.state_path.exists()
    written = json.loads(output.read_text())["objects"]
    assert len(written) == report.outcomes["created"]
    exported = export_objects(stack, tmp_path)
    assert without_modified({obj["id"]: obj for obj in written}) == without_modified(exported)


# Faults in the middle of a run


def test_throttling_and_record_errors_recover(make_stack):
    stack = make_stack(rate_limit=1, rate_window=30.0)
    stack.write_config(sentinel={"batch_size": 5})
    rejected = {f"indicator--{attribute_uuid(stack, PHISHING_EVENT, 'billing@invoice-portal.example.net')}"}
    stack.sentinel.reject_records(rejected, message="Error for Property=pattern: rejected by the test.")

    first = stack.sync()

    assert stack.sentinel.throttled_count > 0
    assert first.exit_code == 1
    assert first.failures["record"] == 1
    held = set(stack.holdings())
    assert not rejected & held
    with StateStore(stack.state_path, readonly=True) as state:
        assert state.pending_events("soc") == [PHISHING_EVENT]

    stack.sentinel.clear_faults()
    stack.source.advance(60)
    second = stack.sync()

    assert second.exit_code == 0
    assert second.outcomes["created"] == 1
    assert rejected <= set(stack.holdings())
    with StateStore(stack.state_path, readonly=True) as state:
        assert state.pending_events("soc") == []


def test_forbidden_workspace_does_not_stop_others(make_stack):
    stack = make_stack()
    stack.add_workspace("blocked", role=False)

    report = stack.sync()

    assert report.exit_code == 1
    assert report.failures["workspace"] == 1
    assert stack.holdings("soc")
    assert stack.holdings("blocked") == {}


def test_max_duration_stops_and_resumes(stack):
    from misp2sentinel.errors import Interrupted

    stack.write_config(misp={"fetch_chunk_size": 1})

    with pytest.raises(Interrupted) as stopped:
        from misp2sentinel.config import load_config as load
        from misp2sentinel.sync import run_sync

        # Every reading moves the clock 5 s past a 3 s limit, so the run stops after the first event.
        run_sync(load(stack.config_path), _AdvancingClock(stack.source, 5), max_duration=3)

    assert "--max-duration" in str(stopped.value)
    assert stopped.value.report.events == 1
    resumed = stack.sync()
    assert resumed.exit_code == 0
    assert without_modified(stack.holdings()) == without_modified(export_objects(stack, stack.tmp_path))


class _AdvancingClock:
    """A stack clock whose monotonic time moves `step` seconds at every reading."""

    def __init__(self, source, step: float) -> None:
        from tests.sync_stack import StackClock

        self._clock = StackClock(source)
        self._step = step
        self._offset = 0.0

    def now(self):
        return self._clock.now()

    def monotonic(self) -> float:
        self._offset += self._step
        return self._clock.monotonic() + self._offset

    def sleep(self, seconds: float) -> None:
        self._clock.sleep(seconds)


# Command line


def test_cli_sync_twice(stack):
    first = stack.cli("sync", "--config", str(stack.config_path))
    second = stack.cli("sync", "--config", str(stack.config_path))

    assert first.returncode == 0, first.stderr
    assert "created" in first.stderr.splitlines()[-1]
    assert second.returncode == 0, second.stderr
    assert "created" not in second.stderr.splitlines()[-1]
    assert "unchanged" in second.stderr.splitlines()[-1]


def test_cli_lock_held_exits_1(stack):
    stack.write_config()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(stack.state_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = stack.cli("sync", "--config", str(stack.config_path))
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=10)

    assert result.returncode == 1
    assert "another misp2sentinel run holds the lock" in result.stderr


HOLD_LOCK = """
import sys, time
from pathlib import Path
from misp2sentinel.config import load_config
from misp2sentinel.state import StateStore
from misp2sentinel.sync import selection_key
store = StateStore(Path(sys.argv[1]))
store.open()
print("locked", flush=True)
time.sleep(30)
"""


def test_cli_secret_never_printed(stack):
    stack.add_workspace("blocked", role=False)
    stack.write_config()

    result = stack.cli("sync", "--config", str(stack.config_path), "-vv")

    assert result.returncode == 1
    assert CLIENT_SECRET not in result.stderr + result.stdout
    assert MISP_KEY not in result.stderr + result.stdout


def test_cli_output_needs_dry_run(stack):
    result = stack.cli("sync", "--config", str(stack.config_path), "--output", "x.json")

    assert result.returncode == 2
    assert "--output needs --dry-run" in result.stderr


def test_cli_sigterm_stops_cleanly(stack):
    import time

    stack.write_config()
    stack.misp.slow_next("/events/restSearch", 0.8, count=1)
    process = subprocess.Popen(
        [sys.executable, "-m", "misp2sentinel", "sync", "--config", str(stack.config_path)],
        stderr=subprocess.PIPE, text=True, cwd=stack.tmp_path,
        env={**{k: v for k, v in os.environ.items() if k not in PROXY_AND_CA_VARIABLES},
             "MISP2SENTINEL_NOW": "2026-01-31T12:00:00Z"},
    )
    deadline = time.monotonic() + 10
    while not stack.misp.requests_to("/events/restSearch") and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)

    assert process.returncode == 1, stderr
    assert "stopped by a signal" in stderr
    assert stderr.strip().splitlines()[-1].startswith("sync: ")
    assert upload_requests(stack) == 0
    second = stack.cli("sync", "--config", str(stack.config_path))
    assert second.returncode == 0, second.stderr
    assert stack.holdings()


def test_failed_misp_page_does_not_stop_run(stack):
    stack.write_config(misp={"fetch_chunk_size": 1, "max_attempts": 1, "retry_seconds": 0})
    # The first request lists the events; the second, the first chunk of one event, fails.
    stack.misp.fail_next("/events/restSearch", 500, count=1, skip=1)

    first = stack.sync()

    assert first.exit_code == 1
    assert first.failures["page"] == 1
    fetched = {obj["external_references"][0]["external_id"] for obj in stack.holdings().values() if obj["type"] == "indicator"}
    assert len(fetched) == 2
    config = load_config(stack.config_path)
    failed_event = stack.misp.get_event(PHISHING_EVENT)["Event"]
    with StateStore(stack.state_path, readonly=True) as state:
        cursor = state.cursor("soc", f"misp:{stack.misp.url}", selection_key(config, config.workspaces[0]))
    assert PHISHING_EVENT not in fetched
    assert cursor is None or cursor < int(failed_event["timestamp"])
    second = stack.sync()
    assert second.exit_code == 0
    assert without_modified(stack.holdings()) == without_modified(export_objects(stack, stack.tmp_path))
