"""STIX 2.1 patterns for MISP attribute types, valid by construction.

Each supported type turns a MISP value into one or more `Part`s: one observable each, written as a
single comparison so that Sentinel can fill `ObservableKey`/`ObservableValue` (it does so only for
patterns without `AND`). A composite keeps both halves: `domain|ip` gives two parts, while
`filename|<hash>`, `ip-src|port`, `ip-dst|port` and `hostname|port` give one part that carries the
other half in its name, description and labels. String values are escaped for the pattern grammar
(`\\` and `'`); a value that fails its check raises `InvalidValue`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field


class InvalidValue(ValueError):
    """A MISP value that cannot become a pattern; the message says what is wrong with it."""


class UnsupportedType(ValueError):
    """A MISP attribute type that has no indicator mapping."""


@dataclass(slots=True)
class Part:
    """One indicator candidate of an attribute."""

    part: str
    pattern: str
    kind: str
    name: str
    notes: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


# A half of a composite value that failed its check; the other half may still be sent.
@dataclass(slots=True)
class InvalidPart:
    part: str
    message: str


HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
HASH_KEYS = {"md5": "'MD5'", "sha1": "'SHA-1'", "sha256": "'SHA-256'", "sha512": "'SHA-512'"}
HEX_DIGITS = frozenset("0123456789abcdef")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
FORBIDDEN_IN_DOMAIN = re.compile(r"[\s/\\@:;,'\"<>()\[\]{}|?#%=+!$&^`~]")
DIRECTIONS = {"ip-src": "src", "ip-dst": "dst"}
DIRECTION_WORDS = {"src": "source", "dst": "destination"}


def escape(value: str) -> str:
    """Escape a value for a STIX pattern string literal."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def check_text(value: str | None, what: str) -> str:
    if value is None:
        raise InvalidValue(f"{what} is missing")
    text = value.strip()
    if not text:
        raise InvalidValue(f"{what} is empty")
    if CONTROL_CHARACTERS.search(text):
        raise InvalidValue(f"{what} {text!r} contains control characters")
    return text


def ip_pattern(value: str) -> tuple[str, str]:
    """Return (pattern, normalised address) for an IPv4 or IPv6 address or CIDR block."""
    text = check_text(value, "IP address")
    try:
        if "/" in text:
            network = ipaddress.ip_network(text, strict=False)
            full = network.prefixlen == network.max_prefixlen
            address = str(network.network_address) if full else str(network)
            version = network.version
        else:
            parsed = ipaddress.ip_address(text)
            address = str(parsed)
            version = parsed.version
    except ValueError:
        raise InvalidValue(f"{text!r} is not an IPv4 or IPv6 address or CIDR block") from None
    object_type = "ipv4-addr" if version == 4 else "ipv6-addr"
    return f"[{object_type}:value = '{address}']", address


def domain_value(value: str) -> str:
    text = check_text(value, "domain").rstrip(".").lower()
    if not text or len(text) > 253:
        raise InvalidValue(f"{value!r} is not a valid domain name (empty or longer than 253 characters)")
    if FORBIDDEN_IN_DOMAIN.search(text):
        raise InvalidValue(f"{value!r} is not a valid domain name (contains spaces or URL characters)")
    if any(not label or len(label) > 63 for label in text.split(".")):
        raise InvalidValue(f"{value!r} is not a valid domain name (empty label or label over 63 characters)")
    return text


def port_value(value: str) -> int:
    text = value.strip()
    if not text.isdigit() or int(text) > 65535:
        raise InvalidValue(f"{value!r} is not a port number between 0 and 65535")
    return int(text)


def hash_value(hash_type: str, value: str) -> str:
    text = check_text(value, hash_type).lower()
    expected = HASH_LENGTHS[hash_type]
    if len(text) != expected or not HEX_DIGITS.issuperset(text):
        raise InvalidValue(f"{value.strip()!r} is not a {hash_type} hash ({expected} hexadecimal digits)")
    return text


def _ip(attribute_type: str, value: str) -> list:
    pattern, address = ip_pattern(value)
    direction = DIRECTIONS[attribute_type]
    notes = [f"Direction: {DIRECTION_WORDS[direction]} address."]
    return [Part("value", pattern, "ip", address, notes, [f"direction:{direction}"])]


def _domain(attribute_type: str, value: str) -> list:
    domain = domain_value(value)
    return [Part("value", f"[domain-name:value = '{escape(domain)}']", "domain", domain)]


def _url(attribute_type: str, value: str) -> list:
    url = check_text(value, "URL")
    if any(c.isspace() for c in url):
        raise InvalidValue(f"{url!r} is not a valid URL (contains whitespace)")
    return [Part("value", f"[url:value = '{escape(url)}']", "url", url)]


def _email(attribute_type: str, value: str) -> list:
    address = check_text(value, "email address")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        raise InvalidValue(f"{address!r} is not an email address")
    notes = []
    labels = []
    if attribute_type in ("email-src", "email-dst"):
        role = "sender" if attribute_type == "email-src" else "recipient"
        notes.append(f"Email {role} address.")
        labels.append(f"email:{role}")
    return [Part("value", f"[email-addr:value = '{escape(address)}']", "email", address, notes, labels)]


def _hash(attribute_type: str, value: str) -> list:
    digest = hash_value(attribute_type, value)
    return [Part("value", f"[file:hashes.{HASH_KEYS[attribute_type]} = '{digest}']", "file_hash", digest)]


def _filename(attribute_type: str, value: str) -> list:
    name = check_text(value, "file name")
    return [Part("value", f"[file:name = '{escape(name)}']", "file_name", name)]


def _domain_ip(attribute_type: str, value: str) -> list:
    domain_text, separator, ip_text = (value or "").partition("|")
    if not separator:
        raise InvalidValue(f"{value!r} is not a domain|ip pair")
    parts: list = []
    try:
        domain = domain_value(domain_text)
        note = f"Resolves to {ip_text.strip()} (MISP domain|ip)."
        parts.append(Part("domain", f"[domain-name:value = '{escape(domain)}']", "domain", domain, [note]))
    except InvalidValue as error:
        parts.append(InvalidPart("domain", str(error)))
    try:
        pattern, address = ip_pattern(ip_text)
        note = f"Resolution of {domain_text.strip()} (MISP domain|ip)."
        parts.append(Part("ip", pattern, "ip", address, [note]))
    except InvalidValue as error:
        parts.append(InvalidPart("ip", str(error)))
    return parts


def _filename_hash(attribute_type: str, value: str) -> list:
    hash_type = attribute_type.split("|", 1)[1]
    file_name, separator, digest_text = (value or "").rpartition("|")
    if not separator:
        raise InvalidValue(f"{value!r} is not a filename|{hash_type} pair")
    digest = hash_value(hash_type, digest_text)
    file_name = check_text(file_name, "file name")
    pattern = f"[file:hashes.{HASH_KEYS[hash_type]} = '{digest}']"
    return [Part("value", pattern, "file_hash", f"{file_name} ({digest})", [f"File name: {file_name}."])]


def _host_port(attribute_type: str, value: str) -> list:
    host_text, separator, port_text = (value or "").rpartition("|")
    if not separator:
        raise InvalidValue(f"{value!r} is not a host|port pair")
    port = port_value(port_text)
    labels = [f"port:{port}"]
    if attribute_type == "hostname|port":
        domain = domain_value(host_text)
        pattern, kind, name, notes = f"[domain-name:value = '{escape(domain)}']", "domain", domain, []
    else:
        direction = DIRECTIONS[attribute_type.split("|", 1)[0]]
        pattern, name = ip_pattern(host_text)
        kind = "ip"
        notes = [f"Direction: {DIRECTION_WORDS[direction]} address."]
        labels.insert(0, f"direction:{direction}")
    notes.append(f"Port: {port}.")
    return [Part("value", pattern, kind, name, notes, labels)]


PatternBuilder = Callable[[str, str], list]

BUILDERS: dict[str, PatternBuilder] = {
    "ip-src": _ip,
    "ip-dst": _ip,
    "domain": _domain,
    "hostname": _domain,
    "url": _url,
    "email": _email,
    "email-src": _email,
    "email-dst": _email,
    "md5": _hash,
    "sha1": _hash,
    "sha256": _hash,
    "sha512": _hash,
    "filename": _filename,
    "domain|ip": _domain_ip,
    "filename|md5": _filename_hash,
    "filename|sha1": _filename_hash,
    "filename|sha256": _filename_hash,
    "filename|sha512": _filename_hash,
    "ip-src|port": _host_port,
    "ip-dst|port": _host_port,
    "hostname|port": _host_port,
}


def build_parts(attribute_type: str, value: str | None) -> list:
    """Return the parts of one attribute: `Part`s and `InvalidPart`s for composite halves.

    Raises UnsupportedType for a type without a mapping and InvalidValue for a bad value.
    """
    builder = BUILDERS.get(attribute_type)
    if builder is None:
        raise UnsupportedType(f"MISP type {attribute_type!r} has no indicator mapping")
    if value is None:
        raise InvalidValue("the value is missing")
    return builder(attribute_type, value)
