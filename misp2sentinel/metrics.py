"""The Prometheus textfile-collector file that each sync leaves for node_exporter.

Every metric is a gauge describing the latest run, or the state after it, so an alert can watch
`time() - misp2sentinel_last_success_timestamp_seconds` per workspace and catch a bridge that
silently stopped. prometheus_client renders the text format (escaping label values, HELP and TYPE
lines), and the sync command writes the file atomically with the configured mode.
"""

from __future__ import annotations

def render_metrics(document: dict, state_counts: dict[str, dict[str, int]], pending: dict[str, int]) -> bytes:
    """Return the metrics of one run report `document` and the state's counts in the text format."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()

    def gauge(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, documentation, labels, registry=registry)

    gauge("misp2sentinel_last_run_timestamp_seconds", "End of the latest sync run, in Unix seconds.").set(
        document["finished_timestamp"]
    )
    gauge("misp2sentinel_last_run_duration_seconds", "Duration of the latest sync run.").set(document["duration_seconds"])
    gauge("misp2sentinel_last_run_exit_code", "Exit code of the latest sync run: 0 ok, 1 failed, 2 usage or state.").set(
        document["exit_code"]
    )
    gauge("misp2sentinel_last_run_events", "MISP events processed by the latest sync run.").set(document["events"])

    indicators = gauge(
        "misp2sentinel_last_run_indicators",
        "Indicators of the latest sync run by outcome; skipped and failed are the totals of the reason metrics.",
        ("outcome",),
    )
    for outcome, number in document["outcomes"].items():
        indicators.labels(outcome).set(number)
    indicators.labels("skipped").set(sum(document["skipped"].values()))
    indicators.labels("failed").set(document["failed"].get("record", 0))

    skipped = gauge("misp2sentinel_last_run_skipped", "Indicators skipped by the latest sync run, by reason.", ("reason",))
    for reason, number in document["skipped"].items():
        skipped.labels(reason).set(number)
    failures = gauge(
        "misp2sentinel_last_run_failures",
        "Failures of the latest sync run by kind: record, workspace, input, page, guard and others.",
        ("reason",),
    )
    for reason, number in document["failed"].items():
        failures.labels(reason).set(number)

    requests = gauge("misp2sentinel_last_run_requests", "Upload requests sent to Sentinel in the latest run.", ("workspace",))
    throttled = gauge(
        "misp2sentinel_last_run_throttled_requests", "Sentinel responses with HTTP 429 in the latest run.", ("workspace",)
    )
    retries = gauge(
        "misp2sentinel_last_run_retries",
        "Retries in the latest run: Sentinel per workspace, and MISP searches (workspace empty).",
        ("service", "workspace"),
    )
    retries.labels("misp", "").set(document["requests"]["misp_retries"])
    success = gauge(
        "misp2sentinel_last_run_success", "1 when the workspace's part of the latest run succeeded, else 0.", ("workspace",)
    )
    last_success = gauge(
        "misp2sentinel_last_success_timestamp_seconds",
        "End of the latest sync run in which the workspace succeeded, in Unix seconds.",
        ("workspace",),
    )
    for name, entry in document["workspaces"].items():
        if entry.get("in_run"):
            requests.labels(name).set(entry["requests"]["sentinel"])
            throttled.labels(name).set(entry["requests"]["sentinel_throttled"])
            retries.labels("sentinel", name).set(entry["requests"]["sentinel_retries"])
            success.labels(name).set(1 if entry["outcome"] == "ok" else 0)
        if entry.get("last_success_timestamp") is not None:
            last_success.labels(name).set(entry["last_success_timestamp"])

    held = gauge(
        "misp2sentinel_indicators",
        "Indicators in the state file after the latest run, by workspace and status.",
        ("workspace", "status"),
    )
    for name, counts in state_counts.items():
        for status, number in counts.items():
            held.labels(name, status).set(number)
    waiting = gauge("misp2sentinel_pending_events", "MISP events waiting to be fetched again after a failure.", ("workspace",))
    for name, number in pending.items():
        waiting.labels(name).set(number)
    return generate_latest(registry)
