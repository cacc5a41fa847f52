"""The run report file and the Prometheus metrics that each sync leaves for monitoring."""

from __future__ import annotations

import json
import stat

from prometheus_client.parser import text_string_to_metric_families

from tests.stack_fixtures import clean_environment, invoke, make_stack, signing_key, stack, tls  # noqa: F401
from tests.sync_stack import START


def metric_samples(path) -> dict[tuple, float]:
    """Return {(name, sorted label items): value} of a textfile-collector file."""
    samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def report_of(stack) -> dict:
    return json.loads((stack.tmp_path / "last-run.json").read_text())


def test_report_written_beside_state(stack):
    result = invoke(stack, "sync", "-c", str(stack.config_path))

    assert result.exit_code == 0, result.stderr
    report = report_of(stack)
    assert report["command"] == "sync"
    assert report["outcome"] == "ok"
    assert report["exit_code"] == 0
    assert report["outcomes"]["created"] == len(stack.holdings())
    assert report["workspaces"]["soc"]["outcome"] == "ok"
    assert report["workspaces"]["soc"]["last_success"] == report["finished"]


def test_report_mode_0600(stack):
    invoke(stack, "sync", "-c", str(stack.config_path))

    mode = stat.S_IMODE((stack.tmp_path / "last-run.json").stat().st_mode)
    assert mode == 0o600


def test_report_counts_requests(stack):
    invoke(stack, "sync", "-c", str(stack.config_path))

    requests = report_of(stack)["requests"]
    assert requests["sentinel"] == len(stack.sentinel.request_log)
    assert requests["sentinel_throttled"] == 0


def test_report_counts_throttling(stack):
    stack.sentinel.inject(429, count=2, retry_after=0)

    result = invoke(stack, "sync", "-c", str(stack.config_path))

    assert result.exit_code == 0, result.stderr
    requests = report_of(stack)["requests"]
    assert stack.sentinel.status_counts()[429] == 2
    assert requests["sentinel_throttled"] == 2
    assert requests["sentinel_retries"] == 2
    assert requests["sentinel"] == len(stack.sentinel.request_log)


def test_failed_run_keeps_last_success(make_stack):
    stack = make_stack()
    stack.add_workspace("blocked")
    first = invoke(stack, "sync", "-c", str(stack.config_path))
    succeeded_at = report_of(stack)["workspaces"]["blocked"]["last_success"]
    stack.sentinel.revoke_role(stack.workspace_ids["blocked"], stack.client_id)
    stack.source.advance(3600)
    stack.misp.edit_attribute(PHISHING_EVENT_UUID, first_attribute(stack), comment="changed")

    second = invoke(stack, "sync", "-c", str(stack.config_path))

    assert first.exit_code == 0, first.stderr
    assert second.exit_code == 1
    workspaces = report_of(stack)["workspaces"]
    assert workspaces["blocked"]["outcome"] == "failed"
    assert "Microsoft Sentinel Contributor" in workspaces["blocked"]["error"]
    assert workspaces["blocked"]["last_success"] == succeeded_at
    assert workspaces["soc"]["outcome"] == "ok"
    assert workspaces["soc"]["last_success"] > succeeded_at


PHISHING_EVENT_UUID = "87e64764-5f69-59b6-97b0-44dd8a14d25a"


def first_attribute(stack) -> str:
    return stack.misp.get_event(PHISHING_EVENT_UUID)["Event"]["Attribute"][0]["uuid"]


def test_error_run_writes_report(stack):
    stack.misp.fail_next("/events/restSearch", 500, count=10)
    stack.write_config(misp={"max_attempts": 1})

    result = invoke(stack, "sync", "-c", str(stack.config_path))

    assert result.exit_code == 1
    report = report_of(stack)
    assert report["outcome"] == "error"
    assert f"MISP search at {stack.misp.url} failed" in report["error"]
    assert report["workspaces"]["soc"]["outcome"] == "incomplete"
    assert report["workspaces"]["soc"]["last_success"] is None


def test_event_run_not_a_success(stack):
    result = invoke(stack, "sync", "-c", str(stack.config_path), "--event", PHISHING_EVENT_UUID)

    assert result.exit_code == 0, result.stderr
    soc = report_of(stack)["workspaces"]["soc"]
    assert soc["outcome"] == "ok"
    assert soc["last_success"] is None


def test_dry_run_writes_no_files(stack):
    metrics = stack.tmp_path / "misp2sentinel.prom"
    stack.write_config(reporting={"metrics_path": str(metrics)})

    result = invoke(stack, "sync", "-c", str(stack.config_path), "--dry-run")

    assert result.exit_code == 0, result.stderr
    assert not (stack.tmp_path / "last-run.json").exists()
    assert not metrics.exists()


def test_report_path_configurable(stack):
    target = stack.tmp_path / "reports" / "bridge.json"
    target.parent.mkdir()
    stack.write_config(reporting={"report_path": "reports/bridge.json"})

    invoke(stack, "sync", "-c", str(stack.config_path))

    assert json.loads(target.read_text())["outcome"] == "ok"


def test_unwritable_report_fails_run(stack):
    stack.write_config(reporting={"report_path": str(stack.tmp_path / "missing" / "report.json")})

    result = invoke(stack, "sync", "-c", str(stack.config_path))

    assert result.exit_code == 1
    assert "cannot write the run report" in result.stderr
    assert "reporting.report_path" in result.stderr


def test_metrics_file_contents(stack):
    metrics = stack.tmp_path / "misp2sentinel.prom"
    stack.write_config(reporting={"metrics_path": str(metrics)})

    invoke(stack, "sync", "-c", str(stack.config_path))

    samples = metric_samples(metrics)
    report = report_of(stack)
    assert samples[("misp2sentinel_last_run_exit_code", ())] == 0
    assert samples[("misp2sentinel_last_run_timestamp_seconds", ())] == report["finished_timestamp"]
    assert samples[("misp2sentinel_last_success_timestamp_seconds", (("workspace", "soc"),))] == report["finished_timestamp"]
    assert samples[("misp2sentinel_last_run_indicators", (("outcome", "created"),))] == report["outcomes"]["created"]
    assert samples[("misp2sentinel_last_run_requests", (("workspace", "soc"),))] == len(stack.sentinel.request_log)
    assert samples[("misp2sentinel_last_run_throttled_requests", (("workspace", "soc"),))] == 0
    assert ("misp2sentinel_last_run_duration_seconds", ()) in samples
    live = sum(1 for key in stack.holdings() if key.startswith("indicator--"))
    assert samples[("misp2sentinel_indicators", (("status", "live"), ("workspace", "soc")))] == live


def test_metrics_time_of_last_success(stack):
    metrics = stack.tmp_path / "misp2sentinel.prom"
    stack.write_config(reporting={"metrics_path": str(metrics)})

    invoke(stack, "sync", "-c", str(stack.config_path))

    # The run time is the stack's clock; the duration on the real monotonic clock is added to it.
    value = metric_samples(metrics)[("misp2sentinel_last_success_timestamp_seconds", (("workspace", "soc"),))]
    assert START <= value < START + 60


def test_metrics_mode_and_no_temporary_files(stack):
    metrics = stack.tmp_path / "misp2sentinel.prom"
    stack.write_config(reporting={"metrics_path": str(metrics)})

    invoke(stack, "sync", "-c", str(stack.config_path))

    assert stat.S_IMODE(metrics.stat().st_mode) == 0o600
    assert sorted(p.name for p in stack.tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_metrics_mode_configurable(stack):
    metrics = stack.tmp_path / "misp2sentinel.prom"
    stack.write_config(reporting={"metrics_path": str(metrics), "metrics_file_mode": 0o644})

    invoke(stack, "sync", "-c", str(stack.config_path))

    assert stat.S_IMODE(metrics.stat().st_mode) == 0o644


def test_metrics_path_must_end_in_prom(stack):
    stack.write_config(reporting={"metrics_path": str(stack.tmp_path / "metrics.txt")})

    result = invoke(stack, "sync", "-c", str(stack.config_path))

    assert result.exit_code == 2
    assert "reporting.metrics_path" in result.stderr
    assert ".prom" in result.stderr


def test_workspace_result_line_at_info(stack):
    result = invoke(stack, "sync", "-c", str(stack.config_path), "-v")

    lines = [line for line in result.stderr.splitlines() if line.startswith("INFO: workspace soc: ok")]
    assert len(lines) == 1
    assert "requests" in lines[0]
