"""Large MISP events fetched in pages, against the MISP emulator with the real PyMISP client.

An event whose `attribute_count` is above `misp.large_event_attributes` is read from
`/events/restSearch` (metadata), `/attributes/restSearch` (pages) and `/objects/restSearch`
(object metadata). These tests check that the assembled event is the one a whole fetch
returns, that failures stay with that event, and that a sync sends the same indicators.
"""

from __future__ import annotations

import copy
import json
import uuid as uuid_module
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from misp2sentinel.config import MappingSettings, MispServer
from misp2sentinel.pipeline import map_records
from misp2sentinel.report import RunReport
from misp2sentinel.sources.misp import MispSource
from misp2sentinel.state import StateStore
from tests.conftest import PHISHING_GALAXY
from tests.emulators.clock import FakeClock
from tests.emulators.misp import DEFAULT_API_KEY, MispEmulator
from tests.emulators.misp_model import Warninglist
from tests.stack_fixtures import clean_environment, invoke, make_stack, signing_key, stack, tls  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "misp"
START = 1700001000
ALPHA = "a1a1a1a1-0000-4000-8000-000000000001"
BRAVO = "b2b2b2b2-0000-4000-8000-000000000002"
CHARLIE = "c3c3c3c3-0000-4000-8000-000000000003"
DELTA = "d4d4d4d4-0000-4000-8000-000000000004"
FIXTURE_EVENTS = (ALPHA, BRAVO, CHARLIE, DELTA)
ALPHA_DELETED_URL = "a1a1a1a1-0000-4000-8000-0000000000a3"
LARGE = "1a7e0000-0000-4000-8000-000000000001"
WARNED_IP = "192.0.2.53"
NOW = datetime(2023, 11, 20, tzinfo=timezone.utc)


def large_event(attributes: int = 40, objects: int = 4) -> dict:
    """Build an event with standalone attributes and objects, soft-deleted rows, tags and galaxies."""
    rows = []
    for index in range(attributes):
        row = {"uuid": str(uuid_module.UUID(int=index + 1)), "type": "ip-dst", "category": "Network activity",
               "value": f"198.51.100.{index % 250}" if index % 7 else f"c2-{index}.example.net", "to_ids": index % 5 != 0,
               "timestamp": str(1700000000 + index)}
        if index % 7 == 0:
            row["type"] = "domain"
        if index % 11 == 3:
            row["deleted"] = True
        if index % 9 == 4:
            row["Tag"] = [{"name": "tlp:amber"}, {"name": "internal:triage", "local": True}]
        if index % 13 == 6:
            row["Galaxy"] = [copy.deepcopy(PHISHING_GALAXY)]
        rows.append(row)
    rows.append({"uuid": str(uuid_module.UUID(int=9000)), "type": "ip-dst", "category": "Network activity",
                 "value": WARNED_IP, "to_ids": True, "timestamp": "1700000500"})
    object_list = []
    for index in range(objects):
        object_list.append({
            "uuid": str(uuid_module.UUID(int=10000 + index)), "name": "domain-ip", "meta-category": "network",
            "comment": f"object {index}", "deleted": index == 2, "timestamp": "1700000600",
            "Attribute": [
                {"uuid": str(uuid_module.UUID(int=20000 + 2 * index)), "type": "domain", "object_relation": "domain",
                 "value": f"object-{index}.example.org", "to_ids": True, "timestamp": "1700000600",
                 "Tag": [{"name": "tlp:green"}]},
                {"uuid": str(uuid_module.UUID(int=20001 + 2 * index)), "type": "ip-dst", "object_relation": "ip",
                 "value": f"203.0.113.{index}", "to_ids": True, "timestamp": "1700000600", "deleted": index == 1},
            ],
        })
    return {"Event": {
        "uuid": LARGE, "info": "A large event", "date": "2023-11-15", "timestamp": "1700000700",
        "publish_timestamp": "1700000700", "published": True, "distribution": "1",
        "Orgc": {"name": "CIRCL", "uuid": "55f6ea5e-2c60-40e5-964f-47a8950d210f"},
        "Tag": [{"name": "tlp:green"}, {"name": "sentinel:export"}, {"name": "review:pending", "local": True}],
        "Galaxy": [copy.deepcopy(PHISHING_GALAXY)],
        "Attribute": rows,
        "Object": object_list,
    }}


@pytest.fixture
def misp():
    clock = FakeClock(START)
    warninglist = Warninglist("Test resolvers", [WARNED_IP], type="string", category="false_positive")
    with MispEmulator(FIXTURES, clock=clock, warninglists=[warninglist]) as emulator:
        emulator.add_event(large_event())
        yield emulator


def source_for(misp: MispEmulator, **settings) -> MispSource:
    values = {"url": misp.url, "key": DEFAULT_API_KEY, "max_attempts": 2, "retry_seconds": 0, **settings}
    return MispSource(MispServer(**values))


def whole(misp: MispEmulator, event_uuid: str) -> dict:
    events = list(source_for(misp, large_event_attributes=1_000_000).fetch([event_uuid]))
    assert len(events) == 1
    return events[0]


def paged(misp: MispEmulator, event_uuid: str, page_size: int = 7) -> dict:
    events = list(source_for(misp, large_event_attributes=0, attribute_page_size=page_size).fetch([event_uuid]))
    assert len(events) == 1
    return events[0]


def records_of(event: dict) -> list:
    return map_records(event, MappingSettings(), NOW, RunReport("sync"))


# The assembled event against the whole event


@pytest.mark.parametrize("event_uuid", FIXTURE_EVENTS + (LARGE,))
def test_paged_event_equals_whole(misp, event_uuid):
    expected = whole(misp, event_uuid)
    misp.clear_requests()

    event = paged(misp, event_uuid, page_size=3)

    assert misp.requests_to("/attributes/restSearch")
    assert event == expected


def test_paged_records_equal_whole(misp):
    expected = records_of(whole(misp, LARGE))

    records = records_of(paged(misp, LARGE))

    assert len(records) > 20
    assert records == expected


@pytest.mark.parametrize("page_size", [1, 2, 45, 46, 1000])
def test_paged_page_sizes_same_event(misp, page_size):
    expected = whole(misp, LARGE)

    assert paged(misp, LARGE, page_size=page_size) == expected


def test_paged_requests_one_page_each(misp):
    source = source_for(misp, large_event_attributes=10, attribute_page_size=10)
    source.list_changed(None, START)
    misp.clear_requests()

    list(source.fetch([LARGE]))

    pages = [request.json["page"] for request in misp.requests_to("/attributes/restSearch")]
    # 49 attribute rows in pages of 10, and the empty page that ends the search.
    assert pages == [1, 2, 3, 4, 5, 6]
    sent = misp.requests_to("/attributes/restSearch")[0].json
    assert sent["eventid"] == LARGE
    assert sent["deleted"] == [0, 1]
    assert sent["order"] == "Attribute.id"
    assert not sent.get("includeEventTags")
    assert misp.requests_to("/objects/restSearch")[0].json.get("deleted") is None


@pytest.mark.parametrize("site_admin", [False, True])
def test_paged_local_tags_follow_whole(site_admin):
    clock = FakeClock(START)
    with MispEmulator(FIXTURES, clock=clock, site_admin=site_admin) as misp:
        misp.add_event(large_event())
        attribute = str(uuid_module.UUID(int=5))
        galaxy = copy.deepcopy(PHISHING_GALAXY)
        galaxy["GalaxyCluster"][0]["local"] = True
        misp.store.event(LARGE).attribute(attribute).galaxies = [galaxy]

        expected = whole(misp, LARGE)
        event = paged(misp, LARGE)

    tagged = next(item for item in event["attributes"] if item["uuid"] == attribute)
    assert ("internal:triage" in tagged["tags"]) is site_admin
    assert bool(tagged["galaxies"]) is site_admin
    assert event == expected


def test_paged_non_sync_role_sees_foreign_deletions():
    # The attribute search does not apply fetchEvent's rule that hides soft-deleted rows of
    # other organisations' events from a role without perm_sync, so the paged event shows more.
    clock = FakeClock(START)
    with MispEmulator(FIXTURES, clock=clock, perm_sync=False) as misp:
        whole_uuids = {item["uuid"] for item in whole(misp, ALPHA)["attributes"]}
        paged_uuids = {item["uuid"] for item in paged(misp, ALPHA)["attributes"]}

    assert ALPHA_DELETED_URL not in whole_uuids
    assert paged_uuids - whole_uuids == {ALPHA_DELETED_URL}


# Deleted attributes and warninglist hits


def test_paged_deleted_attributes_seen(misp):
    event = paged(misp, LARGE)

    deleted = [item for item in event["attributes"] if item["deleted"]]
    deleted_objects = [item for item in event["objects"] if item["deleted"]]
    deleted_in_objects = [item for obj in event["objects"] for item in obj["attributes"] if item["deleted"]]
    assert len(deleted) == 4
    assert [item["comment"] for item in deleted_objects] == ["object 2"]
    assert len(deleted_in_objects) == 1


def test_paged_warninglist_hits_seen(misp):
    event = paged(misp, LARGE)
    report = RunReport("sync")
    map_records(event, MappingSettings(), NOW, report)

    warned = next(item for item in event["attributes"] if item["value"] == WARNED_IP)
    assert warned["warnings"][0]["warninglist_name"] == "Test resolvers"
    assert report.skips["warninglist"] == 1
    # Four standalone rows, one row in an object, and both rows of the soft-deleted object.
    assert report.skips["deleted"] == 7


def test_paged_object_membership_kept(misp):
    event = paged(misp, LARGE)

    assert [obj["name"] for obj in event["objects"]] == ["domain-ip"] * 4
    assert [obj["uuid"] for obj in event["objects"]] == [str(uuid_module.UUID(int=10000 + index)) for index in range(4)]
    assert [item["object_relation"] for item in event["objects"][0]["attributes"]] == ["domain", "ip"]
    assert all(item["object_relation"] is None for item in event["attributes"])


# Failures stay with the event


def test_page_failure_fails_only_that_event(misp):
    source = source_for(misp, large_event_attributes=20, attribute_page_size=10)
    source.list_changed(None, START)
    misp.fail_next("/attributes/restSearch", 500, count=2, skip=1)
    failures = []

    events = list(source.fetch([ALPHA, LARGE, BRAVO, CHARLIE], on_error=lambda uuids, error: failures.append((uuids, error))))

    assert sorted(event["uuid"] for event in events) == sorted([ALPHA, BRAVO, CHARLIE])
    assert [uuids for uuids, _ in failures] == [[LARGE]]
    assert f"fetching MISP event {LARGE} in pages failed" in failures[0][1].message
    assert "after 2 attempts" in failures[0][1].message


def test_page_failure_raised_without_handler(misp):
    source = source_for(misp, large_event_attributes=20)
    source.list_changed(None, START)
    misp.fail_next("/objects/restSearch", 500, count=2)

    with pytest.raises(Exception, match="in pages failed"):
        list(source.fetch([LARGE]))


def test_page_retry_succeeds(misp):
    expected = whole(misp, LARGE)
    source = source_for(misp, large_event_attributes=20, attribute_page_size=10)
    source.list_changed(None, START)
    misp.fail_next("/attributes/restSearch", 503, count=1, skip=2)

    assert list(source.fetch([LARGE])) == [expected]


def test_unlisted_event_counted_first(misp):
    source = source_for(misp, large_event_attributes=20, attribute_page_size=10)

    events = list(source.fetch([LARGE, DELTA]))

    assert [event["uuid"] for event in events] == [LARGE, DELTA]
    lookup = misp.requests_to("/events/restSearch")[0].json
    assert lookup["metadata"] == 1
    assert lookup["uuid"] == [LARGE, DELTA]
    assert misp.requests_to("/attributes/restSearch")


def test_lone_event_falls_back_to_pages(misp):
    expected = whole(misp, LARGE)
    source = source_for(misp, large_event_attributes=1_000_000, attribute_page_size=10)
    # The count lookup passes; the whole fetch fails twice, which is all its attempts.
    misp.fail_next("/events/restSearch", 500, count=2, skip=1)

    events = list(source.fetch([LARGE]))

    assert events == [expected]
    assert misp.requests_to("/attributes/restSearch")


def test_small_lone_event_no_fallback(misp):
    source = source_for(misp, large_event_attributes=1_000_000, attribute_page_size=10)
    misp.fail_next("/events/restSearch", 500, count=2, skip=1)
    failures = []

    events = list(source.fetch([DELTA], on_error=lambda uuids, error: failures.append(uuids)))

    assert events == []
    assert failures == [[DELTA]]
    assert misp.requests_to("/attributes/restSearch") == []


def test_event_changed_while_paged_read_again(misp):
    source = source_for(misp, large_event_attributes=20, attribute_page_size=10)
    source.list_changed(None, START)
    search_attributes = source._pager.search_attributes
    edited = []

    def edit_during_first_page(**query):
        if not edited:
            misp.clock.advance(5)
            misp.edit_attribute(LARGE, str(uuid_module.UUID(int=2)), value="198.51.100.222")
            edited.append(True)
        return search_attributes(**query)

    source._pager.search_attributes = edit_during_first_page
    events = list(source.fetch([LARGE]))

    values = {item["value"] for item in events[0]["attributes"]}
    assert "198.51.100.222" in values
    metadata_requests = [r for r in misp.requests_to("/events/restSearch") if r.json.get("metadata") and "deleted" in r.json]
    assert len(metadata_requests) == 4


def test_event_changing_every_time_fails(misp):
    source = source_for(misp, large_event_attributes=20, attribute_page_size=10)
    source.list_changed(None, START)
    search_objects = source._pager.search_objects
    failures = []

    def edit_every_time(**query):
        misp.clock.advance(5)
        misp.edit_attribute(LARGE, str(uuid_module.UUID(int=2)), comment=f"edited at {misp.now()}")
        return search_objects(**query)

    source._pager.search_objects = edit_every_time
    list(source.fetch([LARGE], on_error=lambda uuids, error: failures.append((uuids, error.message))))

    assert failures[0][0] == [LARGE]
    assert "changed while its attributes were paged, 2 times" in failures[0][1]


def test_fetch_one_large_event_paged(misp):
    expected = whole(misp, LARGE)
    source = source_for(misp, large_event_attributes=20, attribute_page_size=10)

    assert source.fetch_one(LARGE) == expected
    assert misp.requests_to("/attributes/restSearch")


def test_fetch_one_small_event_whole(misp):
    source = source_for(misp, large_event_attributes=20, attribute_page_size=10)
    event_id = misp.store.event(DELTA).id

    assert source.fetch_one(str(event_id)) == whole(misp, DELTA)
    assert misp.requests_to("/attributes/restSearch") == []


def test_chunks_bounded_by_attributes(misp):
    # Alpha has 6 attributes, the large event 44, and Bravo, Charlie and Delta 5 together.
    source = source_for(misp, large_event_attributes=50, fetch_chunk_size=20)
    source.list_changed(None, START)
    misp.clear_requests()

    list(source.fetch([ALPHA, LARGE, BRAVO, CHARLIE, DELTA]))

    chunks = [request.json["uuid"] for request in misp.requests_to("/events/restSearch")]
    assert chunks == [[ALPHA, LARGE], [BRAVO, CHARLIE, DELTA]]


# The emulator's /objects/restSearch and includeGalaxy


def post(misp: MispEmulator, path: str, body: dict) -> requests.Response:
    return requests.post(misp.url + path, json=body, headers={"Authorization": DEFAULT_API_KEY, "Accept": "application/json"}, timeout=10)


def test_objects_search_metadata(misp):
    response = post(misp, "/objects/restSearch", {"eventid": LARGE, "metadata": 1})

    objects = [item["Object"] for item in response.json()["response"]]
    assert response.status_code == 200
    assert [item["comment"] for item in objects] == [f"object {index}" for index in range(4)]
    assert all("Attribute" not in item for item in objects)
    assert objects[2]["deleted"] is True
    assert objects[0]["Event"]["id"] == str(misp.store.event(LARGE).id)
    assert response.headers["X-Result-Count"] == "4"


def test_objects_search_attributes_active_only(misp):
    response = post(misp, "/objects/restSearch", {"eventid": LARGE, "object_name": "DOMAIN-IP"})

    objects = [item["Object"] for item in response.json()["response"]]
    assert len(objects) == 4
    assert [len(item["Attribute"]) for item in objects] == [2, 1, 2, 2]
    assert objects[0]["Attribute"][0]["AttributeTag"][0]["Tag"]["name"] == "tlp:green"


def test_objects_search_paged(misp):
    pages = [post(misp, "/objects/restSearch", {"eventid": LARGE, "metadata": 1, "limit": 3, "page": page}).json()["response"]
             for page in (1, 2, 3)]

    assert [len(page) for page in pages] == [3, 1, 0]


def test_objects_search_deleted_fails(misp):
    response = post(misp, "/objects/restSearch", {"eventid": LARGE, "metadata": 1, "deleted": [0, 1]})

    assert response.status_code == 500
    assert response.json()["message"] == "An Internal Error Has Occurred."


def test_objects_search_unsupported_filter_501(misp):
    response = post(misp, "/objects/restSearch", {"eventid": LARGE, "type": "domain"})

    assert response.status_code == 501


def test_attribute_search_include_galaxy(misp):
    body = {"eventid": LARGE, "value": "198.51.100.6", "includeGalaxy": 1}
    alone = post(misp, "/attributes/restSearch", body).json()["response"]["Attribute"]
    with_event_tags = post(misp, "/attributes/restSearch", {**body, "includeEventTags": 1}).json()["response"]["Attribute"]

    assert [galaxy["name"] for galaxy in alone[0]["Galaxy"]] == ["Attack Pattern"]
    # The event's galaxies are appended, so the same galaxy appears twice.
    assert [galaxy["name"] for galaxy in with_event_tags[0]["Galaxy"]] == ["Attack Pattern", "Attack Pattern"]


# A sync end to end


def add_large_event(stack) -> None:
    event = large_event(attributes=30, objects=3)
    event["Event"]["timestamp"] = str(int(stack.source()) - 3600)
    event["Event"]["publish_timestamp"] = event["Event"]["timestamp"]
    stack.misp.add_event(event)


def dry_run_bundle(stack, path: Path) -> dict:
    result = invoke(stack, "sync", "-c", str(stack.config_path), "--dry-run", "--output", str(path))
    assert result.exit_code == 0, result.stderr
    return {item["id"]: item for item in json.loads(path.read_text())["objects"]}


def test_sync_large_event_same_indicators(stack, tmp_path):
    add_large_event(stack)
    stack.write_config()
    whole_bundle = dry_run_bundle(stack, tmp_path / "whole.json")
    assert stack.misp.requests_to("/attributes/restSearch") == []
    stack.write_config(misp={"large_event_attributes": 25, "attribute_page_size": 4})

    paged_bundle = dry_run_bundle(stack, tmp_path / "paged.json")
    result = invoke(stack, "sync", "-c", str(stack.config_path))

    assert result.exit_code == 0, result.stderr
    assert len(stack.misp.requests_to("/attributes/restSearch")) > 4
    assert any("object-0.example.org" in item.get("pattern", "") for item in paged_bundle.values())
    assert paged_bundle == whole_bundle
    sent = {key for key, item in stack.holdings().items() if item["type"] == "indicator"}
    assert sent == {key for key, item in paged_bundle.items() if item["type"] == "indicator"}


def test_sync_page_failure_retried_next_run(stack):
    add_large_event(stack)
    # Only the large event (33 attributes) is paged; the example feed's events are smaller.
    stack.write_config(misp={"large_event_attributes": 25, "attribute_page_size": 4, "max_attempts": 1})
    stack.misp.fail_next("/attributes/restSearch", 500, count=1, skip=2)

    first = invoke(stack, "sync", "-c", str(stack.config_path))

    assert first.exit_code == 1
    assert f"fetching MISP event {LARGE} in pages failed" in first.stderr
    with StateStore(stack.state_path, readonly=True) as state:
        assert state.pending_events("soc") == [LARGE]
    holdings = stack.holdings()
    assert holdings
    assert not any("object-0.example.org" in item.get("pattern", "") for item in holdings.values())

    stack.source.advance(60)
    second = invoke(stack, "sync", "-c", str(stack.config_path))

    assert second.exit_code == 0, second.stderr
    with StateStore(stack.state_path, readonly=True) as state:
        assert state.pending_events("soc") == []
    assert any("object-0.example.org" in item.get("pattern", "") for item in stack.holdings().values())
