"""Tests of the identity-provider and Sentinel upload emulators.

The real MSAL `ConfidentialClientApplication` gets its tokens from the IdP emulator over
HTTPS, and `requests` uploads to the Sentinel emulator, both verified against a test CA.
Time moves only through a FakeClock; nothing sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jwt
import msal
import pytest
import requests

from tests.emulators.clock import FakeClock
from tests.emulators.idp import CLIENT_ASSERTION_TYPE, IdentityProviderEmulator
from tests.emulators.launcher import run_sentinel
from tests.emulators.sentinel import SentinelEmulator
from tests.emulators.sentinel import API_UPLOAD_INDICATORS, API_UPLOAD_INDICATORS_V2
from tests.emulators.tls import EmulatorTLS
from tests.emulators.tokens import SigningKey

TENANT = "3f1d2c4b-5a69-4e7d-8c0b-1a2b3c4d5e6f"
CLIENT_ID = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
SECRET = "emulator-test-secret"
OTHER_CLIENT_ID = "0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5"
OTHER_SECRET = "other-test-secret"
WORKSPACE = "5e4d3c2b-1a09-4f8e-b7d6-c5b4a3928170"
ARM_SCOPE = "https://management.azure.com/.default"
SOURCE = "MISP test"
NAMESPACE = uuid.UUID("2f0c5b9e-4a1d-4c3b-9e8f-7a6b5c4d3e2f")
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent

ENVIRONMENT_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch):
    """Keep CA-bundle and proxy settings from redirecting requests away from 127.0.0.1."""
    for name in ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return EmulatorTLS.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def signing_key():
    return SigningKey.generate()


@pytest.fixture(scope="module")
def client_certificate(tls):
    return tls.issue_client_certificate("misp2sentinel test client")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def idp(tls, signing_key, clock, client_certificate):
    emulator = IdentityProviderEmulator(tls=tls, clock=clock, signing_key=signing_key)
    emulator.register_client(TENANT, CLIENT_ID, secret=SECRET, certificate_pem=client_certificate.certificate_pem)
    emulator.register_client(TENANT, OTHER_CLIENT_ID, secret=OTHER_SECRET)
    with emulator:
        yield emulator


@pytest.fixture
def make_sentinel(tls, signing_key, clock):
    started = []

    def make(**options):
        emulator = SentinelEmulator(tls=tls, signing_key=signing_key, clock=clock, wall_clock=clock, **options)
        emulator.add_workspace(WORKSPACE, allowed_client_ids=[CLIENT_ID])
        started.append(emulator.start())
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def sentinel(make_sentinel):
    return make_sentinel()


@pytest.fixture
def http(tls):
    session = requests.Session()
    session.trust_env = False
    session.verify = str(tls.ca_bundle_path)
    yield session
    session.close()


def make_msal_app(idp, http, credential=SECRET, client_id=CLIENT_ID, tenant=TENANT):
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=credential,
        authority=idp.authority(tenant),
        instance_discovery=False,
        http_client=http,
    )


@pytest.fixture
def token(idp, http):
    result = make_msal_app(idp, http).acquire_token_for_client(scopes=[ARM_SCOPE])
    assert "access_token" in result, result
    return result["access_token"]


def request_token(http, idp, *, client_id=CLIENT_ID, secret=SECRET, scope=ARM_SCOPE, tenant=TENANT, **extra):
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": scope}
    form.update(extra)
    return http.post(idp.token_endpoint(tenant), data={k: v for k, v in form.items() if v is not None}, timeout=10)


def indicator(number=0, **overrides):
    stix_object = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid5(NAMESPACE, str(number))}",
        "created": "2024-03-01T10:00:00.000Z",
        "modified": "2024-03-01T10:00:00.000Z",
        "name": f"IP {number}",
        "pattern": f"[ipv4-addr:value = '198.51.100.{number % 250}']",
        "pattern_type": "stix",
        "valid_from": "2024-03-01T10:00:00Z",
        "valid_until": "2024-06-01T10:00:00Z",
        "confidence": 75,
        "labels": ["misp"],
    }
    stix_object.update(overrides)
    return {key: value for key, value in stix_object.items() if value is not None}


def upload(http, sentinel, token, objects, *, sourcesystem=SOURCE, workspace=WORKSPACE, api="stix-objects", body=None):
    array_field = {"stix-objects": "stixobjects", API_UPLOAD_INDICATORS: "value", API_UPLOAD_INDICATORS_V2: "indicators"}[api]
    payload = body if body is not None else {"sourcesystem": sourcesystem, array_field: objects}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.post(sentinel.upload_url(workspace, api), json=payload, headers=headers, timeout=10)


# TLS


def test_tls_ca_bundle_verifies_both_names(tls, sentinel):
    assert tls.ca_bundle_path.read_text().startswith("-----BEGIN CERTIFICATE-----")

    for server_name in ("127.0.0.1", "localhost"):
        with socket.create_connection(("127.0.0.1", sentinel.port), timeout=5) as raw:
            with tls.client_context().wrap_socket(raw, server_hostname=server_name) as connection:
                assert connection.version() in ("TLSv1.2", "TLSv1.3")


def test_tls_untrusted_client_fails(sentinel, token):
    session = requests.Session()
    session.trust_env = False

    with pytest.raises(requests.exceptions.SSLError):
        session.post(sentinel.upload_url(WORKSPACE), json={}, timeout=10)


def test_tls_ca_reused_from_directory(tls):
    reloaded = EmulatorTLS.create(tls.directory)

    assert reloaded.ca_bundle_path.read_bytes() == tls.ca_bundle_path.read_bytes()


def test_emulator_rejects_non_loopback_host(tls, signing_key):
    with pytest.raises(ValueError, match="loopback"):
        SentinelEmulator(host="0.0.0.0", tls=tls, signing_key=signing_key)


# Identity provider: discovery and MSAL


def test_discovery_document_advertises_https(idp, http):
    response = http.get(f"{idp.authority(TENANT)}/v2.0/.well-known/openid-configuration", timeout=10)

    assert response.status_code == 200
    document = response.json()
    assert document["token_endpoint"] == f"https://127.0.0.1:{idp.port}/{TENANT}/oauth2/v2.0/token"
    assert document["authorization_endpoint"].startswith(f"https://127.0.0.1:{idp.port}/{TENANT}/")
    assert document["issuer"] == f"https://127.0.0.1:{idp.port}/{TENANT}/v2.0"


def test_discovery_unknown_tenant_is_400(idp, http):
    response = http.get(f"{idp.authority('no-such-tenant')}/v2.0/.well-known/openid-configuration", timeout=10)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_tenant"
    assert response.json()["error_codes"] == [90002]


def test_msal_secret_gets_arm_token(idp, http, clock, signing_key):
    result = make_msal_app(idp, http).acquire_token_for_client(scopes=[ARM_SCOPE])

    assert result["token_type"] == "Bearer"
    assert result["expires_in"] == 3599
    assert result["token_source"] == "identity_provider"
    claims = jwt.decode(result["access_token"], signing_key.public_key, algorithms=["RS256"], options={"verify_aud": False, "verify_exp": False})
    assert claims["aud"] == "https://management.azure.com"
    assert claims["appid"] == CLIENT_ID
    assert claims["appidacr"] == "1"
    assert claims["tid"] == TENANT
    assert claims["oid"] == idp.client(TENANT, CLIENT_ID).object_id
    assert claims["sub"] == claims["oid"]
    assert claims["exp"] == int(clock()) + 3599


@pytest.mark.parametrize("credential_form", ["thumbprint", "public_certificate"])
def test_msal_certificate_gets_token(idp, http, client_certificate, signing_key, credential_form):
    # With a thumbprint MSAL signs RS256 with x5t; with only the certificate, PS256 with x5t#S256.
    if credential_form == "thumbprint":
        credential = {"private_key": client_certificate.private_key_pem, "thumbprint": client_certificate.sha1_thumbprint}
    else:
        credential = {"private_key": client_certificate.private_key_pem, "public_certificate": client_certificate.certificate_pem}

    result = make_msal_app(idp, http, credential=credential).acquire_token_for_client(scopes=[ARM_SCOPE])

    assert "access_token" in result, result
    claims = jwt.decode(result["access_token"], signing_key.public_key, algorithms=["RS256"], options={"verify_aud": False, "verify_exp": False})
    assert claims["appidacr"] == "2"
    assert idp.token_requests[-1].credential == "certificate"


def test_msal_cache_reuses_token(idp, http):
    app = make_msal_app(idp, http)

    first = app.acquire_token_for_client(scopes=[ARM_SCOPE])
    second = app.acquire_token_for_client(scopes=[ARM_SCOPE])

    assert first["token_source"] == "identity_provider"
    assert second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]
    assert idp.token_request_counts()[CLIENT_ID] == 1


def test_msal_wrong_secret_gets_entra_error(idp, http):
    result = make_msal_app(idp, http, credential="wrong").acquire_token_for_client(scopes=[ARM_SCOPE])

    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert result["error_codes"] == [7000215]
    for name in ("timestamp", "trace_id", "correlation_id"):
        assert result[name]
    assert idp.token_requests[-1].status == 401


def test_msal_unregistered_certificate_rejected(idp, http, tls):
    stranger = tls.issue_client_certificate("not registered")
    credential = {"private_key": stranger.private_key_pem, "thumbprint": stranger.sha1_thumbprint}

    result = make_msal_app(idp, http, credential=credential).acquire_token_for_client(scopes=[ARM_SCOPE])

    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [700027]
    assert stranger.sha1_thumbprint.upper() in result["error_description"]


def test_msal_unknown_client_rejected(idp, http):
    result = make_msal_app(idp, http, client_id="unknown-app").acquire_token_for_client(scopes=[ARM_SCOPE])

    assert result["error"] == "unauthorized_client"
    assert result["error_codes"] == [700016]


def test_idp_fault_500_then_recovers(idp, http):
    idp.inject(500)

    # msal 1.39 raises on a 5xx token response instead of returning the error dict.
    with pytest.raises(msal.exceptions.MsalServiceError, match="500"):
        make_msal_app(idp, http).acquire_token_for_client(scopes=[ARM_SCOPE])
    # MSAL replays a 5xx from its throttling cache for the same app, so a fresh app retries.
    recovered = make_msal_app(idp, http).acquire_token_for_client(scopes=[ARM_SCOPE])

    assert "access_token" in recovered
    assert [record.status for record in idp.token_requests] == [500, 200]


def test_idp_fault_429_sends_retry_after(idp, http):
    idp.inject(429, retry_after=7)

    throttled = request_token(http, idp)
    after = request_token(http, idp)

    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "7"
    assert throttled.json()["error"] == "temporarily_unavailable"
    assert after.status_code == 200


def test_idp_drop_connection(idp, http):
    idp.drop_connection()

    with pytest.raises(requests.exceptions.ConnectionError):
        request_token(http, idp)
    assert request_token(http, idp).status_code == 200


def test_idp_ignores_unknown_form_fields(idp, http):
    response = request_token(http, idp, client_info="1", unexpected="value")

    assert response.status_code == 200
    assert response.json()["expires_in"] == 3599


def test_idp_accepts_basic_authentication(idp, http):
    response = http.post(
        idp.token_endpoint(TENANT),
        data={"grant_type": "client_credentials", "scope": ARM_SCOPE},
        auth=(CLIENT_ID, SECRET),
        timeout=10,
    )

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("changes", "status", "error", "code"),
    [
        ({"grant_type": None}, 400, "invalid_request", 900144),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        ({"client_id": None}, 400, "invalid_request", 900144),
        ({"scope": None}, 400, "invalid_request", 900144),
        ({"scope": "https://management.azure.com/user_impersonation"}, 400, "invalid_scope", 1002012),
        ({"scope": f"{ARM_SCOPE} https://graph.microsoft.com/.default"}, 400, "invalid_scope", 70011),
        ({"client_secret": None}, 401, "invalid_client", 7000218),
        ({"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        ({"client_id": "unknown-app"}, 400, "unauthorized_client", 700016),
    ],
)
def test_idp_token_request_errors(idp, http, changes, status, error, code):
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET, "scope": ARM_SCOPE}
    form.update(changes)

    response = http.post(idp.token_endpoint(TENANT), data={k: v for k, v in form.items() if v is not None}, timeout=10)

    assert response.status_code == status
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")


def test_idp_unknown_tenant_token_rejected(idp, http):
    response = request_token(http, idp, tenant="other-tenant")

    assert response.status_code == 400
    assert response.json()["error_codes"] == [90002]


def test_idp_disabled_client_rejected(idp, http):
    idp.client(TENANT, CLIENT_ID).enabled = False

    response = request_token(http, idp)

    assert response.status_code == 400
    assert response.json()["error_codes"] == [7000112]


def sign_assertion(idp, certificate, **claim_changes):
    now = time.time()
    claims = {
        "aud": idp.token_endpoint(TENANT),
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
    }
    claims.update(claim_changes)
    return jwt.encode(claims, certificate.private_key_pem, algorithm="RS256", headers={"x5t": certificate.x5t})


def post_assertion(http, idp, assertion):
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "scope": ARM_SCOPE,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    return http.post(idp.token_endpoint(TENANT), data=form, timeout=10)


def test_assertion_float_times_accepted(idp, http, client_certificate):
    assertion = sign_assertion(idp, client_certificate, iat=time.time() + 0.25, exp=time.time() + 599.75)

    response = post_assertion(http, idp, assertion)

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("claim_changes", "code"),
    [
        ({"aud": "https://127.0.0.1/other/oauth2/v2.0/token"}, 50027),
        ({"iss": "someone-else", "sub": "someone-else"}, 700021),
        ({"iat": time.time() - 7200, "exp": time.time() - 3600}, 700024),
    ],
)
def test_assertion_invalid_claims_rejected(idp, http, client_certificate, claim_changes, code):
    response = post_assertion(http, idp, sign_assertion(idp, client_certificate, **claim_changes))

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_codes"] == [code]


def test_assertion_bad_signature_rejected(idp, http, client_certificate, tls):
    impostor = tls.issue_client_certificate("impostor")
    header_of_registered = jwt.encode({"x": 1}, client_certificate.private_key_pem, algorithm="RS256", headers={"x5t": client_certificate.x5t}).split(".")[0]
    forged = sign_assertion(idp, impostor).split(".")
    forged[0] = header_of_registered

    response = post_assertion(http, idp, ".".join(forged))

    assert response.status_code == 401
    assert response.json()["error_codes"] == [700027]
    assert "signature" in response.json()["error_description"]


def test_idp_token_audience_follows_scope(idp, http, signing_key):
    response = request_token(http, idp, scope="https://management.core.windows.net//.default")

    claims = jwt.decode(response.json()["access_token"], signing_key.public_key, algorithms=["RS256"], options={"verify_aud": False, "verify_exp": False})
    assert claims["aud"] == "https://management.core.windows.net/"


def test_idp_sends_refresh_in(tls, signing_key):
    with IdentityProviderEmulator(tls=tls, signing_key=signing_key, refresh_in=1800) as emulator:
        emulator.register_client(TENANT, CLIENT_ID, secret=SECRET)
        session = requests.Session()
        session.trust_env = False
        session.verify = str(tls.ca_bundle_path)

        response = request_token(session, emulator)

    assert response.json()["refresh_in"] == 1800


def test_idp_serves_signing_key_as_jwk(idp, http, token):
    keys = http.get(f"{idp.authority(TENANT)}/discovery/v2.0/keys", timeout=10).json()["keys"]

    public_key = jwt.PyJWK(keys[0]).key
    claims = jwt.decode(token, public_key, algorithms=["RS256"], options={"verify_aud": False, "verify_exp": False})
    assert claims["appid"] == CLIENT_ID


# Sentinel: responses


def test_upload_all_valid_is_empty_200(http, sentinel, token):
    response = upload(http, sentinel, token, [indicator(1), indicator(2)])

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Content-Length"] == "0"


@pytest.mark.parametrize("messages_key", ["errorMessages", "validationErrorMessages"])
def test_upload_mixed_reports_record_errors(http, make_sentinel, token, messages_key):
    sentinel = make_sentinel(error_messages_key=messages_key)
    broken = indicator(2)
    del broken["id"]

    response = upload(http, sentinel, token, [indicator(1), broken, indicator(3)])

    assert response.status_code == 200
    assert response.json() == {
        "errors": [{"recordIndex": 1, messages_key: ["Error for Property=id: Required property is missing. Actual value: NULL."]}]
    }
    assert set(sentinel.holdings(WORKSPACE)) == {indicator(1)["id"], indicator(3)["id"]}


def test_upload_all_invalid_is_400_with_errors(http, sentinel, token):
    response = upload(http, sentinel, token, [indicator(1, pattern=None), indicator(2, valid_from=None)])

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [error["recordIndex"] for error in errors] == [0, 1]
    assert errors[0]["errorMessages"] == ["Error for Property=pattern: Required property is missing. Actual value: NULL."]
    assert errors[1]["errorMessages"] == ["Error for Property=valid_from: Required property is missing. Actual value: NULL."]
    assert sentinel.holdings(WORKSPACE) == {}


def test_upload_all_invalid_status_configurable(http, make_sentinel, token):
    sentinel = make_sentinel(all_invalid_status=200)

    response = upload(http, sentinel, token, [indicator(1, pattern=None)])

    assert response.status_code == 200
    assert response.json()["errors"][0]["recordIndex"] == 0


def test_upload_over_100_objects_is_400(http, sentinel, token):
    response = upload(http, sentinel, token, [indicator(number) for number in range(101)])

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidRequestBodyProperty(stixobjects)"
    assert response.headers["x-ms-error-code"] == "InvalidRequestBodyProperty(stixobjects)"
    assert sentinel.holdings(WORKSPACE) == {}


def test_upload_exactly_100_objects_accepted(http, sentinel, token):
    response = upload(http, sentinel, token, [indicator(number) for number in range(100)])

    assert response.status_code == 200
    assert len(sentinel.holdings(WORKSPACE)) == 100


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"stixobjects": [indicator(1)]}, "InvalidRequestBodyProperty(SourceSystem)"),
        ({"sourcesystem": "", "stixobjects": [indicator(1)]}, "InvalidRequestBodyProperty(SourceSystem)"),
        ({"sourcesystem": "Microsoft Sentinel", "stixobjects": [indicator(1)]}, "InvalidRequestBodyProperty(SourceSystem)"),
        ({"sourcesystem": "x" * 257, "stixobjects": [indicator(1)]}, "InvalidRequestBodyProperty(SourceSystem)"),
        ({"SourceSystem": SOURCE, "stixobjects": [indicator(1)]}, "InvalidRequestBodyProperty(SourceSystem)"),
        ({"sourcesystem": SOURCE}, "InvalidRequestBodyProperty(stixobjects)"),
        ({"sourcesystem": SOURCE, "stixobjects": []}, "InvalidRequestBodyProperty(stixobjects)"),
        ({"sourcesystem": SOURCE, "stixobjects": {"a": 1}}, "InvalidRequestBodyProperty(stixobjects)"),
        ([indicator(1)], "InvalidRequestBodyProperty(RequestBody)"),
    ],
)
def test_upload_bad_body_is_400(http, sentinel, token, body, code):
    response = upload(http, sentinel, token, None, body=body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_upload_sourcesystem_256_chars_accepted(http, sentinel, token):
    response = upload(http, sentinel, token, [indicator(1)], sourcesystem="x" * 256)

    assert response.status_code == 200


def test_upload_malformed_json_is_400(http, sentinel, token):
    response = http.post(
        sentinel.upload_url(WORKSPACE),
        data=b'{"sourcesystem": "x", "stixobjects": [',
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Body of the request is not in valid JSON format."


@pytest.mark.parametrize(
    ("query", "code"),
    [("", "MissingApiVersionParameter"), ("?api-version=2023-01-01", "InvalidApiVersionParameter")],
)
def test_upload_api_version_checked(http, sentinel, token, query, code):
    url = f"{sentinel.base_url}/workspaces/{WORKSPACE}/threat-intelligence-stix-objects:upload{query}"

    response = http.post(url, json={"sourcesystem": SOURCE, "stixobjects": [indicator(1)]}, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_upload_chunked_body_accepted(http, sentinel, token):
    body = json.dumps({"sourcesystem": SOURCE, "stixobjects": [indicator(1)]}).encode()

    response = http.post(
        sentinel.upload_url(WORKSPACE),
        data=iter([body[:10], body[10:]]),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 200
    assert indicator(1)["id"] in sentinel.holdings(WORKSPACE)


def test_upload_over_byte_cap_is_413(http, make_sentinel, token):
    sentinel = make_sentinel(max_body_bytes=2000)

    response = upload(http, sentinel, token, [indicator(number) for number in range(10)])

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "RequestEntityTooLarge"


# Sentinel: authentication and authorization


UNAUTHORIZED_BODY = {"statusCode": 401, "message": "Unauthorized. Access token is missing or invalid."}


def test_upload_without_token_is_401(http, sentinel):
    response = upload(http, sentinel, None, [indicator(1)])

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED_BODY


def test_upload_wrong_audience_is_401(http, sentinel, idp):
    graph_token = request_token(http, idp, scope="https://graph.microsoft.com/.default").json()["access_token"]

    response = upload(http, sentinel, graph_token, [indicator(1)])

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED_BODY
    assert "audience" in sentinel.request_log[-1].detail


@pytest.mark.parametrize(
    "scope",
    ["https://management.azure.com/.default", "https://management.azure.com//.default",
     "https://management.core.windows.net/.default", "https://management.core.windows.net//.default"],
)
def test_upload_accepts_four_audiences(http, sentinel, idp, scope):
    arm_token = request_token(http, idp, scope=scope).json()["access_token"]

    response = upload(http, sentinel, arm_token, [indicator(1)])

    assert response.status_code == 200


def test_upload_expired_token_is_401(http, sentinel, token, clock):
    assert upload(http, sentinel, token, [indicator(1)]).status_code == 200

    clock.advance(3599)
    response = upload(http, sentinel, token, [indicator(1)])

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED_BODY
    assert "expired" in sentinel.request_log[-1].detail


def test_upload_foreign_signature_is_401(http, sentinel, token):
    foreign_key = SigningKey.generate()
    claims = jwt.decode(token, options={"verify_signature": False})

    response = upload(http, sentinel, foreign_key.sign(claims), [indicator(1)])

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED_BODY


def test_upload_unknown_workspace_is_404(http, sentinel, token):
    response = upload(http, sentinel, token, [indicator(1)], workspace=str(uuid.uuid4()))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "WorkspaceNotFound"


def test_upload_without_role_is_403(http, sentinel, idp):
    other_token = request_token(http, idp, client_id=OTHER_CLIENT_ID, secret=OTHER_SECRET).json()["access_token"]

    response = upload(http, sentinel, other_token, [indicator(1)])

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "AuthorizationFailed"
    assert OTHER_CLIENT_ID in response.json()["error"]["message"]
    assert sentinel.request_log[-1].client_id == OTHER_CLIENT_ID


def test_upload_role_granted_later_accepted(http, sentinel, idp):
    other_token = request_token(http, idp, client_id=OTHER_CLIENT_ID, secret=OTHER_SECRET).json()["access_token"]

    sentinel.grant_role(WORKSPACE, OTHER_CLIENT_ID)

    assert upload(http, sentinel, other_token, [indicator(1)]).status_code == 200


def test_workspace_id_must_be_guid(sentinel):
    with pytest.raises(ValueError, match="GUID"):
        sentinel.add_workspace("my-workspace")


def test_workspace_id_case_and_braces_ignored(http, sentinel, token):
    response = upload(http, sentinel, token, [indicator(1)], workspace="{" + WORKSPACE.upper() + "}")

    assert response.status_code == 200
    assert indicator(1)["id"] in sentinel.holdings(WORKSPACE)


# Sentinel: rate limit


def test_rate_limit_101st_request_is_429(http, sentinel, token, clock):
    for _ in range(100):
        assert upload(http, sentinel, token, [indicator(1)]).status_code == 200

    throttled = upload(http, sentinel, token, [indicator(1)])

    assert throttled.status_code == 429
    assert throttled.json() == {"statusCode": 429, "message": "Rate limit is exceeded. Try again in 60 seconds."}
    assert throttled.headers["Retry-After"] == "60"
    assert sentinel.throttled_count == 1


def test_rate_limit_window_slides_with_clock(http, make_sentinel, token, clock):
    sentinel = make_sentinel(rate_limit=2, rate_window=10)
    assert upload(http, sentinel, token, [indicator(1)]).status_code == 200
    clock.advance(4)
    assert upload(http, sentinel, token, [indicator(1)]).status_code == 200

    throttled = upload(http, sentinel, token, [indicator(1)])
    clock.advance(6)
    freed = upload(http, sentinel, token, [indicator(1)])
    throttled_again = upload(http, sentinel, token, [indicator(1)])

    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "6"
    assert "Try again in 6 seconds." in throttled.json()["message"]
    assert freed.status_code == 200
    assert throttled_again.status_code == 429
    assert throttled_again.headers["Retry-After"] == "4"


def test_rate_limit_header_switchable(http, make_sentinel, token):
    sentinel = make_sentinel(rate_limit=1, retry_after_header=False)
    upload(http, sentinel, token, [indicator(1)])

    throttled = upload(http, sentinel, token, [indicator(1)])

    assert throttled.status_code == 429
    assert "Retry-After" not in throttled.headers
    assert throttled.json()["message"] == "Rate limit is exceeded. Try again in 60 seconds."


@pytest.mark.parametrize(("rate_scope", "other_status"), [("identity", 403), ("workspace", 429)])
def test_rate_limit_scope(http, make_sentinel, idp, token, rate_scope, other_status):
    sentinel = make_sentinel(rate_limit=1, rate_scope=rate_scope)
    other_token = request_token(http, idp, client_id=OTHER_CLIENT_ID, secret=OTHER_SECRET).json()["access_token"]
    assert upload(http, sentinel, token, [indicator(1)]).status_code == 200

    # The other client has no role, so it gets 403 unless the workspace's budget is spent.
    response = upload(http, sentinel, other_token, [indicator(1)])

    assert response.status_code == other_status


# Sentinel: paths and legacy APIs


def test_legacy_value_path_accepted(http, sentinel, token):
    response = upload(http, sentinel, token, [indicator(1)], api=API_UPLOAD_INDICATORS)

    assert response.status_code == 200
    assert sentinel.upload_url(WORKSPACE, API_UPLOAD_INDICATORS).endswith(
        f"/{WORKSPACE}/threatintelligence:upload-indicators?api-version=2022-07-01"
    )
    assert sentinel.stored_objects(WORKSPACE)[0].api == API_UPLOAD_INDICATORS


def test_legacy_indicators_path_accepted(http, sentinel, token):
    response = upload(http, sentinel, token, [indicator(1)], api=API_UPLOAD_INDICATORS_V2)

    assert response.status_code == 200
    assert sentinel.upload_url(WORKSPACE, API_UPLOAD_INDICATORS_V2).endswith(
        f"/workspaces/{WORKSPACE}/threatintelligenceindicators:upload?api-version=2022-07-01"
    )


def test_legacy_accepts_capitalised_source_system(http, sentinel, token):
    body = {"SourceSystem": SOURCE, "value": [indicator(1)]}

    response = upload(http, sentinel, token, None, api=API_UPLOAD_INDICATORS, body=body)

    assert response.status_code == 200
    assert sentinel.stored_objects(WORKSPACE)[0].sourcesystem == SOURCE


def test_legacy_wrong_array_name_is_400(http, sentinel, token):
    body = {"sourcesystem": SOURCE, "indicators": [indicator(1)]}

    response = upload(http, sentinel, token, None, api=API_UPLOAD_INDICATORS, body=body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "InvalidRequestBodyProperty(value)"
    assert error["details"] == []
    assert error["target"] is None
    assert error["additionalInfo"] is None


def test_legacy_accepts_indicators_only(http, sentinel, token):
    attack_pattern = {
        "type": "attack-pattern",
        "id": f"attack-pattern--{uuid.uuid4()}",
        "created": "2024-03-01T10:00:00Z",
        "modified": "2024-03-01T10:00:00Z",
        "name": "Phishing",
    }

    response = upload(http, sentinel, token, [indicator(1), attack_pattern], api=API_UPLOAD_INDICATORS_V2)

    assert response.status_code == 200
    message = response.json()["errors"][0]["errorMessages"][0]
    assert message == "Error for Property=type: Unsupported STIX object type; supported types are indicator. Actual value: attack-pattern."


@pytest.mark.parametrize(
    "path",
    [
        f"/workspaces/{WORKSPACE}/threatintelligence-stix-objects:upload",
        f"/workspaces/{WORKSPACE}/threatintelligencestixobjects:upload",
        f"/workspaces/{WORKSPACE}/threat-intelligence-stix-objects:download",
        f"/{WORKSPACE}/threat-intelligence-stix-objects:upload",
    ],
)
def test_unknown_path_is_404(http, sentinel, token, path):
    url = f"{sentinel.base_url}{path}?api-version=2024-02-01-preview"

    response = http.post(url, json={"sourcesystem": SOURCE, "stixobjects": [indicator(1)]}, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    assert response.status_code == 404
    assert response.json() == {"statusCode": 404, "message": "Resource not found"}


def test_get_on_upload_path_is_404(http, sentinel, token):
    response = http.get(sentinel.upload_url(WORKSPACE), headers={"Authorization": f"Bearer {token}"}, timeout=10)

    assert response.status_code == 404


def test_path_alias_switch(http, make_sentinel, token):
    sentinel = make_sentinel(accept_path_alias=True)
    body = {"sourcesystem": SOURCE, "stixobjects": [indicator(1)]}

    for spelling in ("threatintelligence-stix-objects", "threatintelligencestixobjects"):
        url = f"{sentinel.base_url}/workspaces/{WORKSPACE}/{spelling}:upload?api-version=2024-02-01-preview"
        response = http.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert response.status_code == 200, spelling


# Sentinel: per-object validation


def other_objects():
    return {
        "attack-pattern": {"type": "attack-pattern", "spec_version": "2.1", "id": "attack-pattern--7e33a43e-e34b-40ec-89da-36c9bb2cacd5",
                           "created": "2024-03-01T10:00:00.000Z", "modified": "2024-03-01T10:00:00.000Z", "name": "Spearphishing Attachment"},
        "threat-actor": {"type": "threat-actor", "id": "threat-actor--56f3f0db-b5d5-431c-ae56-c18f02caf500",
                         "created": "2024-03-01T10:00:00.000Z", "modified": "2024-03-01T10:00:00.000Z", "name": "Fancy Bear"},
        "identity": {"type": "identity", "spec_version": "2.1", "id": "identity--e5f1b90a-d9b6-40ab-81a9-8a29df4b6b65",
                     "created": "2024-03-01T10:00:00.000Z", "modified": "2024-03-01T10:00:00.000Z", "name": "CIRCL", "identity_class": "organization"},
        "relationship": {"type": "relationship", "spec_version": "2.1", "id": "relationship--44298a74-ba52-4f0c-87a3-1824e67d7fad",
                         "created": "2024-03-01T10:00:00.000Z", "modified": "2024-03-01T10:00:00.000Z", "relationship_type": "indicates",
                         "source_ref": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", "target_ref": "threat-actor--56f3f0db-b5d5-431c-ae56-c18f02caf500"},
    }


def test_upload_supported_object_types_accepted(http, sentinel, token):
    objects = [indicator(1), *other_objects().values()]

    response = upload(http, sentinel, token, objects)

    assert response.status_code == 200, response.text
    assert set(sentinel.holdings(WORKSPACE)) == {stix_object["id"] for stix_object in objects}


def test_upload_stix_20_indicator_without_pattern_type(http, sentinel, token):
    legacy_indicator = indicator(1, spec_version="2.0", pattern_type=None)

    response = upload(http, sentinel, token, [legacy_indicator])

    assert response.status_code == 200


def test_upload_unknown_properties_stored(http, sentinel, token):
    extended = indicator(1, extensions={"extension-definition--1f611280-fbe1-48e8-92ab-ff47ce02d5b7": {"rank": 5}}, x_misp_category="Network activity")

    response = upload(http, sentinel, token, [extended])

    assert response.status_code == 200
    assert sentinel.holdings(WORKSPACE)[extended["id"]]["x_misp_category"] == "Network activity"


BAD_ID = "indicator--not-a-uuid"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": None}, "Error for Property=id: Required property is missing. Actual value: NULL."),
        ({"id": BAD_ID}, f"Error for Property=id: Invalid identifier; expected 'indicator--<UUID>'. Actual value: {BAD_ID}."),
        ({"id": "attack-pattern--7e33a43e-e34b-40ec-89da-36c9bb2cacd5"},
         "Error for Property=id: Invalid identifier; expected 'indicator--<UUID>'. Actual value: attack-pattern--7e33a43e-e34b-40ec-89da-36c9bb2cacd5."),
        ({"type": "malware"}, "Error for Property=type: Unsupported STIX object type; supported types are indicator, attack-pattern, threat-actor, identity, relationship. Actual value: malware."),
        ({"created": None}, "Error for Property=created: Required property is missing. Actual value: NULL."),
        ({"modified": "yesterday"}, "Error for Property=modified: Invalid timestamp; expected RFC 3339 UTC such as 2024-01-31T12:00:00.000Z. Actual value: yesterday."),
        ({"modified": "2024-02-01T10:00:00.000Z"}, "Error for Property=modified: modified must be later than or equal to created. Actual value: 2024-02-01T10:00:00.000Z."),
        ({"spec_version": "2.2"}, "Error for Property=spec_version: Unsupported STIX version; supported versions are 2.0 and 2.1. Actual value: 2.2."),
        ({"pattern": None}, "Error for Property=pattern: Required property is missing. Actual value: NULL."),
        ({"pattern_type": None}, "Error for Property=pattern_type: Required property is missing. Actual value: NULL."),
        ({"valid_from": None}, "Error for Property=valid_from: Required property is missing. Actual value: NULL."),
        ({"valid_until": "2024-03-01T10:00:00Z"}, "Error for Property=valid_until: valid_until must be later than valid_from. Actual value: 2024-03-01T10:00:00Z."),
        ({"confidence": 101}, "Error for Property=confidence: Invalid value; expected an integer from 0 to 100. Actual value: 101."),
        ({"confidence": "high"}, "Error for Property=confidence: Invalid value; expected an integer from 0 to 100. Actual value: high."),
        ({"revoked": "yes"}, "Error for Property=revoked: Invalid value; expected a boolean. Actual value: yes."),
        ({"labels": "misp"}, "Error for Property=labels: Invalid value; expected a list of strings. Actual value: misp."),
        ({"object_marking_refs": ["TLP:GREEN"]},
         'Error for Property=object_marking_refs: Invalid value; expected a list of \'marking-definition--<UUID>\' references. Actual value: ["TLP:GREEN"].'),
    ],
)
def test_indicator_validation_messages(http, sentinel, token, changes, message):
    response = upload(http, sentinel, token, [indicator(1), indicator(2, **changes)])

    assert response.status_code == 200
    assert response.json()["errors"] == [{"recordIndex": 1, "errorMessages": [message]}]


def test_invalid_stix_pattern_rejected(http, sentinel, token):
    response = upload(http, sentinel, token, [indicator(1), indicator(2, pattern="[ipv4-addr:value = '1.2.3.4'")])

    message = response.json()["errors"][0]["errorMessages"][0]
    assert message.startswith("Error for Property=pattern: Invalid STIX pattern (")
    assert message.endswith("Actual value: [ipv4-addr:value = '1.2.3.4'.")


def test_non_stix_pattern_not_parsed(http, sentinel, token):
    sigma = indicator(1, pattern="title: anything goes here", pattern_type="sigma")

    response = upload(http, sentinel, token, [sigma])

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("object_type", "removed", "message"),
    [
        ("attack-pattern", "name", "Error for Property=name: Required property is missing. Actual value: NULL."),
        ("relationship", "target_ref", "Error for Property=target_ref: Required property is missing. Actual value: NULL."),
        ("relationship", "relationship_type", "Error for Property=relationship_type: Required property is missing. Actual value: NULL."),
    ],
)
def test_other_type_validation_messages(http, sentinel, token, object_type, removed, message):
    broken = other_objects()[object_type]
    del broken[removed]

    response = upload(http, sentinel, token, [indicator(1), broken])

    assert response.json()["errors"] == [{"recordIndex": 1, "errorMessages": [message]}]


# Sentinel: stored state


def test_holdings_and_counts_after_reupload(http, sentinel, token, clock):
    upload(http, sentinel, token, [indicator(1), indicator(2)])
    clock.advance(30)
    updated = indicator(1, modified="2024-03-02T10:00:00.000Z", confidence=90)

    response = upload(http, sentinel, token, [updated])

    assert response.status_code == 200
    holdings = sentinel.holdings(WORKSPACE)
    assert holdings[updated["id"]]["confidence"] == 90
    assert holdings[indicator(2)["id"]] == indicator(2)
    assert sentinel.upload_counts(WORKSPACE) == {updated["id"]: 2, indicator(2)["id"]: 1}
    stored = {item.stix_id: item for item in sentinel.stored_objects(WORKSPACE)}
    assert stored[updated["id"]].last_uploaded - stored[updated["id"]].first_uploaded == 30


def test_last_upload_wins_even_if_older(http, sentinel, token):
    upload(http, sentinel, token, [indicator(1, modified="2024-03-05T00:00:00Z", name="newer")])

    upload(http, sentinel, token, [indicator(1, modified="2024-03-02T00:00:00Z", name="older")])

    assert sentinel.holdings(WORKSPACE)[indicator(1)["id"]]["name"] == "older"


def test_strict_mode_keeps_newer_modified(http, make_sentinel, token):
    sentinel = make_sentinel(ignore_older_modified=True)
    upload(http, sentinel, token, [indicator(1, modified="2024-03-05T00:00:00Z", name="newer")])

    response = upload(http, sentinel, token, [indicator(1, modified="2024-03-02T00:00:00Z", name="older")])

    assert response.status_code == 200
    assert sentinel.holdings(WORKSPACE)[indicator(1)["id"]]["name"] == "newer"
    assert sentinel.upload_counts(WORKSPACE)[indicator(1)["id"]] == 2


def test_sourcesystems_kept_apart(http, sentinel, token):
    upload(http, sentinel, token, [indicator(1, name="from A")], sourcesystem="feed A")
    upload(http, sentinel, token, [indicator(1, name="from B")], sourcesystem="feed B")

    assert sentinel.holdings(WORKSPACE, sourcesystem="feed A")[indicator(1)["id"]]["name"] == "from A"
    assert sentinel.holdings(WORKSPACE, sourcesystem="feed B")[indicator(1)["id"]]["name"] == "from B"
    assert sentinel.upload_counts(WORKSPACE) == {indicator(1)["id"]: 2}
    with pytest.raises(ValueError, match="sourcesystem"):
        sentinel.holdings(WORKSPACE)


def test_revocation_stored_and_unrevoke_listed(http, sentinel, token):
    upload(http, sentinel, token, [indicator(1)])
    revoked = indicator(1, revoked=True, modified="2024-03-02T00:00:00.000Z", valid_until="2024-03-02T00:00:00.000Z")
    upload(http, sentinel, token, [revoked])
    assert sentinel.holdings(WORKSPACE)[revoked["id"]]["revoked"] is True

    restored = indicator(1, modified="2024-03-03T00:00:00.000Z")
    response = upload(http, sentinel, token, [restored])

    assert response.status_code == 200
    assert sentinel.unrevocations(WORKSPACE) == [(SOURCE, restored["id"])]


def test_unrevoke_rejected_when_configured(http, make_sentinel, token):
    sentinel = make_sentinel(reject_unrevoke=True)
    upload(http, sentinel, token, [indicator(1, revoked=True)])

    response = upload(http, sentinel, token, [indicator(2), indicator(1)])

    assert response.status_code == 200
    assert response.json()["errors"][0]["recordIndex"] == 1
    assert response.json()["errors"][0]["errorMessages"][0].startswith("Error for Property=revoked:")


def test_request_log_records_requests(http, sentinel, token):
    upload(http, sentinel, token, [indicator(1), indicator(2)])
    upload(http, sentinel, None, [indicator(1)])

    first, second = sentinel.request_log

    assert (first.method, first.status, first.object_count, first.client_id, first.api) == ("POST", 200, 2, CLIENT_ID, "stix-objects")
    assert first.workspace_id == WORKSPACE
    assert (second.status, second.client_id) == (401, None)
    assert sentinel.status_counts() == {200: 1, 401: 1}


# Sentinel: fault injection


@pytest.mark.parametrize("status", [500, 503, 400, 413])
def test_injected_status_used_once(http, sentinel, token, status):
    sentinel.inject(status)

    faulted = upload(http, sentinel, token, [indicator(1)])
    normal = upload(http, sentinel, token, [indicator(1)])

    assert faulted.status_code == status
    assert "error" in faulted.json()
    assert normal.status_code == 200
    assert sentinel.upload_counts(WORKSPACE) == {indicator(1)["id"]: 1}


def test_injected_429_has_documented_shape(http, sentinel, token):
    sentinel.inject(429, count=2, retry_after=12)

    responses = [upload(http, sentinel, token, [indicator(1)]) for _ in range(3)]

    assert [response.status_code for response in responses] == [429, 429, 200]
    assert responses[0].json() == {"statusCode": 429, "message": "Rate limit is exceeded. Try again in 12 seconds."}
    assert responses[0].headers["Retry-After"] == "12"
    assert sentinel.throttled_count == 2


def test_injected_custom_body_and_path_filter(http, sentinel, token):
    sentinel.inject(503, body="upstream unavailable", headers={"Retry-After": "3"}, path_contains="threatintelligenceindicators")

    stix_response = upload(http, sentinel, token, [indicator(1)])
    legacy_response = upload(http, sentinel, token, [indicator(1)], api=API_UPLOAD_INDICATORS_V2)

    assert stix_response.status_code == 200
    assert legacy_response.status_code == 503
    assert legacy_response.text == "upstream unavailable"
    assert legacy_response.headers["Retry-After"] == "3"


def test_reject_records_by_id(http, sentinel, token):
    sentinel.reject_records({indicator(2)["id"]}, message="Error for Property=pattern: Unsupported observable. Actual value: x.")

    response = upload(http, sentinel, token, [indicator(1), indicator(2), indicator(3)])

    assert response.status_code == 200
    assert response.json()["errors"] == [{"recordIndex": 1, "errorMessages": ["Error for Property=pattern: Unsupported observable. Actual value: x."]}]
    assert indicator(2)["id"] not in sentinel.holdings(WORKSPACE)


def test_reject_records_by_predicate_with_count(http, sentinel, token):
    sentinel.reject_records(lambda stix_object: stix_object.get("confidence") == 75, count=1)

    first = upload(http, sentinel, token, [indicator(1), indicator(2)])
    second = upload(http, sentinel, token, [indicator(1), indicator(2)])

    assert first.status_code == 200
    assert first.json()["errors"][0]["recordIndex"] == 0
    assert first.json()["errors"][0]["errorMessages"][0].startswith("Error for Property=id: The object was rejected by an injected fault.")
    assert second.content == b""


def test_drop_connection_before_processing(http, sentinel, token):
    sentinel.drop_connection()

    with pytest.raises(requests.exceptions.ConnectionError):
        upload(http, sentinel, token, [indicator(1)])

    assert sentinel.holdings(WORKSPACE) == {}
    assert sentinel.request_log[-1].status == 0
    assert upload(http, sentinel, token, [indicator(1)]).status_code == 200


def test_drop_connection_after_processing(http, sentinel, token):
    sentinel.drop_connection(after_processing=True)

    with pytest.raises(requests.exceptions.ConnectionError):
        upload(http, sentinel, token, [indicator(1)])

    assert indicator(1)["id"] in sentinel.holdings(WORKSPACE)
    assert sentinel.request_log[-1].detail.startswith("connection reset after a 200")


def test_clear_faults_removes_pending(http, sentinel, token):
    sentinel.inject(500, count=5)
    sentinel.reject_records({indicator(1)["id"]})

    sentinel.clear_faults()

    assert upload(http, sentinel, token, [indicator(1)]).status_code == 200


# End to end through MSAL, and the combined launcher


def test_msal_token_uploads_end_to_end(idp, sentinel, http):
    app = make_msal_app(idp, http)
    access_token = app.acquire_token_for_client(scopes=[ARM_SCOPE])["access_token"]

    response = http.post(
        sentinel.upload_url(WORKSPACE),
        json={"sourcesystem": SOURCE, "stixobjects": [indicator(1)]},
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )

    assert response.status_code == 200
    assert sentinel.request_log[-1].client_id == CLIENT_ID


def test_combined_launcher_serves_until_interrupted(tmp_path):
    environment = {name: value for name, value in os.environ.items() if name.upper() not in ENVIRONMENT_VARIABLES}
    command = [
        sys.executable, "-m", "tests.emulators.azure",
        "--tls-dir", str(tmp_path),
        "--tenant", TENANT,
        "--client-id", CLIENT_ID,
        "--client-secret", SECRET,
        "--workspace", WORKSPACE,
    ]
    process = subprocess.Popen(command, cwd=REPOSITORY_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        printed = {}
        for line in process.stdout:
            if line.startswith("serving"):
                break
            name, _, value = line.partition(":")
            printed[name.strip()] = value.strip()

        session = requests.Session()
        session.trust_env = False
        session.verify = printed["CA bundle"]
        app = msal.ConfidentialClientApplication(
            CLIENT_ID, client_credential=SECRET, authority=printed["authority"], instance_discovery=False, http_client=session
        )
        access_token = app.acquire_token_for_client(scopes=[ARM_SCOPE])["access_token"]
        response = session.post(
            printed["STIX objects upload"],
            json={"sourcesystem": SOURCE, "stixobjects": [indicator(1)]},
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=10,
        )
    finally:
        process.send_signal(signal.SIGINT)
        exit_code = process.wait(timeout=10)

    assert response.status_code == 200
    assert printed["workspace id"] == WORKSPACE
    assert printed["authority"].startswith("https://127.0.0.1:")
    assert "client secret" not in printed
    assert exit_code == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [([], "--signing-key is required"), (["--signing-key", "/nonexistent/key.pem"], "file not found")],
)
def test_sentinel_cli_needs_signing_key(capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        run_sentinel(["--port", "0", *arguments])

    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
