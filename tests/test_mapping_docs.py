"""docs/mapping.md and config.example.yaml against the code: the generated tables, every mapping
setting and every skip reason the mapper uses."""

from __future__ import annotations

import re

import pytest
import yaml

from misp2sentinel import report
from misp2sentinel.config import LifetimeDays, MappingSettings, SanityFilter
from misp2sentinel.mapping.reference import TABLES, render
from tests.conftest import REPO_ROOT

DOCUMENT = (REPO_ROOT / "docs" / "mapping.md").read_text(encoding="utf-8")
EXAMPLE = yaml.safe_load((REPO_ROOT / "config.example.yaml").read_text(encoding="utf-8"))
SETTINGS_TABLE = DOCUMENT[DOCUMENT.index("## Settings"):]


@pytest.mark.parametrize("name", sorted(TABLES))
def test_docs_generated_table_current(name):
    # Regenerate with: python -m misp2sentinel.mapping.reference --write
    start = DOCUMENT.index(f"<!-- generated: {name} -->\n") + len(f"<!-- generated: {name} -->\n")
    end = DOCUMENT.index(f"<!-- end generated: {name} -->")

    assert DOCUMENT[start:end] == TABLES[name]() + "\n"


def test_docs_render_changes_nothing():
    assert render(DOCUMENT) == DOCUMENT


def settings_names() -> list[str]:
    names = [name for name in MappingSettings.model_fields if name not in ("lifetime_days", "sanity")]
    names += [f"sanity.{name}" for name in SanityFilter.model_fields]
    return names


@pytest.mark.parametrize("name", settings_names())
def test_docs_setting_in_table(name):
    assert re.search(rf"^\| `{re.escape(name)}` \|", SETTINGS_TABLE, re.MULTILINE), name


def test_docs_lifetime_kinds_listed():
    for kind, days in LifetimeDays().model_dump().items():
        assert f"`{kind}` {days}" in DOCUMENT, kind


def test_example_config_mapping_is_the_defaults():
    # Every setting appears in config.example.yaml with its default value.
    assert EXAMPLE["mapping"] == MappingSettings().model_dump(mode="json")


@pytest.mark.parametrize("reason", [
    report.DELETED, report.NOT_IDS, report.WARNINGLIST, report.UNSUPPORTED_TYPE, report.INVALID_VALUE,
    report.ABOVE_MAX_TLP, report.NON_PUBLIC_ADDRESS, report.BROAD_CIDR, report.EMPTY_CONTENT_HASH, report.STALE,
])
def test_docs_skip_reason_explained(reason):
    assert re.search(rf"^\| `{reason}` \| \S", DOCUMENT, re.MULTILINE), reason
