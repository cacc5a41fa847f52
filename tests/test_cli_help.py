"""Every command documents itself: help with examples that use each option, exit codes, and a
place in README.md."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from misp2sentinel.cli import cli
from tests.sync_stack import REPO_ROOT

COMMANDS = sorted(cli.commands)
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def help_text(*arguments: str) -> str:
    result = CliRunner().invoke(cli, [*arguments, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def examples_block(text: str) -> str:
    start = text.index("Examples:")
    end = text.index("Options:", start) if "Options:" in text[start:] else len(text)
    return text[start:end]


def test_commands_listed():
    assert COMMANDS == ["check", "export", "revoke-all", "status", "sync"]


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_has_examples(command):
    examples = examples_block(help_text(command))

    lines = [line.strip() for line in examples.splitlines()[1:] if line.strip()]
    assert len(lines) >= 2
    assert all(line.startswith(f"misp2sentinel {command} ") for line in lines), lines


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_in_an_example(command):
    examples = examples_block(help_text(command))
    missing = []
    for parameter in cli.commands[command].params:
        if not isinstance(parameter, click.Option) or parameter.name == "help":
            continue
        names = parameter.opts + parameter.secondary_opts
        if not any(re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", examples) for name in names):
            missing.append(names[0])
    assert missing == []


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help(command):
    for parameter in cli.commands[command].params:
        if isinstance(parameter, click.Option):
            assert parameter.help, parameter.opts


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_lists_exit_codes(command):
    text = help_text(*([command] if command else []))

    assert "Exit codes:" in text
    for code in ("0", "1", "2"):
        assert re.search(rf"^\s+{code}\s+\S", text, re.MULTILINE), code


@pytest.mark.parametrize("command", COMMANDS)
def test_command_in_readme(command):
    assert f"misp2sentinel {command}" in README


def test_readme_documents_exit_codes():
    table = README[README.index("| exit code |"):]
    for code in ("0", "1", "2"):
        assert re.search(rf"^\| {code} \|", table, re.MULTILINE), code


def test_readme_documents_log_and_metric_names():
    for name in ("--log-format", "--json", "misp2sentinel_last_success_timestamp_seconds", "last-run.json"):
        assert name in README, name
