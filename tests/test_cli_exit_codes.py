"""Exit codes of every command: 0 success, 1 a failed input, record, page, workspace or check,
2 bad usage, an invalid configuration or a corrupt or foreign state file."""

from __future__ import annotations

import sqlite3

import pytest

from tests.stack_fixtures import EXAMPLE_FEED, clean_environment, invoke, make_stack, signing_key, stack, tls  # noqa: F401


def corrupt_state(stack) -> None:
    stack.write_config()
    stack.state_path.write_bytes(b"\x00garbage" * 512)


def foreign_state(stack) -> None:
    stack.write_config()
    database = sqlite3.connect(stack.state_path)
    database.execute("PRAGMA application_id = 1234")
    database.execute("CREATE TABLE other (x)")
    database.commit()
    database.close()


def block_workspace(stack) -> None:
    stack.add_workspace("blocked", role=False)
    stack.write_config()


def invalid_config(stack) -> None:
    stack.config_path.write_text("misp:\n  url: ftp://misp.example.org\n")


def unknown_workspace_option(stack) -> None:
    stack.write_config()


CASES = [
    ("sync ok", lambda stack: None, ["sync"], 0),
    ("sync failed workspace", block_workspace, ["sync"], 1),
    ("sync invalid config", invalid_config, ["sync"], 2),
    ("sync corrupt state", corrupt_state, ["sync"], 2),
    ("sync foreign state", foreign_state, ["sync"], 2),
    ("sync bad usage", lambda stack: None, ["sync", "--output", "x.json"], 2),
    ("status ok", lambda stack: None, ["status"], 0),
    ("status corrupt state", corrupt_state, ["status"], 2),
    ("status invalid config", invalid_config, ["status"], 2),
    ("check ok", lambda stack: None, ["check"], 0),
    ("check failed workspace", block_workspace, ["check"], 1),
    ("check invalid config", invalid_config, ["check"], 2),
    ("revoke-all unknown workspace", unknown_workspace_option, ["revoke-all", "-w", "nosuch"], 2),
]


@pytest.mark.parametrize("prepare, arguments, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_exit_code(stack, prepare, arguments, expected):
    prepare(stack)

    result = invoke(stack, arguments[0], "-c", str(stack.config_path), *arguments[1:])

    assert result.exit_code == expected, result.stdout + result.stderr


def test_status_exit_1_after_failed_run(stack):
    block_workspace(stack)
    invoke(stack, "sync", "-c", str(stack.config_path))

    assert invoke(stack, "status", "-c", str(stack.config_path)).exit_code == 1


def test_export_exit_codes(stack, tmp_path):
    output = str(tmp_path / "bundle.json")

    assert invoke(stack, "export", "-s", str(EXAMPLE_FEED), "-o", output).exit_code == 0
    assert invoke(stack, "export", "-s", str(tmp_path / "absent"), "-o", output).exit_code == 1
    assert invoke(stack, "export", "-o", output).exit_code == 2


def test_unknown_option_exit_2(stack):
    assert invoke(stack, "status", "--no-such-option").exit_code == 2


def test_missing_config_file_exit_2(stack, tmp_path):
    result = invoke(stack, "check", "-c", str(tmp_path / "absent.yaml"))

    assert result.exit_code == 2
    assert "cannot read the file" in result.stderr
