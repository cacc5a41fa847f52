"""Selecting events and records for a workspace, with MISP's event-scope tag semantics.

An event matches the tags of a selection when it (or any of its attributes) carries at least one
`or` tag if any are given, every `and` tag (each on the event or on one of its attributes), and no
`not` tag at event level. Names match case-insensitively and `%` matches any run of characters, as
MISP's SQL `LIKE` does. Orgs match the creator org's name or uuid, case-insensitively. An event
shared with a sharing group (distribution 4) is selected only when `sharing_groups` names its
group (by id, uuid or name); with `sharing_groups` unset, `distribution` alone decides.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

from misp2sentinel.mapping.markings import TLP_RANK

if TYPE_CHECKING:
    from misp2sentinel.config import Selection

# MISP's distribution level 4 limits an event to the members of its sharing group.
SHARING_GROUP_DISTRIBUTION = 4


@lru_cache(maxsize=1024)
def _tag_matcher(pattern: str) -> re.Pattern:
    parts = [re.escape(piece) for piece in pattern.strip().lower().split("%")]
    return re.compile("^" + ".*".join(parts) + "$", re.DOTALL)


def _any_matches(pattern: str, names: set[str]) -> bool:
    if "%" not in pattern:
        return pattern.strip().lower() in names
    matcher = _tag_matcher(pattern)
    return any(matcher.match(name) for name in names)


def event_tag_names(event: dict) -> tuple[set[str], set[str]]:
    """Return (event-level tag names, tag names of the event and all its attributes), lower case."""
    event_level = {tag.lower() for tag in event["tags"]}
    everything = set(event_level)
    for attribute in event["attributes"]:
        everything.update(tag.lower() for tag in attribute["tags"])
    for misp_object in event["objects"]:
        for attribute in misp_object["attributes"]:
            everything.update(tag.lower() for tag in attribute["tags"])
    return event_level, everything


def event_selected(event: dict, selection: Selection) -> str | None:
    """Return None when the event is selected, else the reason it is not."""
    tags = selection.tags
    if not tags.is_empty():
        event_level, everything = event_tag_names(event)
        if tags.or_ and not any(_any_matches(t, everything) for t in tags.or_):
            return f"carries none of the tags {tags.or_}"
        missing = [t for t in tags.and_ if not _any_matches(t, everything)]
        if missing:
            return f"lacks the required tags {missing}"
        excluded = [t for t in tags.not_ if _any_matches(t, event_level)]
        if excluded:
            return f"carries the excluded tags {excluded}"
    if selection.orgs:
        org = event.get("orgc") or {}
        names = {str(org.get("name") or "").lower(), str(org.get("uuid") or "").lower()} - {""}
        wanted = {o.lower() for o in selection.orgs}
        if not names & wanted:
            return f"its creator org {org.get('name') or org.get('uuid') or '(none)'} is not in {selection.orgs}"
    if selection.distribution and event.get("distribution") not in selection.distribution:
        return f"its distribution {event.get('distribution')} is not in {selection.distribution}"
    if event.get("distribution") == SHARING_GROUP_DISTRIBUTION and selection.sharing_groups is not None:
        group = event.get("sharing_group") or {}
        names = {str(group.get(key)).lower() for key in ("id", "uuid", "name") if group.get(key)}
        if not names & {g.lower() for g in selection.sharing_groups}:
            shown = group.get("name") or group.get("uuid") or group.get("id") or "(unknown)"
            return f"its sharing group {shown} is not in {selection.sharing_groups}"
    return None


def max_rank(selection: Selection | None, default_rank: int) -> int:
    if selection is None or selection.max_tlp is None:
        return default_rank
    return min(TLP_RANK[selection.max_tlp], default_rank)
