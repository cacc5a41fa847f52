"""Attributes inside MISP objects: exact patterns per template in both pattern styles, the object's
context in labels and description, relation rules, and the ids and properties of combined objects."""

from __future__ import annotations

import pytest

from misp2sentinel.config import MappingSettings
from misp2sentinel.report import ABOVE_MAX_TLP, DELETED, INVALID_VALUE, NOT_IDS, UNSUPPORTED_TYPE
from tests.conftest import EVENT_UUID, derived_id, misp_attribute, misp_event, misp_object
from tests.test_mapping_types import MD5, SHA1, SHA256, map_checked

COMBINED = MappingSettings(pattern_style="combined")
OBJECT_UUID = "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d"


def member(relation: str, attribute_type: str, value: str, **fields) -> dict:
    return misp_attribute(attribute_type, value, object_relation=relation, **fields)


def hashes(key: str, digest: str) -> str:
    return f"file:hashes.'{key}' = '{digest}'"


# (template, attributes as (relation, type, value), simple patterns, combined pattern)
TEMPLATE_CASES = [
    (
        "file",
        [("filename", "filename", "o'neil.exe"), ("md5", "md5", MD5), ("sha256", "sha256", SHA256),
         ("size-in-bytes", "size-in-bytes", "1234"), ("path", "text", "C:\\Temp")],
        ["[file:name = 'o\\'neil.exe']", f"[{hashes('MD5', MD5)}]", f"[{hashes('SHA-256', SHA256)}]",
         "[file:size = 1234]", "[file:parent_directory_ref.path = 'C:\\\\Temp']"],
        f"[file:name = 'o\\'neil.exe' AND {hashes('MD5', MD5)} AND {hashes('SHA-256', SHA256)} AND file:size = 1234 "
        "AND file:parent_directory_ref.path = 'C:\\\\Temp']",
    ),
    (
        "pe",
        [("imphash", "imphash", MD5), ("authentihash", "authentihash", SHA256), ("original-filename", "filename", "évil.exe")],
        [f"[{hashes('imphash', MD5)}]", f"[{hashes('authentihash', SHA256)}]", "[file:name = 'évil.exe']"],
        f"[{hashes('imphash', MD5)} AND {hashes('authentihash', SHA256)} AND file:name = 'évil.exe']",
    ),
    (
        "pe-section",
        [("name", "text", ".text", False), ("sha1", "sha1", SHA1)],
        [f"[file:extensions.'windows-pebinary-ext'.sections[*].hashes.'SHA-1' = '{SHA1}']"],
        f"[file:extensions.'windows-pebinary-ext'.sections[*].hashes.'SHA-1' = '{SHA1}']",
    ),
    (
        "elf",
        [("arch", "text", "x86_64", False), ("sha256", "sha256", SHA256)],
        [f"[{hashes('SHA-256', SHA256)}]"],
        f"[{hashes('SHA-256', SHA256)}]",
    ),
    (
        "macho",
        [("name", "text", "evil", False), ("md5", "md5", MD5)],
        [f"[{hashes('MD5', MD5)}]"],
        f"[{hashes('MD5', MD5)}]",
    ),
    (
        "domain-ip",
        [("domain", "domain", "evil.example"), ("ip", "ip-dst", "198.51.100.8"), ("ip", "ip-dst", "2001:db8::8")],
        ["[domain-name:value = 'evil.example']", "[ipv4-addr:value = '198.51.100.8']", "[ipv6-addr:value = '2001:db8::8']"],
        "[domain-name:value = 'evil.example' AND domain-name:resolves_to_refs[*].value = '198.51.100.8' "
        "AND domain-name:resolves_to_refs[*].value = '2001:db8::8']",
    ),
    (
        "ip-port",
        [("ip", "ip-dst", "198.51.100.7"), ("dst-port", "port", "443"), ("src-port", "port", "51000")],
        ["[ipv4-addr:value = '198.51.100.7']", "[network-traffic:dst_port = 443]", "[network-traffic:src_port = 51000]"],
        "[network-traffic:dst_ref.value = '198.51.100.7' AND network-traffic:dst_port = 443 AND network-traffic:src_port = 51000]",
    ),
    (
        "url",
        [("url", "url", "https://evil.example/a'b"), ("host", "hostname", "evil.example"), ("scheme", "text", "https", False)],
        ["[url:value = 'https://evil.example/a\\'b']", "[domain-name:value = 'evil.example']"],
        "[url:value = 'https://evil.example/a\\'b'] AND [domain-name:value = 'evil.example']",
    ),
    (
        "email",
        [("from", "email-src", "a@evil.example"), ("to", "email-dst", "b@victim.example"), ("cc", "email-dst", "c@victim.example"),
         ("reply-to", "email-reply-to", "r@evil.example"), ("subject", "email-subject", "Pay now"),
         ("x-mailer", "email-x-mailer", "Evil 1.0")],
        ["[email-addr:value = 'a@evil.example']", "[email-addr:value = 'b@victim.example']", "[email-addr:value = 'c@victim.example']",
         "[email-addr:value = 'r@evil.example']", "[email-message:subject = 'Pay now']",
         "[email-message:additional_header_fields.'X-Mailer' = 'Evil 1.0']"],
        "[email-message:from_ref.value = 'a@evil.example' AND email-message:to_refs[*].value = 'b@victim.example' "
        "AND email-message:cc_refs[*].value = 'c@victim.example' AND email-message:additional_header_fields.'Reply-To' = 'r@evil.example' "
        "AND email-message:subject = 'Pay now' AND email-message:additional_header_fields.'X-Mailer' = 'Evil 1.0']",
    ),
    (
        "network-connection",
        [("ip-src", "ip-src", "198.51.100.7"), ("ip-dst", "ip-dst", "203.0.113.9"), ("src-port", "port", "51000"),
         ("dst-port", "port", "4444"), ("layer4-protocol", "text", "tcp", False)],
        ["[ipv4-addr:value = '198.51.100.7']", "[ipv4-addr:value = '203.0.113.9']", "[network-traffic:src_port = 51000]",
         "[network-traffic:dst_port = 4444]"],
        "[network-traffic:src_ref.value = '198.51.100.7' AND network-traffic:dst_ref.value = '203.0.113.9' "
        "AND network-traffic:src_port = 51000 AND network-traffic:dst_port = 4444]",
    ),
    (
        "network-socket",
        [("ip-dst", "ip-dst", "2001:db8::9"), ("hostname-dst", "hostname", "c2.example.net"), ("dst-port", "port", "8080")],
        ["[ipv6-addr:value = '2001:db8::9']", "[domain-name:value = 'c2.example.net']", "[network-traffic:dst_port = 8080]"],
        "[(network-traffic:dst_ref.value = '2001:db8::9' OR network-traffic:dst_ref.value = 'c2.example.net') "
        "AND network-traffic:dst_port = 8080]",
    ),
    (
        "x509",
        [("x509-fingerprint-sha1", "x509-fingerprint-sha1", SHA1), ("issuer", "text", "CN=Évil CA, O='X'"),
         ("subject", "text", "CN=evil.example"), ("serial-number", "text", "01AB")],
        [f"[x509-certificate:hashes.'SHA-1' = '{SHA1}']", "[x509-certificate:issuer = 'CN=Évil CA, O=\\'X\\'']",
         "[x509-certificate:subject = 'CN=evil.example']", "[x509-certificate:serial_number = '01AB']"],
        f"[x509-certificate:hashes.'SHA-1' = '{SHA1}' AND x509-certificate:issuer = 'CN=Évil CA, O=\\'X\\'' "
        "AND x509-certificate:subject = 'CN=evil.example' AND x509-certificate:serial_number = '01AB']",
    ),
    (
        "registry-key",
        [("key", "regkey", "HKCU\\Software\\Evil"), ("name", "text", "Run"), ("data", "text", "C:\\evil.exe"),
         ("hive", "text", "HKCU", False)],
        ["[windows-registry-key:key = 'HKEY_CURRENT_USER\\\\Software\\\\Evil']", "[windows-registry-key:values[*].name = 'Run']",
         "[windows-registry-key:values[*].data = 'C:\\\\evil.exe']"],
        "[windows-registry-key:key = 'HKEY_CURRENT_USER\\\\Software\\\\Evil' AND windows-registry-key:values[*].name = 'Run' "
        "AND windows-registry-key:values[*].data = 'C:\\\\evil.exe']",
    ),
    (
        "asn",
        [("asn", "AS", "AS64496"), ("subnet-announced", "ip-src", "203.0.113.0/24"), ("description", "text", "Evil ISP", False)],
        ["[autonomous-system:number = 64496]", "[ipv4-addr:value = '203.0.113.0/24']"],
        "[autonomous-system:number = 64496] AND [ipv4-addr:value = '203.0.113.0/24']",
    ),
    (
        "http-request",
        [("url", "url", "https://evil.example/gate"), ("method", "http-method", "POST"), ("user-agent", "user-agent", "EvilBot/1.0"),
         ("referer", "other", "https://ref.example/"), ("content-type", "other", "application/x-evil"), ("uri", "uri", "/gate")],
        ["[url:value = 'https://evil.example/gate']", "[network-traffic:extensions.'http-request-ext'.request_method = 'POST']",
         "[network-traffic:extensions.'http-request-ext'.request_header.'User-Agent' = 'EvilBot/1.0']",
         "[network-traffic:extensions.'http-request-ext'.request_header.'Referer' = 'https://ref.example/']",
         "[network-traffic:extensions.'http-request-ext'.request_header.'Content-Type' = 'application/x-evil']",
         "[network-traffic:extensions.'http-request-ext'.request_value = '/gate']"],
        "[url:value = 'https://evil.example/gate'] AND [network-traffic:extensions.'http-request-ext'.request_method = 'POST' "
        "AND network-traffic:extensions.'http-request-ext'.request_header.'User-Agent' = 'EvilBot/1.0' "
        "AND network-traffic:extensions.'http-request-ext'.request_header.'Referer' = 'https://ref.example/' "
        "AND network-traffic:extensions.'http-request-ext'.request_header.'Content-Type' = 'application/x-evil' "
        "AND network-traffic:extensions.'http-request-ext'.request_value = '/gate']",
    ),
    (
        "mutex",
        [("name", "text", "Global\\Evil"), ("operating-system", "text", "Windows", False)],
        ["[mutex:name = 'Global\\\\Evil']"],
        "[mutex:name = 'Global\\\\Evil']",
    ),
    (
        "user-account",
        [("username", "text", "evil'admin"), ("user-id", "text", "1001")],
        ["[user-account:account_login = 'evil\\'admin']", "[user-account:user_id = '1001']"],
        "[user-account:account_login = 'evil\\'admin' AND user-account:user_id = '1001']",
    ),
    (
        "process",
        [("command-line", "text", "evil.exe -k \"x\""), ("image", "filename", "evil.exe")],
        ["[process:command_line = 'evil.exe -k \"x\"']", "[file:name = 'evil.exe']"],
        "[process:command_line = 'evil.exe -k \"x\"'] AND [file:name = 'evil.exe']",
    ),
    (
        "ja3",
        [("ja3-fingerprint-md5", "ja3-fingerprint-md5", MD5), ("ip-dst", "ip-dst", "198.51.100.7")],
        [f"[x-misp-ja3-fingerprint-md5:value = '{MD5}']", "[ipv4-addr:value = '198.51.100.7']"],
        f"[x-misp-ja3-fingerprint-md5:value = '{MD5}'] AND [ipv4-addr:value = '198.51.100.7']",
    ),
    (
        "crowdsec-ip-context",
        [("ip", "ip-src", "198.51.100.77"), ("as-num", "AS", "64500"), ("city", "text", "Nowhere", False)],
        ["[ipv4-addr:value = '198.51.100.77']", "[autonomous-system:number = 64500]"],
        "[ipv4-addr:value = '198.51.100.77'] AND [autonomous-system:number = 64500]",
    ),
]


def template_object(template: str, members: list) -> tuple[dict, list[dict]]:
    attributes = []
    for relation, attribute_type, value, *ids in members:
        attributes.append(member(relation, attribute_type, value, to_ids=ids[0] if ids else True))
    return misp_object(template, *attributes, uuid=OBJECT_UUID), attributes


@pytest.mark.parametrize(("template", "members", "simple", "combined"), TEMPLATE_CASES, ids=[case[0] for case in TEMPLATE_CASES])
def test_object_simple_patterns(template, members, simple, combined):
    misp_object_raw, attributes = template_object(template, members)

    mapped = map_checked(misp_event(objects=(misp_object_raw,)))

    assert mapped.patterns == simple
    assert set(mapped.skip_reasons()) <= {NOT_IDS}
    for indicator in mapped.indicators:
        assert f'misp:object="{template}"' in indicator["labels"]
        assert f"MISP object: {template} (relation " in indicator["description"]


@pytest.mark.parametrize(("template", "members", "simple", "combined"), TEMPLATE_CASES, ids=[case[0] for case in TEMPLATE_CASES])
def test_object_combined_pattern(template, members, simple, combined):
    misp_object_raw, attributes = template_object(template, members)

    mapped = map_checked(misp_event(objects=(misp_object_raw,)), COMBINED)

    assert mapped.patterns == [combined]
    assert mapped.only["id"] == derived_id("indicator", f"source={OBJECT_UUID}|part=combined|generation=0")
    assert set(mapped.skip_reasons()) <= {NOT_IDS}


@pytest.mark.parametrize("template", ["yara", "sigma", "suricata"])
def test_object_rule_named_by_sibling(template):
    rules = {
        "yara": ("yara", "yara", "rule R1 { condition: true }", "yara-rule-name"),
        "sigma": ("sigma", "sigma", "title: T\ndetection:\n  condition: all", "sigma-rule-name"),
        "suricata": ("suricata", "snort", 'alert ip any any -> any any (msg:"M"; sid:3;)', "rule-name"),
    }
    relation, attribute_type, text, name_relation = rules[template]
    rule = member(relation, attribute_type, text)
    name = member(name_relation, "text", "Readable rule name", to_ids=False)

    for settings in (MappingSettings(), COMBINED):
        indicator = map_checked(misp_event(objects=(misp_object(template, rule, name),)), settings).only

        assert indicator["pattern"] == text
        assert indicator["pattern_type"] == template
        assert indicator["name"] == "Readable rule name"
        assert indicator["id"] == f"indicator--{rule['uuid']}"


def test_object_suricata_type_snort_is_suricata():
    rule = member("suricata", "snort", 'alert tcp any any -> any any (msg:"S"; sid:4;)')

    assert map_checked(misp_event(objects=(misp_object("suricata", rule),))).only["pattern_type"] == "suricata"


def test_object_richpe_not_a_file_hash():
    richpe = member("richpe", "md5", MD5)

    mapped = map_checked(misp_event(objects=(misp_object("pe", richpe),)))

    assert mapped.indicators == []
    assert mapped.skip_reasons() == [UNSUPPORTED_TYPE]
    assert "Rich header" in mapped.skips[0].detail


def test_object_text_without_rule_unsupported():
    signature = member("signature", "text", "Win32/Evil.A")

    mapped = map_checked(misp_event(objects=(misp_object("av-signature", signature),)))

    assert mapped.skip_reasons() == [UNSUPPORTED_TYPE]
    assert "relation signature of object av-signature" in mapped.skips[0].detail


# Context


def test_object_context_siblings_in_description():
    ip = member("ip", "ip-dst", "198.51.100.7")
    port = member("dst-port", "port", "443", to_ids=False)
    domain = member("domain", "domain", "evil.example", to_ids=False)
    raw = misp_object("ip-port", ip, port, domain, comment="Seen in the loader's configuration")

    indicator = map_checked(misp_event(objects=(raw,))).only

    assert indicator["description"].splitlines() == [
        "Direction: destination address.",
        "MISP object: ip-port (relation ip).",
        "Other attributes of the object: dst-port: 443; domain: evil.example.",
        "Object comment: Seen in the loader's configuration",
        "MISP event: Test event",
    ]
    assert 'misp:object-relation="ip"' in indicator["labels"]


def test_object_context_long_sibling_list_shortened():
    attributes = [member("filename", "filename", f"name{i}.exe", to_ids=False) for i in range(12)]
    attributes.append(member("sha1", "sha1", SHA1))
    attributes.append(member("text", "text", "x" * 200, to_ids=False))

    description = map_checked(misp_event(objects=(misp_object("file", *attributes),))).only["description"]

    assert "name7.exe" in description
    assert "name8.exe" not in description
    assert "and 5 more" in description


def test_object_deleted_skips_every_attribute():
    raw = misp_object("file", member("sha1", "sha1", SHA1), member("md5", "md5", MD5), deleted=True)

    mapped = map_checked(misp_event(objects=(raw,)))

    assert mapped.skip_reasons() == [DELETED, DELETED]


def test_object_bad_attribute_skipped_alone():
    raw = misp_object("file", member("sha1", "sha1", SHA1), member("md5", "md5", "not-a-hash"))

    for settings in (MappingSettings(), COMBINED):
        mapped = map_checked(misp_event(objects=(raw,)), settings)

        assert mapped.patterns == [f"[{hashes('SHA-1', SHA1)}]"]
        assert mapped.skip_reasons() == [INVALID_VALUE]


def test_object_combined_red_sibling_skips_all():
    raw = misp_object("file", member("sha1", "sha1", SHA1), member("md5", "md5", MD5, tags=("tlp:red",)))

    mapped = map_checked(misp_event(objects=(raw,)), COMBINED)

    assert mapped.indicators == []
    assert mapped.skip_reasons() == [ABOVE_MAX_TLP, ABOVE_MAX_TLP]


def test_object_combined_record_fields():
    first = member("sha1", "sha1", SHA1, timestamp="1700000000")
    second = member("filename", "filename", "a.exe", timestamp="1700000500")
    raw = misp_object("file", first, second, uuid=OBJECT_UUID)

    indicator = map_checked(misp_event(objects=(raw,)), COMBINED).only

    assert indicator["created"] == "2023-11-14T22:13:20.000Z"
    assert indicator["description"].splitlines()[:2] == [
        "MISP object: file.",
        f"Attributes of the object: sha1: {SHA1}; filename: a.exe.",
    ]
    assert 'misp:type="sha1"' in indicator["labels"]
    assert 'misp:type="filename"' in indicator["labels"]


def test_object_combined_id_without_uuid():
    first = member("sha1", "sha1", SHA1)
    second = member("filename", "filename", "a.exe")
    raw = misp_object("file", first, second)
    del raw["uuid"]

    indicator = map_checked(misp_event(objects=(raw,)), COMBINED).only

    sources = ",".join(sorted([first["uuid"], second["uuid"]]))
    source = f"event={EVENT_UUID}|object=file|attributes={sources}"
    assert indicator["id"] == derived_id("indicator", f"source={source}|part=combined|generation=0")


def test_object_combined_multiple_names_are_alternatives():
    raw = misp_object("file", member("filename", "filename", "a.exe"), member("filename", "filename", "b.exe"),
                      member("sha1", "sha1", SHA1))

    pattern = map_checked(misp_event(objects=(raw,)), COMBINED).only["pattern"]

    assert pattern == f"[(file:name = 'a.exe' OR file:name = 'b.exe') AND {hashes('SHA-1', SHA1)}]"
