"""Tests of the Sentinel client: MSAL tokens, pacing, retries, splits and per-record results.

The client talks HTTPS to the identity-provider and Sentinel emulators on 127.0.0.1 through the real
msal and requests. One fake clock drives the client's waits, the emulators' rate-limit window and
the token expiry, so no test waits in real time.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import pytest
import requests

from misp2sentinel.clock import Clock
from misp2sentinel.config import SentinelSettings, Workspace
from misp2sentinel.errors import WorkspaceError
from misp2sentinel.sentinel.auth import TokenProvider, TokenProviders, identity_key, make_session
from misp2sentinel.sentinel.client import LEGACY_PUBLIC_BASE_URL, RecordResult, SentinelClient, upload_endpoint
from misp2sentinel.sentinel.pacing import RateLimiter, backoff_delay, retry_after_seconds
from tests.emulators.base import Request, Response
from tests.emulators.clock import FakeClock
from tests.emulators.idp import IdentityProviderEmulator
from tests.emulators.sentinel import SentinelEmulator
from tests.emulators.tls import EmulatorTLS
from tests.emulators.tokens import SigningKey
from tests.sync_stack import PROXY_AND_CA_VARIABLES

SECRET = "s3cret-value-that-must-never-be-shown"


# Waits are deterministic: every jitter draw is 0.5, so each backoff waits three quarters of its ceiling.
HALF = lambda: 0.5  # noqa: E731

SETTINGS = SentinelSettings(
    batch_size=100,
    requests_per_minute=100,
    timeout_seconds=5,
    max_attempts=4,
    backoff_base_seconds=2,
    backoff_max_seconds=30,
    max_retry_seconds=600,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_AND_CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)


class FakeRunClock(Clock):
    """The project's Clock on top of the emulators' FakeClock: `sleep` moves every time source."""

    def __init__(self, source: FakeClock) -> None:
        super().__init__()
        self.source = source
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.source()

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds > 0:
            self.source.advance(seconds)


class RejectingSentinel(SentinelEmulator):
    """The Sentinel emulator, plus a rejection of every request whose body contains `marker`.

    The rejection has no `errors` array, like a request-level 400 or 500, so the client can find the
    offending object only by splitting.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.marker: bytes | None = None
        self.rejection_status = 400
        self.rejected_requests = 0

    def dispatch(self, request: Request) -> Response:
        if self.marker is not None and self.marker in request.body:
            self.rejected_requests += 1
            code = "InvalidRequest" if self.rejection_status == 400 else "InternalServerError"
            return Response.json(self.rejection_status, {"error": {"code": code, "message": f"Rejected by the test ({self.rejection_status})."}})
        return super().dispatch(request)


@dataclass
class Azure:
    """A running identity provider and Sentinel with one app that may upload to one workspace."""

    idp: IdentityProviderEmulator
    sentinel: RejectingSentinel
    clock: FakeRunClock
    tenant_id: str
    client_id: str
    workspace_id: str
    workspace: Workspace
    session: requests.Session
    tokens: TokenProvider

    def client(
        self,
        settings: SentinelSettings = SETTINGS,
        *,
        workspace: Workspace | None = None,
        limiter: RateLimiter | None = None,
        **options: Any,
    ) -> SentinelClient:
        limiter = limiter or RateLimiter(settings.requests_per_minute, self.clock)
        options.setdefault("random_source", HALF)
        return SentinelClient(workspace or self.workspace, settings, self.session, self.tokens, limiter, self.clock, **options)

    def workspace_with(self, **changes: Any) -> Workspace:
        """Return a validated copy of the test workspace with `changes` applied."""
        return Workspace.model_validate({**self.workspace.model_dump(), **changes})

    def token_requests(self) -> int:
        return self.idp.token_request_counts()[self.client_id]

    def statuses(self) -> list[int]:
        return [entry.status for entry in self.sentinel.request_log]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> EmulatorTLS:
    return EmulatorTLS.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def make_azure(tls: EmulatorTLS, signing_key: SigningKey) -> Callable[..., Azure]:
    """Start both emulators with `sentinel_options` and build the workspace, session and token provider."""
    started: list[Any] = []

    def make(**sentinel_options: Any) -> Azure:
        source = FakeClock()
        idp = IdentityProviderEmulator(tls=tls, clock=source, signing_key=signing_key).start()
        started.append(idp)
        sentinel = RejectingSentinel(tls=tls, signing_key=signing_key, clock=source, wall_clock=source, **sentinel_options).start()
        started.append(sentinel)

        tenant_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
        idp.register_client(tenant_id, client_id, secret=SECRET)
        workspace_id = sentinel.add_workspace(str(uuid.uuid4()), [client_id])
        workspace = Workspace(
            name="soc",
            workspace_id=workspace_id,
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=SECRET,
            authority_host=idp.base_url,
            api_base_url=sentinel.base_url,
            ca_bundle=tls.ca_bundle_path,
        )
        session = make_session(workspace.ca_bundle, workspace.verify_tls)
        return Azure(idp, sentinel, FakeRunClock(source), tenant_id, client_id, workspace_id, workspace, session, TokenProvider(workspace, session))

    yield make
    for server in reversed(started):
        server.stop()


@pytest.fixture
def azure(make_azure: Callable[..., Azure]) -> Azure:
    return make_azure()


def indicator(number: int, **changes: Any) -> dict[str, Any]:
    """Return a valid STIX 2.1 indicator for 198.51.100.<number % 256>."""
    stix_object = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}",
        "created": "2024-01-01T00:00:00.000Z",
        "modified": "2024-01-02T00:00:00.000Z",
        "pattern": f"[ipv4-addr:value = '198.51.100.{number % 256}']",
        "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z",
    }
    stix_object.update(changes)
    return stix_object


def indicators(count: int) -> list[dict[str, Any]]:
    return [indicator(number) for number in range(count)]


def assert_all_ok(results: list[RecordResult], count: int) -> None:
    assert [result.index for result in results] == list(range(count))
    failures = [result for result in results if not result.ok]
    assert failures == []


# Tokens


def test_token_reused_across_batches(azure: Azure) -> None:
    client = azure.client()

    for _ in range(3):
        assert_all_ok(client.upload(indicators(10)), 10)

    assert azure.token_requests() == 1
    assert azure.statuses() == [200, 200, 200]
    assert len(azure.sentinel.holdings(azure.workspace_id)) == 30


def test_expired_token_renewed_once(azure: Azure) -> None:
    client = azure.client()
    assert_all_ok(client.upload(indicators(2)), 2)

    # The emulators see the token expire; MSAL, which checks expiry on the real clock, still serves it.
    azure.clock.source.advance(2 * 3600)
    assert_all_ok(client.upload(indicators(2)), 2)

    assert azure.statuses() == [200, 401, 200]
    assert azure.token_requests() == 2


def test_second_401_raises_workspace_error(azure: Azure) -> None:
    azure.sentinel.inject(401, count=2)

    with pytest.raises(WorkspaceError) as raised:
        azure.client().upload(indicators(2))

    assert "401" in str(raised.value)
    assert azure.statuses() == [401, 401]
    assert azure.token_requests() == 2


def test_token_reused_by_shared_provider(make_azure: Callable[..., Azure]) -> None:
    azure = make_azure()
    second_id = azure.sentinel.add_workspace(str(uuid.uuid4()), [azure.client_id])
    second = azure.workspace_with(name="second", workspace_id=second_id)
    providers = TokenProviders()

    first_provider = providers.provider_for(azure.workspace)
    second_provider = providers.provider_for(second)
    for workspace, provider in ((azure.workspace, first_provider), (second, second_provider)):
        client = SentinelClient(workspace, SETTINGS, azure.session, provider, RateLimiter(100, azure.clock), azure.clock)
        assert_all_ok(client.upload(indicators(3)), 3)

    assert second_provider is first_provider
    assert identity_key(second) == identity_key(azure.workspace)
    assert azure.token_requests() == 1


@pytest.mark.parametrize(
    ("change", "expected_code", "expected_hint"),
    [
        ("secret", "AADSTS7000215", "client_secret"),
        ("client", "AADSTS700016", "client_id"),
        ("tenant", "AADSTS90002", "tenant_id"),
    ],
)
def test_token_failure_names_entra_error(azure: Azure, change: str, expected_code: str, expected_hint: str) -> None:
    overrides = {
        "secret": {"client_secret": "wrong-" + SECRET},
        "client": {"client_id": str(uuid.uuid4())},
        "tenant": {"tenant_id": str(uuid.uuid4())},
    }[change]
    tokens = TokenProvider(azure.workspace_with(**overrides), azure.session)

    with pytest.raises(WorkspaceError) as raised:
        tokens.token()

    assert expected_code in raised.value.message
    assert expected_hint in raised.value.hint
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(
    ("status", "path_contains", "expected"),
    [
        (503, "/oauth2/v2.0/token", "token endpoint failed"),
        (500, "/v2.0/.well-known/openid-configuration", "OpenID discovery failed"),
    ],
)
def test_token_failure_on_idp_server_error(azure: Azure, status: int, path_contains: str, expected: str) -> None:
    azure.idp.inject(status, path_contains=path_contains)

    with pytest.raises(WorkspaceError) as raised:
        azure.tokens.token()

    assert expected in raised.value.message
    assert str(status) in raised.value.message
    assert "transient" in raised.value.hint


def test_token_failure_on_untrusted_certificate(azure: Azure) -> None:
    session = make_session(None, True)
    tokens = TokenProvider(azure.workspace, session)

    with pytest.raises(WorkspaceError) as raised:
        tokens.token()

    assert "ca_bundle" in raised.value.hint


def test_session_ignores_ca_bundle_variables(azure: Azure, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    missing = str(tmp_path / "missing-ca.pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", missing)
    monkeypatch.setenv("CURL_CA_BUNDLE", missing)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    session = make_session(azure.workspace.ca_bundle, True)
    tokens = TokenProvider(azure.workspace, session)
    client = SentinelClient(azure.workspace, SETTINGS, session, tokens, RateLimiter(100, azure.clock), azure.clock)

    assert_all_ok(client.upload(indicators(2)), 2)
    assert session.trust_env is False
    assert session.verify == str(azure.workspace.ca_bundle)


# Throttling and transient failures


def test_429_waits_for_retry_after_header(azure: Azure) -> None:
    azure.sentinel.inject(429, retry_after=7)

    results = azure.client().upload(indicators(3))

    assert_all_ok(results, 3)
    assert azure.clock.sleeps == [7.0]
    assert azure.statuses() == [429, 200]


def test_429_waits_for_message_without_header(make_azure: Callable[..., Azure]) -> None:
    azure = make_azure(retry_after_header=False)
    azure.sentinel.inject(429, retry_after=13)

    results = azure.client().upload(indicators(3))

    assert_all_ok(results, 3)
    assert azure.clock.sleeps == [13.0]
    assert azure.statuses() == [429, 200]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_then_success(azure: Azure, status: int) -> None:
    azure.sentinel.inject(status, count=1)

    results = azure.client().upload(indicators(1))

    assert_all_ok(results, 1)
    assert azure.clock.sleeps == [1.5]
    assert azure.statuses() == [status, 200]


def test_503_backoff_grows(azure: Azure) -> None:
    azure.sentinel.inject(503, count=3)

    results = azure.client().upload(indicators(4))

    assert_all_ok(results, 4)
    assert azure.clock.sleeps == [1.5, 3.0, 6.0]


def test_connection_reset_then_success(azure: Azure) -> None:
    azure.sentinel.drop_connection(count=1)

    results = azure.client().upload(indicators(2))

    assert_all_ok(results, 2)
    assert azure.statuses() == [0, 200]
    assert azure.clock.sleeps == [1.5]


def test_lost_response_resends_batch(azure: Azure) -> None:
    azure.sentinel.drop_connection(count=1, after_processing=True)
    objects = indicators(2)

    results = azure.client().upload(objects)

    assert_all_ok(results, 2)
    counts = azure.sentinel.upload_counts(azure.workspace_id)
    assert counts == {objects[0]["id"]: 2, objects[1]["id"]: 2}


def test_attempt_bound_fails_every_record(azure: Azure) -> None:
    azure.sentinel.inject(503, count=10)

    results = azure.client().upload(indicators(5))

    assert [result.ok for result in results] == [False] * 5
    for result in results:
        assert "HTTP 503" in result.message
        assert "4 attempts" in result.message
    assert azure.statuses() == [503] * 4


def test_time_bound_fails_every_record(azure: Azure) -> None:
    azure.sentinel.inject(429, retry_after=120)
    settings = SETTINGS.model_copy(update={"max_retry_seconds": 60})

    results = azure.client(settings).upload(indicators(3))

    assert [result.ok for result in results] == [False] * 3
    assert "HTTP 429" in results[0].message
    assert "max_retry_seconds" in results[0].message
    assert azure.clock.sleeps == []
    assert azure.statuses() == [429]


def test_repeated_500_isolates_object(azure: Azure) -> None:
    objects = indicators(8)
    objects[5]["description"] = "breaks-the-service"
    azure.sentinel.marker = b"breaks-the-service"
    azure.sentinel.rejection_status = 500
    settings = SETTINGS.model_copy(update={"max_attempts": 3})

    results = azure.client(settings).upload(objects)

    assert [result.ok for result in results] == [True] * 5 + [False] + [True] * 2
    assert "HTTP 500" in results[5].message
    assert len(azure.sentinel.holdings(azure.workspace_id)) == 7


def test_500_outage_bounded_across_splits(azure: Azure) -> None:
    azure.sentinel.inject(500, count=100)
    settings = SETTINGS.model_copy(update={"max_attempts": 3})

    results = azure.client(settings).upload(indicators(4))

    assert [result.ok for result in results] == [False] * 4
    assert all("HTTP 500" in result.message for result in results)
    # Parts [0-3] and [0, 1] get two attempts each before they are split, and [0] gets three (max_attempts).
    # After that [1] and [2, 3] get one attempt each, because the service still fails.
    assert [entry.object_count for entry in azure.sentinel.request_log] == [None] * 9


# Per-record results


@pytest.mark.parametrize("messages_key", ["errorMessages", "validationErrorMessages"])
def test_per_record_errors_both_keys(make_azure: Callable[..., Azure], messages_key: str) -> None:
    azure = make_azure(error_messages_key=messages_key)
    objects = indicators(6)
    del objects[1]["pattern"]
    azure.sentinel.reject_records({objects[4]["id"]}, message="Rejected by policy.")

    results = azure.client().upload(objects)

    assert [result.ok for result in results] == [True, False, True, True, False, True]
    assert results[1].message == "Error for Property=pattern: Required property is missing. Actual value: NULL."
    assert results[4].message == "Rejected by policy."
    assert azure.statuses() == [200]


def test_all_invalid_400_reads_errors(azure: Azure) -> None:
    objects = indicators(4)
    for stix_object in objects:
        del stix_object["pattern_type"]

    results = azure.client().upload(objects)

    assert [result.ok for result in results] == [False] * 4
    assert all("pattern_type" in result.message for result in results)
    assert azure.statuses() == [400]


def test_400_errors_resend_unlisted(azure: Azure) -> None:
    body = {"errors": [{"recordIndex": 0, "errorMessages": ["Error for Property=pattern: invalid."]}]}
    azure.sentinel.inject(400, body=body)
    objects = indicators(3)

    results = azure.client().upload(objects)

    assert [result.ok for result in results] == [False, True, True]
    assert results[0].message == "Error for Property=pattern: invalid."
    assert [entry.object_count for entry in azure.sentinel.request_log] == [None, 2]
    assert set(azure.sentinel.holdings(azure.workspace_id)) == {objects[1]["id"], objects[2]["id"]}


def test_400_without_errors_isolates_one_of_100(azure: Azure) -> None:
    objects = indicators(100)
    objects[37]["description"] = "rejected-by-the-service"
    azure.sentinel.marker = b"rejected-by-the-service"

    results = azure.client().upload(objects)

    assert [result.index for result in results if not result.ok] == [37]
    assert "HTTP 400" in results[37].message
    assert "Rejected by the test" in results[37].message
    assert len(azure.sentinel.holdings(azure.workspace_id)) == 99
    # One rejection per level of the halving: parts of 100, 50, 25, 13, 6 and 3 objects, then the object alone.
    assert azure.sentinel.rejected_requests == 7


def test_413_isolates_oversized_object(make_azure: Callable[..., Azure]) -> None:
    azure = make_azure(max_body_bytes=64 * 1024)
    objects = indicators(20)
    objects[3]["description"] = "x" * 100_000

    results = azure.client().upload(objects)

    assert [result.index for result in results if not result.ok] == [3]
    assert "HTTP 413" in results[3].message
    assert len(azure.sentinel.holdings(azure.workspace_id)) == 19


def test_upload_splits_long_list_into_batches(azure: Azure) -> None:
    settings = SETTINGS.model_copy(update={"batch_size": 10})

    results = azure.client(settings).upload(indicators(25))

    assert_all_ok(results, 25)
    assert [entry.object_count for entry in azure.sentinel.request_log] == [10, 10, 5]


def test_empty_list_sends_nothing(azure: Azure) -> None:
    assert azure.client().upload([]) == []
    assert azure.statuses() == []


# Workspace failures


def test_403_names_missing_role(azure: Azure) -> None:
    azure.sentinel.revoke_role(azure.workspace_id, azure.client_id)

    with pytest.raises(WorkspaceError) as raised:
        azure.client().upload(indicators(2))

    assert "Microsoft Sentinel Contributor" in raised.value.message
    assert azure.workspace_id in raised.value.message
    assert "role" in raised.value.hint


def test_404_names_unknown_workspace(azure: Azure) -> None:
    unknown_id = str(uuid.uuid4())
    workspace = azure.workspace_with(workspace_id=unknown_id)

    with pytest.raises(WorkspaceError) as raised:
        azure.client(workspace=workspace).upload(indicators(2))

    assert unknown_id in raised.value.message
    assert "unknown" in raised.value.message
    assert "workspace_id" in raised.value.hint


# Rate limiting


def test_limiter_uses_full_allowance_without_429(make_azure: Callable[..., Azure]) -> None:
    azure = make_azure(rate_limit=5, rate_window=60)
    settings = SETTINGS.model_copy(update={"requests_per_minute": 5})
    client = azure.client(settings)

    for _ in range(5):
        assert_all_ok(client.upload(indicators(1)), 1)
    sleeps_after_allowance = list(azure.clock.sleeps)
    for _ in range(7):
        assert_all_ok(client.upload(indicators(1)), 1)

    assert sleeps_after_allowance == []
    assert len(azure.clock.sleeps) == 2
    assert all(60 <= wait <= 60.01 for wait in azure.clock.sleeps)
    assert azure.sentinel.throttled_count == 0
    assert azure.statuses() == [200] * 12


def test_limiter_sliding_window() -> None:
    source = FakeClock(start=1000.0)
    clock = FakeRunClock(source)
    limiter = RateLimiter(3, clock, window_seconds=10)
    starts = []

    for advance in (0, 4, 4, 1, 0):
        source.advance(advance)
        limiter.acquire()
        starts.append(source() - 1000.0)

    # The fourth request waits for the first to leave the window, the fifth for the second.
    assert starts[:3] == [0, 4, 8]
    assert starts[3] == pytest.approx(10.001)
    assert starts[4] == pytest.approx(14.001)


def test_limiter_keeps_float_clock_moving() -> None:
    source = FakeClock()
    clock = FakeRunClock(source)
    limiter = RateLimiter(1, clock, window_seconds=0.1)

    for _ in range(50):
        limiter.acquire()

    assert len(clock.sleeps) == 49
    assert all(wait > 0 for wait in clock.sleeps)


# Legacy API


def test_legacy_upload_indicators_value(azure: Azure) -> None:
    client = azure.client(api="legacy", legacy_api_base_url=azure.sentinel.base_url)

    results = client.upload(indicators(3))

    assert_all_ok(results, 3)
    entry = azure.sentinel.request_log[0]
    assert entry.api == "upload-indicators"
    assert entry.path == f"/{azure.workspace_id}/threatintelligence:upload-indicators"
    assert client.endpoint.array_field == "value"


def test_legacy_v2_on_custom_base_url(azure: Azure) -> None:
    client = azure.client(api="legacy")

    results = client.upload(indicators(3))

    assert_all_ok(results, 3)
    entry = azure.sentinel.request_log[0]
    assert entry.api == "upload-indicators-v2"
    assert entry.path == f"/workspaces/{azure.workspace_id}/threatintelligenceindicators:upload"


def test_legacy_usgov_uses_v2(azure: Azure) -> None:
    # The emulator accepts only the public cloud's token audience, so the scope stays public.
    workspace = azure.workspace_with(cloud="usgov", scope="https://management.azure.com/.default")
    client = azure.client(workspace=workspace, api="legacy")
    objects = indicators(2) + [{"type": "attack-pattern", "id": f"attack-pattern--{uuid.uuid4()}", "name": "Phishing"}]

    results = client.upload(objects)

    assert [result.ok for result in results] == [True, True, False]
    assert "type" in results[2].message
    assert azure.sentinel.request_log[0].api == "upload-indicators-v2"


def test_legacy_endpoints_of_cloud_presets() -> None:
    common = {"workspace_id": str(uuid.uuid4()), "tenant_id": str(uuid.uuid4()), "client_id": str(uuid.uuid4()), "client_secret": SECRET}
    public = Workspace(name="public", **common)
    usgov = Workspace(name="usgov", cloud="usgov", **common)
    china = Workspace(name="china", cloud="china", **common)
    workspace_id = common["workspace_id"]

    assert upload_endpoint(public).url == f"https://api.ti.sentinel.azure.com/workspaces/{workspace_id}/threat-intelligence-stix-objects:upload?api-version=2024-02-01-preview"
    assert upload_endpoint(public, "legacy").url == f"{LEGACY_PUBLIC_BASE_URL}/{workspace_id}/threatintelligence:upload-indicators?api-version=2022-07-01"
    assert upload_endpoint(public, "legacy").array_field == "value"
    assert upload_endpoint(usgov, "legacy").url == f"https://api.ti.sentinel.azure.us/workspaces/{workspace_id}/threatintelligenceindicators:upload?api-version=2022-07-01"
    assert upload_endpoint(china, "legacy").url == f"https://api.ti.sentinel.azure.cn/workspaces/{workspace_id}/threatintelligenceindicators:upload?api-version=2022-07-01"
    assert upload_endpoint(china, "legacy").array_field == "indicators"


# Secrets


def test_secret_never_in_errors_or_logs(azure: Azure, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    messages = []
    client = azure.client()
    token = azure.tokens.token()

    azure.sentinel.inject(503)
    azure.sentinel.inject(401, count=2)
    with pytest.raises(WorkspaceError) as raised:
        client.upload(indicators(2))
    messages.append(str(raised.value))

    wrong = azure.workspace_with(client_secret="x" + SECRET)
    with pytest.raises(WorkspaceError) as raised:
        TokenProvider(wrong, azure.session).token()
    messages.append(str(raised.value))

    assert caplog.records
    for text in messages + [caplog.text]:
        assert SECRET not in text
        assert token not in text


# Pacing helpers


class FakeResponse:
    def __init__(self, headers: dict[str, str] | None = None, text: str = "") -> None:
        self.headers = requests.structures.CaseInsensitiveDict(headers or {})
        self.text = text


@pytest.mark.parametrize(
    ("headers", "text", "expected"),
    [
        ({"Retry-After": "7"}, "", 7.0),
        ({"retry-after": "7"}, "Try again in 45 seconds.", 7.0),
        ({"Retry-After": "Wed, 21 Oct 2026 07:28:30 GMT", "Date": "Wed, 21 Oct 2026 07:28:00 GMT"}, "", 30.0),
        ({"Retry-After": "Wed, 21 Oct 2026 07:27:00 GMT", "Date": "Wed, 21 Oct 2026 07:28:00 GMT"}, "", 0.0),
        ({}, '{"statusCode":429,"message":"Rate limit is exceeded. Try again in 45 seconds."}', 45.0),
        ({"Retry-After": "soon"}, "Try again in 3 seconds.", 3.0),
        ({}, '{"statusCode":429}', None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], text: str, expected: float | None) -> None:
    assert retry_after_seconds(FakeResponse(headers, text)) == expected


def test_retry_after_date_without_date_header() -> None:
    now = datetime(2026, 10, 21, 7, 28, 0, tzinfo=timezone.utc)
    response = FakeResponse({"Retry-After": "Wed, 21 Oct 2026 07:28:10 GMT"})

    assert retry_after_seconds(response, now=now) == 10.0


def test_backoff_delay_bounds() -> None:
    assert backoff_delay(1, 2.0, 30.0, lambda: 0.5) == 1.5
    assert backoff_delay(3, 2.0, 30.0, lambda: 0.5) == 6.0
    assert backoff_delay(10, 2.0, 30.0, lambda: 0.999) == pytest.approx(29.985)
    assert backoff_delay(5000, 2.0, 30.0, lambda: 0.0) == 15.0
    with pytest.raises(ValueError):
        backoff_delay(0, 2.0, 30.0, lambda: 0.5)


def test_importing_package_skips_msal() -> None:
    import subprocess
    import sys

    code = "import sys, misp2sentinel.sentinel.client; print('msal' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert output.strip() == "False"
