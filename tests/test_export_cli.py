"""The `export` command: exit codes, summary, atomic output, run time, imports and the corpus."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from misp2sentinel import report as reasons
from misp2sentinel.export import BundleWriter
from tests.conftest import CORPUS, NOW_TEXT, REPO_ROOT, check_stix, misp_attribute, misp_event, misp_object, stix_time

SKIP_REASONS = (
    reasons.NOT_IDS,
    reasons.UNSUPPORTED_TYPE,
    reasons.INVALID_VALUE,
    reasons.ABOVE_MAX_TLP,
    reasons.STALE,
    reasons.DUPLICATE,
    reasons.DELETED,
    reasons.NOT_SELECTED,
    reasons.WARNINGLIST,
    reasons.UNPUBLISHED,
)
SKIP_REASON_WORD = re.compile(r"\b(" + "|".join(re.escape(r) for r in SKIP_REASONS) + r")\b")


def write_event(path: Path, *attributes: dict, **fields) -> Path:
    path.write_text(json.dumps({"Event": misp_event(*attributes, **fields)}), encoding="utf-8")
    return path


def simple_source(tmp_path: Path) -> Path:
    return write_event(tmp_path / "event.json", misp_attribute("ip-dst", "198.51.100.7"))


def summary_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert lines, "stderr is empty; expected a summary line"
    return lines[-1]


def read_bundle(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def run_module(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environment = dict(os.environ, MISP2SENTINEL_NOW=NOW_TEXT)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "misp2sentinel", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd or REPO_ROOT,
        timeout=60,
    )


# Exit codes


def test_exit_0_writes_bundle(run_cli, tmp_path):
    output = tmp_path / "bundle.json"

    result = run_cli("export", "--source", str(simple_source(tmp_path)), "--output", str(output))

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    bundle = read_bundle(output)
    assert bundle["type"] == "bundle"
    assert bundle["id"].startswith("bundle--")
    assert [o["type"] for o in bundle["objects"]] == ["identity", "indicator"]
    for obj in bundle["objects"]:
        check_stix(obj)


def test_exit_0_with_only_skips(run_cli, tmp_path):
    source = write_event(
        tmp_path / "event.json",
        misp_attribute("text", "note", to_ids=False),
        misp_attribute("md5", "xyz"),
        misp_attribute("ip-dst", "198.51.100.7", tags=("tlp:red",)),
    )

    result = run_cli("export", "--source", str(source), "--output", str(tmp_path / "bundle.json"))

    assert result.exit_code == 0, result.stderr


def test_exit_1_missing_source(run_cli, tmp_path):
    output = tmp_path / "bundle.json"

    result = run_cli("export", "--source", str(tmp_path / "absent.json"), "--source", str(simple_source(tmp_path)), "--output", str(output))

    assert result.exit_code == 1
    assert "absent.json" in result.stderr
    assert [o["type"] for o in read_bundle(output)["objects"]] == ["identity", "indicator"]
    assert "1 failed" in summary_line(result.stderr)


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(["export", "--output", "bundle.json"], id="no source or config"),
        pytest.param(["export", "--source", "event.json"], id="no output"),
        pytest.param(["export", "--workspace", "soc", "--source", "event.json", "--output", "b.json"], id="workspace without config"),
        pytest.param(["export", "--source", "event.json", "--output", "b.json", "--no-such-option"], id="unknown option"),
        pytest.param(["no-such-command"], id="unknown command"),
    ],
)
def test_exit_2_bad_usage(run_cli, tmp_path, monkeypatch, arguments):
    monkeypatch.chdir(tmp_path)
    simple_source(tmp_path)

    result = run_cli(*arguments)

    assert result.exit_code == 2
    assert result.stderr.strip()
    assert not (tmp_path / "b.json").exists()


# Summary and -v


def mixed_sources(tmp_path: Path) -> tuple[Path, Path, dict[str, tuple[str, str]]]:
    """Write two inputs whose attributes end in every outcome, and map each skipped uuid to its reason."""
    exported = misp_attribute("ip-dst", "198.51.100.7")
    not_ids = misp_attribute("text", "analyst note", to_ids=False)
    unsupported = misp_attribute("btc", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT")
    invalid = misp_attribute("md5", "not-a-hash")
    red = misp_attribute("domain", "secret.example.com", tags=("tlp:red",))
    stale = misp_attribute("ip-src", "198.51.100.9", last_seen="2024-01-01T00:00:00.000000+00:00")
    first = write_event(tmp_path / "first.json", exported, not_ids, unsupported, invalid, red, stale)
    second = write_event(tmp_path / "second.json", exported)
    expected = {
        not_ids["uuid"]: reasons.NOT_IDS,
        unsupported["uuid"]: reasons.UNSUPPORTED_TYPE,
        invalid["uuid"]: reasons.INVALID_VALUE,
        red["uuid"]: reasons.ABOVE_MAX_TLP,
        stale["uuid"]: reasons.STALE,
        exported["uuid"]: reasons.DUPLICATE,
    }
    return first, second, expected


def test_summary_one_line_on_stderr(run_cli, tmp_path):
    first, second, _ = mixed_sources(tmp_path)

    result = run_cli("export", "--source", str(first), "--source", str(second), "--output", str(tmp_path / "b.json"))

    assert result.exit_code == 0, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "reason",
    [reasons.NOT_IDS, reasons.UNSUPPORTED_TYPE, reasons.INVALID_VALUE, reasons.ABOVE_MAX_TLP, reasons.STALE, reasons.DUPLICATE],
)
def test_summary_counts_skip_reason(run_cli, tmp_path, reason):
    first, second, _ = mixed_sources(tmp_path)

    result = run_cli("export", "--source", str(first), "--source", str(second), "--output", str(tmp_path / "b.json"))

    assert f"{reason} 1" in summary_line(result.stderr)


def test_summary_counts_outcomes(run_cli, tmp_path):
    first, second, _ = mixed_sources(tmp_path)
    output = tmp_path / "b.json"

    result = run_cli("export", "--source", str(first), "--source", str(second), "--output", str(output))

    line = summary_line(result.stderr)
    written = re.search(r"(\d+) written", line)
    skipped = re.search(r"(\d+) skipped", line)
    assert written and int(written.group(1)) == len(read_bundle(output)["objects"])
    assert skipped and int(skipped.group(1)) == 6
    assert "0 failed" in line


def test_not_ids_counted_alike_with_and_without_verbose(run_cli, tmp_path):
    """Without -v the mapper counts an event's to_ids-off attributes as one skip; the totals stay the same."""
    source = write_event(
        tmp_path / "event.json",
        *[misp_attribute("domain", f"host{index}.example.com", to_ids=False) for index in range(3)],
        misp_attribute("ip-dst", "198.51.100.7"),
        objects=(misp_object("domain-ip", misp_attribute("domain", "object.example.com", to_ids=False,
                                                         object_relation="domain")),),
    )

    quiet = run_cli("export", "--source", str(source), "--output", str(tmp_path / "quiet.json"))
    verbose = run_cli("export", "-v", "--source", str(source), "--output", str(tmp_path / "verbose.json"))

    assert f"{reasons.NOT_IDS} 4" in summary_line(quiet.stderr)
    assert f"{reasons.NOT_IDS} 4" in summary_line(verbose.stderr)
    assert (tmp_path / "quiet.json").read_bytes() == (tmp_path / "verbose.json").read_bytes()


def test_verbose_lists_each_skip(run_cli, tmp_path):
    first, second, expected = mixed_sources(tmp_path)

    result = run_cli("export", "-v", "--source", str(first), "--source", str(second), "--output", str(tmp_path / "b.json"))

    lines = result.stderr.splitlines()
    for attribute_uuid, reason in expected.items():
        matching = [line for line in lines if attribute_uuid in line and reason in line]
        assert len(matching) == 1, (attribute_uuid, reason, result.stderr)


def test_verbose_skip_detail_names_value(run_cli, tmp_path):
    first, second, _ = mixed_sources(tmp_path)

    result = run_cli("export", "-v", "--source", str(first), "--output", str(tmp_path / "b.json"))

    assert any("not-a-hash" in line and reasons.INVALID_VALUE in line for line in result.stderr.splitlines())


# Atomic output


def test_output_mode_0600(run_cli, tmp_path):
    output = tmp_path / "bundle.json"
    output.write_text("previous", encoding="utf-8")
    output.chmod(0o644)

    result = run_cli("export", "--source", str(simple_source(tmp_path)), "--output", str(output))

    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert read_bundle(output)["type"] == "bundle"


def test_output_no_temporary_files_left(run_cli, tmp_path):
    source = simple_source(tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()

    run_cli("export", "--source", str(source), "--output", str(folder / "bundle.json"))

    assert sorted(p.name for p in folder.iterdir()) == ["bundle.json"]


def test_output_missing_folder_fails(run_cli, tmp_path):
    output = tmp_path / "absent-folder" / "bundle.json"

    result = run_cli("export", "--source", str(simple_source(tmp_path)), "--output", str(output))

    assert result.exit_code in (1, 2)
    assert "absent-folder" in result.stderr
    assert not output.parent.exists()


def test_output_missing_folder_summary(run_cli, tmp_path):
    output = tmp_path / "absent-folder" / "bundle.json"

    result = run_cli("export", "--source", str(simple_source(tmp_path)), "--output", str(output))

    line = summary_line(result.stderr)
    assert "written" in line
    assert "failed" in line


def test_output_kept_when_run_raises(run_cli, tmp_path, monkeypatch):
    folder = tmp_path / "out"
    folder.mkdir()
    output = folder / "bundle.json"
    output.write_bytes(b"previous bundle\n")
    real_write = BundleWriter.write

    def write_then_raise(writer, stix):
        real_write(writer, stix)
        if writer.count == 2:
            raise RuntimeError("simulated failure in the middle of a run")

    monkeypatch.setattr(BundleWriter, "write", write_then_raise)
    source = write_event(tmp_path / "event.json", misp_attribute("ip-dst", "198.51.100.7"), misp_attribute("domain", "example.com"))

    result = run_cli("export", "--source", str(source), "--output", str(output))

    assert result.exit_code == 1
    assert output.read_bytes() == b"previous bundle\n"
    assert sorted(p.name for p in folder.iterdir()) == ["bundle.json"]


def test_output_kept_on_invalid_run_time(run_cli, tmp_path):
    output = tmp_path / "bundle.json"
    output.write_bytes(b"previous bundle\n")

    result = run_cli("export", "--source", str(simple_source(tmp_path)), "--output", str(output), env={"MISP2SENTINEL_NOW": "soon"})

    assert result.exit_code == 2
    assert output.read_bytes() == b"previous bundle\n"


def test_output_replaced_on_success(run_cli, tmp_path):
    output = tmp_path / "bundle.json"
    output.write_bytes(b"previous bundle\n")

    result = run_cli("export", "--source", str(simple_source(tmp_path)), "--output", str(output))

    assert result.exit_code == 0, result.stderr
    assert read_bundle(output)["type"] == "bundle"


# Run time


def test_now_variable_sets_modified(run_cli, tmp_path):
    output = tmp_path / "bundle.json"

    run_cli("export", "--source", str(simple_source(tmp_path)), "--output", str(output), env={"MISP2SENTINEL_NOW": "2026-03-04T05:06:07+02:00"})

    indicator = read_bundle(output)["objects"][1]
    assert stix_time(indicator["modified"]) == stix_time("2026-03-04T03:06:07Z")


def test_now_variable_sets_lifetime(run_cli, tmp_path):
    output = tmp_path / "bundle.json"

    run_cli("export", "--source", str(simple_source(tmp_path)), "--output", str(output), env={"MISP2SENTINEL_NOW": "2026-03-04T00:00:00Z"})

    indicator = read_bundle(output)["objects"][1]
    assert stix_time(indicator["valid_until"]) > stix_time("2026-03-04T00:00:00Z")
    assert stix_time(indicator["valid_until"]).hour == 0


@pytest.mark.parametrize("value", ["soon", "2026-01-31T12:00:00", "2026-13-01T00:00:00Z", "2026-01-31", "1769860800"])
def test_now_variable_invalid_exit_2(run_cli, tmp_path, value):
    result = run_cli("export", "--source", str(simple_source(tmp_path)), "--output", str(tmp_path / "b.json"), env={"MISP2SENTINEL_NOW": value})

    assert result.exit_code == 2
    assert "MISP2SENTINEL_NOW" in result.stderr
    assert value in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "b.json").exists()


# Determinism


def test_determinism_same_bytes(run_cli, tmp_path):
    first, second, _ = mixed_sources(tmp_path)
    first_output, second_output = tmp_path / "first-run.json", tmp_path / "second-run.json"

    run_cli("export", "--source", str(first), "--source", str(second), "--output", str(first_output))
    run_cli("export", "--source", str(first), "--source", str(second), "--output", str(second_output))

    assert first_output.read_bytes() == second_output.read_bytes()


# The module entry point and what the export path imports


def test_module_help():
    result = run_module("--help")

    assert result.returncode == 0, result.stderr
    assert "export" in result.stdout


def test_module_export_help():
    result = run_module("export", "--help")

    assert result.returncode == 0, result.stderr
    for option in ("--source", "--config", "--workspace", "--output"):
        assert option in result.stdout


IMPORT_PROBE = textwrap.dedent(
    """
    import json
    import sys

    from misp2sentinel.cli import cli

    try:
        cli.main(args=sys.argv[1:], prog_name="misp2sentinel")
    except SystemExit as exit:
        code = exit.code
    loaded = sorted(name for name in ("msal", "requests", "pymisp", "urllib3", "httpx") if name in sys.modules)
    print(json.dumps({"exit_code": code, "loaded": loaded}))
    """
)


def test_export_imports_no_http_client(tmp_path):
    # Missing to_ids makes the mapper look up MISP's defaults, which must not import PyMISP.
    source = write_event(
        tmp_path / "event.json",
        misp_attribute("ip-dst", "198.51.100.7", to_ids=None),
        misp_attribute("domain|ip", "example.com|198.51.100.8"),
    )
    environment = dict(os.environ, MISP2SENTINEL_NOW=NOW_TEXT)
    command = [sys.executable, "-c", IMPORT_PROBE, "export", "--source", str(source), "--output", str(tmp_path / "b.json")]

    result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPO_ROOT, timeout=60)

    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["exit_code"] == 0, result.stderr
    assert probe["loaded"] == []


def test_output_ending_in_slash_exit_2(run_cli, tmp_path):
    result = run_cli("export", "--source", str(simple_source(tmp_path)), "--output", str(tmp_path / "bundle.json") + "/")

    assert result.exit_code == 2
    assert "names a folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_without_config_imports_no_pydantic(tmp_path):
    # Without a configuration file the mapping defaults are plain data; pydantic costs start-up time.
    source = write_event(tmp_path / "event.json", misp_attribute("ip-dst", "198.51.100.7"))
    probe = IMPORT_PROBE.replace('("msal", "requests", "pymisp", "urllib3", "httpx")', '("pydantic", "pydantic_core")')
    command = [sys.executable, "-c", probe, "export", "--source", str(source), "--output", str(tmp_path / "b.json")]

    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, MISP2SENTINEL_NOW=NOW_TEXT),
                            cwd=REPO_ROOT, timeout=60)

    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["exit_code"] == 0, result.stderr
    assert outcome["loaded"] == []


# The shared corpus of real MISP events


@pytest.fixture(scope="module")
def corpus_export(tmp_path_factory):
    if not CORPUS.is_dir():
        pytest.skip(f"corpus folder {CORPUS} is absent")
    output = tmp_path_factory.mktemp("corpus") / "bundle.json"
    result = run_module("export", "-v", "--source", str(CORPUS), "--output", str(output))
    return result, output


def test_corpus_exit_0(corpus_export):
    result, _ = corpus_export

    assert result.returncode == 0, result.stderr[-2000:]


def test_corpus_objects_valid(corpus_export):
    _, output = corpus_export

    objects = read_bundle(output)["objects"]

    assert any(o["type"] == "indicator" for o in objects)
    for obj in objects:
        check_stix(obj)


def test_corpus_ids_unique(corpus_export):
    _, output = corpus_export

    ids = [o["id"] for o in read_bundle(output)["objects"]]

    assert len(ids) == len(set(ids))


def test_corpus_no_and_patterns(corpus_export):
    _, output = corpus_export

    patterns = [o["pattern"] for o in read_bundle(output)["objects"] if o["type"] == "indicator"]

    assert [p for p in patterns if " AND " in p] == []


def test_corpus_summary_explains_skips(corpus_export):
    result, output = corpus_export
    lines = result.stderr.strip().splitlines()

    summary = lines[-1]
    skipped = re.search(r"(\d+) skipped", summary)
    written = re.search(r"(\d+) written", summary)
    skip_lines = [line for line in lines[:-1] if SKIP_REASON_WORD.search(line)]

    assert written and int(written.group(1)) == len(read_bundle(output)["objects"])
    assert skipped and int(skipped.group(1)) == len(skip_lines)
