"""`--json`: one machine-readable document on stdout, also when a command fails."""

from __future__ import annotations

import json

from tests.stack_fixtures import EXAMPLE_FEED, clean_environment, invoke, make_stack, signing_key, stack, tls  # noqa: F401


def test_sync_json_document(stack):
    result = invoke(stack, "sync", "-c", str(stack.config_path), "--json")

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["command"] == "sync"
    assert document["exit_code"] == 0
    assert document["outcome"] == "ok"
    assert document["outcomes"]["created"] == len(stack.holdings())
    assert document["events"] == 4
    assert document["workspaces"]["soc"]["outcome"] == "ok"
    assert document["requests"]["sentinel"] == len(stack.sentinel.request_log)


def test_sync_json_summary_stays_on_stderr(stack):
    result = invoke(stack, "sync", "-c", str(stack.config_path), "--json")

    assert result.stderr.strip().splitlines()[-1].startswith("sync: ")
    assert result.stdout.lstrip().startswith("{")


def test_sync_json_equals_report_file(stack):
    result = invoke(stack, "sync", "-c", str(stack.config_path), "--json")

    assert json.loads(result.stdout) == json.loads((stack.tmp_path / "last-run.json").read_text())


def test_sync_json_failed_workspace(make_stack):
    stack = make_stack()
    stack.add_workspace("blocked", role=False)

    result = invoke(stack, "sync", "-c", str(stack.config_path), "--json")

    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["exit_code"] == 1
    assert document["failed"] == {"workspace": 1}
    assert document["workspaces"]["blocked"]["outcome"] == "failed"
    assert document["workspaces"]["soc"]["outcome"] == "ok"


def test_sync_json_on_error(stack):
    stack.write_config(misp={"max_attempts": 1})
    stack.misp.fail_next("/events/restSearch", 500, count=10)

    result = invoke(stack, "sync", "-c", str(stack.config_path), "--json")

    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["outcome"] == "error"
    assert document["exit_code"] == 1
    assert f"MISP search at {stack.misp.url} failed" in document["error"]


def test_sync_json_on_invalid_config(stack):
    stack.config_path.write_text("sentinel: {batch_size: 500}\n")

    result = invoke(stack, "sync", "-c", str(stack.config_path), "--json")

    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert document == {**document, "command": "sync", "outcome": "error", "exit_code": 2}
    assert "invalid configuration" in document["error"]


def test_sync_json_dry_run(stack):
    result = invoke(stack, "sync", "-c", str(stack.config_path), "--json", "--dry-run")

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["command"] == "sync --dry-run"
    assert document["outcomes"]["created"] > 0
    assert not (stack.tmp_path / "last-run.json").exists()


def test_sync_json_and_stdout_bundle_exit_2(stack):
    result = invoke(stack, "sync", "-c", str(stack.config_path), "--json", "--dry-run", "--output", "-")

    assert result.exit_code == 2
    assert "--json and --output - both need standard output" in result.stderr


def test_export_json_document(stack, tmp_path):
    output = tmp_path / "bundle.json"

    result = invoke(stack, "export", "--source", str(EXAMPLE_FEED), "--output", str(output), "--json")

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["command"] == "export"
    assert document["output"] == str(output)
    assert document["outcomes"]["written"] == len(json.loads(output.read_text())["objects"])
    assert document["skipped"]["not_ids"] > 0
    assert document["duration_seconds"] >= 0


def test_export_json_missing_source(stack, tmp_path):
    result = invoke(stack, "export", "-s", str(tmp_path / "absent.json"), "-o", str(tmp_path / "b.json"), "--json")

    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["exit_code"] == 1
    assert document["failed"] == {"input": 1}
    assert "absent.json" in document["failure_messages"][0]


def test_export_json_and_stdout_bundle_exit_2(stack):
    result = invoke(stack, "export", "-s", str(EXAMPLE_FEED), "-o", "-", "--json")

    assert result.exit_code == 2
    assert json.loads(result.stdout)["exit_code"] == 2
    assert "--json and --output - both need standard output" in result.stderr


def test_status_json_exit_code_field(stack):
    invoke(stack, "sync", "-c", str(stack.config_path))

    result = invoke(stack, "status", "-c", str(stack.config_path), "--json")

    assert json.loads(result.stdout)["exit_code"] == result.exit_code == 0


def test_revoke_all_json(stack):
    invoke(stack, "sync", "-c", str(stack.config_path))

    result = invoke(stack, "revoke-all", "-c", str(stack.config_path), "-w", "soc", "--dry-run", "--json")

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["command"] == "revoke-all --dry-run"
    assert document["outcomes"]["revoked"] > 0
