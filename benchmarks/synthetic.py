"""Generate deterministic synthetic MISP events shaped like real ones, for the benchmarks.

The mix follows a set of 63 public MISP events (ESET, CIRCL and PyMISP test files): hashes,
domains, filenames and free text dominate, about a fifth of the attributes sit in objects (file,
domain-ip, url, pe, av-signature, email), roughly a third of the attributes carry `to_ids`, and
events carry TLP, PAP, `type:OSINT` and `misp-galaxy:` tags with matching `Galaxy` entries of
ATT&CK techniques and threat actors. Values are unique per attribute, so every IDS attribute of a
mapped type becomes its own indicator.

Every event is generated from `random.Random` seeded with the seed and the event's number, so an
event does not depend on how many events are generated before it.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

# The run time the benchmarks fix with MISP2SENTINEL_NOW; events lie in the year before it.
NOW_TEXT = "2026-02-01T00:00:00Z"
NOW_SECONDS = 1769904000
YEAR_SECONDS = 365 * 86400

ORGS = [
    ("CIRCL", "55f6ea5e-2c60-40e5-964f-47a8950d210f"),
    ("ESET", "55f6ea5e-51ac-4344-bc8c-4170950d210f"),
    ("Example CERT", "5f6e7d8c-1a2b-4c3d-9e8f-7a6b5c4d3e2f"),
]

# (technique name, ATT&CK id, tactic), a sample of techniques that occur in the public events.
TECHNIQUES = [
    ("Command and Scripting Interpreter", "T1059", "execution"),
    ("Scheduled Task/Job", "T1053", "persistence"),
    ("Obfuscated Files or Information", "T1027", "defense-evasion"),
    ("Deobfuscate/Decode Files or Information", "T1140", "defense-evasion"),
    ("Process Injection", "T1055", "privilege-escalation"),
    ("System Information Discovery", "T1082", "discovery"),
    ("Screen Capture", "T1113", "collection"),
    ("Application Layer Protocol", "T1071", "command-and-control"),
    ("Exfiltration Over C2 Channel", "T1041", "exfiltration"),
    ("Phishing", "T1566", "initial-access"),
    ("Exploit Public-Facing Application", "T1190", "initial-access"),
    ("Rundll32", "T1218.011", "defense-evasion"),
    ("Registry Run Keys / Startup Folder", "T1547.001", "persistence"),
    ("Input Capture", "T1056", "collection"),
    ("Data Encrypted for Impact", "T1486", "impact"),
]
THREAT_ACTORS = ["Sofacy", "Turla Group", "Lazarus Group", "APT29", "OceanLotus", "Gamaredon Group"]

CATEGORIES = {
    "hash": "Payload delivery",
    "network": "Network activity",
    "file": "Artifacts dropped",
    "text": "Other",
    "registry": "Persistence mechanism",
    "email": "Payload delivery",
    "external": "External analysis",
}


def _hex(serial: int, name: str) -> str:
    return hashlib.new(name, serial.to_bytes(8, "big")).hexdigest()


def _ip(serial: int) -> str:
    return f"{45 + serial % 150}.{(serial >> 16) & 255}.{(serial >> 8) & 255}.{1 + serial % 254}"


def _domain(serial: int) -> str:
    words = ("update", "cdn", "mail", "secure", "login", "static", "api", "files")
    tlds = ("com", "net", "org", "info", "ru", "xyz", "top")
    return f"{words[serial % 8]}-{serial:x}.{words[(serial >> 3) % 8]}host.{tlds[serial % 7]}"


# (type, category, share of attributes, share with to_ids, value from a serial), for attributes
# outside objects. Shares are rounded from the public events.
ATTRIBUTE_MIX: list[tuple[str, str, float, float, Callable[[int], str]]] = [
    ("sha1", "hash", 0.12, 0.75, lambda s: _hex(s, "sha1")),
    ("domain", "network", 0.14, 0.85, _domain),
    ("text", "text", 0.09, 0.0, lambda s: f"Observed in campaign wave {s % 97}, sample {s}"),
    ("filename", "file", 0.07, 0.2, lambda s: f"invoice_{s}.exe"),
    ("md5", "hash", 0.07, 0.8, lambda s: _hex(s, "md5")),
    ("sha256", "hash", 0.09, 0.9, lambda s: _hex(s, "sha256")),
    ("url", "network", 0.06, 0.85, lambda s: f"https://{_domain(s)}/wp-content/{s % 1000}/gate.php?id={s}"),
    ("ip-dst", "network", 0.07, 0.85, _ip),
    ("ip-src", "network", 0.01, 0.8, _ip),
    ("hostname", "network", 0.01, 0.8, lambda s: f"srv{s}.{_domain(s)}"),
    ("filename|sha1", "hash", 0.04, 0.9, lambda s: f"payload_{s}.dll|{_hex(s, 'sha1')}"),
    ("filename|sha256", "hash", 0.01, 0.9, lambda s: f"dropper_{s}.bin|{_hex(s, 'sha256')}"),
    ("domain|ip", "network", 0.04, 0.85, lambda s: f"{_domain(s)}|{_ip(s)}"),
    ("ip-dst|port", "network", 0.01, 0.85, lambda s: f"{_ip(s)}|{1024 + s % 60000}"),
    ("regkey|value", "registry", 0.03, 0.3, lambda s: f"HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\svc{s}|C:\\Users\\Public\\svc{s}.exe"),
    ("regkey", "registry", 0.01, 0.3, lambda s: f"HKLM\\Software\\Classes\\CLSID\\{{{uuid.UUID(int=s)}}}"),
    ("mutex", "file", 0.01, 0.7, lambda s: f"Global\\mtx_{s:08x}"),
    ("email-src", "email", 0.01, 0.85, lambda s: f"billing{s}@{_domain(s)}"),
    ("email-subject", "email", 0.01, 0.5, lambda s: f"Overdue invoice #{s}"),
    ("user-agent", "network", 0.005, 0.6, lambda s: f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Bot/{s}"),
    ("imphash", "hash", 0.01, 0.6, lambda s: _hex(s, "md5")),
    ("ssdeep", "hash", 0.005, 0.6, lambda s: f"96:{_hex(s, 'md5')[:20]}:{_hex(s, 'sha1')[:18]}"),
    ("vulnerability", "external", 0.005, 0.0, lambda s: f"CVE-2024-{1000 + s % 9000}"),
    ("link", "external", 0.02, 0.0, lambda s: f"https://blog.example.org/research/{s}"),
    ("comment", "text", 0.01, 0.0, lambda s: f"Analyst note {s}"),
    ("other", "text", 0.02, 0.0, lambda s: f"build-id {s}"),
    ("datetime", "text", 0.005, 0.0, lambda s: "2025-06-01T00:00:00Z"),
    ("AS", "network", 0.005, 0.1, lambda s: f"AS{10000 + s % 50000}"),
    ("btc", "text", 0.005, 0.5, lambda s: "1" + _hex(s, "sha1")[:33]),
]
_MIX_WEIGHTS = [entry[2] for entry in ATTRIBUTE_MIX]

# Share of attributes that sit in objects, as in the public events.
OBJECT_SHARE = 0.22


def _file_object(serial: int) -> list[tuple[str, str, str, bool]]:
    return [
        ("filename", "filename", f"loader_{serial}.exe", False),
        ("md5", "md5", _hex(serial, "md5"), True),
        ("sha1", "sha1", _hex(serial, "sha1"), True),
        ("sha256", "sha256", _hex(serial, "sha256"), True),
        ("size-in-bytes", "size-in-bytes", str(10_000 + serial % 900_000), False),
        ("state", "text", "Malicious", False),
    ]


def _domain_ip_object(serial: int) -> list[tuple[str, str, str, bool]]:
    return [("domain", "domain", _domain(serial), True), ("ip", "ip-dst", _ip(serial), True)]


def _url_object(serial: int) -> list[tuple[str, str, str, bool]]:
    return [
        ("url", "url", f"http://{_domain(serial)}:8080/download/{serial}", True),
        ("scheme", "text", "http", False),
        ("resource_path", "text", f"/download/{serial}", False),
        ("port", "port", "8080", False),
    ]


def _pe_object(serial: int) -> list[tuple[str, str, str, bool]]:
    return [
        ("imphash", "imphash", _hex(serial, "md5"), True),
        ("authentihash", "authentihash", _hex(serial, "sha256"), False),
        ("compilation-timestamp", "datetime", "2025-03-04T05:06:07Z", False),
        ("type", "text", "dll", False),
    ]


def _av_object(serial: int) -> list[tuple[str, str, str, bool]]:
    return [("software", "text", "ESET-NOD32", False), ("signature", "text", f"Win32/Agent.{serial % 999}", False)]


def _email_object(serial: int) -> list[tuple[str, str, str, bool]]:
    return [
        ("from", "email-src", f"hr{serial}@{_domain(serial)}", True),
        ("subject", "email-subject", f"Updated salary table {serial}", True),
        ("attachment", "email-attachment", f"salary_{serial}.xlsm", False),
    ]


# (template name, meta-category, share of objects, relations and values from a serial)
OBJECT_MIX = [
    ("file", "file", 0.45, _file_object),
    ("domain-ip", "network", 0.3, _domain_ip_object),
    ("url", "network", 0.08, _url_object),
    ("pe", "file", 0.08, _pe_object),
    ("av-signature", "misc", 0.06, _av_object),
    ("email", "network", 0.03, _email_object),
]
_OBJECT_WEIGHTS = [entry[2] for entry in OBJECT_MIX]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _attribute(rng: random.Random, serial: int, timestamp: int, kind: tuple, relation: str | None = None) -> dict:
    attribute_type, category_key, _, ids_share, value = kind
    attribute = {
        "uuid": _uuid(rng),
        "type": attribute_type,
        "category": CATEGORIES[category_key],
        "value": value(serial),
        "to_ids": rng.random() < ids_share,
        "timestamp": str(timestamp - rng.randrange(0, 3600)),
        "distribution": "5",
        "comment": "",
        "deleted": False,
        "disable_correlation": False,
    }
    if relation is not None:
        attribute["object_relation"] = relation
    roll = rng.random()
    if roll < 0.04:
        attribute["Tag"] = [{"name": rng.choice(["tlp:clear", "tlp:green", "tlp:amber"])}]
    elif roll < 0.07:
        attribute["Tag"] = [{"name": 'osint:certainty="93"'}]
    return attribute


def _galaxies(rng: random.Random) -> tuple[list[dict], list[str]]:
    """Return an event's `Galaxy` list and the `misp-galaxy:` tags that go with it."""
    galaxies, tags = [], []
    techniques = rng.sample(TECHNIQUES, rng.choice([0, 0, 1, 2, 3, 5]))
    if techniques:
        clusters = []
        for name, attack_id, tactic in techniques:
            value = f"{name} - {attack_id}"
            tag = f'misp-galaxy:mitre-attack-pattern="{value}"'
            clusters.append({
                "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"attack-pattern/{attack_id}")),
                "type": "mitre-attack-pattern",
                "value": value,
                "tag_name": tag,
                "description": f"{name}.",
                "source": "https://github.com/mitre/cti",
                "meta": {"external_id": [attack_id], "kill_chain": [f"mitre-attack:{tactic}"],
                         "refs": [f"https://attack.mitre.org/techniques/{attack_id.replace('.', '/')}/"]},
            })
            tags.append(tag)
        galaxies.append({"uuid": "c4e851fa-775f-11e7-8163-b774922098cd", "name": "Attack Pattern",
                         "type": "mitre-attack-pattern", "namespace": "mitre-attack", "GalaxyCluster": clusters})
    if rng.random() < 0.25:
        actor = rng.choice(THREAT_ACTORS)
        tag = f'misp-galaxy:threat-actor="{actor}"'
        galaxies.append({"uuid": "698774c7-8022-42c4-917f-8d6e4f06ada3", "name": "Threat Actor", "type": "threat-actor",
                         "GalaxyCluster": [{"uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"actor/{actor}")),
                                            "type": "threat-actor", "value": actor, "tag_name": tag, "meta": {}}]})
        tags.append(tag)
    return galaxies, tags


def make_event(seed: int, number: int, attributes: int, *, first_serial: int) -> dict:
    """Return one `{"Event": ...}` with exactly `attributes` attributes, objects' included.

    `first_serial` numbers the event's first value; give each event its own range so that values
    stay unique across events.
    """
    rng = random.Random(seed * 1_000_003 + number)
    timestamp = NOW_SECONDS - 3600 - rng.randrange(0, YEAR_SECONDS)
    serial = first_serial
    loose: list[dict] = []
    objects: list[dict] = []
    remaining = attributes
    while remaining > 0:
        if rng.random() < OBJECT_SHARE:
            name, meta_category, _, build = rng.choices(OBJECT_MIX, _OBJECT_WEIGHTS)[0]
            members = build(serial)[:remaining]
            object_attributes = []
            for relation, attribute_type, value, ids in members:
                kind = (attribute_type, "file" if meta_category == "file" else "network", 0, 0.9 if ids else 0.0, lambda s, v=value: v)
                object_attributes.append(_attribute(rng, serial, timestamp, kind, relation))
            objects.append({"uuid": _uuid(rng), "name": name, "meta-category": meta_category,
                            "timestamp": str(timestamp), "distribution": "5", "deleted": False,
                            "Attribute": object_attributes})
            remaining -= len(members)
        else:
            loose.append(_attribute(rng, serial, timestamp, rng.choices(ATTRIBUTE_MIX, _MIX_WEIGHTS)[0]))
            remaining -= 1
        serial += 1

    galaxies, galaxy_tags = _galaxies(rng)
    tags = [rng.choices(["tlp:white", "tlp:clear", "tlp:green", "tlp:amber", "tlp:red"], [2, 2, 5, 2, 0.3])[0]]
    if rng.random() < 0.3:
        tags.append(rng.choice(["PAP:GREEN", "PAP:AMBER", "PAP:WHITE"]))
    if rng.random() < 0.5:
        tags.append("type:OSINT")
    if rng.random() < 0.3:
        tags.append('osint:source-type="blog-post"')
    tags.extend(galaxy_tags)
    org_name, org_uuid = ORGS[number % len(ORGS)]
    published = rng.random() < 0.95
    return {"Event": {
        "uuid": str(uuid.UUID(int=(seed << 64) + number + 1, version=4)),
        "info": f"OSINT - synthetic campaign report {number}",
        "date": "2025-06-01",
        "timestamp": str(timestamp),
        "publish_timestamp": str(timestamp if published else 0),
        "published": published,
        "analysis": "2",
        "threat_level_id": str(1 + number % 3),
        "distribution": "3",
        "Orgc": {"name": org_name, "uuid": org_uuid},
        "Org": {"name": org_name, "uuid": org_uuid},
        "Tag": [{"name": name} for name in tags],
        "Galaxy": galaxies,
        "Attribute": loose,
        "Object": objects,
    }}


def event_sizes(total: int, mean: int, seed: int) -> list[int]:
    """Split `total` attributes into events of 1 to `2 * mean - 1` attributes, `mean` on average."""
    rng = random.Random(seed)
    sizes = []
    left = total
    while left > 0:
        size = min(left, rng.randint(1, 2 * mean - 1))
        sizes.append(size)
        left -= size
    return sizes


def generate(total: int, *, seed: int, mean: int | None = None) -> Iterator[dict]:
    """Yield events holding `total` attributes: one event when `mean` is None, else events of `mean` on average."""
    sizes = [total] if mean is None else event_sizes(total, mean, seed)
    serial = seed * 10**9
    for number, size in enumerate(sizes):
        yield make_event(seed, number, size, first_serial=serial)
        serial += size


def write_feed(folder: Path, events: Iterator[dict]) -> int:
    """Write events into `folder` as a MISP feed (one file per event and a manifest); return the event count."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for event in events:
        body = event["Event"]
        (folder / f"{body['uuid']}.json").write_text(json.dumps(event), encoding="utf-8")
        manifest[body["uuid"]] = {"timestamp": body["timestamp"], "info": body["info"]}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return len(manifest)
