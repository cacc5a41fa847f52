"""Logging set-up for the command line: levels, text or JSON lines, secret redaction, request counts.

Every module logs to `logging.getLogger(__name__)`; only the CLI calls `configure_logging`. Text
lines read `LEVEL: message`; JSON lines (`--log-format json`) carry `time`, `level`, `logger` and
`message`, and `exc_info` when a traceback is logged. Every line passes `SecretRedactor`, which
replaces the configured secrets and anything that looks like a credential (an Authorization or
X-MISP-AUTH header, a bearer token, a JWT, a `client_secret=` form field) with `[redacted]`.

`RequestCounter` counts Sentinel requests, 429 responses and retries from the Sentinel client's and
the MISP source's own log records, because neither exposes counters.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import Counter
from collections.abc import Iterable
from typing import TextIO

PROJECT_LOGGER = "misp2sentinel"
SENTINEL_CLIENT_LOGGER = "misp2sentinel.sentinel.client"
MISP_SOURCE_LOGGER = "misp2sentinel.sources.misp"
# Libraries whose DEBUG lines carry request details at -vv: PyMISP logs each request's headers,
# and urllib3 each connection and status line.
LIBRARY_LOGGERS = ("pymisp", "urllib3")
LOG_FORMATS = ("text", "json")

REDACTED = "[redacted]"
# A library line longer than this is cut: PyMISP logs whole response bodies at DEBUG.
MAX_LIBRARY_MESSAGE_CHARS = 4000

CREDENTIAL_PATTERNS = (
    # Header or field name, a separator, then the value: "Authorization: Bearer x",
    # "'Authorization': 'key'", "client_secret=x", '"access_token": "x"'. A colon followed by a
    # lower-case word and a space starts prose ("check client_secret: it must be ..."), not a value.
    re.compile(
        r"(?i)\b(authorization|x-misp-auth|client_secret|client_assertion|access_token|refresh_token|api[_-]?key)"
        r"(['\"]?\s*(?:=|:(?!\s+(?!bearer\b|basic\b)[a-z]+\s))\s*['\"]?)(bearer\s+|basic\s+)?[^\s'\",&;}]+"
    ),
    re.compile(r"(?i)\b(bearer)(\s+)()[A-Za-z0-9._~+/-]+=*"),
)
# A JSON Web Token: three base64url parts, the first starting with '{"' encoded.
JWT_PATTERN = re.compile(r"\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*")


class SecretRedactor(logging.Filter):
    """Replace secrets in a record's message and traceback before any handler formats it.

    The message is rendered with its arguments here, so a secret in an argument is caught too.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self.add_secrets(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        # Very short values would redact ordinary words; configured secrets are far longer.
        self.secrets.update(secret for secret in secrets if secret and len(secret) >= 6)

    def redact(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern in CREDENTIAL_PATTERNS:
            text = pattern.sub(lambda match: f"{match.group(1)}{match.group(2)}{REDACTED}", text)
        return JWT_PATTERN.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = f"{record.msg} {record.args}"
        if not record.name.startswith(PROJECT_LOGGER) and len(message) > MAX_LIBRARY_MESSAGE_CHARS:
            message = f"{message[:MAX_LIBRARY_MESSAGE_CHARS]}... ({len(message)} characters)"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class RequestCounter(logging.Handler):
    """Count requests, 429 responses and retries from the log records that report them.

    It reads the Sentinel client's per-request INFO line ("<workspace>: POST <path> -> <status>
    ...") and the WARNING lines that announce a retry ("... retrying in ..."), so it depends on
    those messages' format strings; `tests/test_cli_reporting.py` checks the counts end to end.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.sentinel_requests: Counter = Counter()
        self.sentinel_throttled: Counter = Counter()
        self.sentinel_retries: Counter = Counter()
        self.misp_retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        template = record.msg if isinstance(record.msg, str) else ""
        arguments = record.args if isinstance(record.args, tuple) else ()
        if record.name == SENTINEL_CLIENT_LOGGER and arguments:
            workspace = str(arguments[0])
            if ": POST %s -> " in template:
                self.sentinel_requests[workspace] += 1
                if len(arguments) > 2 and arguments[2] == 429:
                    self.sentinel_throttled[workspace] += 1
            elif "retrying in" in template:
                self.sentinel_retries[workspace] += 1
        elif record.name == MISP_SOURCE_LOGGER and "retrying in" in template:
            self.misp_retries += 1

    def as_dict(self) -> dict:
        return {
            "sentinel": sum(self.sentinel_requests.values()),
            "sentinel_throttled": sum(self.sentinel_throttled.values()),
            "sentinel_retries": sum(self.sentinel_retries.values()),
            "misp_retries": self.misp_retries,
        }

    def for_workspace(self, name: str) -> dict:
        return {
            "sentinel": self.sentinel_requests[name],
            "sentinel_throttled": self.sentinel_throttled[name],
            "sentinel_retries": self.sentinel_retries[name],
        }


class ConsoleHandler(logging.StreamHandler):
    """A stream handler that clears the progress line, if one is shown, before each log line."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.progress = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.progress is not None:
            self.progress.clear()
        super().emit(record)


def console_level(verbose: int, quiet: bool) -> int:
    if quiet:
        return logging.ERROR
    if verbose >= 2:
        return logging.DEBUG
    if verbose == 1:
        return logging.INFO
    return logging.WARNING


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        # Imported only for JSON lines, so that the default start-up stays light.
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )
    return logging.Formatter("%(levelname)s: %(message)s")


class LoggingSetup:
    """The handlers that `configure_logging` installed, for the CLI to reach after a run."""

    def __init__(self, console: ConsoleHandler, redactor: SecretRedactor, counter: RequestCounter | None) -> None:
        self.console = console
        self.redactor = redactor
        self.counter = counter


def configure_logging(verbose: int, quiet: bool, log_format: str = "text", *, count_requests: bool = False) -> LoggingSetup:
    """Send the project's log records to stderr at the level `-v`/`-q` choose, as text or JSON lines.

    With `count_requests` the project logger lets INFO records through to a `RequestCounter`
    whatever the console level, which costs a record per skip; only `sync` asks for it.
    """
    level = console_level(verbose, quiet)
    redactor = SecretRedactor()
    console = ConsoleHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(make_formatter(log_format))
    console.addFilter(redactor)

    project = logging.getLogger(PROJECT_LOGGER)
    project.handlers[:] = [console]
    project.propagate = False
    counter = None
    if count_requests:
        counter = RequestCounter()
        # First, because the console's redactor renders the message and drops the arguments it reads.
        project.handlers.insert(0, counter)
        project.setLevel(min(level, logging.INFO))
    else:
        project.setLevel(level)

    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        if verbose >= 2:
            library.handlers[:] = [console]
            library.setLevel(logging.DEBUG)
            library.propagate = False
        else:
            # PyMISP logs HTTP errors itself; the bridge reports them in its own words.
            library.handlers[:] = []
            library.setLevel(logging.CRITICAL + 1 if name == "pymisp" else logging.WARNING)
            library.propagate = True
    return LoggingSetup(console, redactor, counter)


def config_secrets(config) -> list[str]:
    """Return the secret values of a loaded configuration, for `SecretRedactor`."""
    secrets = []
    if config.misp is not None:
        secrets.append(config.misp.key.get_secret_value())
        secrets.append(_secret_text(getattr(config.misp, "https_proxy", None)))
    for workspace in config.workspaces:
        secrets.append(_secret_text(workspace.client_secret))
        secrets.append(_secret_text(getattr(workspace, "https_proxy", None)))
        certificate = getattr(workspace, "client_certificate", None)
        if certificate is not None:
            secrets.append(_secret_text(getattr(certificate, "private_key", None)))
            secrets.append(_secret_text(getattr(certificate, "passphrase", None)))
    return [secret for secret in secrets if secret]


def _secret_text(value) -> str | None:
    """Return the text of a SecretStr or string setting, or None when it is unset."""
    if value is None:
        return None
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
