"""The command line: commands, options, exit codes and output.

Exit codes: 0 when every record was written or skipped for a counted reason; 1 when any input,
record, page or workspace failed; 2 for bad usage, an invalid configuration or a corrupt or foreign
state file. This is the only module that configures logging.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from misp2sentinel import __version__
from misp2sentinel.errors import Misp2SentinelError, UsageError

log = logging.getLogger("misp2sentinel")


def configure_logging(verbose: int, quiet: bool) -> None:
    if quiet:
        level = logging.ERROR
    elif verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1:
        level = logging.INFO
    else:
        level = logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root = logging.getLogger("misp2sentinel")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # PyMISP logs HTTP errors itself; the bridge reports them, so keep its own lines for -vv.
    logging.getLogger("pymisp").setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL + 1)


def verbosity_options(command):
    command = click.option("-q", "--quiet", is_flag=True, help="Print errors and the summary only.")(command)
    command = click.option(
        "-v", "--verbose", count=True, help="List each skip and failure (-v), and request details (-vv)."
    )(command)
    return command


def reports_errors(command):
    """Turn known errors into a message and an exit code, and unknown ones into one line."""

    @functools.wraps(command)
    def wrapper(*args, verbose: int = 0, quiet: bool = False, **kwargs):
        configure_logging(verbose, quiet)
        try:
            return command(*args, **kwargs)
        except Misp2SentinelError as error:
            click.echo(f"error: {error}", err=True)
            if error.report is not None:
                click.echo(error.report.summary(), err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            from misp2sentinel.export import silence_stdout

            silence_stdout()
            click.echo("error: standard output was closed before the bundle was complete", err=True)
            sys.exit(1)
        except Exception as error:  # the top-level handler: anything else is a bug or an I/O fault
            log.debug("unexpected error", exc_info=True)
            click.echo(f"error: unexpected {type(error).__name__}: {error} (run with -vv for the traceback)", err=True)
            sys.exit(1)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="misp2sentinel")
def cli() -> None:
    """Keep Microsoft Sentinel threat intelligence in step with a MISP instance."""


@cli.command()
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Configuration file (YAML); its mapping settings and sources apply.")
@click.option("-w", "--workspace", help="Export what this configured workspace would receive.")
@click.option("-s", "--source", "sources", multiple=True, type=click.Path(path_type=Path),
              help="MISP JSON file or feed folder; repeat for several. Replaces the configured sources.")
@click.option("-o", "--output", required=True, help="Bundle file to write, or - for standard output.")
@verbosity_options
@reports_errors
def export(config_path: Path | None, workspace: str | None, sources: tuple[Path, ...], output: str) -> None:
    """Write the STIX 2.1 bundle of a selection of MISP data, without contacting Sentinel.

    \b
    Examples:
      misp2sentinel export --source examples/feed --output bundle.json
      misp2sentinel export --source event1.json --source event2.json -o - | jq .
      misp2sentinel export --config /etc/misp2sentinel/config.yaml --workspace soc -o soc.json
    """
    from misp2sentinel.commands.export import run_export

    if config_path is None and not sources:
        raise UsageError("export needs --source PATH or --config FILE", hint="see misp2sentinel export --help")
    if workspace and config_path is None:
        raise UsageError("--workspace needs --config FILE, which defines the workspaces")
    report = run_export(config_path, workspace, list(sources), output)
    sys.exit(report.exit_code)


@cli.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Configuration file (YAML) with the MISP server, workspaces and state file.")
@click.option("-e", "--event", "event_ref", metavar="ID_OR_UUID",
              help="Sync this one event only: no revocation outside it, and the cursor stays where it is.")
@click.option("-w", "--workspace", help="Sync this configured workspace only.")
@click.option("-n", "--dry-run", is_flag=True, help="Send nothing and change nothing; report what would be sent.")
@click.option("-o", "--output", help="With --dry-run: write the objects that would be sent as a bundle (- for stdout).")
@click.option("--max-duration", type=click.IntRange(min=1), metavar="SECONDS",
              help="Stop after this many seconds, once the current batch is recorded, so a long first load "
              "does not run into the next scheduled run; the next run goes on from there.")
@click.option("--full", is_flag=True,
              help="Re-evaluate every event of the selection, ignoring the cursor, and send only what changed; "
              "use it after changing mapping settings or upgrading. With --dry-run it estimates the cost first.")
@click.option("--force", is_flag=True,
              help="Send revocations even when they exceed the guard (lifecycle.guard_share and guard_min).")
@verbosity_options
@reports_errors
def sync(config_path: Path, event_ref: str | None, workspace: str | None, dry_run: bool, output: str | None,
         max_duration: int | None, full: bool, force: bool) -> None:
    """Pull what changed in MISP, send Sentinel what it does not hold yet, and remember it.

    \b
    Examples:
      misp2sentinel sync --config /etc/misp2sentinel/config.yaml
      misp2sentinel sync --config config.yaml --event 1234
      misp2sentinel sync --config config.yaml --dry-run --output pending.json
      misp2sentinel sync --config config.yaml --full --dry-run
    """
    from misp2sentinel.clock import Clock
    from misp2sentinel.config import load_config
    from misp2sentinel.sync import run_sync

    if output and not dry_run:
        raise UsageError("--output needs --dry-run", hint="use export to write a bundle without a sync")
    clock = Clock.from_environment()
    config = load_config(config_path)
    report = run_sync(config, clock, event_ref=event_ref, dry_run=dry_run, output=output, workspace_name=workspace,
                      max_duration=max_duration, full=full, force=force)
    suffix = "; nothing was sent or recorded" if dry_run else ""
    click.echo(report.summary() + suffix, err=True)
    sys.exit(report.exit_code)


@cli.command("revoke-all")
@click.option("-c", "--config", "config_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Configuration file (YAML) that still lists the workspace, with retired: true if it is being off-boarded.")
@click.option("-w", "--workspace", required=True, help="The workspace whose indicators to withdraw.")
@click.option("-n", "--dry-run", is_flag=True, help="Send nothing; report how many indicators would be revoked.")
@click.option("-o", "--output", help="With --dry-run: write the revocations as a bundle (- for stdout).")
@verbosity_options
@reports_errors
def revoke_all(config_path: Path, workspace: str, dry_run: bool, output: str | None) -> None:
    """Revoke every indicator the bridge sent to one workspace, to off-board it.

    \b
    Examples:
      misp2sentinel revoke-all --config config.yaml --workspace old-customer --dry-run
      misp2sentinel revoke-all --config config.yaml --workspace old-customer
    """
    from misp2sentinel.clock import Clock
    from misp2sentinel.config import load_config
    from misp2sentinel.sync.revoke import run_revoke_all

    if output and not dry_run:
        raise UsageError("--output needs --dry-run")
    report = run_revoke_all(load_config(config_path), Clock.from_environment(), workspace, dry_run=dry_run, output=output)
    click.echo(report.summary() + ("; nothing was sent or recorded" if dry_run else ""), err=True)
    sys.exit(report.exit_code)


def main() -> None:
    cli(prog_name="misp2sentinel")
