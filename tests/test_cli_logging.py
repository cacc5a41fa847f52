"""Log output: levels, JSON lines, redaction of secrets, and the progress line on a terminal."""

from __future__ import annotations

import json
import logging
import os
import pty
import subprocess
import sys

import pytest

from misp2sentinel.logs import REDACTED, RequestCounter, SecretRedactor
from tests.stack_fixtures import EXAMPLE_FEED, clean_environment, invoke, make_stack, signing_key, stack, tls  # noqa: F401
from tests.sync_stack import CLIENT_SECRET, MISP_KEY, REPO_ROOT

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL21hbmFnZW1lbnQifQ.c2lnbmF0dXJl"


def log_lines(stderr: str) -> list[str]:
    """Return the log lines of stderr: all but the closing summary."""
    return [line for line in stderr.splitlines() if line and not line.startswith(("sync: ", "export: "))]


@pytest.mark.parametrize(
    "text, secret",
    [
        ("{'Authorization': 'Abc123SecretKey', 'Accept': 'application/json'}", "Abc123SecretKey"),
        ("Authorization: Bearer tokenvalue.part", "tokenvalue.part"),
        ("X-MISP-AUTH: mispkeyvalue", "mispkeyvalue"),
        ("grant_type=client_credentials&client_secret=s3cr3t-form&scope=x", "s3cr3t-form"),
        ('{"access_token": "opaque-token-value", "expires_in": 3599}', "opaque-token-value"),
        (f"token {JWT} sent", JWT),
        ("bearer abcdefghijkl", "abcdefghijkl"),
    ],
)
def test_redactor_patterns(text, secret):
    redacted = SecretRedactor().redact(text)

    assert secret not in redacted
    assert REDACTED in redacted


def test_redactor_configured_secret():
    redactor = SecretRedactor([MISP_KEY, CLIENT_SECRET])

    assert redactor.redact(f"key {MISP_KEY} and {CLIENT_SECRET}.") == f"key {REDACTED} and {REDACTED}."


def test_redactor_keeps_ordinary_text():
    text = "workspace soc: POST /workspaces/x/threat-intelligence-stix-objects:upload -> 200 (2 objects, 0.01 s)"

    assert SecretRedactor(["abc"]).redact(text) == text


def test_redactor_renders_arguments_and_traceback():
    redactor = SecretRedactor([CLIENT_SECRET])
    try:
        raise ValueError(f"failed with {CLIENT_SECRET}")
    except ValueError:
        record = logging.LogRecord("misp2sentinel.x", logging.ERROR, __file__, 1, "secret %s", (CLIENT_SECRET,), sys.exc_info())

    redactor.filter(record)

    assert record.getMessage() == f"secret {REDACTED}"
    assert CLIENT_SECRET not in record.exc_text
    assert record.exc_info is None


def test_request_counter_reads_client_lines():
    counter = RequestCounter()
    client = "misp2sentinel.sentinel.client"
    records = [
        (client, logging.INFO, "%s: POST %s -> %d (%s, %.2f s)", ("soc", "/path", 200, "1 object", 0.1)),
        (client, logging.INFO, "%s: POST %s -> %d (%s, %.2f s)", ("soc", "/path", 429, "1 object", 0.1)),
        (client, logging.WARNING, "%s: %s (batch of %s); retrying in %.1f s (attempt %d of at most %d)", ("soc", "HTTP 429", "1 object", 1.0, 2, 4)),
        (client, logging.INFO, "%s: POST %s -> %s (%s, %.2f s)", ("intel", "/path", "ConnectTimeout", "1 object", 5.0)),
        ("misp2sentinel.sources.misp", logging.WARNING, "MISP search failed (%s); retrying in %.0f s (attempt %d of %d)", ("X", 5, 2, 4)),
    ]
    for name, level, message, arguments in records:
        counter.handle(logging.LogRecord(name, level, __file__, 1, message, arguments, None))

    assert counter.as_dict() == {"sentinel": 3, "sentinel_throttled": 1, "sentinel_retries": 1, "misp_retries": 1}
    assert counter.for_workspace("intel") == {"sentinel": 1, "sentinel_throttled": 0, "sentinel_retries": 0}


def test_default_level_shows_warnings_only(stack):
    result = invoke(stack, "sync", "-c", str(stack.config_path))

    assert result.exit_code == 0, result.stderr
    assert log_lines(result.stderr) == []


def test_info_one_line_per_request_and_workspace(stack):
    result = invoke(stack, "sync", "-c", str(stack.config_path), "-v")

    lines = log_lines(result.stderr)
    posts = [line for line in lines if ": POST " in line]
    assert len(posts) == len(stack.sentinel.request_log)
    assert all(line.startswith("INFO: soc: POST ") for line in posts)
    assert sum(1 for line in lines if line.startswith("INFO: workspace soc: ok")) == 1


def test_json_lines(stack):
    result = invoke(stack, "sync", "-c", str(stack.config_path), "-v", "--log-format", "json")

    lines = log_lines(result.stderr)
    assert lines
    for line in lines:
        record = json.loads(line)
        assert set(record) >= {"time", "level", "logger", "message"}
        assert record["logger"].startswith("misp2sentinel")
    levels = {json.loads(line)["level"] for line in lines}
    assert "INFO" in levels


def test_json_lines_from_environment(stack):
    result = invoke(stack, "sync", "-c", str(stack.config_path), "-v", env={"MISP2SENTINEL_LOG_FORMAT": "json"})

    assert all(line.startswith("{") for line in log_lines(result.stderr))


def test_debug_redacts_request_headers(stack):
    result = invoke(stack, "sync", "-c", str(stack.config_path), "-vv")

    assert result.exit_code == 0, result.stderr
    assert "DEBUG: " in result.stderr
    assert MISP_KEY not in result.stderr
    assert CLIENT_SECRET not in result.stderr
    assert "eyJ" not in result.stderr
    assert f"'Authorization': '{REDACTED}'" in result.stderr


def test_quiet_prints_summary_only(stack):
    stack.add_workspace("blocked", role=False)
    stack.write_config()

    result = invoke(stack, "sync", "-c", str(stack.config_path), "-q")

    assert result.exit_code == 1
    assert all(line.startswith(("ERROR: ", "  ")) for line in log_lines(result.stderr))


def test_tls_off_warns_loudly(stack):
    import yaml

    stack.write_config()
    workspaces = yaml.safe_load(stack.config_path.read_text())["workspaces"]
    workspaces[0]["verify_tls"] = False
    stack.write_config(workspaces=workspaces)

    result = invoke(stack, "sync", "-c", str(stack.config_path))

    assert "WARNING: TLS verification is OFF for workspace soc" in result.stderr


def test_state_readable_by_others_warns(stack):
    invoke(stack, "sync", "-c", str(stack.config_path))
    stack.state_path.chmod(0o644)

    result = invoke(stack, "sync", "-c", str(stack.config_path))

    assert f"state file {stack.state_path} is readable by other users" in result.stderr


def run_export_with_stderr(tmp_path, stderr) -> subprocess.CompletedProcess:
    environment = {**os.environ, "MISP2SENTINEL_NOW": "2026-01-31T12:00:00Z", "TERM": "xterm"}
    return subprocess.run(
        [sys.executable, "-m", "misp2sentinel", "export", "-s", str(EXAMPLE_FEED), "-o", str(tmp_path / "b.json")],
        stderr=stderr, stdout=subprocess.DEVNULL, env=environment, cwd=REPO_ROOT, timeout=60,
    )


def read_terminal(master: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def test_progress_on_terminal(tmp_path):
    master, slave = pty.openpty()
    try:
        completed = run_export_with_stderr(tmp_path, slave)
        os.close(slave)
        output = read_terminal(master)
    finally:
        os.close(master)

    assert completed.returncode == 0
    assert "\rexport: " in output
    assert "events/s" in output
    assert "\r\x1b[K" in output
    assert output.rstrip().splitlines()[-1].lstrip("\r\x1b[K").startswith("export: ")


def test_no_progress_when_piped(tmp_path):
    completed = run_export_with_stderr(tmp_path, subprocess.PIPE)

    assert completed.returncode == 0
    assert b"\r" not in completed.stderr
    assert b"events/s" not in completed.stderr
