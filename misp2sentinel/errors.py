"""The exception tree of misp2sentinel.

Every error the command line reports without a traceback derives from `Misp2SentinelError`:

    Misp2SentinelError          exit code 1 unless a subclass says otherwise
    ├── UsageError              exit 2: bad command-line usage
    ├── ConfigError             exit 2: invalid configuration, carries every problem found
    ├── StateError              exit 2: corrupt or foreign state file
    ├── LockHeldError           exit 1: another run holds the state file's lock
    ├── InputError              exit 1: an input file or folder cannot be read
    ├── Interrupted             exit 1: stopped by SIGTERM or SIGINT after recording what was sent
    ├── MispError               exit 1: the MISP server failed or refused a request
    └── SentinelError           exit 1: Sentinel or the identity provider failed
        └── WorkspaceError      a workspace failed as a whole (403, 404, no token)
"""

from __future__ import annotations


class Misp2SentinelError(Exception):
    """Root of the errors shown to the user as a message, without a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # The counts of the run that stopped here, when it had started, so the summary still ends it.
        self.report = None

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  {self.hint}"
        return self.message


class UsageError(Misp2SentinelError):
    exit_code = 2


class ConfigError(Misp2SentinelError):
    """Invalid configuration; `problems` lists each one with its key path."""

    exit_code = 2

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = [f"invalid configuration in {source}:"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        super().__init__("\n".join(lines))


class StateError(Misp2SentinelError):
    exit_code = 2


class LockHeldError(Misp2SentinelError):
    exit_code = 1


class InputError(Misp2SentinelError):
    exit_code = 1


class Interrupted(Misp2SentinelError):
    """The run was stopped by a signal or its time limit after recording what it had sent."""

    exit_code = 1


class MispError(Misp2SentinelError):
    exit_code = 1


class MispAnswerError(MispError):
    """A MISP response that is not its JSON API: a body cut off, or one that JSON cannot decode.
    Asking for fewer events at once may get the others."""


class SentinelError(Misp2SentinelError):
    exit_code = 1


class WorkspaceError(SentinelError):
    """A workspace that cannot take uploads in this run; the other workspaces go on."""
