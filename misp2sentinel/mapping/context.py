"""Context for analysts: MISP galaxy clusters (ATT&CK, actors, malware, tools) and indicator types.

Clusters come from galaxy tags (`misp-galaxy:<galaxy>="<cluster>"`) and, when the event was
normalised with its galaxies, from the clusters themselves, whose `meta.kill_chain` gives an
ATT&CK technique's tactics. A technique becomes a label and an external reference with its
ATT&CK id, plus `kill_chain_phases` when its tactics are known. Actors, malware and tools
become labels. The raw galaxy tags of these kinds are replaced by the readable labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TECHNIQUE_ID = re.compile(r"\b(T\d{4}(?:\.\d{3})?)\b")
GALAXY_TAG = re.compile(r'^misp-galaxy:([^=]+)="?(.*?)"?$', re.IGNORECASE)

# Galaxy types by the label prefix their clusters get.
GALAXY_KINDS = {
    **dict.fromkeys(
        ["mitre-attack-pattern", "mitre-enterprise-attack-attack-pattern", "mitre-mobile-attack-attack-pattern",
         "mitre-pre-attack-attack-pattern", "mitre-ics-techniques"],
        "attack-pattern",
    ),
    **dict.fromkeys(
        ["threat-actor", "mitre-intrusion-set", "mitre-enterprise-attack-intrusion-set",
         "mitre-mobile-attack-intrusion-set", "microsoft-activity-group"],
        "threat-actor",
    ),
    **dict.fromkeys(
        ["malpedia", "mitre-malware", "mitre-enterprise-attack-malware", "mitre-mobile-attack-malware",
         "ransomware", "rat", "banker", "botnet", "stealer", "backdoor", "android"],
        "malware",
    ),
    **dict.fromkeys(
        ["tool", "mitre-tool", "mitre-enterprise-attack-tool", "mitre-mobile-attack-tool", "exploit-kit"],
        "tool",
    ),
}

# STIX 2.1 indicator-type-ov value per MISP category; other categories take the configured default.
CATEGORY_INDICATOR_TYPES = {
    **dict.fromkeys(
        ["Payload delivery", "Artifacts dropped", "Payload installation", "Persistence mechanism",
         "Network activity", "Payload type", "Antivirus detection", "Financial fraud"],
        "malicious-activity",
    ),
    **dict.fromkeys(["Attribution", "Social network", "Person"], "attribution"),
    "Targeting data": "compromised",
}
INDICATOR_TYPES = ("anomalous-activity", "anonymization", "benign", "compromised", "malicious-activity",
                   "attribution", "unknown")


@dataclass(frozen=True, slots=True)
class Cluster:
    """One galaxy cluster of a known kind."""

    kind: str
    value: str
    attack_id: str | None = None
    phases: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(slots=True)
class Context:
    """The labels, kill chain phases, references and techniques of one indicator's clusters."""

    labels: list[str] = field(default_factory=list)
    kill_chain_phases: list[dict] = field(default_factory=list)
    references: list[dict] = field(default_factory=list)
    techniques: list[Cluster] = field(default_factory=list)


def galaxy_clusters(raw_galaxies) -> list[dict]:
    """Reduce MISP's `Galaxy` list (each with `GalaxyCluster`s) to what the mapper reads.

    Returns `[{"type", "value", "kill_chain", "external_id"}]`; `sources.normalize` can store
    this as `galaxies` on events and attributes.
    """
    clusters = []
    for galaxy in raw_galaxies if isinstance(raw_galaxies, list) else []:
        if not isinstance(galaxy, dict):
            continue
        for cluster in galaxy.get("GalaxyCluster") or []:
            if not isinstance(cluster, dict) or not cluster.get("value"):
                continue
            meta = cluster.get("meta") if isinstance(cluster.get("meta"), dict) else {}
            clusters.append({
                "type": cluster.get("type") or galaxy.get("type") or "",
                "value": str(cluster["value"]),
                "kill_chain": [str(item) for item in meta.get("kill_chain") or [] if item],
                "external_id": [str(item) for item in meta.get("external_id") or [] if item],
            })
    return clusters


def _phases(kill_chain: list[str]) -> tuple[tuple[str, str], ...]:
    phases = []
    for entry in kill_chain:
        # "mitre-attack:defense-evasion" or "mitre-attack:enterprise-attack:defense-evasion"
        pieces = [piece.strip() for piece in entry.split(":") if piece.strip()]
        if len(pieces) >= 2:
            phase = (pieces[0].lower(), pieces[-1].lower())
            if phase not in phases:
                phases.append(phase)
    return tuple(phases)


def _cluster(galaxy_type: str, value: str, kill_chain=(), external_ids=()) -> Cluster | None:
    kind = GALAXY_KINDS.get(galaxy_type.strip().lower())
    if kind is None or not value.strip():
        return None
    value = value.strip()
    if kind != "attack-pattern":
        return Cluster(kind, value)
    attack_id = next((text for text in external_ids if TECHNIQUE_ID.fullmatch(text)), None)
    if attack_id is None:
        match = TECHNIQUE_ID.search(value)
        attack_id = match.group(1) if match else None
    return Cluster(kind, value, attack_id, _phases(list(kill_chain)))


def is_context_tag(tag: str) -> bool:
    """Tell whether a tag is a galaxy tag that becomes a readable context label instead."""
    match = GALAXY_TAG.match(tag)
    return bool(match) and match.group(1).strip().lower() in GALAXY_KINDS


def clusters_from(tags: list[str], galaxies: list[dict] | None) -> list[Cluster]:
    """Return the known clusters among galaxy tags and normalised galaxies, without repeats.

    A cluster seen both as a tag and as a galaxy keeps the galaxy's kill chain.
    """
    found: dict[tuple[str, str], Cluster] = {}
    for galaxy in galaxies or ():
        cluster = _cluster(galaxy.get("type", ""), galaxy.get("value", ""), galaxy.get("kill_chain") or (),
                           galaxy.get("external_id") or ())
        if cluster is not None:
            found.setdefault((cluster.kind, cluster.value), cluster)
    for tag in tags:
        if not tag.lower().startswith("misp-galaxy:"):
            continue
        match = GALAXY_TAG.match(tag)
        if match is None:
            continue
        cluster = _cluster(match.group(1), match.group(2))
        if cluster is not None:
            found.setdefault((cluster.kind, cluster.value), cluster)
    return list(found.values())


def technique_reference(cluster: Cluster) -> dict:
    path = cluster.attack_id.replace(".", "/")
    return {
        "source_name": "mitre-attack",
        "external_id": cluster.attack_id,
        "url": f"https://attack.mitre.org/techniques/{path}/",
        "description": cluster.value,
    }


def build_context(clusters: list[Cluster]) -> Context:
    context = Context()
    for cluster in clusters:
        if cluster.label not in context.labels:
            context.labels.append(cluster.label)
        if cluster.kind != "attack-pattern":
            continue
        for kill_chain_name, phase_name in cluster.phases:
            phase = {"kill_chain_name": kill_chain_name, "phase_name": phase_name}
            if phase not in context.kill_chain_phases:
                context.kill_chain_phases.append(phase)
        if cluster.attack_id and all(known.attack_id != cluster.attack_id for known in context.techniques):
            context.techniques.append(cluster)
            context.references.append(technique_reference(cluster))
    return context


def indicator_types(threat_types: tuple[str, ...], category: str | None, default: str) -> list[str]:
    """Return `indicator_types`: a Sentinel threat type tag first (Sentinel shows the first entry as
    its ThreatType), then the STIX type for the MISP category, else the configured default."""
    stix_type = CATEGORY_INDICATOR_TYPES.get(category or "", default)
    return [*threat_types, stix_type] if threat_types else [stix_type]
