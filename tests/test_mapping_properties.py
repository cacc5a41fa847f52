"""Property-based tests: generated values of every supported type, in both pattern styles, give
objects that stix2 parses strictly and patterns that stix2-patterns accepts, or a documented skip.

Each test runs a bounded number of examples (`max_examples` at most 100, no deadline, no example
database), so the suite stays fast and repeatable.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misp2sentinel.config import MappingSettings
from misp2sentinel.mapping.types import BUILDERS
from misp2sentinel.report import BROAD_CIDR, INVALID_VALUE, NON_PUBLIC_ADDRESS
from tests.conftest import misp_attribute, misp_event, misp_object
from tests.test_mapping_types import map_checked

BOUNDED = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
STYLES = st.sampled_from([MappingSettings(), MappingSettings(pattern_style="combined")])
SANITY_REASONS = {NON_PUBLIC_ADDRESS, BROAD_CIDR}

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40).filter(str.strip)
NO_SPACE_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1, max_size=30)
LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
DOMAIN = st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(LABEL, min_size=1, max_size=3),
                   st.from_regex(r"[a-z]{2,6}", fullmatch=True))
IP = st.one_of(
    st.ip_addresses().map(str),
    st.tuples(st.ip_addresses(v=4), st.integers(0, 32)).map(lambda pair: f"{pair[0]}/{pair[1]}"),
    st.tuples(st.ip_addresses(v=6), st.integers(0, 128)).map(lambda pair: f"{pair[0]}/{pair[1]}"),
)
PORT = st.integers(0, 65535).map(str)
URL = st.builds(lambda scheme, host, path: f"{scheme}://{host}/{path}", st.sampled_from(["http", "https", "ftp"]),
                DOMAIN, NO_SPACE_TEXT.filter(lambda text: not any(character.isspace() for character in text)))
EMAIL = st.builds(lambda local, domain: f"{local}@{domain}", st.from_regex(r"[A-Za-z0-9._%+'-]{1,20}", fullmatch=True), DOMAIN)
REGKEY = st.builds(lambda hive, path: f"{hive}\\{path}", st.sampled_from(["HKLM", "HKCU", "HKEY_USERS", "Software"]),
                   TEXT.filter(lambda text: text.strip().strip("\\")))


def hex_digits(length: int):
    return st.text(alphabet="0123456789abcdefABCDEF", min_size=length, max_size=length)


SSDEEP = st.builds(lambda size, first, second: f"{size}:{first}:{second}", st.integers(3, 99999),
                   st.from_regex(r"[A-Za-z0-9/+]{1,64}", fullmatch=True), st.from_regex(r"[A-Za-z0-9/+]{1,32}", fullmatch=True))
TLSH = st.builds(lambda prefix, digits: prefix + digits, st.sampled_from(["", "T1", "t1"]), hex_digits(70))
HASHES = {
    "md5": hex_digits(32), "sha1": hex_digits(40), "sha224": hex_digits(56), "sha256": hex_digits(64),
    "sha384": hex_digits(96), "sha512": hex_digits(128), "sha512/224": hex_digits(56), "sha512/256": hex_digits(64),
    "sha3-224": hex_digits(56), "sha3-256": hex_digits(64), "sha3-384": hex_digits(96), "sha3-512": hex_digits(128),
    "ssdeep": SSDEEP, "tlsh": TLSH, "imphash": hex_digits(32), "authentihash": hex_digits(64), "pehash": hex_digits(40),
    "cdhash": hex_digits(40), "vhash": st.from_regex(r"[0-9a-z]{10,60}", fullmatch=True), "impfuzzy": SSDEEP,
    "telfhash": TLSH,
}


def pair(first, second):
    return st.builds(lambda a, b: f"{a}|{b}", first, second)


FILE_NAME = TEXT.filter(lambda text: "|" not in text)
STRATEGIES = {
    **HASHES,
    **{f"filename|{name}": pair(FILE_NAME, strategy) for name, strategy in HASHES.items() if f"filename|{name}" in BUILDERS},
    "malware-sample": pair(FILE_NAME, hex_digits(32)),
    "ip-src": IP, "ip-dst": IP, "ip-src|port": pair(IP, PORT), "ip-dst|port": pair(IP, PORT),
    "domain": DOMAIN, "hostname": DOMAIN, "hostname|port": pair(DOMAIN, PORT), "domain|ip": pair(DOMAIN, IP),
    "onion-address": st.from_regex(r"[a-z2-7]{16}", fullmatch=True).map(lambda text: text + ".onion"),
    "url": URL, "link": URL, "uri": st.one_of(URL, NO_SPACE_TEXT.map(lambda text: "/" + text)),
    "email": EMAIL, "email-src": EMAIL, "email-dst": EMAIL, "email-reply-to": EMAIL,
    "email-src-display-name": TEXT, "email-dst-display-name": TEXT, "email-subject": TEXT, "email-message-id": TEXT,
    "email-body": st.text(alphabet=st.one_of(st.characters(blacklist_categories=("Cc", "Cs")), st.sampled_from("\n\r\t")),
                          min_size=1, max_size=80).filter(str.strip),
    "email-x-mailer": TEXT, "email-attachment": TEXT, "email-header": TEXT, "filename": TEXT,
    "attachment": TEXT,
    "x509-fingerprint-md5": hex_digits(32), "x509-fingerprint-sha1": hex_digits(40), "x509-fingerprint-sha256": hex_digits(64),
    "ja3-fingerprint-md5": hex_digits(32), "hassh-md5": hex_digits(32), "hasshserver-md5": hex_digits(32),
    "jarm-fingerprint": hex_digits(62),
    "AS": st.integers(0, 4294967295).map(lambda number: f"AS{number}"), "mac-address": hex_digits(12).map(
        lambda digits: ":".join(digits[i:i + 2] for i in range(0, 12, 2))),
    "port": PORT, "size-in-bytes": st.integers(0, 10**12).map(str),
    "http-method": st.from_regex(r"[A-Za-z]{3,10}", fullmatch=True), "user-agent": TEXT,
    "regkey": REGKEY, "regkey|value": pair(REGKEY.filter(lambda text: "|" not in text), TEXT), "mutex": TEXT,
    "github-username": TEXT,
    "yara": TEXT.map(lambda text: f"rule R {{ strings: $a = \"{text}\" condition: $a }}"),
    "sigma": TEXT.map(lambda text: f"title: {text}\ndetection:\n  condition: all"),
    "snort": TEXT.map(lambda text: f"alert tcp any any -> any any (msg:\"{text}\"; sid:1;)"),
    "suricata": TEXT.map(lambda text: f"alert ip any any -> any any (msg:\"{text}\"; sid:1;)"),
}


def test_strategies_cover_every_type():
    assert set(STRATEGIES) == set(BUILDERS)


@pytest.mark.parametrize("attribute_type", sorted(STRATEGIES))
def test_generated_values_valid(attribute_type):
    @BOUNDED
    @given(value=STRATEGIES[attribute_type], mapping=STYLES)
    def check(value, mapping):
        mapped = map_checked(misp_event(misp_attribute(attribute_type, value)), mapping)

        reasons = set(mapped.skip_reasons())
        if attribute_type == "attachment":
            # Without attachment data there is nothing to hash.
            assert reasons == {INVALID_VALUE}
            return
        assert mapped.indicators or reasons <= SANITY_REASONS, (value, mapped.skips)
        assert reasons <= SANITY_REASONS, (value, mapped.skips)

    check()


def unescape(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal)


@pytest.mark.parametrize(("attribute_type", "prefix"), [
    ("mutex", "mutex:name"),
    ("email-subject", "email-message:subject"),
    ("user-agent", "network-traffic:extensions.'http-request-ext'.request_header.'User-Agent'"),
    ("email-src-display-name", "email-addr:display_name"),
    ("filename", "file:name"),
])
def test_generated_text_round_trips(attribute_type, prefix):
    @BOUNDED
    @given(value=TEXT)
    def check(value):
        pattern = map_checked(misp_event(misp_attribute(attribute_type, value))).only["pattern"]

        assert pattern.startswith(f"[{prefix} = '"), pattern
        assert pattern.endswith("']"), pattern
        assert unescape(pattern[len(prefix) + 5 : -2]) == value.strip()

    check()


ANY_ATTRIBUTE = st.sampled_from(sorted(STRATEGIES)).flatmap(
    lambda attribute_type: st.tuples(st.just(attribute_type), STRATEGIES[attribute_type], st.booleans())
)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(members=st.lists(ANY_ATTRIBUTE, min_size=1, max_size=6), in_object=st.booleans(), mapping=STYLES)
def test_generated_events_account_for_every_attribute(members, in_object, mapping):
    attributes = [misp_attribute(kind, value, to_ids=to_ids, object_relation=kind) for kind, value, to_ids in members]
    event = misp_event(objects=(misp_object("generated", *attributes),)) if in_object else misp_event(*attributes)

    mapped = map_checked(event, mapping)

    produced = {skip.attribute_uuid for skip in mapped.skips}
    for indicator in mapped.indicators:
        produced.add(indicator["id"].split("--", 1)[1])
    combined_object = in_object and mapping.pattern_style == "combined"
    for attribute in attributes:
        assert attribute["uuid"] in produced or combined_object, attribute
