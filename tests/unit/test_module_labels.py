from __future__ import annotations

from typing import Any

from ooto.domain.kernels import label_safe
from ooto.domain.module_labels import label_rival, rival_message

LONG = "a" * 60 + "-first"  # 66 characters: its label value is hashed


def module(name: str, created: str, namespace: str = "ns", **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created, **meta}
    }


def test_a_name_crafted_after_another_ones_hashed_label_loses_to_the_older_module() -> None:
    crafted = label_safe(LONG)
    assert crafted != LONG and len(crafted) <= 63  # a valid Module name of its own
    old, new = module(LONG, "2026-01-01T00:00:00Z"), module(crafted, "2026-01-02T00:00:00Z")
    assert label_rival(new, [old, new]) == LONG
    assert label_rival(old, [old, new]) is None


def test_the_older_module_wins_whichever_is_seen_first_and_ties_go_by_name() -> None:
    crafted = label_safe(LONG)
    a, b = module(LONG, "2026-01-01T00:00:00Z"), module(crafted, "2026-01-01T00:00:00Z")
    first, second = sorted([LONG, crafted])
    assert label_rival(a if second == LONG else b, [b, a]) == first


def test_long_names_that_differ_only_beyond_the_cut_never_meet() -> None:
    one, two = module(LONG, "2026-01-01T00:00:00Z"), module(LONG + "x", "2026-01-02T00:00:00Z")
    assert label_safe(LONG) != label_safe(LONG + "x")
    assert label_rival(two, [one, two]) is None


def test_other_namespaces_and_deleting_modules_are_no_rivals() -> None:
    crafted = label_safe(LONG)
    new = module(crafted, "2026-01-02T00:00:00Z")
    elsewhere = module(LONG, "2026-01-01T00:00:00Z", namespace="other")
    going = module(LONG, "2026-01-01T00:00:00Z", deletionTimestamp="2026-01-03T00:00:00Z")
    assert label_rival(new, [elsewhere, going, new]) is None


def test_the_message_names_both_modules_and_the_value() -> None:
    message = rival_message(label_safe(LONG), LONG)
    assert LONG in message and repr(label_safe(LONG)) in message
