"""Emulator of the Microsoft Sentinel threat-intelligence upload APIs.

Endpoints, all `POST` with `Authorization: Bearer <token>` and a JSON body:

* STIX objects API:
  `/workspaces/{workspaceId}/threat-intelligence-stix-objects:upload?api-version=2024-02-01-preview`
  with `{"sourcesystem": ..., "stixobjects": [...]}`;
* legacy API (deprecated action): `/{workspaceId}/threatintelligence:upload-indicators?api-version=2022-07-01`
  with the array in `value`;
* legacy API (V2 action): `/workspaces/{workspaceId}/threatintelligenceindicators:upload?api-version=2022-07-01`
  with the array in `indicators`.

Injected faults come first. Then each request is checked in this order: path (404),
api-version (400), body size (413), token signature, audience and expiry (401), rate
limit (429), workspace (404), the caller's role on the workspace (403), body (400), and
then each object. All valid gives 200 with an empty body. Some invalid gives 200 with
`{"errors":[{"recordIndex": i, "<messages key>": [...]}]}`, and all invalid gives 400
with the same `errors` array. Accepted objects are stored per workspace keyed by
(sourcesystem, STIX id), and the last upload wins, as Sentinel de-duplicates.

Run by hand: `python -m tests.emulators.sentinel --port 8443 --signing-key KEY.pem --workspace ID --client-id APP`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter
from typing import Any, Callable, Collection, Iterable

from .base import EmulatorServer, Request, Response
from .faults import Fault, FaultQueue, RecordRejections, fault_response
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
from .sentinel_store import RequestLogEntry, StoredObject, Workspace
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
]


class SentinelEmulator(EmulatorServer):
    """Sentinel STIX objects and legacy upload-indicators APIs with inspectable state.

    `signing_key` is the IdP emulator's key (`idp.signing_key`). `clock` (monotonic seconds,
    default `time.monotonic`) drives the rate-limit window; `wall_clock` (Unix seconds,
    default `time.time`) checks token expiry and stamps stored objects. Pass one
    `FakeClock` as both, and as the IdP's clock, to move every time source at once.

    Options for behaviour the sources leave open:

    * `rate_limit` requests per `rate_window` seconds, counted per token subject (`oid`)
      with `rate_scope="identity"`, or per workspace with `rate_scope="workspace"`;
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
        self._faults = FaultQueue()
        self._rejections = RecordRejections()
        self._lock = threading.Lock()

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
        all_headers = dict(headers or {})
        if body is None and status == 429:
            response = rate_limit_response(retry_after, retry_after_header=self.retry_after_header)
            response.headers.update(all_headers)
        else:
            response = fault_response(status, default_fault_body(status) if body is None else body, all_headers)
        self._faults.add(Fault(response, count, path_contains))

    def drop_connection(self, count: int = 1, path_contains: str | None = None, after_processing: bool = False) -> None:
        """Reset the TCP connection of the next `count` matching requests without a response.

        With `after_processing` the upload is processed and stored first, as when a
        response is lost on the way back.
        """
        self._faults.add(Fault(Response.reset(), count, path_contains, after_processing=after_processing))

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
        self._faults.clear()
        self._rejections.clear()

    # Request handling

    def dispatch(self, request: Request) -> Response:
        matched = match_upload_api(request.path, accept_path_alias=self.accept_path_alias)
        api, raw_workspace = matched if matched else (None, None)
        workspace_id = normalize_workspace_id(raw_workspace) if raw_workspace else None

        fault = self._faults.take(request.path)
        if fault is not None:
            self._record(request, fault, None, self._client_id_for_log(request), workspace_id, api, "injected fault")
            return fault
        if api is None or request.method != "POST":
            self._record(request, path_not_found_response(), None, None, workspace_id, None, "no upload operation at this path and method")
            return path_not_found_response()

        client_id = None
        try:
            claims = self._authorize(request, api, workspace_id)
            client_id = claims.get("appid") or claims.get("azp")
            response, object_count = self._upload(request, api, workspace_id)
        except UploadRejected as rejected:
            if client_id is None and rejected.response.status != 401:
                client_id = self._client_id_for_log(request)
            self._record(request, rejected.response, rejected.object_count, client_id, workspace_id, api, rejected.detail)
            return rejected.response

        reset = self._faults.take(request.path, after_processing=True)
        if reset is not None:
            self._record(request, reset, object_count, client_id, workspace_id, api, f"connection reset after a {response.status} response was prepared")
            return reset
        self._record(request, response, object_count, client_id, workspace_id, api, None)
        return response

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

        subject = claims.get("oid") or claims.get("sub") or claims.get("appid")
        rate_key = f"identity:{subject}" if self.rate_scope == "identity" else f"workspace:{workspace_id}"
        wait = self.rate_limiter.acquire(rate_key)
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
                if messages:
                    record_errors.append({"recordIndex": index, self.error_messages_key: messages})
                    continue
                workspace.store(sourcesystem, stix_object, api.name, now, ignore_older_modified=self.ignore_older_modified)

        if not record_errors:
            return Response(200), len(objects)
        status = self.all_invalid_status if len(record_errors) == len(objects) else 200
        return Response.json(status, {"errors": record_errors}), len(objects)

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

    def _record(self, request: Request, response: Response, object_count: int | None, client_id: str | None,
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
