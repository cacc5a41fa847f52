"""Reading MISP events from feed folders and MISP JSON files in every shape MISP writes."""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misp2sentinel.config import MappingSettings
from misp2sentinel.report import DUPLICATE, NOT_IDS, RunReport
from misp2sentinel.sources.files import read_sources
from misp2sentinel.sources.normalize import events_from_document, normalize_attribute
from tests.conftest import (
    EVENT_UUID,
    PHISHING_GALAXY,
    FIXTURES,
    TLP_GREEN,
    check_stix,
    map_normalised,
    misp_attribute,
    misp_event,
    misp_object,
)

FEED = FIXTURES / "feed"
FEED_EVENT_A = "c6a1f1b0-6c0e-4f5e-9d1a-7b2e3f4a5b6c"
FEED_EVENT_B = "d7b2a2c1-7d1f-4a6f-8e2b-8c3f4a5b6c7d"
SECOND_EVENT_UUID = "9e8d7c6b-5a49-4382-9716-05f4e3d2c1b0"
SHA256 = "592756cafc5f9c50b7a1f8c862f3605ae56199d5f61327e1bcf73fa8ab77182d"


def read(paths: list[Path]) -> tuple[list[dict], RunReport]:
    report = RunReport("export")
    events = list(read_sources(paths, report))
    return events, report


def patterns_of(events: list[dict], settings: MappingSettings | None = None) -> list[str]:
    return [i["pattern"] for event in events for i in map_normalised(event, settings).indicators]


def write_json(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def export_bundle(run_cli, tmp_path: Path, *sources: Path, extra: tuple[str, ...] = ()):
    output = tmp_path / "bundle.json"
    arguments = ["export"]
    for source in sources:
        arguments += ["--source", str(source)]
    result = run_cli(*arguments, "--output", str(output), *extra)
    bundle = json.loads(output.read_text(encoding="utf-8")) if output.exists() else None
    return result, bundle


# Feed folder


def test_feed_reads_manifest_events():
    events, report = read([FEED])

    assert [event["uuid"] for event in events] == [FEED_EVENT_A, FEED_EVENT_B]
    assert report.inputs_failed == 0


def test_feed_patterns():
    events, _ = read([FEED])

    assert patterns_of(events) == [
        "[ipv4-addr:value = '198.51.100.7']",
        "[domain-name:value = 'c2.example.com']",
        "[ipv4-addr:value = '198.51.100.8']",
        f"[file:hashes.'SHA-256' = '{SHA256}']",
        "[url:value = 'https://login.example.net/o\\'auth']",
    ]


def test_feed_missing_event_file_failed(tmp_path, caplog):
    feed = tmp_path / "feed"
    shutil.copytree(FEED, feed)
    manifest = json.loads((feed / "manifest.json").read_text())
    manifest[SECOND_EVENT_UUID] = {"info": "listed but absent"}
    write_json(feed / "manifest.json", manifest)

    with caplog.at_level(logging.ERROR):
        events, report = read([feed])

    assert [event["uuid"] for event in events] == [FEED_EVENT_A, FEED_EVENT_B]
    assert report.inputs_failed == 1
    assert f"{SECOND_EVENT_UUID}.json" in caplog.text


def test_feed_export_cli(run_cli, tmp_path):
    result, bundle = export_bundle(run_cli, tmp_path, FEED)

    assert result.exit_code == 0, result.stderr
    indicators = [o for o in bundle["objects"] if o["type"] == "indicator"]
    assert len(indicators) == 5
    for obj in bundle["objects"]:
        check_stix(obj)


# Folder without manifest


def test_folder_reads_json_files(tmp_path):
    write_json(tmp_path / "b.json", {"Event": misp_event(misp_attribute("domain", "b.example.com"), uuid=SECOND_EVENT_UUID)})
    write_json(tmp_path / "a.json", {"Event": misp_event(misp_attribute("domain", "a.example.com"))})
    (tmp_path / "notes.txt").write_text("not an event")

    events, report = read([tmp_path])

    assert sorted(event["uuid"] for event in events) == sorted([EVENT_UUID, SECOND_EVENT_UUID])
    assert report.inputs_failed == 0
    assert sorted(patterns_of(events)) == [
        "[domain-name:value = 'a.example.com']",
        "[domain-name:value = 'b.example.com']",
    ]


# Document shapes


def single_event() -> dict:
    return misp_event(misp_attribute("ip-dst", "198.51.100.7", uuid="a1a1a1a1-0000-4000-8000-000000000001"))


def other_event() -> dict:
    attribute = misp_attribute("domain", "example.org", uuid="b2b2b2b2-0000-4000-8000-000000000002")
    return misp_event(attribute, uuid=SECOND_EVENT_UUID)


@pytest.mark.parametrize(
    ("shape", "document"),
    [
        ("event wrapper", {"Event": single_event()}),
        ("bare event", single_event()),
        ("response list", {"response": [{"Event": single_event()}]}),
        ("list of wrappers", [{"Event": single_event()}]),
        ("list of bare events", [single_event()]),
    ],
)
def test_shape_single_event(shape, document):
    events = events_from_document(document)

    assert [event["uuid"] for event in events] == [EVENT_UUID], shape
    assert patterns_of(events) == ["[ipv4-addr:value = '198.51.100.7']"], shape


@pytest.mark.parametrize(
    ("shape", "document"),
    [
        ("response list", {"response": [{"Event": single_event()}, {"Event": other_event()}]}),
        ("list of wrappers", [{"Event": single_event()}, {"Event": other_event()}]),
        ("mixed list", [{"Event": single_event()}, other_event()]),
        ("list of responses", [{"response": [{"Event": single_event()}]}, {"response": [{"Event": other_event()}]}]),
    ],
)
def test_shape_several_events(shape, document):
    events = events_from_document(document)

    assert [event["uuid"] for event in events] == [EVENT_UUID, SECOND_EVENT_UUID], shape
    assert patterns_of(events) == [
        "[ipv4-addr:value = '198.51.100.7']",
        "[domain-name:value = 'example.org']",
    ], shape


def attribute_search_result(event_context: dict | None, **fields) -> dict:
    attribute = {
        "id": "7001",
        "event_id": "101",
        "object_id": "0",
        "object_relation": None,
        "category": "Network activity",
        "type": "ip-dst",
        "to_ids": True,
        "uuid": "c3c3c3c3-0000-4000-8000-000000000003",
        "timestamp": "1765000000",
        "distribution": "5",
        "sharing_group_id": "0",
        "comment": "",
        "deleted": False,
        "disable_correlation": False,
        "first_seen": None,
        "last_seen": None,
        "value": "198.51.100.7",
        "Tag": [{"id": "3", "name": "tlp:green", "inherited": 1}, {"id": "9", "name": "kill-chain:c2"}],
    }
    if event_context is not None:
        attribute["Event"] = event_context
    attribute.update(fields)
    return attribute


EVENT_CONTEXT = {
    "org_id": "1",
    "distribution": "3",
    "id": "101",
    "info": "Search hit event",
    "orgc_id": "1",
    "uuid": EVENT_UUID,
    "publish_timestamp": "1765000100",
}


def test_shape_attribute_search_event_context():
    document = {"response": {"Attribute": [attribute_search_result(EVENT_CONTEXT)]}}
    settings = MappingSettings(misp_url="https://misp.example.org", default_tlp="amber")

    events = events_from_document(document)
    indicator = map_normalised(events[0], settings).only

    assert indicator["id"] == "indicator--c3c3c3c3-0000-4000-8000-000000000003"
    assert indicator["pattern"] == "[ipv4-addr:value = '198.51.100.7']"
    assert indicator["object_marking_refs"] == [TLP_GREEN]
    assert "kill-chain:c2" in indicator["labels"]
    urls = [reference.get("url") for reference in indicator["external_references"]]
    assert urls == [f"https://misp.example.org/events/view/{EVENT_UUID}"]


def test_shape_attribute_search_without_context():
    document = {"response": {"Attribute": [attribute_search_result(None, Tag=[])]}}
    settings = MappingSettings(default_tlp="green")

    events = events_from_document(document)
    indicator = map_normalised(events[0], settings).only

    assert indicator["pattern"] == "[ipv4-addr:value = '198.51.100.7']"
    assert indicator["object_marking_refs"] == [TLP_GREEN]


def test_shape_attribute_search_several_attributes():
    second = attribute_search_result(
        EVENT_CONTEXT, uuid="d4d4d4d4-0000-4000-8000-000000000004", type="domain", value="example.com"
    )
    document = {"response": {"Attribute": [attribute_search_result(EVENT_CONTEXT), second]}}

    events = events_from_document(document)

    assert patterns_of(events) == ["[ipv4-addr:value = '198.51.100.7']", "[domain-name:value = 'example.com']"]


@pytest.mark.parametrize(
    "tags",
    [
        pytest.param({"Tag": "tlp:red"}, id="Tag as a string"),
        pytest.param({"Tag": [], "AttributeTag": [{"Tag": {"name": "tlp:red"}}]}, id="AttributeTag row"),
        pytest.param({"Tag": [{"Tag": {"name": "tlp:red"}}]}, id="Tag row inside Tag"),
        pytest.param({"Tag": ["tlp:red", 5, {"name": None}]}, id="Tag list with junk"),
        pytest.param({"Tag": [{"Tag": [{"name": "tlp:red"}]}]}, id="Tag row holding a list"),
    ],
)
def test_attribute_search_reads_every_tag_shape(tags):
    """A TLP tag in any shape MISP writes is read, and odd entries beside it are ignored."""
    document = {"response": {"Attribute": [attribute_search_result(EVENT_CONTEXT, **tags)]}}

    events = events_from_document(document)

    assert events[0]["attributes"][0]["tags"] == ["tlp:red"]
    assert map_normalised(events[0]).skip_reasons() == ["above_max_tlp"]


@pytest.mark.parametrize("red_row", [0, 1])
def test_attribute_search_reads_event_tags_of_every_row(red_row):
    """The event's TLP tag may arrive on any row's event stub, not only on the first."""
    stubs = [dict(EVENT_CONTEXT), dict(EVENT_CONTEXT, Tag=[{"name": "tlp:red"}])]
    if red_row == 0:
        stubs.reverse()
    rows = [
        attribute_search_result(stubs[0], Tag=[]),
        attribute_search_result(stubs[1], Tag=[], uuid="d4d4d4d4-0000-4000-8000-000000000004", type="domain",
                                value="example.com"),
    ]

    events = events_from_document({"response": {"Attribute": rows}})

    assert len(events) == 1
    assert "tlp:red" in events[0]["tags"]
    assert map_normalised(events[0]).skip_reasons() == ["above_max_tlp", "above_max_tlp"]


def test_attribute_keyed_by_index_keeps_valid_entries():
    """A dict keyed by index with one entry that is not an attribute still gives the others."""
    event = misp_event()
    event["Attribute"] = {"0": misp_attribute("ip-dst", "198.51.100.7"), "1": "junk"}

    events = events_from_document({"Event": event})

    assert [attribute["value"] for attribute in events[0]["attributes"]] == ["198.51.100.7"]


@pytest.mark.parametrize("timestamp", ["inf", "-Infinity", "1e400", "nan"])
def test_infinite_timestamp_read_as_missing(timestamp):
    """A timestamp that is not a finite number is treated as missing, like any other text, and the
    indicator's validity starts at the event's timestamp."""
    event = misp_event(misp_attribute("ip-dst", "198.51.100.7", timestamp=timestamp))

    normalised = events_from_document({"Event": event})[0]
    indicator = map_normalised(normalised).only

    assert normalised["attributes"][0]["timestamp"] is None
    assert indicator["valid_from"] == "2025-12-01T00:00:00.000Z"


def test_manifest_key_outside_the_feed_is_skipped(tmp_path):
    """Manifest keys name files in the feed folder, so a key that is not an event uuid is refused."""
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"Event": misp_event(misp_attribute("ip-dst", "198.51.100.7"))}), encoding="utf-8")
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "manifest.json").write_text(json.dumps({"../outside": {}, str(tmp_path / "outside"): {}}), encoding="utf-8")
    report = RunReport("export")

    events = list(read_sources([feed], report))

    assert events == []
    assert report.inputs_failed == 2
    assert all("which is not an event uuid" in message for message in report.failure_messages)


def test_manifest_entry_that_is_a_folder(tmp_path):
    feed = tmp_path / "feed"
    (feed / f"{EVENT_UUID}.json").mkdir(parents=True)
    (feed / "manifest.json").write_text(json.dumps({EVENT_UUID: {}}), encoding="utf-8")
    report = RunReport("export")

    assert list(read_sources([feed], report)) == []
    assert report.failure_messages == [
        f"input {feed / (EVENT_UUID + '.json')} failed: listed in manifest.json but not a regular file (a folder, a pipe or a device)"
    ]


def object_event(objects: object) -> dict:
    event = misp_event()
    event["Object"] = objects
    return event


def file_object() -> dict:
    attribute = misp_attribute("sha256", SHA256, uuid="e5e5e5e5-0000-4000-8000-000000000005", object_relation="sha256")
    return misp_object("file", attribute)


@pytest.mark.parametrize(
    ("shape", "objects"),
    [
        ("list", [file_object()]),
        ("single dict", file_object()),
        ("dict keyed by index", {"0": file_object()}),
    ],
)
def test_shape_object_list_or_dict(shape, objects):
    events = events_from_document({"Event": object_event(objects)})

    assert patterns_of(events) == [f"[file:hashes.'SHA-256' = '{SHA256}']"], shape


@pytest.mark.parametrize(("to_ids", "exported"), [(True, True), ("1", True), (1, True), ("true", True), (False, False), ("0", False), (0, False), ("false", False)])
def test_typing_to_ids_strings(to_ids, exported):
    event = misp_event(misp_attribute("ip-dst", "198.51.100.7", to_ids=to_ids))

    mapped = map_normalised(events_from_document({"Event": event})[0])

    assert bool(mapped.indicators) is exported
    if not exported:
        assert mapped.skip_reasons() == [NOT_IDS]


def test_typing_numbers_as_strings():
    attribute = misp_attribute("ip-dst", "198.51.100.7", timestamp="1700000000", distribution="5", deleted="0")
    event = misp_event(attribute, timestamp="1700000500", distribution="3", published="1", threat_level_id="2")

    indicator = map_normalised(events_from_document({"Event": event})[0]).only

    assert indicator["created"].startswith("2023-11-14T22:13:20")
    assert indicator["valid_from"].startswith("2023-11-14T22:13:20")


def test_typing_numbers_as_numbers():
    attribute = misp_attribute("ip-dst", "198.51.100.7", timestamp=1700000000)
    event = misp_event(attribute, timestamp=1700000500)

    indicator = map_normalised(events_from_document({"Event": event})[0]).only

    assert indicator["created"].startswith("2023-11-14T22:13:20")


@pytest.mark.parametrize(
    "document",
    [
        {"type": "bundle", "id": "bundle--0f6b7c58-3a2e-4d51-9c1b-6e8f2a4d7b90", "objects": []},
        {"name": "not an event"},
        [1, 2, 3],
        "just text",
        42,
    ],
)
def test_not_misp_document_rejected(document):
    with pytest.raises(ValueError):
        events_from_document(document)


# Unreadable inputs


def mixed_folder(folder: Path) -> Path:
    folder.mkdir()
    write_json(folder / "a-good.json", {"Event": single_event()})
    write_json(folder / "b-stix.json", {"type": "bundle", "id": "bundle--0f6b7c58-3a2e-4d51-9c1b-6e8f2a4d7b90", "objects": []})
    (folder / "c-broken.json").write_text('{"Event": {"uuid": ', encoding="utf-8")
    (folder / "d-empty.json").write_text("", encoding="utf-8")
    write_json(folder / "e-good.json", {"Event": other_event()})
    return folder


def test_unreadable_files_counted_failed(tmp_path, caplog):
    folder = mixed_folder(tmp_path / "inputs")

    with caplog.at_level(logging.ERROR):
        events, report = read([folder])

    assert [event["uuid"] for event in events] == [EVENT_UUID, SECOND_EVENT_UUID]
    assert report.inputs_failed == 3
    assert report.exit_code == 1
    for name in ("b-stix.json", "c-broken.json", "d-empty.json"):
        assert name in caplog.text


def test_unreadable_files_cli_exit_1(run_cli, tmp_path):
    folder = mixed_folder(tmp_path / "inputs")

    result, bundle = export_bundle(run_cli, tmp_path, folder)

    assert result.exit_code == 1
    for name in ("b-stix.json", "c-broken.json", "d-empty.json"):
        assert name in result.stderr
    assert "a-good.json" not in result.stderr
    patterns = sorted(o["pattern"] for o in bundle["objects"] if o["type"] == "indicator")
    assert patterns == ["[domain-name:value = 'example.org']", "[ipv4-addr:value = '198.51.100.7']"]


def test_unreadable_first_source_others_processed(run_cli, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("<html>not json</html>", encoding="utf-8")
    good = write_json(tmp_path / "good.json", {"Event": single_event()})

    result, bundle = export_bundle(run_cli, tmp_path, broken, tmp_path / "missing.json", good)

    assert result.exit_code == 1
    assert "broken.json" in result.stderr
    assert "missing.json" in result.stderr
    assert [o["pattern"] for o in bundle["objects"] if o["type"] == "indicator"] == ["[ipv4-addr:value = '198.51.100.7']"]


# Duplicates across inputs


def duplicate_inputs(tmp_path: Path) -> tuple[Path, Path]:
    shared_uuid = "f6f6f6f6-0000-4000-8000-000000000006"
    first = misp_event(misp_attribute("ip-dst", "198.51.100.7", uuid=shared_uuid, comment="from the first input"))
    second = misp_event(misp_attribute("ip-dst", "198.51.100.7", uuid=shared_uuid, comment="from the second input"))
    return write_json(tmp_path / "first.json", {"Event": first}), write_json(tmp_path / "second.json", {"Event": second})


def test_duplicate_first_wins(run_cli, tmp_path):
    first, second = duplicate_inputs(tmp_path)

    result, bundle = export_bundle(run_cli, tmp_path, first, second)

    indicators = [o for o in bundle["objects"] if o["type"] == "indicator"]
    assert result.exit_code == 0, result.stderr
    assert len(indicators) == 1
    assert "from the first input" in indicators[0]["description"]
    assert f"{DUPLICATE} 1" in result.stderr.strip().splitlines()[-1]


def test_duplicate_order_decides(run_cli, tmp_path):
    first, second = duplicate_inputs(tmp_path)

    result, bundle = export_bundle(run_cli, tmp_path, second, first)

    indicators = [o for o in bundle["objects"] if o["type"] == "indicator"]
    assert len(indicators) == 1
    assert "from the second input" in indicators[0]["description"]


def test_duplicate_identity_written_once(run_cli, tmp_path):
    first, second = duplicate_inputs(tmp_path)

    _, bundle = export_bundle(run_cli, tmp_path, first, second)

    assert [o["type"] for o in bundle["objects"]].count("identity") == 1


# A file's attribute dicts become the normalised ones


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.text(max_size=12),
                    st.sampled_from(["1", "0", "true", "1764821039", " 1764821039", "5", "ip-dst "]))
RAW_KEYS = ["uuid", "type", "category", "value", "to_ids", "deleted", "comment", "timestamp", "first_seen",
            "last_seen", "object_relation", "distribution", "warnings", "decay_score", "data", "id", "event_id"]
TAGS = st.one_of(st.none(), st.lists(st.one_of(st.text(max_size=8), st.fixed_dictionaries({"name": st.text(max_size=8)})),
                                      max_size=3))


@settings(max_examples=200, deadline=None, database=None)
@given(raw=st.dictionaries(st.sampled_from(RAW_KEYS), SCALARS), tags=TAGS, attribute_tags=TAGS,
       galaxies=st.sampled_from([None, [], [PHISHING_GALAXY]]))
def test_reused_attribute_matches_new_one(raw: dict, tags, attribute_tags, galaxies) -> None:
    for key, value in (("Tag", tags), ("AttributeTag", attribute_tags), ("Galaxy", galaxies)):
        if value is not None:
            raw[key] = value
    expected = normalize_attribute(copy.deepcopy(raw))
    original = copy.deepcopy(raw)

    reused = normalize_attribute(raw, reuse=True)

    assert reused is raw
    assert {key: reused[key] for key in expected} == expected
    assert not {"Tag", "AttributeTag", "Galaxy"} & reused.keys()
    assert {key: value for key, value in reused.items() if key not in expected} == {
        key: value for key, value in original.items() if key not in expected and key not in ("Tag", "AttributeTag", "Galaxy")
    }
