"""Upload client for the Sentinel threat-intelligence APIs: one batch in, one result per object out.

The STIX objects upload API (https://learn.microsoft.com/en-us/azure/sentinel/stix-objects-api) is the
default; the legacy upload indicators API (https://learn.microsoft.com/en-us/azure/sentinel/upload-indicators-api)
is an option. Both take at most 100 objects per request and respond in the same shapes:

* 200 with an empty body: every object was accepted;
* 200 with `{"errors": [{"recordIndex": i, "errorMessages": [...]}]}`: the listed objects were rejected
  (the swagger names the key `validationErrorMessages`, so both are read);
* 400 with the same `errors` array when every object was rejected (not documented, observed in clients);
* 429 with "Try again in N seconds"; 401, 403 and 404 for the token, the role and the workspace.

Requests go through the workspace's `https_proxy` when one is set; proxy environment variables
are ignored (see `auth.make_session`).
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal
from urllib.parse import urlsplit

import requests

from misp2sentinel.clock import Clock
from misp2sentinel.config import SentinelSettings, Workspace
from misp2sentinel.errors import WorkspaceError
from misp2sentinel.sentinel.auth import TokenProvider
from misp2sentinel.sentinel.credentials import proxies_for, proxy_passwords, proxy_url, redact_proxy
from misp2sentinel.sentinel.pacing import LimiterUser, RateLimiter, backoff_delay, retry_after_seconds

log = logging.getLogger(__name__)

API_STIX_OBJECTS = "stix-objects"
API_LEGACY = "legacy"
UploadApiName = Literal["stix-objects", "legacy"]

STIX_OBJECTS_API_VERSION = "2024-02-01-preview"
LEGACY_API_VERSION = "2022-07-01"
# The host of the legacy API's "Upload Indicators" operation in the public cloud (Microsoft Learn,
# upload-indicators-api). The US Government and China clouds serve the legacy V2 operation on their
# STIX objects API hosts instead (Azure/Azure-Sentinel connector templates).
LEGACY_PUBLIC_BASE_URL = "https://sentinelus.azure-api.net"

MAX_OBJECTS_PER_REQUEST = 100
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
# A 500 that comes back this many times in a row for a batch of several objects is taken as caused by
# one of the objects, so the batch is split instead of retried further.
REPEATED_SERVER_ERRORS_BEFORE_SPLIT = 2
# Request and response bodies are shown at DEBUG up to this many characters.
DEBUG_BODY_CHARS = 2000


@dataclass
class RecordResult:
    """The outcome of one object of a batch; `index` is its position in the list given to `upload`."""

    index: int
    ok: bool
    message: str | None = None
    # True when Sentinel refused the object itself (a per-record error, or a 400 or 413 for it
    # alone), so sending the same content again would fail the same way.
    validation: bool = False


@dataclass(frozen=True)
class UploadEndpoint:
    """Upload target: the full URL with api-version, and the body field that carries the objects."""

    url: str
    array_field: str


def upload_endpoint(workspace: Workspace, api: UploadApiName = API_STIX_OBJECTS, legacy_api_base_url: str | None = None) -> UploadEndpoint:
    """Return the upload endpoint of `workspace` for the STIX objects API or the legacy API.

    Legacy API: the "Upload Indicators" operation (`threatintelligence:upload-indicators`, array `value`)
    on the public cloud's legacy host, or on `legacy_api_base_url` when one is given. Every other case
    uses the V2 operation (`threatintelligenceindicators:upload`, array `indicators`) on the workspace's
    API base URL: the US Government and China presets, and a public-cloud workspace whose `api_base_url`
    points somewhere other than the legacy host.
    """
    _, _, api_base_url = workspace.endpoints()
    workspace_id = workspace.workspace_id
    if api == API_STIX_OBJECTS:
        return UploadEndpoint(
            f"{api_base_url}/workspaces/{workspace_id}/threat-intelligence-stix-objects:upload?api-version={STIX_OBJECTS_API_VERSION}",
            "stixobjects",
        )
    if api != API_LEGACY:
        raise ValueError(f"api must be {API_STIX_OBJECTS!r} or {API_LEGACY!r}, got {api!r}")

    legacy_base = (legacy_api_base_url or "").rstrip("/")
    if workspace.cloud == "public":
        if not legacy_base and (workspace.api_base_url is None or workspace.api_base_url.rstrip("/") == LEGACY_PUBLIC_BASE_URL):
            legacy_base = LEGACY_PUBLIC_BASE_URL
        if legacy_base:
            return UploadEndpoint(f"{legacy_base}/{workspace_id}/threatintelligence:upload-indicators?api-version={LEGACY_API_VERSION}", "value")
    base = legacy_base or api_base_url
    return UploadEndpoint(f"{base}/workspaces/{workspace_id}/threatintelligenceindicators:upload?api-version={LEGACY_API_VERSION}", "indicators")


class _RetryBudget:
    """Retry state of one batch, shared by the parts of a split batch.

    Each request gets at most `max_attempts` attempts, and no retry may start after `deadline` on the
    monotonic clock. `consecutive_failures` counts transient failures across parts, so backoff keeps
    growing while the service stays down. Once a part has given up, every later part gets a single
    attempt until a request gets a response that is not transient, which keeps an outage from being
    multiplied by the splits.
    """

    def __init__(self, settings: SentinelSettings, clock: Clock) -> None:
        self.max_attempts = settings.max_attempts
        self.max_retry_seconds = settings.max_retry_seconds
        self.deadline = clock.monotonic() + settings.max_retry_seconds
        self.consecutive_failures = 0
        self.gave_up = False

    def record_response(self) -> None:
        """Note a response that is not a transient failure: the service is working."""
        self.consecutive_failures = 0
        self.gave_up = False


class SentinelClient:
    """Upload batches of STIX objects to one workspace.

    Every request waits for `limiter.acquire()`, carries a fresh token from `tokens.token()` (MSAL
    returns its cached one) and has a timeout of `settings.timeout_seconds`. Waits go through
    `clock.sleep` and retry bounds run on `clock.monotonic()`. `WorkspaceError` means that the
    workspace cannot take uploads in this run: no token, a token rejected twice, 403, 404 or a TLS
    failure. Every other failure is reported per record.
    """

    def __init__(
        self,
        workspace: Workspace,
        settings: SentinelSettings,
        session: requests.Session,
        tokens: TokenProvider,
        limiter: RateLimiter | LimiterUser,
        clock: Clock,
        *,
        api: UploadApiName = API_STIX_OBJECTS,
        legacy_api_base_url: str | None = None,
        random_source: Callable[[], float] = random.random,
    ) -> None:
        self.workspace = workspace
        self.settings = settings
        self.api = api
        self.endpoint = upload_endpoint(workspace, api, legacy_api_base_url or getattr(workspace, "legacy_api_base_url", None))
        self.batch_size = min(settings.batch_size, MAX_OBJECTS_PER_REQUEST)
        self._session = session
        self._tokens = tokens
        self._limiter = limiter
        self._clock = clock
        self._random = random_source
        self._path = urlsplit(self.endpoint.url).path
        proxy = proxy_url(workspace)
        self._proxies = proxies_for(proxy)
        self._proxy_display = redact_proxy(proxy) if proxy else None
        self._proxy_passwords = proxy_passwords(proxy)

    def upload(self, objects: list[dict]) -> list[RecordResult]:
        """Upload `objects` and return one result per object, in order.

        A list longer than the batch size is sent as several batches, each with its own retry bounds.
        Raises WorkspaceError when the workspace cannot take uploads. The results of earlier batches of
        the same call are then lost, which matters only for lists longer than one batch.
        """
        results: list[RecordResult | None] = [None] * len(objects)
        for start in range(0, len(objects), self.batch_size):
            indexes = list(range(start, min(start + self.batch_size, len(objects))))
            self._upload_part(objects, indexes, results, _RetryBudget(self.settings, self._clock))

        missing = [index for index, result in enumerate(results) if result is None]
        if missing:
            raise RuntimeError(f"bug: no upload result for objects at {missing[:10]}")
        return results  # type: ignore[return-value]

    # Batch logic: per-record errors, re-sends and splits

    def _upload_part(self, objects: list[dict], indexes: list[int], results: list[RecordResult | None], budget: _RetryBudget) -> None:
        """Upload the objects at `indexes` and fill in their results, splitting the part if it is rejected."""
        outcome = self._exchange(objects, indexes, budget)
        if isinstance(outcome, str):
            log.error("%s: %s not uploaded: %s", self.workspace.name, _objects(len(indexes)), outcome)
            for index in indexes:
                results[index] = RecordResult(index, False, outcome)
            return

        response = outcome
        status = response.status_code
        if 200 <= status < 300:
            errors = self._record_errors(response, len(indexes))
            for position, index in enumerate(indexes):
                message = errors.get(position)
                results[index] = RecordResult(index, message is None, message, validation=message is not None)
            return

        if status == 400:
            # A 400 that lists records is read before any split: the listed records failed, and the
            # others were not stored because the request failed as a whole, so they are sent again.
            errors = self._record_errors(response, len(indexes))
            if errors:
                for position, message in errors.items():
                    results[indexes[position]] = RecordResult(indexes[position], False, message, validation=True)
                unlisted = [index for position, index in enumerate(indexes) if position not in errors]
                if unlisted:
                    log.info("%s: re-sending %s that the 400 response did not list", self.workspace.name, _objects(len(unlisted)))
                    self._upload_part(objects, unlisted, results, budget)
                return

        if status in (400, 413, 500):
            # NOTE: a 400 caused by the request as a whole, not by an object, fails every part too,
            # so it costs up to 2n - 1 requests for a batch of n objects before every record fails.
            if len(indexes) > 1:
                middle = len(indexes) // 2
                log.info("%s: HTTP %d for a batch of %s; splitting it in halves to isolate the rejected objects", self.workspace.name, status, _objects(len(indexes)))
                self._upload_part(objects, indexes[:middle], results, budget)
                self._upload_part(objects, indexes[middle:], results, budget)
                return
            index = indexes[0]
            message = f"rejected by Sentinel: {describe_response(response)}"
            results[index] = RecordResult(index, False, message, validation=status in (400, 413))
            return

        message = f"unexpected response from Sentinel: {describe_response(response)}"
        log.error("%s: %s (batch of %s)", self.workspace.name, message.rstrip("."), _objects(len(indexes)))
        for index in indexes:
            results[index] = RecordResult(index, False, message)

    def _record_errors(self, response: requests.Response, count: int) -> dict[int, str]:
        """Return {position in the request: joined messages} from an `errors` array, if the body has one."""
        if not response.content:
            return {}
        try:
            payload = response.json()
        except ValueError:
            if 200 <= response.status_code < 300:
                log.warning("%s: ignoring a 200 response body that is not JSON: %s", self.workspace.name, _shorten(response.text))
            return {}
        entries = payload.get("errors") if isinstance(payload, dict) else None
        if not isinstance(entries, list):
            return {}

        messages: dict[int, list[str]] = {}
        for entry in entries:
            position = _record_index(entry, count)
            if position is None:
                log.warning("%s: ignoring a record error without a valid recordIndex (0 to %d): %s", self.workspace.name, count - 1, _shorten(json.dumps(entry)))
                continue
            texts = messages.setdefault(position, [])
            for key in ("errorMessages", "validationErrorMessages"):
                value = entry.get(key)
                if isinstance(value, list):
                    texts.extend(str(item) for item in value)
                elif value:
                    texts.append(str(value))
        return {position: "; ".join(texts) or "rejected by Sentinel without a message" for position, texts in messages.items()}

    # One request with its retries

    def _exchange(self, objects: list[dict], indexes: list[int], budget: _RetryBudget) -> requests.Response | str:
        """Send the objects at `indexes` until a response that is not transient, and return it.

        Returns a failure message instead when the retry bound is reached. A 500 that repeats for
        several objects is returned as it is, so that the caller splits the batch.
        """
        body = json.dumps(
            {"sourcesystem": self.workspace.source_system, self.endpoint.array_field: [objects[index] for index in indexes]},
            separators=(",", ":"),
        )
        renewed_token = False
        server_errors = 0
        attempts = 0
        while True:
            token = self._tokens.token()
            self._limiter.acquire()
            try:
                response = self._post(body, token, len(indexes))
            except requests.RequestException as error:
                self._raise_if_not_transient(error)
                failure = self._redact(f"{type(error).__name__}: {error}")
                requested_wait = None
            else:
                status = response.status_code
                if status == 401:
                    if renewed_token:
                        raise self._unauthorized_error(response)
                    renewed_token = True
                    self._tokens.renew()
                    continue
                if status == 403:
                    raise self._forbidden_error(response)
                if status == 404:
                    raise self._not_found_error(response)
                if status != 429 and status not in RETRYABLE_STATUSES:
                    budget.record_response()
                    return response
                failure = describe_response(response)
                requested_wait = retry_after_seconds(response)
                if status == 500:
                    server_errors += 1

            # Only transient failures count as attempts; a 401 leads to one more request on top.
            attempts += 1
            budget.consecutive_failures += 1
            if server_errors >= REPEATED_SERVER_ERRORS_BEFORE_SPLIT and len(indexes) > 1:
                return response
            if attempts >= budget.max_attempts:
                budget.gave_up = True
                return f"upload failed after {_attempts(attempts)} (max_attempts={budget.max_attempts}); last error: {failure}"
            if budget.gave_up:
                return f"upload failed after {_attempts(attempts)}: an earlier request of this batch reached the retry bound and the service still fails; last error: {failure}"

            delay = requested_wait if requested_wait is not None else backoff_delay(
                budget.consecutive_failures,
                self.settings.backoff_base_seconds,
                self.settings.backoff_max_seconds,
                self._random,
            )
            if self._clock.monotonic() + delay > budget.deadline:
                budget.gave_up = True
                return (
                    f"upload failed after {_attempts(attempts)}: the next retry in {delay:.0f} s would pass "
                    f"max_retry_seconds={budget.max_retry_seconds:g}; last error: {failure}"
                )
            log.warning(
                "%s: %s (batch of %s); retrying in %.1f s (attempt %d of at most %d)",
                self.workspace.name, failure.rstrip("."), _objects(len(indexes)), delay, attempts + 1, budget.max_attempts,
            )
            self._clock.sleep(delay)

    def _post(self, body: str, token: str, count: int) -> requests.Response:
        """POST one request and log it: one INFO line, and the bodies at DEBUG."""
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        log.debug("%s: POST %s body: %s", self.workspace.name, self._path, _shorten(body, DEBUG_BODY_CHARS))
        started = time.perf_counter()
        try:
            response = self._session.post(
                self.endpoint.url, data=body.encode("utf-8"), headers=headers, timeout=self.settings.timeout_seconds, proxies=self._proxies
            )
        except requests.RequestException as error:
            log.info("%s: POST %s -> %s (%s, %.2f s)", self.workspace.name, self._path, type(error).__name__, _objects(count), time.perf_counter() - started)
            raise
        log.info("%s: POST %s -> %d (%s, %.2f s)", self.workspace.name, self._path, response.status_code, _objects(count), time.perf_counter() - started)
        if response.content:
            log.debug("%s: response body: %s", self.workspace.name, _shorten(response.text, DEBUG_BODY_CHARS))
        return response

    # Failures of the whole workspace

    def _raise_if_not_transient(self, error: requests.RequestException) -> None:
        """Raise WorkspaceError for request errors that a retry cannot fix."""
        if isinstance(error, requests.exceptions.ProxyError) and "407" in str(error):
            raise self._workspace_error(
                f"the proxy {self._proxy_display} requires authentication (HTTP 407): {self._redact(str(error))}",
                hint="put the proxy user and password into https_proxy, as http://user:password@proxy:port",
            ) from error
        if isinstance(error, requests.exceptions.SSLError):
            raise self._workspace_error(
                f"the TLS connection to {self._host()} failed: {error}",
                hint="set ca_bundle to the CA that issued the server's certificate, or check api_base_url",
            ) from error
        if isinstance(error, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)):
            raise self._workspace_error(
                f"invalid upload URL {self.endpoint.url}: {error}",
                hint="api_base_url must be an https:// URL such as https://api.ti.sentinel.azure.com",
            ) from error
        if not isinstance(error, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)):
            raise self._workspace_error(f"the request to {self._host()} failed: {type(error).__name__}: {error}", hint="run with -v for details") from error

    def _unauthorized_error(self, response: requests.Response) -> WorkspaceError:
        return self._workspace_error(
            f"Sentinel rejected the access token with HTTP 401 twice, the second time right after a new token was fetched: {describe_response(response)}",
            hint="check scope (the token audience must be Azure Resource Manager of the workspace's cloud, "
            "such as https://management.azure.com/.default) and that tenant_id is the tenant of the workspace",
        )

    def _forbidden_error(self, response: requests.Response) -> WorkspaceError:
        return self._workspace_error(
            f"Sentinel rejected the upload with HTTP 403: the application {self.workspace.client_id} lacks the "
            f"Microsoft Sentinel Contributor role on workspace {self.workspace.workspace_id}: {describe_response(response)}",
            hint="assign the Microsoft Sentinel Contributor role (or a role with Microsoft.SecurityInsights/threatintelligence/write) "
            "on the Log Analytics workspace to the application's service principal; a new assignment can take a few minutes to apply",
        )

    def _not_found_error(self, response: requests.Response) -> WorkspaceError:
        return self._workspace_error(
            f"Sentinel returned HTTP 404 for {self._path}: the workspace id {self.workspace.workspace_id} is unknown "
            f"or the upload path is wrong: {describe_response(response)}",
            hint="check workspace_id (the Log Analytics workspace ID, a GUID, not the workspace name or resource ID), cloud and api_base_url",
        )

    def _workspace_error(self, message: str, *, hint: str) -> WorkspaceError:
        return WorkspaceError(self._redact(f"workspace {self.workspace.name}: {message}"), hint=hint)

    def _redact(self, text: str) -> str:
        """Remove the proxy password from `text`, in case an error message repeats the proxy URL."""
        for password in self._proxy_passwords:
            text = text.replace(password, "***")
        return text

    def _host(self) -> str:
        return urlsplit(self.endpoint.url).netloc


def describe_response(response: requests.Response) -> str:
    """Return "HTTP <status> <code>: <message>" from a Sentinel or API Management error body."""
    detail = ""
    code = response.headers.get("x-ms-error-code")
    try:
        payload = response.json() if response.content else None
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            code = error.get("code") or code
            detail = str(error.get("message") or "")
        elif payload.get("message"):
            detail = str(payload["message"])
        elif isinstance(payload.get("errors"), list):
            detail = f"{len(payload['errors'])} record errors"
    elif response.content:
        detail = _shorten(response.text)
    if not detail:
        detail = response.reason or "no message"
    prefix = f"HTTP {response.status_code} {code}" if code else f"HTTP {response.status_code}"
    return f"{prefix}: {_shorten(detail)}"


def _objects(count: int) -> str:
    return "1 object" if count == 1 else f"{count} objects"


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def _record_index(entry: Any, count: int) -> int | None:
    if not isinstance(entry, dict):
        return None
    value = entry.get("recordIndex")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < count:
        return None
    return value


def _shorten(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
