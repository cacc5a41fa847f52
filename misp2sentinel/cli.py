"""The command line: commands, options, exit codes and output.

Exit codes: 0 when every record was written or skipped for a counted reason; 1 when any input,
record, page or workspace failed (for `check`, any check; for `status`, the last run); 2 for bad
usage, an invalid configuration or a corrupt or foreign state file. This is the only module that
configures logging. Standard output carries only data (`--json`, or a bundle with `-o -`); every
message, the progress line and the summary go to standard error.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from misp2sentinel import __version__
from misp2sentinel.errors import Misp2SentinelError, UsageError
from misp2sentinel.logs import LOG_FORMATS, LoggingSetup, config_secrets, configure_logging

log = logging.getLogger("misp2sentinel")

EXIT_CODES_HELP = """\b
Exit codes:
  0  every record was written or skipped for a counted reason
  1  an input, record, page or workspace failed (check: a check failed;
     status: the last run did not succeed)
  2  bad usage, an invalid configuration, or a corrupt or foreign state file"""


def validate_option(command):
    """Add --validate, which export and sync take."""
    return click.option(
        "--validate", is_flag=True,
        help="Check every STIX pattern again with the STIX pattern grammar before it is written or sent, and "
        "skip an invalid one as invalid_pattern. Patterns are valid by construction; this costs about "
        "300 microseconds per indicator.",
    )(command)


def common_options(command):
    """Add -v, -q and --log-format, which every command takes."""
    command = click.option(
        "--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
        envvar="MISP2SENTINEL_LOG_FORMAT", show_envvar=True,
        help="Write log lines to stderr as text, or as JSON lines with time, level, logger and message.",
    )(command)
    command = click.option("-q", "--quiet", is_flag=True, help="Print errors and the summary only; no progress line.")(command)
    command = click.option(
        "-v", "--verbose", count=True,
        help="Log each skip, failure and request (-v), and request details with secrets redacted (-vv).",
    )(command)
    return command


def json_option(what: str):
    return click.option("--json", "json_output", is_flag=True, help=f"Print {what} as one JSON document on stdout.")


def config_option(required: bool, help_text: str):
    return click.option("-c", "--config", "config_path", required=required,
                        type=click.Path(path_type=Path, dir_okay=False), help=help_text)


def reports_errors(command_name: str, *, count_requests: bool = False):
    """Configure logging, then turn known errors into a message and an exit code and unknown ones
    into one line; with --json, also print an error document on stdout."""

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, verbose: int = 0, quiet: bool = False, log_format: str = "text", **kwargs):
            setup = configure_logging(verbose, quiet, log_format, count_requests=count_requests)
            click.get_current_context().obj = setup
            json_output = kwargs.get("json_output", False)
            try:
                return command(*args, **kwargs)
            except Misp2SentinelError as error:
                _echo_error(setup, f"error: {error}")
                if error.report is not None:
                    click.echo(setup.redactor.redact(error.report.summary()), err=True)
                if json_output:
                    _print_error_document(setup, command_name, error, getattr(error, "run_document", None), error.exit_code)
                sys.exit(error.exit_code)
            except KeyboardInterrupt:
                click.echo("interrupted", err=True)
                sys.exit(130)
            except BrokenPipeError:
                from misp2sentinel.export import silence_stdout

                silence_stdout()
                click.echo("error: standard output was closed before the output was complete", err=True)
                sys.exit(1)
            except Exception as error:  # the top-level handler: anything else is a bug or an I/O fault
                log.debug("unexpected error", exc_info=True)
                _echo_error(setup, f"error: unexpected {type(error).__name__}: {error} (run with -vv for the traceback)")
                if json_output:
                    _print_error_document(setup, command_name, error, None, 1)
                sys.exit(1)

        return wrapper

    return decorate


def _echo_error(setup: LoggingSetup, text: str) -> None:
    if setup.console.progress is not None:
        setup.console.progress.clear()
    click.echo(setup.redactor.redact(text), err=True)


def _print_error_document(setup: LoggingSetup, command: str, error: BaseException, document: dict | None, exit_code: int) -> None:
    from misp2sentinel.commands.run_report import error_document

    if document is None:
        document = error_document(command, error, exit_code)
    _print_json(setup, document)


def _print_json(setup: LoggingSetup, document: dict) -> None:
    import orjson

    text = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode("utf-8")
    click.echo(setup.redactor.redact(text))


def _load_config(setup: LoggingSetup, config_path: Path):
    """Load the configuration and register its secrets with the log redactor."""
    from misp2sentinel.config import load_config

    config = load_config(config_path)
    setup.redactor.add_secrets(config_secrets(config))
    return config


class _ProgressDisplay:
    """The progress line of a run, when stderr is a terminal and -q is not given."""

    def __init__(self, setup: LoggingSetup, quiet: bool) -> None:
        from misp2sentinel.progress import Progress, wants_progress

        self.setup = setup
        self.progress = Progress(sys.stderr) if wants_progress(sys.stderr, quiet) else None

    def __enter__(self) -> _ProgressDisplay:
        if self.progress is not None:
            from misp2sentinel.report import listen

            self.setup.console.progress = self.progress
            self._listening = listen(self.progress.update)
            self._listening.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.progress is not None:
            self._listening.__exit__(*exc_info)
            self.progress.clear()
            self.setup.console.progress = None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="misp2sentinel")
def cli() -> None:
    """Keep Microsoft Sentinel threat intelligence in step with a MISP instance.

    \b
    Examples:
      misp2sentinel check --config /etc/misp2sentinel/config.yaml
      misp2sentinel sync --config /etc/misp2sentinel/config.yaml
      misp2sentinel status --config /etc/misp2sentinel/config.yaml
    """


@cli.command(epilog=EXIT_CODES_HELP)
@config_option(False, "Configuration file (YAML); its mapping settings and sources apply.")
@click.option("-w", "--workspace", help="Export what this configured workspace would receive.")
@click.option("-s", "--source", "sources", multiple=True, type=click.Path(path_type=Path),
              help="MISP JSON file or feed folder; repeat for several. Replaces the configured sources.")
@click.option("-o", "--output", required=True, help="Bundle file to write, or - for standard output.")
@validate_option
@json_option("the run summary (counts, times, exit code)")
@common_options
@reports_errors("export")
def export(config_path: Path | None, workspace: str | None, sources: tuple[Path, ...], output: str, validate: bool,
           json_output: bool) -> None:
    """Write the STIX 2.1 bundle of a selection of MISP data, without contacting Sentinel.

    \b
    Examples:
      misp2sentinel export --source examples/feed --output bundle.json
      misp2sentinel export -s event1.json -s event2.json -o - | jq .
      misp2sentinel export --config /etc/misp2sentinel/config.yaml --workspace soc -o soc.json
      misp2sentinel export -c config.yaml -w soc -o soc.json --json -q > summary.json
      misp2sentinel export -s examples/feed -o bundle.json -v --log-format json
      misp2sentinel export -s big-event.json -o bundle.json --validate
    """
    from misp2sentinel.clock import Clock
    from misp2sentinel.commands.export import nothing_read, run_export
    from misp2sentinel.commands.run_report import RunTimer, base_document

    if config_path is None and not sources:
        raise UsageError("export needs --source PATH or --config FILE", hint="see misp2sentinel export --help")
    if workspace and config_path is None:
        raise UsageError("--workspace needs --config FILE, which defines the workspaces")
    if json_output and output == "-":
        raise UsageError("--json and --output - both need standard output", hint="write the bundle to a file with --output FILE")
    setup = click.get_current_context().obj
    timer = RunTimer(Clock.from_environment().now())
    with _ProgressDisplay(setup, setup.console.level >= logging.ERROR):
        report = run_export(config_path, workspace, list(sources), output, validate=validate)
    target = f"{output} left as it was" if nothing_read(report) and output != "-" else output
    click.echo(setup.redactor.redact(f"{report.summary()} -> {target}"), err=True)
    if json_output:
        document = base_document(report, timer)
        document["output"] = output
        _print_json(setup, document)
    sys.exit(report.exit_code)


@cli.command(epilog=EXIT_CODES_HELP)
@config_option(True, "Configuration file (YAML) with the MISP server, workspaces and state file.")
@click.option("-e", "--event", "event_ref", metavar="ID_OR_UUID",
              help="Sync this one event only: no revocation outside it, and the cursor stays where it is.")
@click.option("-w", "--workspace", help="Sync this configured workspace only.")
@click.option("-n", "--dry-run", is_flag=True, help="Send nothing and change nothing; report what would be sent.")
@click.option("-o", "--output", help="With --dry-run: write the objects that would be sent as a bundle (- for stdout).")
@click.option("--max-duration", type=click.IntRange(min=1), metavar="SECONDS",
              help="Stop planning events after this many seconds, so a long first load does not run into the "
              "next scheduled run; the next run goes on from there. The limit is checked after each event, and "
              "batches already started still finish, which can take a rate-limit window more.")
@click.option("--full", is_flag=True,
              help="Re-evaluate every event of the selection, ignoring the cursor, and send only what changed; "
              "use it after changing mapping settings or upgrading. With --dry-run it estimates the cost first.")
@click.option("--force", is_flag=True,
              help="Send revocations even when they exceed the guard (lifecycle.guard_share and guard_min).")
@click.option("--retry-rejected", is_flag=True,
              help="Send again records Sentinel rejected three times with the same validation message; "
              "without it they wait until their content changes.")
@validate_option
@json_option("the run report (counts, requests, retries, per-workspace outcome)")
@common_options
@reports_errors("sync", count_requests=True)
def sync(config_path: Path, event_ref: str | None, workspace: str | None, dry_run: bool, output: str | None,
         max_duration: int | None, full: bool, force: bool, retry_rejected: bool, validate: bool,
         json_output: bool) -> None:
    """Pull what changed in MISP, send Sentinel what it does not hold yet, and remember it.

    Every run except a dry run writes its JSON report (reporting.report_path, by default
    last-run.json beside the state file) and, when reporting.metrics_path is set, a Prometheus
    textfile-collector file.

    \b
    Examples:
      misp2sentinel sync --config /etc/misp2sentinel/config.yaml
      misp2sentinel sync -c config.yaml --event 1234
      misp2sentinel sync -c config.yaml --event 5a1e2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b --workspace soc
      misp2sentinel sync -c config.yaml --dry-run --output pending.json -v
      misp2sentinel sync -c config.yaml --full --dry-run
      misp2sentinel sync -c config.yaml --force
      misp2sentinel sync -c config.yaml --retry-rejected
      misp2sentinel sync -c config.yaml --dry-run --validate
      misp2sentinel sync -c config.yaml --max-duration 3000 --json -q | jq .workspaces
      misp2sentinel sync -c config.yaml -vv --log-format json 2> sync.log
    """
    from misp2sentinel.clock import Clock
    from misp2sentinel.commands.sync import SyncOptions, run_sync_command, warn_about_settings

    if output and not dry_run:
        raise UsageError("--output needs --dry-run", hint="use export to write a bundle without a sync")
    if json_output and output == "-":
        raise UsageError("--json and --output - both need standard output", hint="write the bundle to a file with --output FILE")
    setup: LoggingSetup = click.get_current_context().obj
    clock = Clock.from_environment()
    config = _load_config(setup, config_path)
    warn_about_settings(config)
    options = SyncOptions(event_ref=event_ref, dry_run=dry_run, output=output, workspace_name=workspace,
                          max_duration=max_duration, full=full, force=force, retry_rejected=retry_rejected,
                          validate=validate)
    with _ProgressDisplay(setup, setup.console.level >= logging.ERROR):
        report, document = run_sync_command(config, clock, options, setup.counter)
    suffix = "; nothing was sent or recorded" if dry_run else ""
    click.echo(setup.redactor.redact(report.summary()) + suffix, err=True)
    if json_output:
        _print_json(setup, document)
    sys.exit(report.exit_code)


@cli.command("revoke-all", epilog=EXIT_CODES_HELP)
@config_option(True, "Configuration file (YAML) that still lists the workspace, with retired: true if it is being off-boarded.")
@click.option("-w", "--workspace", required=True, help="The workspace whose indicators to withdraw.")
@click.option("-n", "--dry-run", is_flag=True, help="Send nothing; report how many indicators would be revoked.")
@click.option("-o", "--output", help="With --dry-run: write the revocations as a bundle (- for stdout).")
@json_option("the run summary (counts, times, exit code)")
@common_options
@reports_errors("revoke-all")
def revoke_all(config_path: Path, workspace: str, dry_run: bool, output: str | None, json_output: bool) -> None:
    """Revoke every indicator the bridge sent to one workspace, to off-board it.

    \b
    Examples:
      misp2sentinel revoke-all --config config.yaml --workspace old-customer --dry-run
      misp2sentinel revoke-all -c config.yaml -w old-customer -n --output revocations.json
      misp2sentinel revoke-all -c config.yaml -w old-customer --json -q > revoked.json
      misp2sentinel revoke-all -c config.yaml -w old-customer -v --log-format json
    """
    from misp2sentinel.clock import Clock
    from misp2sentinel.commands.run_report import RunTimer, base_document
    from misp2sentinel.sync.revoke import run_revoke_all

    if output and not dry_run:
        raise UsageError("--output needs --dry-run")
    if json_output and output == "-":
        raise UsageError("--json and --output - both need standard output", hint="write the bundle to a file with --output FILE")
    setup: LoggingSetup = click.get_current_context().obj
    clock = Clock.from_environment()
    config = _load_config(setup, config_path)
    timer = RunTimer(clock.now(), clock.monotonic)
    with _ProgressDisplay(setup, setup.console.level >= logging.ERROR):
        report = run_revoke_all(config, clock, workspace, dry_run=dry_run, output=output)
    click.echo(setup.redactor.redact(report.summary()) + ("; nothing was sent or recorded" if dry_run else ""), err=True)
    if json_output:
        _print_json(setup, base_document(report, timer))
    sys.exit(report.exit_code)


@cli.command(epilog=EXIT_CODES_HELP)
@config_option(True, "Configuration file (YAML) whose state file and workspaces are described.")
@json_option("the status")
@common_options
@reports_errors("status")
def status(config_path: Path, json_output: bool) -> None:
    """Show, per workspace, what the state file holds and how the last runs went.

    For each workspace: live, revoked, failed and rejected indicators, events pending a retry, the
    last run's time, outcome and duration, the last success, the cursor, and the oldest failure
    with its message. Workspaces that are in the state but no longer configured are listed too.
    It reads the state without taking the lock, so it can run while a sync runs.

    \b
    Examples:
      misp2sentinel status --config /etc/misp2sentinel/config.yaml
      misp2sentinel status -c config.yaml --json | jq '.workspaces[] | {name, indicators}'
      misp2sentinel status -c config.yaml -q -v --log-format json
    """
    from misp2sentinel.commands.status import collect_status, render_status, status_exit_code
    from misp2sentinel.config import warn_if_readable_by_others

    setup: LoggingSetup = click.get_current_context().obj
    config = _load_config(setup, config_path)
    if config.state is None:
        from misp2sentinel.errors import ConfigError

        raise ConfigError(config.source_name, ["state.path: required for status (the state file to describe)"])
    warn_if_readable_by_others(config.state.path, "state file")
    document = collect_status(config)
    document["exit_code"] = status_exit_code(document)
    if json_output:
        _print_json(setup, document)
    else:
        click.echo(setup.redactor.redact(render_status(document)))
    sys.exit(document["exit_code"])


@cli.command(epilog=EXIT_CODES_HELP)
@config_option(True, "Configuration file (YAML) whose MISP server, identities and workspaces are checked.")
@json_option("the findings")
@common_options
@reports_errors("check")
def check(config_path: Path, json_output: bool) -> None:
    """Check every connection a sync needs, and say what works and how to fix what does not.

    It reads MISP's version and the API user's role (can it see deleted attributes?) and compares
    MISP's clock with this host's; gets an access token for each identity; and probes each
    workspace with an upload of an empty object list, which sends no indicator. A rejected empty
    list proves the token, but Sentinel may check the role and the workspace only for a real upload,
    so those stay "not confirmed" unless Sentinel answers 403 (missing role) or 404 (unknown
    workspace). The state file is only read.

    \b
    Examples:
      misp2sentinel check --config /etc/misp2sentinel/config.yaml
      misp2sentinel check -c config.yaml --json | jq '.findings[] | select(.status == "failed")'
      misp2sentinel check -c config.yaml -v --log-format json
      misp2sentinel check -c config.yaml -q
    """
    from misp2sentinel.commands.check import check_exit_code, findings_document, render_findings, run_checks

    setup: LoggingSetup = click.get_current_context().obj
    config = _load_config(setup, config_path)
    findings = run_checks(config)
    if json_output:
        _print_json(setup, findings_document(findings))
    else:
        click.echo(setup.redactor.redact(render_findings(findings)))
    sys.exit(check_exit_code(findings))


def main() -> None:
    from misp2sentinel.gc_pacing import paced_collection

    with paced_collection():
        cli(prog_name="misp2sentinel")
