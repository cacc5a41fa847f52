"""docs/troubleshooting.md against the code: every Entra ID code with a hint is explained, and the
messages the page quotes are still the ones the bridge prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from misp2sentinel.sentinel.auth import ERROR_HINTS

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGE = (REPO_ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
SOURCES = "\n".join(path.read_text(encoding="utf-8") for path in (REPO_ROOT / "misp2sentinel").rglob("*.py"))

# Fixed parts of messages the page quotes, each as the code writes it.
QUOTED_MESSAGES = [
    "cannot get an access token for client",
    "Sentinel rejected the access token with HTTP 401 twice, the second time right after a new token was fetched",
    "Microsoft Sentinel Contributor role on workspace",
    "or the upload path is wrong",
    "requires authentication (HTTP 407)",
    "the TLS connection to",
    "upload failed after",
    "the next retry in",
    "splitting it in halves to isolate the rejected objects",
    "rejected by Sentinel:",
    "unexpected response from Sentinel",
    "another misp2sentinel run holds the lock on",
    "cannot read client_certificate.private_key",
    "it is not PKCS#12 data or the passphrase is wrong",
    "expires on %s",
    "revocations held back",
]


def aadsts_table_codes() -> set[int]:
    section = PAGE.split("## Sign-in errors", 1)[1].split("\n## ", 1)[0]
    codes = set()
    for row in re.findall(r"^\| ([\d, ]+) \|", section, re.MULTILINE):
        codes.update(int(code) for code in row.split(","))
    return codes


@pytest.mark.parametrize("code", sorted(ERROR_HINTS))
def test_hinted_code_in_page(code: int) -> None:
    assert code in aadsts_table_codes()


@pytest.mark.parametrize("message", QUOTED_MESSAGES)
def test_quoted_message_in_code(message: str) -> None:
    assert message in SOURCES


def test_page_covers_statuses() -> None:
    for heading in ("## HTTP 401", "## HTTP 403", "## HTTP 404", "## HTTP 429", "## Per-record messages", "## Lock held"):
        assert heading in PAGE
