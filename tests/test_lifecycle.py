"""Multi-run lifecycle scenarios: revocation on evidence, sweeps, the guard, refresh, re-mapping
and several workspaces, with the real PyMISP and MSAL clients against the emulators.

After each run a workspace must hold exactly the live indicators of its selection, revoked ones
marked revoked, with the fewest uploads the changes require. Time moves through the stack's fake
clock, which drives MISP's timestamps, the run time and Sentinel's clocks together.
"""

from __future__ import annotations

import copy
import json
import uuid

import pytest

from misp2sentinel.state import StateStore
from tests.stack_fixtures import NO_GUARD, clean_environment, signing_key, tls  # noqa: F401
from tests.sync_stack import REPO_ROOT, start_stack, stop_stack

EXAMPLE_FEED = REPO_ROOT / "examples" / "feed"
PHISHING_EVENT = "87e64764-5f69-59b6-97b0-44dd8a14d25a"
LOADER_EVENT = "5430c4da-7a09-50a8-bb18-6deee74d4b41"
C2_EVENT = "8b93e7c2-5a01-5872-b704-96184e726098"
DAY = 86400


@pytest.fixture
def stack(tmp_path, tls, signing_key):
    running = start_stack(tmp_path, tls, signing_key, EXAMPLE_FEED)
    running.write_config(lifecycle=NO_GUARD)
    yield running
    stop_stack(running)


def attribute(stack, event_uuid: str, value: str) -> dict:
    for item in stack.misp.get_event(event_uuid)["Event"]["Attribute"]:
        if item["value"] == value:
            return item
    raise AssertionError(f"no attribute {value!r} in event {event_uuid}")


def live(stack, name: str = "soc") -> dict[str, dict]:
    return {key: obj for key, obj in stack.holdings(name).items() if not obj.get("revoked")}


def revoked(stack, name: str = "soc") -> set[str]:
    return {key for key, obj in stack.holdings(name).items() if obj.get("revoked")}


def later(stack, seconds: int = 60) -> None:
    stack.source.advance(seconds)


# Changes inside an event


def test_comment_edit_updates_same_id(stack):
    stack.sync()
    target = attribute(stack, PHISHING_EVENT, "203.0.113.45")["uuid"]
    counts = stack.upload_counts()
    later(stack)

    stack.misp.edit_attribute(PHISHING_EVENT, target, comment="Seen again in a second wave")
    report = stack.sync()

    assert report.outcomes["updated"] == 1
    assert stack.upload_counts()[f"indicator--{target}"] == counts[f"indicator--{target}"] + 1
    assert "second wave" in stack.holdings()[f"indicator--{target}"]["description"]


def test_to_ids_off_then_on_gets_next_generation(stack):
    stack.sync()
    target = attribute(stack, PHISHING_EVENT, "203.0.113.45")["uuid"]
    later(stack)

    stack.misp.edit_attribute(PHISHING_EVENT, target, to_ids=False)
    off = stack.sync()
    later(stack)
    stack.misp.edit_attribute(PHISHING_EVENT, target, to_ids=True)
    on = stack.sync()

    assert off.outcomes["revoked"] == 1
    assert f"indicator--{target}" in revoked(stack)
    assert on.outcomes["created"] == 1
    comeback = [obj for obj in live(stack).values() if obj.get("pattern") == "[ipv4-addr:value = '203.0.113.45']"]
    assert len(comeback) == 1
    assert comeback[0]["id"] != f"indicator--{target}"
    assert stack.sentinel.unrevocations(stack.workspace_ids["soc"]) == []


def test_hard_delete_revokes(stack):
    stack.sync()
    target = attribute(stack, PHISHING_EVENT, "billing@invoice-portal.example.net")["uuid"]
    later(stack)

    stack.misp.hard_delete_attribute(PHISHING_EVENT, target)
    report = stack.sync()

    assert report.outcomes["revoked"] == 1
    assert revoked(stack) == {f"indicator--{target}"}


# Sweeps


def test_deleted_event_revoked_by_sweep(stack):
    stack.sync()
    held = {key for key, obj in live(stack).items() if obj["type"] == "indicator"
            and obj["external_references"][0]["external_id"] == C2_EVENT}
    later(stack)

    stack.misp.delete_event(C2_EVENT)
    report = stack.sync()

    assert held
    assert revoked(stack) == held
    assert report.outcomes["revoked"] == len(held)
    second = stack.sync()
    assert "revoked" not in second.outcomes


def test_event_losing_selecting_tag_revoked(stack):
    stack.config_overrides.setdefault("selections", {})["soc"] = {"tags": {"or": ["type:OSINT"]}}
    stack.write_config(lifecycle=NO_GUARD)
    stack.sync()
    before = set(live(stack))
    later(stack)

    stack.misp.remove_event_tag(PHISHING_EVENT, "type:OSINT")
    report = stack.sync()

    indicators = {key for key in before if key.startswith("indicator--")}
    assert indicators
    assert revoked(stack) == indicators
    assert report.outcomes["revoked"] == len(indicators)


def test_local_tag_selects_old_event(stack):
    stack.misp.site_admin = True
    stack.config_overrides.setdefault("selections", {})["soc"] = {"tags": {"or": ["sentinel:export"]}}
    stack.write_config(lifecycle=NO_GUARD)
    first = stack.sync()
    timestamp_before = stack.misp.get_event(C2_EVENT)["Event"]["timestamp"]
    later(stack)

    stack.misp.add_event_tag(C2_EVENT, "sentinel:export", local=True)
    second = stack.sync()

    assert "created" not in first.outcomes
    assert stack.misp.get_event(C2_EVENT)["Event"]["timestamp"] == timestamp_before
    assert second.outcomes["created"] >= 1
    references = {obj["external_references"][0]["external_id"] for obj in live(stack).values() if obj["type"] == "indicator"}
    assert references == {C2_EVENT}


def test_windowed_and_event_runs_revoke_nothing_else(stack):
    stack.write_config(lifecycle={**NO_GUARD, "sweep_interval_hours": 24})
    stack.sync()
    later(stack)
    target = attribute(stack, LOADER_EVENT, "C:\\Users\\Public\\svchost.exe")["uuid"]
    stack.misp.edit_attribute(LOADER_EVENT, target, comment="edited")

    windowed = stack.sync()
    single = stack.sync(event_ref=C2_EVENT)

    assert "revoked" not in windowed.outcomes
    assert windowed.outcomes["updated"] == 1
    assert "revoked" not in single.outcomes
    assert revoked(stack) == set()


def test_empty_misp_answer_is_held_back(stack):
    stack.write_config(lifecycle={"guard_share": 0.10, "guard_min": 5})
    stack.sync()
    count = len([key for key in live(stack) if key.startswith("indicator--")])
    later(stack)
    for event_uuid in (PHISHING_EVENT, LOADER_EVENT, C2_EVENT, "03d32d23-ead4-5a2d-bf62-bc2170b9520f"):
        stack.misp.delete_event(event_uuid)

    held = stack.sync()

    assert held.exit_code == 1
    assert held.failures["revocation_guard"] == 1
    assert revoked(stack) == set()
    forced = stack.sync(force=True)
    assert forced.exit_code == 0
    assert forced.outcomes["revoked"] == count
    assert len(revoked(stack)) == count


# Refresh


def test_refresh_after_13_days_not_after_5(stack):
    stack.write_config(lifecycle={**NO_GUARD, "refresh_days": 12, "refresh_share": 1.0})
    stack.sync()
    counts = stack.upload_counts()
    stack.source.advance(5 * DAY)

    early = stack.sync()
    stack.source.advance(8 * DAY)
    due = stack.sync()

    assert "refreshed" not in early.outcomes
    indicators = [key for key in counts if key.startswith("indicator--")]
    assert due.outcomes["refreshed"] == len(indicators)
    after = stack.upload_counts()
    assert all(after[key] == counts[key] + 1 for key in indicators)
    refreshed = stack.holdings()[indicators[0]]
    assert refreshed["valid_until"] > refreshed["modified"]


def test_refresh_spread_over_runs(stack):
    stack.write_config(lifecycle={**NO_GUARD, "refresh_days": 12, "refresh_share": 0.25})
    stack.sync()
    live_count = len([key for key in live(stack) if key.startswith("indicator--")])
    stack.source.advance(13 * DAY)

    first = stack.sync()
    second = stack.sync()

    limit = -(-live_count // 4)
    assert first.outcomes["refreshed"] == limit
    assert second.outcomes["refreshed"] == min(limit, live_count - limit)


# Re-mapping and paging


def test_full_applies_new_setting(stack):
    stack.sync()
    stack.write_config(lifecycle=NO_GUARD, mapping={"default_tlp": "green", "max_tlp": "amber", "default_confidence": 80})
    later(stack)

    windowed = stack.sync()
    estimate = stack.sync(full=True, dry_run=True)
    full = stack.sync(full=True)

    assert "updated" not in windowed.outcomes
    assert estimate.outcomes["updated"] == full.outcomes["updated"]
    assert full.outcomes["updated"] > 0
    assert "created" not in full.outcomes


def test_1001_events_with_page_size_1000(tmp_path, tls, signing_key):
    stack = start_stack(tmp_path, tls, signing_key, None)
    try:
        template = json.loads((EXAMPLE_FEED / f"{C2_EVENT}.json").read_text())["Event"]
        for number in range(1001):
            event = copy.deepcopy(template)
            event["uuid"] = str(uuid.UUID(int=number + 1, version=4))
            event["Attribute"] = [{
                "uuid": str(uuid.UUID(int=10**9 + number, version=4)), "type": "domain", "category": "Network activity",
                "value": f"host{number}.example.org", "to_ids": True, "timestamp": event["timestamp"],
            }]
            event["Object"] = []
            stack.misp.add_event(event)
        stack.write_config(misp={"list_page_size": 1000, "fetch_chunk_size": 100}, lifecycle=NO_GUARD)

        report = stack.sync()

        assert report.exit_code == 0
        assert report.outcomes["created"] == 1001 + 1
        assert len([key for key in live(stack) if key.startswith("indicator--")]) == 1001
    finally:
        stop_stack(stack)


# Several workspaces


def test_two_workspaces_different_max_tlp(stack):
    stack.add_workspace("partners", selection={"max_tlp": "green"})
    stack.write_config(lifecycle=NO_GUARD)

    stack.sync()

    soc = {obj["object_marking_refs"][0] for obj in live(stack, "soc").values() if obj["type"] == "indicator"}
    partners = {obj["object_marking_refs"][0] for obj in live(stack, "partners").values() if obj["type"] == "indicator"}
    amber = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"
    assert amber in soc
    assert amber not in partners
    assert partners


def test_workspace_added_later_is_backfilled(stack):
    stack.sync()
    counts = stack.upload_counts()
    later(stack)
    stack.add_workspace("newcomer")
    stack.write_config(lifecycle=NO_GUARD)

    report = stack.sync()

    assert stack.upload_counts() == counts
    assert set(stack.holdings("newcomer")) == set(stack.holdings("soc"))
    assert report.outcomes["created"] == len(counts)


def test_state_remembers_sweep_and_events(stack):
    stack.sync()

    with StateStore(stack.state_path, readonly=True) as state:
        known = state.known_events("soc")

    assert {PHISHING_EVENT, LOADER_EVENT, C2_EVENT} <= set(known)


# Off-boarding


def test_revoke_all_withdraws_retired_workspace(stack):
    stack.add_workspace("old-customer")
    stack.write_config(lifecycle=NO_GUARD)
    stack.sync()
    held = {key for key in live(stack, "old-customer") if key.startswith("indicator--")}
    config = stack.config_path.read_text().replace("name: old-customer", "name: old-customer\n  retired: true")
    stack.config_path.write_text(config)

    from misp2sentinel.config import load_config
    from misp2sentinel.sync.revoke import run_revoke_all

    dry = run_revoke_all(load_config(stack.config_path), stack.clock, "old-customer", dry_run=True)
    report = run_revoke_all(load_config(stack.config_path), stack.clock, "old-customer")

    assert dry.outcomes["revoked"] == len(held)
    assert report.outcomes["revoked"] == len(held)
    assert revoked(stack, "old-customer") == held
    assert revoked(stack, "soc") == set()
    with StateStore(stack.state_path, readonly=True) as state:
        assert state.live_count("old-customer") == 0


def test_source_system_rename_refused(stack):
    stack.sync()
    config = stack.config_path.read_text()
    stack.config_path.write_text(config.replace("  name: soc", "  name: soc\n  source_system: MISP-renamed"))

    result = stack.cli("sync", "--config", str(stack.config_path))

    assert result.returncode == 2
    assert "source system" in result.stderr


def test_sharing_group_event_kept_from_other_customers(stack):
    event = json.loads((EXAMPLE_FEED / f"{C2_EVENT}.json").read_text())["Event"]
    event["uuid"] = "0c2f4d6e-8a0b-4c1d-9e2f-3a4b5c6d7e8f"
    event["distribution"] = "4"
    event["sharing_group_id"] = "7"
    event["SharingGroup"] = {"id": "7", "uuid": "5f1e2d3c-4b5a-4968-8776-655443322110", "name": "Customer A"}
    for item in event["Attribute"]:
        item["uuid"] = str(uuid.uuid4())
    stack.misp.add_event(event)
    # The emulator returns the sharing group's id only, so the selections name groups by id.
    stack.add_workspace("customer-a", selection={"sharing_groups": ["7"]})
    stack.add_workspace("customer-b", selection={"sharing_groups": ["8"]})
    stack.write_config(lifecycle=NO_GUARD)

    stack.sync()

    def events_of(name):
        return {obj["external_references"][0]["external_id"] for obj in live(stack, name).values() if obj["type"] == "indicator"}

    assert event["uuid"] in events_of("customer-a")
    assert event["uuid"] not in events_of("customer-b")
    assert C2_EVENT in events_of("customer-b")


def test_event_emptied_of_attributes_revoked(stack):
    stack.sync()
    event = stack.misp.get_event(C2_EVENT)["Event"]
    held = {f"indicator--{item['uuid']}" for item in event["Attribute"]} & set(live(stack))
    later(stack)

    for item in event["Attribute"]:
        stack.misp.hard_delete_attribute(C2_EVENT, item["uuid"])
    report = stack.sync()

    assert held
    assert held <= revoked(stack)
    assert report.outcomes["revoked"] >= len(held)


# Rejected records


def test_record_rejected_after_three_failures(stack):
    target = f"indicator--{attribute(stack, PHISHING_EVENT, 'billing@invoice-portal.example.net')['uuid']}"
    stack.sentinel.reject_records({target}, message="Error for Property=pattern: rejected by the test.")

    runs = []
    for _ in range(4):
        runs.append(stack.sync())
        later(stack)

    assert [run.failures["record"] for run in runs[:3]] == [1, 1, 1]
    assert runs[3].exit_code == 0
    assert runs[3].outcomes["rejected"] == 1
    assert stack.upload_counts().get(target, 0) == 0
    with StateStore(stack.state_path, readonly=True) as state:
        assert state.rejected_count("soc") == 1

    stack.sentinel.clear_faults()
    retried = stack.sync(retry_rejected=True)

    assert retried.outcomes["created"] == 1
    assert target in live(stack)
    with StateStore(stack.state_path, readonly=True) as state:
        assert state.rejected_count("soc") == 0


def test_rejected_record_retried_when_content_changes(stack):
    item = attribute(stack, PHISHING_EVENT, "billing@invoice-portal.example.net")
    target = f"indicator--{item['uuid']}"
    stack.sentinel.reject_records({target}, message="Error for Property=pattern: rejected by the test.")
    for _ in range(3):
        stack.sync()
        later(stack)
    stack.sentinel.clear_faults()

    stack.misp.edit_attribute(PHISHING_EVENT, item["uuid"], comment="corrected")
    report = stack.sync()

    assert report.outcomes["created"] == 1
    assert target in live(stack)


def test_attack_patterns_synced_once(stack):
    stack.write_config(lifecycle=NO_GUARD, mapping={"default_tlp": "green", "max_tlp": "amber", "include_attack_patterns": True})

    first = stack.sync()
    second = stack.sync(full=True)

    assert first.exit_code == 0
    types = {obj["type"] for obj in stack.holdings().values()}
    assert {"indicator", "attack-pattern", "relationship"} <= types
    assert second.exit_code == 0
    assert "created" not in second.outcomes


def test_full_dry_run_states_cost(stack):
    report = stack.sync(full=True, dry_run=True)

    objects = report.outcomes["created"]
    assert f"would send {objects} object(s) in 1 request(s)" in report.summary()
