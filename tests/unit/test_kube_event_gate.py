"""EventGate: a Module informer lists early, but its events wait until the caches are synced."""

from __future__ import annotations

from ooto.kube.informer import EventGate, WatchEvent


def event(name: str, kind: str = "ADDED") -> WatchEvent:
    return WatchEvent(kind, {"metadata": {"namespace": "ns", "name": name}})  # type: ignore[arg-type]


def test_events_are_held_until_open_then_delivered_in_order() -> None:
    seen: list[str] = []
    gate = EventGate(lambda e: seen.append(f"{e.type} {e.obj['metadata']['name']}"))
    gate(event("a"))
    gate(event("b"))
    gate(event("a", "MODIFIED"))
    assert seen == []
    gate.open()
    assert seen == ["ADDED a", "ADDED b", "MODIFIED a"]
    gate(event("c"))
    assert seen[-1] == "ADDED c"
    gate.open()  # a second open delivers nothing twice
    assert len(seen) == 4
