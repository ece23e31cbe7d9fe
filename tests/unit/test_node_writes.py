"""NodeWrites: one write in flight per node, and the newest view of a node."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from actors.node_writes import NodeWrites


class Nodes:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.items.get(name)

    def list(self) -> Iterable[dict[str, Any]]:
        return self.items.values()


def node(version: int, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": "n1", "resourceVersion": str(version), "labels": labels}}


def written(nodes: Nodes, reply: dict[str, Any]) -> NodeWrites:
    writes = NodeWrites(nodes)
    assert writes.start("n1", ({}, {}, None, False)) is not None
    writes.done("n1", reply)
    return writes


def test_the_reply_of_a_write_is_the_view_until_the_cache_catches_up() -> None:
    nodes = Nodes()
    nodes.items["n1"] = node(1)
    writes = written(nodes, node(2, mine="yes"))
    assert writes.view("n1") == node(2, mine="yes")
    nodes.items["n1"] = node(3)
    assert writes.view("n1") == node(3)


def test_a_node_deleted_after_a_write_is_gone_from_the_view() -> None:
    nodes = Nodes()
    nodes.items["n1"] = node(1)
    writes = written(nodes, node(2))
    del nodes.items["n1"]
    assert writes.view("n1") is None
    nodes.items["n1"] = node(5)  # re-registered under the same name
    assert writes.view("n1") == node(5)
