"""The `check` command: try every connection a sync needs, and report what works and what to fix.

It reads MISP's version and the API user's role, gets a token for each identity, and probes each
workspace with an upload of an empty object list. Sentinel rejects the empty list with 400 only
after it accepted the token, so a 400 proves the token; it may check the role and the workspace
only for a real upload, so both stay "not confirmed" unless a 403 or a 404 says otherwise. Nothing
is uploaded and the state file is only read.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime

from misp2sentinel.config import Config, MispServer, Workspace
from misp2sentinel.errors import StateError, WorkspaceError

log = logging.getLogger(__name__)

OK = "ok"
WARNING = "warning"
FAILED = "failed"
NOT_CONFIRMED = "not confirmed"

# Skew between this host's clock and MISP's `Date` header above which a warning is given. Above
# misp.overlap_seconds the cursor window can miss edits, which is a failure.
CLOCK_SKEW_WARNING_SECONDS = 30
CLOCK_SKEW_HINT = "synchronise this host's clock with NTP (chrony or systemd-timesyncd), and MISP's too"

# Entra ID codes that point at the clock rather than the credentials
# (https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes).
CLOCK_ERROR_CODES = {"700024": "the client assertion is not within its valid time range"}
AADSTS_CODE = re.compile(r"AADSTS(\d+)")


@dataclass
class Finding:
    """The result of one check: what was checked, how it went, what was seen and the probable fix."""

    component: str
    name: str
    status: str
    message: str
    hint: str | None = None


def run_checks(config: Config, system_time: Callable[[], float] = time.time) -> list[Finding]:
    """Run every check the configuration calls for and return the findings in order.

    `system_time` is this host's clock in Unix seconds, compared with MISP's `Date` header; it is not
    the run time that `MISP2SENTINEL_NOW` fixes, because clock skew is about the real clock.
    """
    findings = [check_state(config)]
    if config.misp is not None:
        findings.extend(check_misp(config.misp, system_time))
    findings.extend(check_workspaces(config))
    return findings


def check_state(config: Config) -> Finding:
    from misp2sentinel.state import StateStore

    if config.state is None:
        return Finding("state", "state file", WARNING, "no state.path is configured, so sync cannot run",
                       "set state.path to a file in a folder only this user can read")
    path = config.state.path
    if not path.exists():
        folder = next((parent for parent in path.parents if parent.exists()), None)
        if folder is None or not _writable(folder):
            return Finding("state", str(path), FAILED, f"the state file does not exist and {folder} is not writable",
                           "create the folder and give it to the user that runs misp2sentinel")
        return Finding("state", str(path), OK, "not created yet; the first sync creates it with mode 0600")
    try:
        with StateStore(path, readonly=True) as store:
            version = store.connection.execute("PRAGMA user_version").fetchone()[0] if store.connection else None
    except StateError as error:
        return Finding("state", str(path), FAILED, error.message, error.hint)
    if not _writable(path):
        return Finding("state", str(path), FAILED, "the state file is not writable by this user",
                       "run misp2sentinel as the user that owns the state file")
    return Finding("state", str(path), OK, f"readable, schema version {version}")


def _writable(path) -> bool:
    import os

    return os.access(path, os.W_OK)


def check_misp(settings: MispServer, system_time: Callable[[], float]) -> list[Finding]:
    """Read MISP's version and the API user's role with the configured key and TLS settings."""
    import requests

    name = settings.url
    session = requests.Session()
    # Given per request, as PyMISP does, so that REQUESTS_CA_BUNDLE cannot replace it.
    verify = str(settings.ca_bundle) if settings.ca_bundle else settings.verify_tls
    session.headers.update({
        "Authorization": settings.key.get_secret_value(),
        "Accept": "application/json",
        "User-Agent": "misp2sentinel-check",
    })
    findings = []
    if not settings.verify_tls:
        findings.append(Finding("misp", name, WARNING, "TLS verification is off (misp.verify_tls: false)",
                                "set misp.ca_bundle to the CA that issued MISP's certificate and turn verify_tls back on"))
    try:
        response = session.get(f"{settings.url}/servers/getVersion", timeout=settings.timeout_seconds, verify=verify)
    except requests.exceptions.SSLError as error:
        return findings + [Finding("misp", name, FAILED, f"the TLS certificate of MISP could not be verified: {_short(error)}",
                                   "set misp.ca_bundle to the PEM file of the CA that issued it")]
    except requests.RequestException as error:
        return findings + [Finding("misp", name, FAILED, f"cannot connect to MISP: {type(error).__name__}: {_short(error)}",
                                   "check misp.url, DNS, the firewall and that MISP is running")]

    if response.status_code in (401, 403):
        return findings + [Finding("misp", name, FAILED, f"MISP refused the API key (HTTP {response.status_code})",
                                   "check misp.key: it must be the key of an enabled user with API access")]
    version = _json_or_none(response)
    if response.status_code != 200 or not isinstance(version, dict) or "version" not in version:
        return findings + [Finding(
            "misp", name, FAILED,
            f"unexpected response to /servers/getVersion: HTTP {response.status_code}, {_body_kind(response)}",
            "check misp.url: it must be the base URL of the MISP web interface, not a login page or proxy",
        )]
    clock = _clock_finding(response, settings, system_time)

    message = f"MISP {version['version']}"
    role = _user_role(session, settings, verify)
    if role is None:
        findings.append(Finding("misp", name, OK, message + "; the API user's role could not be read"))
        return findings + [clock]
    sees_all = bool(role.get("perm_sync") or role.get("perm_site_admin"))
    if sees_all:
        findings.append(Finding("misp", name, OK, f"{message}; role {role.get('name')!r} sees deleted attributes of every organisation's events"))
    else:
        findings.append(Finding(
            "misp", name, WARNING,
            f"{message}; role {role.get('name')!r} sees deleted attributes of its own organisation's events only",
            "give the API user a role with perm_sync, so that attributes deleted in other organisations' events are revoked",
        ))
    return findings + [clock]


def _user_role(session, settings: MispServer, verify) -> dict | None:
    import requests

    try:
        response = session.get(f"{settings.url}/users/view/me", timeout=settings.timeout_seconds, verify=verify)
    except requests.RequestException:
        return None
    payload = _json_or_none(response)
    if response.status_code != 200 or not isinstance(payload, dict) or not isinstance(payload.get("Role"), dict):
        return None
    return payload["Role"]


def _clock_finding(response, settings: MispServer, system_time: Callable[[], float]) -> Finding:
    date = response.headers.get("Date")
    try:
        server_time = parsedate_to_datetime(date).timestamp() if date else None
    except (TypeError, ValueError, IndexError):
        server_time = None
    if server_time is None:
        return Finding("clock", settings.url, NOT_CONFIRMED, "MISP sent no usable Date header, so clock skew was not measured")
    skew = server_time - system_time()
    direction = "ahead of" if skew > 0 else "behind"
    text = f"MISP's clock is {abs(skew):.0f} s {direction} this host's"
    if abs(skew) > settings.overlap_seconds:
        return Finding("clock", settings.url, FAILED,
                       f"{text}, more than misp.overlap_seconds ({settings.overlap_seconds}), so runs can miss edits",
                       CLOCK_SKEW_HINT)
    if abs(skew) > CLOCK_SKEW_WARNING_SECONDS:
        return Finding("clock", settings.url, WARNING, text, CLOCK_SKEW_HINT)
    return Finding("clock", settings.url, OK, f"{text} (within {CLOCK_SKEW_WARNING_SECONDS} s)")


def check_workspaces(config: Config) -> list[Finding]:
    """Get a token for each identity, then probe each workspace that has one."""
    from misp2sentinel.sentinel.auth import TokenProviders

    providers = TokenProviders(timeout_seconds=config.sentinel.timeout_seconds)
    # One token per provider, as sync keys them: by identity and credential, so each distinct
    # secret, certificate, CA bundle or proxy of one app registration is tried on its own.
    tokens: dict[int, str | WorkspaceError] = {}
    findings = []
    for workspace in config.workspaces:
        provider = providers.provider_for(workspace)
        key = id(provider)
        label = f"client {workspace.client_id} in tenant {workspace.tenant_id}"
        if not workspace.verify_tls:
            findings.append(Finding("workspace", workspace.name, WARNING, "TLS verification is off (verify_tls: false)",
                                    "set ca_bundle to the CA that issued the certificates and turn verify_tls back on"))
        if key not in tokens:
            try:
                tokens[key] = provider.token()
            except WorkspaceError as error:
                tokens[key] = error
                findings.append(Finding("identity", label, FAILED, error.message, _token_hint(error)))
            else:
                findings.append(Finding("identity", label, OK, "got an access token"))
        token = tokens[key]
        if isinstance(token, WorkspaceError):
            findings.append(Finding("workspace", workspace.name, NOT_CONFIRMED, "not probed: no access token for its identity"))
            continue
        findings.append(probe_workspace(workspace, config, token))
    return findings


def _token_hint(error: WorkspaceError) -> str | None:
    match = AADSTS_CODE.search(error.message)
    if match and match.group(1) in CLOCK_ERROR_CODES:
        return f"{CLOCK_ERROR_CODES[match.group(1)]}: {CLOCK_SKEW_HINT}"
    return error.hint


def probe_workspace(workspace: Workspace, config: Config, token: str) -> Finding:
    """Upload an empty object list to the workspace and read what the status code proves."""
    import requests

    from misp2sentinel.sentinel.auth import make_session
    from misp2sentinel.sentinel.client import describe_response, upload_endpoint

    endpoint = upload_endpoint(workspace, workspace.api, workspace.legacy_api_base_url)
    session = make_session(workspace.ca_bundle, workspace.verify_tls)
    name = workspace.name + (" (retired)" if workspace.retired else "")
    body = {"sourcesystem": workspace.source_system, endpoint.array_field: []}
    try:
        response = session.post(endpoint.url, json=body, headers={"Authorization": f"Bearer {token}"},
                                timeout=config.sentinel.timeout_seconds)
    except requests.exceptions.SSLError as error:
        return Finding("workspace", name, FAILED, f"the TLS certificate of the upload API could not be verified: {_short(error)}",
                       "set ca_bundle to the PEM file of the CA that issued it, or check api_base_url")
    except requests.RequestException as error:
        return Finding("workspace", name, FAILED, f"cannot reach the upload API: {type(error).__name__}: {_short(error)}",
                       "check api_base_url (or cloud), DNS and the network path to Sentinel")

    status = response.status_code
    detail = describe_response(response)
    if status == 400:
        return Finding("workspace", name, NOT_CONFIRMED,
                       "token accepted (Sentinel rejected only the empty list); the role and the workspace id are not confirmed, "
                       "because Sentinel may check them only for a real upload")
    if 200 <= status < 300:
        return Finding("workspace", name, OK, f"the empty upload was accepted with HTTP {status}: token, role and workspace work")
    if status == 401:
        return Finding("workspace", name, FAILED, f"Sentinel rejected the access token: {detail}",
                       "check scope (the audience must be Azure Resource Manager of the workspace's cloud) and that "
                       "tenant_id is the workspace's tenant")
    if status == 403:
        return Finding("workspace", name, FAILED,
                       f"the application {workspace.client_id} lacks the Microsoft Sentinel Contributor role: {detail}",
                       "assign it the Microsoft Sentinel Contributor role on the Log Analytics workspace; "
                       "a new assignment can take a few minutes to apply")
    if status == 404:
        return Finding("workspace", name, FAILED, f"Sentinel does not know workspace {workspace.workspace_id}: {detail}",
                       "check workspace_id (the Log Analytics workspace ID, a GUID), cloud and api_base_url")
    if status == 429:
        return Finding("workspace", name, NOT_CONFIRMED, f"throttled: {detail}",
                       "a sync is probably running with this identity; check again in a minute")
    return Finding("workspace", name, FAILED, f"unexpected response from the upload API: {detail}",
                   "Sentinel may be failing; check again later, and Azure status if it persists")


def _json_or_none(response):
    try:
        return response.json()
    except ValueError:
        return None


def _body_kind(response) -> str:
    content_type = response.headers.get("Content-Type", "no content type")
    if "html" in content_type.lower():
        return "an HTML page"
    return f"a body of type {content_type.split(';')[0]}"


def _short(error: Exception, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + "..."


def check_exit_code(findings: list[Finding]) -> int:
    return 1 if any(finding.status == FAILED for finding in findings) else 0


def render_findings(findings: list[Finding]) -> str:
    lines = []
    for finding in findings:
        lines.append(f"{finding.status:<13} {finding.component} {finding.name}: {finding.message}")
        if finding.hint and finding.status != OK:
            lines.append(f"{'':<13} fix: {finding.hint}")
    return "\n".join(lines)


def findings_document(findings: list[Finding]) -> dict:
    return {"findings": [asdict(finding) for finding in findings], "exit_code": check_exit_code(findings)}
