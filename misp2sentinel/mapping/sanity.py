"""The local sanity filter: values that would match everyone's traffic or nothing at all.

MISP's warninglists catch many such values, but they test single addresses, so a CIDR attribute
such as `10.0.0.0/8` passes them. This filter skips, each with its own reason and switch:

* addresses and blocks inside private (RFC 1918, RFC 6598 shared, IPv6 unique local), loopback,
  link-local, multicast or reserved ranges (`0.0.0.0/8`, `192.0.0.0/24`, `198.18.0.0/15`,
  `240.0.0.0/4`, `::/8` outside IPv4-mapped addresses, `100::/64`). IPv4-mapped and 6to4
  (`2002::/16`) IPv6 addresses are judged by the IPv4 address they carry.
  Documentation ranges (`192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`)
  are not filtered.
* CIDR blocks broader than the configured prefix length. An IPv4-mapped or 6to4 block is held to
  the IPv4 minimum for the IPv4 block it carries (`::ffff:0:0/96` is all of IPv4).
* hashes of empty content (the MD5, SHA and ssdeep digests of zero bytes).
"""

from __future__ import annotations

import ipaddress

from misp2sentinel.mapping.hashes import EMPTY_CONTENT_DIGESTS
from misp2sentinel.mapping.parts import Part
from misp2sentinel.mapping.values import IPv4Host, Network
from misp2sentinel.report import BROAD_CIDR, EMPTY_CONTENT_HASH, NON_PUBLIC_ADDRESS

_RANGES = {
    4: [
        ("0.0.0.0/8", "reserved"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "private (shared address space)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved (IETF protocol assignments)"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved (benchmarking)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    ],
    6: [
        ("::1/128", "loopback"),
        ("::/8", "reserved"),
        ("100::/64", "reserved (discard-only)"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
    ],
}
# (first address, last address, class) per IP version, as integers for fast containment tests.
NON_PUBLIC_RANGES = {
    version: [
        (int(network.network_address), int(network.broadcast_address), label)
        for network, label in ((ipaddress.ip_network(text), label) for text, label in ranges)
    ]
    for version, ranges in _RANGES.items()
}
IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


def carried_ipv4(network: Network) -> ipaddress.IPv4Network | None:
    """Return the IPv4 block that an IPv4-mapped or 6to4 IPv6 block carries, else None."""
    if network.version != 6:
        return None
    if network.prefixlen >= 96 and network.subnet_of(IPV4_MAPPED):
        return ipaddress.IPv4Network(f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}")
    if network.prefixlen >= 48 and network.subnet_of(SIX_TO_FOUR):
        # A 6to4 address carries its IPv4 address in bits 16 to 48.
        return ipaddress.IPv4Network(f"{network.network_address.sixtofour}/{min(32, network.prefixlen - 16)}", strict=False)
    return None


def non_public_class(network: Network) -> str | None:
    """Return the class (private, loopback, ...) of a network inside a non-public range, else None."""
    if network.__class__ is IPv4Host:
        address = network.integer
        for low, high, label in NON_PUBLIC_RANGES[4]:
            if low <= address <= high:
                return label
        return None
    network = carried_ipv4(network) or network
    first = int(network.network_address)
    last = first if network.prefixlen == network.max_prefixlen else int(network.broadcast_address)
    for low, high, label in NON_PUBLIC_RANGES[network.version]:
        if low <= first and last <= high:
            return label
    return None


def sanity_skip(part: Part, settings) -> tuple[str, str] | None:
    """Return (skip reason, detail) when the sanity filter rejects a part, else None.

    `settings` is the `mapping.sanity` section of the configuration.
    """
    network = part.network
    if network is not None:
        if settings.non_public_addresses:
            label = non_public_class(network)
            if label is not None:
                return NON_PUBLIC_ADDRESS, f"{part.name} is a {label} address, not a public one"
        # An IPv4-mapped or 6to4 block is as broad as the IPv4 block it carries.
        carried = carried_ipv4(network) if network.__class__ is not IPv4Host else None
        judged = carried or network
        minimum = settings.ipv4_min_prefix if judged.version == 4 else settings.ipv6_min_prefix
        if judged.prefixlen < minimum:
            through = f" (it carries the IPv4 block {carried})" if carried is not None else ""
            return BROAD_CIDR, f"{network}{through} is broader than the configured minimum prefix /{minimum}"
    digest = part.digest
    if digest is not None and settings.empty_content_hashes:
        algorithm, value = digest
        if EMPTY_CONTENT_DIGESTS.get(algorithm) == value:
            return EMPTY_CONTENT_HASH, f"{value} is the {algorithm} hash of empty content"
    return None
