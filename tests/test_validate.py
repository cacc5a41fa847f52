"""`--validate`: every STIX pattern checked again with the pattern grammar before it leaves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from misp2sentinel import report as reasons
from misp2sentinel.mapping import types as types_module
from misp2sentinel.mapping.parts import Part
from misp2sentinel.validation import PatternValidator
from tests.conftest import NOW_TEXT, REPO_ROOT, misp_attribute, misp_event
from tests.stack_fixtures import clean_environment, make_stack, signing_key, stack, tls  # noqa: F401
from tests.test_export_cli import IMPORT_PROBE

EXAMPLE_FEED = REPO_ROOT / "examples" / "feed"
BROKEN = "[ipv4-addr:value = '198.51.100.9'"


def write_event(path: Path, *attributes: dict) -> Path:
    path.write_text(json.dumps({"Event": misp_event(*attributes)}), encoding="utf-8")
    return path


def test_validator_names_pattern_errors():
    validator = PatternValidator()

    assert validator.problem({"type": "indicator", "pattern_type": "stix", "pattern": "[ipv4-addr:value = '198.51.100.9']"}) is None
    problem = validator.problem({"type": "indicator", "pattern_type": "stix", "pattern": BROKEN})
    assert problem is not None
    assert "]" in problem


def test_validator_ignores_rules_and_identities():
    validator = PatternValidator()

    assert validator.problem({"type": "indicator", "pattern_type": "sigma", "pattern": "title: not STIX ["}) is None
    assert validator.problem({"type": "identity", "name": "CIRCL"}) is None


def test_validate_keeps_valid_bundle(run_cli, tmp_path):
    plain = run_cli("export", "--source", str(EXAMPLE_FEED), "--output", str(tmp_path / "plain.json"))
    checked = run_cli("export", "--source", str(EXAMPLE_FEED), "--output", str(tmp_path / "checked.json"), "--validate")

    assert plain.exit_code == checked.exit_code == 0
    assert (tmp_path / "plain.json").read_bytes() == (tmp_path / "checked.json").read_bytes()
    assert reasons.INVALID_PATTERN not in checked.stderr


def test_validate_skips_invalid_pattern(run_cli, tmp_path, monkeypatch):
    source = write_event(
        tmp_path / "event.json",
        misp_attribute("ip-dst", "198.51.100.9"),
        misp_attribute("domain", "example.com"),
    )
    real_build_parts = types_module.build_parts

    def break_one_pattern(attribute_type, value, data=None):
        parts = real_build_parts(attribute_type, value, data)
        if value == "198.51.100.9":
            parts[0].pattern_text = BROKEN
        return parts

    monkeypatch.setattr("misp2sentinel.mapping.builder.build_parts", break_one_pattern)

    unchecked = run_cli("export", "--source", str(source), "--output", str(tmp_path / "unchecked.json"))
    checked = run_cli("export", "--source", str(source), "--output", str(tmp_path / "checked.json"), "--validate")

    assert unchecked.exit_code == checked.exit_code == 0
    assert BROKEN in (tmp_path / "unchecked.json").read_text(encoding="utf-8")
    objects = json.loads((tmp_path / "checked.json").read_text(encoding="utf-8"))["objects"]
    patterns = [item["pattern"] for item in objects if item["type"] == "indicator"]
    assert patterns == ["[domain-name:value = 'example.com']"]
    assert f"{reasons.INVALID_PATTERN} 1" in checked.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("validate", [False, True])
def test_grammar_imported_only_with_validate(tmp_path, validate):
    source = write_event(tmp_path / "event.json", misp_attribute("ip-dst", "198.51.100.7"))
    probe = IMPORT_PROBE.replace('("msal", "requests", "pymisp", "urllib3", "httpx")', '("stix2patterns", "yaml", "sqlite3")')
    command = [sys.executable, "-c", probe, "export", "--source", str(source), "--output", str(tmp_path / "b.json")]
    if validate:
        command.append("--validate")

    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, MISP2SENTINEL_NOW=NOW_TEXT),
                            cwd=REPO_ROOT, timeout=60)

    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["exit_code"] == 0, result.stderr
    assert outcome["loaded"] == (["stix2patterns"] if validate else [])


def test_sync_validate_sends_valid_patterns(stack, monkeypatch):
    real_pattern = Part.pattern
    broken_ids = []

    def break_first_pattern(part):
        if not broken_ids and part.pattern_type == "stix":
            broken_ids.append(part.name)
            return BROKEN
        return real_pattern.fget(part)

    monkeypatch.setattr(Part, "pattern", property(break_first_pattern))

    report = stack.sync(validate=True)

    assert report.exit_code == 0, report.summary()
    assert report.skips[reasons.INVALID_PATTERN] == 1
    stored = stack.holdings()
    assert stored
    assert all(item.get("pattern") != BROKEN for item in stored.values())
    assert report.outcomes["created"] == len(stored)
