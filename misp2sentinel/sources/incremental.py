"""Read a large single-event MISP JSON file incrementally, one attribute or object at a time.

A file of one `{"Event": {...}}` (the shape of a MISP export or feed file) is read in passes
with ijson:

1. The header pass reads the whole file as parse events. It keeps every member of `Event` except
   the `Attribute` and `Object` arrays, counts the items of those two arrays, and checks that the
   file is valid JSON to its last byte. MISP writes `Tag`, `Galaxy`, `Orgc` and the other
   event-level keys after the two arrays, so the header is known only at the end of this pass.
   Because this pass validates the file, a broken file fails before any of its records are
   written.
2. The event's `attributes` and `objects` are `StreamedItems`: each iteration opens the file
   again, lets ijson build one array item at a time, and normalises it. The mapper iterates each
   of them once, and a tag selection iterates them once more.

A file of any other shape, with an `Attribute` or `Object` that is not an array, or with an
integer that the C backend cannot hold in 64 bits, is read whole by the caller instead.
A file that changes between passes stops the run with `InputChangedError`, after the input is
counted as failed: going on with part of an event would make a sync revoke the indicators of the
attributes it did not read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, NoReturn

from misp2sentinel.errors import Misp2SentinelError
from misp2sentinel.report import RunReport
from misp2sentinel.sources.normalize import normalize_attribute, normalize_event, normalize_object

try:
    import ijson
except ImportError:  # the caller reads every file whole
    ijson = None

log = logging.getLogger(__name__)

# ijson's default backend: the IJSON_BACKEND environment variable if set, else the fastest one
# installed (yajl2_c from ijson's wheels, down to the pure Python parser). Tests replace it.
BACKEND = ijson.get_backend(ijson.backend) if ijson is not None else None

# Bytes that ijson reads per call. A parse error lies in the last block read.
BLOCK_BYTES = 64 * 1024
# orjson 3, which reads the smaller files, rejects documents nested deeper than this.
MAX_DEPTH = 1024
# The depth of the values inside `Event`: the top-level map is 1 and the event map is 2.
EVENT_DEPTH = 2
TRUNCATED = "not valid JSON: the file ends inside the JSON document"

ARRAY_KEYS = ("Attribute", "Object")
# Each streamed item is a fresh dict, so it becomes the normalised one, as in a file read whole.
NORMALIZERS: dict[str, Callable[[dict], dict]] = {
    "Attribute": partial(normalize_attribute, reuse=True), "Object": partial(normalize_object, reuse=True),
}


class NotSingleEvent(Exception):
    """The file is not one `{"Event": {...}}` with array `Attribute` and `Object`, so it is read whole."""


class InvalidJson(Exception):
    """The file is not valid JSON. The message is the reason to report."""


class InputChangedError(Misp2SentinelError):
    """A large file changed or became unreadable after its header pass, in the middle of its event."""


def available() -> bool:
    return BACKEND is not None


def read_large_event(path: Path, report: RunReport) -> dict:
    """Validate a single-event file and return its normalised event, with streamed attributes and objects.

    Raises NotSingleEvent when the file has another shape, InvalidJson when it is not valid JSON,
    and OSError when it cannot be read.
    """
    with open(path, "rb") as handle:
        identity = _file_identity(handle)
        header, counts = _read_header(handle)
    log.debug("read the header of %s with ijson backend %s: %d attribute(s), %d object(s)",
              path, BACKEND.__name__, counts["Attribute"], counts["Object"])
    source = EventFile(path, identity, report)
    event = normalize_event(header)
    event["attributes"] = StreamedItems(source, "Attribute", counts["Attribute"])
    event["objects"] = StreamedItems(source, "Object", counts["Object"])
    return event


def _file_identity(handle) -> tuple[int, int, int, int]:
    status = os.fstat(handle.fileno())
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


# The header pass


def _read_header(handle) -> tuple[dict, dict[str, int]]:
    """Return the members of `Event` other than the two arrays, and the item count of each array."""
    # NOTE: yajl2_c reads a lone surrogate escape ("\\ud800") as "?", where orjson rejects the file.
    events = BACKEND.basic_parse(handle, buf_size=BLOCK_BYTES, use_float=True)
    try:
        try:
            first = next(events, None)
        except (ijson.JSONError, UnicodeDecodeError):
            # An empty file, a byte order mark and the like: the whole-file path names them.
            raise NotSingleEvent("the file does not start with a JSON value") from None
        if first != ("start_map", None) or next(events) != ("map_key", "Event") or next(events) != ("start_map", None):
            raise NotSingleEvent("the document is not {\"Event\": {...}}")
        header, counts = _read_event_members(events)
        if next(events) != ("end_map", None):
            # The whole-file path decides what another top-level key means.
            raise NotSingleEvent("the document has keys other than \"Event\"")
        # Draining the parser makes it reject any content after the document.
        for _ in events:
            pass
    except (ijson.JSONError, UnicodeDecodeError) as error:
        if "integer overflow" in str(error):
            # yajl stores integers in 64 bits, while orjson reads larger ones as floats.
            raise NotSingleEvent("an integer does not fit in 64 bits") from None
        raise InvalidJson(_json_error_reason(error, handle.tell())) from None
    except StopIteration:
        # The backend raises IncompleteJSONError for a document that ends early, so this is a safeguard.
        raise InvalidJson(TRUNCATED) from None
    return header, counts


def _read_event_members(events: Iterator[tuple[str, Any]]) -> tuple[dict, dict[str, int]]:
    """Read the members of the `Event` map up to its end: build the header values, count the array items."""
    header: dict = {}
    counts = {"Attribute": 0, "Object": 0}
    seen: set[str] = set()
    for kind, key in events:
        if kind == "end_map":
            return header, counts
        if key in ARRAY_KEYS:
            if key in seen:
                # orjson keeps the last of repeated keys, while a stream would read both arrays.
                raise NotSingleEvent(f"the event repeats the key {key!r}")
            seen.add(key)
            counts[key] = _count_items(events)
            continue
        if key.startswith(("Attribute.", "Object.")):
            # ijson joins the path to a value with dots, so this key would look like an array item.
            raise NotSingleEvent(f"the event has the key {key!r}")
        header[key] = _build_value(events)
    raise InvalidJson(TRUNCATED)


def _count_items(events: Iterator[tuple[str, Any]]) -> int:
    """Skip the value of `Attribute` or `Object` and return its item count.

    null or a scalar counts 0, as the whole-file path reads them. Raises NotSingleEvent for a map (MISP's dict keyed by index, or one item), which only the
    whole-file path reads.
    """
    kind, _ = next(events)
    if kind == "start_map":
        raise NotSingleEvent("an Attribute or Object member is a JSON object, not an array")
    if kind != "start_array":
        return 0
    count = 0
    depth = 1
    for kind, _ in events:
        if kind == "start_map" or kind == "start_array":
            if depth == 1:
                count += 1
            depth += 1
            if EVENT_DEPTH + depth > MAX_DEPTH:
                raise InvalidJson(f"not valid JSON: nested deeper than {MAX_DEPTH} levels")
        elif kind == "end_map" or kind == "end_array":
            depth -= 1
            if depth == 0:
                return count
        elif kind != "map_key" and depth == 1:
            count += 1
    raise InvalidJson(TRUNCATED)


def _build_value(events: Iterator[tuple[str, Any]]) -> Any:
    """Build the next value of the event stream: a scalar, or a map or array up to its end."""
    builder = ijson.ObjectBuilder()
    depth = 0
    for kind, value in events:
        builder.event(kind, value)
        if kind == "start_map" or kind == "start_array":
            depth += 1
            if EVENT_DEPTH + depth > MAX_DEPTH:
                raise InvalidJson(f"not valid JSON: nested deeper than {MAX_DEPTH} levels")
        elif kind == "end_map" or kind == "end_array":
            depth -= 1
        if depth == 0:
            return builder.value
    raise InvalidJson(TRUNCATED)


def _json_error_reason(error: Exception, end: int) -> str:
    """Return a one-line reason for an ijson error, with the block of bytes that contains it.

    yajl's message is the error on its first line, then the text around it and a caret line.
    """
    message = error.args[0] if error.args else str(error)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    lines = [line.strip() for line in str(message).splitlines()]
    reason = lines[0].rstrip(".") if lines else type(error).__name__
    if "premature EOF" in reason or reason == "Incomplete JSON content":
        return "not valid JSON: the file ends inside the JSON document"
    if len(lines) > 1 and lines[1]:
        reason += f", near {lines[1]!r}"
    start = max(0, end - BLOCK_BYTES)
    return f"not valid JSON: {reason} (between bytes {start} and {end})"


# The streamed passes


class EventFile:
    """A validated single-event file that the streamed attributes and objects read again."""

    def __init__(self, path: Path, identity: tuple[int, int, int, int], report: RunReport) -> None:
        self.path = path
        self.identity = identity
        self.report = report

    def items(self, key: str, count: int) -> Iterator[dict]:
        """Yield the normalised items of `Event.<key>`, stopping after the `count` items that the header pass found."""
        if count == 0:
            return
        normalize = NORMALIZERS[key]
        try:
            handle = open(self.path, "rb")
        except OSError as error:
            self._fail(f"cannot open it again to read its {key} array: {error.strerror}")
        with handle:
            if _file_identity(handle) != self.identity:
                self._fail("it changed after it was validated")
            # The item count stops the stream at the end of the array rather than at the end of the file.
            items = islice(BACKEND.items(handle, f"Event.{key}.item", buf_size=BLOCK_BYTES, use_float=True), count)
            read = 0
            while True:
                try:
                    item = next(items)
                except StopIteration:
                    break
                except (ijson.JSONError, UnicodeDecodeError, OSError) as error:
                    self._fail(f"reading its {key} array again failed: {error}")
                read += 1
                if isinstance(item, dict):
                    yield normalize(item)
            # A write during this pass shows only now. The caller has not used the items yet,
            # because the mapper collects an event's records before anything is sent or kept.
            if _file_identity(handle) != self.identity:
                self._fail(f"it changed while its {key} array was read")
        if read < count:
            self._fail(f"its {key} array has {read} item(s) now, {count} when it was validated")

    def _fail(self, cause: str) -> NoReturn:
        reason = f"{cause}; the run stops rather than go on with part of the event"
        self.report.input_failed(str(self.path), reason)
        raise InputChangedError(
            f"input {self.path} changed while it was read: {cause}",
            hint="run again once nothing writes the file",
        )


class StreamedItems:
    """The normalised attributes or objects of a large event, read from its file on each iteration.

    It supports iteration only: `len()`, indexing and `+` are not available, because they would
    need every item in memory.
    """

    __slots__ = ("_source", "_key", "_count")

    def __init__(self, source: EventFile, key: str, count: int) -> None:
        self._source = source
        self._key = key
        self._count = count

    def __iter__(self) -> Iterator[dict]:
        return self._source.items(self._key, self._count)

    def __repr__(self) -> str:
        return f"<StreamedItems {self._count} {self._key} item(s) of {self._source.path}>"
