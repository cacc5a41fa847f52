"""Emulator of the Microsoft identity platform (Entra ID) for the client-credentials flow.

It serves the endpoints MSAL for Python uses with an `https://127.0.0.1:PORT/TENANT`
authority and `instance_discovery=False`:

* `GET /{tenant}/v2.0/.well-known/openid-configuration`, whose endpoints are https;
* `GET /{tenant}/discovery/v2.0/keys`, the public key that signs access tokens;
* `POST /{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials` and either a
  client secret (form field or HTTP Basic) or a client assertion (RS256 with `x5t`, or PS256
  with `x5t#S256`) signed by a registered certificate.

Access tokens are v1.0-style RS256 JWTs like those Entra issues for Azure Resource
Manager: `aud` is the scope without `/.default`, plus `appid`, `appidacr`, `oid`, `sub`,
`tid`, `iat`, `nbf` and `exp` from the injectable clock. Errors have Entra's JSON shape
(`error`, `error_description` starting with `AADSTSnnn:`, `error_codes`, `timestamp`,
`trace_id`, `correlation_id`).

Run by hand: `python -m tests.emulators.idp --port 8444 --tenant TENANT --client-id ID`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qs

from .base import EmulatorServer, Request, Response
from .faults import Fault, FaultQueue, fault_response
from .idp_credentials import (
    CLIENT_ASSERTION_TYPE,
    RegisteredClient,
    TokenError,
    audience_from_scope,
    entra_timestamp,
    missing_parameter,
    parse_basic_authorization,
    verify_client_assertion,
    verify_client_secret,
)
from .tls import EmulatorTLS
from .tokens import SigningKey

logger = logging.getLogger(__name__)

__all__ = ["CLIENT_ASSERTION_TYPE", "IdentityProviderEmulator", "RegisteredClient", "TokenRequestRecord"]

TOKEN_PATH_SUFFIX = "/oauth2/v2.0/token"


@dataclass(frozen=True)
class TokenRequestRecord:
    """One POST to a token endpoint and the emulator's response status."""

    tenant: str
    client_id: str | None
    credential: str | None
    """`secret`, `certificate`, or None when the request carried neither."""
    scope: str | None
    status: int
    error: str | None
    """Entra error code such as `invalid_client`, or None on success."""


class IdentityProviderEmulator(EmulatorServer):
    """Entra ID token endpoint and OIDC discovery for registered confidential clients.

    `clock` returns Unix seconds (default `time.time`) and sets `iat`/`nbf`/`exp` of issued
    tokens and the validity check of client assertions. `token_lifetime` is `expires_in`
    in seconds; keep it above 300, because MSAL treats a cached token with less than five
    minutes left as expired. `refresh_in`, when set, is sent as Entra does for long-lived
    tokens and makes MSAL refresh early.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: EmulatorTLS | None | bool = None,
        clock: Callable[[], float] | None = None,
        token_lifetime: int = 3599,
        signing_key: SigningKey | None = None,
        refresh_in: int | None = None,
    ) -> None:
        super().__init__(host=host, port=port, tls=tls)
        self.clock = clock or time.time
        self.token_lifetime = token_lifetime
        self.refresh_in = refresh_in
        self.signing_key = signing_key or SigningKey.generate()
        self._clients: dict[tuple[str, str], RegisteredClient] = {}
        self._token_requests: list[TokenRequestRecord] = []
        self._faults = FaultQueue()
        self._lock = threading.Lock()

    # Registration and inspection

    def register_client(
        self,
        tenant: str,
        client_id: str,
        *,
        secret: str | None = None,
        certificate_pem: str | bytes | None = None,
        object_id: str | None = None,
        display_name: str | None = None,
        roles: list[str] | tuple[str, ...] = (),
    ) -> RegisteredClient:
        """Register an app in `tenant`; the tenant exists from its first registered app on.

        `object_id` is the service principal's object id, sent as `oid` and `sub` (a new
        UUID by default). `roles` become the token's `roles` claim.
        """
        client = RegisteredClient(
            tenant=tenant,
            client_id=client_id,
            object_id=object_id or str(uuid.uuid4()),
            display_name=display_name or f"app {client_id}",
            roles=list(roles),
        )
        if secret is not None:
            client.add_secret(secret)
        if certificate_pem is not None:
            client.add_certificate(certificate_pem)
        with self._lock:
            self._clients[(tenant, client_id)] = client
        return client

    def client(self, tenant: str, client_id: str) -> RegisteredClient:
        return self._clients[(tenant, client_id)]

    def authority(self, tenant: str) -> str:
        """Return the MSAL `authority` URL for `tenant`."""
        return f"{self.base_url}/{tenant}"

    def token_endpoint(self, tenant: str) -> str:
        return f"{self.base_url}/{tenant}{TOKEN_PATH_SUFFIX}"

    def issuer(self, tenant: str) -> str:
        """Return the OIDC issuer that discovery advertises for `tenant`."""
        return f"{self.base_url}/{tenant}/v2.0"

    def token_issuer(self, tenant: str) -> str:
        """Return the `iss` of access tokens, like `https://sts.windows.net/{tenant}/` in Entra v1.0 tokens."""
        return f"{self.base_url}/{tenant}/"

    @property
    def token_requests(self) -> list[TokenRequestRecord]:
        with self._lock:
            return list(self._token_requests)

    def token_request_counts(self) -> Counter[str | None]:
        """Return the number of token-endpoint POSTs per client id, failed ones included."""
        with self._lock:
            return Counter(record.client_id for record in self._token_requests)

    # Fault injection

    def inject(
        self,
        status: int,
        count: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
        path_contains: str | None = TOKEN_PATH_SUFFIX,
        retry_after: int | None = None,
    ) -> None:
        """Respond to the next `count` matching requests with `status` instead of serving them.

        By default only token requests match, so MSAL's discovery at construction does not
        use up the fault; pass `path_contains=None` to match every path. Without `body` an
        Entra-style error is sent. `retry_after` adds a `Retry-After` header in seconds.
        """
        all_headers = dict(headers or {})
        if retry_after is not None:
            all_headers.setdefault("Retry-After", str(retry_after))
        if body is None:
            response = self._error_response(_default_fault_error(status), correlation_id=None)
            response.headers.update(all_headers)
        else:
            response = fault_response(status, body, all_headers)
        self._faults.add(Fault(response, count, path_contains))

    def drop_connection(self, count: int = 1, path_contains: str | None = TOKEN_PATH_SUFFIX) -> None:
        """Reset the TCP connection of the next `count` matching requests without a response."""
        self._faults.add(Fault(Response.reset(), count, path_contains))

    def clear_faults(self) -> None:
        self._faults.clear()

    # Request handling

    def dispatch(self, request: Request) -> Response:
        segments = request.path.strip("/").split("/")
        tenant = segments[0] if segments else ""
        route = "/" + "/".join(segments[1:])

        if route == TOKEN_PATH_SUFFIX:
            return self._handle_token_route(request, tenant)

        fault = self._faults.take(request.path)
        if fault is not None:
            return fault
        if route == "/v2.0/.well-known/openid-configuration" and request.method == "GET":
            return self._discovery(request, tenant)
        if route == "/discovery/v2.0/keys" and request.method == "GET":
            return Response.json(200, {"keys": [self.signing_key.jwk()]})
        return Response.json(404, {"error": "not_found", "error_description": f"No endpoint at {request.method} {request.path}."})

    def _discovery(self, request: Request, tenant: str) -> Response:
        if not self._tenant_exists(tenant):
            error = TokenError(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.")
            return self._error_response(error, request.headers.get("client-request-id"))
        base = f"{self.base_url}/{tenant}"
        document = {
            "token_endpoint": self.token_endpoint(tenant),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": self.issuer(tenant),
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
        }
        return Response.json(200, document)

    def _handle_token_route(self, request: Request, tenant: str) -> Response:
        form = {name: values[0] for name, values in parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        basic_credentials = parse_basic_authorization(request.headers.get("Authorization"))
        client_id = form.get("client_id") or (basic_credentials[0] if basic_credentials else None)
        if basic_credentials and "client_secret" not in form:
            form["client_secret"] = basic_credentials[1]
        credential = None
        if "client_assertion" in form:
            credential = "certificate"
        elif "client_secret" in form:
            credential = "secret"

        response = self._faults.take(request.path)
        if response is None and request.method != "POST":
            response = self._error_response(TokenError(400, "invalid_request", 900561, "The endpoint only accepts POST requests."), request.headers.get("client-request-id"))
        if response is None:
            try:
                claims = self._authenticate(tenant, client_id, form)
            except TokenError as error:
                response = self._error_response(error, request.headers.get("client-request-id"))
            else:
                response = self._token_response(claims, request.headers.get("client-request-id"))

        error_code = None
        if not response.reset_connection and response.status >= 400:
            error_code = _error_code_of(response)
        record = TokenRequestRecord(tenant, client_id, credential, form.get("scope"), response.status, error_code)
        with self._lock:
            self._token_requests.append(record)
        logger.info(
            "token request tenant=%s client=%s credential=%s -> %s%s",
            tenant, client_id, credential, response.status or "connection reset", f" ({error_code})" if error_code else "",
        )
        return response

    def _authenticate(self, tenant: str, client_id: str | None, form: dict[str, str]) -> dict[str, Any]:
        """Validate a client-credentials request and return the access token's claims."""
        if not self._tenant_exists(tenant):
            raise TokenError(400, "invalid_request", 90002, f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.")
        grant_type = form.get("grant_type")
        if not grant_type:
            raise missing_parameter("grant_type")
        if grant_type != "client_credentials":
            raise TokenError(400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant_type}'.")
        if not client_id:
            raise missing_parameter("client_id")
        scope = form.get("scope")
        if not scope:
            raise missing_parameter("scope")

        client = self._clients.get((tenant, client_id))
        if client is None:
            raise TokenError(400, "unauthorized_client", 700016, f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.")
        if not client.enabled:
            raise TokenError(400, "unauthorized_client", 7000112, f"Application '{client_id}'({client.display_name}) is disabled.")

        if "client_assertion" in form:
            verify_client_assertion(client, form, token_url=self.token_endpoint(tenant), now=self.clock())
            authentication_class = "2"
        elif "client_secret" in form:
            verify_client_secret(client, form["client_secret"])
            authentication_class = "1"
        else:
            raise TokenError(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")

        audience = audience_from_scope(scope)
        now = int(self.clock())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.token_issuer(tenant),
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime,
            "appid": client.client_id,
            "appidacr": authentication_class,
            "idp": self.token_issuer(tenant),
            "idtyp": "app",
            "oid": client.object_id,
            "sub": client.object_id,
            "tid": tenant,
            "uti": uuid.uuid4().hex[:22],
            "ver": "1.0",
        }
        if client.roles:
            claims["roles"] = list(client.roles)
        return claims

    def _token_response(self, claims: dict[str, Any], correlation_id: str | None) -> Response:
        payload: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": self.signing_key.sign(claims),
        }
        if self.refresh_in is not None:
            payload["refresh_in"] = self.refresh_in
        return Response.json(200, payload, self._common_headers(correlation_id, str(uuid.uuid4())))

    def _error_response(self, error: TokenError, correlation_id: str | None) -> Response:
        trace_id = str(uuid.uuid4())
        correlation_id = correlation_id or str(uuid.uuid4())
        timestamp = entra_timestamp(self.clock())
        payload = {
            "error": error.error,
            "error_description": f"AADSTS{error.code}: {error.description} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
            "error_codes": [error.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
        }
        if self._server is not None:
            payload["error_uri"] = f"{self.base_url}/error?code={error.code}"
        return Response.json(error.status, payload, self._common_headers(correlation_id, trace_id))

    @staticmethod
    def _common_headers(correlation_id: str | None, trace_id: str) -> dict[str, str]:
        headers = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache", "x-ms-request-id": trace_id}
        if correlation_id:
            headers["client-request-id"] = correlation_id
        return headers

    def _tenant_exists(self, tenant: str) -> bool:
        with self._lock:
            return any(key[0] == tenant for key in self._clients)


def _default_fault_error(status: int) -> TokenError:
    # NOTE: the codes for injected faults are plausible Entra errors, not captured ones.
    if status == 429 or status == 503:
        return TokenError(status, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again.")
    if status >= 500:
        return TokenError(status, "server_error", 50000, "There was an error issuing a token or an issue with our sign-in service.")
    if status == 401:
        return TokenError(status, "invalid_client", 7000215, "Invalid client secret provided.")
    return TokenError(status, "invalid_request", 900144, "The request was rejected by an injected fault.")


def _error_code_of(response: Response) -> str | None:
    try:
        payload = json.loads(response.body)
    except ValueError:
        return None
    return payload.get("error") if isinstance(payload, dict) else None


if __name__ == "__main__":
    from .launcher import run_identity_provider

    run_identity_provider()
