"""Indicator candidates (`Part`) and the two pattern styles built from them.

A `Part` is one observable of an attribute: one comparison such as `ipv4-addr:value = '…'`, or a
detection rule in another pattern language. The simple style (the default) sends each part as its
own single-comparison pattern, because Sentinel fills `ObservableKey`/`ObservableValue`, which
its built-in TI-map analytics match on, only for patterns without `AND`. The combined style joins
every comparison of a composite attribute or of an object into one pattern, adding the
comparisons that the simple style keeps in the description (a port, a file name, a registry value).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# (object type, property path, pattern literal), e.g. ("ipv4-addr", "value", "'198.51.100.7'").
Comparison = tuple[str, str, str]


@dataclass(slots=True)
class Part:
    """One indicator candidate of an attribute.

    `extra` lists comparisons that only the combined style uses. `joined` replaces `comparison` in
    a combined pattern when another comparison there has the same object type, so that related
    values land on one object (`network-traffic:dst_ref.value` next to `network-traffic:dst_port`).
    `pattern_text` is a pattern used as it is: a detection rule (with its `pattern_type`) or a
    joined STIX pattern. `network` and `digest` let the sanity filter see an address or a file
    hash without reparsing.
    """

    part: str
    kind: str
    name: str
    comparison: Comparison | None = None
    notes: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    extra: list[Comparison] = field(default_factory=list)
    joined: Comparison | None = None
    pattern_type: str = "stix"
    pattern_text: str | None = None
    network: object = None
    digest: tuple[str, str] | None = None

    @property
    def pattern(self) -> str:
        if self.pattern_text is not None:
            return self.pattern_text
        object_type, path, value = self.comparison
        return f"[{object_type}:{path} = {value}]"


@dataclass(slots=True)
class InvalidPart:
    """A half of a composite value, or an object attribute, that failed its check or the sanity filter."""

    part: str
    message: str
    reason: str | None = None


def combined_comparisons(parts: list[Part]) -> list[Comparison]:
    """Return the comparisons of a combined pattern over `parts`, in order."""
    chosen: list[Comparison] = []
    for index, part in enumerate(parts):
        comparison = part.comparison
        if part.joined is not None:
            others = set()
            for other_index, other in enumerate(parts):
                for candidate in (other.comparison, other.joined) if other_index != index else ():
                    if candidate is not None:
                        others.add(candidate[0])
                others.update(extra[0] for extra in other.extra)
            if part.joined[0] in others:
                comparison = part.joined
        chosen.append(comparison)
        chosen.extend(part.extra)
    return chosen


def combined_pattern(comparisons: list[Comparison]) -> str:
    """Join comparisons into one pattern: one observation per object type, joined by AND.

    Inside one observation, distinct values of a single-valued property are alternatives (OR),
    because one object has one value. Values of a list property (a path with `[*]`) must all be
    present (AND). Repeated comparisons appear once.
    """
    groups: dict[str, dict[str, list[str]]] = {}
    for object_type, path, value in comparisons:
        values = groups.setdefault(object_type, {}).setdefault(path, [])
        if value not in values:
            values.append(value)

    observations = []
    for object_type, paths in groups.items():
        terms = []
        for path, values in paths.items():
            if len(values) == 1 or "[*]" in path:
                terms.extend(f"{object_type}:{path} = {value}" for value in values)
            else:
                terms.append("(" + " OR ".join(f"{object_type}:{path} = {value}" for value in values) + ")")
        observations.append("[" + " AND ".join(terms) + "]")
    return " AND ".join(observations)
