"""PHP, CakePHP 2 and MySQL value semantics that MISP's restSearch filters depend on.

A filter value sent to MISP 2.5 passes through PHP casts, CakePHP's quoting and a MySQL
comparison before it selects a row. These helpers reproduce the parts of that chain the
MISP emulator needs, so that odd inputs ("only", "0", "1.5e9", "7d", "tlp:%") select what
MISP selects. Line references are to MISP/MISP at commit bb0909a3 (branch 2.5).
"""

from __future__ import annotations

import functools
import math
import re
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

# CakePHP 2 `Validation::uuid`, which MISP uses to tell an event uuid from an event id.
UUID_PATTERN = re.compile(r"^[a-fA-F0-9]{8}-[a-fA-F0-9]{4}-[0-5][a-fA-F0-9]{3}-[089aAbB][a-fA-F0-9]{3}-[a-fA-F0-9]{12}$")

_PHP_WHITESPACE = " \t\n\r\v\f"
_NUMERIC_STRING = re.compile(r"^[ \t\n\r\v\f]*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?[ \t\n\r\v\f]*$")
_LEADING_NUMBER = re.compile(r"^[ \t\n\r\v\f]*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")

# `AppModel::resolveTimeDelta` (AppModel.php L3739-3765) accepts these unit suffixes.
_TIME_DELTA_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}

_RELATIVE_TIME = re.compile(r"^([+-]?\d+)\s*(sec|second|min|minute|hour|day|week)s?(\s+ago)?$", re.IGNORECASE)
_RELATIVE_UNITS = {"sec": 1, "second": 1, "min": 60, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}

# Column kinds, after the collations in MISP's db_schema.json.
INTEGER = "integer"
BOOLEAN = "boolean"  # tinyint(1): CakePHP quotes any non-empty filter value as 1
TEXT_CASE_INSENSITIVE = "text_ci"  # utf8mb3_unicode_ci, e.g. attributes.type and value1
TEXT_CASE_SENSITIVE = "text_bin"  # utf8mb3_bin, e.g. events.uuid, events.info, tags.name

OPERATORS = ("OR", "AND", "NOT")

Row = Any
Predicate = Callable[[Row], bool]


class MispInternalError(Exception):
    """A request that makes MISP itself fail with HTTP 500 (a PHP exception or type error)."""


def php_is_numeric(value: Any) -> bool:
    """Return what PHP 8 `is_numeric` returns for a decoded JSON value."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, str):
        return bool(_NUMERIC_STRING.match(value))
    return False


def php_empty(value: Any) -> bool:
    """Return what PHP `empty()` returns: true for null, false, 0, 0.0, "", "0" and []."""
    if value is None or value is False:
        return True
    if value is True:
        return False
    if isinstance(value, (int, float)):
        return value == 0
    if isinstance(value, str):
        return value in ("", "0")
    if isinstance(value, (list, dict)):
        return len(value) == 0
    return False


def php_strval(value: Any) -> str:
    """Return PHP `strval()` of a decoded JSON value (arrays become "Array", as PHP warns)."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (list, dict)):
        return "Array"
    return str(value)


def php_number(value: Any) -> int | float:
    """Return the number PHP arithmetic makes of a value: the leading numeric part of a string, else 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        match = _LEADING_NUMBER.match(value)
        if not match:
            return 0
        text = match.group(0).strip(_PHP_WHITESPACE)
        if any(marker in text for marker in ".eE"):
            return float(text)
        return int(text)
    if isinstance(value, (list, dict)):
        return 1 if value else 0
    return 0


def php_int(value: Any) -> int:
    """Return PHP `(int)` of a decoded JSON value."""
    number = php_number(value)
    if isinstance(number, float):
        return int(number) if math.isfinite(number) else 0
    return number


def php_loose_equals_number(value: Any, number: int) -> bool:
    """Return PHP 8 `$value == $number` for a scalar value and an integer."""
    if isinstance(value, str) and not php_is_numeric(value):
        return value == str(number)
    return php_number(value) == number


def mysql_number(value: Any) -> float | None:
    """Return the number MySQL compares an integer column with (None for SQL NULL)."""
    if value is None:
        return None
    return float(php_number(value))


def mysql_boolean(value: Any) -> int:
    """Return 0 or 1, as CakePHP 2 `DboSource::boolean` quotes a value for a tinyint(1) column."""
    return 0 if php_empty(value) else 1


def uuid_like(value: Any) -> bool:
    return isinstance(value, str) and bool(UUID_PATTERN.match(value))


@functools.lru_cache(maxsize=1024)
def _like_regex(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    parts = []
    escaped = False
    for character in pattern:
        if escaped:
            parts.append(re.escape(character))
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == "%":
            parts.append(".*")
        elif character == "_":
            parts.append(".")
        else:
            parts.append(re.escape(character))
    if escaped:
        parts.append(re.escape("\\"))
    flags = re.DOTALL if case_sensitive else re.DOTALL | re.IGNORECASE
    return re.compile("".join(parts), flags)


def sql_like(text: str, pattern: str, case_sensitive: bool) -> bool:
    """Return SQL `text LIKE pattern`: `%` matches any run, `_` one character, backslash escapes."""
    return _like_regex(pattern, case_sensitive).fullmatch(text) is not None


def column_text(stored: Any) -> str:
    """Return a stored column value as the text MySQL compares in a LIKE."""
    if isinstance(stored, bool):
        return "1" if stored else "0"
    return str(stored)


def column_equals(kind: str, stored: Any, value: Any) -> bool:
    """Return SQL `column = value` for a stored value of the given column kind."""
    if stored is None or value is None:
        return False
    if kind == INTEGER:
        return float(stored) == mysql_number(value)
    if kind == BOOLEAN:
        return int(stored) == mysql_boolean(value)
    text = php_strval(value)
    if kind == TEXT_CASE_INSENSITIVE:
        return str(stored).casefold() == text.casefold()
    return str(stored) == text


def column_like(kind: str, stored: Any, pattern: Any) -> bool:
    """Return SQL `column LIKE pattern`, comparing integer columns as text as MySQL does."""
    if stored is None or pattern is None:
        return False
    return sql_like(column_text(stored), php_strval(pattern), case_sensitive=kind != TEXT_CASE_INSENSITIVE)


def convert_filters(value: Any) -> dict[str, Any]:
    """Return `AppModel::convert_filters` of a filter: {"OR": [...], "NOT": [...], "AND": [...]}.

    A string is split on `&&` and a leading `!` marks a NOT term. A list is read term by
    term the same way. A dict that already has OR, NOT or AND keys is kept as it is.
    """
    if not isinstance(value, (list, dict)):
        result: dict[str, list[Any]] = {}
        for term in php_strval(value).split("&&"):
            if term == "":
                continue
            if term[0] == "!":
                result.setdefault("NOT", []).append(term[1:])
            else:
                result.setdefault("OR", []).append(term)
        return result
    if isinstance(value, dict) and any(operator in value for operator in OPERATORS):
        return dict(value)
    items = value.values() if isinstance(value, dict) else value
    result = {}
    for item in items:
        text = php_strval(item)
        is_php_int = isinstance(item, int) and not isinstance(item, bool)
        if not php_empty(text) and not is_php_int:
            if text[0] == "!":
                result.setdefault("NOT", []).append(text[1:])
            else:
                result.setdefault("OR", []).append(text)
        elif item is not None:
            result.setdefault("OR", []).append(item)
    return result


def dissect_args(value: Any) -> tuple[Any, Any, Any]:
    """Return `MispAttribute::dissectArgs` of a tag filter as (OR terms, NOT terms, AND terms).

    The terms stay as sent: a dict such as {"OR": "tlp:red"} keeps its string, which the
    caller then treats as a one-element list, as `Tag::findTagIdsByTagNames` does.
    """
    if php_empty(value):
        return [], [], []
    if not isinstance(value, (list, dict)):
        value = php_strval(value).split("&&")
    if isinstance(value, dict) and any(operator in value for operator in OPERATORS):
        any_terms = value.get("OR") if not php_empty(value.get("OR")) else []
        not_terms = value.get("NOT") if not php_empty(value.get("NOT")) else []
        and_terms = value.get("AND") if not php_empty(value.get("AND")) else []
        return any_terms, not_terms, and_terms
    any_terms, not_terms = [], []
    for term in value.values() if isinstance(value, dict) else value:
        if isinstance(term, str) and term[:1] == "!":
            not_terms.append(term[1:])
        else:
            any_terms.append(term)
    return any_terms, not_terms, []


def as_list(value: Any) -> list[Any]:
    """Return a filter's terms as a list, wrapping a single term as PHP code paths do."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [value]


def generic_filter(filter_terms: Any, columns: list[tuple[Callable[[Row], Any], str]]) -> list[Predicate]:
    """Return the predicates of `AppModel::generic_add_filter` (AppModel.php L3516-3585).

    `filter_terms` is a `convert_filters` result. Each column is a getter on a row and a
    column kind. A term that starts or ends with `%` is a LIKE pattern and the others are
    matched with IN; OR and AND terms of one kind are ORed together, NOT terms are ANDed.
    Like MISP, the OR and AND keys are removed from `filter_terms` once used.
    """
    if not isinstance(filter_terms, dict) or not any(operator in filter_terms for operator in OPERATORS):
        return []
    predicates = []
    for operator in [key for key in list(filter_terms) if key in OPERATORS]:
        entries = _filter_entries(operator, as_list(filter_terms[operator]), columns)
        if operator == "OR":
            predicates.append(lambda row, entries=entries: any(entry(row) for entry in entries))
        else:
            predicates.append(lambda row, entries=entries: all(entry(row) for entry in entries))
        if operator != "NOT":
            del filter_terms[operator]
    return predicates


def _filter_entries(operator: str, terms: list[Any], columns: list[tuple[Callable[[Row], Any], str]]) -> list[Predicate]:
    entries: list[Predicate] = []
    in_terms = []
    minus_one = False
    for term in terms:
        if term == -1 and type(term) is int:
            minus_one = True
        elif isinstance(term, str) and term and (term[-1] == "%" or term[0] == "%"):
            for getter, kind in columns:
                if operator == "NOT":
                    entries.append(lambda row, g=getter, k=kind, t=term: _not_like(k, g(row), t))
                else:
                    entries.append(lambda row, g=getter, k=kind, t=term: column_like(k, g(row), t))
                    entries.append(lambda row, g=getter, k=kind, t=term: column_equals(k, g(row), t))
        else:
            in_terms.append(term)

    # MISP collects plain terms (and the -1 marker) in one `OR => [column IN (...)]` group,
    # so even under AND any one of them matches. NOT terms become `column NOT IN (...)`.
    group_terms = in_terms + [-1] if minus_one else list(in_terms)
    if operator != "NOT" and group_terms:
        entries.append(lambda row: any(column_equals(k, g(row), t) for g, k in columns for t in group_terms))
    if operator == "NOT":
        for getter, kind in columns:
            if in_terms:
                entries.append(lambda row, g=getter, k=kind: _not_in(k, g(row), in_terms))
        if minus_one:
            entries.append(lambda row: any(column_equals(k, g(row), -1) for g, k in columns))
    return entries


def _not_like(kind: str, stored: Any, pattern: Any) -> bool:
    # SQL NULL makes both LIKE and NOT LIKE unknown, so the row does not match.
    return stored is not None and not column_like(kind, stored, pattern)


def _not_in(kind: str, stored: Any, terms: list[Any]) -> bool:
    return stored is not None and not any(column_equals(kind, stored, term) for term in terms)


def resolve_time_delta(value: Any, now: int) -> int | float:
    """Return `AppModel::resolveTimeDelta`: an epoch, `Nd`/`Nh`/`Nm`/`Ns` before now, or a date.

    MISP turns an invalid value into now + 1 (logging only a notice), so it matches nothing.
    """
    if php_is_numeric(value):
        return php_int(value)
    if isinstance(value, str) and value:
        unit = value[-1].lower()
        if unit in _TIME_DELTA_UNITS:
            amount = value[:-1]
            if not php_is_numeric(amount):
                return now + 1
            return now - php_number(amount) * _TIME_DELTA_UNITS[unit]
        parsed = strtotime(value, now)
        if parsed is not None:
            return parsed
    return now + 1


def strtotime(text: str, now: int) -> int | None:
    """Return the epoch of a date string, or None when it cannot be read.

    NOTE: PHP `strtotime` reads far more formats. This covers ISO 8601 dates and
    date-times (a value without an offset is read as UTC, the emulated server's zone),
    now/today/yesterday/tomorrow and "N unit(s) [ago]" up to weeks.
    """
    stripped = text.strip()
    lowered = stripped.lower()
    midnight = datetime.fromtimestamp(now, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    keywords = {"now": now, "today": midnight, "midnight": midnight, "yesterday": midnight - timedelta(days=1), "tomorrow": midnight + timedelta(days=1)}
    if lowered in keywords:
        moment = keywords[lowered]
        return moment if isinstance(moment, int) else int(moment.timestamp())
    relative = _RELATIVE_TIME.match(stripped)
    if relative:
        seconds = int(relative.group(1)) * _RELATIVE_UNITS[relative.group(2).lower()]
        return now - seconds if relative.group(3) else now + seconds
    try:
        parsed = datetime.fromisoformat(stripped.replace("Z", "+00:00") if stripped.endswith("Z") else stripped)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp())


def php_date(epoch: Any) -> str:
    """Return PHP `date('Y-m-d', $epoch)` in UTC, the emulated server's time zone."""
    return datetime.fromtimestamp(php_int(epoch), timezone.utc).strftime("%Y-%m-%d")


def mysql_date_text(value: Any) -> str:
    """Return a filter value as MySQL compares it with a DATE column: YYYY-MM-DD when it reads as a date."""
    text = php_strval(value).strip()
    match = re.match(r"^(\d{4})-(\d{1,2})-(\d{1,2})", text)
    if match:
        try:
            return date(int(match.group(1)), int(match.group(2)), int(match.group(3))).isoformat()
        except ValueError:
            return text
    return text
