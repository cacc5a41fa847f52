"""MISP objects: patterns that depend on the template and relation, and the object's context.

Every attribute of an object is mapped by its type, as at event level, except for the relations
in `RELATION_RULES`, where the template carries more meaning than the type. A hash in a
`pe-section` object is the hash of a section, not of a file, and a `text` attribute called
`issuer` in an `x509` object is the certificate's issuer. In the combined pattern style, `joined_comparison` puts the
values of network and email objects on one STIX object (`network-traffic`, `email-message`).
"""

from __future__ import annotations

from collections.abc import Callable

from misp2sentinel.mapping import ids, values
from misp2sentinel.mapping.context import clusters_from
from misp2sentinel.mapping.hashes import HASH_ALGORITHMS
from misp2sentinel.mapping.markings import summarize
from misp2sentinel.mapping.parts import Comparison, Part
from misp2sentinel.mapping.types import HTTP_REQUEST, UnsupportedType, rule_name, short_name
from misp2sentinel.mapping.values import literal

SECTION = "extensions.'windows-pebinary-ext'.sections[*]"
NETWORK_TEMPLATES = frozenset({"ip-port", "network-connection", "network-socket"})
RULE_NAME_RELATIONS = ("yara-rule-name", "sigma-rule-name", "rule-name")
EMAIL_ADDRESS_PATHS = {
    "from": "from_ref",
    "return-path": "sender_ref",
    "to": "to_refs[*]",
    "cc": "cc_refs[*]",
    "bcc": "bcc_refs[*]",
    "from-display-name": "from_ref",
    "to-display-name": "to_refs[*]",
    "cc-display-name": "cc_refs[*]",
    "bcc-display-name": "bcc_refs[*]",
}
SIBLING_LIMIT = 8
SIBLING_VALUE_LENGTH = 80


def _property(object_type: str, path: str, kind: str, value_name: str) -> Callable[[str, str], list]:
    def build(attribute_type: str, value: str) -> list:
        text = values.check_text(value, value_name)
        return [Part("value", kind, short_name(text), (object_type, path, literal(text)))]

    return build


def _section_hash(attribute_type: str, value: str) -> list:
    digest = values.hash_value(attribute_type, value)
    comparison = ("file", f"{SECTION}.{HASH_ALGORITHMS[attribute_type].path}", f"'{digest}'")
    part = Part("value", "file_hash", digest, comparison, ["Hash of one PE section, not of the whole file."])
    part.digest = (attribute_type, digest)
    return [part]


def _port(direction: str) -> Callable[[str, str], list]:
    def build(attribute_type: str, value: str) -> list:
        port = values.port_value(value)
        comparison = ("network-traffic", f"{direction}_port", str(port))
        return [Part("value", "other", f"port {port}", comparison, labels=[f"port:{port}"])]

    return build


def _suricata(attribute_type: str, value: str) -> list:
    # The suricata template stores its rule as type `snort` in older MISP versions.
    text = values.check_multiline(value, "suricata rule")
    return [Part("value", "rule", rule_name("suricata", text), pattern_type="suricata", pattern_text=text)]


def _not_mapped(reason: str) -> Callable[[str, str], list]:
    def build(attribute_type: str, value: str) -> list:
        raise UnsupportedType(reason)

    return build


SECTION_HASH_TYPES = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha512/224", "sha512/256", "ssdeep")

# (template, relation) -> builder, for relations whose meaning the attribute type does not carry.
RELATION_RULES: dict[tuple[str, str], Callable[[str, str], list]] = {
    **{("pe-section", name): _section_hash for name in SECTION_HASH_TYPES},
    ("pe", "richpe"): _not_mapped("the Rich header hash of a PE file is not the file's MD5, and STIX has no property for it"),
    ("x509", "issuer"): _property("x509-certificate", "issuer", "x509", "certificate issuer"),
    ("x509", "subject"): _property("x509-certificate", "subject", "x509", "certificate subject"),
    ("x509", "serial-number"): _property("x509-certificate", "serial_number", "x509", "certificate serial number"),
    ("registry-key", "data"): _property("windows-registry-key", "values[*].data", "registry", "registry value data"),
    ("registry-key", "name"): _property("windows-registry-key", "values[*].name", "registry", "registry value name"),
    ("file", "path"): _property("file", "parent_directory_ref.path", "file_name", "file path"),
    ("mutex", "name"): _property("mutex", "name", "mutex", "mutex name"),
    ("user-account", "username"): _property("user-account", "account_login", "other", "user name"),
    ("user-account", "user-id"): _property("user-account", "user_id", "other", "user id"),
    ("process", "command-line"): _property("process", "command_line", "other", "command line"),
    ("http-request", "referer"): _property("network-traffic", f"{HTTP_REQUEST}.request_header.'Referer'", "url", "Referer"),
    ("http-request", "content-type"): _property(
        "network-traffic", f"{HTTP_REQUEST}.request_header.'Content-Type'", "other", "Content-Type"
    ),
    ("ip-port", "src-port"): _port("src"),
    ("network-connection", "src-port"): _port("src"),
    ("network-socket", "src-port"): _port("src"),
    ("suricata", "suricata"): _suricata,
}


def relation_builder(template: str, relation: str | None, attribute_type: str):
    """Return the builder for an object attribute, or None when its type decides."""
    rule = RELATION_RULES.get((template, relation or ""))
    if rule is _section_hash and attribute_type not in HASH_ALGORITHMS:
        return None
    return rule


def joined_comparison(template: str, relation: str | None, comparison: Comparison | None) -> Comparison | None:
    """Return where a comparison goes in the combined pattern of its object, or None to keep it."""
    if comparison is None:
        return None
    object_type, path, value = comparison
    relation = relation or ""
    if template in NETWORK_TEMPLATES and object_type in ("ipv4-addr", "ipv6-addr", "domain-name") and path == "value":
        direction = "src" if "src" in relation else "dst"
        return ("network-traffic", f"{direction}_ref.value", value)
    if template == "domain-ip" and object_type in ("ipv4-addr", "ipv6-addr"):
        return ("domain-name", "resolves_to_refs[*].value", value)
    if template == "email" and object_type == "email-addr":
        if relation in ("reply-to",):
            return ("email-message", "additional_header_fields.'Reply-To'", value)
        reference = EMAIL_ADDRESS_PATHS.get(relation)
        if reference is not None:
            return ("email-message", f"{reference}.{path}", value)
    return None


class ObjectContext:
    """The shared context of one MISP object's indicators, computed once per object."""

    def __init__(self, misp_object: dict, event: dict) -> None:
        self.object = misp_object
        self.name = misp_object["name"] or "object"
        self.comment = (misp_object.get("comment") or "").strip()
        self.source, self.valid_uuid = ids.object_source(misp_object, event)
        tags: list[str] = []
        galaxies: list[dict] = []
        self.rule_name = None
        self._siblings: list[tuple[int, str]] = []
        # One pass over the attributes collects their tags, galaxies, rule name and sibling notes.
        for attribute in misp_object["attributes"]:
            for tag in attribute["tags"]:
                if tag not in tags:
                    tags.append(tag)
            if attribute.get("galaxies"):
                galaxies.extend(attribute["galaxies"])
            value = attribute.get("value")
            if attribute["deleted"] or value is None:
                continue
            relation = attribute.get("object_relation") or attribute["type"]
            if relation in RULE_NAME_RELATIONS and self.rule_name is None:
                self.rule_name = short_name(value)
            text = " ".join(str(value).split())
            if len(text) > SIBLING_VALUE_LENGTH:
                text = text[: SIBLING_VALUE_LENGTH - 1] + "…"
            self._siblings.append((id(attribute), f"{relation}: {text}"))
        self.tags = tags
        self.summary = summarize(tags)
        self.clusters = clusters_from(tags, galaxies) if tags or galaxies else []
        self.has_galaxies = bool(galaxies)
        # Labels from tags and the cluster context of this object's attributes, per (own tags, TLP).
        self.levels: dict[tuple, tuple] = {}
        # The short path's templates (`plain`) of an object with galaxies, which no other object shares.
        self.templates: dict[tuple, object] = {}

    def labels(self, relation: str | None) -> list[str]:
        labels = [f'misp:object="{self.name}"']
        if relation:
            labels.append(f'misp:object-relation="{relation}"')
        return labels

    def notes(self, attribute: dict | None) -> list[str]:
        """Return the description lines about the object, naming the values of the other attributes."""
        if attribute is None:
            notes = [f"MISP object: {self.name}."]
        else:
            relation = attribute.get("object_relation") or attribute["type"]
            notes = [f"MISP object: {self.name} (relation {relation})."]
        others = [text for key, text in self._siblings if attribute is None or key != id(attribute)]
        if others:
            listed = "; ".join(others[:SIBLING_LIMIT])
            if len(others) > SIBLING_LIMIT:
                listed += f"; and {len(others) - SIBLING_LIMIT} more"
            heading = "Attributes" if attribute is None else "Other attributes"
            notes.append(f"{heading} of the object: {listed}.")
        if self.comment:
            notes.append(f"Object comment: {self.comment}")
        return notes

