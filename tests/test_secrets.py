"""No secret leaves the bridge: a full run with distinctive secret values, searched for everywhere.

The MISP key comes from a file, the client secret from an environment variable. After check,
sync (text and JSON logs, at -vv), a dry run, export and status, neither value nor any access
token appears in stdout, stderr, the run report, the metrics, the state file, the bundles or the
messages of the errors raised along the way.
"""

from __future__ import annotations

import logging
import uuid

import pytest
import yaml

from misp2sentinel.config import load_config
from misp2sentinel.errors import Misp2SentinelError
from misp2sentinel.sync import run_sync
from tests.stack_fixtures import clean_environment, make_stack, signing_key, tls  # noqa: F401

MISP_SECRET = "LeakCanaryMispKey7Q2w9E4r1T6y3U8i5O0pAsD"
CLIENT_SECRET = "leak-canary-client-secret~Zx81.Vq"
WRONG_SECRET = "leak-canary-wrong-secret~Pm52.Kd"
# Every access token the identity-provider emulator issues is a JWT, whose header starts like this.
JWT_START = "eyJ"


@pytest.fixture
def secret_stack(make_stack, monkeypatch):
    stack = make_stack()
    stack.misp.api_key = MISP_SECRET
    stack.idp.client(stack.tenant_id, stack.client_id).add_secret(CLIENT_SECRET)
    stack.idp.client(stack.tenant_id, stack.client_id).remove_secret("sync-test-client-secret-7f3a9c")
    key_file = stack.tmp_path / "misp.key"
    key_file.write_text(MISP_SECRET + "\n")
    key_file.chmod(0o600)
    monkeypatch.setenv("LEAK_CANARY_CLIENT_SECRET", CLIENT_SECRET)
    stack.write_config(reporting={"metrics_path": str(stack.tmp_path / "misp2sentinel.prom")})
    config = yaml.safe_load(stack.config_path.read_text())
    config["misp"]["key"] = {"file": str(key_file)}
    for workspace in config["workspaces"]:
        workspace["client_secret"] = {"env": "LEAK_CANARY_CLIENT_SECRET"}
    stack.config_path.write_text(yaml.safe_dump(config))
    return stack


def assert_no_secret(where: str, text: str) -> None:
    for secret in (MISP_SECRET, CLIENT_SECRET, WRONG_SECRET):
        assert secret not in text, f"{where} contains a secret"
    assert JWT_START not in text, f"{where} contains an access token"


def run(stack, *arguments: str) -> str:
    completed = stack.cli(*arguments)
    return completed.stdout + completed.stderr


def test_full_run_leaks_no_secret(secret_stack):
    stack = secret_stack
    config = str(stack.config_path)
    outputs = {
        "check": run(stack, "check", "-c", config, "-vv", "--log-format", "json"),
        "dry run": run(stack, "sync", "-c", config, "--dry-run", "-o", "pending.json", "-vv"),
        "sync": run(stack, "sync", "-c", config, "-vv"),
    }
    stack.source.advance(3600)
    outputs["second sync"] = run(stack, "sync", "-c", config, "-vv", "--log-format", "json", "--json")
    outputs["export"] = run(stack, "export", "-c", config, "-w", "soc", "-o", "export.json", "-vv")
    outputs["status"] = run(stack, "status", "-c", config, "--json") + run(stack, "status", "-c", config)

    assert stack.holdings(), outputs["sync"]
    assert "DEBUG" in outputs["sync"]
    for name, text in outputs.items():
        assert_no_secret(name, text)
    written = [path for path in stack.tmp_path.rglob("*") if path.is_file() and path.name not in ("misp.key", "config.yaml")]
    assert {"last-run.json", "misp2sentinel.prom", "state.sqlite", "export.json", "pending.json"} <= {p.name for p in written}
    for path in written:
        assert_no_secret(str(path), path.read_bytes().decode("utf-8", "replace"))


def test_wrong_secret_not_echoed(secret_stack):
    stack = secret_stack
    stack.add_workspace("other")
    config = yaml.safe_load(stack.config_path.read_text())
    config["workspaces"].append({**config["workspaces"][0], "name": "other", "workspace_id": stack.workspace_ids["other"],
                                 "client_id": str(uuid.uuid4()), "client_secret": WRONG_SECRET})
    stack.config_path.write_text(yaml.safe_dump(config))

    text = run(stack, "sync", "-c", str(stack.config_path), "-vv") + run(stack, "check", "-c", str(stack.config_path), "-vv")

    assert "AADSTS" in text
    assert_no_secret("output", text)
    assert_no_secret("report", (stack.tmp_path / "last-run.json").read_text())


def test_error_messages_and_records_hold_no_secret(secret_stack, caplog):
    stack = secret_stack
    stack.idp.client(stack.tenant_id, stack.client_id).remove_secret(CLIENT_SECRET)
    stack.misp.fail_next("/events/restSearch", 500, count=20, body={"message": f"echo {MISP_SECRET}"})
    config = load_config(stack.config_path)
    caplog.set_level(logging.DEBUG, logger="misp2sentinel")

    with pytest.raises(Misp2SentinelError) as raised:
        run_sync(config.model_copy(update={"misp": config.misp.model_copy(update={"max_attempts": 1})}), stack.clock)

    assert_no_secret("exception", str(raised.value))
    assert_no_secret("report", " ".join(raised.value.report.failure_messages))
    project_records = [record for record in caplog.records if record.name.startswith("misp2sentinel")]
    assert_no_secret("log records", "\n".join(record.getMessage() for record in project_records))
