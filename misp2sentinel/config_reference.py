"""The configuration reference, `docs/configuration.md`, generated from the model in `config.py`.

    python -m misp2sentinel.config_reference            print the page
    python -m misp2sentinel.config_reference --write    rewrite docs/configuration.md

Every key of the pydantic models, nested sections included, gets its type and default from the
model and its one-line meaning from MEANINGS below. A key without a meaning raises an error, so a
new key cannot be added to the model without documenting it. A test fails when the page and this
output differ.
"""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from misp2sentinel.config import Config

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

# One line per key path. List items are written `[]`, as in `workspaces[].name`.
TAG_LOGIC = {
    "": "MISP tag logic; a plain list is MISP's short form, with `!name` for a NOT tag",
    ".or": "an event matches when it carries any of these tags (when the list is not empty)",
    ".and": "an event matches only when it carries every one of these tags",
    ".not": "an event carrying any of these tags does not match",
}

MEANINGS: dict[str, str] = {
    "misp": "the MISP server to pull from; leave the section out to work from local files only",
    "misp.url": "base URL of the MISP web interface",
    "misp.key": "MISP API key; a role with `perm_sync` also sees other organisations' deletions",
    "misp.verify_tls": "verify MISP's certificate; set `ca_bundle` for a private CA instead of turning this off",
    "misp.ca_bundle": "PEM file of the CA that signed the MISP certificate",
    "misp.https_proxy": "proxy for MISP; when null, PyMISP still uses `HTTPS_PROXY` from the environment",
    "misp.timeout_seconds": "timeout of one HTTP request to MISP, in seconds",
    "misp.max_attempts": "attempts per MISP request, for 5xx responses, dropped connections and timeouts",
    "misp.retry_seconds": "first wait before a MISP retry, in seconds, doubled each time",
    "misp.filter": "the only filter MISP itself receives; it must cover every workspace's selection",
    "misp.filter.tags": TAG_LOGIC[""] + "; `%` is a wildcard",
    "misp.filter.tags.or": TAG_LOGIC[".or"],
    "misp.filter.tags.and": TAG_LOGIC[".and"],
    "misp.filter.tags.not": TAG_LOGIC[".not"],
    "misp.filter.orgs": "creator organisation names or uuids",
    "misp.published_only": "send only published events; revocations go out at once",
    "misp.lookback_days": "how many days back the first run looks",
    "misp.overlap_seconds": "how far before the cursor each run reads again, in seconds",
    "misp.fetch_chunk_size": "events fetched per request, by uuid",
    "misp.list_page_size": "events per page when listing what changed",
    "misp.large_event_attributes": "an event with more attributes than this (MISP's `attribute_count`) is fetched "
    "alone, its attributes in pages; a chunk of smaller events holds at most this many attributes in total",
    "misp.attribute_page_size": "attributes per request when a large event is fetched in pages",
    "sources": "MISP JSON files or feed folders (`manifest.json` plus `<uuid>.json`) that `export` reads when no `--source` is given",
    "mapping": "how MISP data becomes STIX 2.1 indicators; `docs/mapping.md` has the rules",
    "mapping.default_tlp": "TLP of data that carries no TLP tag",
    "mapping.max_tlp": "data above this TLP never leaves MISP (counted as `above_max_tlp`)",
    "mapping.tlp_version": "1: TLP 1.0 marking ids, which Sentinel documents; 2: TLP 2.0 marking ids",
    "mapping.default_confidence": "confidence (0-100) when no confidence tag or decay score gives one",
    "mapping.use_decay_score": "after the tags, take the confidence from MISP's decay score",
    "mapping.default_indicator_type": "`indicator_types` value for MISP categories without their own",
    "mapping.pattern_style": "simple: one comparison per indicator; combined: one AND pattern per composite",
    "mapping.lifetime_days": "whole days (1 to 36500) an indicator stays valid after `last_seen` or the run time, "
    "per kind; `never` sends no `valid_until`",
    "mapping.lifetime_days.ip": "IP addresses and networks",
    "mapping.lifetime_days.domain": "domain and host names",
    "mapping.lifetime_days.url": "URLs, HTTP request paths and headers",
    "mapping.lifetime_days.email": "email addresses and display names",
    "mapping.lifetime_days.email_message": "email subject, message id, body, headers and attachment names",
    "mapping.lifetime_days.file_hash": "file hashes",
    "mapping.lifetime_days.file_name": "file names and paths",
    "mapping.lifetime_days.x509": "certificate fingerprints, issuer, subject and serial number",
    "mapping.lifetime_days.network_fingerprint": "JA3, JARM and HASSH fingerprints",
    "mapping.lifetime_days.user_agent": "HTTP user agents",
    "mapping.lifetime_days.registry": "Windows registry keys and values",
    "mapping.lifetime_days.mutex": "mutex names",
    "mapping.lifetime_days.asn": "autonomous system numbers",
    "mapping.lifetime_days.rule": "YARA, Sigma, Snort and Suricata rules",
    "mapping.lifetime_days.other": "ports, sizes, HTTP methods, MAC addresses, accounts, command lines",
    "mapping.use_last_seen": "false: count the lifetime from the run time even when `last_seen` is set",
    "mapping.sanity": "local filter for values that match everyone or nothing, because warninglists miss CIDR attributes",
    "mapping.sanity.non_public_addresses": "skip private, loopback, link-local, multicast and reserved addresses",
    "mapping.sanity.ipv4_min_prefix": "skip IPv4 blocks broader than this prefix length; 0 turns the check off",
    "mapping.sanity.ipv6_min_prefix": "skip IPv6 blocks broader than this prefix length; 0 turns the check off",
    "mapping.sanity.empty_content_hashes": "skip the MD5, SHA and ssdeep hashes of empty content",
    "mapping.misp_url": "link target of the indicators' MISP references; null means `misp.url`",
    "mapping.include_identities": "send the creator organisation as a STIX identity (`created_by_ref`)",
    "mapping.include_attack_patterns": "also emit ATT&CK attack-pattern objects and relationships (export only)",
    "sentinel": "upload behaviour shared by all workspaces",
    "sentinel.batch_size": "objects per upload request; Sentinel accepts at most 100",
    "sentinel.requests_per_minute": "upload requests per minute per identity; Sentinel's documented limit is 100",
    "sentinel.parallel_requests": "upload requests each workspace keeps in flight at once, within requests_per_minute; more than one hides the response time",
    "sentinel.timeout_seconds": "timeout of one HTTP request to Sentinel or the identity provider, in seconds",
    "sentinel.max_attempts": "attempts per batch, for 429, 5xx and connection errors",
    "sentinel.backoff_base_seconds": "first retry delay, in seconds, doubled on each attempt, with jitter",
    "sentinel.backoff_max_seconds": "longest single retry delay, in seconds",
    "sentinel.max_retry_seconds": "a batch is given up after this many seconds of retrying",
    "lifecycle": "how indicators stay current in Sentinel; `docs/lifecycle.md` has the rules",
    "lifecycle.refresh_days": "re-upload live indicators last sent this many days ago",
    "lifecycle.refresh_share": "the largest share of a workspace's live indicators refreshed in one run",
    "lifecycle.sweep_interval_hours": "hours between listings of the whole selection to find deleted events; 0: every run",
    "lifecycle.guard_share": "hold back revocations above this share of a workspace's live indicators ...",
    "lifecycle.guard_min": "... when they are also more than this many; `sync --force` sends them",
    "workspaces": "the Sentinel workspaces, each with its own credentials and selection",
    "workspaces[].name": "short name used on the command line and in the state file",
    "workspaces[].workspace_id": "Log Analytics workspace ID, the GUID on the workspace's Overview page",
    "workspaces[].tenant_id": "Microsoft Entra tenant ID (a GUID) or its domain name",
    "workspaces[].client_id": "application (client) ID of the app registration",
    "workspaces[].client_secret": "client secret of the app registration; give this or `client_certificate`",
    "workspaces[].client_certificate": "certificate credential of the app registration, instead of `client_secret`",
    "workspaces[].client_certificate.private_key": "PEM private key, with `thumbprint`",
    "workspaces[].client_certificate.thumbprint": "SHA-1 thumbprint of the certificate as Entra ID lists it",
    "workspaces[].client_certificate.pfx_path": "PKCS#12 (PFX) file with key and certificate, instead of the two above",
    "workspaces[].client_certificate.passphrase": "passphrase of an encrypted PEM key or PFX file",
    "workspaces[].cloud": "sets the identity provider, token scope and upload API endpoints",
    "workspaces[].authority_host": "overrides the identity provider, e.g. `https://login.microsoftonline.com`",
    "workspaces[].scope": "overrides the token scope, e.g. `https://management.azure.com/.default`",
    "workspaces[].api_base_url": "overrides the upload API, e.g. `https://api.ti.sentinel.azure.com`",
    "workspaces[].ca_bundle": "PEM file of a private CA for the identity provider and Sentinel",
    "workspaces[].verify_tls": "verify the certificates of the identity provider and Sentinel; keep on",
    "workspaces[].source_system": "source name Sentinel shows for the indicators (`SourceSystem`)",
    "workspaces[].api": "stix-objects: the STIX objects upload API; legacy: the upload indicators API",
    "workspaces[].legacy_api_base_url": "overrides the legacy API's host, e.g. `https://sentinelus.azure-api.net`",
    "workspaces[].https_proxy": "proxy for the identity provider and Sentinel; proxy environment variables are ignored",
    "workspaces[].selection": "what this workspace takes from the pulled data",
    "workspaces[].selection.tags": TAG_LOGIC[""] + "; names match case-insensitively, `%` is a wildcard",
    "workspaces[].selection.tags.or": TAG_LOGIC[".or"],
    "workspaces[].selection.tags.and": TAG_LOGIC[".and"],
    "workspaces[].selection.tags.not": TAG_LOGIC[".not"],
    "workspaces[].selection.orgs": "creator organisation names or uuids; empty means all",
    "workspaces[].selection.types": "MISP attribute types; empty means all",
    "workspaces[].selection.distribution": "MISP distribution levels 0-4; empty means all",
    "workspaces[].selection.sharing_groups": "ids, uuids or names of the sharing groups whose events (distribution 4) "
    "this workspace may receive; null leaves it to `distribution`",
    "workspaces[].selection.max_tlp": "the highest TLP this workspace receives; at most `mapping.max_tlp`",
    "workspaces[].retired": "true keeps the credentials for `revoke-all` only; sync skips the workspace",
    "state": "where the bridge records what each workspace holds; required by `sync`, `status` and `revoke-all`",
    "state.path": "the SQLite state file; its lock file is `<path>.lock`",
    "reporting": "what each sync leaves for monitoring",
    "reporting.report_path": "JSON report of the latest sync; null: `last-run.json` beside the state file",
    "reporting.metrics_path": "Prometheus textfile-collector file ending in `.prom`; null writes no metrics",
    "reporting.metrics_file_mode": "file mode of the metrics file; `0640` or `0644` lets node_exporter read it",
}

HEADER = """\
# Configuration reference

<!-- Generated by `python -m misp2sentinel.config_reference --write` from the model in
misp2sentinel/config.py; edit the model or that script, not this page. -->

The configuration is one YAML file, given with `--config`. `config.example.yaml` shows every key
that takes effect, with a comment. Relative paths are relative to the configuration file's folder. Keys of type
*secret* take a string, `{env: VARIABLE}` or `{file: PATH}`; prefer the last two, so that the file
itself contains no secret. An unknown key is an error, and every problem is reported at once with its
key path.

A key whose default is *section* is a nested mapping; its keys follow it. `workspaces[]` stands for
each item of the `workspaces` list.
"""


def field_type(annotation: typing.Any, metadata: list | None = None) -> str:
    """Describe a field's annotation, with its numeric and length limits, in words."""
    text = _type_words(annotation)
    limits = _limits(metadata or [])
    return f"{text} ({limits})" if limits else text


def _type_words(annotation: typing.Any) -> str:
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        return field_type(arguments[0], list(annotation.__metadata__))
    if origin in (typing.Union, types.UnionType):
        parts = [_type_words(argument) for argument in arguments if argument is not type(None)]
        if type(None) in arguments:
            parts.append("null")
        return " or ".join(parts)
    if origin is typing.Literal:
        values = ", ".join(f"`{value}`" for value in arguments)
        return values if len(arguments) == 1 else f"one of {values}"
    if origin is list:
        item = arguments[0]
        if typing.get_origin(item) is typing.Annotated:
            limits = _limits(list(item.__metadata__))
            words = "list of " + _plural(_type_words(typing.get_args(item)[0]))
            return f"{words} ({limits})" if limits else words
        return "list of " + _plural(_type_words(item))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    names = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "path", SecretStr: "secret"}
    if annotation in names:
        return names[annotation]
    raise ValueError(f"no description for the type {annotation!r}; add it to config_reference._type_words")


def _plural(words: str) -> str:
    return {"string": "strings", "path": "paths", "integer": "integers", "section": "sections"}.get(words, words)


def _limits(metadata: list) -> str:
    limits = []
    for item in metadata:
        constraints = item.metadata if isinstance(item, FieldInfo) else [item]
        for constraint in constraints:
            if isinstance(constraint, annotated_types.Ge):
                limits.append(f"≥ {constraint.ge}")
            elif isinstance(constraint, annotated_types.Gt):
                limits.append(f"> {constraint.gt}")
            elif isinstance(constraint, annotated_types.Le):
                limits.append(f"≤ {constraint.le}")
            elif isinstance(constraint, annotated_types.MinLen):
                unit = "character" if constraint.min_length == 1 else "characters"
                limits.append(f"at least {constraint.min_length} {unit}")
            elif isinstance(constraint, annotated_types.MaxLen):
                limits.append(f"at most {constraint.max_length} characters")
            elif getattr(constraint, "pattern", None):
                limits.append(f"matching `{constraint.pattern}`")
    return ", ".join(limits)


def field_default(field: FieldInfo) -> str:
    """Describe a field's default as it would be written in YAML."""
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
        return "section" if isinstance(value, BaseModel) else f"`{value!r}`"
    value = field.default
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def nested_model(annotation: typing.Any) -> type[BaseModel] | None:
    """Return the model inside an annotation such as `Model`, `Model | None` or `list[Model]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = nested_model(argument)
        if found is not None:
            return found
    return None


def key_rows(model: type[BaseModel] = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """List (key path, type, default) for every key of a model and of its nested sections, in model order."""
    rows = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{prefix}{key}"
        rows.append((path, field_type(field.annotation, field.metadata), field_default(field)))
        inner = nested_model(field.annotation)
        if inner is not None:
            list_marker = "[]" if typing.get_origin(field.annotation) is list else ""
            rows.extend(key_rows(inner, f"{path}{list_marker}."))
    return rows


def key_paths() -> list[str]:
    return [path for path, _, _ in key_rows()]


def render() -> str:
    """Build the whole of docs/configuration.md."""
    rows = key_rows()
    missing = [path for path, _, _ in rows if path not in MEANINGS]
    if missing:
        raise ValueError(f"no meaning for the configuration keys {', '.join(missing)}; add them to MEANINGS")
    unknown = sorted(set(MEANINGS) - {path for path, _, _ in rows})
    if unknown:
        raise ValueError(f"MEANINGS names keys that the model does not have: {', '.join(unknown)}")

    lines = [HEADER]
    for section in Config.model_fields:
        lines += [f"## `{section}`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for path, type_text, default in rows:
            if path == section or path.startswith((f"{section}.", f"{section}[]")):
                meaning = MEANINGS[path].replace("|", "\\|")
                lines.append(f"| `{path}` | {type_text.replace('|', chr(92) + '|')} | {default} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Print or rewrite docs/configuration.md from the configuration model.")
    parser.add_argument("--write", action="store_true", help="rewrite docs/configuration.md in place")
    arguments = parser.parse_args()
    if arguments.write:
        DOCUMENT.write_text(render(), encoding="utf-8")
        return
    print(render(), end="")


if __name__ == "__main__":
    main()
