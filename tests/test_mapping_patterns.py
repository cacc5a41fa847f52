"""Which attributes become indicators, and the exact pattern of each core MISP type."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misp2sentinel.report import INVALID_VALUE, NOT_IDS, UNSUPPORTED_TYPE
from tests.conftest import derived_id, map_one, map_raw, misp_attribute, misp_event, misp_object

# Digests of b"abc" (FIPS 180 test vectors); the digests of empty content are left to the sanity tests.
MD5 = "900150983cd24fb0d6963f7d28e17f72"
SHA1 = "a9993e364706816aba3e25717850c26c9cd0d89d"
SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
SHA512 = (
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
)
HASHES = {"md5": MD5, "sha1": SHA1, "sha256": SHA256, "sha512": SHA512}


def describe_types_defaults() -> dict[str, bool]:
    """Return MISP's default `to_ids` per type from PyMISP's copy of describeTypes.json."""
    spec = importlib.util.find_spec("pymisp")
    path = Path(spec.submodule_search_locations[0]) / "data" / "describeTypes.json"
    defaults = json.loads(path.read_text(encoding="utf-8"))["result"]["sane_defaults"]
    return {name: bool(entry["to_ids"]) for name, entry in defaults.items()}


# Which attributes


def test_to_ids_event_attribute_exported():
    mapped = map_one(misp_attribute("ip-dst", "198.51.100.7", to_ids=True))

    assert mapped.only["pattern"] == "[ipv4-addr:value = '198.51.100.7']"
    assert mapped.skips == []


def test_to_ids_off_skipped():
    attribute = misp_attribute("ip-dst", "198.51.100.7", to_ids=False)

    mapped = map_one(attribute)

    assert mapped.indicators == []
    assert mapped.skip_reasons() == [NOT_IDS]
    assert mapped.skips[0].attribute_uuid == attribute["uuid"]


def test_to_ids_object_attribute_exported():
    inside = misp_attribute("domain", "c2.example.com", to_ids=True, object_relation="domain")
    event = misp_event(objects=(misp_object("domain-ip", inside),))

    mapped = map_raw(event)

    assert mapped.only["id"] == f"indicator--{inside['uuid']}"
    assert mapped.only["pattern"] == "[domain-name:value = 'c2.example.com']"


def test_to_ids_off_object_attribute_skipped():
    inside = misp_attribute("domain", "c2.example.com", to_ids=False, object_relation="domain")
    event = misp_event(objects=(misp_object("domain-ip", inside),))

    mapped = map_raw(event)

    assert mapped.indicators == []
    assert mapped.skip_reasons() == [NOT_IDS]


@pytest.mark.parametrize(
    ("attribute_type", "value"),
    [
        ("ip-src", "198.51.100.7"),
        ("ip-dst", "198.51.100.7"),
        ("domain", "example.com"),
        ("hostname", "www.example.com"),
        ("url", "https://example.com/a"),
        ("email", "alice@example.com"),
        ("email-src", "alice@example.com"),
        ("email-dst", "alice@example.com"),
        ("md5", MD5),
        ("sha1", SHA1),
        ("sha256", SHA256),
        ("sha512", SHA512),
        ("filename", "invoice.exe"),
        ("domain|ip", "example.com|198.51.100.7"),
        ("filename|md5", f"invoice.exe|{MD5}"),
        ("ip-src|port", "198.51.100.7|443"),
        ("hostname|port", "www.example.com|443"),
        ("text", "free text"),
        ("comment", "a comment"),
    ],
)
def test_to_ids_missing_takes_misp_default(attribute_type, value):
    expected = describe_types_defaults()[attribute_type]

    mapped = map_one(misp_attribute(attribute_type, value, to_ids=None))

    assert bool(mapped.indicators) is expected
    if not expected:
        assert mapped.skip_reasons() == [NOT_IDS]


def test_to_ids_missing_on_text_is_not_ids():
    # MISP's default for `text` is to_ids off, so the skip reason is not_ids, not unsupported_type.
    mapped = map_one(misp_attribute("text", "free text", to_ids=None))

    assert mapped.skip_reasons() == [NOT_IDS]


def test_unsupported_type_skipped():
    mapped = map_one(misp_attribute("btc", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", to_ids=True))

    assert mapped.indicators == []
    assert mapped.skip_reasons() == [UNSUPPORTED_TYPE]


# Pattern of each core type


@pytest.mark.parametrize(
    ("attribute_type", "value", "pattern"),
    [
        ("ip-src", "198.51.100.7", "[ipv4-addr:value = '198.51.100.7']"),
        ("ip-dst", "198.51.100.7", "[ipv4-addr:value = '198.51.100.7']"),
        ("ip-src", "2001:db8::1", "[ipv6-addr:value = '2001:db8::1']"),
        ("ip-dst", "2001:db8::7", "[ipv6-addr:value = '2001:db8::7']"),
        ("ip-src", "203.0.113.0/24", "[ipv4-addr:value = '203.0.113.0/24']"),
        ("ip-dst", "2001:db8::/32", "[ipv6-addr:value = '2001:db8::/32']"),
        ("domain", "example.com", "[domain-name:value = 'example.com']"),
        ("hostname", "www.example.com", "[domain-name:value = 'www.example.com']"),
        ("url", "https://example.com/path?q=1&r=2", "[url:value = 'https://example.com/path?q=1&r=2']"),
        ("email-src", "alice@example.com", "[email-addr:value = 'alice@example.com']"),
        ("email-dst", "bob@example.com", "[email-addr:value = 'bob@example.com']"),
        ("email", "carol@example.com", "[email-addr:value = 'carol@example.com']"),
        ("md5", MD5, f"[file:hashes.'MD5' = '{MD5}']"),
        ("sha1", SHA1, f"[file:hashes.'SHA-1' = '{SHA1}']"),
        ("sha256", SHA256, f"[file:hashes.'SHA-256' = '{SHA256}']"),
        ("sha512", SHA512, f"[file:hashes.'SHA-512' = '{SHA512}']"),
        ("filename", "invoice.pdf.exe", "[file:name = 'invoice.pdf.exe']"),
    ],
)
def test_pattern_core_type(attribute_type, value, pattern):
    mapped = map_one(misp_attribute(attribute_type, value))

    assert mapped.only["pattern"] == pattern
    assert mapped.only["pattern_type"] == "stix"


def test_pattern_md5_hash_key():
    # Whatever the quoting, an MD5 indicator must test the MD5 hash of a file.
    pattern = map_one(misp_attribute("md5", MD5)).only["pattern"]

    assert pattern in (f"[file:hashes.MD5 = '{MD5}']", f"[file:hashes.'MD5' = '{MD5}']")


def test_pattern_uppercase_hash_accepted():
    pattern = map_one(misp_attribute("sha256", SHA256.upper())).only["pattern"]

    assert pattern.lower() == f"[file:hashes.'sha-256' = '{SHA256}']"


@pytest.mark.parametrize(("attribute_type", "label_word", "text_word"), [("ip-src", "src", "source"), ("ip-dst", "dst", "destination")])
def test_pattern_ip_direction_in_labels(attribute_type, label_word, text_word):
    indicator = map_one(misp_attribute(attribute_type, "198.51.100.7")).only

    assert any(label_word in label for label in indicator["labels"]), indicator["labels"]
    assert text_word in indicator["description"].lower()


# Composites


def test_composite_domain_ip_two_indicators():
    attribute = misp_attribute("domain|ip", "example.com|198.51.100.7")

    mapped = map_one(attribute)

    assert [i["pattern"] for i in mapped.indicators] == [
        "[domain-name:value = 'example.com']",
        "[ipv4-addr:value = '198.51.100.7']",
    ]
    assert mapped.skips == []


def test_composite_domain_ip_ids():
    attribute = misp_attribute("domain|ip", "example.com|2001:db8::5")

    first, second = map_one(attribute).indicators

    assert first["id"] == f"indicator--{attribute['uuid']}"
    assert second["id"] == derived_id("indicator", f"source={attribute['uuid']}|part=ip|generation=0")
    assert second["pattern"] == "[ipv6-addr:value = '2001:db8::5']"


@pytest.mark.parametrize("hash_type", ["md5", "sha1", "sha256", "sha512"])
def test_composite_filename_hash(hash_type):
    digest = HASHES[hash_type]
    key = {"md5": "'MD5'", "sha1": "'SHA-1'", "sha256": "'SHA-256'", "sha512": "'SHA-512'"}[hash_type]
    accepted = {f"[file:hashes.{key} = '{digest}']"}
    if hash_type == "md5":
        # test_pattern_core_type checks the quoting of the MD5 key, so both forms pass here.
        accepted.add(f"[file:hashes.MD5 = '{digest}']")
    attribute = misp_attribute(f"filename|{hash_type}", f"invoice.exe|{digest}")

    indicator = map_one(attribute).only

    assert indicator["pattern"] in accepted
    assert indicator["id"] == f"indicator--{attribute['uuid']}"
    assert "invoice.exe" in indicator["name"]
    assert "invoice.exe" in indicator["description"]


@pytest.mark.parametrize(
    ("attribute_type", "value", "pattern", "port"),
    [
        ("ip-src|port", "198.51.100.7|8443", "[ipv4-addr:value = '198.51.100.7']", "8443"),
        ("ip-dst|port", "198.51.100.8|443", "[ipv4-addr:value = '198.51.100.8']", "443"),
        ("ip-dst|port", "2001:db8::9|53", "[ipv6-addr:value = '2001:db8::9']", "53"),
        ("hostname|port", "mail.example.com|25", "[domain-name:value = 'mail.example.com']", "25"),
    ],
)
def test_composite_host_port(attribute_type, value, pattern, port):
    indicator = map_one(misp_attribute(attribute_type, value)).only

    assert indicator["pattern"] == pattern
    assert port in indicator["description"]
    assert any(port in label for label in indicator["labels"]), indicator["labels"]


def test_composite_ip_port_direction():
    indicator = map_one(misp_attribute("ip-dst|port", "198.51.100.8|443")).only

    assert any("dst" in label for label in indicator["labels"]), indicator["labels"]
    assert "destination" in indicator["description"].lower()


# Escaping


@pytest.mark.parametrize(
    ("attribute_type", "value", "pattern"),
    [
        ("filename", "C:\\Temp\\o'neil.exe", "[file:name = 'C:\\\\Temp\\\\o\\'neil.exe']"),
        ("filename", "it's", "[file:name = 'it\\'s']"),
        ("filename", "back\\slash", "[file:name = 'back\\\\slash']"),
        ("url", "http://example.com/it's\\here", "[url:value = 'http://example.com/it\\'s\\\\here']"),
        ("email-src", "o'brien@example.com", "[email-addr:value = 'o\\'brien@example.com']"),
    ],
)
def test_escaping_quote_and_backslash(attribute_type, value, pattern):
    indicator = map_one(misp_attribute(attribute_type, value)).only

    assert indicator["pattern"] == pattern


def test_escaping_filename_hash_pattern_unaffected():
    indicator = map_one(misp_attribute("filename|sha1", f"o'neil\\x.exe|{SHA1}")).only

    assert indicator["pattern"] == f"[file:hashes.'SHA-1' = '{SHA1}']"
    assert "o'neil\\x.exe" in indicator["name"]


# Invalid values


@pytest.mark.parametrize(
    ("attribute_type", "value"),
    [
        ("md5", MD5[:-1]),
        ("md5", MD5 + "0"),
        ("md5", "g" + MD5[1:]),
        ("md5", SHA1),
        ("sha1", MD5),
        ("sha1", SHA1[:-1] + "z"),
        ("sha256", SHA256[:32] + " " + SHA256[33:]),
        ("sha256", SHA256[:-1] + "'"),
        ("sha512", SHA512[:-2]),
        ("sha512", SHA256),
    ],
)
def test_invalid_hash_skipped(attribute_type, value):
    mapped = map_one(misp_attribute(attribute_type, value))

    assert mapped.indicators == []
    assert mapped.skip_reasons() == [INVALID_VALUE]


@pytest.mark.parametrize(
    ("attribute_type", "value"),
    [
        ("ip-src", "198.51.100.300"),
        ("ip-src", "198.51.100"),
        ("ip-dst", "2001:db8::g"),
        ("ip-dst", "10.0.0.0/33"),
        ("ip-dst", "2001:db8::/129"),
        ("ip-src", "example.com"),
        ("ip-src", "198.51.100.7'"),
        ("ip-dst", ""),
        ("ip-src|port", "198.51.100.256|443"),
        ("ip-dst|port", "not-an-ip|443"),
    ],
)
def test_invalid_ip_skipped(attribute_type, value):
    mapped = map_one(misp_attribute(attribute_type, value))

    assert mapped.indicators == []
    assert mapped.skip_reasons() == [INVALID_VALUE]


def test_invalid_value_reason_names_value():
    mapped = map_one(misp_attribute("md5", "not-a-hash"))

    assert mapped.skip_reasons() == [INVALID_VALUE]
    assert "not-a-hash" in mapped.skips[0].detail
    assert "md5" in mapped.skips[0].detail.lower()


def test_invalid_ip_reason_names_value():
    mapped = map_one(misp_attribute("ip-dst", "198.51.100.300"))

    assert "198.51.100.300" in mapped.skips[0].detail


def test_invalid_port_keeps_host():
    attribute = misp_attribute("ip-dst|port", "198.51.100.7|99999")

    mapped = map_one(attribute)

    assert [i["pattern"] for i in mapped.indicators] == ["[ipv4-addr:value = '198.51.100.7']"]
    assert mapped.indicators[0]["id"] == f"indicator--{attribute['uuid']}"
    assert mapped.skip_reasons() == [INVALID_VALUE]


@pytest.mark.parametrize(
    ("attribute_type", "value"),
    [
        ("filename|md5", f"invoice.exe|{MD5[:-1]}"),
        ("filename|sha256", f"invoice.exe|{SHA1}"),
    ],
)
def test_invalid_hash_keeps_file_name(attribute_type, value):
    attribute = misp_attribute(attribute_type, value)

    mapped = map_one(attribute)

    assert [i["pattern"] for i in mapped.indicators] == ["[file:name = 'invoice.exe']"]
    assert mapped.indicators[0]["id"] != f"indicator--{attribute['uuid']}"
    assert mapped.skip_reasons() == [INVALID_VALUE]


def test_domain_ip_invalid_ip_half():
    attribute = misp_attribute("domain|ip", "example.com|198.51.100.999")

    mapped = map_one(attribute)

    assert [i["pattern"] for i in mapped.indicators] == ["[domain-name:value = 'example.com']"]
    assert mapped.indicators[0]["id"] == f"indicator--{attribute['uuid']}"
    assert mapped.skip_reasons() == [INVALID_VALUE]
    assert "198.51.100.999" in mapped.skips[0].detail


# Escaping of arbitrary text


def unescape_literal(pattern: str, prefix: str) -> str:
    """Return the value of the single string literal in `[<prefix> = '<literal>']`."""
    assert pattern.startswith(f"[{prefix} = '"), pattern
    assert pattern.endswith("']"), pattern
    literal = pattern[len(prefix) + 5 : -2]
    return re.sub(r"\\(.)", r"\1", literal)


PRINTABLE_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
).filter(lambda text: text.strip())


@settings(max_examples=100, deadline=None, database=None)
@given(PRINTABLE_TEXT)
def test_escaping_any_file_name(name):
    indicator = map_one(misp_attribute("filename", name)).only

    assert unescape_literal(indicator["pattern"], "file:name") == name.strip()


@settings(max_examples=100, deadline=None, database=None)
@given(PRINTABLE_TEXT.filter(lambda text: not any(c.isspace() for c in text)))
def test_escaping_any_url(path):
    url = f"https://example.com/{path}"

    indicator = map_one(misp_attribute("url", url)).only

    assert unescape_literal(indicator["pattern"], "url:value") == url
