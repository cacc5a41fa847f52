"""Writing a STIX 2.1 bundle as a stream, atomically.

The bundle goes to a temporary file beside the output and is renamed over it only when the run
finishes, so a failed run leaves any previous output untouched. Objects are written one by one;
the bundle never sits in memory. The TLP marking definitions are referenced, not included, because
their ids are fixed by the STIX specification. An output that is not a regular file (`-` for
standard output, `/dev/null`, a FIFO) is written directly, since it cannot be replaced by a rename.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import orjson

from misp2sentinel.errors import InputError, UsageError
from misp2sentinel.files import is_special_file
from misp2sentinel.mapping.ids import NAMESPACE
from misp2sentinel.mapping.lifetime import stix_timestamp


def silence_stdout() -> None:
    """Point standard output at /dev/null after its reader went away (e.g. `| head`), so that
    Python's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class BundleWriter:
    """Stream STIX objects into a bundle file; `-` writes to standard output.

    `abandon()` before the end keeps any previous output, as an exception does.
    """

    def __init__(self, output: str, now: datetime) -> None:
        if not output:
            raise UsageError("the output path is empty", hint="give a file name, or - for standard output")
        self.output = output
        self.count = 0
        self._bundle_id = f"bundle--{uuid.uuid5(NAMESPACE, 'bundle|' + stix_timestamp(now))}"
        self._temporary: str | None = None
        self._handle: BinaryIO | None = None
        self._direct = output == "-" or is_special_file(Path(output))
        self._abandoned = False
        if Path(output).is_dir():
            raise UsageError(f"the output path {output} is a folder", hint="give a file name inside it")
        if output != "-" and output.endswith(("/", os.sep)):
            raise UsageError(f"the output path {output} ends with {output[-1]}, so it names a folder",
                             hint="give a file name, such as bundle.json")

    def __enter__(self) -> BundleWriter:
        if self.output == "-":
            self._handle = sys.stdout.buffer
        elif self._direct:
            try:
                self._handle = open(self.output, "wb")
            except OSError as error:
                raise InputError(f"cannot write to {self.output}: {error.strerror}") from None
        else:
            target = Path(self.output)
            try:
                descriptor, self._temporary = tempfile.mkstemp(
                    prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
                )
            except OSError as error:
                raise InputError(
                    f"cannot write the output file {self.output}: {error.strerror}",
                    hint="check that its folder exists and is writable",
                ) from None
            os.fchmod(descriptor, 0o600)
            self._handle = os.fdopen(descriptor, "wb", buffering=1 << 20)
        self._handle.write(b'{"type":"bundle","id":"' + self._bundle_id.encode() + b'"')
        return self

    def write(self, stix: dict) -> None:
        # STIX 2.1 bundles omit "objects" rather than carry an empty list, so it opens with the first.
        self._handle.write(b',"objects":[\n' if self.count == 0 else b",\n")
        self._handle.write(orjson.dumps(stix))
        self.count += 1

    def abandon(self) -> None:
        """Keep any previous output: the temporary file is removed instead of renamed."""
        self._abandoned = True

    def _close_text(self) -> bytes:
        return b"\n]}\n" if self.count else b"}\n"

    def __exit__(self, exc_type, exc, traceback) -> None:
        if self._handle is None:
            return
        failed = exc_type is not None or self._abandoned
        if self._direct:
            try:
                if not failed:
                    self._handle.write(self._close_text())
                self._handle.flush()
                if self.output != "-":
                    self._handle.close()
            except BrokenPipeError:
                silence_stdout()
                if not failed:
                    raise
            return
        try:
            if not failed:
                self._handle.write(self._close_text())
                self._handle.flush()
                os.fsync(self._handle.fileno())
            self._handle.close()
            if not failed:
                os.replace(self._temporary, self.output)
                self._temporary = None
        finally:
            if self._temporary is not None:
                try:
                    os.unlink(self._temporary)
                except OSError:
                    pass
