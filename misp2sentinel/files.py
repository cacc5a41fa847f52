"""Writing small private files (run reports, metrics) so that a reader never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` atomically: into a temporary file of the same folder, then renamed.

    The temporary name starts with a dot and ends in `.tmp`, so node_exporter's textfile collector,
    which reads only `*.prom`, never reads it. The file gets `mode` whatever the umask; an existing
    file with looser permissions is replaced, not reused. Raises OSError.
    """
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
