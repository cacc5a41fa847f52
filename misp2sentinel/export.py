"""Writing a STIX 2.1 bundle as a stream, atomically.

The bundle goes to a temporary file beside the output and is renamed over it only when the run
finishes, so a failed run leaves any previous output untouched. Objects are written one by one;
the bundle never sits in memory. The TLP marking definitions are referenced, not included, because
their ids are fixed by the STIX specification.
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

from misp2sentinel.errors import InputError
from misp2sentinel.mapping.ids import NAMESPACE
from misp2sentinel.mapping.lifetime import stix_timestamp


class BundleWriter:
    """Stream STIX objects into a bundle file; `-` writes to standard output."""

    def __init__(self, output: str, now: datetime) -> None:
        self.output = output
        self.count = 0
        self._bundle_id = f"bundle--{uuid.uuid5(NAMESPACE, 'bundle|' + stix_timestamp(now))}"
        self._temporary: str | None = None
        self._handle: BinaryIO | None = None

    def __enter__(self) -> BundleWriter:
        if self.output == "-":
            self._handle = sys.stdout.buffer
        else:
            target = Path(self.output)
            folder = target.parent if str(target.parent) else Path(".")
            try:
                descriptor, self._temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
            except OSError as error:
                raise InputError(
                    f"cannot write the output file {self.output}: {error.strerror}",
                    hint="check that its folder exists and is writable",
                ) from None
            os.fchmod(descriptor, 0o600)
            self._handle = os.fdopen(descriptor, "wb", buffering=1 << 20)
        self._handle.write(b'{"type":"bundle","id":"' + self._bundle_id.encode() + b'","objects":[')
        return self

    def write(self, stix: dict) -> None:
        if self.count:
            self._handle.write(b",\n")
        else:
            self._handle.write(b"\n")
        self._handle.write(orjson.dumps(stix))
        self.count += 1

    def __exit__(self, exc_type, exc, traceback) -> None:
        if self._handle is None:
            return
        if self.output == "-":
            self._handle.write(b"\n]}\n")
            self._handle.flush()
            return
        try:
            if exc_type is None:
                self._handle.write(b"\n]}\n")
                self._handle.flush()
                os.fsync(self._handle.fileno())
            self._handle.close()
            if exc_type is None:
                os.replace(self._temporary, self.output)
                self._temporary = None
        finally:
            if self._temporary is not None:
                try:
                    os.unlink(self._temporary)
                except OSError:
                    pass
