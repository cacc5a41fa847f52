"""Writing small private files (run reports, metrics) so that a reader never sees half of one."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def is_special_file(path: Path) -> bool:
    """Tell whether `path` is a device, a pipe or a socket (such as /dev/null): not a regular file or folder."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def write_private_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` atomically: into a temporary file of the same folder, then renamed.

    The temporary name starts with a dot and ends in `.tmp`, so node_exporter's textfile collector,
    which reads only `*.prom`, never reads it. The file gets `mode` whatever the umask; an existing
    file with looser permissions is replaced, not reused. A device or a pipe, such as /dev/null, is
    written in place instead, because renaming over it would replace it. Raises OSError.
    """
    path = Path(path)
    if is_special_file(path):
        with open(path, "wb") as handle:
            handle.write(data)
        return
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
