"""Tests of the MISP emulator, driven with the real PyMISP client over HTTP on 127.0.0.1.

The fixtures in tests/fixtures/misp contain four events, with times in epoch seconds:

* Alpha (id 101, CIRCL, published) is tagged tlp:green and sentinel:export. Its standalone
  attributes are 198.51.100.7 (IDS), example-alpha.test, a soft-deleted URL (IDS) and
  203.0.113.9 (IDS, tagged tlp:red). A domain-ip object contains c2.alpha.test (IDS) and
  192.0.2.10, a file object contains invoice.pdf. Event timestamp 1700000100,
  publish_timestamp 1700000000, date 2023-11-10.
* Bravo (id 102, owned by the emulator's organisation, created by ESET, unpublished) is
  tagged tlp:red and with the local tag Internal:Review. It contains a sha256 (IDS) and a
  soft-deleted ip-src. Timestamp 1700000200, date 2023-11-12.
* Charlie (id 103, ESET) is tagged tlp:amber and with a threat-actor galaxy tag. It contains
  one non-IDS filename. Timestamp and publish_timestamp 1700000300, date 2023-11-14.
* Delta (id 104, CIRCL) has no tags. It contains phish@bad.test (IDS), 8.8.8.8 (IDS) and
  www.google.com. Timestamp 1700000400, publish_timestamp 1700000350, date 2023-11-14.

The clock starts at 1700001000.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from pymisp import MISPEvent, PyMISP
from pymisp.exceptions import MISPServerError, PyMISPError

from tests.emulators.clock import FakeClock
from tests.emulators.misp import DEFAULT_API_KEY, DEFAULT_ORG_UUID, MispEmulator
from tests.emulators.misp_search import Warninglist
from tests.emulators.tls import EmulatorTLS

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "misp"
CORPUS = REPO_ROOT.parent / "shared" / "corpus" / "misp-events"

START = 1700001000
ALPHA = "a1a1a1a1-0000-4000-8000-000000000001"
BRAVO = "b2b2b2b2-0000-4000-8000-000000000002"
CHARLIE = "c3c3c3c3-0000-4000-8000-000000000003"
DELTA = "d4d4d4d4-0000-4000-8000-000000000004"
ALPHA_IP = "a1a1a1a1-0000-4000-8000-0000000000a1"
ALPHA_DOMAIN = "a1a1a1a1-0000-4000-8000-0000000000a2"
ALPHA_DELETED_URL = "a1a1a1a1-0000-4000-8000-0000000000a3"
ALPHA_RED_IP = "a1a1a1a1-0000-4000-8000-0000000000a4"
ALPHA_DOMAIN_IP_OBJECT = "a1a1a1a1-0000-4000-8000-0000000000b1"
ALPHA_OBJECT_DOMAIN = "a1a1a1a1-0000-4000-8000-0000000000c1"
BRAVO_SHA256 = "b2b2b2b2-0000-4000-8000-0000000000a1"
BRAVO_DELETED_IP = "b2b2b2b2-0000-4000-8000-0000000000a2"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Keep proxy settings of the machine away from requests to 127.0.0.1."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clock():
    return FakeClock(START)


@pytest.fixture
def emulator(clock):
    with MispEmulator(FIXTURES, clock=clock, warninglists=[Warninglist("Public DNS resolvers", ["8.8.8.8"])]) as server:
        yield server


@pytest.fixture
def misp(emulator):
    return PyMISP(emulator.url, emulator.api_key, ssl=False, timeout=5)


def rest_search(emulator: MispEmulator, body: dict, controller: str = "events") -> requests.Response:
    """POST a restSearch body as PyMISP does, keeping the response headers PyMISP hides."""
    headers = {"Authorization": emulator.api_key, "Accept": "application/json", "Content-Type": "application/json"}
    return requests.post(f"{emulator.url}/{controller}/restSearch", data=json.dumps(body), headers=headers, timeout=5)


def uuids(events: list[dict]) -> list[str]:
    return [item["Event"]["uuid"] for item in events]


def event_of(events: list[dict], event_uuid: str) -> dict:
    return next(item["Event"] for item in events if item["Event"]["uuid"] == event_uuid)


def attribute_uuids(event: dict) -> list[str]:
    return [attribute["uuid"] for attribute in event.get("Attribute", [])]


def object_attribute_uuids(event: dict) -> list[str]:
    return [attribute["uuid"] for misp_object in event.get("Object", []) for attribute in misp_object["Attribute"]]


def timestamps(emulator: MispEmulator, event_uuid: str) -> tuple[int, int, bool]:
    event = emulator.get_event(event_uuid)["Event"]
    return int(event["timestamp"]), int(event["publish_timestamp"]), event["published"]


# Connecting


def test_connect_requests_of_pymisp(emulator, misp):
    calls = [(request.method, request.path) for request in emulator.requests]

    assert calls == [("GET", "/servers/getVersion"), ("GET", "/users/view/me"), ("GET", "/attributes/describeTypes.json")]
    assert all(request.headers["Authorization"] == emulator.api_key for request in emulator.requests)
    assert all(request.headers["Accept"] == "application/json" for request in emulator.requests)
    assert misp._current_role.perm_sync is True
    assert misp._current_user.org_id == "1"
    assert "ip-dst" in misp.types


def test_connect_with_wrong_key_raises(emulator):
    with pytest.raises(PyMISPError, match="Unable to get the user settings.*403"):
        PyMISP(emulator.url, "WrongKey" + "0" * 32, ssl=False, timeout=5)

    # Without pymisp_recommended_version in the 403 body, PyMISP also requests the old version endpoint.
    calls = [request.path for request in emulator.requests]
    assert calls == ["/servers/getVersion", "/servers/getPyMISPVersion.json", "/users/view/me"]


def test_wrong_and_missing_key_get_403(emulator):
    wrong = requests.get(f"{emulator.url}/servers/getVersion", headers={"Authorization": "a" * 40}, timeout=5)
    missing = requests.post(f"{emulator.url}/events/restSearch", json={}, timeout=5)

    for response in (wrong, missing):
        assert response.status_code == 403
        assert response.json()["message"].startswith("Authentication failed.")
        assert set(response.json()) == {"name", "message", "url"}
    assert missing.json()["url"] == "/events/restSearch"


def test_x_misp_auth_header_accepted(emulator):
    response = requests.get(f"{emulator.url}/servers/getVersion", headers={"X-MISP-AUTH": emulator.api_key}, timeout=5)

    assert response.status_code == 200
    assert response.json()["pymisp_recommended_version"] == "2.5.1"


def test_unknown_path_gets_404(emulator):
    response = requests.get(f"{emulator.url}/nothing/here", headers={"Authorization": emulator.api_key}, timeout=5)

    assert response.status_code == 404
    assert response.json() == {"name": "Not Found", "message": "Not Found", "url": "/nothing/here"}


def test_get_restsearch_without_parameters(emulator):
    response = requests.get(f"{emulator.url}/events/restSearch", headers={"Authorization": emulator.api_key}, timeout=5)

    assert response.status_code == 400
    assert "GET and no parameters are not allowed" in response.json()["message"]


def test_invalid_json_body_gets_405(emulator):
    response = requests.post(f"{emulator.url}/events/restSearch", data=b"{not json", headers={"Authorization": emulator.api_key}, timeout=5)

    assert response.status_code == 405
    assert response.json()["message"].startswith("Invalid JSON input.")


def test_constructor_rejects_malformed_key():
    with pytest.raises(ValueError, match="40 letters or digits"):
        MispEmulator(api_key="short")


def test_https_with_shared_ca(tmp_path):
    tls = EmulatorTLS.create(tmp_path)
    with MispEmulator(FIXTURES, tls=tls, clock=FakeClock(START)) as server:
        url = server.url
        client = PyMISP(url, server.api_key, ssl=server.ca_bundle_path, timeout=5)
        events = client.search(controller="events", metadata=True)

    assert url.startswith("https://127.0.0.1:")
    assert len(events) == 4


# Loading and wire shape


def test_fixture_folder_loads_all_shapes(emulator):
    assert sorted(event.uuid for event in emulator.store.events.values()) == [ALPHA, BRAVO, CHARLIE, DELTA]
    assert sorted(emulator.store.events) == [101, 102, 103, 104]


def test_event_json_uses_misp_types(misp):
    event = event_of(misp.search(controller="events", eventid=101), ALPHA)
    attribute = event["Attribute"][0]

    assert event["id"] == "101"
    assert event["timestamp"] == "1700000100"
    assert event["publish_timestamp"] == "1700000000"
    assert event["threat_level_id"] == "2"
    assert event["attribute_count"] == "6"
    assert event["published"] is True
    assert event["locked"] is False
    assert event["Orgc"]["name"] == "CIRCL"
    assert attribute["to_ids"] is True
    assert attribute["deleted"] is False
    assert attribute["distribution"] == "5"
    assert attribute["object_id"] == "0"
    assert event["Tag"][0]["local"] is False


def test_add_event_fills_ids_timestamps(emulator, misp):
    event_uuid = emulator.add_event({"info": "Added", "Attribute": [{"type": "domain", "value": "added.test"}]})
    event = event_of(misp.search(controller="events", uuid=event_uuid), event_uuid)

    assert event["timestamp"] == str(START)
    assert event["id"] == "105"
    assert event["Attribute"][0]["timestamp"] == str(START)
    assert event["Attribute"][0]["category"] == "Network activity"
    assert event["Attribute"][0]["to_ids"] is True


def test_add_event_refuses_duplicate_uuid(emulator):
    with pytest.raises(ValueError, match="already stored"):
        emulator.add_event({"uuid": ALPHA, "info": "again"})


def test_pythonify_loads_events(misp):
    events = misp.search(controller="events", pythonify=True)

    assert all(isinstance(event, MISPEvent) for event in events)
    assert {event.uuid for event in events} == {ALPHA, BRAVO, CHARLIE, DELTA}


# Time filters


def test_metadata_search_in_timestamp_range(misp):
    events = misp.search(controller="events", metadata=True, timestamp=[1700000150, 1700000350])

    assert uuids(events) == [BRAVO, CHARLIE]
    for item in events:
        assert "Attribute" not in item["Event"]
        assert "Object" not in item["Event"]
        assert "Tag" in item["Event"]
        assert "Galaxy" in item["Event"]
    assert event_of(events, CHARLIE)["Galaxy"][0]["GalaxyCluster"][0]["value"] == "Sofacy"


def test_timestamp_range_reversed_is_swapped(misp):
    assert uuids(misp.search(controller="events", metadata=True, timestamp=[1700000350, 1700000150])) == [BRAVO, CHARLIE]


def test_timestamp_lower_bound_only(misp):
    assert uuids(misp.search(controller="events", metadata=True, timestamp=1700000300)) == [CHARLIE, DELTA]


def test_timestamp_relative_to_clock(misp, clock):
    assert uuids(misp.search(controller="events", metadata=True, timestamp="850s")) == [BRAVO, CHARLIE, DELTA]
    assert uuids(misp.search(controller="events", metadata=True, timestamp="15m")) == [ALPHA, BRAVO, CHARLIE, DELTA]
    assert uuids(misp.search(controller="events", metadata=True, timestamp="1m")) == []

    clock.advance(3600)
    assert uuids(misp.search(controller="events", metadata=True, timestamp="1h")) == []
    assert uuids(misp.search(controller="events", metadata=True, timestamp="2h")) == [ALPHA, BRAVO, CHARLIE, DELTA]


def test_invalid_time_value_matches_nothing(misp):
    assert misp.search(controller="events", metadata=True, timestamp="not-a-time") == []
    assert misp.search(controller="events", metadata=True, timestamp="xd") == []


def test_pymisp_zero_lower_bound_becomes_now(misp, clock):
    # PyMISP turns 0 into None. MISP resolves null to now + 1 and swaps the pair, so
    # [0, b] selects the events modified after b, not before it.
    assert uuids(misp.search(controller="events", metadata=True, timestamp=[0, 1700000250])) == [CHARLIE, DELTA]


def test_time_range_of_three_values_fails(emulator):
    response = rest_search(emulator, {"timestamp": [1, 2, 3]})

    assert response.status_code == 500
    assert response.json()["message"] == "An Internal Error Has Occurred."


def test_publish_timestamp_and_last(misp):
    assert uuids(misp.search(controller="events", metadata=True, publish_timestamp=1700000300)) == [CHARLIE, DELTA]
    assert uuids(misp.search(controller="events", metadata=True, last="1000s")) == [ALPHA, CHARLIE, DELTA]


def test_event_timestamp_alias(misp):
    assert uuids(misp.search(controller="events", metadata=True, event_timestamp=1700000300)) == [CHARLIE, DELTA]


def test_date_filters_use_event_date(misp):
    assert uuids(misp.search(controller="events", metadata=True, date_from="2023-11-12", date_to="2023-11-13")) == [BRAVO]
    assert uuids(misp.search(controller="events", metadata=True, date_from="2023-11-14")) == [CHARLIE, DELTA]


# Tags


def test_tags_or_list(misp):
    assert uuids(misp.search(controller="events", metadata=True, tags=["tlp:green", "tlp:amber"])) == [ALPHA, CHARLIE]


def test_tags_case_insensitive_like(misp):
    assert uuids(misp.search(controller="events", metadata=True, tags=["TLP:GREEN"])) == [ALPHA]
    assert uuids(misp.search(controller="events", metadata=True, tags=["tlp:%"])) == [ALPHA, BRAVO, CHARLIE]
    assert uuids(misp.search(controller="events", metadata=True, tags=["tlp:gr__n"])) == [ALPHA]


def test_tags_case_sensitive_option(clock):
    with MispEmulator(FIXTURES, clock=clock, tag_names_case_sensitive=True) as server:
        client = PyMISP(server.url, server.api_key, ssl=False, timeout=5)

        assert client.search(controller="events", metadata=True, tags=["TLP:GREEN"]) == []
        assert uuids(client.search(controller="events", metadata=True, tags=["tlp:green"])) == [ALPHA]


def test_tag_on_attribute_selects_event(misp):
    events = misp.search(controller="events", tags=["tlp:red"])

    assert uuids(events) == [ALPHA, BRAVO]
    # The whole event comes back, not only the tagged attribute.
    assert ALPHA_IP in attribute_uuids(event_of(events, ALPHA))


def test_event_tags_ignore_attribute_tags(misp):
    assert uuids(misp.search(controller="events", metadata=True, event_tags=["tlp:red"])) == [BRAVO]


def test_tags_not_excludes_event_level_only(misp):
    events = misp.search(controller="events", tags=["!tlp:red"])

    assert uuids(events) == [ALPHA, CHARLIE, DELTA]
    # The event with the tag on one attribute stays, and that attribute is removed from it.
    assert ALPHA_RED_IP not in attribute_uuids(event_of(events, ALPHA))
    assert ALPHA_IP in attribute_uuids(event_of(events, ALPHA))


def test_tags_not_drops_event_without_attributes(emulator, misp):
    # The NOT ids also run as an Attribute-scope sub-query: "the event has an attribute row
    # without the tag", which an event without attributes cannot satisfy.
    empty = emulator.add_event({"info": "Empty", "Tag": [{"name": "tlp:green"}]})

    assert empty in uuids(misp.search(controller="events", metadata=True))
    assert empty not in uuids(misp.search(controller="events", metadata=True, tags=["!tlp:red"]))


def test_tags_complex_query(misp):
    both = misp.build_complex_query(and_parameters=["tlp:green", "sentinel:export"])
    either_but_not = misp.build_complex_query(or_parameters=["tlp:%"], not_parameters=["tlp:red"])

    assert uuids(misp.search(controller="events", metadata=True, tags=both)) == [ALPHA]
    assert uuids(misp.search(controller="events", metadata=True, tags=either_but_not)) == [ALPHA, CHARLIE]


def test_tags_and_with_unknown_tag_matches_nothing(misp):
    query = misp.build_complex_query(and_parameters=["tlp:green", "no-such-tag"])

    assert misp.search(controller="events", metadata=True, tags=query) == []


def test_tags_and_pattern_several_tags(misp):
    # MISP compares the number of AND terms with the number of tag ids found.
    query = misp.build_complex_query(and_parameters=["tlp:%"])

    assert misp.search(controller="events", metadata=True, tags=query) == []


def test_tags_missing_or_tag_matches_nothing(misp):
    assert misp.search(controller="events", metadata=True, tags=["no-such-tag"]) == []
    assert misp.search(controller="events", metadata=True, tags=["no-such-tag", "!tlp:red"]) == []


def test_tags_missing_not_tag_is_ignored(misp):
    assert uuids(misp.search(controller="events", metadata=True, tags=["!no-such-tag"])) == [ALPHA, BRAVO, CHARLIE, DELTA]


def test_tags_ampersand_string(misp):
    assert uuids(misp.search(controller="events", metadata=True, tags="tlp:%&&!tlp:amber")) == [ALPHA, BRAVO]


def test_numeric_tag_is_tag_id(emulator, misp):
    amber_id = emulator.tag_id("tlp:amber")

    assert uuids(misp.search(controller="events", metadata=True, tags=[str(amber_id)])) == [CHARLIE]
    assert misp.search(controller="events", metadata=True, tags=["99999"]) == []


def test_local_tags_hidden_from_sync_user(misp, emulator):
    searched = event_of(misp.search(controller="events", eventid=102), BRAVO)
    viewed = misp.get_event(102)["Event"]

    assert [tag["name"] for tag in searched["Tag"]] == ["tlp:red"]
    assert [tag["name"] for tag in viewed["Tag"]] == ["tlp:red", "Internal:Review"]
    assert viewed["Tag"][1]["local"] is True


def test_local_tag_still_selects_event(misp):
    assert uuids(misp.search(controller="events", metadata=True, tags=["Internal:Review"])) == [BRAVO]


# to_ids, deleted, type, value, uuid, org


def test_to_ids_filters_events_and_attributes(misp):
    events = misp.search(controller="events", to_ids=1)
    alpha = event_of(events, ALPHA)

    assert uuids(events) == [ALPHA, BRAVO, DELTA]
    assert attribute_uuids(alpha) == [ALPHA_IP, ALPHA_RED_IP]
    assert object_attribute_uuids(alpha) == [ALPHA_OBJECT_DOMAIN]
    # The file object has no IDS attribute left, so it is dropped.
    assert [misp_object["uuid"] for misp_object in alpha["Object"]] == [ALPHA_DOMAIN_IP_OBJECT]


def test_to_ids_zero_keeps_non_ids_only(misp):
    events = misp.search(controller="events", to_ids=0)

    assert uuids(events) == [ALPHA, CHARLIE, DELTA]
    assert attribute_uuids(event_of(events, ALPHA)) == [ALPHA_DOMAIN]


def test_deleted_absent_hides_soft_deleted(misp):
    alpha = event_of(misp.search(controller="events", eventid=101), ALPHA)

    assert ALPHA_DELETED_URL not in attribute_uuids(alpha)


def test_deleted_both_shows_soft_deleted(misp):
    events = misp.search(controller="events", deleted=[0, 1])
    alpha = event_of(events, ALPHA)
    deleted = next(attribute for attribute in alpha["Attribute"] if attribute["uuid"] == ALPHA_DELETED_URL)

    assert deleted["deleted"] is True
    assert BRAVO_DELETED_IP in attribute_uuids(event_of(events, BRAVO))


def test_deleted_only_selects_deleted_rows(misp):
    events = misp.search(controller="events", deleted="only")

    assert uuids(events) == [ALPHA, BRAVO]
    assert attribute_uuids(event_of(events, ALPHA)) == [ALPHA_DELETED_URL]
    assert attribute_uuids(event_of(events, BRAVO)) == [BRAVO_DELETED_IP]


def test_deleted_drops_event_without_attributes(emulator, misp):
    # `deleted` is also an Attribute-scope selector, so [0, 1] means "has an attribute row".
    empty = emulator.add_event({"info": "Empty"})

    assert empty not in uuids(misp.search(controller="events", deleted=[0, 1]))
    assert empty in uuids(misp.search(controller="events"))


def test_deleted_without_perm_sync_own_org(clock):
    with MispEmulator(FIXTURES, clock=clock, perm_sync=False) as server:
        client = PyMISP(server.url, server.api_key, ssl=False, timeout=5)
        events = client.search(controller="events", deleted=[0, 1])

    # Bravo belongs to the emulator's organisation, Alpha to CIRCL.
    assert BRAVO_DELETED_IP in attribute_uuids(event_of(events, BRAVO))
    assert ALPHA_DELETED_URL not in attribute_uuids(event_of(events, ALPHA))
    assert ALPHA_IP in attribute_uuids(event_of(events, ALPHA))


def test_type_and_value_select_events(misp):
    assert uuids(misp.search(controller="events", metadata=True, type_attribute="email-src")) == [DELTA]
    assert uuids(misp.search(controller="events", metadata=True, value="c2.alpha.test")) == [ALPHA]
    assert uuids(misp.search(controller="events", metadata=True, value="%.alpha.test")) == [ALPHA]


def test_uuid_matches_event_or_attribute(misp):
    assert uuids(misp.search(controller="events", metadata=True, uuid=BRAVO)) == [BRAVO]
    assert uuids(misp.search(controller="events", metadata=True, uuid=ALPHA_RED_IP)) == [ALPHA]
    assert uuids(misp.search(controller="events", metadata=True, uuid=[CHARLIE, DELTA])) == [CHARLIE, DELTA]


def test_eventid_accepts_ids_and_uuids(misp):
    assert uuids(misp.search(controller="events", metadata=True, eventid=[101, DELTA])) == [ALPHA, DELTA]


def test_org_by_name_uuid_and_negation(misp):
    assert uuids(misp.search(controller="events", metadata=True, org="ESET")) == [BRAVO, CHARLIE]
    assert uuids(misp.search(controller="events", metadata=True, org="55f6ea5e-2c60-40e5-964f-47a8950d210f")) == [ALPHA, DELTA]
    assert uuids(misp.search(controller="events", metadata=True, org="!CIRCL")) == [BRAVO, CHARLIE]
    assert misp.search(controller="events", metadata=True, org="No Such Org") == []


def test_published_filter(emulator, misp):
    assert uuids(misp.search(controller="events", metadata=True, published=True)) == [ALPHA, CHARLIE, DELTA]
    # false skips the selection but not fetchEvent, so one event comes back and the count is four.
    response = rest_search(emulator, {"metadata": 1, "published": False})

    assert uuids(response.json()["response"]) == [BRAVO]
    assert response.headers["X-Result-Count"] == "4"


def test_unknown_parameter_dropped(misp):
    assert len(misp.search(controller="events", metadata=True, no_such_filter="x")) == 4


def test_unimplemented_parameter_gets_501(emulator):
    response = rest_search(emulator, {"searchall": "alpha"})

    assert response.status_code == 501
    assert "searchall" in response.json()["message"]


# Warninglists


def test_warninglist_hits_listed(misp):
    delta = event_of(misp.search(controller="events", eventid=104, includeWarninglistHits=1), DELTA)
    hit = next(attribute for attribute in delta["Attribute"] if attribute["value"] == "8.8.8.8")

    assert hit["warnings"] == [{
        "value": "8.8.8.8",
        "match": "8.8.8.8",
        "warninglist_id": "1",
        "warninglist_name": "Public DNS resolvers",
        "warninglist_category": "false_positive",
    }]


def test_enforce_warninglist_drops_hits(misp):
    delta = event_of(misp.search(controller="events", eventid=104, enforce_warninglist=True), DELTA)

    assert [attribute["value"] for attribute in delta["Attribute"]] == ["phish@bad.test", "www.google.com"]


# Paging and order


def test_paging_with_result_count(emulator):
    first = rest_search(emulator, {"metadata": 1, "limit": 3, "page": 1, "order": "Event.timestamp DESC"})
    second = rest_search(emulator, {"metadata": 1, "limit": 3, "page": 2, "order": "Event.timestamp DESC"})
    beyond = rest_search(emulator, {"metadata": 1, "limit": 3, "page": 3, "order": "Event.timestamp DESC"})

    assert uuids(first.json()["response"]) == [DELTA, CHARLIE, BRAVO]
    assert uuids(second.json()["response"]) == [ALPHA]
    assert beyond.json()["response"] == []
    for response in (first, second, beyond):
        assert response.headers["X-Result-Count"] == "4"


def test_result_count_total_filtered(emulator):
    response = rest_search(emulator, {"metadata": 1, "tags": ["tlp:%"], "limit": 1, "order": "id"})

    assert uuids(response.json()["response"]) == [ALPHA]
    assert response.headers["X-Result-Count"] == "3"


def test_order_variants(misp):
    assert uuids(misp.search(controller="events", metadata=True, order="timestamp")) == [ALPHA, BRAVO, CHARLIE, DELTA]
    assert uuids(misp.search(controller="events", metadata=True, order="publish_timestamp desc")) == [DELTA, CHARLIE, ALPHA, BRAVO]
    assert uuids(misp.search(controller="events", metadata=True, order="id DESC")) == [DELTA, CHARLIE, BRAVO, ALPHA]


def test_invalid_order_keeps_id_order(misp):
    assert uuids(misp.search(controller="events", metadata=True, order="Attribute.value")) == [ALPHA, BRAVO, CHARLIE, DELTA]


def test_pymisp_limit_and_page(misp):
    assert uuids(misp.search(controller="events", metadata=True, limit=2, page=2, order="id")) == [CHARLIE, DELTA]


# Hooks: which timestamp moves


def test_edit_attribute_moves_timestamps(emulator, misp, clock):
    clock.advance(60)
    emulator.edit_attribute(ALPHA, ALPHA_IP, value="198.51.100.8", to_ids=False)
    now = START + 60

    assert timestamps(emulator, ALPHA) == (now, 1700000000, False)
    alpha = event_of(misp.search(controller="events", timestamp=now), ALPHA)
    edited = next(attribute for attribute in alpha["Attribute"] if attribute["uuid"] == ALPHA_IP)
    assert edited["timestamp"] == str(now)
    assert edited["value"] == "198.51.100.8"
    assert edited["to_ids"] is False
    untouched = next(attribute for attribute in alpha["Attribute"] if attribute["uuid"] == ALPHA_DOMAIN)
    assert untouched["timestamp"] == "1700000050"


def test_object_attribute_edit_moves_object(emulator, clock):
    clock.advance(30)
    emulator.edit_attribute(ALPHA, ALPHA_OBJECT_DOMAIN, comment="seen again")
    alpha = emulator.get_event(ALPHA)["Event"]
    domain_ip = next(misp_object for misp_object in alpha["Object"] if misp_object["uuid"] == ALPHA_DOMAIN_IP_OBJECT)

    assert domain_ip["timestamp"] == str(START + 30)
    assert domain_ip["Attribute"][0]["timestamp"] == str(START + 30)
    assert alpha["timestamp"] == str(START + 30)


def test_edit_attribute_rejects_unknown_field(emulator):
    with pytest.raises(ValueError, match="cannot edit"):
        emulator.edit_attribute(ALPHA, ALPHA_IP, uuid="other")


def test_add_attribute_found_by_timestamp(emulator, misp, clock):
    clock.advance(10)
    new_uuid = emulator.add_attribute(CHARLIE, {"type": "ip-dst", "value": "192.0.2.77", "to_ids": True})
    found = misp.search(controller="attributes", timestamp=START + 10)

    assert [attribute["uuid"] for attribute in found["Attribute"]] == [new_uuid]
    assert timestamps(emulator, CHARLIE) == (START + 10, 1700000300, False)


def test_soft_delete_attribute(emulator, misp, clock):
    clock.advance(5)
    emulator.soft_delete_attribute(BRAVO, BRAVO_SHA256)
    bravo = event_of(misp.search(controller="events", deleted=[0, 1], timestamp=START + 5), BRAVO)
    deleted = next(attribute for attribute in bravo["Attribute"] if attribute["uuid"] == BRAVO_SHA256)

    assert deleted["deleted"] is True
    assert deleted["timestamp"] == str(START + 5)
    assert bravo["attribute_count"] == "0"


def test_hard_delete_attribute(emulator, misp, clock):
    clock.advance(5)
    emulator.hard_delete_attribute(ALPHA, ALPHA_DOMAIN)
    alpha = event_of(misp.search(controller="events", deleted=[0, 1], timestamp=START + 5), ALPHA)

    assert ALPHA_DOMAIN not in attribute_uuids(alpha)
    assert alpha["published"] is False


def test_soft_delete_object_hides_it(emulator, misp, clock):
    clock.advance(5)
    emulator.soft_delete_object(ALPHA, ALPHA_DOMAIN_IP_OBJECT)
    alpha = event_of(misp.search(controller="events", eventid=101), ALPHA)

    assert ALPHA_DOMAIN_IP_OBJECT not in [misp_object["uuid"] for misp_object in alpha["Object"]]
    assert alpha["timestamp"] == str(START + 5)


def test_global_event_tag_bumps_timestamp(emulator, misp, clock):
    clock.advance(20)
    emulator.add_event_tag(DELTA, "tlp:clear")

    assert timestamps(emulator, DELTA) == (START + 20, 1700000350, False)
    assert uuids(misp.search(controller="events", metadata=True, tags=["tlp:clear"], timestamp=START + 20)) == [DELTA]


def test_local_event_tag_keeps_timestamp(emulator, misp, clock):
    clock.advance(20)
    emulator.add_event_tag(DELTA, "sentinel:export", local=True)

    assert timestamps(emulator, DELTA) == (1700000400, 1700000350, True)
    # An incremental query by timestamp misses the newly tagged event, but an untimed tag query finds it.
    assert misp.search(controller="events", metadata=True, tags=["sentinel:export"], timestamp=START) == []
    assert uuids(misp.search(controller="events", metadata=True, tags=["sentinel:export"])) == [ALPHA, DELTA]


def test_remove_event_tag(emulator, misp, clock):
    clock.advance(20)
    emulator.remove_event_tag(BRAVO, "Internal:Review")
    assert timestamps(emulator, BRAVO) == (1700000200, 0, False)

    emulator.remove_event_tag(BRAVO, "tlp:red")
    assert timestamps(emulator, BRAVO)[0] == START + 20
    assert misp.search(controller="events", metadata=True, event_tags=["tlp:red"]) == []


def test_attribute_tag_moves_attribute_timestamp(emulator, clock):
    clock.advance(15)
    emulator.add_attribute_tag(ALPHA, ALPHA_IP, "kill-chain:delivery")
    emulator.add_attribute_tag(ALPHA, ALPHA_DOMAIN, "workflow:todo", local=True)
    alpha = emulator.get_event(ALPHA)["Event"]
    by_uuid = {attribute["uuid"]: attribute for attribute in alpha["Attribute"]}

    assert by_uuid[ALPHA_IP]["timestamp"] == str(START + 15)
    assert by_uuid[ALPHA_DOMAIN]["timestamp"] == "1700000050"
    assert alpha["timestamp"] == str(START + 15)


def test_publish_moves_only_publish_timestamp(emulator, misp, clock):
    clock.advance(90)
    emulator.publish(BRAVO)

    assert timestamps(emulator, BRAVO) == (1700000200, START + 90, True)
    assert uuids(misp.search(controller="events", metadata=True, publish_timestamp=START + 90)) == [BRAVO]
    assert misp.search(controller="events", metadata=True, timestamp=START + 90) == []


def test_delete_event_leaves_no_trace(emulator, misp):
    emulator.delete_event(CHARLIE)

    assert misp.search(controller="events", metadata=True, uuid=CHARLIE) == []
    assert misp.search(controller="events", metadata=True, deleted=[0, 1], eventid=103) == []
    assert misp.get_event(CHARLIE)["errors"][0] == 404


# /attributes/restSearch and /events/view


def test_attribute_search_by_attribute_timestamp(misp):
    found = misp.search(controller="attributes", timestamp=1700000300)

    assert [attribute["value"] for attribute in found["Attribute"]] == ["dropper.exe", "phish@bad.test", "8.8.8.8", "www.google.com"]
    assert found["Attribute"][0]["Event"]["uuid"] == CHARLIE
    assert set(found["Attribute"][0]["Event"]) == {"org_id", "distribution", "publish_timestamp", "id", "info", "orgc_id", "uuid"}


def test_attribute_search_event_tags_inherited(misp):
    found = misp.search(controller="attributes", eventid=101, include_event_tags=True)
    red = next(attribute for attribute in found["Attribute"] if attribute["uuid"] == ALPHA_RED_IP)

    assert [(tag["name"], tag.get("inherited")) for tag in red["Tag"]] == [("tlp:red", None), ("tlp:green", 1), ("sentinel:export", 1)]


def test_attribute_search_ids_type_deleted(misp):
    ids_ips = misp.search(controller="attributes", to_ids=1, type_attribute="ip-dst")
    deleted = misp.search(controller="attributes", deleted="only")

    assert [attribute["value"] for attribute in ids_ips["Attribute"]] == ["198.51.100.7", "203.0.113.9", "8.8.8.8"]
    assert [attribute["uuid"] for attribute in deleted["Attribute"]] == [ALPHA_DELETED_URL, BRAVO_DELETED_IP]


def test_attribute_search_object_context(misp):
    found = misp.search(controller="attributes", uuid=ALPHA_OBJECT_DOMAIN)

    assert found["Attribute"][0]["Object"]["distribution"] == "5"
    assert found["Attribute"][0]["object_relation"] == "domain"


def test_attribute_search_not_tag_event_level(misp):
    # The NOT ids left by the Attribute-scope pass also run through the Event-scope pass
    # (MispAttribute::buildFilterConditions), so event-level tlp:red excludes Bravo's attributes.
    found = misp.search(controller="attributes", tags=["!tlp:red"])
    values = [attribute["value"] for attribute in found["Attribute"]]

    assert "203.0.113.9" not in values
    assert "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" not in values
    assert "198.51.100.7" in values


def test_attribute_search_paging_count(emulator):
    full_page = rest_search(emulator, {"limit": 3, "page": 1}, controller="attributes")
    last_page = rest_search(emulator, {"limit": 5, "page": 3}, controller="attributes")

    assert len(full_page.json()["response"]["Attribute"]) == 3
    # With limit MISP counts the page and adds one when it is full, as a hint that more may follow.
    assert full_page.headers["X-Result-Count"] == "4"
    assert last_page.headers["X-Result-Count"] == "1"


def test_view_event_by_id_and_uuid(misp):
    by_id = misp.get_event(104)["Event"]
    by_uuid = misp.get_event(DELTA, pythonify=True)

    assert by_id["uuid"] == DELTA
    assert by_uuid.info == "Delta: warninglist hits"
    # The view includes warninglist hits.
    assert any("warnings" in attribute for attribute in by_id["Attribute"])


def test_view_unknown_event_404(emulator):
    response = requests.get(f"{emulator.url}/events/view/999", headers={"Authorization": emulator.api_key}, timeout=5)

    assert response.status_code == 404
    assert response.json()["message"] == "Invalid event"


# Fault injection and the request log


def test_fail_next_then_recover(emulator, misp):
    emulator.fail_next("/events/restSearch", status=500, count=2)

    for _ in range(2):
        with pytest.raises(MISPServerError):
            misp.search(controller="events", metadata=True)
    assert len(misp.search(controller="events", metadata=True)) == 4


def test_fail_next_custom_body_and_prefix(emulator):
    emulator.fail_next("/attributes/", status=503, body={"message": "maintenance"})

    assert rest_search(emulator, {"metadata": 1}).status_code == 200
    failed = rest_search(emulator, {}, controller="attributes")
    assert failed.status_code == 503
    assert failed.json() == {"message": "maintenance"}
    assert rest_search(emulator, {}, controller="attributes").status_code == 200


def test_disconnect_next(emulator):
    emulator.disconnect_next("/events/restSearch")

    with pytest.raises(requests.ConnectionError):
        rest_search(emulator, {"metadata": 1})
    assert rest_search(emulator, {"metadata": 1}).status_code == 200


def test_slow_next_triggers_client_timeout(emulator):
    emulator.slow_next("/events/restSearch", seconds=0.3)
    headers = {"Authorization": emulator.api_key}

    with pytest.raises(requests.Timeout):
        requests.post(f"{emulator.url}/events/restSearch", json={"metadata": 1}, headers=headers, timeout=0.05)
    assert rest_search(emulator, {"metadata": 1}).status_code == 200


def test_request_log_records_json_body(emulator, misp):
    emulator.clear_requests()
    misp.search(controller="events", metadata=True, tags=["tlp:green"], timestamp=[1, 2])
    recorded = emulator.requests_to("/events/restSearch")

    assert len(recorded) == 1
    assert recorded[0].method == "POST"
    assert recorded[0].json["tags"] == ["tlp:green"]
    assert recorded[0].json["timestamp"] == [1, 2]
    assert recorded[0].json["metadata"] == 1
    assert recorded[0].headers["Authorization"] == emulator.api_key


# The shared corpus of real events, when it is there


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus of MISP events is not next to the repository")
def test_corpus_events_load_and_search(clock):
    with MispEmulator(CORPUS, clock=clock) as server:
        client = PyMISP(server.url, server.api_key, ssl=False, timeout=30)
        count = len(server.store.events)
        listed = rest_search(server, {"metadata": 1, "limit": 5, "page": 1, "order": "id"})
        events = client.search(controller="events", pythonify=True)
        ids_only = client.search(controller="events", to_ids=1)

    assert count > 40
    assert listed.headers["X-Result-Count"] == str(count)
    assert len(listed.json()["response"]) == 5
    assert len(events) == count
    attributes = [attribute for item in ids_only for attribute in item["Event"]["Attribute"]]
    attributes += [attribute for item in ids_only for misp_object in item["Event"]["Object"] for attribute in misp_object["Attribute"]]
    assert attributes
    assert all(attribute["to_ids"] is True for attribute in attributes)


# Running by hand


def test_command_line_serves_until_stopped():
    command = [sys.executable, "-m", "tests.emulators.misp", "--events", str(FIXTURES), "--port", "0", "--key", DEFAULT_API_KEY]
    environment = {key: value for key, value in os.environ.items() if key not in PROXY_VARIABLES}
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=environment)
    try:
        first_line = process.stdout.readline()
        url = first_line.split()[-1]
        response = requests.post(f"{url}/events/restSearch", json={"metadata": 1}, headers={"Authorization": DEFAULT_API_KEY}, timeout=5)
    finally:
        process.terminate()
        process.wait(timeout=5)

    assert first_line.startswith("MISP emulator: http://127.0.0.1:")
    assert response.status_code == 200
    assert len(response.json()["response"]) == 4


def test_default_org_is_own_org(emulator):
    assert emulator.store.own_org.uuid == DEFAULT_ORG_UUID
    assert emulator.store.event(BRAVO).org_id == emulator.store.own_org.id
