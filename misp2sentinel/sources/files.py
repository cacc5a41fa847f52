"""Read MISP events from local files: MISP feed folders and MISP JSON files."""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import orjson

from misp2sentinel.report import RunReport
from misp2sentinel.sources import incremental
from misp2sentinel.sources.normalize import events_from_document

log = logging.getLogger(__name__)

# A feed manifest's keys: event uuids, which name the event files.
EVENT_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
MISSING = "missing (or a link to nothing)"

# Files larger than this are read incrementally when they contain one {"Event": ...}. Reading a
# file whole keeps its bytes, the parsed JSON and the normalised event in memory together, and
# peaked at about seven times the file size on synthetic events. A 64 MiB file then peaks near
# 0.5 GB. The incremental path costs more CPU time (figures in docs/operations.md).
LARGE_FILE_BYTES = 64 * 1024 * 1024


def read_sources(paths: list[Path], report: RunReport) -> Iterator[dict]:
    """Yield the normalised events of each path in order; count unreadable inputs as failed.

    A folder with a `manifest.json` is read as a MISP feed (`<uuid>.json` per manifest entry);
    any other folder is read as its `*.json` files in name order.
    """
    for path in paths:
        if path.is_dir():
            yield from _read_folder(path, report)
        elif path.exists():
            yield from _read_file(path, report)
        else:
            report.input_failed(str(path), "not found")


def _read_folder(folder: Path, report: RunReport) -> Iterator[dict]:
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        entries = sorted(folder.glob("*.json"))
        if not entries:
            report.input_failed(str(folder), "the folder has no manifest.json and no *.json files")
        for entry in entries:
            size, problem = _regular_file_size(entry)
            if problem is None:
                yield from _read_file(entry, report, size)
            else:
                report.input_failed(str(entry), problem)
        return

    try:
        manifest = orjson.loads(manifest_path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as error:
        report.input_failed(str(manifest_path), f"cannot read the feed manifest: {error}")
        return
    if not isinstance(manifest, dict):
        report.input_failed(str(manifest_path), "the feed manifest is not a JSON object keyed by event uuid")
        return
    for event_uuid in manifest:
        if not EVENT_UUID.fullmatch(event_uuid):
            # A key is joined to the folder, so "../x" or "/x" would read a file outside the feed.
            key_text = event_uuid if len(event_uuid) <= 80 else event_uuid[:79] + "…"
            report.input_failed(str(manifest_path), f"lists {key_text!r}, which is not an event uuid, so it is skipped")
            continue
        event_path = folder / f"{event_uuid}.json"
        size, problem = _regular_file_size(event_path)
        if problem == MISSING:
            report.input_failed(str(event_path), "listed in manifest.json but missing from the feed folder")
        elif problem is not None:
            report.input_failed(str(event_path), f"listed in manifest.json but {problem}")
        else:
            yield from _read_file(event_path, report, size)


def _regular_file_size(path: Path) -> tuple[int, str | None]:
    """Return (size, None) for a regular file, following links, else (0, the problem)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return 0, MISSING
    except OSError as error:
        return 0, f"cannot read the file: {error.strerror}"
    if not stat.S_ISREG(status.st_mode):
        return 0, "not a regular file (a folder, a pipe or a device)"
    return status.st_size, None


def _read_file(path: Path, report: RunReport, size: int | None = None) -> Iterator[dict]:
    """Yield the events of one file; `size`, when the caller has it, saves a second stat."""
    if size is None:
        # Anything but a readable regular file counts as small: the whole-file path says what is wrong.
        size = _regular_file_size(path)[0]
    if incremental.available() and size > LARGE_FILE_BYTES:
        try:
            event = incremental.read_large_event(path, report)
        except incremental.NotSingleEvent as reason:
            log.debug("reading %s whole: %s", path, reason)
        except incremental.InvalidJson as error:
            report.input_failed(str(path), str(error))
            return
        except OSError as error:
            report.input_failed(str(path), f"cannot read the file: {error.strerror}")
            return
        else:
            report.input_read(str(path))
            yield event
            return
    try:
        data = path.read_bytes()
    except OSError as error:
        report.input_failed(str(path), f"cannot read the file: {error.strerror}")
        return
    if not data.strip():
        report.input_failed(str(path), "the file is empty")
        return
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        report.input_failed(str(path), f"not valid JSON: {error}")
        return
    del data
    try:
        events = events_from_document(document, reuse=True)
    except ValueError as error:
        report.input_failed(str(path), f"not MISP JSON: {error}")
        return
    # The raw document is not needed once normalised; freeing it before mapping lowers the peak.
    del document
    report.input_read(str(path))
    log.debug("read %d event(s) from %s", len(events), path)
    yield from events

