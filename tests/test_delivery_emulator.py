"""Tests of the Sentinel emulator's run-time faults: status sequences, delays, connection resets,
whole-request refusals, token revocation, the rate-limit switch and the per-id upload log."""

from __future__ import annotations

import time
import uuid
from typing import Any

import msal
import pytest
import requests

from tests.emulators.clock import FakeClock
from tests.emulators.faults import Step
from tests.emulators.idp import IdentityProviderEmulator
from tests.emulators.sentinel import SentinelEmulator
from tests.emulators.tls import EmulatorTLS
from tests.emulators.tokens import SigningKey

SECRET = "emulator-fault-secret-2b9c"
SOURCE = "MISP"
ARM_SCOPE = "https://management.azure.com/.default"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> EmulatorTLS:
    return EmulatorTLS.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def idp(tls: EmulatorTLS, signing_key: SigningKey, clock: FakeClock):
    with IdentityProviderEmulator(tls=tls, clock=clock, signing_key=signing_key) as server:
        yield server


@pytest.fixture
def tenant_and_client(idp: IdentityProviderEmulator) -> tuple[str, str]:
    tenant, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    idp.register_client(tenant, client_id, secret=SECRET)
    return tenant, client_id


@pytest.fixture
def sentinel(tls: EmulatorTLS, signing_key: SigningKey, clock: FakeClock):
    with SentinelEmulator(tls=tls, signing_key=signing_key, clock=clock, wall_clock=clock) as server:
        yield server


@pytest.fixture
def http(tls: EmulatorTLS):
    session = requests.Session()
    session.trust_env = False
    session.verify = str(tls.ca_bundle_path)
    yield session
    session.close()


@pytest.fixture
def workspace(sentinel: SentinelEmulator, tenant_and_client: tuple[str, str]) -> str:
    return sentinel.add_workspace(str(uuid.uuid4()), [tenant_and_client[1]])


def new_token(idp: IdentityProviderEmulator, http: requests.Session, tenant_and_client: tuple[str, str]) -> str:
    tenant, client_id = tenant_and_client
    application = msal.ConfidentialClientApplication(
        client_id, client_credential=SECRET, authority=idp.authority(tenant), instance_discovery=False, http_client=http
    )
    result = application.acquire_token_for_client(scopes=[ARM_SCOPE])
    assert "access_token" in result, result
    return result["access_token"]


@pytest.fixture
def token(idp: IdentityProviderEmulator, http: requests.Session, tenant_and_client: tuple[str, str]) -> str:
    return new_token(idp, http, tenant_and_client)


def indicator(number: int) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, f'emulator-fault-{number}')}",
        "created": "2024-03-01T10:00:00.000Z",
        "modified": "2024-03-01T10:00:00.000Z",
        "pattern": f"[ipv4-addr:value = '198.51.100.{number % 250}']",
        "pattern_type": "stix",
        "valid_from": "2024-03-01T10:00:00Z",
    }


def upload(http: requests.Session, sentinel: SentinelEmulator, workspace: str, token: str, objects: list[dict], timeout: float = 10) -> requests.Response:
    return http.post(
        sentinel.upload_url(workspace),
        json={"sourcesystem": SOURCE, "stixobjects": objects},
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
    )


def statuses(sentinel: SentinelEmulator) -> list[int]:
    return [entry.status for entry in sentinel.request_log]


# Status sequences


def test_sequence_scripts_consecutive_requests(http, sentinel, workspace, token):
    sentinel.inject_sequence([503, None, 429, "drop", "drop-after", None])
    outcomes = []

    for number in range(6):
        try:
            outcomes.append(upload(http, sentinel, workspace, token, [indicator(number)]).status_code)
        except requests.ConnectionError:
            outcomes.append("reset")

    assert outcomes == [503, 200, 429, "reset", "reset", 200]
    assert statuses(sentinel) == [503, 200, 429, 0, 0, 200]
    assert set(sentinel.holdings(workspace)) == {indicator(n)["id"] for n in (1, 4, 5)}
    assert sentinel.pending_faults() == 0


def test_sequence_keeps_order_of_kinds(http, sentinel, workspace, token):
    sentinel.drop_connection(after_processing=True)
    sentinel.inject(503)

    with pytest.raises(requests.ConnectionError):
        upload(http, sentinel, workspace, token, [indicator(0)])
    second = upload(http, sentinel, workspace, token, [indicator(1)])

    assert second.status_code == 503
    assert set(sentinel.holdings(workspace)) == {indicator(0)["id"]}


def test_sequence_rejects_unknown_step(sentinel):
    with pytest.raises(ValueError, match="unknown sequence step"):
        sentinel.inject_sequence(["slow"])


def test_sequence_path_filter(http, sentinel, workspace, token):
    other = sentinel.add_workspace(str(uuid.uuid4()), [])
    sentinel.inject_sequence([500], path_contains=workspace)

    unaffected = upload(http, sentinel, other, token, [indicator(0)])
    affected = upload(http, sentinel, workspace, token, [indicator(0)])

    assert unaffected.status_code == 403
    assert affected.status_code == 500


def test_sequence_accepts_step_objects(http, sentinel, workspace, token):
    sentinel.inject_sequence([Step(delay_seconds=0.05, delay_after_processing=True, reset_after_processing=True)])

    with pytest.raises(requests.ConnectionError):
        upload(http, sentinel, workspace, token, [indicator(0)])

    assert set(sentinel.holdings(workspace)) == {indicator(0)["id"]}


# Delays


def test_delay_before_processing_still_stores(http, sentinel, workspace, token):
    sentinel.delay(0.4)

    with pytest.raises(requests.Timeout):
        upload(http, sentinel, workspace, token, [indicator(0)], timeout=0.1)
    sentinel.wait_idle()

    assert statuses(sentinel) == [200]
    assert set(sentinel.holdings(workspace)) == {indicator(0)["id"]}


def test_delay_after_processing_stores_first(http, sentinel, workspace, token):
    sentinel.delay(0.4, after_processing=True)

    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        upload(http, sentinel, workspace, token, [indicator(0)], timeout=0.2)

    assert time.monotonic() - started < 0.4
    assert set(sentinel.holdings(workspace)) == {indicator(0)["id"]}


def test_delay_rejects_negative_seconds(sentinel):
    with pytest.raises(ValueError, match="negative"):
        sentinel.delay(-1)


# Whole-request refusals and the upload log


def test_reject_batches_fails_whole_request(http, sentinel, workspace, token):
    bad = indicator(3)
    sentinel.reject_batches({bad["id"]}, status=400, count=2)

    first = upload(http, sentinel, workspace, token, [indicator(1), bad, indicator(2)])
    second = upload(http, sentinel, workspace, token, [bad])
    third = upload(http, sentinel, workspace, token, [bad])
    clean = upload(http, sentinel, workspace, token, [indicator(1)])

    assert first.status_code == 400
    assert "errors" not in first.json()
    assert second.status_code == 400
    assert third.status_code == 200
    assert clean.status_code == 200
    assert set(sentinel.holdings(workspace)) == {bad["id"], indicator(1)["id"]}


def test_reject_batches_with_500(http, sentinel, workspace, token):
    sentinel.reject_batches(lambda stix_object: "198.51.100.7" in stix_object.get("pattern", ""), status=500)

    response = upload(http, sentinel, workspace, token, [indicator(6), indicator(7)])
    sentinel.clear_faults()
    after_clear = upload(http, sentinel, workspace, token, [indicator(6), indicator(7)])

    assert response.status_code == 500
    assert after_clear.status_code == 200


def test_upload_log_lists_every_attempt(http, sentinel, workspace, token):
    first, second = indicator(1), indicator(2)
    sentinel.reject_records({second["id"]}, message="Rejected by the test.", count=1)

    upload(http, sentinel, workspace, token, [first, second])
    upload(http, sentinel, workspace, token, [second])
    log = sentinel.upload_log(workspace)

    assert [record.accepted for record in log[first["id"]]] == [True]
    assert [record.accepted for record in log[second["id"]]] == [False, True]
    assert log[second["id"]][0].messages == ("Rejected by the test.",)
    sequences = [record.sequence for records in log.values() for record in records]
    assert sorted(sequences) == [1, 2, 3]
    assert sentinel.upload_sequence == 3


def test_upload_log_skips_refused_requests(http, sentinel, workspace, token):
    sentinel.reject_batches({indicator(1)["id"]})

    upload(http, sentinel, workspace, token, [indicator(1)])

    assert sentinel.upload_log(workspace) == {}
    assert sentinel.upload_sequence == 0


# Tokens and the rate limit


def test_revoked_token_gets_401(http, sentinel, workspace, token, idp, tenant_and_client):
    upload(http, sentinel, workspace, token, [indicator(0)])

    sentinel.revoke_tokens()
    rejected = upload(http, sentinel, workspace, token, [indicator(1)])
    # A new MSAL application has its own cache, so it fetches a new token.
    renewed = upload(http, sentinel, workspace, new_token(idp, http, tenant_and_client), [indicator(1)])

    assert rejected.status_code == 401
    assert rejected.json()["message"] == "Unauthorized. Access token is missing or invalid."
    assert sentinel.request_log[-2].detail == "token revoked"
    assert renewed.status_code == 200


def test_rate_limit_switched_off(http, sentinel, workspace, token):
    sentinel.configure_rate_limit(None)

    results = [upload(http, sentinel, workspace, token, [indicator(n)]).status_code for n in range(105)]

    assert results == [200] * 105


def test_rate_limit_scaled_window(http, sentinel, workspace, token):
    sentinel.configure_rate_limit(2, window=0.2, clock=time.monotonic)

    burst = [upload(http, sentinel, workspace, token, [indicator(n)]).status_code for n in range(3)]
    time.sleep(0.25)
    after_window = upload(http, sentinel, workspace, token, [indicator(9)]).status_code

    assert burst == [200, 200, 429]
    assert after_window == 200
