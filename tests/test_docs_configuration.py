"""docs/configuration.md and config.example.yaml against the configuration model."""

from __future__ import annotations

import re

import yaml

from misp2sentinel.config import SECRET_KEYS
from misp2sentinel.config_reference import key_paths, render
from tests.conftest import REPO_ROOT

EXAMPLE_TEXT = (REPO_ROOT / "config.example.yaml").read_text(encoding="utf-8")


# A commented-out key line such as `    #   thumbprint: ...`; the example shows `client_certificate`
# this way because a workspace takes it or `client_secret`, never both.
COMMENTED_KEY = re.compile(r"^(\s*)# (\s*[a-z_]+:(\s.*)?)$", re.MULTILINE)


def example_paths(data, prefix: str = "") -> set[str]:
    """Collect the key paths of a loaded YAML document, with list items written `[]`.

    The `{env: NAME}` and `{file: PATH}` forms of a secret are values, not keys of the model.
    """
    paths = set()
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}{key}"
            paths.add(path)
            if key not in SECRET_KEYS:
                paths |= example_paths(value, f"{path}.")
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, dict):
                paths |= example_paths(item, prefix.removesuffix(".") + "[].")
    return paths


def test_configuration_page_current():
    # Regenerate with: python -m misp2sentinel.config_reference --write
    document = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")

    assert document == render()


def test_configuration_page_lists_every_key():
    document = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [path for path in key_paths() if f"| `{path}` |" not in document]

    assert missing == []


def test_example_has_every_model_key():
    uncommented = COMMENTED_KEY.sub(r"\1\2", EXAMPLE_TEXT)
    in_example = example_paths(yaml.safe_load(uncommented))
    missing = sorted(set(key_paths()) - in_example)

    assert missing == []


def test_example_has_no_unknown_key():
    uncommented = COMMENTED_KEY.sub(r"\1\2", EXAMPLE_TEXT)
    unknown = sorted(example_paths(yaml.safe_load(uncommented)) - set(key_paths()))

    assert unknown == []


def test_example_commented_keys_found():
    # Guards the uncommenting above: client_certificate is only present as comments.
    uncommented = COMMENTED_KEY.sub(r"\1\2", EXAMPLE_TEXT)
    paths = example_paths(yaml.safe_load(uncommented))

    assert "workspaces[].client_certificate.thumbprint" in paths
    assert "workspaces[].client_certificate" not in example_paths(yaml.safe_load(EXAMPLE_TEXT))
