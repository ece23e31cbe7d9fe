"""YAML that ooto prints reads back the same in Go's YAML 1.1 (kubectl), not only in PyYAML.

`go_yaml_v2_type` is a model of how go-yaml v2 (what sigs.k8s.io/yaml, hence kubectl, uses)
resolves a plain scalar (its resolve.go: the fixed table, then timestamps, then, with every `_`
removed, Go's ParseInt with base 0 and the YAML float pattern). The property: every string either
comes out quoted, or is plain and the model reads it as a string; and PyYAML reads back exactly
what went in.
`tests/integration/test_render_apply.py` checks the same against the real kubectl.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ooto.domain.manifest_yaml import dump_manifest, dump_manifests

_GO_TABLE = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE"), "bool"),
    **dict.fromkeys(("on", "On", "ON", "n", "N", "no", "No", "NO"), "bool"),
    **dict.fromkeys(("false", "False", "FALSE", "off", "Off", "OFF"), "bool"),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), "null"),
    **dict.fromkeys((".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF"), "float"),
    **dict.fromkeys(("+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF"), "float"),
    "<<": "merge",
}  # fmt: skip
_GO_INT = re.compile(r"^[-+]?(?:0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|0[0-7]*|[1-9][0-9]*)$")
_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_GO_TIMESTAMP = re.compile(
    r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"(?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]*)?"
    r"(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)?$"
)
TRICKY = [
    *_GO_TABLE,
    "1.10", "0x1F", "0X1f", "1e3", "1E-3", "-1.5e+3", "2001-12-14", "2001-1-2",
    "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10", "0o17", "0777", "0b1010",
    "-0b11", "1_000", "0x_1F", "1:20", "190:20:30.15", "1e_3", "+_1", "1e3_", "._5",
    ".5", "5.", "+12", "-0", "=",
    "1.2.3", "5.4.0-1054-gke", "6.1.0-rpi7-rpi-v8+", "yes please", "y ", " y", "x: y",
    "#", "- a", "[a]", "{a: 1}", "'q'", '"q"', "a\nb", "a\n", "\tx", "é", "\x85", "\u2028",
]  # fmt: skip


def go_yaml_v2_type(plain: str) -> str:
    """The type go-yaml v2 gives a plain scalar (approximately: see the module docstring)."""
    if plain in _GO_TABLE:
        return _GO_TABLE[plain]
    if plain[:1] not in set("+-.0123456789"):
        return "str"
    if _GO_TIMESTAMP.match(plain):
        return "timestamp"
    digits = plain.replace("_", "")  # resolve.go drops every underscore first
    if _GO_INT.match(digits):
        return "int"
    if _GO_FLOAT.match(digits):
        return "float"
    return "str"


def plain_scalars(text: str) -> list[str]:
    return [
        event.value
        for event in yaml.parse(text)
        if isinstance(event, yaml.ScalarEvent) and event.style is None
    ]


strings = st.one_of(
    st.sampled_from(TRICKY),
    st.from_regex(r"\A[-+._0-9][-+0-9_.:xXoObBeE]{0,7}\Z"),
    st.from_regex(r"\A[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ][0-9:.]{1,10})?\Z"),
    st.text(max_size=12),
)


@settings(max_examples=400)
@given(st.lists(strings, min_size=1, max_size=8))
def test_strings_read_back_as_the_same_strings(values: list[str]) -> None:
    document = {"data": {f"k{i}": value for i, value in enumerate(values)}, "keys": {}}
    for value in values:
        document["keys"][value] = "v"
    text = dump_manifest(document)
    assert yaml.safe_load(text) == document
    for plain in plain_scalars(text):
        assert go_yaml_v2_type(plain) == "str", f"{plain!r} printed plain in:\n{text}"


def test_the_model_agrees_with_go_on_known_cases() -> None:
    """JSON types kubectl 1.35 printed for these plain scalars (`kubectl label --local -f
    x.yaml z=1 -o json`): go-yaml v2 hands timestamps on as strings."""
    seen = {"y": "bool", "n": "bool", "on": "bool", "1e3": "number", "0o17": "number",
            "1_000": "number", "1:20": "string", "0777": "number", "2001-1-2": "string",
            "2001-12-14": "string", ".5": "number", "1.": "number", "0x1F": "number",
            "-0x1F": "number", "1_0.5": "number", "gke": "string"}  # fmt: skip
    as_json = {"int": "number", "float": "number", "timestamp": "string", "str": "string"}
    for plain, json_type in seen.items():
        model = go_yaml_v2_type(plain)
        assert as_json.get(model, model) == json_type, plain


def test_real_values_stay_typed_and_readable() -> None:
    obj: dict[str, Any] = {
        "replicas": 3,
        "enabled": True,
        "ratio": 0.5,
        "nothing": None,
        "name": "plain-name",
        "script": "set -u\necho hi\n",
    }
    text = dump_manifests([obj])
    assert text.startswith("---\n")
    assert "enabled: true\n" in text and "replicas: 3\n" in text and "nothing: null\n" in text
    assert "name: plain-name\n" in text
    assert "script: |\n  set -u\n  echo hi\n" in text
    assert yaml.safe_load(text) == obj
