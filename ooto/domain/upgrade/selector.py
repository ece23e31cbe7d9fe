"""Label selectors as `kubectl get -l` writes them, and which pods an upgrade must evict.

Grammar (the API server's): requirements separated by commas, each `key=value`, `key==value`,
`key!=value`, `key`, `!key`, `key in (a,b)` or `key notin (a,b)`. An empty selector matches
everything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_KEY = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s+\(([^()]*)\)$")
_EQUALS = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # in, notin, exists, absent
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "absent":
            return not present
        if self.operator == "in":
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


Selector = tuple[Requirement, ...]


def parse_selector(text: str) -> Selector:
    """The requirements of `text`; ValueError naming the part that is not a selector."""
    return tuple(_requirement(part.strip()) for part in _split(text) if part.strip())


def matches(selector: Selector, labels: Mapping[str, str]) -> bool:
    return all(requirement.matches(labels) for requirement in selector)


def _split(text: str) -> list[str]:
    """Commas separate requirements, except inside the parentheses of a set."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def _requirement(part: str) -> Requirement:
    if found := _SET.match(part):
        values = frozenset(v.strip() for v in found.group(3).split(",") if v.strip())
        if not values or not all(re.fullmatch(_VALUE, v) for v in values):
            raise ValueError(f"invalid label selector value list in {part!r}")
        return Requirement(found.group(1), found.group(2), values)
    if found := _EQUALS.match(part):
        operator = "notin" if found.group(2) == "!=" else "in"
        return Requirement(found.group(1), operator, frozenset({found.group(3)}))
    if found := _EXISTS.match(part):
        return Requirement(found.group(2), "absent" if found.group(1) else "exists")
    raise ValueError(f"invalid label selector requirement {part!r}")
