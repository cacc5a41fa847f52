"""Reading large single-event files incrementally: the same bundles as reading them whole, broken
files counted as failed before any record, and other shapes read whole."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import ijson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misp2sentinel.config import MappingSettings, Selection
from misp2sentinel.pipeline import select_records
from misp2sentinel.report import RunReport
from misp2sentinel.sources import files, incremental
from misp2sentinel.sources.files import read_sources
from tests.conftest import CORPUS, NOW, PHISHING_GALAXY, REPO_ROOT, misp_attribute, misp_event, misp_object, new_uuid
from tests.test_hostile_input import DOCUMENTS, EVENTS

EXAMPLE_FEED = REPO_ROOT / "examples" / "feed"
# Larger than any test file, so every file is read whole.
WHOLE = 1 << 40
# Smaller than any test file, so every file of the single-event shape is read incrementally.
INCREMENTAL = 0

ACTOR_GALAXY = {
    "uuid": "698774c7-8022-42c4-917f-8d6e4f06ada3", "name": "Threat Actor", "type": "threat-actor",
    "GalaxyCluster": [{"uuid": "8a4e4a3d-2a5a-4f4d-9d8e-3f7a1c2b3d4e", "type": "threat-actor", "value": "Sofacy",
                       "tag_name": 'misp-galaxy:threat-actor="Sofacy"', "meta": {}}],
}


@pytest.fixture
def reads(monkeypatch):
    """Record each file that `read_large_event` returned an event for, or read whole."""
    outcome: dict[str, list[str]] = {"incremental": [], "whole": []}
    original = incremental.read_large_event

    def recording(path, report):
        try:
            event = original(path, report)
        except incremental.NotSingleEvent:
            outcome["whole"].append(path.name)
            raise
        outcome["incremental"].append(path.name)
        return event

    monkeypatch.setattr(incremental, "read_large_event", recording)
    return outcome


def export(run_cli, monkeypatch, tmp_path: Path, threshold: int, *sources: Path, extra: tuple[str, ...] = ()):
    """Export `sources` with the given size threshold; return the CLI result and the bundle's bytes."""
    monkeypatch.setattr(files, "LARGE_FILE_BYTES", threshold)
    output = tmp_path / f"bundle-{threshold}.json"
    arguments = ["export"]
    for source in sources:
        arguments += ["--source", str(source)]
    result = run_cli(*arguments, "--output", str(output), *extra)
    return result, output.read_bytes() if output.exists() else None


def summary(result) -> str:
    """Return the summary line without the output path, which differs between the two exports."""
    return result.stderr.strip().splitlines()[-1].rsplit(" -> ", 1)[0]


def assert_same_export(run_cli, monkeypatch, tmp_path: Path, *sources: Path, extra: tuple[str, ...] = ()):
    whole_result, whole_bundle = export(run_cli, monkeypatch, tmp_path, WHOLE, *sources, extra=extra)
    streamed_result, streamed_bundle = export(run_cli, monkeypatch, tmp_path, INCREMENTAL, *sources, extra=extra)

    assert whole_result.exit_code == streamed_result.exit_code
    assert summary(streamed_result) == summary(whole_result)
    assert whole_bundle is not None
    assert streamed_bundle == whole_bundle


def misp_order(event: dict) -> dict:
    """Return the event with `Attribute` and `Object` before the other keys that MISP writes after them."""
    late = ("Orgc", "Org", "Tag", "Galaxy", "EventTag")
    ordered = {key: value for key, value in event.items() if key not in late}
    ordered.update({key: event[key] for key in late if key in event})
    return ordered


def rich_event(size: int) -> dict:
    """Build a raw event of `size` attributes and `size // 4` objects, with tags, galaxies and deletions."""
    attributes = []
    for index in range(size):
        attribute = misp_attribute("ip-dst", f"198.51.{index // 250}.{index % 250 + 1}",
                                   to_ids=["1", True, "0", 1][index % 4])
        if index % 7 == 0:
            attribute["deleted"] = True
        if index % 5 == 0:
            attribute["Tag"] = [{"name": "tlp:amber"}, {"name": "kill-chain:delivery"}]
        if index % 6 == 0:
            attribute["AttributeTag"] = [{"Tag": {"name": "campaign:spring"}}]
        if index % 11 == 0:
            attribute["Galaxy"] = [ACTOR_GALAXY]
        if index % 13 == 0:
            attribute["first_seen"] = "2025-11-01T00:00:00.000000+00:00"
            attribute["decay_score"] = [{"score": 71.5, "decayed": False}]
        attributes.append(attribute)
    attributes.append("not an attribute")

    objects = []
    for index in range(size // 4):
        members = (
            misp_attribute("domain", f"c2-{index}.example.com", object_relation="domain"),
            misp_attribute("ip-dst", f"203.0.113.{index % 250 + 1}", object_relation="ip"),
        )
        members[1]["deleted"] = index % 3 == 0
        objects.append(misp_object("domain-ip", *members, deleted=index % 9 == 4, comment=f"object {index}"))
    objects.append(misp_object("file", misp_attribute("sha256", "ab" * 32, object_relation="sha256")))
    # MISP may write an object's Attribute as a map keyed by index. Only the event's must be an array.
    objects[-1]["Attribute"] = {"0": objects[-1]["Attribute"][0]}

    event = misp_event(*attributes, objects=tuple(objects), tags=("tlp:green", "type:OSINT"),
                       Galaxy=[PHISHING_GALAXY], distribution="3")
    event["EventTag"] = [{"Tag": {"name": 'misp-galaxy:mitre-attack-pattern="Phishing - T1566"'}}]
    return misp_order(event)


def write_event(path: Path, event: dict) -> Path:
    path.write_text(json.dumps({"Event": event}), encoding="utf-8")
    return path


# The same bundle as the whole-file path


def test_example_feed_identical(run_cli, monkeypatch, tmp_path, reads):
    assert_same_export(run_cli, monkeypatch, tmp_path, EXAMPLE_FEED)

    assert len(reads["incremental"]) == 4
    assert reads["whole"] == []


@pytest.mark.parametrize("order", ["misp", "header first"])
def test_generated_event_identical(run_cli, monkeypatch, tmp_path, reads, order):
    event = rich_event(400)
    if order == "header first":
        event = {key: event[key] for key in sorted(event, key=lambda key: key in ("Attribute", "Object"))}
    source = write_event(tmp_path / "event.json", event)

    assert_same_export(run_cli, monkeypatch, tmp_path, source, extra=("-v",))

    assert reads["incremental"] == ["event.json"]


def test_generated_events_in_feed_identical(run_cli, monkeypatch, tmp_path, reads):
    folder = tmp_path / "feed"
    folder.mkdir()
    for size in (0, 1, 30, 200):
        event = rich_event(size)
        event["uuid"] = new_uuid()
        write_event(folder / f"{event['uuid']}.json", event)

    assert_same_export(run_cli, monkeypatch, tmp_path, folder)

    assert len(reads["incremental"]) == 4


def test_invalid_event_identical(run_cli, monkeypatch, tmp_path):
    event = rich_event(20)
    event["timestamp"] = "-5"
    source = write_event(tmp_path / "event.json", event)

    assert_same_export(run_cli, monkeypatch, tmp_path, source, extra=("-v",))


def test_empty_and_scalar_arrays_identical(run_cli, monkeypatch, tmp_path, reads):
    source = write_event(tmp_path / "event.json", misp_order(misp_event(Attribute=None, Object="none")))

    assert_same_export(run_cli, monkeypatch, tmp_path, source)

    assert reads["incremental"] == ["event.json"]


@pytest.mark.parametrize("tags", [{"or": ["campaign:spring"]}, {"and": ["kill-chain:delivery"]}, {"or": ["absent"]}])
def test_tag_selection_identical(monkeypatch, tmp_path, tags):
    source = write_event(tmp_path / "event.json", rich_event(200))
    selection = Selection(tags=tags)
    produced = {}
    for threshold in (WHOLE, INCREMENTAL):
        monkeypatch.setattr(files, "LARGE_FILE_BYTES", threshold)
        report = RunReport("export")
        records = select_records(read_sources([source], report), MappingSettings(), NOW, report, selection)
        produced[threshold] = ([record.stix for record in records], dict(report.skips))

    assert produced[INCREMENTAL] == produced[WHOLE]


def test_python_backend_identical(run_cli, monkeypatch, tmp_path, reads):
    monkeypatch.setattr(incremental, "BACKEND", ijson.get_backend("python"))
    source = write_event(tmp_path / "event.json", rich_event(100))

    assert_same_export(run_cli, monkeypatch, tmp_path, source)

    assert reads["incremental"] == ["event.json"]


def test_without_ijson_reads_whole(run_cli, monkeypatch, tmp_path, reads):
    monkeypatch.setattr(incremental, "BACKEND", None)
    source = write_event(tmp_path / "event.json", rich_event(50))

    assert_same_export(run_cli, monkeypatch, tmp_path, source)

    assert reads == {"incremental": [], "whole": []}


def test_corpus_identical(run_cli, monkeypatch, tmp_path, reads):
    if not CORPUS.is_dir():
        pytest.skip(f"corpus folder {CORPUS} is absent")

    assert_same_export(run_cli, monkeypatch, tmp_path, CORPUS)

    assert reads["incremental"]


# Generated documents of every shape, read both ways into the same normalised events


def read_listed(path: Path, threshold: int) -> tuple[list[dict], int, int]:
    """Read one file and return its events with streamed items listed, and the read and failed input counts."""
    files.LARGE_FILE_BYTES = threshold
    report = RunReport("property test")
    events = []
    for event in read_sources([path], report):
        event["attributes"] = list(event["attributes"])
        event["objects"] = list(event["objects"])
        events.append(event)
    return events, report.inputs_read, report.inputs_failed


@settings(max_examples=150, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(st.one_of(EVENTS.map(lambda event: {"Event": misp_order(event)}), DOCUMENTS))
def test_generated_documents_read_alike(monkeypatch, document):
    monkeypatch.setattr(files, "LARGE_FILE_BYTES", WHOLE)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "event.json"
        path.write_text(json.dumps(document), encoding="utf-8")

        whole = read_listed(path, WHOLE)
        streamed = read_listed(path, INCREMENTAL)

    assert streamed == whole


# Broken files fail before any record


@pytest.fixture
def large_event(tmp_path) -> Path:
    return write_event(tmp_path / "event.json", rich_event(200))


def read_broken(path: Path, monkeypatch) -> tuple[list[dict], RunReport]:
    monkeypatch.setattr(files, "LARGE_FILE_BYTES", INCREMENTAL)
    report = RunReport("export")
    return list(read_sources([path], report)), report


@pytest.mark.parametrize("marker", ['"Attribute": [', '"Object": [', '"Orgc": {', '"EventTag": ['])
def test_truncated_file_fails(monkeypatch, large_event, reads, marker):
    text = large_event.read_text(encoding="utf-8")
    large_event.write_text(text[:text.index(marker) + len(marker) + 5], encoding="utf-8")

    events, report = read_broken(large_event, monkeypatch)

    assert events == []
    assert report.inputs_failed == 1
    assert report.inputs_read == 0
    assert report.failure_messages == [f"input {large_event} failed: not valid JSON: the file ends inside the JSON document"]
    assert reads["whole"] == []


def test_invalid_byte_fails_with_position(monkeypatch, tmp_path):
    path = write_event(tmp_path / "event.json", rich_event(2000))
    text = path.read_text(encoding="utf-8")
    # A stray "}" before a member of an attribute closes it early, so the member's key becomes an array item.
    position = text.index(', "', text.index('"Object": [') + 2000)
    path.write_text(text[:position] + "}" + text[position:], encoding="utf-8")

    events, report = read_broken(path, monkeypatch)

    assert events == []
    assert report.inputs_failed == 1
    message = report.failure_messages[0]
    assert message.startswith(f"input {path} failed: not valid JSON: ")
    assert "\n" not in message
    start, end = map(int, message.rsplit("(between bytes ", 1)[1].rstrip(")").split(" and "))
    assert start <= position < end


def test_trailing_garbage_fails(monkeypatch, large_event):
    with large_event.open("a", encoding="utf-8") as handle:
        handle.write(' {"Event": {}}')

    events, report = read_broken(large_event, monkeypatch)

    assert events == []
    assert report.inputs_failed == 1
    assert "trailing garbage" in report.failure_messages[0]


def test_deep_nesting_fails(monkeypatch, tmp_path):
    depth = incremental.MAX_DEPTH
    path = tmp_path / "event.json"
    path.write_text('{"Event": {"info": "deep", "Attribute": [{"warnings": ' + "[" * depth + "]" * depth + "}]}}",
                    encoding="utf-8")

    events, report = read_broken(path, monkeypatch)

    assert events == []
    assert report.failure_messages == [f"input {path} failed: not valid JSON: nested deeper than {depth} levels"]


def test_broken_file_keeps_previous_output(run_cli, monkeypatch, tmp_path, large_event):
    text = large_event.read_text(encoding="utf-8")
    large_event.write_text(text[:len(text) // 2], encoding="utf-8")
    output = tmp_path / "bundle.json"
    output.write_text("previous", encoding="utf-8")
    monkeypatch.setattr(files, "LARGE_FILE_BYTES", INCREMENTAL)

    result = run_cli("export", "--source", str(large_event), "--output", str(output))

    assert result.exit_code == 1
    assert "ends inside the JSON document" in result.stderr
    assert output.read_text(encoding="utf-8") == "previous"


# Other shapes are read whole


@pytest.mark.parametrize("shape", ["list", "response", "bare event", "two top-level keys"])
def test_other_shapes_read_whole(run_cli, monkeypatch, tmp_path, reads, shape):
    event = rich_event(50)
    document = {
        "list": [{"Event": event}],
        "response": {"response": [{"Event": event}]},
        "bare event": event,
        "two top-level keys": {"Event": event, "extra": 1},
    }[shape]
    source = tmp_path / "event.json"
    source.write_text(json.dumps(document), encoding="utf-8")

    assert_same_export(run_cli, monkeypatch, tmp_path, source)

    assert reads["incremental"] == []
    assert reads["whole"] == ["event.json"]


@pytest.mark.parametrize("change", ["attributes keyed by index", "repeated Attribute", "dotted key", "big integer"])
def test_unusual_events_read_whole(run_cli, monkeypatch, tmp_path, reads, change):
    event = rich_event(20)
    text = json.dumps({"Event": event})
    if change == "attributes keyed by index":
        event["Attribute"] = {str(index): item for index, item in enumerate(event["Attribute"])}
        text = json.dumps({"Event": event})
    elif change == "repeated Attribute":
        text = text[:-2] + ', "Attribute": [' + json.dumps(misp_attribute("domain", "late.example.com")) + "]}}"
    elif change == "dotted key":
        event["Attribute.item"] = [misp_attribute("domain", "dotted.example.com")]
        text = json.dumps({"Event": event})
    else:
        event["Attribute"][0]["value"] = 10**30
        text = json.dumps({"Event": event})
    source = tmp_path / "event.json"
    source.write_text(text, encoding="utf-8")

    assert_same_export(run_cli, monkeypatch, tmp_path, source)

    assert reads["incremental"] == []
    if change != "big integer" or incremental.BACKEND.__name__ == "ijson.backends.yajl2_c":
        assert reads["whole"] == ["event.json"]


# The streamed items


def test_streamed_items_reiterable(monkeypatch, large_event):
    monkeypatch.setattr(files, "LARGE_FILE_BYTES", INCREMENTAL)
    report = RunReport("export")
    [event] = read_sources([large_event], report)

    first = list(event["attributes"])
    second = list(event["attributes"])

    assert isinstance(event["attributes"], incremental.StreamedItems)
    assert len(first) == 200
    assert second == first
    assert [item["uuid"] for item in event["objects"]] == [item["uuid"] for item in event["objects"]]
    with pytest.raises(TypeError):
        len(event["attributes"])


def test_file_changed_between_passes(monkeypatch, large_event):
    monkeypatch.setattr(files, "LARGE_FILE_BYTES", INCREMENTAL)
    report = RunReport("export")
    [event] = read_sources([large_event], report)
    write_event(large_event, rich_event(10))

    with pytest.raises(incremental.InputChangedError, match="changed while it was read"):
        list(event["attributes"])

    assert report.inputs_failed == 1
    assert "the run stops rather than go on with part of the event" in report.failure_messages[0]


@pytest.mark.parametrize("array, change", [("attributes", "truncate"), ("objects", "append")])
def test_file_changed_during_stream(monkeypatch, tmp_path, array, change):
    # Large enough that ijson has read only the first blocks when the first item is yielded. The
    # objects are read last: an append while they are read changes no item, only the file.
    path = write_event(tmp_path / "event.json", rich_event(3000))
    monkeypatch.setattr(files, "LARGE_FILE_BYTES", INCREMENTAL)
    report = RunReport("export")
    [event] = read_sources([path], report)
    items = iter(event[array])
    next(items)
    with path.open("r+b") as handle:
        if change == "truncate":
            handle.truncate(path.stat().st_size // 2)
        else:
            handle.seek(0, os.SEEK_END)
            handle.write(b"\n")

    with pytest.raises(incremental.InputChangedError, match="changed while"):
        list(items)

    assert report.inputs_failed == 1


def test_file_changed_stops_export(run_cli, monkeypatch, tmp_path, large_event):
    monkeypatch.setattr(files, "LARGE_FILE_BYTES", INCREMENTAL)
    original = incremental.read_large_event

    def read_then_change(path, report):
        event = original(path, report)
        write_event(path, rich_event(10))
        return event

    monkeypatch.setattr(incremental, "read_large_event", read_then_change)
    output = tmp_path / "bundle.json"

    result = run_cli("export", "--source", str(large_event), "--output", str(output))

    assert result.exit_code == 1
    assert "changed while it was read" in result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()
