"""The local sanity filter: non-public addresses, CIDR blocks broader than the configured prefix and
hashes of empty content, each skipped with its own reason and each switchable."""

from __future__ import annotations

import hashlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misp2sentinel.config import MappingSettings, SanityFilter
from misp2sentinel.mapping.sanity import non_public_class
from misp2sentinel.mapping.values import IPv4Host, ip_network, ip_text
from misp2sentinel.report import BROAD_CIDR, EMPTY_CONTENT_HASH, NON_PUBLIC_ADDRESS
from tests.conftest import misp_attribute, misp_event, misp_object
from tests.test_mapping_types import map_checked, map_value

EMPTY_ON = MappingSettings(sanity=SanityFilter(empty_content_hashes=True))
EVERYTHING_OFF = MappingSettings(
    sanity=SanityFilter(non_public_addresses=False, ipv4_min_prefix=0, ipv6_min_prefix=0, empty_content_hashes=False)
)


@pytest.mark.parametrize(("value", "label"), [
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "private (shared address space)"),
    ("127.0.0.1", "loopback"),
    ("169.254.10.10", "link-local"),
    ("224.0.0.251", "multicast"),
    ("239.255.255.250", "multicast"),
    ("0.0.0.0", "reserved"),
    ("255.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"),
    ("10.0.0.0/8", "private"),
    ("192.168.0.0/24", "private"),
    ("::1", "loopback"),
    ("::", "reserved"),
    ("fe80::1", "link-local"),
    ("fd00::1", "private (unique local)"),
    ("ff02::1", "multicast"),
    ("::ffff:192.168.1.1", "private"),
    ("::ffff:127.0.0.1", "loopback"),
    ("192.0.0.1", "reserved (IETF protocol assignments)"),
    ("198.18.0.1", "reserved (benchmarking)"),
    ("198.19.255.254", "reserved (benchmarking)"),
    ("2002:a00:1::1", "private"),
    ("2002:7f00:1::/48", "loopback"),
])
def test_non_public_address_skipped(value, label):
    mapped = map_value("ip-dst", value)

    assert mapped.indicators == []
    assert mapped.skip_reasons() == [NON_PUBLIC_ADDRESS]
    assert f"is a {label} address" in mapped.skips[0].detail


@pytest.mark.parametrize("value", [
    "198.51.100.7",
    "203.0.113.0/24",
    "192.0.2.1",
    "2001:db8::1",
    "8.8.8.8",
    "172.32.0.1",
    "100.128.0.1",
    "::ffff:8.8.8.8",
    "2a00:1450:4001::1",
])
def test_public_address_kept(value):
    assert len(map_value("ip-src", value).indicators) == 1


def test_non_public_address_switch_off():
    settings = MappingSettings(sanity=SanityFilter(non_public_addresses=False))

    assert map_value("ip-dst", "10.1.2.3", settings).patterns == ["[ipv4-addr:value = '10.1.2.3']"]


@pytest.mark.parametrize(("attribute_type", "value"), [
    ("ip-dst|port", "192.168.1.10|443"),
    ("ip-src|port", "127.0.0.1|8080"),
])
def test_non_public_address_in_composite(attribute_type, value):
    assert map_value(attribute_type, value).skip_reasons() == [NON_PUBLIC_ADDRESS]


def test_non_public_address_domain_ip_keeps_domain():
    mapped = map_value("domain|ip", "evil.example|10.0.0.5")

    assert mapped.patterns == ["[domain-name:value = 'evil.example']"]
    assert mapped.skip_reasons() == [NON_PUBLIC_ADDRESS]
    assert mapped.skips[0].detail.startswith("ip:")


def test_non_public_address_in_object():
    raw = misp_object("ip-port", misp_attribute("ip-dst", "192.168.0.7", object_relation="ip"),
                      misp_attribute("ip-dst", "198.51.100.7", object_relation="ip"))

    for settings in (MappingSettings(), MappingSettings(pattern_style="combined")):
        mapped = map_checked(misp_event(objects=(raw,)), settings)

        assert "198.51.100.7" in mapped.patterns[0]
        assert "192.168.0.7" not in " ".join(mapped.patterns)
        assert mapped.skip_reasons() == [NON_PUBLIC_ADDRESS]


# CIDR prefix


@pytest.mark.parametrize(("value", "skipped"), [
    ("8.0.0.0/8", True),
    ("45.0.0.0/15", True),
    ("45.0.0.0/16", False),
    ("45.10.20.0/24", False),
    ("0.0.0.0/0", True),
    ("2a00::/16", True),
    ("2a00::/31", True),
    ("2a00::/32", False),
    ("2a00:1450::/48", False),
    ("::/0", True),
    # An IPv4-mapped or 6to4 block is as broad as the IPv4 block it carries: ::ffff:0:0/96 is all of IPv4.
    ("::ffff:0:0/96", True),
    ("::ffff:8.0.0.0/104", True),
    ("::ffff:45.0.0.0/112", False),
    ("2002:2d00::/24", True),
    ("2002:2d0a:1400::/40", False),
])
def test_broad_cidr_default_prefix(value, skipped):
    mapped = map_value("ip-src", value)

    assert mapped.skip_reasons() == ([BROAD_CIDR] if skipped else [])


def test_broad_cidr_configured_prefix():
    settings = MappingSettings(sanity=SanityFilter(ipv4_min_prefix=24, ipv6_min_prefix=64))

    assert map_value("ip-dst", "45.10.20.0/23", settings).skip_reasons() == [BROAD_CIDR]
    assert map_value("ip-dst", "45.10.20.0/24", settings).skip_reasons() == []
    assert map_value("ip-dst", "2a00:1450:4001::/56", settings).skip_reasons() == [BROAD_CIDR]
    assert map_value("ip-dst", "2a00:1450:4001:1::/64", settings).skip_reasons() == []


def test_broad_cidr_detail_names_block():
    mapped = map_value("ip-src", "8.0.0.0/8")

    assert "8.0.0.0/8" in mapped.skips[0].detail
    assert "/16" in mapped.skips[0].detail


def test_broad_cidr_switch_off():
    assert map_value("ip-src", "8.0.0.0/8", EVERYTHING_OFF).patterns == ["[ipv4-addr:value = '8.0.0.0/8']"]


def test_six_to_four_public_address_kept():
    mapped = map_value("ip-dst", "2002:801:101::1")

    assert len(mapped.indicators) == 1


def test_broad_private_block_reported_as_private():
    assert map_value("ip-src", "10.0.0.0/8").skip_reasons() == [NON_PUBLIC_ADDRESS]


# Hashes of empty content


EMPTY_DIGESTS = [
    ("md5", hashlib.md5(b"").hexdigest()),
    ("sha1", hashlib.sha1(b"").hexdigest()),
    ("sha224", hashlib.sha224(b"").hexdigest()),
    ("sha256", hashlib.sha256(b"").hexdigest()),
    ("sha384", hashlib.sha384(b"").hexdigest()),
    ("sha512", hashlib.sha512(b"").hexdigest()),
    ("sha512/224", hashlib.new("sha512_224", b"").hexdigest()),
    ("sha512/256", hashlib.new("sha512_256", b"").hexdigest()),
    ("sha3-224", hashlib.sha3_224(b"").hexdigest()),
    ("sha3-256", hashlib.sha3_256(b"").hexdigest()),
    ("sha3-384", hashlib.sha3_384(b"").hexdigest()),
    ("sha3-512", hashlib.sha3_512(b"").hexdigest()),
    ("ssdeep", "3::"),
]


@pytest.mark.parametrize(("attribute_type", "digest"), EMPTY_DIGESTS)
def test_empty_content_hash_skipped(attribute_type, digest):
    mapped = map_value(attribute_type, digest.upper() if attribute_type != "ssdeep" else digest, EMPTY_ON)

    assert mapped.indicators == []
    assert mapped.skip_reasons() == [EMPTY_CONTENT_HASH]
    assert "empty content" in mapped.skips[0].detail


@pytest.mark.parametrize(("attribute_type", "value"), [
    ("filename|md5", f"empty.txt|{hashlib.md5(b'').hexdigest()}"),
    ("malware-sample", f"empty.bin|{hashlib.md5(b'').hexdigest()}"),
])
def test_empty_content_hash_in_composite(attribute_type, value):
    assert map_value(attribute_type, value, EMPTY_ON).skip_reasons() == [EMPTY_CONTENT_HASH]


def test_empty_content_hash_in_object():
    raw = misp_object("file", misp_attribute("sha256", hashlib.sha256(b"").hexdigest(), object_relation="sha256"),
                      misp_attribute("filename", "empty.txt", object_relation="filename"))

    mapped = map_checked(misp_event(objects=(raw,)), EMPTY_ON)

    assert mapped.patterns == ["[file:name = 'empty.txt']"]
    assert mapped.skip_reasons() == [EMPTY_CONTENT_HASH]


def test_empty_content_hash_on_by_default():
    digest = hashlib.sha256(b"").hexdigest()

    assert map_value("sha256", digest).patterns == []


def test_empty_content_hash_not_a_file_for_x509():
    # A certificate fingerprint is never a hash of empty content, so the filter leaves it alone.
    digest = hashlib.sha1(b"").hexdigest()

    assert len(map_value("x509-fingerprint-sha1", digest, EMPTY_ON).indicators) == 1


@pytest.mark.parametrize(("key", "value"), [("ipv4_min_prefix", 33), ("ipv6_min_prefix", -1), ("ipv6_min_prefix", 129)])
def test_sanity_setting_validated(key, value):
    with pytest.raises(ValueError):
        SanityFilter(**{key: value})


@settings(max_examples=100, deadline=None, database=None)
@given(address=st.ip_addresses(v=4))
def test_ipv4_host_matches_ipaddress(address: ipaddress.IPv4Address) -> None:
    """A plain dotted address takes a short path (`IPv4Host`) that must agree with `ipaddress`."""
    text = str(address)
    host = ip_network(text)
    network = ipaddress.IPv4Network(text)

    assert isinstance(host, IPv4Host)
    assert ip_text(host) == ip_text(network)
    assert str(host) == str(network)
    assert host.network_address == network.network_address
    assert non_public_class(host) == non_public_class(network)


@pytest.mark.parametrize("text", ["10.0.0.1", "100.64.0.0", "127.255.255.255", "169.254.1.1", "192.0.0.8", "198.19.255.255",
                                  "224.0.0.1", "255.255.255.255", "0.0.0.0", "8.8.8.8", "192.0.2.1"])
def test_ipv4_host_range_edges(text: str) -> None:
    assert non_public_class(ip_network(text)) == non_public_class(ipaddress.IPv4Network(text))
