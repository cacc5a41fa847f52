"""Start the IdP and Sentinel emulators together with a fresh CA, for manual runs.

`python -m tests.emulators.azure` registers one client in one tenant, creates one
workspace on which that client has the Sentinel Contributor role, prints the URLs, the
CA bundle and the ids, and serves on 127.0.0.1 until Ctrl-C.
"""

from __future__ import annotations

import argparse
import uuid

from .idp import IdentityProviderEmulator
from .launcher import add_sentinel_arguments, sentinel_options, serve_until_interrupted
from .sentinel import SentinelEmulator
from .tls import EmulatorTLS
from .tokens import SigningKey


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.emulators.azure",
        description="Run the Entra ID and Sentinel upload emulators on 127.0.0.1 with one client and one workspace.",
        epilog="Example: python -m tests.emulators.azure --idp-port 8444 --sentinel-port 8443 --tenant t1 --client-id app1 --client-secret s3cret",
    )
    parser.add_argument("--idp-port", type=int, default=0, help="port of the IdP emulator; 0 picks a free one (default: 0)")
    parser.add_argument("--sentinel-port", type=int, default=0, help="port of the Sentinel emulator; 0 picks a free one (default: 0)")
    parser.add_argument("--tls-dir", help="directory for the test CA; reused if it holds one (default: a new temporary directory)")
    parser.add_argument("--tenant", default=str(uuid.uuid4()), help="tenant id (default: a new UUID)")
    parser.add_argument("--client-secret", help="client secret to register; without it a random secret is generated and printed")
    parser.add_argument("--certificate", help="PEM file of a public certificate to register for certificate credentials")
    parser.add_argument("--token-lifetime", type=int, default=3599, help="expires_in of issued tokens, in seconds (default: 3599)")
    add_sentinel_arguments(parser)
    arguments = parser.parse_args(argv)

    client_ids = arguments.client_id or [str(uuid.uuid4())]
    secret = arguments.client_secret or uuid.uuid4().hex
    certificate_pem = open(arguments.certificate, "rb").read() if arguments.certificate else None

    tls = EmulatorTLS.create(arguments.tls_dir)
    signing_key = SigningKey.generate()
    idp = IdentityProviderEmulator(port=arguments.idp_port, tls=tls, signing_key=signing_key, token_lifetime=arguments.token_lifetime)
    for client_id in client_ids:
        idp.register_client(arguments.tenant, client_id, secret=secret, certificate_pem=certificate_pem)
    sentinel = SentinelEmulator(port=arguments.sentinel_port, tls=tls, signing_key=signing_key, **sentinel_options(arguments))
    workspace_id = sentinel.add_workspace(arguments.workspace, allowed_client_ids=client_ids)

    with idp, sentinel:
        print(f"authority:           {idp.authority(arguments.tenant)}")
        print(f"token endpoint:      {idp.token_endpoint(arguments.tenant)}")
        print("scope:               https://management.azure.com/.default")
        print(f"sentinel base URL:   {sentinel.base_url}")
        print(f"STIX objects upload: {sentinel.upload_url(workspace_id)}")
        print(f"CA bundle:           {tls.ca_bundle_path}")
        print(f"tenant id:           {arguments.tenant}")
        print(f"client id:           {', '.join(client_ids)}")
        print(f"workspace id:        {workspace_id}")
        if not arguments.client_secret:
            print(f"client secret:       {secret} (generated)")
        serve_until_interrupted()


if __name__ == "__main__":
    main()
