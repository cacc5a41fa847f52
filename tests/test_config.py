"""Loading and validating the configuration file, secrets included, and its use by `export`."""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from misp2sentinel.config import MappingSettings, load_config
from misp2sentinel.errors import ConfigError
from misp2sentinel.mapping.defaults import DEFAULT_MAPPING
from tests.conftest import EVENT_UUID, TLP_GREEN, misp_attribute, misp_event

WORKSPACE_ID = "2b4f3c1e-9d8a-4c7b-8e6f-0a1b2c3d4e5f"
OTHER_WORKSPACE_ID = "7c5e4d3b-2a19-4f08-b7e6-d5c4b3a29180"
MISP_KEY = "MISPKEY-d2f1c0b9a8e7-SECRET"
CLIENT_SECRET = "CLIENTSECRET-5b4a3f2e1d0c-SECRET"
ENV_SECRET = "ENVSECRET-9a8b7c6d5e4f-SECRET"
FILE_SECRET = "FILESECRET-0f1e2d3c4b5a-SECRET"
SECRETS = (MISP_KEY, CLIENT_SECRET, ENV_SECRET, FILE_SECRET)


def write_config(folder: Path, text: str, name: str = "config.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    path.chmod(0o600)
    return path


def config_problems(path: Path) -> tuple[list[str], str]:
    """Load a configuration that must be invalid and return its problems and the full message."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems, str(caught.value)


def problems_at(problems: list[str], dotted: str) -> list[str]:
    """Return the problems naming the key path `dotted` (list indexes written as [0] or .0)."""
    spellings = {dotted, re.sub(r"\[(\d+)\]", r".\1", dotted)}
    return [p for p in problems if any(spelling in p for spelling in spellings)]


def problem_at(problems: list[str], dotted: str) -> str:
    """Return the one problem naming the key path `dotted`."""
    found = problems_at(problems, dotted)
    assert len(found) == 1, (dotted, problems)
    return found[0]


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


FULL_CONFIG = f"""\
    misp:
      url: https://misp.example.org/
      key: {{env: TEST_MISP_KEY}}
      verify_tls: true
      filter:
        tags: ["tlp:green", "!tlp:red"]
    sources:
      - feeds/circl
      - /srv/misp/extra.json
    mapping:
      default_tlp: green
      max_tlp: amber
      default_confidence: 70
      lifetime_days:
        ip: 7
        file_hash: 400
    sentinel:
      batch_size: 50
    workspaces:
      - name: soc
        workspace_id: "{{{WORKSPACE_ID.upper()}}}"
        tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
        client_id: 3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d
        client_secret: {{file: secret.txt}}
        selection:
          max_tlp: green
          types: [ip-dst, domain]
      - name: lab
        workspace_id: {OTHER_WORKSPACE_ID}
        tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
        client_id: 3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d
        client_secret: {CLIENT_SECRET}
        retired: true
    state:
      path: state/misp2sentinel.db
"""


def test_config_full_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_MISP_KEY", ENV_SECRET)
    (tmp_path / "secret.txt").write_text(FILE_SECRET + "\n", encoding="utf-8")
    path = write_config(tmp_path, FULL_CONFIG)

    config = load_config(path)

    assert config.misp.url == "https://misp.example.org"
    assert config.misp.key.get_secret_value() == ENV_SECRET
    assert config.sources == [tmp_path / "feeds" / "circl", Path("/srv/misp/extra.json")]
    assert config.mapping.default_tlp == "green"
    assert config.mapping.default_confidence == 70
    assert config.mapping.lifetime_days.ip == 7
    assert config.mapping.lifetime_days.file_hash == 400
    assert [w.name for w in config.workspaces] == ["soc", "lab"]
    assert config.workspaces[0].workspace_id == WORKSPACE_ID
    assert config.workspaces[0].client_secret.get_secret_value() == FILE_SECRET
    assert config.workspaces[0].selection.max_tlp == "green"
    assert config.state.path == tmp_path / "state" / "misp2sentinel.db"


def test_config_secrets_hidden_in_repr(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_MISP_KEY", ENV_SECRET)
    (tmp_path / "secret.txt").write_text(FILE_SECRET, encoding="utf-8")

    config = load_config(write_config(tmp_path, FULL_CONFIG))

    assert_no_secret(repr(config))
    assert_no_secret(str(config.model_dump()))


def test_config_empty_file_loads(tmp_path):
    config = load_config(write_config(tmp_path, ""))

    assert config.workspaces == []
    assert config.mapping.max_tlp == "amber"


# Every problem at once


MANY_PROBLEMS = f"""\
    misp:
      url: ftp://misp.example.org
      key: {MISP_KEY}
    mapping:
      default_tlp: purple
      default_confidence: 150
      lifetime_days:
        ip: 0
      max_tlpp: red
    workspaces:
      - name: soc
        workspace_id: not-a-guid
        tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
        client_secret: {CLIENT_SECRET}
"""


def test_config_every_problem_reported(tmp_path):
    problems, _ = config_problems(write_config(tmp_path, MANY_PROBLEMS))

    assert len(problems) == 7, problems


@pytest.mark.parametrize(
    ("key_path", "bad_value", "expectation"),
    [
        ("misp.url", "'ftp://misp.example.org'", "http"),
        ("mapping.default_tlp", "'purple'", "amber"),
        ("mapping.default_confidence", "150", "100"),
        ("mapping.lifetime_days.ip", "0", "1"),
        ("workspaces[0].workspace_id", "'not-a-guid'", "GUID"),
    ],
)
def test_config_problem_names_path_value_expectation(tmp_path, key_path, bad_value, expectation):
    problems, _ = config_problems(write_config(tmp_path, MANY_PROBLEMS))

    problem = problem_at(problems, key_path)
    assert bad_value in problem
    assert expectation in problem.split(key_path, 1)[-1]


def test_config_unknown_key_named(tmp_path):
    problems, _ = config_problems(write_config(tmp_path, MANY_PROBLEMS))

    assert "unknown" in problem_at(problems, "mapping.max_tlpp").lower()


def test_config_missing_key_named(tmp_path):
    problems, _ = config_problems(write_config(tmp_path, MANY_PROBLEMS))

    assert "missing" in problem_at(problems, "workspaces[0].client_id").lower()


def test_config_problems_hide_secrets(tmp_path):
    _, message = config_problems(write_config(tmp_path, MANY_PROBLEMS))

    assert_no_secret(message)


UNSET_ENV_SECRET = """\
    misp:
      url: https://misp.example.org
      key: {env: TEST_UNSET_SECRET}
    mapping:
      max_tlp: crimson
    """


def test_config_unset_env_secret_named(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_UNSET_SECRET", raising=False)

    problems, _ = config_problems(write_config(tmp_path, UNSET_ENV_SECRET))

    assert any("TEST_UNSET_SECRET" in problem for problem in problems_at(problems, "misp.key"))
    assert "'crimson'" in problem_at(problems, "mapping.max_tlp")


def test_config_unset_env_secret_once(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_UNSET_SECRET", raising=False)

    problems, _ = config_problems(write_config(tmp_path, UNSET_ENV_SECRET))

    assert len(problems_at(problems, "misp.key")) == 1, problems


def test_config_missing_secret_file_named(tmp_path):
    path = write_config(
        tmp_path,
        """\
        misp:
          url: https://misp.example.org
          key: {file: absent-secret.txt}
        """,
    )

    problems, _ = config_problems(path)

    assert any("absent-secret.txt" in problem for problem in problems_at(problems, "misp.key"))


def test_config_not_yaml_mapping(tmp_path):
    problems, _ = config_problems(write_config(tmp_path, "- just\n- a list\n"))

    assert len(problems) == 1


# Secrets never appear in errors


SECRET_LEAK_CASES = {
    "secret of the wrong type": f"""\
        workspaces:
          - name: soc
            workspace_id: {WORKSPACE_ID}
            tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
            client_id: 3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d
            client_secret: ["{CLIENT_SECRET}"]
        """,
    "secret beside an invalid url": f"""\
        misp:
          url: not a url
          key: {MISP_KEY}
        """,
    "env secret beside an invalid value": """\
        misp:
          url: https://misp.example.org
          key: {env: TEST_LEAK_SECRET}
          timeout_seconds: -1
        """,
}

# Cases whose bad value is a container (the whole file, a section, a list) or a YAML line.
SECRET_LEAK_CONTAINER_CASES = {
    "duplicate workspace names": f"""\
        workspaces:
          - name: soc
            workspace_id: {WORKSPACE_ID}
            tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
            client_id: 3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d
            client_secret: {CLIENT_SECRET}
          - name: soc
            workspace_id: {OTHER_WORKSPACE_ID}
            tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
            client_id: 3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d
            client_secret: {{env: TEST_LEAK_SECRET}}
        """,
    "section given as a list": f"""\
        misp:
          - url: https://misp.example.org
            key: {MISP_KEY}
        """,
    "workspaces given as a mapping": f"""\
        workspaces:
          soc:
            workspace_id: {WORKSPACE_ID}
            client_secret: {{env: TEST_LEAK_SECRET}}
        """,
    "YAML syntax error on a secret line": f"""\
        misp:
          url: https://misp.example.org
          key: '{MISP_KEY}
        """,
}


def secret_leak_params():
    for name, text in SECRET_LEAK_CASES.items():
        yield pytest.param(text, id=name)
    for name, text in SECRET_LEAK_CONTAINER_CASES.items():
        yield pytest.param(text, id=name)


@pytest.mark.parametrize("text", list(secret_leak_params()))
def test_config_error_hides_secret(tmp_path, monkeypatch, text):
    monkeypatch.setenv("TEST_LEAK_SECRET", ENV_SECRET)

    _, message = config_problems(write_config(tmp_path, text))

    assert_no_secret(message)


# The configuration in the export command


def write_event(path: Path) -> Path:
    path.write_text(json.dumps({"Event": misp_event(misp_attribute("ip-dst", "198.51.100.7"))}), encoding="utf-8")
    return path


def workspace(name: str, workspace_id: str, **fields) -> dict:
    entry = {
        "name": name,
        "workspace_id": workspace_id,
        "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "client_id": "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "client_secret": CLIENT_SECRET,
    }
    entry.update(fields)
    return entry


def config_with_event(tmp_path: Path, workspaces: list[dict] | None = None) -> Path:
    """Write an event file and a configuration that reads it, with a MISP server and green default."""
    (tmp_path / "events").mkdir()
    write_event(tmp_path / "events" / "one.json")
    document = {
        "misp": {"url": "https://misp.example.org", "key": MISP_KEY},
        "sources": ["events/one.json"],
        "mapping": {"default_tlp": "green"},
        "workspaces": workspaces or [],
    }
    return write_config(tmp_path, yaml.safe_dump(document, sort_keys=False))


def test_export_config_sources_and_mapping(run_cli, tmp_path):
    config = config_with_event(tmp_path)
    output = tmp_path / "bundle.json"

    result = run_cli("export", "--config", str(config), "--output", str(output))

    assert result.exit_code == 0, result.stderr
    indicator = [o for o in json.loads(output.read_text())["objects"] if o["type"] == "indicator"][0]
    assert indicator["object_marking_refs"] == [TLP_GREEN]
    urls = [reference.get("url") for reference in indicator["external_references"]]
    assert urls == [f"https://misp.example.org/events/view/{EVENT_UUID}"]


def test_export_config_invalid_exit_2(run_cli, tmp_path):
    config = write_config(tmp_path, MANY_PROBLEMS)

    result = run_cli("export", "--config", str(config), "--output", str(tmp_path / "bundle.json"))

    assert result.exit_code == 2
    for key_path in ("misp.url", "mapping.default_tlp", "mapping.default_confidence", "workspace_id", "client_id"):
        assert key_path in result.stderr
    assert_no_secret(result.stderr + result.stdout)
    assert not (tmp_path / "bundle.json").exists()


def test_export_config_missing_file_exit_2(run_cli, tmp_path):
    result = run_cli("export", "--config", str(tmp_path / "absent.yaml"), "--output", str(tmp_path / "bundle.json"))

    assert result.exit_code == 2
    assert "absent.yaml" in result.stderr


def test_export_several_workspaces_need_choice(run_cli, tmp_path):
    config = config_with_event(tmp_path, [workspace("soc", WORKSPACE_ID), workspace("lab", OTHER_WORKSPACE_ID)])

    result = run_cli("export", "--config", str(config), "--output", str(tmp_path / "bundle.json"))

    assert result.exit_code == 2
    assert "--workspace" in result.stderr


def test_export_unknown_workspace_exit_2(run_cli, tmp_path):
    config = config_with_event(tmp_path, [workspace("soc", WORKSPACE_ID), workspace("lab", OTHER_WORKSPACE_ID)])

    result = run_cli("export", "--config", str(config), "--workspace", "nope", "--output", str(tmp_path / "b.json"))

    assert result.exit_code == 2
    assert "nope" in result.stderr


def test_export_workspace_selection_applies(run_cli, tmp_path):
    soc_workspace = workspace("soc", WORKSPACE_ID, selection={"types": ["domain"]})
    config = config_with_event(tmp_path, [soc_workspace, workspace("lab", OTHER_WORKSPACE_ID)])
    soc, lab = tmp_path / "soc.json", tmp_path / "lab.json"

    soc_result = run_cli("export", "--config", str(config), "--workspace", "soc", "--output", str(soc))
    lab_result = run_cli("export", "--config", str(config), "--workspace", "lab", "--output", str(lab))

    assert soc_result.exit_code == 0, soc_result.stderr
    assert lab_result.exit_code == 0, lab_result.stderr
    assert [o["type"] for o in json.loads(soc.read_text())["objects"]].count("indicator") == 0
    assert [o["type"] for o in json.loads(lab.read_text())["objects"]].count("indicator") == 1


def test_global_filter_rejects_workspace_keys(tmp_path):
    text = f"""\
misp:
  url: https://misp.example.org
  key: {MISP_KEY}
  filter:
    types: [domain]
"""
    problems, _ = config_problems(write_config(tmp_path, text))

    assert any(problem.startswith("misp.filter.types: unknown key") for problem in problems)


@pytest.mark.parametrize(("days", "accepted"), [(36500, True), (36501, False), (3_000_000, False), ("never", True)])
def test_lifetime_days_bounded(days, accepted):
    """A lifetime past 100 years could carry valid_until beyond what a STIX timestamp can write."""
    if accepted:
        assert MappingSettings(lifetime_days={"ip": days}).lifetime_days.ip == days
        return
    with pytest.raises(ValueError, match="from 1 to 36500"):
        MappingSettings(lifetime_days={"ip": days})


def test_mapping_defaults_match_the_model():
    """An export without a configuration maps with the plain-data defaults, so they must equal the model's."""
    assert dataclasses.asdict(DEFAULT_MAPPING) == MappingSettings().model_dump()


def test_export_same_bundle_with_empty_mapping(run_cli, tmp_path):
    """A configuration that sets nothing under `mapping:` gives the bundle of an export without one."""
    source = tmp_path / "event.json"
    write_event(source)
    config = write_config(tmp_path, yaml.safe_dump({"sources": [str(source)], "workspaces": []}))

    with_config = run_cli("export", "--config", str(config), "--output", str(tmp_path / "configured.json"))
    without = run_cli("export", "--source", str(source), "--output", str(tmp_path / "plain.json"))

    assert with_config.exit_code == 0, with_config.stderr
    assert without.exit_code == 0, without.stderr
    assert (tmp_path / "configured.json").read_bytes() == (tmp_path / "plain.json").read_bytes()


@pytest.mark.parametrize("text", ["mapping:\nreporting:\n", "mapping:\n  sanity:\n  lifetime_days:\n"])
def test_empty_section_takes_defaults(tmp_path, text):
    """A section with nothing under it is YAML null; it reads as an empty section, not as an error."""
    config = load_config(write_config(tmp_path, "workspaces: []\n" + text))

    assert config.mapping == MappingSettings()


def test_empty_misp_section_means_no_server(tmp_path):
    config = load_config(write_config(tmp_path, "workspaces: []\nmisp:\n"))

    assert config.misp is None
