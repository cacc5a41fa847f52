"""The app registration's credential for MSAL, and the explicit proxy of a workspace.

A workspace authenticates with a client secret or with a certificate. The certificate is a PEM
private key with the SHA-1 thumbprint of its certificate, or a PKCS#12 (PFX) file that contains both.
Either form is read here with `cryptography` and handed to MSAL as
`{"private_key": <unencrypted PEM>, "thumbprint": <hex>}`, so a wrong passphrase or an unreadable
file fails with a message that names the file, and the same code serves every msal version that
takes certificate credentials.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from misp2sentinel.config import ClientCertificate, Workspace

log = logging.getLogger(__name__)

# A certificate that expires within this many days is reported at WARNING on every run.
CERTIFICATE_EXPIRY_WARNING_DAYS = 14


class CredentialError(Exception):
    """The certificate credential cannot be read; `hint` names the fix."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class CredentialSource:
    """The credential that a workspace configures, before any file is read."""

    kind: str
    """`client secret` or `certificate`, as messages name it."""
    secret: str | None
    certificate: ClientCertificate | None

    @classmethod
    def of(cls, workspace: Workspace) -> CredentialSource:
        if workspace.client_certificate is not None:
            return cls("certificate", None, workspace.client_certificate)
        if workspace.client_secret is None:
            raise ValueError(f"workspace {workspace.name} has neither client_secret nor client_certificate")
        return cls("client secret", workspace.client_secret.get_secret_value(), None)

    def digest(self) -> str:
        """Return a SHA-256 digest that distinguishes credentials without revealing them."""
        hasher = hashlib.sha256(self.kind.encode("utf-8"))
        if self.secret is not None:
            hasher.update(b"\0" + self.secret.encode("utf-8"))
        if self.certificate is not None:
            certificate = self.certificate
            for part in (
                certificate.private_key.get_secret_value() if certificate.private_key else "",
                certificate.thumbprint or "",
                str(certificate.pfx_path or ""),
                certificate.passphrase.get_secret_value() if certificate.passphrase else "",
            ):
                hasher.update(b"\0" + part.encode("utf-8"))
        return hasher.hexdigest()

    def sensitive_texts(self) -> list[str]:
        """Return the texts that no message may contain: the secret, the passphrase and the key."""
        texts = [self.secret] if self.secret else []
        if self.certificate is not None:
            if self.certificate.passphrase is not None:
                texts.append(self.certificate.passphrase.get_secret_value())
            if self.certificate.private_key is not None:
                texts.append(self.certificate.private_key.get_secret_value())
        return [text for text in texts if text]

    def msal_credential(self, now: datetime | None = None) -> str | dict[str, str]:
        """Return MSAL's `client_credential`; raise CredentialError when the certificate cannot be read."""
        if self.certificate is None:
            return self.secret or ""
        if self.certificate.pfx_path is not None:
            return _pfx_credential(self.certificate, now or datetime.now(timezone.utc))
        return _pem_credential(self.certificate)


def _pem_credential(certificate: ClientCertificate) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization

    passphrase = _passphrase_bytes(certificate)
    try:
        key = serialization.load_pem_private_key(certificate.private_key.get_secret_value().encode("utf-8"), password=passphrase)
    except TypeError as error:
        # cryptography raises TypeError when a passphrase is missing for an encrypted key, or given for a plain one.
        raise CredentialError(
            f"cannot read client_certificate.private_key: {error}",
            hint="set client_certificate.passphrase for an encrypted key, and leave it out for an unencrypted one",
        ) from None
    except ValueError:
        raise CredentialError(
            "cannot read client_certificate.private_key: the PEM data is invalid or the passphrase is wrong",
            hint="check the key file and client_certificate.passphrase",
        ) from None
    return {"private_key": _unencrypted_pem(key), "thumbprint": certificate.thumbprint or ""}


def _pfx_credential(certificate: ClientCertificate, now: datetime) -> dict[str, str]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import pkcs12

    path = certificate.pfx_path
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CredentialError(
            f"cannot read the PFX file {path}: {error.strerror}",
            hint="check client_certificate.pfx_path and that the bridge's user may read the file",
        ) from None
    try:
        key, cert, _ = pkcs12.load_key_and_certificates(data, _passphrase_bytes(certificate))
    except ValueError:
        raise CredentialError(
            f"cannot read the PFX file {path}: it is not PKCS#12 data or the passphrase is wrong",
            hint="check client_certificate.passphrase; export the certificate with its private key as a .pfx file",
        ) from None
    if key is None or cert is None:
        missing = "private key" if key is None else "certificate"
        raise CredentialError(
            f"the PFX file {path} contains no {missing}",
            hint="export the certificate together with its private key as a .pfx file",
        )

    expires = cert.not_valid_after_utc
    if expires <= now:
        log.warning("the certificate in %s expired on %s; Entra ID rejects it, so upload a new one to the app registration", path, expires.date())
    elif expires - now < timedelta(days=CERTIFICATE_EXPIRY_WARNING_DAYS):
        log.warning("the certificate in %s expires on %s; upload its successor to the app registration in time", path, expires.date())
    thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Entra ID's x5t is the SHA-1 thumbprint
    return {"private_key": _unencrypted_pem(key), "thumbprint": thumbprint}


def _passphrase_bytes(certificate: ClientCertificate) -> bytes | None:
    if certificate.passphrase is None:
        return None
    return certificate.passphrase.get_secret_value().encode("utf-8")


def _unencrypted_pem(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def proxy_url(workspace_or_server: Any) -> str | None:
    """Return the configured `https_proxy` URL of a workspace or MISP server, or None."""
    secret = getattr(workspace_or_server, "https_proxy", None)
    return secret.get_secret_value() if secret is not None else None


def proxies_for(url: str | None) -> dict[str, str] | None:
    """Return the `proxies` mapping of requests for one explicit proxy, or None for a direct connection."""
    if not url:
        return None
    return {"http": url, "https": url}


def redact_proxy(url: str) -> str:
    """Return the proxy URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{parts.username}:***@{host}", parts.path, parts.query, parts.fragment))


def proxy_passwords(url: str | None) -> list[str]:
    """Return the password of a proxy URL as written and percent-decoded, so that messages can leave both out."""
    password = urlsplit(url).password if url else None
    if not password:
        return []
    return sorted({password, unquote(password)}, key=len, reverse=True)
