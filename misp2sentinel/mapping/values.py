"""Checks and normal forms of MISP values, and the literals that carry them into STIX patterns.

Every function returns a checked, normalised value or raises `InvalidValue` with a message that
names the value and what is wrong with it. Nothing here reads settings, because the local sanity
filter (private addresses, broad CIDRs, hashes of empty content) runs later, in `sanity`.
"""

from __future__ import annotations

import ipaddress
import re

from misp2sentinel.mapping.hashes import ALL_ALGORITHMS


class InvalidValue(ValueError):
    """A MISP value that cannot become a pattern; the message names what is wrong with it."""


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
WHITESPACE = re.compile(r"\s")
# Rule texts keep their line breaks and tabs; every other control character is rejected.
RULE_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
FORBIDDEN_IN_DOMAIN = re.compile(r"[\s/\\@:;,'\"<>()\[\]{}|?#%=+!$&^`~*]")
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# The end of a URL's authority (host and port): the start of its path, query or fragment.
AUTHORITY_END = re.compile(r"[/?#]")
DEFANGED_SCHEME = re.compile(r"^h(xx|XX|\*\*)ps?$")
EMAIL_LOCAL_FORBIDDEN = re.compile(r"[\s<>()\[\]\\,;:\"]")
MAC_ADDRESS = re.compile(r"^[0-9a-f]{2}([:\-.]?)[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}$")
AS_NUMBER = re.compile(r"^(?:AS)?\s*(\d{1,10})$", re.IGNORECASE)

# STIX requires the hive of a registry key spelled out in full (STIX 2.1, windows-registry-key `key`).
REGISTRY_HIVES = {
    "HKLM": "HKEY_LOCAL_MACHINE",
    "HKCU": "HKEY_CURRENT_USER",
    "HKCR": "HKEY_CLASSES_ROOT",
    "HKU": "HKEY_USERS",
    "HKCC": "HKEY_CURRENT_CONFIG",
    "HKPD": "HKEY_PERFORMANCE_DATA",
    "HKEY_LOCAL_MACHINE": "HKEY_LOCAL_MACHINE",
    "HKEY_CURRENT_USER": "HKEY_CURRENT_USER",
    "HKEY_CLASSES_ROOT": "HKEY_CLASSES_ROOT",
    "HKEY_USERS": "HKEY_USERS",
    "HKEY_CURRENT_CONFIG": "HKEY_CURRENT_CONFIG",
    "HKEY_PERFORMANCE_DATA": "HKEY_PERFORMANCE_DATA",
}


def escape(value: str) -> str:
    """Escape a value for a STIX pattern string literal: `\\` becomes `\\\\` and `'` becomes `\\'`."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def literal(value: str) -> str:
    """Return a STIX pattern string literal (quoted and escaped) for `value`."""
    return "'" + escape(value) + "'"


def check_text(value: str | None, value_name: str) -> str:
    """Return the value without surrounding whitespace; reject a missing or empty value and control characters."""
    if value is None:
        raise InvalidValue(f"{value_name} is missing")
    text = value.strip()
    if not text:
        raise InvalidValue(f"{value_name} is empty")
    if CONTROL_CHARACTERS.search(text):
        raise InvalidValue(f"{value_name} {text!r} contains control characters")
    return text


def check_multiline(value: str | None, value_name: str) -> str:
    """Return a multi-line text (a rule, an email body) unchanged; reject an empty one and control
    characters other than line breaks and tabs."""
    if value is None or not value.strip():
        raise InvalidValue(f"the {value_name} is empty")
    if RULE_CONTROL_CHARACTERS.search(value):
        raise InvalidValue(f"the {value_name} contains control characters other than line breaks and tabs")
    return value


# A plain IPv4 address in dotted decimal without leading zeros, which ipaddress also rejects.
DOTTED_IPV4 = re.compile(r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}")


class IPv4Host:
    """One IPv4 address written in plain dotted decimal, which is already its canonical text.

    It offers what the mapper and the sanity filter read of an `ipaddress.IPv4Network` /32, and
    costs a fraction of building one.
    """

    __slots__ = ("text", "integer")
    version = 4
    prefixlen = 32
    max_prefixlen = 32

    def __init__(self, text: str) -> None:
        first, second, third, fourth = text.split(".")
        self.text = text
        self.integer = (int(first) << 24) | (int(second) << 16) | (int(third) << 8) | int(fourth)

    @property
    def network_address(self) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address(self.integer)

    broadcast_address = network_address

    def __str__(self) -> str:
        return self.text + "/32"


Network = ipaddress.IPv4Network | ipaddress.IPv6Network | IPv4Host


def ip_network(value: str) -> Network:
    """Parse an IPv4 or IPv6 address or CIDR block; a plain address becomes a /32 or /128 network."""
    text = check_text(value, "IP address")
    if DOTTED_IPV4.fullmatch(text):
        return IPv4Host(text)
    if "%" in text:
        raise InvalidValue(f"{text!r} has an IPv6 zone index (%...), which means something on one host only")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidValue(f"{text!r} is not an IPv4 or IPv6 address or CIDR block") from None


def ip_text(network: Network) -> str:
    """Return the pattern form of a network: the plain address for a /32 or /128, else the CIDR block."""
    if network.__class__ is IPv4Host:
        return network.text
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def ip_object_type(network: Network) -> str:
    return "ipv4-addr" if network.version == 4 else "ipv6-addr"


def domain_value(value: str, value_name: str = "domain") -> str:
    """Return a domain name in lower case without its trailing dot, after checking its shape."""
    text = check_text(value, value_name).rstrip(".").lower()
    if not text or len(text) > 253:
        raise InvalidValue(f"{value!r} is not a valid {value_name} (empty or longer than 253 characters)")
    if FORBIDDEN_IN_DOMAIN.search(text):
        raise InvalidValue(f"{value!r} is not a valid {value_name} (contains spaces, quotes or URL characters)")
    labels = text.split(".")
    for label in labels:
        if not label or len(label) > 63:
            raise InvalidValue(f"{value!r} is not a valid {value_name} (empty label or label over 63 characters)")
        if label[0] == "-" or label[-1] == "-":
            raise InvalidValue(f"{value!r} is not a valid {value_name} (a label starts or ends with a hyphen)")
    if len(labels) > 1 and labels[-1].isdigit():
        raise InvalidValue(f"{value!r} is not a valid {value_name} (it looks like an IP address)")
    return text


def url_value(value: str) -> str:
    """Return an absolute URL after checking its shape: a scheme, `://` and a host that is a
    domain name or an IP address. Defanged URLs (`hxxp://`, `example[.]com`) are rejected,
    because they match no traffic."""
    text = check_text(value, "URL")
    if WHITESPACE.search(text):
        raise InvalidValue(f"{text!r} is not a valid URL (contains whitespace)")
    if not URL_SCHEME.match(text):
        raise InvalidValue(f"{text!r} is not a valid URL (no scheme such as https://)")
    scheme, rest = text.split("://", 1)
    if DEFANGED_SCHEME.match(scheme):
        raise InvalidValue(f"{text!r} is a defanged URL (scheme {scheme}); refang it in MISP")

    authority = AUTHORITY_END.split(rest, maxsplit=1)[0]
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        literal_end = host.find("]")
        address = host[1:literal_end] if literal_end > 0 else ""
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise InvalidValue(f"{text!r} is not a valid URL (invalid IPv6 host {host!r})") from None
        return text

    name, colon, port = host.rpartition(":")
    if colon and port.isdigit():
        host = name
    if not host:
        raise InvalidValue(f"{text!r} is not a valid URL (no host)")
    if DOTTED_IPV4.fullmatch(host):
        return text
    try:
        domain_value(host, "URL host")
    except InvalidValue:
        raise InvalidValue(f"{text!r} is not a valid URL (the host {host!r} is not a domain name or an IP address)") from None
    return text


def email_value(value: str) -> str:
    """Return an email address after checking that it has one `@`, a local part and a domain."""
    text = check_text(value, "email address")
    local, at, domain = text.rpartition("@")
    quoted = len(local) > 1 and local.startswith('"') and local.endswith('"')
    if not at or not local or not domain or (not quoted and ("@" in local or EMAIL_LOCAL_FORBIDDEN.search(local))):
        raise InvalidValue(f"{text!r} is not an email address")
    if domain.startswith("[") and domain.endswith("]"):
        return text
    domain_value(domain, "email domain")
    return text


def port_value(value: str) -> int:
    text = (value or "").strip()
    # isdigit() alone also accepts characters such as "²" that int() rejects.
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise InvalidValue(f"{value!r} is not a port number between 0 and 65535")
    return int(text)


def integer_value(value: str, value_name: str) -> int:
    text = check_text(value, value_name)
    if not (text.isascii() and text.isdigit()):
        raise InvalidValue(f"{text!r} is not a {value_name} (a whole number)")
    return int(text)


def as_number(value: str) -> int:
    """Parse an autonomous system number written `174`, `AS174` or `as 174`."""
    text = check_text(value, "AS number")
    match = AS_NUMBER.match(text)
    if match is None or int(match.group(1)) > 4294967295:
        raise InvalidValue(f"{text!r} is not an autonomous system number (AS0 to AS4294967295)")
    return int(match.group(1))


def mac_value(value: str) -> str:
    """Return a MAC address in the STIX form: lower case, colon-separated."""
    text = check_text(value, "MAC address").lower()
    if not MAC_ADDRESS.match(text):
        raise InvalidValue(f"{text!r} is not a MAC address (six hexadecimal octets)")
    digits = re.sub(r"[^0-9a-f]", "", text)
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def hash_value(algorithm: str, value: str) -> str:
    """Return a hash or fingerprint in its normal form (see `hashes`), or raise InvalidValue."""
    text = check_text(value, algorithm)
    spec = ALL_ALGORITHMS[algorithm]
    normal = spec.normalise(text)
    if normal is None:
        raise InvalidValue(f"{text!r} is not a {algorithm} hash ({spec.shape})")
    return normal


def registry_key(value: str) -> tuple[str, bool]:
    """Return (registry key, whether it names its hive), with the hive spelled out in full.

    STIX wants the full hive (`HKLM` becomes `HKEY_LOCAL_MACHINE`). Threat reports often give keys
    without a hive (`Software\\Microsoft\\...`), which are kept as they are rather than guessed.
    Repeated backslashes are collapsed, because a key has no empty names.
    """
    # Key names may contain "/", so only backslashes separate them.
    text = re.sub(r"\\{2,}", r"\\", check_text(value, "registry key")).strip("\\")
    if not text:
        raise InvalidValue(f"{value.strip()!r} is not a registry key")
    hive, separator, rest = text.partition("\\")
    full = REGISTRY_HIVES.get(hive.rstrip(":").upper())
    if full is None:
        return text, False
    return (f"{full}\\{rest}" if rest else full), True


def split_composite(value: str, pair_name: str, check_second=None, *, at_last: bool = False) -> tuple[str, str]:
    """Split a composite MISP value into its two halves, without surrounding spaces.

    MISP separates the halves with `|`. misp-stix also accepts the legacy separator `_` when there
    is no `|`. Here `_` separates only when `check_second` (a function that raises InvalidValue)
    accepts what follows the last `_`, so a value that merely contains an underscore stays whole.
    `at_last` splits at the last `|`, for pairs whose second half never contains one (a hash or a
    port) while the first half might (a file name).
    """
    text = value or ""
    if "|" in text:
        first, _, second = text.rpartition("|") if at_last else text.partition("|")
        return first.strip(), second.strip()
    if check_second is not None and "_" in text:
        first, _, second = text.rpartition("_")
        try:
            check_second(second.strip())
        except InvalidValue:
            pass
        else:
            return first.strip(), second.strip()
    raise InvalidValue(f"{text!r} is not a {pair_name} pair (expected two values separated by |)")
