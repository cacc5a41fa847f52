"""Run reports and metrics files: written whole with private permissions, and never replacing a pipe
or a device such as /dev/null that a user points them at."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from misp2sentinel.commands.status import read_previous_report
from misp2sentinel.files import is_special_file, write_private_file


def test_regular_file_written_private(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old", encoding="utf-8")
    os.chmod(path, 0o644)

    write_private_file(path, b"new")

    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [entry.name for entry in tmp_path.iterdir()] == ["report.json"]


def test_pipe_written_in_place(tmp_path: Path) -> None:
    """Renaming a temporary file over a pipe (or /dev/null) would replace it with a regular file."""
    pipe = tmp_path / "report.fifo"
    os.mkfifo(pipe)
    # A reader opened first lets the writer open the pipe without blocking.
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_private_file(pipe, b"report")
        received = os.read(reader, 100)
    finally:
        os.close(reader)

    assert received == b"report"
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert is_special_file(pipe)


def test_special_file_check(tmp_path: Path) -> None:
    assert not is_special_file(tmp_path)
    assert not is_special_file(tmp_path / "absent")
    regular = tmp_path / "regular"
    regular.write_bytes(b"")
    assert not is_special_file(regular)


def test_previous_report_from_pipe_not_read(tmp_path: Path) -> None:
    """Reading a pipe with no writer would block sync and status before they start."""
    pipe = tmp_path / "last-run.fifo"
    os.mkfifo(pipe)

    assert read_previous_report(pipe) is None
