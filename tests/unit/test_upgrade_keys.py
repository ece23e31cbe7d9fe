"""Module-ready label keys and upgrade annotation keys: valid, deterministic, distinct."""

from __future__ import annotations

import re

import pytest

from ooto.domain.upgrade.keys import (
    MAX_NAME_PART,
    module_name_part,
    ready_label_key,
    upgrade_annotation_key,
)

NAME_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def test_a_short_module_keeps_its_namespace_and_name_verbatim() -> None:
    assert ready_label_key("gpu", "fpga-driver") == "ready.ooto.sigs.k8s.io/gpu.fpga-driver"
    assert upgrade_annotation_key("gpu", "m") == "upgrade.ooto.sigs.k8s.io/gpu.m"


def test_exactly_63_characters_fit_verbatim() -> None:
    namespace, name = "n" * 20, "m" * 42
    assert module_name_part(namespace, name) == f"{namespace}.{name}"


def test_a_120_character_namespace_and_name_gets_a_valid_hashed_key() -> None:
    namespace, name = "team-" + "a" * 53, "driver." + "b" * 59  # 58 + 1 + 66 = 125 with the dot
    assert len(namespace) + len(name) >= 120
    part = module_name_part(namespace, name)
    assert len(part) == MAX_NAME_PART and NAME_PART.match(part)
    assert part.startswith("team-aaaa")
    assert part == module_name_part(namespace, name)  # deterministic


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a" * 40, "x" * 40 + "1"), ("a" * 40, "x" * 40 + "2")),  # differ only past the cut
        (("ns", "a." + "b" * 70), ("ns.a", "b" * 70)),  # same dotted text, different pairs
    ],
)
def test_long_keys_that_share_their_readable_prefix_stay_distinct(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    assert module_name_part(*first) != module_name_part(*second)


def test_a_cut_that_ends_on_a_separator_still_ends_alphanumeric() -> None:
    namespace = "n" * 45
    part = module_name_part(namespace, "-" * 5 + "x" * 40)
    assert NAME_PART.match(part), part
