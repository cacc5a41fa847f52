"""Command-line entry points of the emulators and the options they share.

`python -m tests.emulators.idp` runs `run_identity_provider`, `python -m
tests.emulators.sentinel` runs `run_sentinel`, and `python -m tests.emulators.azure` starts
both with one CA and one signing key.
"""

from __future__ import annotations

import argparse
import signal
import threading
import uuid
from pathlib import Path

from .idp import IdentityProviderEmulator
from .sentinel import SentinelEmulator
from .tls import EmulatorTLS
from .tokens import SigningKey


def add_common_arguments(parser: argparse.ArgumentParser, *, default_port: int) -> None:
    """Add the port, TLS directory and signing-key options that every emulator takes."""
    parser.add_argument("--port", type=int, default=default_port, help=f"TCP port on 127.0.0.1; 0 picks a free one (default: {default_port})")
    parser.add_argument(
        "--tls-dir",
        help="directory of the test CA (ca.pem, ca-key.pem); it is created if missing and reused if present, "
        "so emulators started with the same directory share one CA bundle (default: a new temporary directory)",
    )
    parser.add_argument(
        "--signing-key",
        help="PEM file of the RSA key that signs (IdP) and verifies (Sentinel) access tokens; "
        "the IdP creates it if missing. Give both emulators the same file.",
    )


def serve_until_interrupted() -> None:
    """Block until Ctrl-C or SIGTERM while the emulators serve in their own threads."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    print("serving; press Ctrl-C to stop", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass


def add_sentinel_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the Sentinel emulator's workspace, role and behaviour options."""
    parser.add_argument("--workspace", default=str(uuid.uuid4()), help="Log Analytics workspace id (GUID) to create (default: a new UUID)")
    parser.add_argument("--client-id", action="append", default=[], help="client id that gets the Sentinel Contributor role on the workspace; repeatable")
    parser.add_argument("--rate-limit", type=int, default=100, help="requests allowed per rate window (default: 100)")
    parser.add_argument("--rate-window", type=float, default=60.0, help="rate-limit window in seconds (default: 60)")
    parser.add_argument("--rate-scope", choices=("identity", "workspace"), default="identity", help="count requests per token subject or per workspace (default: identity)")
    parser.add_argument("--error-messages-key", choices=("errorMessages", "validationErrorMessages"), default="errorMessages", help="key of the per-record messages in a 200 response (default: errorMessages)")
    parser.add_argument("--no-retry-after-header", action="store_true", help="send 429 responses without a Retry-After header")
    parser.add_argument("--max-body-bytes", type=int, help="respond with 413 to request bodies larger than this many bytes (default: no limit)")
    parser.add_argument("--accept-path-alias", action="store_true", help="also serve the misspelled STIX objects paths")


def sentinel_options(arguments: argparse.Namespace) -> dict[str, object]:
    """Return the SentinelEmulator keyword arguments set by `add_sentinel_arguments`."""
    return {
        "rate_limit": arguments.rate_limit,
        "rate_window": arguments.rate_window,
        "rate_scope": arguments.rate_scope,
        "error_messages_key": arguments.error_messages_key,
        "retry_after_header": not arguments.no_retry_after_header,
        "max_body_bytes": arguments.max_body_bytes,
        "accept_path_alias": arguments.accept_path_alias,
    }


def run_sentinel(argv: list[str] | None = None) -> None:
    """Run the Sentinel emulator in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.emulators.sentinel",
        description="Emulate the Microsoft Sentinel threat-intelligence upload APIs on 127.0.0.1.",
        epilog="Example: python -m tests.emulators.sentinel --port 8443 --tls-dir /tmp/emu --signing-key /tmp/emu/signing-key.pem "
        "--workspace 5f3c1a9e-0000-4000-8000-000000000001 --client-id app1",
    )
    add_common_arguments(parser, default_port=8443)
    add_sentinel_arguments(parser)
    arguments = parser.parse_args(argv)
    if not arguments.signing_key:
        parser.error("--signing-key is required: pass the key file of the IdP emulator so that its tokens verify")
    if not Path(arguments.signing_key).is_file():
        parser.error(f"--signing-key {arguments.signing_key}: file not found; start the IdP emulator with the same --signing-key first")

    tls = EmulatorTLS.create(arguments.tls_dir)
    signing_key = SigningKey.from_pem(Path(arguments.signing_key).read_bytes())
    sentinel = SentinelEmulator(port=arguments.port, tls=tls, signing_key=signing_key, **sentinel_options(arguments))
    workspace_id = sentinel.add_workspace(arguments.workspace, allowed_client_ids=arguments.client_id)

    with sentinel:
        print(f"STIX objects upload: {sentinel.upload_url(workspace_id)}")
        print(f"CA bundle:           {tls.ca_bundle_path}")
        print(f"workspace id:        {workspace_id}")
        print(f"allowed client ids:  {', '.join(arguments.client_id) or '(none)'}")
        serve_until_interrupted()


def run_identity_provider(argv: list[str] | None = None) -> None:
    """Run the IdP emulator in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.emulators.idp",
        description="Emulate the Entra ID token endpoint on 127.0.0.1 for the client-credentials flow.",
        epilog="Example: python -m tests.emulators.idp --port 8444 --tls-dir /tmp/emu --signing-key /tmp/emu/signing-key.pem --tenant t1 --client-id app1 --client-secret s3cret",
    )
    add_common_arguments(parser, default_port=8444)
    parser.add_argument("--tenant", default=str(uuid.uuid4()), help="tenant id in the authority path (default: a new UUID)")
    parser.add_argument("--client-id", default=str(uuid.uuid4()), help="application (client) id to register (default: a new UUID)")
    parser.add_argument("--client-secret", help="client secret to register; without it a random secret is generated and printed")
    parser.add_argument("--certificate", help="PEM file of a public certificate to register for certificate credentials")
    parser.add_argument("--token-lifetime", type=int, default=3599, help="expires_in of issued tokens, in seconds (default: 3599)")
    arguments = parser.parse_args(argv)

    tls = EmulatorTLS.create(arguments.tls_dir)
    signing_key = SigningKey.load_or_create(arguments.signing_key) if arguments.signing_key else SigningKey.generate()
    idp = IdentityProviderEmulator(port=arguments.port, tls=tls, token_lifetime=arguments.token_lifetime, signing_key=signing_key)
    secret = arguments.client_secret or uuid.uuid4().hex
    certificate_pem = open(arguments.certificate, "rb").read() if arguments.certificate else None
    idp.register_client(arguments.tenant, arguments.client_id, secret=secret, certificate_pem=certificate_pem)

    with idp:
        print(f"authority:      {idp.authority(arguments.tenant)}")
        print(f"token endpoint: {idp.token_endpoint(arguments.tenant)}")
        print(f"CA bundle:      {tls.ca_bundle_path}")
        print(f"tenant id:      {arguments.tenant}")
        print(f"client id:      {arguments.client_id}")
        if not arguments.client_secret:
            print(f"client secret:  {secret} (generated)")
        serve_until_interrupted()
