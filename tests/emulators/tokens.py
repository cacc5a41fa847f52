"""Access tokens shared by the identity-provider and Sentinel emulators.

The IdP signs RS256 JWTs with a `SigningKey`, and the Sentinel emulator verifies them with
the same key object. Emulators that run as separate processes share the key as a PEM file.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

# Audiences that both Sentinel upload APIs accept, per Microsoft Learn (stix-objects-api
# and upload-indicators-api pages): Azure Resource Manager with and without the slash.
ACCEPTED_AUDIENCES = frozenset(
    {
        "https://management.core.windows.net/",
        "https://management.core.windows.net",
        "https://management.azure.com/",
        "https://management.azure.com",
    }
)


class SigningKey:
    """An RSA key pair that signs and verifies the emulated access tokens."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        public_der = self.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # Entra names its signing keys by a base64url SHA-1 thumbprint of their certificate.
        # This id has the same form but hashes the public key, because there is no certificate.
        digest = hashlib.sha1(public_der).digest()
        self.key_id = base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        private_key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ValueError("the signing key must be an RSA private key in PEM format")
        return cls(private_key)

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Read the PEM private key at `path`, or generate one and write it there (mode 0600)."""
        file = Path(path)
        if file.exists():
            return cls.from_pem(file.read_bytes())
        key = cls.generate()
        descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(key.private_pem())
        return key

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, claims: dict[str, Any]) -> str:
        """Return `claims` as a compact RS256 JWT with Entra's `typ`, `kid` and `x5t` headers."""
        headers = {"typ": "JWT", "kid": self.key_id, "x5t": self.key_id}
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers=headers)

    def jwk(self) -> dict[str, Any]:
        """Return the public key as a JSON Web Key, as listed by a `jwks_uri`."""
        key = RSAAlgorithm.to_jwk(self.public_key, as_dict=True)
        key.update({"kid": self.key_id, "x5t": self.key_id, "use": "sig"})
        return key


class TokenRejected(Exception):
    """An access token failed verification; `reason` describes the failure for logs, never for clients."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify_access_token(
    token: str,
    signing_key: SigningKey,
    *,
    now: float,
    accepted_audiences: frozenset[str] = ACCEPTED_AUDIENCES,
    clock_skew: float = 0.0,
) -> dict[str, Any]:
    """Verify signature, audience, `exp` and `nbf` at time `now`; return the claims.

    Time checks use `now` (Unix seconds) instead of the system clock, so a test can expire
    a token by advancing a fake clock. Raises TokenRejected.
    """
    try:
        claims = jwt.decode(
            token,
            signing_key.public_key,
            algorithms=["RS256"],
            options={"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except jwt.InvalidTokenError as error:
        raise TokenRejected(f"invalid token: {error}") from None

    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if not any(value in accepted_audiences for value in audiences):
        raise TokenRejected(f"audience {audience!r} is not accepted")

    expires = claims.get("exp")
    if not isinstance(expires, (int, float)):
        raise TokenRejected("token has no numeric exp claim")
    if now >= expires + clock_skew:
        raise TokenRejected(f"token expired at {expires}, now is {now:.0f}")

    not_before = claims.get("nbf")
    if isinstance(not_before, (int, float)) and now + clock_skew < not_before:
        raise TokenRejected(f"token is not valid before {not_before}, now is {now:.0f}")
    return claims
