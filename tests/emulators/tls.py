"""A throwaway certificate authority and server certificate for the HTTPS emulators.

The CA is made with trustme when a test runs, and its certificate is written to a PEM
file that a client uses as its CA bundle (`requests.Session.verify`). Nothing here is
trusted by the system, so a client that ignores the bundle fails the TLS handshake.
"""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

CA_CERTIFICATE_FILE = "ca.pem"
CA_PRIVATE_KEY_FILE = "ca-key.pem"

# The server certificate covers both names a client may use for the loopback interface.
SERVER_IDENTITIES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class ClientCertificate:
    """An RSA certificate and key for a client-credentials (certificate) login."""

    certificate_pem: str
    private_key_pem: str
    sha1_thumbprint: str
    """Hex SHA-1 of the DER certificate, the `thumbprint` that MSAL expects."""

    @property
    def x5t(self) -> str:
        """Base64url SHA-1 thumbprint, as sent in a client assertion's `x5t` header."""
        return thumbprint_to_x5t(self.sha1_thumbprint)


class EmulatorTLS:
    """A test CA, a server certificate for 127.0.0.1 and localhost, and the CA bundle file.

    Build it with `create`. Pass the same instance to every emulator of a test so that
    one CA bundle (`ca_bundle_path`) verifies all of them.
    """

    def __init__(self, ca: trustme.CA, directory: Path) -> None:
        self.ca = ca
        self.directory = directory
        self.ca_bundle_path = directory / CA_CERTIFICATE_FILE
        self._server_certificate = ca.issue_cert(*SERVER_IDENTITIES)
        self._server_context: ssl.SSLContext | None = None

    @classmethod
    def create(cls, directory: str | os.PathLike[str] | None = None) -> EmulatorTLS:
        """Load the CA kept in `directory`, or make a new one and write it there.

        Without a directory a new temporary directory is used. The CA private key is
        written next to the CA certificate (mode 0600) so that emulators started as
        separate processes with the same directory share one CA.
        """
        if directory is None:
            directory = tempfile.mkdtemp(prefix="emulator-tls-")
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)

        certificate_file = path / CA_CERTIFICATE_FILE
        key_file = path / CA_PRIVATE_KEY_FILE
        if certificate_file.exists() and key_file.exists():
            ca = trustme.CA.from_pem(certificate_file.read_bytes(), key_file.read_bytes())
            return cls(ca, path)

        ca = trustme.CA(organization_name="misp2sentinel test CA")
        ca.cert_pem.write_to_path(str(certificate_file))
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as key_stream:
            key_stream.write(ca.private_key_pem.bytes())
        return cls(ca, path)

    def server_context(self) -> ssl.SSLContext:
        """Return the server-side SSL context that presents the loopback certificate."""
        if self._server_context is None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            self._server_certificate.configure_cert(context)
            self._server_context = context
        return self._server_context

    def client_context(self) -> ssl.SSLContext:
        """Return a client-side SSL context that trusts only this CA."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(context)
        return context

    def wrap_server_socket(self, sock):
        """Wrap a listening socket so that accepted connections speak TLS.

        The handshake is deferred (`do_handshake_on_connect=False`) so that a slow or
        broken client stalls only its own handler thread, not the accept loop. The
        handler runs the handshake itself.
        """
        return self.server_context().wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )

    def issue_client_certificate(self, common_name: str) -> ClientCertificate:
        """Issue an RSA certificate for certificate-based client credentials.

        MSAL signs client assertions with RS256 or PS256, so the key must be RSA.
        """
        leaf = self.ca.issue_cert(common_name=common_name, key_type=trustme.KeyType.RSA)
        certificate_pem = leaf.cert_chain_pems[0].bytes().decode("ascii")
        return ClientCertificate(
            certificate_pem=certificate_pem,
            private_key_pem=leaf.private_key_pem.bytes().decode("ascii"),
            sha1_thumbprint=certificate_thumbprint(certificate_pem, "sha1"),
        )


def certificate_thumbprint(certificate_pem: str | bytes, algorithm: str = "sha1") -> str:
    """Return the hex digest of a PEM certificate's DER encoding (`sha1` or `sha256`)."""
    if isinstance(certificate_pem, str):
        certificate_pem = certificate_pem.encode("ascii")
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    return hashlib.new(algorithm, certificate.public_bytes(Encoding.DER)).hexdigest()


def thumbprint_to_x5t(hex_thumbprint: str) -> str:
    """Encode a hex thumbprint as base64url without padding (JWS `x5t`, `x5t#S256`)."""
    raw = bytes.fromhex(hex_thumbprint)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
