"""`check`: each connection a sync needs, what works, and the probable fix for what does not."""

from __future__ import annotations

import json
import time
import uuid

from misp2sentinel.commands.check import FAILED, NOT_CONFIRMED, OK, WARNING, run_checks
from misp2sentinel.config import load_config
from tests.emulators.misp import MispEmulator
from tests.stack_fixtures import EXAMPLE_FEED, clean_environment, invoke, make_stack, signing_key, stack, tls  # noqa: F401
from tests.sync_stack import MISP_KEY


def findings(stack, *extra: str) -> tuple[int, list[dict]]:
    result = invoke(stack, "check", "-c", str(stack.config_path), "--json", *extra)
    return result.exit_code, json.loads(result.stdout)["findings"]


def finding(items: list[dict], component: str, name: str | None = None) -> dict:
    matches = [item for item in items if item["component"] == component and (name is None or item["name"].startswith(name))]
    assert len(matches) == 1, items
    return matches[0]


def workspace_entries(stack) -> list[dict]:
    import yaml

    return yaml.safe_load(stack.config_path.read_text())["workspaces"]


def test_check_all_reachable(stack):
    result = invoke(stack, "check", "-c", str(stack.config_path))

    assert result.exit_code == 0, result.stdout + result.stderr
    assert "MISP 2.5.1" in result.stdout
    assert "sees deleted attributes of every organisation's events" in result.stdout
    assert "got an access token" in result.stdout
    assert "token accepted" in result.stdout
    assert "not confirmed" in result.stdout


def test_check_workspace_not_confirmed(stack):
    code, items = findings(stack)

    assert code == 0
    soc = finding(items, "workspace", "soc")
    assert soc["status"] == NOT_CONFIRMED
    assert "role and the workspace id are not confirmed" in soc["message"]
    assert finding(items, "identity")["status"] == OK
    assert finding(items, "misp")["status"] == OK
    assert finding(items, "clock")["status"] == OK


def test_check_sends_and_records_nothing(stack):
    invoke(stack, "check", "-c", str(stack.config_path))

    assert stack.holdings() == {}
    assert not stack.state_path.exists()
    bodies = [entry for entry in stack.sentinel.request_log if entry.status != 400]
    assert bodies == []


def test_check_wrong_secret(stack):
    stack.write_config()
    config = stack.config_path.read_text().replace("sync-test-client-secret-7f3a9c", "wrong-secret-value-123")
    stack.config_path.write_text(config)

    code, items = findings(stack)

    assert code == 1
    identity = finding(items, "identity")
    assert identity["status"] == FAILED
    assert "AADSTS7000215" in identity["message"]
    assert "client_secret" in identity["hint"]
    assert finding(items, "workspace", "soc")["status"] == NOT_CONFIRMED
    assert "wrong-secret-value-123" not in json.dumps(items)


def test_check_missing_role(make_stack):
    stack = make_stack()
    stack.add_workspace("blocked", role=False)

    code, items = findings(stack)

    assert code == 1
    blocked = finding(items, "workspace", "blocked")
    assert blocked["status"] == FAILED
    assert "lacks the Microsoft Sentinel Contributor role" in blocked["message"]
    assert "assign it the Microsoft Sentinel Contributor role" in blocked["hint"]
    assert finding(items, "workspace", "soc")["status"] == NOT_CONFIRMED


def test_check_unknown_workspace(stack):
    stack.workspace_ids["soc"] = str(uuid.uuid4())
    stack.write_config()

    code, items = findings(stack)

    assert code == 1
    soc = finding(items, "workspace", "soc")
    assert soc["status"] == FAILED
    assert "does not know workspace" in soc["message"]
    assert "workspace_id" in soc["hint"]


def test_check_untrusted_certificate(stack):
    stack.write_config()
    entries = workspace_entries(stack)
    del entries[0]["ca_bundle"]
    stack.write_config(workspaces=entries)

    code, items = findings(stack)

    assert code == 1
    identity = finding(items, "identity")
    assert identity["status"] == FAILED
    assert "ca_bundle" in identity["hint"]


def test_check_misp_untrusted_certificate(stack):
    secure = MispEmulator(EXAMPLE_FEED, api_key=MISP_KEY, tls=stack.tls).start()
    try:
        stack.write_config(misp={"url": secure.url})
        code, items = findings(stack)
    finally:
        secure.stop()

    assert code == 1
    misp = finding(items, "misp")
    assert misp["status"] == FAILED
    assert "could not be verified" in misp["message"]
    assert "misp.ca_bundle" in misp["hint"]


def test_check_misp_trusted_with_ca_bundle(stack):
    secure = MispEmulator(EXAMPLE_FEED, api_key=MISP_KEY, tls=stack.tls).start()
    try:
        stack.write_config(misp={"url": secure.url, "ca_bundle": str(stack.tls.ca_bundle_path)})
        code, items = findings(stack)
    finally:
        secure.stop()

    assert code == 0
    assert finding(items, "misp")["status"] == OK


def test_check_misp_wrong_key(stack):
    stack.write_config(misp={"key": "W" * 40})

    code, items = findings(stack)

    assert code == 1
    misp = finding(items, "misp")
    assert "refused the API key (HTTP 403)" in misp["message"]
    assert "misp.key" in misp["hint"]


def test_check_misp_html_page(stack):
    stack.misp.fail_next("/servers/getVersion", 200, body="<html><body>Please log in</body></html>",
                         headers={"Content-Type": "text/html; charset=UTF-8"})

    code, items = findings(stack)

    assert code == 1
    misp = finding(items, "misp")
    assert "an HTML page" in misp["message"]
    assert "misp.url" in misp["hint"]


def test_check_misp_role_without_sync(stack):
    stack.misp.perm_sync = False

    code, items = findings(stack)

    assert code == 0
    misp = finding(items, "misp")
    assert misp["status"] == WARNING
    assert "own organisation's events only" in misp["message"]
    assert "perm_sync" in misp["hint"]


def test_check_clock_skew_beyond_overlap(stack):
    config = load_config(stack.write_config())

    items = run_checks(config, system_time=lambda: time.time() - 1000)

    clock = next(item for item in items if item.component == "clock")
    assert clock.status == FAILED
    assert "ahead of this host's" in clock.message
    assert "NTP" in clock.hint


def test_check_small_clock_skew_warns(stack):
    config = load_config(stack.write_config())

    items = run_checks(config, system_time=lambda: time.time() + 120)

    clock = next(item for item in items if item.component == "clock")
    assert clock.status == WARNING
    assert "behind this host's" in clock.message


def test_check_assertion_time_error_points_at_clock(stack):
    stack.idp.inject(400, body={
        "error": "invalid_client",
        "error_description": "AADSTS700024: Client assertion is not within its valid time range.",
        "error_codes": [700024],
    })

    code, items = findings(stack)

    assert code == 1
    assert "NTP" in finding(items, "identity")["hint"]


def test_check_warns_when_tls_off(stack):
    stack.write_config()
    entries = workspace_entries(stack)
    entries[0]["verify_tls"] = False
    stack.write_config(workspaces=entries)

    code, items = findings(stack)

    warning = next(item for item in items if item["status"] == WARNING and item["component"] == "workspace")
    assert "TLS verification is off" in warning["message"]
    assert code == 0


def test_check_invalid_config_exit_2(stack):
    stack.config_path.write_text("misp: [unclosed\n")

    result = invoke(stack, "check", "-c", str(stack.config_path))

    assert result.exit_code == 2
    assert "not valid YAML" in result.stderr


def test_check_reports_state_file(stack):
    invoke(stack, "sync", "-c", str(stack.config_path))

    code, items = findings(stack)

    state = finding(items, "state")
    assert state["status"] == OK
    assert "schema version" in state["message"]
