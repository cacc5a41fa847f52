"""Per-object validation of uploaded STIX objects, with messages in Sentinel's format.

Sentinel reports each invalid property as
`Error for Property=<name>: <reason>. Actual value: <value>.` (Microsoft Learn,
stix-objects-api, e.g. `Error for Property=id: Required property is missing. Actual
value: NULL.`). Only that example is documented; the other reasons are worded in the
same form.

The rules are the documented Sentinel requirements (`id`, `type`, `created`,
`modified`, `spec_version` 2.0 or 2.1, `confidence` 0 to 100, and for indicators
`pattern`, `pattern_type`, `valid_from`, `valid_until` after `valid_from`). The STIX 2.1
rules for a required `name`, relationship refs, `modified` not before `created` and
property types are checked too. NOTE: Sentinel does not document whether it enforces them.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from stix2patterns.validator import run_validator

SUPPORTED_TYPES = ("indicator", "attack-pattern", "threat-actor", "identity", "relationship")
LEGACY_TYPES = ("indicator",)
SPEC_VERSIONS = ("2.0", "2.1")

# STIX 2.1 section 3.2: RFC 3339 in UTC with a literal Z and optional fractional seconds.
# NOTE: Sentinel's own parser may accept more (offsets, no seconds); this is the STIX rule.
_TIMESTAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?Z$")
_IDENTIFIER = re.compile(r"^([a-z0-9][a-z0-9-]*[a-z0-9]|[a-z0-9])--([0-9a-fA-F-]{36})$")
_TIMESTAMP_EXAMPLE = "2024-01-31T12:00:00.000Z"


def error_message(property_name: str, reason: str, actual: Any) -> str:
    """Format one validation error the way Sentinel does."""
    return f"Error for Property={property_name}: {reason}. Actual value: {_display(actual)}."


def missing_message(property_name: str) -> str:
    return error_message(property_name, "Required property is missing", None)


def _display(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def parse_timestamp(value: Any) -> datetime | None:
    """Return the UTC datetime of a STIX timestamp string, or None if it is not one."""
    if not isinstance(value, str):
        return None
    match = _TIMESTAMP.match(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    microseconds = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), microseconds, tzinfo=timezone.utc)
    except ValueError:
        return None


def is_identifier(value: Any, expected_type: str | None = None) -> bool:
    """Return whether `value` is a STIX identifier `<type>--<UUID>` (of `expected_type` if given)."""
    if not isinstance(value, str):
        return False
    match = _IDENTIFIER.match(value)
    if match is None:
        return False
    try:
        uuid.UUID(match.group(2))
    except ValueError:
        return False
    return expected_type is None or match.group(1) == expected_type


def validate_stix_object(stix_object: Any, *, allowed_types: tuple[str, ...] = SUPPORTED_TYPES) -> list[str]:
    """Return the validation errors of one uploaded object; an empty list means valid."""
    if not isinstance(stix_object, dict):
        return [error_message("stixobject", "Invalid STIX object; expected a JSON object", stix_object)]

    errors: list[str] = []
    object_type = stix_object.get("type")
    type_supported = False
    if object_type is None:
        errors.append(missing_message("type"))
    elif not isinstance(object_type, str) or object_type not in allowed_types:
        supported = ", ".join(allowed_types)
        errors.append(error_message("type", f"Unsupported STIX object type; supported types are {supported}", object_type))
    else:
        type_supported = True

    _check_id(stix_object, object_type if type_supported else None, errors)
    spec_version = _check_spec_version(stix_object, errors)
    _check_common_properties(stix_object, errors)

    if type_supported:
        if object_type == "indicator":
            _check_indicator(stix_object, spec_version, errors)
        elif object_type == "relationship":
            _check_relationship(stix_object, errors)
        else:
            _check_required_string(stix_object, "name", errors)
    return errors


def _check_id(stix_object: dict[str, Any], object_type: str | None, errors: list[str]) -> None:
    value = stix_object.get("id")
    if value is None:
        errors.append(missing_message("id"))
    elif object_type is not None and not is_identifier(value, object_type):
        errors.append(error_message("id", f"Invalid identifier; expected '{object_type}--<UUID>'", value))
    elif object_type is None and not is_identifier(value):
        errors.append(error_message("id", "Invalid identifier; expected '<type>--<UUID>'", value))


def _check_spec_version(stix_object: dict[str, Any], errors: list[str]) -> str:
    """Check `spec_version` and return the effective version (absent means 2.1)."""
    value = stix_object.get("spec_version")
    if value is None:
        return "2.1"
    if value not in SPEC_VERSIONS:
        errors.append(error_message("spec_version", "Unsupported STIX version; supported versions are 2.0 and 2.1", value))
        return "2.1"
    return value


def _check_common_properties(stix_object: dict[str, Any], errors: list[str]) -> None:
    created = _check_timestamp(stix_object, "created", errors, required=True)
    modified = _check_timestamp(stix_object, "modified", errors, required=True)
    if created is not None and modified is not None and modified < created:
        errors.append(error_message("modified", "modified must be later than or equal to created", stix_object["modified"]))

    confidence = stix_object.get("confidence")
    if confidence is not None and (isinstance(confidence, bool) or not isinstance(confidence, int) or not 0 <= confidence <= 100):
        errors.append(error_message("confidence", "Invalid value; expected an integer from 0 to 100", confidence))

    revoked = stix_object.get("revoked")
    if revoked is not None and not isinstance(revoked, bool):
        errors.append(error_message("revoked", "Invalid value; expected a boolean", revoked))

    _check_string_list(stix_object, "labels", errors)
    lang = stix_object.get("lang")
    if lang is not None and not isinstance(lang, str):
        errors.append(error_message("lang", "Invalid value; expected a string", lang))

    created_by_ref = stix_object.get("created_by_ref")
    if created_by_ref is not None and not is_identifier(created_by_ref, "identity"):
        errors.append(error_message("created_by_ref", "Invalid reference; expected 'identity--<UUID>'", created_by_ref))

    marking_refs = stix_object.get("object_marking_refs")
    if marking_refs is not None and (
        not isinstance(marking_refs, list) or not all(is_identifier(ref, "marking-definition") for ref in marking_refs)
    ):
        errors.append(error_message("object_marking_refs", "Invalid value; expected a list of 'marking-definition--<UUID>' references", marking_refs))

    for name in ("external_references", "granular_markings"):
        value = stix_object.get(name)
        if value is not None and (not isinstance(value, list) or not all(isinstance(item, dict) for item in value)):
            errors.append(error_message(name, "Invalid value; expected a list of objects", value))


def _check_indicator(stix_object: dict[str, Any], spec_version: str, errors: list[str]) -> None:
    pattern = stix_object.get("pattern")
    if pattern is None:
        errors.append(missing_message("pattern"))
    elif not isinstance(pattern, str) or not pattern.strip():
        errors.append(error_message("pattern", "Invalid value; expected a non-empty string", pattern))
        pattern = None

    pattern_type = stix_object.get("pattern_type")
    if pattern_type is None and spec_version == "2.1":
        errors.append(missing_message("pattern_type"))
    elif pattern_type is not None and (not isinstance(pattern_type, str) or not pattern_type):
        errors.append(error_message("pattern_type", "Invalid value; expected a non-empty string", pattern_type))

    # STIX 2.0 indicators have no pattern_type and always carry a STIX pattern.
    if isinstance(pattern, str) and (pattern_type == "stix" or (pattern_type is None and spec_version == "2.0")):
        pattern_errors = run_validator(pattern, stix_version=spec_version)
        if pattern_errors:
            errors.append(error_message("pattern", f"Invalid STIX pattern ({pattern_errors[0]})", pattern))

    valid_from = _check_timestamp(stix_object, "valid_from", errors, required=True)
    valid_until = _check_timestamp(stix_object, "valid_until", errors, required=False)
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        errors.append(error_message("valid_until", "valid_until must be later than valid_from", stix_object["valid_until"]))

    for name in ("name", "description", "pattern_version"):
        value = stix_object.get(name)
        if value is not None and not isinstance(value, str):
            errors.append(error_message(name, "Invalid value; expected a string", value))
    _check_string_list(stix_object, "indicator_types", errors)

    phases = stix_object.get("kill_chain_phases")
    if phases is not None and (
        not isinstance(phases, list)
        or not all(isinstance(phase, dict) and isinstance(phase.get("kill_chain_name"), str) and isinstance(phase.get("phase_name"), str) for phase in phases)
    ):
        errors.append(error_message("kill_chain_phases", "Invalid value; expected a list of objects with kill_chain_name and phase_name", phases))


def _check_relationship(stix_object: dict[str, Any], errors: list[str]) -> None:
    _check_required_string(stix_object, "relationship_type", errors)
    for name in ("source_ref", "target_ref"):
        value = stix_object.get(name)
        if value is None:
            errors.append(missing_message(name))
        elif not is_identifier(value):
            errors.append(error_message(name, "Invalid reference; expected '<type>--<UUID>'", value))


def _check_required_string(stix_object: dict[str, Any], name: str, errors: list[str]) -> None:
    value = stix_object.get(name)
    if value is None:
        errors.append(missing_message(name))
    elif not isinstance(value, str) or not value:
        errors.append(error_message(name, "Invalid value; expected a non-empty string", value))


def _check_string_list(stix_object: dict[str, Any], name: str, errors: list[str]) -> None:
    value = stix_object.get(name)
    if value is not None and (not isinstance(value, list) or not all(isinstance(item, str) for item in value)):
        errors.append(error_message(name, "Invalid value; expected a list of strings", value))


def _check_timestamp(stix_object: dict[str, Any], name: str, errors: list[str], *, required: bool) -> datetime | None:
    value = stix_object.get(name)
    if value is None:
        if required:
            errors.append(missing_message(name))
        return None
    parsed = parse_timestamp(value)
    if parsed is None:
        errors.append(error_message(name, f"Invalid timestamp; expected RFC 3339 UTC such as {_TIMESTAMP_EXAMPLE}", value))
    return parsed
