"""The exact pattern, pattern type, name and lifetime kind of every supported MISP attribute type.

`map_checked` is the checker the newer mapping tests share: it parses every object with
`stix2.parse(obj, allow_custom=False)`, validates every STIX pattern with stix2-patterns, and,
in the simple pattern style, checks that no pattern contains `AND`. Unlike `conftest.map_raw`
it accepts detection rules (whose pattern is not a STIX pattern) and the combined style.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import stix2
from stix2patterns.validator import run_validator

from misp2sentinel.config import MappingSettings
from misp2sentinel.mapping import map_event
from misp2sentinel.mapping.types import BUILDERS
from misp2sentinel.mapping.unsupported import UNSUPPORTED
from misp2sentinel.report import INVALID_VALUE, UNSUPPORTED_TYPE, Skip
from misp2sentinel.sources.normalize import normalize_event
from tests.conftest import NOW, misp_attribute, misp_event, stix_time

# Digests of b"abc" (FIPS 180 and FIPS 202 test vectors).
MD5 = hashlib.md5(b"abc").hexdigest()
SHA1 = hashlib.sha1(b"abc").hexdigest()
SHA224 = hashlib.sha224(b"abc").hexdigest()
SHA256 = hashlib.sha256(b"abc").hexdigest()
SHA384 = hashlib.sha384(b"abc").hexdigest()
SHA512 = hashlib.sha512(b"abc").hexdigest()
SHA512_224 = hashlib.new("sha512_224", b"abc").hexdigest()
SHA512_256 = hashlib.new("sha512_256", b"abc").hexdigest()
SHA3_224 = hashlib.sha3_224(b"abc").hexdigest()
SHA3_256 = hashlib.sha3_256(b"abc").hexdigest()
SHA3_384 = hashlib.sha3_384(b"abc").hexdigest()
SHA3_512 = hashlib.sha3_512(b"abc").hexdigest()
SSDEEP = "96:QRWkwoBevsL0JsIQ3pq8dxbuTet7eU/uEzAfue9atn0JbIi:QRWktBe80JsIIq8dxKyPew0JbIi"
TLSH = "T1C325AF62E2F15CF7C32316389D1B57A46827BE703D3879866BF52C385F396813829297"
JARM = "07d14d16d21d21d07c42d41d00041d24a458a375eef0c576d23a7bab9a9fb1"
VHASH = "115056655d15151138z66hz1021z55z66z3"
YARA = 'rule Evil_Loader : tag {\n  strings:\n    $a = "it\'s \\\\evil"\n  condition:\n    $a\n}'
SIGMA = "title: Suspicious Run Key\nlogsource:\n  product: windows\ndetection:\n  selection:\n    TargetObject|contains: '\\Run'\n  condition: selection\n"
SNORT = 'alert tcp $HOME_NET any -> $EXTERNAL_NET 443 (msg:"Evil C2 beacon"; sid:1000001; rev:1;)'
SURICATA = 'alert http any any -> any any (msg:"Evil UA"; http.user_agent; content:"EvilBot"; sid:2;)'


@dataclass
class Mapped:
    """The output of mapping one event, by STIX type."""

    indicators: list[dict] = field(default_factory=list)
    identities: list[dict] = field(default_factory=list)
    attack_patterns: list[dict] = field(default_factory=list)
    relationships: list[dict] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)

    @property
    def only(self) -> dict:
        assert len(self.indicators) == 1, (self.indicators, self.skips)
        return self.indicators[0]

    @property
    def patterns(self) -> list[str]:
        return [indicator["pattern"] for indicator in self.indicators]

    def skip_reasons(self) -> list[str]:
        return [skip.reason for skip in self.skips]


def check_object(stix: dict, settings: MappingSettings) -> None:
    """Assert that a mapped object parses strictly and that a STIX pattern is valid."""
    stix2.parse(stix, allow_custom=False)
    if stix["type"] == "indicator" and stix["pattern_type"] == "stix":
        assert run_validator(stix["pattern"]) == [], stix["pattern"]
        if settings.pattern_style == "simple":
            assert " AND " not in stix["pattern"], stix["pattern"]


def map_checked(event: dict, settings: MappingSettings | None = None, *, normalised: bool = False) -> Mapped:
    """Normalise (unless `normalised`) and map one event, checking every object."""
    settings = settings or MappingSettings()
    result = Mapped()
    lists = {"indicator": result.indicators, "identity": result.identities,
             "attack-pattern": result.attack_patterns, "relationship": result.relationships}
    for item in map_event(event if normalised else normalize_event(event), settings, NOW):
        if isinstance(item, Skip):
            result.skips.append(item)
            continue
        check_object(item.stix, settings)
        lists[item.stix["type"]].append(item.stix)
    return result


def map_value(attribute_type: str, value: str, settings: MappingSettings | None = None, **fields) -> Mapped:
    return map_checked(misp_event(misp_attribute(attribute_type, value, **fields)), settings)


def file_hash(key: str, digest: str) -> str:
    return f"[file:hashes.'{key}' = '{digest}']"


# (MISP type, value, expected patterns in the simple style, lifetime kind)
TYPE_CASES = [
    ("ip-src", "198.51.100.7", ["[ipv4-addr:value = '198.51.100.7']"], "ip"),
    ("ip-dst", "2001:DB8:0:0:0:0:0:7", ["[ipv6-addr:value = '2001:db8::7']"], "ip"),
    ("ip-dst", "203.0.113.0/24", ["[ipv4-addr:value = '203.0.113.0/24']"], "ip"),
    ("ip-src", "2001:db8:1::/48", ["[ipv6-addr:value = '2001:db8:1::/48']"], "ip"),
    ("ip-src|port", "198.51.100.7|8443", ["[ipv4-addr:value = '198.51.100.7']"], "ip"),
    ("ip-dst|port", "2001:db8::9|53", ["[ipv6-addr:value = '2001:db8::9']"], "ip"),
    ("domain", "Example.COM.", ["[domain-name:value = 'example.com']"], "domain"),
    ("hostname", "www.xn--bcher-kva.example", ["[domain-name:value = 'www.xn--bcher-kva.example']"], "domain"),
    ("onion-address", "abcdefghij234567.onion", ["[domain-name:value = 'abcdefghij234567.onion']"], "domain"),
    ("hostname|port", "mail.example.com|25", ["[domain-name:value = 'mail.example.com']"], "domain"),
    ("domain|ip", "example.com|2001:db8::5", ["[domain-name:value = 'example.com']", "[ipv6-addr:value = '2001:db8::5']"], "domain"),
    ("url", "https://example.com/it's\\here?q=ü", ["[url:value = 'https://example.com/it\\'s\\\\here?q=ü']"], "url"),
    ("link", "https://example.org/report", ["[url:value = 'https://example.org/report']"], "url"),
    ("uri", "/gate.php?id='1'", ["[network-traffic:extensions.'http-request-ext'.request_value = '/gate.php?id=\\'1\\'']"], "url"),
    ("uri", "https://example.com/a", ["[url:value = 'https://example.com/a']"], "url"),
    ("email", "o'brien@example.com", ["[email-addr:value = 'o\\'brien@example.com']"], "email"),
    ("email-src", "alice@example.com", ["[email-addr:value = 'alice@example.com']"], "email"),
    ("email-dst", "bob@example.com", ["[email-addr:value = 'bob@example.com']"], "email"),
    ("email-reply-to", "reply@example.com", ["[email-addr:value = 'reply@example.com']"], "email"),
    ("email-src-display-name", "Zoë \"Z\" O'Neil", ["[email-addr:display_name = 'Zoë \"Z\" O\\'Neil']"], "email"),
    ("email-dst-display-name", "Bob", ["[email-addr:display_name = 'Bob']"], "email"),
    ("email-subject", "Rechnung für Sie \\ 請求書", ["[email-message:subject = 'Rechnung für Sie \\\\ 請求書']"], "email_message"),
    ("email-message-id", "<1234@example.com>", ["[email-message:message_id = '<1234@example.com>']"], "email_message"),
    ("email-body", "Line 1\nLine 'two'", ["[email-message:body = 'Line 1\nLine \\'two\\'']"], "email_message"),
    ("email-x-mailer", "Evil Mailer 1.0", ["[email-message:additional_header_fields.'X-Mailer' = 'Evil Mailer 1.0']"], "email_message"),
    ("email-attachment", "invoice.zip", ["[email-message:body_multipart[*].body_raw_ref.name = 'invoice.zip']"], "email_message"),
    ("email-header", "X-Originating-IP: 198.51.100.3", ["[email-message:additional_header_fields.'X-Originating-IP' = '198.51.100.3']"], "email_message"),
    ("email-header", "Received: from mail.example.com by mx.example.org", ["[email-message:received_lines[*] = 'from mail.example.com by mx.example.org']"], "email_message"),
    ("filename", "C:\\Temp\\o'neil.exe", ["[file:name = 'C:\\\\Temp\\\\o\\'neil.exe']"], "file_name"),
    ("md5", MD5.upper(), [file_hash("MD5", MD5)], "file_hash"),
    ("sha1", SHA1, [file_hash("SHA-1", SHA1)], "file_hash"),
    ("sha224", SHA224, [file_hash("sha224", SHA224)], "file_hash"),
    ("sha256", SHA256, [file_hash("SHA-256", SHA256)], "file_hash"),
    ("sha384", SHA384, [file_hash("sha384", SHA384)], "file_hash"),
    ("sha512", SHA512, [file_hash("SHA-512", SHA512)], "file_hash"),
    ("sha512/224", SHA512_224, [file_hash("sha512-224", SHA512_224)], "file_hash"),
    ("sha512/256", SHA512_256, [file_hash("sha512-256", SHA512_256)], "file_hash"),
    ("sha3-224", SHA3_224, [file_hash("sha3-224", SHA3_224)], "file_hash"),
    ("sha3-256", SHA3_256, [file_hash("SHA3-256", SHA3_256)], "file_hash"),
    ("sha3-384", SHA3_384, [file_hash("sha3-384", SHA3_384)], "file_hash"),
    ("sha3-512", SHA3_512, [file_hash("SHA3-512", SHA3_512)], "file_hash"),
    ("ssdeep", SSDEEP + ',"sample.exe"', [file_hash("SSDEEP", SSDEEP)], "file_hash"),
    ("tlsh", TLSH.lower(), [file_hash("TLSH", TLSH)], "file_hash"),
    ("imphash", MD5, [file_hash("imphash", MD5)], "file_hash"),
    ("authentihash", SHA256, [file_hash("authentihash", SHA256)], "file_hash"),
    ("pehash", SHA1, [file_hash("pehash", SHA1)], "file_hash"),
    ("cdhash", SHA1, [file_hash("cdhash", SHA1)], "file_hash"),
    ("vhash", VHASH, [file_hash("vhash", VHASH)], "file_hash"),
    ("impfuzzy", "3:rGsLdAIEK:tf", [file_hash("impfuzzy", "3:rGsLdAIEK:tf")], "file_hash"),
    ("telfhash", TLSH[2:], [file_hash("telfhash", TLSH[2:])], "file_hash"),
    ("filename|md5", f"invoice.exe|{MD5}", [file_hash("MD5", MD5)], "file_hash"),
    ("filename|sha1", f"a|b.exe|{SHA1}", [file_hash("SHA-1", SHA1)], "file_hash"),
    ("filename|sha224", f"invoice.exe|{SHA224}", [file_hash("sha224", SHA224)], "file_hash"),
    ("filename|sha256", f"invoice.exe|{SHA256}", [file_hash("SHA-256", SHA256)], "file_hash"),
    ("filename|sha384", f"invoice.exe|{SHA384}", [file_hash("sha384", SHA384)], "file_hash"),
    ("filename|sha512", f"invoice.exe|{SHA512}", [file_hash("SHA-512", SHA512)], "file_hash"),
    ("filename|sha512/224", f"invoice.exe|{SHA512_224}", [file_hash("sha512-224", SHA512_224)], "file_hash"),
    ("filename|sha512/256", f"invoice.exe|{SHA512_256}", [file_hash("sha512-256", SHA512_256)], "file_hash"),
    ("filename|sha3-224", f"invoice.exe|{SHA3_224}", [file_hash("sha3-224", SHA3_224)], "file_hash"),
    ("filename|sha3-256", f"invoice.exe|{SHA3_256}", [file_hash("SHA3-256", SHA3_256)], "file_hash"),
    ("filename|sha3-384", f"invoice.exe|{SHA3_384}", [file_hash("sha3-384", SHA3_384)], "file_hash"),
    ("filename|sha3-512", f"invoice.exe|{SHA3_512}", [file_hash("SHA3-512", SHA3_512)], "file_hash"),
    ("filename|ssdeep", f"invoice.exe|{SSDEEP}", [file_hash("SSDEEP", SSDEEP)], "file_hash"),
    ("filename|tlsh", f"invoice.exe|{TLSH}", [file_hash("TLSH", TLSH)], "file_hash"),
    ("filename|imphash", f"invoice.exe|{MD5}", [file_hash("imphash", MD5)], "file_hash"),
    ("filename|impfuzzy", "invoice.exe|3:rGsLdAIEK:tf", [file_hash("impfuzzy", "3:rGsLdAIEK:tf")], "file_hash"),
    ("filename|authentihash", f"invoice.exe|{SHA256}", [file_hash("authentihash", SHA256)], "file_hash"),
    ("filename|pehash", f"invoice.exe|{SHA1}", [file_hash("pehash", SHA1)], "file_hash"),
    ("filename|vhash", f"invoice.exe|{VHASH}", [file_hash("vhash", VHASH)], "file_hash"),
    ("malware-sample", f"sample.exe|{MD5}", [file_hash("MD5", MD5)], "file_hash"),
    ("x509-fingerprint-md5", MD5, [f"[x509-certificate:hashes.'MD5' = '{MD5}']"], "x509"),
    ("x509-fingerprint-sha1", ":".join(SHA1[i:i + 2] for i in range(0, 40, 2)).upper(), [f"[x509-certificate:hashes.'SHA-1' = '{SHA1}']"], "x509"),
    ("x509-fingerprint-sha256", SHA256, [f"[x509-certificate:hashes.'SHA-256' = '{SHA256}']"], "x509"),
    ("ja3-fingerprint-md5", MD5, [f"[x-misp-ja3-fingerprint-md5:value = '{MD5}']"], "network_fingerprint"),
    ("hassh-md5", MD5, [f"[x-misp-hassh-md5:value = '{MD5}']"], "network_fingerprint"),
    ("hasshserver-md5", MD5, [f"[x-misp-hasshserver-md5:value = '{MD5}']"], "network_fingerprint"),
    ("jarm-fingerprint", JARM, [f"[x-misp-jarm-fingerprint:value = '{JARM}']"], "network_fingerprint"),
    ("AS", "AS64496", ["[autonomous-system:number = 64496]"], "asn"),
    ("mac-address", "00-1A-2B-3C-4D-5E", ["[mac-addr:value = '00:1a:2b:3c:4d:5e']"], "other"),
    ("port", "8443", ["[network-traffic:dst_port = 8443]"], "other"),
    ("size-in-bytes", "1234", ["[file:size = 1234]"], "other"),
    ("http-method", "post", ["[network-traffic:extensions.'http-request-ext'.request_method = 'POST']"], "other"),
    ("user-agent", "Mozilla/5.0 (it's \\ evil)", ["[network-traffic:extensions.'http-request-ext'.request_header.'User-Agent' = 'Mozilla/5.0 (it\\'s \\\\ evil)']"], "user_agent"),
    ("regkey", "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run", ["[windows-registry-key:key = 'HKEY_LOCAL_MACHINE\\\\Software\\\\Microsoft\\\\Windows\\\\CurrentVersion\\\\Run']"], "registry"),
    ("regkey|value", "HKCU\\Software\\Evil|%APPDATA%\\evil.exe", ["[windows-registry-key:key = 'HKEY_CURRENT_USER\\\\Software\\\\Evil']"], "registry"),
    ("mutex", "Global\\Évil'Mutex", ["[mutex:name = 'Global\\\\Évil\\'Mutex']"], "mutex"),
    ("github-username", "octocat", ["[user-account:account_login = 'octocat']"], "other"),
    ("yara", YARA, [YARA], "rule"),
    ("sigma", SIGMA, [SIGMA], "rule"),
    ("snort", SNORT, [SNORT], "rule"),
    ("suricata", SURICATA, [SURICATA], "rule"),
]
LONG_LIFETIMES = MappingSettings(lifetime_days={
    "ip": 11, "domain": 12, "url": 13, "email": 14, "email_message": 15, "file_hash": 16, "file_name": 17,
    "x509": 18, "network_fingerprint": 19, "user_agent": 20, "registry": 21, "mutex": 22, "asn": 23,
    "rule": 24, "other": 25,
})
RULE_TYPES = ("yara", "sigma", "snort", "suricata")


def describe_types() -> list[str]:
    spec = importlib.util.find_spec("pymisp")
    path = Path(spec.submodule_search_locations[0]) / "data" / "describeTypes.json"
    return json.loads(path.read_text(encoding="utf-8"))["result"]["types"]


@pytest.mark.parametrize(("attribute_type", "value", "patterns", "kind"), TYPE_CASES)
def test_type_exact_pattern(attribute_type, value, patterns, kind):
    mapped = map_value(attribute_type, value, LONG_LIFETIMES)

    assert mapped.patterns == patterns
    assert mapped.skips == []
    expected_type = attribute_type if attribute_type in RULE_TYPES else "stix"
    assert [indicator["pattern_type"] for indicator in mapped.indicators] == [expected_type] * len(patterns)
    days = getattr(LONG_LIFETIMES.lifetime_days, kind)
    assert stix_time(mapped.indicators[0]["valid_until"]) == NOW + timedelta(days=days)


def test_type_cases_cover_every_builder():
    # `attachment` needs its data, so test_attachment_hash_of_data covers it.
    assert set(BUILDERS) <= {case[0] for case in TYPE_CASES} | {"attachment"}


def test_type_every_misp_type_has_an_outcome():
    # Every describeTypes type is mapped or skipped with a documented reason.
    missing = [name for name in describe_types() if name not in BUILDERS and name not in UNSUPPORTED]

    assert missing == []
    assert set(BUILDERS).isdisjoint(UNSUPPORTED)


@pytest.mark.parametrize("attribute_type", ["text", "btc", "vulnerability", "campaign-name", "target-user", "pattern-in-file"])
def test_type_unsupported_reason(attribute_type):
    mapped = map_value(attribute_type, "value")

    assert mapped.skip_reasons() == [UNSUPPORTED_TYPE]
    assert UNSUPPORTED[attribute_type] in mapped.skips[0].detail


def test_type_unknown_to_misp_unsupported():
    mapped = map_value("made-up-type", "value")

    assert mapped.skip_reasons() == [UNSUPPORTED_TYPE]
    assert "made-up-type" in mapped.skips[0].detail


@pytest.mark.parametrize(("attribute_type", "value", "name"), [
    ("yara", YARA, "Evil_Loader"),
    ("sigma", SIGMA, "Suspicious Run Key"),
    ("snort", SNORT, "Evil C2 beacon"),
    ("suricata", SURICATA, "Evil UA"),
])
def test_rule_kept_as_is(attribute_type, value, name):
    indicator = map_value(attribute_type, value).only

    assert indicator["pattern"] == value
    assert not indicator["pattern"].startswith("[")
    assert indicator["pattern_type"] == attribute_type
    assert "pattern_version" not in indicator
    assert indicator["name"] == name


@pytest.mark.parametrize(("attribute_type", "value"), [
    ("yara", "condition: true"),
    ("sigma", "title: no detection section"),
    ("snort", "tcp any any -> any 80"),
    ("suricata", "   "),
    ("yara", "rule Evil { condition: true }\x00"),
])
def test_rule_invalid_skipped(attribute_type, value):
    assert map_value(attribute_type, value).skip_reasons() == [INVALID_VALUE]


def test_attachment_hash_of_data():
    content = b"%PDF-1.4\n evil"
    event = normalize_event(misp_event(misp_attribute("attachment", "report.pdf")))
    event["attributes"][0]["data"] = base64.b64encode(content).decode()

    indicator = map_checked(event, normalised=True).only

    assert indicator["pattern"] == file_hash("SHA-256", hashlib.sha256(content).hexdigest())
    assert "report.pdf" in indicator["name"]
    assert "report.pdf" in indicator["description"]


def test_attachment_without_data_skipped():
    mapped = map_value("attachment", "report.pdf")

    assert mapped.skip_reasons() == [INVALID_VALUE]
    assert "no data" in mapped.skips[0].detail


# Hash keys


def test_hash_sha512_224_not_sha224():
    pattern = map_value("sha512/224", SHA512_224).only["pattern"]

    assert "SHA-224" not in pattern
    assert "sha512-224" in pattern


@pytest.mark.parametrize(("attribute_type", "value"), [("md5", SHA1), ("sha224", SHA256), ("sha512/256", SHA224),
                                                       ("sha3-384", SHA512), ("tlsh", "T1" + "0" * 10),
                                                       ("ssdeep", "not an ssdeep"), ("vhash", "short"),
                                                       ("jarm-fingerprint", MD5), ("x509-fingerprint-sha256", SHA1)])
def test_hash_wrong_length_skipped(attribute_type, value):
    mapped = map_value(attribute_type, value)

    assert mapped.skip_reasons() == [INVALID_VALUE]
    assert value in mapped.skips[0].detail


# Composite halves in names, descriptions and labels


def test_composite_filename_hash_name():
    indicator = map_value("filename|sha256", f"Zoë's \\ invoice.exe|{SHA256}").only

    assert indicator["name"] == f"Zoë's \\ invoice.exe ({SHA256})"
    assert "File name: Zoë's \\ invoice.exe." in indicator["description"]


def test_composite_regkey_value_in_description():
    indicator = map_value("regkey|value", "HKCU\\Software\\Evil|C:\\evil.exe|with pipe").only

    assert "Registry value data: C:\\evil.exe|with pipe" in indicator["description"]


def test_composite_host_port_labels():
    indicator = map_value("ip-src|port", "198.51.100.7|8443").only

    assert "port:8443" in indicator["labels"]
    assert "direction:src" in indicator["labels"]


def test_composite_email_role_labels():
    labels = map_value("email-reply-to", "reply@example.com").only["labels"]

    assert "email:reply-to" in labels


def test_composite_github_account_label():
    indicator = map_value("github-username", "octocat").only

    assert "account:github" in indicator["labels"]
    assert "GitHub" in indicator["description"]


def test_regkey_without_hive_kept():
    indicator = map_value("regkey", "Software\\Classes\\CLSID\\{9B9A8ADB-8864-4BC4-8AD5-B17DFDBB9F58}").only

    assert indicator["pattern"] == "[windows-registry-key:key = 'Software\\\\Classes\\\\CLSID\\\\{9B9A8ADB-8864-4BC4-8AD5-B17DFDBB9F58}']"
    assert "does not name its hive" in indicator["description"]


# Legacy `_` separator and surrounding spaces


@pytest.mark.parametrize("value", [
    "https://user:secret@evil.example:8443/a?b=c#d",
    "http://198.51.100.7:8080/gate.php",
    "https://[2001:db8::1]:8443/x",
    "https://bücher.example/pfad",
    "ftp://files.example.org/evil.zip",
])
def test_url_host_forms_accepted(value):
    assert map_value("url", value).patterns == [f"[url:value = '{value}']"]


@pytest.mark.parametrize(("attribute_type", "value", "patterns"), [
    ("ip-dst|port", "198.51.100.7_443", ["[ipv4-addr:value = '198.51.100.7']"]),
    ("hostname|port", " mail.example.com _ 25 ", ["[domain-name:value = 'mail.example.com']"]),
    ("domain|ip", "my_host.example.com_198.51.100.7", ["[domain-name:value = 'my_host.example.com']", "[ipv4-addr:value = '198.51.100.7']"]),
    ("filename|md5", f"my_file.exe_{MD5}", [file_hash("MD5", MD5)]),
    ("domain|ip", " example.com | 198.51.100.7 ", ["[domain-name:value = 'example.com']", "[ipv4-addr:value = '198.51.100.7']"]),
    ("md5", f"  {MD5}\t", [file_hash("MD5", MD5)]),
])
def test_separator_underscore_and_spaces(attribute_type, value, patterns):
    assert map_value(attribute_type, value).patterns == patterns


def test_separator_underscore_file_name_kept_whole():
    indicator = map_value("filename|md5", f"my_file.exe_{MD5}").only

    assert "my_file.exe" in indicator["name"]


def test_separator_underscore_not_for_regkey_value():
    # A registry key with an underscore and no `|` is a key without value data, never a split pair.
    mapped = map_value("regkey|value", "HKLM\\Software\\My_App")

    assert mapped.skip_reasons() == [INVALID_VALUE]


def test_separator_underscore_needs_valid_second_half():
    mapped = map_value("ip-dst|port", "198.51.100.7_http")

    assert mapped.skip_reasons() == [INVALID_VALUE]


# Shape checks


@pytest.mark.parametrize(("attribute_type", "value"), [
    ("domain", "exa mple.com"),
    ("domain", "-bad.example.com"),
    ("domain", "example..com"),
    ("domain", "198.51.100.7"),
    ("domain", "https://example.com"),
    ("hostname", "a" * 64 + ".example.com"),
    ("onion-address", "example.com"),
    ("ip-dst", "2001:db8::1%eth0"),
    ("ip-dst", "198.51.100.07"),
    ("url", "example.com/path"),
    ("url", "hxxp://evil.example/a"),
    ("url", "https://evil[.]example/a"),
    ("url", "https://evil.example:port/a"),
    ("url", "https://[2001:db8::zz]/a"),
    ("url", "https:///path"),
    ("url", "https://example.com/a b"),
    ("link", "not a link"),
    ("uri", "gate.php"),
    ("email", "no-at-sign.example.com"),
    ("email", "alice@bad domain.example"),
    ("email-src", "alice@@example.com"),
    ("AS", "ASN-X"),
    ("mac-address", "00:1a:2b:3c:4d"),
    ("port", "65536"),
    ("size-in-bytes", "-1"),
    ("http-method", "GET /"),
    ("filename", "bad\x07name.exe"),
    ("regkey", "\\\\"),
])
def test_shape_invalid_skipped(attribute_type, value):
    mapped = map_value(attribute_type, value)

    assert mapped.indicators == []
    assert mapped.skip_reasons() == [INVALID_VALUE]


def test_shape_domain_ip_bad_domain_keeps_ip():
    attribute = misp_attribute("domain|ip", "bad domain|198.51.100.7")

    mapped = map_checked(misp_event(attribute))

    assert mapped.patterns == ["[ipv4-addr:value = '198.51.100.7']"]
    assert mapped.skip_reasons() == [INVALID_VALUE]
    assert mapped.skips[0].detail.startswith("domain:")


# The combined pattern style for composites


COMBINED = MappingSettings(pattern_style="combined")


@pytest.mark.parametrize(("attribute_type", "value", "pattern"), [
    ("domain|ip", "example.com|198.51.100.7", "[domain-name:value = 'example.com' AND domain-name:resolves_to_refs[*].value = '198.51.100.7']"),
    ("ip-dst|port", "198.51.100.7|443", "[network-traffic:dst_ref.value = '198.51.100.7' AND network-traffic:dst_port = 443]"),
    ("ip-src|port", "2001:db8::1|8080", "[network-traffic:src_ref.value = '2001:db8::1' AND network-traffic:src_port = 8080]"),
    ("hostname|port", "mail.example.com|25", "[network-traffic:dst_ref.value = 'mail.example.com' AND network-traffic:dst_port = 25]"),
    ("filename|sha256", f"o'neil.exe|{SHA256}", f"[file:hashes.'SHA-256' = '{SHA256}' AND file:name = 'o\\'neil.exe']"),
    ("malware-sample", f"sample.exe|{MD5}", f"[file:hashes.'MD5' = '{MD5}' AND file:name = 'sample.exe']"),
    ("regkey|value", "HKLM\\Run|C:\\evil.exe", "[windows-registry-key:key = 'HKEY_LOCAL_MACHINE\\\\Run' AND windows-registry-key:values[*].data = 'C:\\\\evil.exe']"),
    ("github-username", "octocat", "[user-account:account_login = 'octocat' AND user-account:account_type = 'github']"),
    ("ip-dst", "198.51.100.7", "[ipv4-addr:value = '198.51.100.7']"),
])
def test_combined_composite_pattern(attribute_type, value, pattern):
    attribute = misp_attribute(attribute_type, value)

    indicator = map_checked(misp_event(attribute), COMBINED).only

    assert indicator["pattern"] == pattern
    assert indicator["id"] == f"indicator--{attribute['uuid']}"


def test_combined_bad_half_keeps_other():
    mapped = map_checked(misp_event(misp_attribute("domain|ip", "example.com|198.51.100.300")), COMBINED)

    assert mapped.patterns == ["[domain-name:value = 'example.com']"]
    assert mapped.skip_reasons() == [INVALID_VALUE]


def test_combined_takes_shortest_lifetime():
    settings = MappingSettings(pattern_style="combined", lifetime_days={"domain": 40, "ip": 10})

    indicator = map_checked(misp_event(misp_attribute("domain|ip", "example.com|198.51.100.7")), settings).only

    assert stix_time(indicator["valid_until"]) == NOW + timedelta(days=10)


@pytest.mark.parametrize(("attribute_type", "value"), [("port", "\u00b2"), ("ip-dst|port", "198.51.100.1|\u2460"),
                                                       ("size-in-bytes", "\u00b3"), ("port", "\u0668\u0660")])
def test_non_ascii_digits_invalid(attribute_type, value):
    """Characters that str.isdigit() accepts but are no ASCII digits ("²", "①", Arabic-Indic) are invalid values."""
    mapped = map_value(attribute_type, value)

    assert mapped.skip_reasons() == [INVALID_VALUE]
