"""App registrations of the IdP emulator and the checks of their credentials.

Failures raise TokenError with Entra's `error` value, AADSTS number and message text.
NOTE: the numbers and texts are modelled on Entra's responses but were not checked
against the live service. Only the shape of a 7000215 (wrong secret) response, as MSAL
returns it, was checked. AADSTS50027 for a malformed or wrongly addressed assertion is a guess.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote_plus

import jwt
from cryptography import x509

from .tls import certificate_thumbprint

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# Entra accepts client assertions whose times are a few minutes off; the exact tolerance is
# not documented, so this value is an estimate.
ASSERTION_CLOCK_SKEW = 300.0


@dataclass
class RegisteredClient:
    """An app registration with its credentials and the service principal's identity."""

    tenant: str
    client_id: str
    object_id: str
    display_name: str
    roles: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    certificates_by_sha1: dict[str, x509.Certificate] = field(default_factory=dict)
    """Registered certificates by lower-case hex SHA-1 thumbprint."""
    certificates_by_sha256: dict[str, x509.Certificate] = field(default_factory=dict)
    enabled: bool = True

    def add_secret(self, secret: str) -> None:
        self.secrets.add(secret)

    def remove_secret(self, secret: str) -> None:
        self.secrets.discard(secret)

    def add_certificate(self, certificate_pem: str | bytes) -> None:
        """Register a public certificate, as uploaded under "Certificates & secrets"."""
        if isinstance(certificate_pem, str):
            certificate_pem = certificate_pem.encode("ascii")
        certificate = x509.load_pem_x509_certificate(certificate_pem)
        self.certificates_by_sha1[certificate_thumbprint(certificate_pem, "sha1")] = certificate
        self.certificates_by_sha256[certificate_thumbprint(certificate_pem, "sha256")] = certificate


class TokenError(Exception):
    """A token request is rejected with an Entra-style error response."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"AADSTS{code}: {description}")
        self.status = status
        self.error = error
        self.code = code
        self.description = description


def verify_client_secret(client: RegisteredClient, secret: str) -> None:
    """Raise TokenError (AADSTS7000215) unless `secret` is one of the client's secrets."""
    if not any(hmac.compare_digest(secret, registered) for registered in client.secrets):
        raise TokenError(401, "invalid_client", 7000215, f"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client.client_id}'.")


def verify_client_assertion(client: RegisteredClient, form: dict[str, str], *, token_url: str, now: float) -> None:
    """Raise TokenError unless the form's client assertion (RFC 7523) is valid for `client`.

    The assertion must be signed by a registered certificate, name `token_url` as `aud` and
    the client id as `iss` and `sub`, and be valid at `now` (Unix seconds) within
    ASSERTION_CLOCK_SKEW. Float `iat`/`exp` values, as MSAL sends, are accepted.
    """
    if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
        raise TokenError(400, "invalid_request", 50027, f"Invalid client_assertion_type {form.get('client_assertion_type')!r}; expected '{CLIENT_ASSERTION_TYPE}'.")
    assertion = form["client_assertion"]
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.InvalidTokenError:
        raise TokenError(401, "invalid_client", 50027, "JWT token is invalid or malformed.") from None

    # MSAL 1.39 signs with RS256 and an x5t (SHA-1) header when given a thumbprint,
    # and with PS256 and x5t#S256 (SHA-256) when given only the public certificate.
    algorithm = header.get("alg")
    if algorithm == "RS256" and "x5t" in header:
        presented = x5t_to_hex(header["x5t"])
        certificate = client.certificates_by_sha1.get(presented)
    elif algorithm == "PS256" and "x5t#S256" in header:
        presented = x5t_to_hex(header["x5t#S256"])
        certificate = client.certificates_by_sha256.get(presented)
    else:
        raise TokenError(401, "invalid_client", 50027, f"JWT token is invalid or malformed: alg {algorithm!r} needs an x5t (RS256) or x5t#S256 (PS256) header.")
    if certificate is None:
        raise TokenError(401, "invalid_client", 700027, f"The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{presented.upper()}', Configured keys for app '{client.client_id}': {len(client.certificates_by_sha1)}]")

    try:
        claims = jwt.decode(
            assertion,
            certificate.public_key(),
            algorithms=[algorithm],
            options={"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_iss": False},
        )
    except jwt.InvalidSignatureError:
        raise TokenError(401, "invalid_client", 700027, "Client assertion failed signature validation.") from None
    except jwt.InvalidTokenError as error:
        raise TokenError(401, "invalid_client", 50027, f"JWT token is invalid or malformed: {error}.") from None

    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if token_url not in audiences:
        raise TokenError(401, "invalid_client", 50027, f"JWT token is invalid or malformed: the assertion audience {audience!r} is not the token endpoint '{token_url}'.")
    if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
        raise TokenError(401, "invalid_client", 700021, "Client assertion application identifier doesn't match 'client_id' parameter.")

    expires = claims.get("exp")
    not_before = claims.get("nbf", claims.get("iat"))
    if not isinstance(expires, (int, float)) or now > expires + ASSERTION_CLOCK_SKEW:
        raise TokenError(401, "invalid_client", 700024, f"Client assertion is not within its valid time range. Current time: {entra_timestamp(now)}, assertion valid to: {expires}.")
    if isinstance(not_before, (int, float)) and now + ASSERTION_CLOCK_SKEW < not_before:
        raise TokenError(401, "invalid_client", 700024, f"Client assertion is not within its valid time range. Current time: {entra_timestamp(now)}, assertion valid from: {not_before}.")


def missing_parameter(name: str) -> TokenError:
    return TokenError(400, "invalid_request", 900144, f"The request body must contain the following parameter: '{name}'.")


def audience_from_scope(scope: str) -> str:
    """Map a client-credentials scope to the token audience (`X/.default` -> `X`).

    Raises TokenError unless the scope is a single resource with the `/.default` suffix.
    """
    scopes = scope.split()
    if len(scopes) != 1:
        raise TokenError(400, "invalid_scope", 70011, f"The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid.")
    if not scopes[0].endswith("/.default"):
        raise TokenError(400, "invalid_scope", 1002012, f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
    return scopes[0][: -len("/.default")]


def parse_basic_authorization(header: str | None) -> tuple[str, str] | None:
    """Return (client_id, secret) from an HTTP Basic header (client_secret_basic), if any."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, separator, secret = decoded.partition(":")
    if not separator:
        return None
    # RFC 6749 section 2.3.1: both parts are form-urlencoded before Basic encoding.
    return unquote_plus(client_id), unquote_plus(secret)


def x5t_to_hex(x5t: Any) -> str:
    """Decode a base64url thumbprint header, with or without padding, to lower-case hex."""
    if not isinstance(x5t, str):
        return ""
    unpadded = x5t.rstrip("=")
    try:
        return base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4)).hex()
    except (binascii.Error, ValueError):
        return ""


def entra_timestamp(seconds: float) -> str:
    """Format Unix seconds as Entra error responses do, e.g. `2024-05-21 10:39:12Z`."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
