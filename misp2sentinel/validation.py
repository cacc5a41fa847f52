"""Re-checking STIX patterns at run time (`--validate`).

The mapper builds patterns as text by construction, escaping every literal, and the test suite
proves them valid with the STIX pattern grammar on generated and real MISP data. Parsing every
pattern again costs about 300 microseconds each, some thirty times the cost of mapping it, so it is
off by default. `--validate` turns it on for operators who want the proof on their own data: an
indicator whose pattern fails the grammar is skipped as `invalid_pattern`, with the parser's
message, instead of being sent.
"""

from __future__ import annotations

from misp2sentinel.gc_pacing import resume_automatic_collection


class PatternValidator:
    """Check the STIX pattern of an indicator with the stix2-patterns grammar (installed with stix2)."""

    def __init__(self) -> None:
        from stix2patterns.validator import run_validator

        self._run_validator = run_validator
        # The grammar's parse trees are reference cycles; they must be collected as they go.
        resume_automatic_collection()

    def problem(self, stix: dict) -> str | None:
        """Return the parser's message when `stix` is an indicator whose STIX pattern is invalid, else None."""
        if stix.get("type") != "indicator" or stix.get("pattern_type") != "stix":
            return None
        errors = self._run_validator(stix["pattern"], stix_version="2.1")
        return "; ".join(errors) if errors else None
