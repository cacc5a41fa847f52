"""STIX 2.1 patterns for each MISP attribute type, valid by construction.

`BUILDERS` maps every supported type to a function that turns a MISP value into `Part`s. Types
that cannot detect anything are in `unsupported.UNSUPPORTED` with the reason. `docs/mapping.md` is generated
from these two tables (see `reference`), so the documentation cannot drift from the code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable

from misp2sentinel.mapping import values
from misp2sentinel.mapping.hashes import FINGERPRINTS, HASH_ALGORITHMS
from misp2sentinel.mapping.parts import InvalidPart, Part
from misp2sentinel.mapping.unsupported import UNSUPPORTED
from misp2sentinel.mapping.values import InvalidValue, literal


class UnsupportedType(ValueError):
    """A MISP attribute type that has no indicator mapping; the message gives the reason."""


DIRECTIONS = {"ip-src": "src", "ip-dst": "dst"}
DIRECTION_WORDS = {"src": "source", "dst": "destination"}
EMAIL_ROLES = {"email-src": "sender", "email-dst": "recipient", "email-reply-to": "reply-to"}
HTTP_REQUEST = "extensions.'http-request-ext'"
HTTP_METHOD = re.compile(r"^[A-Za-z]{3,20}$")
HEADER_LINE = re.compile(r"^([A-Za-z0-9-]{1,76}):\s*(.*)$", re.DOTALL)
NAME_LENGTH = 200

EMAIL_MESSAGE_PATHS = {
    "email-subject": "subject",
    "email-message-id": "message_id",
    "email-body": "body",
    "email-x-mailer": "additional_header_fields.'X-Mailer'",
    "email-attachment": "body_multipart[*].body_raw_ref.name",
}

RULE_NAMES = {
    "yara": re.compile(r"\brule\s+([A-Za-z0-9_]+)"),
    "sigma": re.compile(r"^title:\s*(.+)$", re.MULTILINE),
    "snort": re.compile(r"\bmsg\s*:\s*\"([^\"]+)\""),
    "suricata": re.compile(r"\bmsg\s*:\s*\"([^\"]+)\""),
}
RULE_SHAPES = {
    "yara": (re.compile(r"\brule\s+[A-Za-z0-9_]+"), "a YARA rule (rule NAME { ... })"),
    "sigma": (re.compile(r"^detection\s*:", re.MULTILINE), "a Sigma rule (YAML with a detection section)"),
    "snort": (re.compile(r"^\s*(alert|log|pass|drop|reject|sdrop)\s", re.MULTILINE | re.IGNORECASE), "a Snort rule (alert ...)"),
    "suricata": (re.compile(r"^\s*(alert|pass|drop|reject|rejectsrc|rejectdst|rejectboth)\s", re.MULTILINE | re.IGNORECASE), "a Suricata rule (alert ...)"),
}


def short_name(text: str) -> str:
    """Return `text` on one line and at most NAME_LENGTH characters, for an indicator name."""
    line = " ".join(text.split())
    return line if len(line) <= NAME_LENGTH else line[: NAME_LENGTH - 1] + "…"


def _ip(attribute_type: str, value: str) -> list:
    network = values.ip_network(value)
    address = values.ip_text(network)
    comparison = (values.ip_object_type(network), "value", f"'{address}'")
    direction = DIRECTIONS[attribute_type]
    notes = [f"Direction: {DIRECTION_WORDS[direction]} address."]
    return [Part("value", "ip", address, comparison, notes, [f"direction:{direction}"], network=network)]


def _domain(attribute_type: str, value: str) -> list:
    domain = values.domain_value(value, "onion address" if attribute_type == "onion-address" else "domain")
    if attribute_type == "onion-address" and not domain.endswith(".onion"):
        raise InvalidValue(f"{value.strip()!r} is not an onion address (it does not end in .onion)")
    return [Part("value", "domain", domain, ("domain-name", "value", literal(domain)))]


def _url(attribute_type: str, value: str) -> list:
    url = values.url_value(value)
    return [Part("value", "url", short_name(url), ("url", "value", literal(url)))]


def _uri(attribute_type: str, value: str) -> list:
    text = values.check_text(value, "URI")
    if values.URL_SCHEME.match(text):
        return _url(attribute_type, text)
    if not text.startswith("/") or any(character.isspace() for character in text):
        raise InvalidValue(f"{text!r} is not a URI (neither an absolute URL nor a path starting with /)")
    comparison = ("network-traffic", f"{HTTP_REQUEST}.request_value", literal(text))
    return [Part("value", "url", short_name(text), comparison, ["HTTP request path."])]


def _email(attribute_type: str, value: str) -> list:
    address = values.email_value(value)
    notes, labels = [], []
    role = EMAIL_ROLES.get(attribute_type)
    if role is not None:
        notes.append(f"Email {role} address.")
        labels.append(f"email:{role}")
    return [Part("value", "email", address, ("email-addr", "value", literal(address)), notes, labels)]


def _email_display_name(attribute_type: str, value: str) -> list:
    name = values.check_text(value, "display name")
    return [Part("value", "email", short_name(name), ("email-addr", "display_name", literal(name)))]


def _email_message(attribute_type: str, value: str) -> list:
    if attribute_type == "email-body":
        text = values.check_multiline(value, "email body").strip()
    else:
        text = values.check_text(value, attribute_type)
    comparison = ("email-message", EMAIL_MESSAGE_PATHS[attribute_type], literal(text))
    return [Part("value", "email_message", short_name(text), comparison)]


def _email_header(attribute_type: str, value: str) -> list:
    text = values.check_multiline(value, "email header").strip()
    match = HEADER_LINE.match(text)
    if match and match.group(1).lower() != "received" and "\n" not in text:
        header, content = match.group(1), match.group(2).strip()
        path = f"additional_header_fields.'{header}'"
    else:
        content = match.group(2).strip() if match and match.group(1).lower() == "received" else text
        path = "received_lines[*]"
    return [Part("value", "email_message", short_name(text), ("email-message", path, literal(content)))]


def _filename(attribute_type: str, value: str) -> list:
    name = values.check_text(value, "file name")
    return [Part("value", "file_name", short_name(name), ("file", "name", literal(name)))]


def hash_part(algorithm: str, digest: str, object_type: str = "file", kind: str = "file_hash") -> Part:
    path = (HASH_ALGORITHMS.get(algorithm) or FINGERPRINTS[algorithm]).path
    part = Part("value", kind, digest, (object_type, path, f"'{digest}'"))
    if object_type == "file":
        part.digest = (algorithm, digest)
    return part


def _hash(attribute_type: str, value: str) -> list:
    return [hash_part(attribute_type, values.hash_value(attribute_type, value))]


def _filename_hash(attribute_type: str, value: str) -> list:
    algorithm = "md5" if attribute_type == "malware-sample" else attribute_type.split("|", 1)[1]
    file_name, digest_text = values.split_composite(
        value, attribute_type, lambda text: values.hash_value(algorithm, text), at_last=True
    )
    try:
        digest = values.hash_value(algorithm, digest_text)
    except InvalidValue as error:
        # A bad hash is skipped alone: the file name is still worth sending, under its own id.
        if not file_name or attribute_type == "malware-sample":
            raise
        name = values.check_text(file_name, "file name")
        return [InvalidPart("hash", str(error)), Part("file-name", "file_name", name, ("file", "name", literal(name)))]
    part = hash_part(algorithm, digest)
    if file_name:
        part.name = short_name(f"{file_name} ({part.name})")
        part.notes.append(f"File name: {file_name}.")
        part.extra.append(("file", "name", literal(file_name)))
    if attribute_type == "malware-sample":
        part.notes.append("MISP malware sample; the pattern tests the sample's MD5, not its zipped content.")
    return [part]


def _attachment(attribute_type: str, value: str, data: str | None = None) -> list:
    file_name = values.check_text(value, "attachment file name")
    if not data:
        raise InvalidValue(
            f"the attachment {file_name!r} carries no data to hash (MISP sends attachment data only when asked to)"
        )
    try:
        content = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValue(f"the data of attachment {file_name!r} is not valid base64") from None
    part = hash_part("sha256", hashlib.sha256(content).hexdigest())
    part.name = short_name(f"{file_name} ({part.name})")
    part.notes.append(f"SHA-256 of the MISP attachment {file_name}.")
    part.extra.append(("file", "name", literal(file_name)))
    return [part]


def _fingerprint(attribute_type: str, value: str) -> list:
    digest = values.hash_value(attribute_type, value)
    return [Part("value", "network_fingerprint", digest, (f"x-misp-{attribute_type}", "value", f"'{digest}'"))]


def _x509_fingerprint(attribute_type: str, value: str) -> list:
    algorithm = attribute_type.rsplit("-", 1)[1]
    return [hash_part(algorithm, values.hash_value(algorithm, value), "x509-certificate", "x509")]


def _domain_ip(attribute_type: str, value: str) -> list:
    domain_text, ip_text = values.split_composite(value, "domain|ip", values.ip_network, at_last=True)
    domain = network = None
    parts: list = []
    try:
        domain = values.domain_value(domain_text)
    except InvalidValue as error:
        domain_error = InvalidPart("domain", str(error))
    try:
        network = values.ip_network(ip_text)
    except InvalidValue as error:
        ip_error = InvalidPart("ip", str(error))
    address = values.ip_text(network) if network is not None else None

    # Each half names the other in its description only when the other half is valid.
    if domain is not None:
        notes = [f"Resolves to {address} (MISP domain|ip)."] if address else []
        parts.append(Part("domain", "domain", domain, ("domain-name", "value", literal(domain)), notes))
    else:
        parts.append(domain_error)
    if network is not None:
        notes = [f"Resolution of {domain} (MISP domain|ip)."] if domain else []
        part = Part("ip", "ip", address, (values.ip_object_type(network), "value", f"'{address}'"), notes)
        part.network = network
        part.joined = ("domain-name", "resolves_to_refs[*].value", f"'{address}'")
        parts.append(part)
    else:
        parts.append(ip_error)
    return parts


def _host_port(attribute_type: str, value: str) -> list:
    host_text, port_text = values.split_composite(value, attribute_type, values.port_value, at_last=True)
    try:
        port = values.port_value(port_text)
    except InvalidValue as error:
        # A bad port is skipped alone: the host keeps the attribute's id and goes out without it.
        port, port_error = None, InvalidPart("port", str(error))
    else:
        port_error = None
    if attribute_type == "hostname|port":
        direction = "dst"
        domain = values.domain_value(host_text, "host name")
        part = Part("value", "domain", domain, ("domain-name", "value", literal(domain)))
    else:
        direction = DIRECTIONS[attribute_type.split("|", 1)[0]]
        network = values.ip_network(host_text)
        address = values.ip_text(network)
        part = Part("value", "ip", address, (values.ip_object_type(network), "value", f"'{address}'"), network=network)
        part.notes.append(f"Direction: {DIRECTION_WORDS[direction]} address.")
        part.labels.append(f"direction:{direction}")
    part.joined = ("network-traffic", f"{direction}_ref.value", part.comparison[2])
    if port_error is not None:
        return [part, port_error]
    part.notes.append(f"Port: {port}.")
    part.labels.append(f"port:{port}")
    part.extra.append(("network-traffic", f"{direction}_port", str(port)))
    return [part]


def _port(attribute_type: str, value: str) -> list:
    port = values.port_value(value)
    return [Part("value", "other", f"port {port}", ("network-traffic", "dst_port", str(port)), labels=[f"port:{port}"])]


def _size(attribute_type: str, value: str) -> list:
    size = values.integer_value(value, "size in bytes")
    return [Part("value", "other", f"{size} bytes", ("file", "size", str(size)))]


def _as(attribute_type: str, value: str) -> list:
    number = values.as_number(value)
    return [Part("value", "asn", f"AS{number}", ("autonomous-system", "number", str(number)))]


def _mac(attribute_type: str, value: str) -> list:
    address = values.mac_value(value)
    return [Part("value", "other", address, ("mac-addr", "value", f"'{address}'"))]


def _regkey(attribute_type: str, value: str) -> list:
    key, has_hive = values.registry_key(value)
    part = Part("value", "registry", short_name(key), ("windows-registry-key", "key", literal(key)))
    if not has_hive:
        part.notes.append("The registry key does not name its hive.")
    return [part]


def _regkey_value(attribute_type: str, value: str) -> list:
    # Registry keys contain underscores, so only `|` separates the key from the value data.
    key_text, data = values.split_composite(value, "regkey|value")
    part = _regkey("regkey", key_text)[0]
    if data:
        part.notes.append(f"Registry value data: {data}")
        part.extra.append(("windows-registry-key", "values[*].data", literal(data)))
    return [part]


def _mutex(attribute_type: str, value: str) -> list:
    name = values.check_text(value, "mutex name")
    return [Part("value", "mutex", short_name(name), ("mutex", "name", literal(name)))]


def _user_agent(attribute_type: str, value: str) -> list:
    agent = values.check_text(value, "user agent")
    path = f"{HTTP_REQUEST}.request_header.'User-Agent'"
    return [Part("value", "user_agent", short_name(agent), ("network-traffic", path, literal(agent)))]


def _http_method(attribute_type: str, value: str) -> list:
    method = values.check_text(value, "HTTP method").upper()
    if not HTTP_METHOD.match(method):
        raise InvalidValue(f"{value.strip()!r} is not an HTTP method (3 to 20 letters)")
    return [Part("value", "other", method, ("network-traffic", f"{HTTP_REQUEST}.request_method", f"'{method}'"))]


def _github_username(attribute_type: str, value: str) -> list:
    login = values.check_text(value, "GitHub user name")
    part = Part("value", "other", login, ("user-account", "account_login", literal(login)), ["GitHub account."])
    part.labels.append("account:github")
    part.extra.append(("user-account", "account_type", "'github'"))
    return [part]


def rule_name(language: str, text: str) -> str:
    match = RULE_NAMES[language].search(text)
    if match is None:
        return f"{language} rule"
    return short_name(match.group(1).strip().strip("'\""))


def _rule(attribute_type: str, value: str) -> list:
    text = values.check_multiline(value, f"{attribute_type} rule")
    shape, description = RULE_SHAPES[attribute_type]
    if not shape.search(text):
        raise InvalidValue(f"the {attribute_type} value is not {description}")
    part = Part("value", "rule", rule_name(attribute_type, text), pattern_type=attribute_type, pattern_text=text)
    return [part]


PatternBuilder = Callable[[str, str], list]

BUILDERS: dict[str, PatternBuilder] = {
    "ip-src": _ip,
    "ip-dst": _ip,
    "ip-src|port": _host_port,
    "ip-dst|port": _host_port,
    "domain": _domain,
    "hostname": _domain,
    "onion-address": _domain,
    "hostname|port": _host_port,
    "domain|ip": _domain_ip,
    "url": _url,
    "link": _url,
    "uri": _uri,
    "email": _email,
    "email-src": _email,
    "email-dst": _email,
    "email-reply-to": _email,
    "email-src-display-name": _email_display_name,
    "email-dst-display-name": _email_display_name,
    "email-subject": _email_message,
    "email-message-id": _email_message,
    "email-body": _email_message,
    "email-x-mailer": _email_message,
    "email-attachment": _email_message,
    "email-header": _email_header,
    "filename": _filename,
    **{name: _hash for name in HASH_ALGORITHMS},
    **{f"filename|{name}": _filename_hash for name in HASH_ALGORITHMS if name not in ("cdhash", "telfhash")},
    "malware-sample": _filename_hash,
    "attachment": _attachment,
    "x509-fingerprint-md5": _x509_fingerprint,
    "x509-fingerprint-sha1": _x509_fingerprint,
    "x509-fingerprint-sha256": _x509_fingerprint,
    **{name: _fingerprint for name in FINGERPRINTS},
    "AS": _as,
    "mac-address": _mac,
    "port": _port,
    "size-in-bytes": _size,
    "http-method": _http_method,
    "user-agent": _user_agent,
    "regkey": _regkey,
    "regkey|value": _regkey_value,
    "mutex": _mutex,
    "github-username": _github_username,
    "yara": _rule,
    "sigma": _rule,
    "snort": _rule,
    "suricata": _rule,
}

def build_parts(attribute_type: str, value: str | None, data: str | None = None) -> list:
    """Return the parts of one attribute: `Part`s, and `InvalidPart`s for the halves of a composite.

    Raises UnsupportedType for a type without a mapping and InvalidValue for a bad value.
    """
    builder = BUILDERS.get(attribute_type)
    if builder is None:
        reason = UNSUPPORTED.get(attribute_type, "not a MISP type this mapping knows")
        raise UnsupportedType(f"MISP type {attribute_type!r} has no indicator mapping: {reason}")
    if value is None:
        raise InvalidValue("the value is missing")
    if builder is _attachment:
        return _attachment(attribute_type, value, data)
    return builder(attribute_type, value)
