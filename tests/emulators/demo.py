"""Run a whole sync against local emulators, as a demonstration: `python -m tests.emulators.demo`.

It starts a MISP emulator loaded with the example feed, an HTTPS identity provider and a Sentinel
upload API on 127.0.0.1, writes a configuration for them into a temporary folder, runs
`misp2sentinel sync` twice through the real command line (the second run sends nothing), edits one
attribute in MISP and syncs again, then prints what the Sentinel workspace holds and stops.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import yaml

from .idp import IdentityProviderEmulator
from .misp import MispEmulator
from .sentinel import SentinelEmulator
from .tls import EmulatorTLS
from .tokens import SigningKey

REPO_ROOT = Path(__file__).resolve().parents[2]
MISP_KEY = "DemoMispApiKey00000000000000000000000001"
CLIENT_SECRET = "demo-client-secret"
EDITED_EVENT = "87e64764-5f69-59b6-97b0-44dd8a14d25a"


def run(config: Path, label: str) -> None:
    print(f"\n$ misp2sentinel sync --config {config}   # {label}", flush=True)
    environment = {k: v for k, v in os.environ.items() if not k.upper().endswith(("_PROXY", "CA_BUNDLE"))}
    result = subprocess.run([sys.executable, "-m", "misp2sentinel", "sync", "--config", str(config)], env=environment)
    print(f"exit code {result.returncode}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.emulators.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--events", default=str(REPO_ROOT / "examples" / "feed"), help="folder of MISP JSON events to serve (default: the example feed)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder with the configuration, state and test CA")
    arguments = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="misp2sentinel-demo-"))
    tls = EmulatorTLS.create(folder / "tls")
    key = SigningKey.generate()
    tenant_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    with MispEmulator(arguments.events, api_key=MISP_KEY) as misp, \
            IdentityProviderEmulator(tls=tls, signing_key=key) as idp, \
            SentinelEmulator(tls=tls, signing_key=key) as sentinel:
        idp.register_client(tenant_id, client_id, secret=CLIENT_SECRET)
        workspace_id = sentinel.add_workspace(str(uuid.uuid4()), [client_id])
        config = folder / "config.yaml"
        config.write_text(yaml.safe_dump({
            "misp": {"url": misp.url, "key": MISP_KEY, "lookback_days": 3650},
            "workspaces": [{
                "name": "demo",
                "workspace_id": workspace_id,
                "tenant_id": tenant_id,
                "client_id": client_id,
                "client_secret": CLIENT_SECRET,
                "authority_host": idp.base_url,
                "api_base_url": sentinel.base_url,
                "ca_bundle": str(tls.ca_bundle_path),
            }],
            "state": {"path": str(folder / "state.sqlite")},
        }))
        config.chmod(0o600)
        print(f"MISP {misp.url}, identity provider {idp.base_url}, Sentinel {sentinel.base_url}")
        print(f"configuration and state in {folder}")

        run(config, "first run: every indicator is created")
        run(config, "second run: nothing changed, nothing is sent")
        event = misp.get_event(EDITED_EVENT)["Event"]
        attribute = next(a for a in event["Attribute"] if a["type"] == "ip-dst")
        misp.edit_attribute(EDITED_EVENT, attribute["uuid"], value="203.0.113.99")
        misp.publish(EDITED_EVENT)
        run(config, f"after editing {attribute['value']} to 203.0.113.99 in MISP: one update")

        held = sentinel.holdings(workspace_id)
        print(f"\nSentinel workspace {workspace_id} holds {len(held)} objects; upload counts per id:")
        for stix_id, count in sorted(sentinel.upload_counts(workspace_id).items()):
            pattern = held[stix_id].get("pattern", held[stix_id].get("name"))
            print(f"  {count}x {stix_id}  {pattern}")
    if arguments.keep:
        print(f"\nkept {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
