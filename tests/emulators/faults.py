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


@dataclass
class Step:
    """What an emulator does with one request, chosen when the request arrives.

    Steps are taken strictly in the order they were added, so a sequence of them scripts the
    responses to consecutive requests. The parts apply in this order. First `action` runs.
    Then the emulator waits `delay_seconds` of real time, before serving the request, or after
    it with `delay_after_processing`. Then either `response` is sent without serving the
    request, or the request is served. With `reset_after_processing` a connection reset
    replaces the response. A step with no parts serves the request normally.
    """

    response: Response | None = None
    action: Callable[[], None] | None = None
    delay_seconds: float = 0.0
    delay_after_processing: bool = False
    reset_after_processing: bool = False
    remaining: int = 1
    path_contains: str | None = None

    def matches(self, path: str) -> bool:
        return self.remaining > 0 and (self.path_contains is None or self.path_contains in path)


class StepQueue:
    """Thread-safe list of steps, taken in the order they were added."""

    def __init__(self) -> None:
        self._steps: list[Step] = []
        self._lock = threading.Lock()

    def add(self, step: Step) -> None:
        if step.remaining < 1:
            raise ValueError(f"a fault needs count >= 1, got {step.remaining}")
        if step.delay_seconds < 0:
            raise ValueError(f"a delay cannot be negative, got {step.delay_seconds}")
        with self._lock:
            self._steps.append(step)

    def take(self, path: str) -> Step | None:
        """Return the first step that matches `path`, and use it up once."""
        with self._lock:
            for step in self._steps:
                if step.matches(path):
                    step.remaining -= 1
                    if step.remaining == 0:
                        self._steps.remove(step)
                    return step
        return None

    def pending(self) -> int:
        """Return how many requests the queued steps will still apply to."""
        with self._lock:
            return sum(step.remaining for step in self._steps)

    def clear(self) -> None:
        with self._lock:
            self._steps.clear()


@dataclass
class _BatchRefusal:
    matches: Callable[[dict[str, Any]], bool]
    response: Response
    remaining: int | None


class BatchRefusals:
    """Thread-safe rules that fail a whole request when it carries a matching object.

    This is how a service responds when one object breaks the request rather than being
    reported in `errors`: a 400 or 500 without a record index, so that only splitting the
    batch finds the object.
    """

    def __init__(self) -> None:
        self._rules: list[_BatchRefusal] = []
        self._lock = threading.Lock()

    def add(self, selector: Callable[[dict[str, Any]], bool] | Collection[str], response: Response, count: int | None = None) -> None:
        """Add a rule for a predicate or a collection of STIX ids; `count=None` never runs out."""
        if callable(selector):
            matches = selector
        else:
            ids = frozenset(selector)

            def matches(stix_object: dict[str, Any]) -> bool:
                return stix_object.get("id") in ids

        with self._lock:
            self._rules.append(_BatchRefusal(matches, response, count))

    def response_for(self, objects: list[Any]) -> Response | None:
        """Return the response of the first rule that matches an object of the request, and use it up once."""
        with self._lock:
            for rule in self._rules:
                if rule.remaining == 0:
                    continue
                if any(isinstance(stix_object, dict) and rule.matches(stix_object) for stix_object in objects):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule.response
        return None

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
