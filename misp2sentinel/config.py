"""The configuration file: its model, loading, validation and secrets.

The file is YAML. Validation reports every problem at once, each with its key path, the bad value
and what is expected. Secrets are given inline, as `{env: VARIABLE}` or as `{file: PATH}`; they are
resolved on load, held as `SecretStr` and never echoed in an error message.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from misp2sentinel.errors import ConfigError
from misp2sentinel.mapping.defaults import DEFAULT_LIFETIMES, DEFAULT_MAPPING, DEFAULT_SANITY

log = logging.getLogger(__name__)

TLP_LEVELS = ("clear", "green", "amber", "amber+strict", "red")
TLP_ORDER = {"clear": 0, "white": 0, "green": 1, "amber": 2, "amber+strict": 3, "red": 4}
TlpName = Literal["clear", "white", "green", "amber", "amber+strict", "red"]
GUID_PATTERN = re.compile(r"^[{]?[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}[}]?$")
TENANT_DOMAIN_PATTERN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
HTTPS_URL_PATTERN = re.compile(r"^https://[^/\s:]+(:\d+)?(/\S*)?$")
# A proxy URL: http:// or https://, optional user:password@, a host and an optional port.
PROXY_URL_PATTERN = re.compile(r"^https?://([^@/\s]+@)?[^@/\s:]+(:\d+)?/?$")
# The SHA-1 thumbprint of a certificate as Entra ID shows it: 40 hex digits. Colons and spaces between
# them are removed before the check.
THUMBPRINT_PATTERN = re.compile(r"^[0-9a-fA-F]{40}$")
SECRET_KEYS = {"key", "client_secret", "passphrase", "private_key", "https_proxy"}

# Cloud presets: authority host, token scope and the STIX objects upload API base URL.
CLOUDS = {
    "public": (
        "https://login.microsoftonline.com",
        "https://management.azure.com/.default",
        "https://api.ti.sentinel.azure.com",
    ),
    "usgov": (
        "https://login.microsoftonline.us",
        "https://management.usgovcloudapi.net/.default",
        "https://api.ti.sentinel.azure.us",
    ),
    "china": (
        "https://login.chinacloudapi.cn",
        "https://management.chinacloudapi.cn/.default",
        "https://api.ti.sentinel.azure.cn",
    ),
}


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections_default(cls, data: Any) -> Any:
        """Read a section written with nothing under it (`mapping:`, which YAML reads as null) as an
        empty section, so that its defaults apply. Sections that may be absent, such as `misp`,
        keep null as "none"."""
        if not isinstance(data, dict):
            return data
        empty = [
            key for name, field in cls.model_fields.items()
            if data.get(key := field.alias or name, 0) is None
            and isinstance(field.default_factory, type) and issubclass(field.default_factory, BaseModel)
        ]
        return {key: value for key, value in data.items() if key not in empty} if empty else data


class TagFilter(Model):
    """MISP tag logic: an event matches when it carries any `or` tag (if given), every `and` tag
    and no `not` tag. Names match case-insensitively and `%` is a wildcard, as in MISP."""

    or_: list[str] = Field(default_factory=list, alias="or")
    and_: list[str] = Field(default_factory=list, alias="and")
    not_: list[str] = Field(default_factory=list, alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        # A plain list is MISP's short form: "!name" is a NOT tag, every other name an OR tag.
        if isinstance(value, list):
            return {
                "or": [t for t in value if not str(t).startswith("!")],
                "not": [str(t)[1:] for t in value if str(t).startswith("!")],
            }
        return value

    def is_empty(self) -> bool:
        return not (self.or_ or self.and_ or self.not_)


class Selection(Model):
    """The part of the pulled data that one workspace takes."""

    tags: TagFilter = Field(default_factory=TagFilter)
    orgs: list[str] = Field(default_factory=list)
    types: list[str] = Field(default_factory=list)
    distribution: list[Annotated[int, Field(ge=0, le=4, strict=True)]] = Field(default_factory=list)
    sharing_groups: list[str] | None = None
    max_tlp: TlpName | None = None


Days = int | Literal["never"]
# A longer lifetime could carry valid_until past the year 9999, which STIX timestamps cannot write.
MAX_LIFETIME_DAYS = 36500

# STIX 2.1 indicator-type-ov, the values `mapping.default_indicator_type` may take.
IndicatorType = Literal[
    "anomalous-activity", "anonymization", "benign", "compromised", "malicious-activity", "attribution", "unknown"
]


class GlobalFilter(Model):
    """The only filter MISP receives: tags and creator orgs. The rest of a selection (types,
    distribution, sharing groups, TLP) is applied by the bridge per workspace, because MISP's own
    filters would hide the changes the bridge must see."""

    tags: TagFilter = Field(default_factory=TagFilter)
    orgs: list[str] = Field(default_factory=list)


class LifetimeDays(Model):
    """Days an indicator stays valid after its reference time, per indicator kind; `never` sends
    no `valid_until`, so the indicator stays valid until it is revoked."""

    ip: Days = DEFAULT_LIFETIMES.ip
    domain: Days = DEFAULT_LIFETIMES.domain
    url: Days = DEFAULT_LIFETIMES.url
    email: Days = DEFAULT_LIFETIMES.email
    email_message: Days = DEFAULT_LIFETIMES.email_message
    file_hash: Days = DEFAULT_LIFETIMES.file_hash
    file_name: Days = DEFAULT_LIFETIMES.file_name
    x509: Days = DEFAULT_LIFETIMES.x509
    network_fingerprint: Days = DEFAULT_LIFETIMES.network_fingerprint
    user_agent: Days = DEFAULT_LIFETIMES.user_agent
    registry: Days = DEFAULT_LIFETIMES.registry
    mutex: Days = DEFAULT_LIFETIMES.mutex
    asn: Days = DEFAULT_LIFETIMES.asn
    rule: Days = DEFAULT_LIFETIMES.rule
    other: Days = DEFAULT_LIFETIMES.other

    @field_validator("*", mode="before")
    @classmethod
    def _check_days(cls, value: Any) -> Any:
        if value == "never":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIFETIME_DAYS:
            raise ValueError(f"expected a whole number of days from 1 to {MAX_LIFETIME_DAYS} (100 years), or never")
        return value


class SanityFilter(Model):
    """The mapper's local filter for values that match everyone or nothing; each check has a switch."""

    non_public_addresses: bool = DEFAULT_SANITY.non_public_addresses
    ipv4_min_prefix: Annotated[int, Field(ge=0, le=32, strict=True)] = DEFAULT_SANITY.ipv4_min_prefix
    ipv6_min_prefix: Annotated[int, Field(ge=0, le=128, strict=True)] = DEFAULT_SANITY.ipv6_min_prefix
    empty_content_hashes: bool = DEFAULT_SANITY.empty_content_hashes


class MappingSettings(Model):
    """The `mapping` section, whose defaults are those of `mapping.defaults.DefaultMapping`."""

    default_tlp: TlpName = DEFAULT_MAPPING.default_tlp
    max_tlp: TlpName = DEFAULT_MAPPING.max_tlp
    tlp_version: Literal[1, 2] = DEFAULT_MAPPING.tlp_version
    default_confidence: Annotated[int, Field(ge=0, le=100, strict=True)] = DEFAULT_MAPPING.default_confidence
    use_decay_score: bool = DEFAULT_MAPPING.use_decay_score
    default_indicator_type: IndicatorType = DEFAULT_MAPPING.default_indicator_type
    pattern_style: Literal["simple", "combined"] = DEFAULT_MAPPING.pattern_style
    lifetime_days: LifetimeDays = Field(default_factory=LifetimeDays)
    use_last_seen: bool = DEFAULT_MAPPING.use_last_seen
    sanity: SanityFilter = Field(default_factory=SanityFilter)
    misp_url: str | None = DEFAULT_MAPPING.misp_url
    include_identities: bool = DEFAULT_MAPPING.include_identities
    include_attack_patterns: bool = DEFAULT_MAPPING.include_attack_patterns


def _check_proxy_url(value: SecretStr | None) -> SecretStr | None:
    # The URL may carry a proxy password, so the message does not repeat it.
    if value is not None and not PROXY_URL_PATTERN.match(value.get_secret_value()):
        raise ValueError("expected a proxy URL such as http://proxy.example.org:3128 or http://user:password@proxy.example.org:3128")
    return value


class MispServer(Model):
    url: str
    key: SecretStr
    verify_tls: bool = True
    ca_bundle: Path | None = None
    https_proxy: SecretStr | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    max_attempts: Annotated[int, Field(ge=1, strict=True)] = 4
    retry_seconds: Annotated[float, Field(ge=0)] = 5.0
    filter: GlobalFilter = Field(default_factory=GlobalFilter)
    published_only: bool = True
    lookback_days: Annotated[int, Field(ge=1, strict=True)] = 30
    overlap_seconds: Annotated[int, Field(ge=0, strict=True)] = 300
    fetch_chunk_size: Annotated[int, Field(ge=1, le=1000, strict=True)] = 20
    list_page_size: Annotated[int, Field(ge=1, strict=True)] = 1000
    large_event_attributes: Annotated[int, Field(ge=0, le=10_000_000, strict=True)] = 10000
    attribute_page_size: Annotated[int, Field(ge=1, le=100_000, strict=True)] = 5000

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    _check_https_proxy = field_validator("https_proxy")(_check_proxy_url)


class ClientCertificate(Model):
    """A certificate credential of the app registration.

    Either a PEM private key with the SHA-1 thumbprint of its certificate, as Entra ID lists it
    under "Certificates & secrets", or a PKCS#12 (PFX) file that contains both. `passphrase` decrypts
    an encrypted PEM key or the PFX file.
    """

    private_key: SecretStr | None = None
    thumbprint: str | None = None
    pfx_path: Path | None = None
    passphrase: SecretStr | None = None

    @field_validator("private_key")
    @classmethod
    def _check_private_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and "PRIVATE KEY-----" not in value.get_secret_value():
            raise ValueError("expected a PEM private key, starting with -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----")
        return value

    @field_validator("thumbprint")
    @classmethod
    def _check_thumbprint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digits = re.sub(r"[\s:]", "", value)
        if not THUMBPRINT_PATTERN.match(digits):
            raise ValueError("expected the certificate's SHA-1 thumbprint, 40 hex digits")
        return digits.upper()

    @model_validator(mode="after")
    def _check_form(self) -> ClientCertificate:
        if self.pfx_path is not None:
            if self.private_key is not None or self.thumbprint is not None:
                raise ValueError("give either pfx_path, or private_key with thumbprint, not both")
        elif self.private_key is None or self.thumbprint is None:
            raise ValueError("give pfx_path, or private_key with thumbprint")
        return self


class Workspace(Model):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    workspace_id: str
    tenant_id: str
    client_id: str
    client_secret: SecretStr | None = None
    client_certificate: ClientCertificate | None = None
    cloud: Literal["public", "usgov", "china"] = "public"
    authority_host: str | None = None
    scope: str | None = None
    api_base_url: str | None = None
    ca_bundle: Path | None = None
    verify_tls: bool = True
    source_system: Annotated[str, Field(min_length=1, max_length=256)] = "MISP"
    api: Literal["stix-objects", "legacy"] = "stix-objects"
    legacy_api_base_url: str | None = None
    https_proxy: SecretStr | None = None
    selection: Selection = Field(default_factory=Selection)
    retired: bool = False

    @field_validator("tenant_id")
    @classmethod
    def _check_tenant_id(cls, value: str) -> str:
        if not (GUID_PATTERN.match(value) or TENANT_DOMAIN_PATTERN.match(value)):
            raise ValueError("expected the Microsoft Entra tenant ID (a GUID) or its domain name")
        return value.strip("{}")

    @field_validator("client_id")
    @classmethod
    def _check_client_id(cls, value: str) -> str:
        if not GUID_PATTERN.match(value):
            raise ValueError("expected the application (client) ID of the app registration, a GUID")
        return value.strip("{}")

    @field_validator("client_secret")
    @classmethod
    def _check_client_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("the client secret is empty")
        return value

    _check_https_proxy = field_validator("https_proxy")(_check_proxy_url)

    @model_validator(mode="after")
    def _check_credential(self) -> Workspace:
        if (self.client_secret is None) == (self.client_certificate is None):
            raise ValueError(CREDENTIAL_PROBLEM)
        return self

    @field_validator("authority_host", "api_base_url", "legacy_api_base_url")
    @classmethod
    def _check_https_url(cls, value: str | None) -> str | None:
        if value is not None and not HTTPS_URL_PATTERN.match(value):
            raise ValueError("expected an https:// URL with a host name")
        return value

    @field_validator("workspace_id")
    @classmethod
    def _check_workspace_id(cls, value: str) -> str:
        if not GUID_PATTERN.match(value):
            raise ValueError("expected the Log Analytics workspace ID, a GUID")
        return value.strip("{}").lower()

    @field_validator("source_system")
    @classmethod
    def _check_source_system(cls, value: str) -> str:
        if value.strip().lower() == "microsoft sentinel":
            raise ValueError("the source system name 'Microsoft Sentinel' is reserved by Sentinel")
        return value

    def endpoints(self) -> tuple[str, str, str]:
        """Return (authority host, token scope, API base URL), preset values overridden per key."""
        authority, scope, api = CLOUDS[self.cloud]
        return (
            (self.authority_host or authority).rstrip("/"),
            self.scope or scope,
            (self.api_base_url or api).rstrip("/"),
        )


class SentinelSettings(Model):
    batch_size: Annotated[int, Field(ge=1, le=100, strict=True)] = 100
    requests_per_minute: Annotated[int, Field(ge=1, le=100, strict=True)] = 100
    parallel_requests: Annotated[int, Field(ge=1, le=8, strict=True)] = 2
    timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    max_attempts: Annotated[int, Field(ge=1, strict=True)] = 6
    backoff_base_seconds: Annotated[float, Field(ge=0)] = 2.0
    backoff_max_seconds: Annotated[float, Field(ge=0)] = 120.0
    max_retry_seconds: Annotated[float, Field(gt=0)] = 900.0


class LifecycleSettings(Model):
    """When live indicators are refreshed, deleted events detected and mass revocations held back."""

    refresh_days: Annotated[float, Field(gt=0)] = 12.0
    refresh_share: Annotated[float, Field(ge=0, le=1)] = 0.1
    sweep_interval_hours: Annotated[float, Field(ge=0)] = 0.0
    guard_share: Annotated[float, Field(ge=0, le=1)] = 0.10
    guard_min: Annotated[int, Field(ge=0, strict=True)] = 20


class StateSettings(Model):
    path: Path


class ReportingSettings(Model):
    """Where each sync run leaves its JSON report and, optionally, its Prometheus metrics."""

    # The JSON report of the latest run; None means last-run.json in the state file's folder.
    report_path: Path | None = None
    # A node_exporter textfile-collector file; None writes no metrics.
    metrics_path: Path | None = None
    # The metrics file holds no secret, so node_exporter running as another user may be let read it.
    metrics_file_mode: Literal["0600", "0640", "0644"] = "0600"

    @field_validator("metrics_file_mode", mode="before")
    @classmethod
    def _octal_text(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted 0600 as the octal integer 384.
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:04o}"
        return value

    @field_validator("metrics_path")
    @classmethod
    def _check_metrics_path(cls, value: Path | None) -> Path | None:
        if value is not None and value.suffix != ".prom":
            raise ValueError("the textfile collector reads only files whose name ends in .prom")
        return value


class Config(Model):
    misp: MispServer | None = None
    sources: list[Path] = Field(default_factory=list)
    mapping: MappingSettings = Field(default_factory=MappingSettings)
    sentinel: SentinelSettings = Field(default_factory=SentinelSettings)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    workspaces: list[Workspace] = Field(default_factory=list)
    state: StateSettings | None = None
    reporting: ReportingSettings = Field(default_factory=ReportingSettings)
    _path: Path | None = PrivateAttr(default=None)

    @property
    def source_name(self) -> str:
        """Name the configuration in error messages: its file, when it was read from one."""
        return str(self._path) if self._path else "the configuration"

    @model_validator(mode="after")
    def _check_workspaces(self) -> Config:
        problems = []
        for workspace in self.workspaces:
            chosen = workspace.selection.max_tlp
            if chosen is not None and TLP_ORDER[chosen] > TLP_ORDER[self.mapping.max_tlp]:
                problems.append(
                    f"workspace {workspace.name}: selection.max_tlp {chosen} {MAX_TLP_PROBLEM} "
                    f"{self.mapping.max_tlp}, which no data exceeds; lower it or raise mapping.max_tlp"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def workspace(self, name: str) -> Workspace:
        for workspace in self.workspaces:
            if workspace.name == name:
                return workspace
        known = ", ".join(w.name for w in self.workspaces) or "none"
        raise ConfigError(self.source_name, [f"--workspace {name!r}: no such workspace (configured: {known})"])

    @property
    def active_workspaces(self) -> list[Workspace]:
        return [w for w in self.workspaces if not w.retired]


def load_config(path: Path) -> Config:
    """Read, resolve and validate a configuration file; raise ConfigError listing every problem."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(where, [f"cannot read the file: {error.strerror}"]) from None
    except UnicodeDecodeError as error:
        raise ConfigError(where, [f"not UTF-8 text (invalid byte at offset {error.start})"]) from None
    warn_if_readable_by_others(path, "configuration file")
    # PyYAML is imported here, as only commands that read a configuration need it.
    import yaml

    try:
        data = yaml.load(text, Loader=_unique_key_loader())
    except yaml.YAMLError as error:
        # The parser's message quotes the offending line, which may hold a secret: give its position only.
        mark = getattr(error, "problem_mark", None)
        position = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "syntax error"
        raise ConfigError(where, [f"not valid YAML{position}: {problem}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(where, [f"expected a mapping of sections at the top level, got {type(data).__name__}"])

    problems: list[str] = _duplicate_workspace_names(data) + _cross_checks(data)
    secrets: list[str] = []
    unresolved: set[tuple] = set()
    data = _resolve_secrets(data, (), path.parent, problems, secrets, unresolved)
    _resolve_paths(data, path.parent)
    try:
        config = Config.model_validate(data)
    except ValidationError as error:
        for item in error.errors():
            if tuple(item["loc"]) in unresolved or _reported_by_cross_checks(item):
                continue
            problems.append(_redact(_describe(item), secrets))
    if problems:
        raise ConfigError(where, problems)
    config._path = path
    return config


@functools.cache
def _unique_key_loader():
    """Return a YAML loader that rejects a key given twice in one mapping instead of keeping the last."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} appears twice in one mapping", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


CREDENTIAL_PROBLEM = "give exactly one credential of the app registration: client_secret or client_certificate"
MAX_TLP_PROBLEM = "is above mapping.max_tlp"


def _cross_checks(data: dict) -> list[str]:
    """Check the rules that span several keys on the raw file, so that they are reported with
    their key paths and together with every other problem, not only once the rest is valid."""
    problems = []
    mapping = data.get("mapping") if isinstance(data.get("mapping"), dict) else {}
    ceiling = mapping.get("max_tlp", "amber")
    workspaces = data.get("workspaces") if isinstance(data.get("workspaces"), list) else []
    for index, workspace in enumerate(workspaces):
        if not isinstance(workspace, dict):
            continue
        if ("client_secret" in workspace) == ("client_certificate" in workspace):
            problems.append(f"workspaces[{index}]: {CREDENTIAL_PROBLEM}")
        selection = workspace.get("selection") if isinstance(workspace.get("selection"), dict) else {}
        chosen = selection.get("max_tlp")
        if chosen in TLP_ORDER and ceiling in TLP_ORDER and TLP_ORDER[chosen] > TLP_ORDER[ceiling]:
            problems.append(
                f"workspaces[{index}].selection.max_tlp: {chosen} {MAX_TLP_PROBLEM} {ceiling}, which no data "
                "exceeds; lower it or raise mapping.max_tlp"
            )
    return problems


def _reported_by_cross_checks(item: dict) -> bool:
    return CREDENTIAL_PROBLEM in item["msg"] or MAX_TLP_PROBLEM in item["msg"]


def _duplicate_workspace_names(data: dict) -> list[str]:
    workspaces = data.get("workspaces")
    if not isinstance(workspaces, list):
        return []
    names = [w.get("name") for w in workspaces if isinstance(w, dict) and isinstance(w.get("name"), str)]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        return [f"workspaces: names must be unique; repeated: {', '.join(repeated)}"]
    return []


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def _resolve_secrets(
    data: Any, key_path: tuple, base: Path, problems: list[str], secrets: list[str], unresolved: set[tuple]
) -> Any:
    """Replace `{env: NAME}` and `{file: PATH}` values of secret keys with the secret text.

    Every secret text is collected in `secrets` so error messages can be redacted, and the key
    paths whose secret could not be read go into `unresolved`, already reported once.
    """
    if isinstance(data, list):
        return [
            _resolve_secrets(item, key_path + (i,), base, problems, secrets, unresolved)
            for i, item in enumerate(data)
        ]
    if not isinstance(data, dict):
        return data
    resolved = {}
    for key, value in data.items():
        here = key_path + (key,)
        if key in SECRET_KEYS and isinstance(value, dict):
            resolved[key] = _read_secret(value, here, base, problems)
            if resolved[key] is None:
                unresolved.add(here)
        else:
            resolved[key] = _resolve_secrets(value, here, base, problems, secrets, unresolved)
        if key in SECRET_KEYS and isinstance(resolved[key], str):
            secrets.append(resolved[key])
    return resolved


def _read_secret(spec: dict, key_path: tuple, base: Path, problems: list[str]) -> str | None:
    where = _dotted(key_path)
    if set(spec) == {"env"}:
        name = str(spec["env"])
        value = os.environ.get(name)
        if not value:
            problems.append(f"{where}: environment variable {name} is not set or empty")
        return value
    if set(spec) == {"file"}:
        file_path = Path(str(spec["file"])).expanduser()
        if not file_path.is_absolute():
            file_path = base / file_path
        try:
            value = file_path.read_text(encoding="utf-8").strip()
        except OSError as error:
            problems.append(f"{where}: cannot read secret file {file_path}: {error.strerror}")
            return None
        warn_if_readable_by_others(file_path, "secret file")
        if not value:
            problems.append(f"{where}: secret file {file_path} is empty")
        return value
    problems.append(f"{where}: expected a string, {{env: VARIABLE}} or {{file: PATH}}, got keys {sorted(spec)}")
    return None


def _resolve_paths(data: dict, base: Path) -> None:
    """Make relative paths in the file relative to the configuration file's folder."""

    def absolute(value: Any) -> Any:
        if isinstance(value, str) and value:
            candidate = Path(value).expanduser()
            return str(candidate if candidate.is_absolute() else base / candidate)
        return value

    if isinstance(data.get("sources"), list):
        data["sources"] = [absolute(v) for v in data["sources"]]
    if isinstance(data.get("state"), dict) and "path" in data["state"]:
        data["state"]["path"] = absolute(data["state"]["path"])
    if isinstance(data.get("reporting"), dict):
        for key in ("report_path", "metrics_path"):
            if key in data["reporting"]:
                data["reporting"][key] = absolute(data["reporting"][key])
    workspaces = data.get("workspaces") if isinstance(data.get("workspaces"), list) else []
    for section in [data.get("misp")] + workspaces:
        if isinstance(section, dict) and "ca_bundle" in section:
            section["ca_bundle"] = absolute(section["ca_bundle"])
        certificate = section.get("client_certificate") if isinstance(section, dict) else None
        if isinstance(certificate, dict) and "pfx_path" in certificate:
            certificate["pfx_path"] = absolute(certificate["pfx_path"])


def _describe(item: dict) -> str:
    where = _dotted(item["loc"])
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "missing":
        return f"{where}: required key is missing"
    if item["type"] == "extra_forbidden":
        return f"{where}: unknown key (check its spelling against config.example.yaml)"
    bad_value = item.get("input")
    if any(part in SECRET_KEYS for part in item["loc"]) or isinstance(bad_value, (dict, list)):
        # Containers may hold secrets and are long; the key path already points at them.
        return f"{where}: {message}"
    return f"{where}: {message} (got {bad_value!r})"


def _dotted(key_path: tuple) -> str:
    text = ""
    for part in key_path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = str(part)
    return text or "(top level)"


def warn_if_readable_by_others(path: Path, what: str) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("%s %s is readable by other users; restrict it with: chmod 600 %s", what, path, path)
