"""`status`: what the state file holds per workspace, the last runs, cursors and failures."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import yaml

from misp2sentinel.state import StateStore
from tests.stack_fixtures import PHISHING_EVENT, clean_environment, invoke, make_stack, signing_key, stack, tls  # noqa: F401


def status_json(stack) -> tuple[int, dict]:
    result = invoke(stack, "status", "-c", str(stack.config_path), "--json")
    return result.exit_code, json.loads(result.stdout)


def entry(document: dict, name: str = "soc") -> dict:
    return next(item for item in document["workspaces"] if item["name"] == name)


def reject_one(stack) -> str:
    attribute = stack.misp.get_event(PHISHING_EVENT)["Event"]["Attribute"][0]["uuid"]
    stix_id = f"indicator--{attribute}"
    stack.sentinel.reject_records({stix_id}, message="Error for Property=pattern: rejected by the test.")
    return stix_id


def test_status_before_first_sync(stack):
    result = invoke(stack, "status", "-c", str(stack.config_path))

    assert result.exit_code == 0, result.stderr
    assert "not created yet; no sync has run" in result.stdout
    assert not stack.state_path.exists()


def test_status_counts_after_sync(stack):
    invoke(stack, "sync", "-c", str(stack.config_path))

    code, document = status_json(stack)

    assert code == 0
    soc = entry(document)
    live = sum(1 for key in stack.holdings() if key.startswith("indicator--"))
    assert soc["indicators"] == {"live": live, "revoked": 0, "failed": 0, "rejected": 0}
    assert soc["pending_events"] == 0
    assert soc["oldest_failure"] is None
    assert soc["configured"] == "active"
    assert soc["workspace_id"] == stack.workspace_ids["soc"]


def test_status_last_run(stack):
    invoke(stack, "sync", "-c", str(stack.config_path))

    _, document = status_json(stack)

    assert document["last_run"]["command"] == "sync"
    assert document["last_run"]["outcome"] == "ok"
    assert document["last_run"]["started"] == "2026-01-31T12:00:00Z"
    assert document["last_run"]["duration_seconds"] >= 0
    assert document["last_successful_run"] == document["last_run"]
    soc = entry(document)
    assert soc["last_run"]["outcome"] == "ok"
    assert soc["last_success"] is not None


def test_status_cursor_is_current(stack):
    invoke(stack, "sync", "-c", str(stack.config_path))

    cursors = [item for item in entry(status_json(stack)[1])["cursors"] if item["kind"] == "cursor"]

    assert len(cursors) == 1
    assert cursors[0]["source"] == f"misp:{stack.misp.url}"
    assert cursors[0]["current"] is True
    assert cursors[0]["value"].endswith("Z")


def test_status_cursor_of_old_selection(stack):
    invoke(stack, "sync", "-c", str(stack.config_path))
    stack.config_overrides.setdefault("selections", {})["soc"] = {"types": ["ip-dst"]}
    stack.write_config()

    cursors = entry(status_json(stack)[1])["cursors"]

    assert cursors
    assert not any(cursor["current"] for cursor in cursors)


def test_status_record_error_then_rejected(stack):
    stix_id = reject_one(stack)
    invoke(stack, "sync", "-c", str(stack.config_path))

    code, document = status_json(stack)

    assert code == 1
    soc = entry(document)
    assert soc["indicators"]["failed"] == 1
    assert soc["indicators"]["rejected"] == 0
    # Two more refusals with the same validation message make the record rejected.
    invoke(stack, "sync", "-c", str(stack.config_path))
    invoke(stack, "sync", "-c", str(stack.config_path))
    rejected = entry(status_json(stack)[1])
    assert rejected["indicators"]["rejected"] == 1
    assert rejected["indicators"]["failed"] == 0
    assert soc["pending_events"] == 1
    assert soc["oldest_failure"]["stix_id"] == stix_id
    assert soc["oldest_failure"]["event_uuid"] == PHISHING_EVENT
    assert soc["oldest_failure"]["since"] == "2026-01-31T12:00:00Z"
    assert "rejected by the test" in soc["oldest_failure"]["message"]
    assert soc["last_run"]["outcome"] == "failed"


def test_status_failed_after_retries(stack):
    stack.write_config(sentinel={"max_attempts": 1})
    stack.sentinel.inject(503, count=100)
    invoke(stack, "sync", "-c", str(stack.config_path))

    soc = entry(status_json(stack)[1])

    assert soc["indicators"]["failed"] > 0
    assert soc["indicators"]["rejected"] == 0
    assert soc["oldest_failure"]["message"].startswith("upload failed after 1 attempt")


def test_status_text_names_failure(stack):
    reject_one(stack)
    invoke(stack, "sync", "-c", str(stack.config_path))

    result = invoke(stack, "status", "-c", str(stack.config_path))

    assert result.exit_code == 1
    assert "workspace soc (active" in result.stdout
    assert "1 failed" in result.stdout
    assert "1 event pending a retry" in result.stdout
    assert "oldest failure: indicator--" in result.stdout
    assert "rejected by the test" in result.stdout


def test_status_lists_removed_workspace(make_stack):
    stack = make_stack()
    stack.add_workspace("old")
    invoke(stack, "sync", "-c", str(stack.config_path))
    del stack.workspace_ids["old"]
    stack.write_config()

    code, document = status_json(stack)

    assert code == 0
    old = entry(document, "old")
    assert old["configured"] == "not configured"
    assert old["indicators"]["live"] > 0
    text = invoke(stack, "status", "-c", str(stack.config_path)).stdout
    assert "workspace old (not configured" in text
    assert "retired: true" in text


def test_status_while_sync_holds_lock(stack):
    invoke(stack, "sync", "-c", str(stack.config_path))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(stack.state_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, document = status_json(stack)
    finally:
        holder.terminate()
        holder.wait(timeout=10)

    assert code == 0
    assert entry(document)["indicators"]["live"] > 0


HOLD_LOCK = """
import sys, time
from pathlib import Path
from misp2sentinel.state import StateStore
store = StateStore(Path(sys.argv[1]))
store.open()
print("locked", flush=True)
time.sleep(30)
"""


def test_status_unfinished_run(stack):
    invoke(stack, "sync", "-c", str(stack.config_path))
    with StateStore(stack.state_path) as store:
        store.start_run("sync", 1769900000000)

    code, document = status_json(stack)

    assert code == 1
    assert document["last_run"]["outcome"] == "unfinished"
    assert document["last_run"]["duration_seconds"] is None


def test_status_corrupt_state_exit_2(stack):
    stack.write_config()
    stack.state_path.write_bytes(b"not a database" * 100)

    result = invoke(stack, "status", "-c", str(stack.config_path))

    assert result.exit_code == 2
    assert "corrupt" in result.stderr
    assert stack.state_path.read_bytes() == b"not a database" * 100


def test_status_foreign_state_exit_2(stack):
    stack.write_config()
    database = sqlite3.connect(stack.state_path)
    database.execute("CREATE TABLE notes (text TEXT)")
    database.commit()
    database.close()
    before = stack.state_path.read_bytes()

    result = invoke(stack, "status", "-c", str(stack.config_path))

    assert result.exit_code == 2
    assert "another application" in result.stderr
    assert stack.state_path.read_bytes() == before


def test_status_needs_state_path(stack):
    config = yaml.safe_load(stack.write_config().read_text())
    del config["state"]
    stack.config_path.write_text(yaml.safe_dump(config))

    result = invoke(stack, "status", "-c", str(stack.config_path))

    assert result.exit_code == 2
    assert "state.path" in result.stderr
