"""Access tokens for the Sentinel upload APIs, from Microsoft Entra ID through MSAL's client-credentials flow.

The credential is a client secret or a certificate (see `credentials.py`). Token requests go
through the workspace's explicit `https_proxy` when one is set.

MSAL (https://github.com/AzureAD/microsoft-authentication-library-for-python) keeps the token in its
in-memory cache and, since msal 1.23, `acquire_token_for_client` returns the cached token until it has
less than five minutes left, so callers ask for a token before every request. msal is imported only
when the first token is requested, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import requests

from misp2sentinel import __version__
from misp2sentinel.config import Workspace
from misp2sentinel.errors import WorkspaceError
from misp2sentinel.sentinel.credentials import CredentialError, CredentialSource, proxies_for, proxy_passwords, proxy_url, redact_proxy

log = logging.getLogger(__name__)

# Entra ID sign-in hosts of the public, US Government and China clouds. They are in MSAL's list of
# well-known authority hosts (msal 1.39 `authority.py`), so MSAL skips instance discovery for them.
# For any other host (an emulator, a proxy) instance discovery is switched off, because MSAL would
# otherwise query login.microsoftonline.com about that host.
MICROSOFT_LOGIN_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
    }
)

# MSAL sends its requests without a timeout unless it builds the session itself.
DEFAULT_TIMEOUT_SECONDS = 60.0

AADSTS_CODE_PATTERN = re.compile(r"AADSTS(\d+)")

# Probable fixes for the Entra ID error codes that a wrong workspace configuration causes. Codes and
# meanings: https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes
ERROR_HINTS = {
    7000215: "check client_secret: it must be the secret's Value, shown once when the secret is created, not its Secret ID",
    7000222: "the client secret has expired; create a new one under the app registration's Certificates & secrets and update client_secret",
    7000218: "client_secret is missing or empty; set it in the workspace configuration",
    700016: "check client_id and tenant_id: no application with this client_id is registered in this tenant (or in this cloud)",
    7000112: "the application is disabled in this tenant; ask a tenant administrator to enable it",
    90002: "check tenant_id and cloud (or authority_host): this tenant does not exist in this cloud",
    900023: "check tenant_id: it must be the directory (tenant) ID, a GUID, or a verified domain name of the tenant",
    90033: "the identity provider reported a transient error; the next run tries again",
    50000: "the identity provider reported a transient error; the next run tries again",
    1002012: "check scope: a client-credentials scope is a resource URI followed by /.default, such as https://management.azure.com/.default",
    70011: "check scope: a client-credentials scope is a resource URI followed by /.default, such as https://management.azure.com/.default",
    500011: "check scope and cloud: the resource in scope is not known in this tenant",
    7000229: "the application has no service principal in this tenant; an administrator of the tenant must add it (for example with az ad sp create --id <client_id>)",
    700027: "check client_certificate: upload the certificate's public part under the app registration's Certificates & secrets, check that thumbprint (or the PFX file) belongs to it, and that it has not expired",
    700024: "the client assertion is outside its validity time: check that this host's clock is correct (NTP)",
    50027: "check client_certificate: the signed client assertion is invalid; check the private key, thumbprint and client_id",
    700021: "check client_id: the client assertion names another application than client_id",
    53003: "a Conditional Access policy for workload identities blocked the sign-in; ask a tenant administrator to allow this host",
}
DEFAULT_HINT = "check tenant_id, client_id, the credential (client_secret or client_certificate) and cloud (or authority_host) of the workspace"


def make_session(ca_bundle: Path | None, verify: bool) -> requests.Session:
    """Build the HTTP session for the identity provider and Sentinel.

    `trust_env` is off, so REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE cannot replace `verify`, and proxy
    variables and .netrc are ignored: a proxy is used only when the workspace sets `https_proxy`, and
    the token provider and the client pass it with every request. `verify=False` turns certificate
    checks off even when a CA bundle is given; otherwise the CA bundle, if any, replaces the system
    trust store.
    """
    session = requests.Session()
    session.trust_env = False
    if not verify:
        session.verify = False
    elif ca_bundle is not None:
        session.verify = str(ca_bundle)
    else:
        session.verify = True
    session.headers["User-Agent"] = f"misp2sentinel/{__version__}"
    return session


def identity_key(workspace: Workspace) -> tuple[str, str, str]:
    """Return (authority host, tenant id, client id): the identity that Sentinel rate-limits."""
    authority_host, _, _ = workspace.endpoints()
    return authority_host.lower(), workspace.tenant_id.lower(), workspace.client_id.lower()


class TokenProvider:
    """Access tokens for one identity (authority host, tenant, client id), shared by its workspaces.

    The MSAL application is built on the first `token()` call, because building it fetches the
    tenant's OpenID configuration, and a certificate is read at that point too. Every failure is
    raised as `WorkspaceError`, with Entra's error code and description and a probable fix. No
    message contains the client secret, the private key, its passphrase or a proxy password.
    Safe to share between threads: token requests are serialised.

    NOTE: a transient identity-provider failure (5xx, 429, connection error) is not retried here,
    because MSAL replays such a response from its own cache for the next 5 seconds of real time
    (msal 1.39 `throttled_http_client.py`). It fails the workspace for this run.
    """

    def __init__(self, workspace: Workspace, session: requests.Session, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.authority_host, self.scope, _ = workspace.endpoints()
        self.tenant_id = workspace.tenant_id
        self.client_id = workspace.client_id
        self._credential = CredentialSource.of(workspace)
        proxy = proxy_url(workspace)
        self._sensitive = self._credential.sensitive_texts() + proxy_passwords(proxy)
        self._proxy_display = redact_proxy(proxy) if proxy else None
        self._http_client = _TimeoutHttpClient(session, timeout_seconds, proxies_for(proxy))
        self._application: Any = None
        self._lock = threading.Lock()

    @property
    def authority(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}"

    def token(self) -> str:
        """Return an access token for `scope`, from MSAL's cache or from the identity provider."""
        with self._lock:
            application = self._get_application()
            from msal.exceptions import MsalServiceError

            try:
                result = application.acquire_token_for_client(scopes=[self.scope])
            except requests.RequestException as error:
                raise self._connection_error(error) from error
            except (MsalServiceError, ValueError) as error:
                # MSAL raises MsalServiceError for a 5xx and ValueError for a response that is not JSON.
                raise self._error(f"the token endpoint failed: {error}", hint=ERROR_HINTS[50000]) from error

        if "access_token" in result:
            log.debug("access token for client %s from %s", self.client_id, result.get("token_source", "identity_provider"))
            return result["access_token"]
        raise self._token_error(result)

    def renew(self) -> None:
        """Drop the cached token, so that the next `token()` call fetches a new one."""
        with self._lock:
            if self._application is not None:
                self._application.remove_tokens_for_client()
        log.info("dropped the cached access token of client %s; the next request fetches a new one", self.client_id)

    def _get_application(self) -> Any:
        if self._application is not None:
            return self._application

        import msal
        from msal.exceptions import MsalServiceError

        options: dict[str, Any] = {}
        if urlsplit(self.authority_host).hostname not in MICROSOFT_LOGIN_HOSTS:
            options["instance_discovery"] = False
        try:
            credential = self._credential.msal_credential()
        except CredentialError as error:
            raise self._error(str(error), hint=error.hint) from None
        if self._proxy_display:
            log.debug("token requests of client %s go through the proxy %s", self.client_id, self._proxy_display)
        try:
            self._application = msal.ConfidentialClientApplication(
                self.client_id,
                client_credential=credential,
                authority=self.authority,
                http_client=self._http_client,
                **options,
            )
        except requests.RequestException as error:
            raise self._connection_error(error) from error
        except MsalServiceError as error:
            # MSAL raises this for a 5xx response to the OpenID discovery request.
            raise self._error(f"OpenID discovery failed: {error}", hint=ERROR_HINTS[50000]) from error
        except ValueError as error:
            if _is_credential_error(error):
                raise self._error(f"MSAL cannot use the {self._credential.kind}: {error}", hint="check client_certificate") from None
            raise self._discovery_error(error) from error
        return self._application

    def _token_error(self, result: dict) -> WorkspaceError:
        error = result.get("error") or "unknown_error"
        description = " ".join(str(result.get("error_description") or "no description").split())
        return self._error(f"{error}: {description}", hint=_hint_for(result.get("error_codes"), description))

    def _discovery_error(self, error: ValueError) -> WorkspaceError:
        # MSAL replaces a failed OpenID discovery with a generic ValueError. The original error, which
        # contains the HTTP status and body, is its __context__ when there is one.
        original = str(error.__context__ or error)
        match = re.search(r"HTTP status: (\d+), Error: (.*)", original, re.DOTALL)
        if match is None:
            return self._error(
                f"invalid authority {self.authority}: {error}",
                hint="authority_host must be an https:// URL with a host name, such as https://login.microsoftonline.com",
            )
        status, body = match.groups()
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and payload.get("error"):
            description = " ".join(str(payload.get("error_description", "")).split())
            hint = _hint_for(payload.get("error_codes"), description)
            return self._error(f"OpenID discovery failed with HTTP {status}: {payload['error']}: {description}", hint=hint)
        return self._error(
            f"OpenID discovery failed with HTTP {status}: {_shorten(body)}",
            hint="check tenant_id and cloud (or authority_host)",
        )

    def _connection_error(self, error: requests.RequestException) -> WorkspaceError:
        if isinstance(error, requests.exceptions.ProxyError):
            hint = f"the proxy {self._proxy_display} failed or refused the connection; check https_proxy and the proxy's log"
        elif isinstance(error, requests.exceptions.SSLError):
            hint = "the TLS certificate of the identity provider could not be verified; set ca_bundle to the CA that issued it"
        elif isinstance(error, requests.Timeout):
            hint = "the request to the identity provider timed out; the next run tries again"
        else:
            hint = "check authority_host, DNS and the network path to the identity provider"
        return self._error(f"request failed: {type(error).__name__}: {error}", hint=hint)

    def _error(self, detail: str, *, hint: str) -> WorkspaceError:
        message = f"cannot get an access token for client {self.client_id} in tenant {self.tenant_id} from {self.authority_host}: {detail}"
        return WorkspaceError(self._redact(message), hint=self._redact(hint))

    def _redact(self, text: str) -> str:
        """Remove the credential and proxy password from `text`, in case a server or library echoes them."""
        for sensitive in self._sensitive:
            text = text.replace(sensitive, "[redacted]")
        return text


class TokenProviders:
    """Registry that returns one shared `TokenProvider` per identity and credential.

    Workspaces that use the same authority host, tenant, client id, credential, scope, proxy and TLS
    settings share a provider, so they share MSAL's token cache and fetch one token. `session_factory`
    builds the HTTP session of a new provider (default: `make_session` with the workspace's TLS settings).
    """

    def __init__(
        self,
        session_factory: Callable[[Workspace], requests.Session] | None = None,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._session_factory = session_factory or (lambda workspace: make_session(workspace.ca_bundle, workspace.verify_tls))
        self._timeout_seconds = timeout_seconds
        self._providers: dict[tuple, TokenProvider] = {}
        self._lock = threading.Lock()

    def provider_for(self, workspace: Workspace) -> TokenProvider:
        """Return the provider for the workspace's identity, building it on first use."""
        _, scope, _ = workspace.endpoints()
        # The credential and proxy go into the key only as digests, so a repr of the registry cannot show them.
        credential_digest = CredentialSource.of(workspace).digest()
        proxy_digest = hashlib.sha256((proxy_url(workspace) or "").encode("utf-8")).hexdigest()
        key = (*identity_key(workspace), scope, credential_digest, proxy_digest, str(workspace.ca_bundle), workspace.verify_tls)
        with self._lock:
            provider = self._providers.get(key)
            if provider is None:
                provider = TokenProvider(workspace, self._session_factory(workspace), timeout_seconds=self._timeout_seconds)
                self._providers[key] = provider
            return provider


class _TimeoutHttpClient:
    """MSAL `http_client` that sends through the given session with a timeout, and the proxy if any, on every request."""

    def __init__(self, session: requests.Session, timeout_seconds: float, proxies: dict[str, str] | None = None) -> None:
        self._session = session
        self._timeout_seconds = timeout_seconds
        self._proxies = proxies

    def post(self, url: str, params: Any = None, data: Any = None, headers: Any = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout_seconds)
        if self._proxies:
            kwargs.setdefault("proxies", self._proxies)
        return self._session.post(url, params=params, data=data, headers=headers, **kwargs)

    def get(self, url: str, params: Any = None, headers: Any = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout_seconds)
        if self._proxies:
            kwargs.setdefault("proxies", self._proxies)
        return self._session.get(url, params=params, headers=headers, **kwargs)

    def close(self) -> None:
        # The session belongs to the caller, who may still use it for Sentinel requests.
        pass


def _hint_for(error_codes: Any, description: str) -> str:
    """Return the probable fix for Entra's `error_codes`, or for the AADSTS code in the description."""
    codes = error_codes if isinstance(error_codes, list) and error_codes else AADSTS_CODE_PATTERN.findall(description)[:1]
    for code in codes:
        try:
            return ERROR_HINTS[int(code)]
        except (KeyError, TypeError, ValueError):
            continue
    return DEFAULT_HINT


def _is_credential_error(error: ValueError) -> bool:
    """Tell MSAL's rejection of a certificate dict from its rejection of an authority URL."""
    text = str(error).lower()
    return any(word in text for word in ("private_key", "thumbprint", "certificate", "passphrase", "pfx"))


def _shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
