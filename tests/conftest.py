"""Shared builders and checks for the mapping, source, configuration and export tests.

Tests build raw MISP JSON (as MISP writes it, before normalisation) with `misp_event` and
`misp_attribute`, map it with `map_raw`, and get every produced STIX object checked by the stix2
library and every pattern by stix2-patterns on the way.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest
import stix2
from click.testing import CliRunner
from stix2patterns.validator import run_validator

from misp2sentinel.cli import cli
from misp2sentinel.config import MappingSettings
from misp2sentinel.mapping import map_event
from misp2sentinel.report import Skip
from misp2sentinel.sources.normalize import normalize_event

# The fixed run time of every in-process test and of every CLI test that sets MISP2SENTINEL_NOW.
NOW = datetime(2026, 1, 31, 12, 0, 0, tzinfo=timezone.utc)
NOW_TEXT = "2026-01-31T12:00:00Z"

# The project's UUIDv5 namespace for derived ids. It is part of the id scheme: changing it changes
# every derived id, so the tests pin it.
ID_NAMESPACE = uuid.UUID("bab431ea-3d5a-5dee-a9dc-281372b9912f")

EVENT_UUID = "5a1e2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
# A MISP `Galaxy` entry with one ATT&CK technique cluster, as MISP attaches it to an event or attribute.
PHISHING_GALAXY = {
    "uuid": "c4e851fa-775f-11e7-8163-b774922098cd", "name": "Attack Pattern", "type": "mitre-attack-pattern",
    "GalaxyCluster": [{
        "uuid": "a93494bb-4b80-4ea1-8695-3236a49916fd", "type": "mitre-attack-pattern",
        "value": "Phishing - T1566", "tag_name": 'misp-galaxy:mitre-attack-pattern="Phishing - T1566"',
        "meta": {"external_id": ["T1566"], "kill_chain": ["mitre-attack:initial-access"]},
    }],
}
ORG_UUID = "55f6ea5e-2c60-40e5-964f-47a8950d210f"
ORG_NAME = "CIRCL"
EVENT_TIMESTAMP = 1764547200  # 2025-12-01T00:00:00Z
ATTRIBUTE_TIMESTAMP = 1765000000  # 2025-12-06T05:46:40Z

# TLP 1.0 marking-definition ids fixed by the STIX 2.1 specification.
TLP_WHITE = "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"
TLP_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
TLP_AMBER = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"
TLP_RED = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "events"
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "misp-events"

_uuid_counter = iter(range(1, 1 << 30))


def new_uuid() -> str:
    """Return a valid RFC 4122 uuid for test data, unique within the test session."""
    return str(uuid.UUID(int=(0x4000 << 64) | (0x8 << 60) | next(_uuid_counter), version=4))


def derived_id(prefix: str, name: str) -> str:
    """Return a derived STIX id: the UUIDv5 of `name` in the project namespace."""
    return f"{prefix}--{uuid.uuid5(ID_NAMESPACE, name)}"


def stix_time(text: str) -> datetime:
    """Parse a STIX timestamp into an aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def misp_attribute(attribute_type: str, value: str, *, to_ids: object = True, tags: tuple[str, ...] = (), **fields) -> dict:
    """Build a raw MISP attribute. Pass `to_ids=None` to leave the key out, and a field as None to drop it."""
    raw = {
        "uuid": new_uuid(),
        "type": attribute_type,
        "category": "Network activity",
        "value": value,
        "timestamp": str(ATTRIBUTE_TIMESTAMP),
    }
    if to_ids is not None:
        raw["to_ids"] = to_ids
    if tags:
        raw["Tag"] = [{"name": name} for name in tags]
    for key, item in fields.items():
        if item is None:
            raw.pop(key, None)
        else:
            raw[key] = item
    return raw


def misp_object(name: str, *attributes: dict, **fields) -> dict:
    raw = {"uuid": new_uuid(), "name": name, "meta-category": "network", "Attribute": list(attributes)}
    raw.update(fields)
    return raw


def misp_event(*attributes: dict, objects: tuple[dict, ...] = (), tags: tuple[str, ...] = (), **fields) -> dict:
    """Build a raw MISP event, the content of `{"Event": ...}`. A field set to None is left out."""
    raw = {
        "uuid": EVENT_UUID,
        "id": "42",
        "info": "Test event",
        "date": "2025-12-01",
        "timestamp": str(EVENT_TIMESTAMP),
        "published": True,
        "Orgc": {"uuid": ORG_UUID, "name": ORG_NAME},
        "Tag": [{"name": name} for name in tags],
        "Attribute": list(attributes),
        "Object": list(objects),
    }
    for key, item in fields.items():
        if item is None:
            raw.pop(key, None)
        else:
            raw[key] = item
    return raw


def check_stix(obj: dict) -> None:
    """Assert that one STIX object parses strictly and that an indicator's pattern is valid and
    contains one observable (Sentinel fills ObservableKey/ObservableValue only without AND)."""
    stix2.parse(obj, allow_custom=False)
    if obj.get("type") == "indicator":
        assert run_validator(obj["pattern"]) == [], obj["pattern"]
        assert " AND " not in obj["pattern"], obj["pattern"]


@dataclass
class Mapped:
    """The output of mapping one event, split by kind."""

    indicators: list[dict] = field(default_factory=list)
    identities: list[dict] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)

    @property
    def only(self) -> dict:
        """Return the single indicator, failing when there is not exactly one."""
        assert len(self.indicators) == 1, (self.indicators, self.skips)
        return self.indicators[0]

    def skip_reasons(self) -> list[str]:
        return [skip.reason for skip in self.skips]


def map_raw(raw_event: dict, settings: MappingSettings | None = None, now: datetime = NOW) -> Mapped:
    """Normalise and map one raw MISP event, checking every produced object with stix2."""
    return map_normalised(normalize_event(raw_event), settings, now)


def map_normalised(event: dict, settings: MappingSettings | None = None, now: datetime = NOW) -> Mapped:
    """Map one normalised event, checking every produced object with stix2."""
    result = Mapped()
    for item in map_event(event, settings or MappingSettings(), now):
        if isinstance(item, Skip):
            result.skips.append(item)
            continue
        check_stix(item.stix)
        if item.stix["type"] == "indicator":
            result.indicators.append(item.stix)
        else:
            result.identities.append(item.stix)
    return result


def map_one(attribute: dict, settings: MappingSettings | None = None, **event_fields) -> Mapped:
    """Map an event that contains a single attribute."""
    return map_raw(misp_event(attribute, **event_fields), settings)


@pytest.fixture(autouse=True)
def reset_project_logger():
    """Undo the CLI's logging set-up after each test, so caplog captures the project's log records."""
    yield
    logger = logging.getLogger("misp2sentinel")
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


@pytest.fixture
def run_cli():
    """Return a function that invokes the CLI in-process with a fixed run time and returns click's Result."""

    def invoke(*args: str, env: dict | None = None):
        runner = CliRunner()
        environment = {"MISP2SENTINEL_NOW": NOW_TEXT}
        environment.update(env or {})
        return runner.invoke(cli, list(args), env=environment, catch_exceptions=False)

    return invoke
