"""Injected faults: responses or connection resets that replace the next matching requests,
and per-record errors for matching uploaded objects."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Collection

from .base import Response
from .stix_validation import error_message


def fault_response(status: int, body: Any, headers: dict[str, str] | None) -> Response:
    """Build a response for an injected fault from a JSON value, text or raw bytes."""
    if isinstance(body, bytes):
        return Response(status, body, dict(headers or {}))
    if isinstance(body, str):
        all_headers = {"Content-Type": "text/plain; charset=utf-8"}
        all_headers.update(headers or {})
        return Response(status, body.encode("utf-8"), all_headers)
    return Response.json(status, body, headers)


@dataclass
class Fault:
    """A response (or connection reset) that replaces the next `remaining` matching requests."""

    response: Response
    remaining: int
    path_contains: str | None = None
    after_processing: bool = False
    """When true the request is processed first, and only its response is replaced."""

    def matches(self, path: str, after_processing: bool) -> bool:
        if self.remaining <= 0 or self.after_processing != after_processing:
            return False
        return self.path_contains is None or self.path_contains in path


class FaultQueue:
    """Thread-safe list of injected faults, consumed in the order they were added."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        if fault.remaining < 1:
            raise ValueError(f"a fault needs count >= 1, got {fault.remaining}")
        with self._lock:
            self._faults.append(fault)

    def take(self, path: str, *, after_processing: bool = False) -> Response | None:
        """Return the response of the first fault that matches `path`, and use it up once."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(path, after_processing):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault.response
        return None

    def pending(self) -> int:
        """Return how many injected responses are still waiting to be used."""
        with self._lock:
            return sum(fault.remaining for fault in self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


@dataclass
class _RecordRejection:
    matches: Callable[[dict[str, Any]], bool]
    message: str | None
    remaining: int | None


class RecordRejections:
    """Thread-safe rules that turn matching uploaded objects into per-record errors."""

    def __init__(self) -> None:
        self._rules: list[_RecordRejection] = []
        self._lock = threading.Lock()

    def add(
        self,
        selector: Callable[[dict[str, Any]], bool] | Collection[str],
        message: str | None = None,
        count: int | None = None,
    ) -> None:
        """Add a rule for a predicate or a collection of STIX ids; `count=None` never runs out."""
        if callable(selector):
            matches = selector
        else:
            ids = frozenset(selector)

            def matches(stix_object: dict[str, Any]) -> bool:
                return stix_object.get("id") in ids

        with self._lock:
            self._rules.append(_RecordRejection(matches, message, count))

    def messages_for(self, stix_object: dict[str, Any]) -> list[str]:
        """Return the error messages of the first rule that matches, and use it up once."""
        with self._lock:
            for rule in self._rules:
                if rule.remaining == 0 or not rule.matches(stix_object):
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                message = rule.message or error_message("id", "The object was rejected by an injected fault", stix_object.get("id"))
                return [message]
        return []

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
