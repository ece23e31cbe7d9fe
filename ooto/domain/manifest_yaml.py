"""YAML for Kubernetes objects that reads back the same in Go, whose YAML is 1.1.

Pure: no I/O. kubectl reads YAML with sigs.k8s.io/yaml (go-yaml v2 rules, YAML 1.1), which takes
a plain `y`, `n`, `on`, `off`, `1e3`, `0o17`, `1_000` or `+_1` for a bool or a number where
PyYAML (mostly YAML 1.1 too, but not for these) reads a string. A
DaemonSet whose nodeSelector says `gpu: y` then fails to apply (a bool where a string must be).

`ManifestDumper` resolves plain scalars as go-yaml v2 does (on top of PyYAML's own YAML 1.1
rules, which add sexagesimals such as `1:20` and `=`), so PyYAML's emitter quotes any string that
either reader would take for something else; everything else stays plain. Multi-line
strings (the loader's scripts) are written as literal blocks, which read the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

_TAG = "tag:yaml.org,2002:"
_GO_TABLE = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE"), "bool"),
    **dict.fromkeys(("on", "On", "ON", "n", "N", "no", "No", "NO"), "bool"),
    **dict.fromkeys(("false", "False", "FALSE", "off", "Off", "OFF"), "bool"),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), "null"),
    **dict.fromkeys((".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF"), "float"),
    **dict.fromkeys(("+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF"), "float"),
    "<<": "merge",
}  # fmt: skip
_NUMBER_START = frozenset("+-.0123456789")
# Checked after removing every `_`, as go-yaml v2 does before Go's ParseInt(s, 0, 64).
_INT = re.compile(r"^[-+]?(?:0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|[0-9]+)$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
# go-yaml v2 tries time formats on anything that starts with a date; quote all of those.
_TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt \t].*)?$")


def go_plain_type(value: str) -> str | None:
    """The type go-yaml v2 gives `value` as a plain scalar, None for a string."""
    if value in _GO_TABLE:
        return _GO_TABLE[value]
    if value[:1] not in _NUMBER_START:
        return None
    if _TIMESTAMP.match(value):
        return "timestamp"
    digits = value.replace("_", "")
    if _INT.match(digits):
        return "int"
    if _FLOAT.match(digits):
        return "float"
    return None


class ManifestDumper(yaml.SafeDumper):
    """SafeDumper whose resolver also knows what Go's YAML takes for a non-string: the emitter
    then quotes such strings, while real bools and numbers stay plain."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            go_type = go_plain_type(value)
            if go_type is not None:
                return _TAG + go_type
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


ManifestDumper.add_representer(str, _represent_str)


def dump_manifests(objects: Iterable[dict[str, Any]]) -> str:
    """Objects as `---`-separated YAML documents, keys sorted, no line folding."""
    return yaml.dump_all(
        list(objects),
        Dumper=ManifestDumper,
        explicit_start=True,
        sort_keys=True,
        width=1 << 20,
        allow_unicode=False,
    )


def dump_manifest(obj: Any) -> str:
    return yaml.dump(obj, Dumper=ManifestDumper, sort_keys=True, width=1 << 20)
