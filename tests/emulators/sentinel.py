"""Emulator of the Microsoft Sentinel threat-intelligence upload APIs.

Endpoints, all `POST` with `Authorization: Bearer <token>` and a JSON body:

* STIX objects API:
  `/workspaces/{workspaceId}/threat-intelligence-stix-objects:upload?api-version=2024-02-01-preview`
  with `{"sourcesystem": ..., "stixobjects": [...]}`;
* legacy API (deprecated action): `/{workspaceId}/threatintelligence:upload-indicators?api-version=2022-07-01`
  with the array in `value`;
* legacy API (V2 action): `/workspaces/{workspaceId}/threatintelligenceindicators:upload?api-version=2022-07-01`
  with the array in `indicators`.

Injected faults come first: the next scripted step (a status, a connection reset before or
after storing, a delay, or an action such as revoking tokens) is taken when a request
arrives, in the order the steps were added. Then each request is checked in this order:
path (404), api-version (400), body size (413), token signature, audience, expiry and
revocation (401), rate limit (429), workspace (404), the caller's role on the workspace
(403), body (400), a whole-request refusal of chosen objects (400 or 500 without
`errors`), and then each object. All valid gives 200 with an empty body. Some invalid gives 200 with
`{"errors":[{"recordIndex": i, "<messages key>": [...]}]}`, and all invalid gives 400
with the same `errors` array. Accepted objects are stored per workspace keyed by
(sourcesystem, STIX id), and the last upload wins, as Sentinel de-duplicates. Every object
that reaches validation is also logged per workspace with its outcome (`upload_log`).

Run by hand: `python -m tests.emulators.sentinel --port 8443 --signing-key KEY.pem --workspace ID --client-id APP`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections import Counter
from typing import Any, Callable, Collection, Iterable, Sequence

from .base import EmulatorServer, Request, Response
from .faults import BatchRefusals, RecordRejections, Step, StepQueue, fault_response
from .sentinel_protocol import (
    API_STIX_OBJECTS,
    API_UPLOAD_INDICATORS,
    API_UPLOAD_INDICATORS_V2,
    UPLOAD_APIS,
    WORKSPACE_ID_PATTERN,
    UploadApi,
    UploadRejected,
    bad_request_response,
    default_fault_body,
    forbidden_response,
    match_upload_api,
    normalize_workspace_id,
    parse_upload_body,
    path_not_found_response,
    payload_too_large_response,
    rate_limit_response,
    unauthorized_response,
    workspace_not_found_response,
)
from .rate_limit import SlidingWindowRateLimiter
from .sentinel_store import RequestLogEntry, StoredObject, UploadRecord, Workspace
from .stix_validation import error_message, validate_stix_object
from .tls import EmulatorTLS
from .tokens import SigningKey, TokenRejected, verify_access_token

logger = logging.getLogger(__name__)

__all__ = [
    "API_STIX_OBJECTS",
    "API_UPLOAD_INDICATORS",
    "API_UPLOAD_INDICATORS_V2",
    "RequestLogEntry",
    "SentinelEmulator",
    "StoredObject",
    "UploadRecord",
]

# What `inject_sequence` accepts for one request: None serves it, a status responds with that
# status, "drop" resets the connection before and "drop-after" after storing, a callable runs
# before the request is served, and a Step gives full control.
SequenceStep = int | str | Callable[[], None] | Step | None


class SentinelEmulator(EmulatorServer):
    """Sentinel STIX objects and legacy upload-indicators APIs with inspectable state.

    `signing_key` is the IdP emulator's key (`idp.signing_key`). `clock` (monotonic seconds,
    default `time.monotonic`) drives the rate-limit window; `wall_clock` (Unix seconds,
    default `time.time`) checks token expiry and stamps stored objects. Pass one
    `FakeClock` as both, and as the IdP's clock, to move every time source at once.

    Options for behaviour the sources leave open:

    * `rate_limit` requests per `rate_window` seconds, counted per token subject (`oid`)
      with `rate_scope="identity"`, or per workspace with `rate_scope="workspace"`;
      `configure_rate_limit` changes it, or switches it off, at run time;
    * `error_messages_key`: `errorMessages` (Learn) or `validationErrorMessages` (swagger);
    * `retry_after_header`: send `Retry-After` with a 429 besides the body message;
    * `max_body_bytes`: answer larger bodies with 413 (None: no cap, as documented);
    * `accept_path_alias`: also serve the misspelled STIX objects paths;
    * `all_invalid_status`: status when every object fails (400, or 200 to keep errors in a 200);
    * `ignore_older_modified`: keep the stored object when an upload has an older `modified`
      (strict STIX); by default the last upload wins;
    * `reject_unrevoke`: reject an upload that un-revokes a revoked object with a record error.
      Accepted un-revoking uploads are listed in `unrevocations`.
    """

    def __init__(
        self,
        *,
        signing_key: SigningKey,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: EmulatorTLS | None | bool = None,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] | None = None,
        rate_limit: int = 100,
        rate_window: float = 60.0,
        rate_scope: str = "identity",
        error_messages_key: str = "errorMessages",
        retry_after_header: bool = True,
        max_body_bytes: int | None = None,
        accept_path_alias: bool = False,
        all_invalid_status: int = 400,
        ignore_older_modified: bool = False,
        reject_unrevoke: bool = False,
    ) -> None:
        super().__init__(host=host, port=port, tls=tls)
        if rate_scope not in ("identity", "workspace"):
            raise ValueError(f"rate_scope must be 'identity' or 'workspace', got {rate_scope!r}")
        if error_messages_key not in ("errorMessages", "validationErrorMessages"):
            raise ValueError(f"error_messages_key must be 'errorMessages' or 'validationErrorMessages', got {error_messages_key!r}")
        self.signing_key = signing_key
        self.clock = clock or time.monotonic
        self.wall_clock = wall_clock or time.time
        self.rate_scope = rate_scope
        self.error_messages_key = error_messages_key
        self.retry_after_header = retry_after_header
        self.max_body_bytes = max_body_bytes
        self.accept_path_alias = accept_path_alias
        self.all_invalid_status = all_invalid_status
        self.ignore_older_modified = ignore_older_modified
        self.reject_unrevoke = reject_unrevoke
        self.rate_limiter = SlidingWindowRateLimiter(rate_limit, rate_window, self.clock)
        self._workspaces: dict[str, Workspace] = {}
        self._log: list[RequestLogEntry] = []
        self._steps = StepQueue()
        self._rejections = RecordRejections()
        self._refusals = BatchRefusals()
        self._seen_tokens: set[str] = set()
        self._revoked_tokens: set[str] = set()
        self._upload_sequence = 0
        self._lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)

    # Registration

    def add_workspace(self, workspace_id: str, allowed_client_ids: Iterable[str] = ()) -> str:
        """Create a workspace and give the listed client ids the Sentinel Contributor role.

        Returns the normalised id (lower case, no braces). Raises ValueError unless the
        id is a GUID, as the API's path parameter requires.
        """
        if not WORKSPACE_ID_PATTERN.match(workspace_id):
            raise ValueError(f"workspace id must be a GUID such as {uuid.uuid4()}, got {workspace_id!r}")
        normalized = normalize_workspace_id(workspace_id)
        with self._lock:
            self._workspaces[normalized] = Workspace(normalized, set(allowed_client_ids))
        return normalized

    def grant_role(self, workspace_id: str, client_id: str) -> None:
        with self._lock:
            self._workspace(workspace_id).allowed_client_ids.add(client_id)

    def revoke_role(self, workspace_id: str, client_id: str) -> None:
        with self._lock:
            self._workspace(workspace_id).allowed_client_ids.discard(client_id)

    def upload_url(self, workspace_id: str, api: str = API_STIX_OBJECTS) -> str:
        """Return the full upload URL with api-version for `api` (`stix-objects`,
        `upload-indicators` or `upload-indicators-v2`)."""
        upload_api = UPLOAD_APIS[api]
        path = upload_api.path_pattern.pattern.strip("^$").replace("(?P<workspace>[^/]+)", workspace_id)
        return f"{self.base_url}{path}?api-version={upload_api.api_version}"

    # Inspection

    def holdings(self, workspace_id: str, sourcesystem: str | None = None) -> dict[str, dict[str, Any]]:
        """Return {STIX id: latest stored object} of a workspace.

        Sentinel keeps one current version per (sourcesystem, id). Without `sourcesystem`
        this raises ValueError if one id is stored under several source systems.
        """
        result: dict[str, dict[str, Any]] = {}
        for stored in self.stored_objects(workspace_id):
            if sourcesystem is not None and stored.sourcesystem != sourcesystem:
                continue
            if stored.stix_id in result:
                raise ValueError(f"{stored.stix_id} is stored under several source systems; pass sourcesystem=")
            result[stored.stix_id] = stored.stix_object
        return result

    def stored_objects(self, workspace_id: str) -> list[StoredObject]:
        with self._lock:
            return [
                StoredObject(**{**vars(stored), "stix_object": json.loads(json.dumps(stored.stix_object))})
                for stored in self._workspace(workspace_id).objects.values()
            ]

    def upload_counts(self, workspace_id: str, sourcesystem: str | None = None) -> dict[str, int]:
        """Return {STIX id: accepted uploads}, summed over source systems unless one is given."""
        counts: Counter[str] = Counter()
        for stored in self.stored_objects(workspace_id):
            if sourcesystem is None or stored.sourcesystem == sourcesystem:
                counts[stored.stix_id] += stored.upload_count
        return dict(counts)

    def upload_log(self, workspace_id: str) -> dict[str, list[UploadRecord]]:
        """Return {STIX id: every upload of it that reached validation}, oldest first, accepted or not."""
        log: dict[str, list[UploadRecord]] = {}
        with self._lock:
            for record in self._workspace(workspace_id).uploads:
                log.setdefault(record.stix_id, []).append(record)
        return log

    @property
    def upload_sequence(self) -> int:
        """Return the sequence number of the latest object validated in any workspace (0 before the first)."""
        with self._lock:
            return self._upload_sequence

    def unrevocations(self, workspace_id: str) -> list[tuple[str, str]]:
        """Return (sourcesystem, id) of accepted uploads that un-revoked a revoked object."""
        with self._lock:
            return list(self._workspace(workspace_id).unrevocations)

    @property
    def request_log(self) -> list[RequestLogEntry]:
        with self._lock:
            return list(self._log)

    def status_counts(self) -> Counter[int]:
        with self._lock:
            return Counter(entry.status for entry in self._log)

    @property
    def throttled_count(self) -> int:
        """Return the number of 429 responses, injected ones included."""
        return self.status_counts()[429]

    # Fault injection

    def inject(
        self,
        status: int,
        count: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
        path_contains: str | None = None,
        retry_after: int = 1,
    ) -> None:
        """Respond to the next `count` requests whose path contains `path_contains` with `status`.

        Without `body` a plausible body for the status is sent. For 429 that is the
        documented message with `retry_after` seconds, plus the `Retry-After` header
        when `retry_after_header` is on.
        """
        self._steps.add(Step(self._fault_response(status, body, headers, retry_after), remaining=count, path_contains=path_contains))

    def inject_sequence(self, steps: Sequence[SequenceStep], path_contains: str | None = None) -> None:
        """Script the next `len(steps)` matching requests, one step each, in order.

        A step is one of these:

        * None serves the request;
        * an HTTP status responds with it, as `inject` does;
        * "drop" resets the connection before processing, and "drop-after" stores the
          upload and then resets the connection;
        * a callable runs and then the request is served (for example `emulator.revoke_tokens`);
        * a `Step` gives full control.
        """
        for item in steps:
            if isinstance(item, Step):
                step = item
            elif item is None:
                step = Step()
            elif item == "drop":
                step = Step(Response.reset())
            elif item == "drop-after":
                step = Step(reset_after_processing=True)
            elif isinstance(item, int) and not isinstance(item, bool):
                step = Step(self._fault_response(item, None, None, 1))
            elif callable(item):
                step = Step(action=item)
            else:
                raise ValueError(f"unknown sequence step {item!r}: expected None, a status, 'drop', 'drop-after', a callable or a Step")
            step.path_contains = step.path_contains or path_contains
            self._steps.add(step)

    def drop_connection(self, count: int = 1, path_contains: str | None = None, after_processing: bool = False) -> None:
        """Reset the TCP connection of the next `count` matching requests without a response.

        With `after_processing` the upload is processed and stored first, as when a
        response is lost on the way back.
        """
        if after_processing:
            self._steps.add(Step(reset_after_processing=True, remaining=count, path_contains=path_contains))
        else:
            self._steps.add(Step(Response.reset(), remaining=count, path_contains=path_contains))

    def delay(self, seconds: float, count: int = 1, path_contains: str | None = None, after_processing: bool = False) -> None:
        """Wait `seconds` of real time in the next `count` matching requests, then respond normally.

        The wait comes before the request is processed, so a client that times out first
        may still see its upload stored, or with `after_processing` after the upload was
        stored and before the response is sent.
        """
        self._steps.add(Step(delay_seconds=seconds, delay_after_processing=after_processing, remaining=count, path_contains=path_contains))

    def reject_batches(
        self,
        selector: Callable[[dict[str, Any]], bool] | Collection[str],
        status: int = 400,
        count: int | None = None,
        body: Any = None,
    ) -> None:
        """Fail every request that carries an object matching `selector`, as a whole.

        The response has `status` (400 or 500, say) and no `errors` array, so nothing in it
        names the object: a client finds it only by splitting the batch. `count` limits
        how many requests are failed; None fails them until `clear_faults`.
        """
        self._refusals.add(selector, self._fault_response(status, body, None, 1), count)

    def revoke_tokens(self) -> None:
        """Reject every access token presented so far with 401, as after a revocation or key rollover.

        Tokens the IdP issues later are accepted.
        """
        with self._lock:
            self._revoked_tokens |= self._seen_tokens

    def configure_rate_limit(self, limit: int | None, window: float | None = None, clock: Callable[[], float] | None = None) -> None:
        """Replace the rate limit: `limit` requests per `window` seconds of `clock`, or None for no limit.

        Subprocess tests, whose bridge sleeps in real time, scale the window below a second
        with `clock=time.monotonic`, so that the limit still applies but a 429 costs little.
        """
        if limit is None:
            self.rate_limiter = None
            return
        if window is None:
            window = self.rate_limiter.window if self.rate_limiter is not None else 60.0
        self.rate_limiter = SlidingWindowRateLimiter(limit, window, clock or self.clock)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no request is being handled, such as one still sleeping in a delay after its client gave up.

        Raises TimeoutError after `timeout` seconds of real time.
        """
        with self._idle:
            if not self._idle.wait_for(lambda: self._in_flight == 0, timeout):
                raise TimeoutError(f"the Sentinel emulator still handles {self._in_flight} request(s) after {timeout} s")

    def pending_faults(self) -> int:
        """Return how many requests the scripted steps will still apply to."""
        return self._steps.pending()

    def reject_records(
        self,
        selector: Callable[[dict[str, Any]], bool] | Collection[str],
        message: str | None = None,
        count: int | None = None,
    ) -> None:
        """Fail objects that match `selector` (a predicate, or a collection of STIX ids).

        Each match becomes a per-record error with `message` (by default an
        `Error for Property=id` message naming the id). `count` limits how many records
        are rejected; None rejects matches until `clear_faults`. When every record of a
        request fails, the request gets `all_invalid_status` (400 by default), not 200.
        """
        self._rejections.add(selector, message, count)

    def clear_faults(self) -> None:
        """Remove every scripted step, record rejection and batch refusal; revoked tokens stay revoked."""
        self._steps.clear()
        self._rejections.clear()
        self._refusals.clear()

    def _fault_response(self, status: int, body: Any, headers: dict[str, str] | None, retry_after: int) -> Response:
        all_headers = dict(headers or {})
        if body is None and status == 429:
            response = rate_limit_response(retry_after, retry_after_header=self.retry_after_header)
            response.headers.update(all_headers)
            return response
        return fault_response(status, default_fault_body(status) if body is None else body, all_headers)

    # Request handling

    def dispatch(self, request: Request) -> Response:
        with self._lock:
            self._in_flight += 1
        try:
            return self._dispatch(request, self.clock())
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _dispatch(self, request: Request, received_at: float) -> Response:
        matched = match_upload_api(request.path, accept_path_alias=self.accept_path_alias)
        api, raw_workspace = matched if matched else (None, None)
        workspace_id = normalize_workspace_id(raw_workspace) if raw_workspace else None

        step = self._steps.take(request.path)
        if step is not None:
            if step.action is not None:
                step.action()
            if step.delay_seconds and not step.delay_after_processing:
                time.sleep(step.delay_seconds)
            if step.response is not None:
                self._record(request, received_at, step.response, None, self._client_id_for_log(request), workspace_id, api, "injected fault")
                return step.response

        response, object_count, client_id, detail = self._serve(request, api, workspace_id)

        if step is not None and step.delay_seconds and step.delay_after_processing:
            time.sleep(step.delay_seconds)
        if step is not None and step.reset_after_processing:
            self._record(request, received_at, Response.reset(), object_count, client_id, workspace_id, api, f"connection reset after a {response.status} response was prepared")
            return Response.reset()
        self._record(request, received_at, response, object_count, client_id, workspace_id, api, detail)
        return response

    def _serve(self, request: Request, api: UploadApi | None, workspace_id: str | None) -> tuple[Response, int | None, str | None, str | None]:
        """Serve one request; return (response, object count, client id, failure detail for the log)."""
        if api is None or request.method != "POST":
            return path_not_found_response(), None, None, "no upload operation at this path and method"

        client_id = None
        try:
            claims = self._authorize(request, api, workspace_id)
            client_id = claims.get("appid") or claims.get("azp")
            response, object_count = self._upload(request, api, workspace_id)
        except UploadRejected as rejected:
            if client_id is None and rejected.response.status != 401:
                client_id = self._client_id_for_log(request)
            return rejected.response, rejected.object_count, client_id, rejected.detail
        return response, object_count, client_id, None

    def _authorize(self, request: Request, api: UploadApi, workspace_id: str) -> dict[str, Any]:
        """Run the checks before the body: api-version, size, token, rate limit, workspace, role."""
        api_version = request.query_value("api-version")
        if api_version is None:
            raise UploadRejected(
                bad_request_response(api, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests."),
                "missing api-version",
            )
        if api_version != api.api_version:
            raise UploadRejected(
                bad_request_response(api, "InvalidApiVersionParameter", f"The api-version '{api_version}' is invalid. The supported versions are '{api.api_version}'."),
                f"unsupported api-version {api_version}",
            )
        if self.max_body_bytes is not None and len(request.body) > self.max_body_bytes:
            raise UploadRejected(payload_too_large_response(len(request.body), self.max_body_bytes), "body too large")

        authorization = request.headers.get("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UploadRejected(unauthorized_response(), "missing bearer token")
        try:
            claims = verify_access_token(token.strip(), self.signing_key, now=self.wall_clock())
        except TokenRejected as rejected:
            raise UploadRejected(unauthorized_response(), rejected.reason) from None
        token_digest = hashlib.sha256(token.strip().encode("utf-8")).hexdigest()
        with self._lock:
            revoked = token_digest in self._revoked_tokens
            self._seen_tokens.add(token_digest)
        if revoked:
            raise UploadRejected(unauthorized_response(), "token revoked")

        subject = claims.get("oid") or claims.get("sub") or claims.get("appid")
        rate_key = f"identity:{subject}" if self.rate_scope == "identity" else f"workspace:{workspace_id}"
        limiter = self.rate_limiter
        wait = limiter.acquire(rate_key) if limiter is not None else None
        if wait is not None:
            raise UploadRejected(rate_limit_response(wait, retry_after_header=self.retry_after_header), f"rate limit for {rate_key}")

        client_id = claims.get("appid") or claims.get("azp")
        with self._lock:
            workspace = self._workspaces.get(workspace_id)
            allowed = workspace is not None and client_id in workspace.allowed_client_ids
        if workspace is None:
            raise UploadRejected(workspace_not_found_response(workspace_id), "unknown workspace")
        if not allowed:
            raise UploadRejected(forbidden_response(workspace_id, str(client_id), str(claims.get("oid"))), "client has no role on the workspace")
        return claims

    def _upload(self, request: Request, api: UploadApi, workspace_id: str) -> tuple[Response, int]:
        """Validate the body and its objects, store the valid ones, and build the response."""
        sourcesystem, objects = parse_upload_body(request.body, api)
        refusal = self._refusals.response_for(objects)
        if refusal is not None:
            raise UploadRejected(refusal, "request refused as a whole: it carries an object chosen by an injected fault", len(objects))
        record_errors: list[dict[str, Any]] = []
        now = self.wall_clock()
        with self._lock:
            workspace = self._workspaces[workspace_id]
            for index, stix_object in enumerate(objects):
                messages = validate_stix_object(stix_object, allowed_types=api.allowed_types)
                if not messages:
                    messages = self._rejections.messages_for(stix_object)
                if not messages:
                    messages = self._check_unrevoke(workspace, sourcesystem, stix_object)
                self._log_upload(workspace, sourcesystem, stix_object, messages)
                if messages:
                    record_errors.append({"recordIndex": index, self.error_messages_key: messages})
                    continue
                workspace.store(sourcesystem, stix_object, api.name, now, ignore_older_modified=self.ignore_older_modified)

        if not record_errors:
            return Response(200), len(objects)
        status = self.all_invalid_status if len(record_errors) == len(objects) else 200
        return Response.json(status, {"errors": record_errors}), len(objects)

    def _log_upload(self, workspace: Workspace, sourcesystem: str, stix_object: Any, messages: list[str]) -> None:
        """Append one object's outcome to the workspace's upload log; the caller holds the lock."""
        stix_id = stix_object.get("id") if isinstance(stix_object, dict) else None
        self._upload_sequence += 1
        workspace.uploads.append(UploadRecord(self._upload_sequence, sourcesystem, str(stix_id), not messages, tuple(messages)))

    def _check_unrevoke(self, workspace: Workspace, sourcesystem: str, stix_object: dict[str, Any]) -> list[str]:
        """Record an upload that un-revokes a revoked object; reject it if so configured.

        STIX and Learn state that a revoked object must not get later versions, but whether
        Sentinel enforces this is undocumented, so it is accepted by default.
        """
        if not workspace.is_unrevoke(sourcesystem, stix_object):
            return []
        if self.reject_unrevoke:
            return [error_message("revoked", "The object was revoked and cannot be restored", stix_object.get("revoked", False))]
        workspace.unrevocations.append((sourcesystem, stix_object["id"]))
        return []

    def _client_id_for_log(self, request: Request) -> str | None:
        """Return the `appid` of a valid bearer token, or None; used only for the log."""
        _, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            claims = verify_access_token(token.strip(), self.signing_key, now=self.wall_clock())
        except TokenRejected:
            return None
        return claims.get("appid") or claims.get("azp")

    def _record(self, request: Request, received_at: float, response: Response, object_count: int | None, client_id: str | None,
                workspace_id: str | None, api: UploadApi | None, detail: str | None) -> None:
        entry = RequestLogEntry(
            method=request.method,
            path=request.path,
            status=0 if response.reset_connection else response.status,
            object_count=object_count,
            client_id=client_id,
            workspace_id=workspace_id,
            api=api.name if api else None,
            detail=detail,
            received_at=received_at,
        )
        with self._lock:
            self._log.append(entry)
        logger.info(
            "%s %s -> %s (objects=%s, client=%s%s)",
            entry.method, entry.path, entry.status or "connection reset", entry.object_count, entry.client_id,
            f", {detail}" if detail else "",
        )

    def _workspace(self, workspace_id: str) -> Workspace:
        normalized = normalize_workspace_id(workspace_id)
        try:
            return self._workspaces[normalized]
        except KeyError:
            raise KeyError(f"workspace {workspace_id!r} is not registered; call add_workspace first") from None


if __name__ == "__main__":
    from .launcher import run_sentinel

    run_sentinel()
