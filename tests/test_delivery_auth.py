"""Credentials, proxies, clouds and token renewal of the Sentinel delivery path.

The bridge's token provider and upload client talk HTTPS to the identity-provider and Sentinel
emulators on 127.0.0.1, with certificate credentials (PEM key with thumbprint, PFX file) and
through a local CONNECT proxy. Cloud presets are checked as configuration values only: no test
builds an MSAL application against a Microsoft host.
"""

from __future__ import annotations

import base64
import logging
import select
import socket
import socketserver
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from misp2sentinel.clock import Clock
from misp2sentinel.config import CLOUDS, MispServer, SentinelSettings, Workspace, load_config
from misp2sentinel.errors import ConfigError, WorkspaceError
from misp2sentinel.sentinel.auth import MICROSOFT_LOGIN_HOSTS, TokenProvider, TokenProviders, make_session
from misp2sentinel.sentinel.client import SentinelClient
from misp2sentinel.sentinel.pacing import RateLimiter
from tests.emulators.clock import FakeClock
from tests.emulators.idp import IdentityProviderEmulator
from tests.emulators.misp import MispEmulator
from tests.emulators.sentinel import SentinelEmulator
from tests.emulators.tls import ClientCertificate, EmulatorTLS
from tests.emulators.tokens import SigningKey
from tests.sync_stack import PROXY_AND_CA_VARIABLES

SECRET = "delivery-auth-secret-9d2e4f"
PASSPHRASE = "pfx-passphrase-b71c"
PROXY_USER = "bridge"
PROXY_PASSWORD = "proxy-password-5e8a"
MISP_KEY = "DeliveryAuthMispKey000000000000000000042"

ENVIRONMENT_VARIABLES = (
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
    "http_proxy", "https_proxy", "all_proxy", "no_proxy",
)

SETTINGS = SentinelSettings(
    batch_size=100, requests_per_minute=100, timeout_seconds=5, max_attempts=3,
    backoff_base_seconds=1, backoff_max_seconds=4, max_retry_seconds=60,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_AND_CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)


class RunClock(Clock):
    """The project's clock on the emulators' fake clock, so waits cost no real time."""

    def __init__(self, source: FakeClock) -> None:
        super().__init__()
        self.source = source

    def monotonic(self) -> float:
        return self.source()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.source.advance(seconds)


class ConnectProxy:
    """An HTTP proxy on 127.0.0.1 that tunnels CONNECT requests to loopback ports and counts them.

    With `credentials`, a CONNECT without the matching Basic `Proxy-Authorization` gets 407.
    """

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.tunnels: list[int] = []
        self.refusals: list[int] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url_with_credentials(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        head, _, early_data = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        host, _, port_text = target.rpartition(":")
        if method != "CONNECT" or host not in ("127.0.0.1", "localhost"):
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
            if headers.get("proxy-authorization") != expected:
                with self._lock:
                    self.refusals.append(int(port_text))
                client.sendall(b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n')
                return
        upstream = socket.create_connection((host, int(port_text)), timeout=10)
        with self._lock:
            self.tunnels.append(int(port_text))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if early_data:
            upstream.sendall(early_data)
        _relay(client, upstream)

    def tunnel_ports(self) -> set[int]:
        with self._lock:
            return set(self.tunnels)


def _relay(first: socket.socket, second: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [first, second]
    try:
        while True:
            readable, _, _ = select.select(sockets, [], [], 10)
            if not readable:
                return
            for source in readable:
                data = source.recv(65536)
                if not data:
                    return
                (second if source is first else first).sendall(data)
    except OSError:
        return
    finally:
        second.close()


@dataclass
class Azure:
    """A running identity provider and Sentinel, one tenant and one app with a secret and a certificate."""

    tls: EmulatorTLS
    idp: IdentityProviderEmulator
    sentinel: SentinelEmulator
    clock: RunClock
    tenant_id: str
    client_id: str
    workspace_id: str
    certificate: ClientCertificate

    def workspace(self, **changes: Any) -> Workspace:
        settings = {
            "name": "soc",
            "workspace_id": self.workspace_id,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": SECRET,
            "authority_host": self.idp.base_url,
            "api_base_url": self.sentinel.base_url,
            "ca_bundle": str(self.tls.ca_bundle_path),
        }
        settings.update(changes)
        return Workspace.model_validate({key: value for key, value in settings.items() if value is not None})

    def client(self, workspace: Workspace) -> SentinelClient:
        session = make_session(workspace.ca_bundle, workspace.verify_tls)
        return SentinelClient(
            workspace, SETTINGS, session, TokenProvider(workspace, session), RateLimiter(100, self.clock), self.clock,
            random_source=lambda: 0.5,
        )

    def statuses(self) -> list[int]:
        return [entry.status for entry in self.sentinel.request_log]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> EmulatorTLS:
    return EmulatorTLS.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def azure(tls: EmulatorTLS, signing_key: SigningKey):
    source = FakeClock()
    idp = IdentityProviderEmulator(tls=tls, clock=source, signing_key=signing_key).start()
    sentinel = SentinelEmulator(tls=tls, signing_key=signing_key, clock=source, wall_clock=source).start()
    certificate = tls.issue_client_certificate("misp2sentinel test app")
    tenant_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    idp.register_client(tenant_id, client_id, secret=SECRET, certificate_pem=certificate.certificate_pem)
    workspace_id = sentinel.add_workspace(str(uuid.uuid4()), [client_id])
    yield Azure(tls, idp, sentinel, RunClock(source), tenant_id, client_id, workspace_id, certificate)
    sentinel.stop()
    idp.stop()


def indicators(count: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": f"indicator--{uuid.uuid4()}",
            "created": "2024-01-01T00:00:00.000Z",
            "modified": "2024-01-02T00:00:00.000Z",
            "pattern": f"[ipv4-addr:value = '198.51.100.{number % 250}']",
            "pattern_type": "stix",
            "valid_from": "2024-01-01T00:00:00Z",
        }
        for number in range(count)
    ]


def write_pfx(path: Path, certificate: ClientCertificate, passphrase: str | None) -> Path:
    key = serialization.load_pem_private_key(certificate.private_key_pem.encode(), password=None)
    cert = x509.load_pem_x509_certificate(certificate.certificate_pem.encode())
    encryption = serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    path.write_bytes(pkcs12.serialize_key_and_certificates(b"misp2sentinel", key, cert, None, encryption))
    return path


def encrypted_pem(certificate: ClientCertificate, passphrase: str) -> str:
    key = serialization.load_pem_private_key(certificate.private_key_pem.encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(passphrase.encode())
    ).decode()


def last_credential(azure: Azure) -> str | None:
    return azure.idp.token_requests[-1].credential


# Certificate credentials


def test_pem_key_with_thumbprint_uploads(azure: Azure) -> None:
    workspace = azure.workspace(
        client_secret=None,
        client_certificate={"private_key": azure.certificate.private_key_pem, "thumbprint": azure.certificate.sha1_thumbprint},
    )

    results = azure.client(workspace).upload(indicators(3))

    assert all(result.ok for result in results)
    assert last_credential(azure) == "certificate"
    assert azure.statuses() == [200]


def test_encrypted_pem_key_with_passphrase(azure: Azure) -> None:
    workspace = azure.workspace(
        client_secret=None,
        client_certificate={
            "private_key": encrypted_pem(azure.certificate, PASSPHRASE),
            "thumbprint": azure.certificate.sha1_thumbprint,
            "passphrase": PASSPHRASE,
        },
    )

    results = azure.client(workspace).upload(indicators(2))

    assert all(result.ok for result in results)
    assert last_credential(azure) == "certificate"


@pytest.mark.parametrize("passphrase", [PASSPHRASE, None])
def test_pfx_file_uploads(azure: Azure, tmp_path: Path, passphrase: str | None) -> None:
    pfx = write_pfx(tmp_path / "app.pfx", azure.certificate, passphrase)
    workspace = azure.workspace(client_secret=None, client_certificate={"pfx_path": str(pfx), "passphrase": passphrase})

    results = azure.client(workspace).upload(indicators(2))

    assert all(result.ok for result in results)
    assert last_credential(azure) == "certificate"


def test_pfx_wrong_passphrase_names_file(azure: Azure, tmp_path: Path) -> None:
    pfx = write_pfx(tmp_path / "app.pfx", azure.certificate, PASSPHRASE)
    workspace = azure.workspace(client_secret=None, client_certificate={"pfx_path": str(pfx), "passphrase": "wrong-" + PASSPHRASE})

    with pytest.raises(WorkspaceError) as raised:
        azure.client(workspace).upload(indicators(1))

    assert str(pfx) in raised.value.message
    assert "passphrase is wrong" in raised.value.message
    assert "client_certificate.passphrase" in raised.value.hint
    assert PASSPHRASE not in str(raised.value)
    assert azure.idp.token_requests == []


def test_pfx_missing_file_fails_workspace(azure: Azure, tmp_path: Path) -> None:
    workspace = azure.workspace(client_secret=None, client_certificate={"pfx_path": str(tmp_path / "absent.pfx")})

    with pytest.raises(WorkspaceError) as raised:
        azure.client(workspace).upload(indicators(1))

    assert "absent.pfx" in raised.value.message
    assert "pfx_path" in raised.value.hint


def test_pem_key_missing_passphrase_explained(azure: Azure) -> None:
    workspace = azure.workspace(
        client_secret=None,
        client_certificate={"private_key": encrypted_pem(azure.certificate, PASSPHRASE), "thumbprint": azure.certificate.sha1_thumbprint},
    )

    with pytest.raises(WorkspaceError) as raised:
        azure.client(workspace).upload(indicators(1))

    assert "client_certificate.private_key" in raised.value.message
    assert "passphrase" in raised.value.hint


def test_unregistered_certificate_gets_hint(azure: Azure) -> None:
    stranger = azure.tls.issue_client_certificate("not registered")
    workspace = azure.workspace(
        client_secret=None,
        client_certificate={"private_key": stranger.private_key_pem, "thumbprint": stranger.sha1_thumbprint},
    )

    with pytest.raises(WorkspaceError) as raised:
        azure.client(workspace).upload(indicators(1))

    assert "AADSTS700027" in raised.value.message
    assert "Certificates & secrets" in raised.value.hint
    assert stranger.private_key_pem not in str(raised.value)


def test_certificate_and_secret_get_separate_providers(azure: Azure) -> None:
    providers = TokenProviders()
    with_secret = azure.workspace()
    with_certificate = azure.workspace(
        client_secret=None,
        client_certificate={"private_key": azure.certificate.private_key_pem, "thumbprint": azure.certificate.sha1_thumbprint},
    )

    assert providers.provider_for(with_secret) is not providers.provider_for(with_certificate)
    assert providers.provider_for(with_certificate) is providers.provider_for(with_certificate.model_copy(update={"name": "other"}))


# Configuration of credentials and proxies


def write_config(tmp_path: Path, workspace_lines: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "workspaces:\n"
        "  - name: soc\n"
        f"    workspace_id: {uuid.uuid4()}\n"
        f"    tenant_id: {uuid.uuid4()}\n"
        f"    client_id: {uuid.uuid4()}\n"
        + workspace_lines,
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def config_problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return raised.value.problems


def test_config_reads_certificate_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: EmulatorTLS) -> None:
    certificate = tls.issue_client_certificate("config test")
    key_file = tmp_path / "app.key"
    key_file.write_text(certificate.private_key_pem, encoding="utf-8")
    key_file.chmod(0o600)
    monkeypatch.setenv("TEST_PFX_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("TEST_PROXY_URL", f"http://{PROXY_USER}:{PROXY_PASSWORD}@proxy.example.org:3128")
    path = write_config(
        tmp_path,
        "    client_certificate:\n"
        "      private_key: {file: app.key}\n"
        f"      thumbprint: \"{':'.join(certificate.sha1_thumbprint[i:i + 2] for i in range(0, 40, 2))}\"\n"
        "      passphrase: {env: TEST_PFX_PASSPHRASE}\n"
        "    https_proxy: {env: TEST_PROXY_URL}\n",
    )

    workspace = load_config(path).workspaces[0]

    assert workspace.client_secret is None
    assert workspace.client_certificate.private_key.get_secret_value() == certificate.private_key_pem.strip()
    assert workspace.client_certificate.thumbprint == certificate.sha1_thumbprint.upper()
    assert workspace.client_certificate.passphrase.get_secret_value() == PASSPHRASE
    assert workspace.https_proxy.get_secret_value().endswith("@proxy.example.org:3128")


def test_config_pfx_path_relative_to_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "    client_certificate:\n      pfx_path: certs/app.pfx\n")

    workspace = load_config(path).workspaces[0]

    assert workspace.client_certificate.pfx_path == tmp_path / "certs" / "app.pfx"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ("", "give exactly one credential"),
        ("    client_secret: s3cret\n    client_certificate: {pfx_path: app.pfx}\n", "give exactly one credential"),
        ("    client_certificate: {thumbprint: " + "A" * 40 + "}\n", "give pfx_path, or private_key with thumbprint"),
        ("    client_certificate: {pfx_path: a.pfx, thumbprint: " + "A" * 40 + "}\n", "not both"),
        ("    client_certificate: {private_key: not-a-key, thumbprint: " + "A" * 40 + "}\n", "expected a PEM private key"),
        ("    client_certificate: {private_key: \"-----BEGIN PRIVATE KEY-----\", thumbprint: ABC}\n", "40 hex digits"),
        ("    client_secret: s3cret\n    https_proxy: proxy.example.org:3128\n", "expected a proxy URL"),
    ],
)
def test_config_credential_problems(tmp_path: Path, lines: str, expected: str) -> None:
    problems = config_problems(write_config(tmp_path, lines))

    assert any(expected in problem for problem in problems), problems


def test_config_hides_proxy_password(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"    client_secret: s3cret\n    https_proxy: socks5://{PROXY_USER}:{PROXY_PASSWORD}@proxy:1080\n")

    problems = config_problems(path)

    assert any("https_proxy" in problem for problem in problems), problems
    assert all(PROXY_PASSWORD not in problem for problem in problems)


# Cloud presets: configuration values only


@pytest.mark.parametrize(
    ("cloud", "authority", "scope", "api"),
    [
        ("public", "https://login.microsoftonline.com", "https://management.azure.com/.default", "https://api.ti.sentinel.azure.com"),
        ("usgov", "https://login.microsoftonline.us", "https://management.usgovcloudapi.net/.default", "https://api.ti.sentinel.azure.us"),
        ("china", "https://login.chinacloudapi.cn", "https://management.chinacloudapi.cn/.default", "https://api.ti.sentinel.azure.cn"),
    ],
)
def test_cloud_preset_values(cloud: str, authority: str, scope: str, api: str) -> None:
    common = {"name": "ws", "workspace_id": str(uuid.uuid4()), "tenant_id": str(uuid.uuid4()), "client_id": str(uuid.uuid4()), "client_secret": SECRET}

    preset = Workspace(cloud=cloud, **common)
    overridden = Workspace(
        cloud=cloud, authority_host="https://login.example.org", scope="https://resource.example.org/.default",
        api_base_url="https://ti.example.org/", **common,
    )

    assert preset.endpoints() == (authority, scope, api)
    assert CLOUDS[cloud] == (authority, scope, api)
    assert authority.removeprefix("https://") in MICROSOFT_LOGIN_HOSTS
    assert overridden.endpoints() == ("https://login.example.org", "https://resource.example.org/.default", "https://ti.example.org")


# Proxies


def test_proxy_carries_token_and_upload(azure: Azure) -> None:
    with ConnectProxy() as proxy:
        workspace = azure.workspace(https_proxy=proxy.url)

        results = azure.client(workspace).upload(indicators(2))

        assert all(result.ok for result in results)
        assert proxy.tunnel_ports() == {azure.idp.port, azure.sentinel.port}


def test_proxy_variables_ignored(azure: Azure, monkeypatch: pytest.MonkeyPatch) -> None:
    with ConnectProxy() as proxy:
        for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url)

        results = azure.client(azure.workspace()).upload(indicators(2))

        assert all(result.ok for result in results)
        assert proxy.tunnel_ports() == set()


def test_proxy_with_credentials(azure: Azure) -> None:
    with ConnectProxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as proxy:
        workspace = azure.workspace(https_proxy=proxy.url_with_credentials(PROXY_USER, PROXY_PASSWORD))

        results = azure.client(workspace).upload(indicators(1))

        assert all(result.ok for result in results)
        assert proxy.refusals == []
        assert proxy.tunnel_ports() == {azure.idp.port, azure.sentinel.port}


def test_proxy_refusal_fails_workspace(azure: Azure, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with ConnectProxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as proxy:
        workspace = azure.workspace(https_proxy=proxy.url_with_credentials(PROXY_USER, "wrong-" + PROXY_PASSWORD))

        with pytest.raises(WorkspaceError) as raised:
            azure.client(workspace).upload(indicators(1))

        assert "407" in raised.value.message
        assert "https_proxy" in raised.value.hint
        assert proxy.refusals
        assert "wrong-" + PROXY_PASSWORD not in str(raised.value) + caplog.text


def test_upload_proxy_407_names_https_proxy(azure: Azure) -> None:
    # The token comes directly, so the 407 reaches the upload client rather than the token provider.
    with ConnectProxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as proxy:
        direct = azure.workspace()
        proxied = azure.workspace(https_proxy=proxy.url_with_credentials(PROXY_USER, "wrong-" + PROXY_PASSWORD))
        session = make_session(direct.ca_bundle, direct.verify_tls)
        client = SentinelClient(proxied, SETTINGS, session, TokenProvider(direct, session), RateLimiter(100, azure.clock), azure.clock)

        with pytest.raises(WorkspaceError) as raised:
            client.upload(indicators(1))

        assert "requires authentication (HTTP 407)" in raised.value.message
        assert "https_proxy" in raised.value.hint
        assert "wrong-" + PROXY_PASSWORD not in str(raised.value)
        assert azure.sentinel.request_log == []


def test_misp_through_proxy(tls: EmulatorTLS) -> None:
    from misp2sentinel.sources.misp import MispSource

    with MispEmulator(api_key=MISP_KEY, tls=tls) as misp, ConnectProxy() as proxy:
        settings = MispServer(url=misp.url, key=MISP_KEY, ca_bundle=tls.ca_bundle_path, https_proxy=proxy.url)

        source = MispSource(settings)
        listed = source.list_changed(1, 2_000_000_000)

        assert listed == {}
        assert proxy.tunnel_ports() == {misp.port}
        assert misp.requests_to("/events/restSearch")


# Tokens rejected during a run


def test_revoked_token_renewed_once(azure: Azure) -> None:
    client = azure.client(azure.workspace())
    azure.sentinel.inject_sequence([None, azure.sentinel.revoke_tokens])

    for _ in range(3):
        assert all(result.ok for result in client.upload(indicators(2)))

    assert azure.statuses() == [200, 401, 200, 200]
    assert len(azure.idp.token_requests) == 2


def test_token_renewed_again_later_in_run(azure: Azure) -> None:
    client = azure.client(azure.workspace())
    revoke = azure.sentinel.revoke_tokens
    azure.sentinel.inject_sequence([None, revoke, None, revoke])

    for _ in range(3):
        assert all(result.ok for result in client.upload(indicators(2)))

    assert azure.statuses() == [200, 401, 200, 401, 200]
    assert len(azure.idp.token_requests) == 3


def test_token_rejected_after_renewal_fails(azure: Azure) -> None:
    client = azure.client(azure.workspace())
    assert all(result.ok for result in client.upload(indicators(1)))
    # The request with the renewed token gets an injected 401, as when the app lost its access in between.
    azure.sentinel.inject_sequence([azure.sentinel.revoke_tokens, 401])

    with pytest.raises(WorkspaceError) as raised:
        client.upload(indicators(1))

    assert "401 twice" in raised.value.message
    assert azure.statuses() == [200, 401, 401]
    assert len(azure.idp.token_requests) == 2


# The command line with a certificate credential


def test_cli_sync_with_certificate(tmp_path: Path, tls: EmulatorTLS, signing_key: SigningKey) -> None:
    import yaml

    from tests.sync_stack import start_stack, stop_stack
    from tests.test_delivery_faults import write_events

    stack = start_stack(tmp_path, tls, signing_key, write_events(tmp_path / "events", events=2, per_event=5))
    try:
        # MSAL signs the client assertion with the real clock, so the identity provider must agree with it.
        stack.source.advance(max(time.time() - stack.source(), 0))
        certificate = tls.issue_client_certificate("command line test")
        stack.idp.client(stack.tenant_id, stack.client_id).add_certificate(certificate.certificate_pem)
        key_file = tmp_path / "app.key"
        key_file.write_text(certificate.private_key_pem, encoding="utf-8")
        key_file.chmod(0o600)
        stack.write_config()
        config = yaml.safe_load(stack.config_path.read_text(encoding="utf-8"))
        workspace = config["workspaces"][0]
        del workspace["client_secret"]
        workspace["client_certificate"] = {"private_key": {"file": "app.key"}, "thumbprint": certificate.sha1_thumbprint}
        stack.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")

        result = stack.cli("sync", "--config", str(stack.config_path))

        assert result.returncode == 0, result.stderr
        assert [request.credential for request in stack.idp.token_requests] == ["certificate"]
        assert len(stack.holdings()) == 11
        assert certificate.private_key_pem.splitlines()[1] not in result.stderr
    finally:
        stop_stack(stack)
