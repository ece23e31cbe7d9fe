"""Relist after 410 Gone: only real differences become events."""

from typing import Any

from ooto.kube.informer import diff_relist, object_key


def obj(name: str, rv: str, uid: str = "", ns: str = "ns") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": rv, "uid": uid or name}}


def test_unchanged_objects_yield_nothing() -> None:
    cache = {object_key(o): o for o in [obj("a", "1"), obj("b", "2")]}
    events, new_cache = diff_relist(cache, [obj("a", "1"), obj("b", "2")])
    assert events == []
    assert set(new_cache) == {("ns", "a"), ("ns", "b")}


def test_added_modified_and_deleted_while_away() -> None:
    cache = {object_key(o): o for o in [obj("kept", "1"), obj("changed", "2"), obj("gone", "3")]}
    fresh = [obj("kept", "1"), obj("changed", "7"), obj("new", "8")]
    events, new_cache = diff_relist(cache, fresh)
    assert [(e.type, e.key[1]) for e in events] == [
        ("MODIFIED", "changed"),
        ("ADDED", "new"),
        ("DELETED", "gone"),
    ]
    deleted = events[-1].obj
    assert deleted["metadata"]["resourceVersion"] == "3"  # the last state we knew
    assert set(new_cache) == {("ns", "kept"), ("ns", "changed"), ("ns", "new")}


def test_recreated_under_the_same_name_is_a_delete_then_an_add() -> None:
    cache = {("ns", "a"): obj("a", "1", uid="old")}
    events, _ = diff_relist(cache, [obj("a", "5", uid="new")])
    assert [(e.type, e.obj["metadata"]["uid"]) for e in events] == [
        ("DELETED", "old"),
        ("ADDED", "new"),
    ]


def test_same_name_in_two_namespaces_are_two_objects() -> None:
    events, cache = diff_relist({}, [obj("a", "1", ns="x"), obj("a", "2", ns="y")])
    assert len(events) == 2
    assert len(cache) == 2


def test_cluster_scoped_objects_key_on_an_empty_namespace() -> None:
    node = {"metadata": {"name": "n1", "resourceVersion": "1", "uid": "u"}}
    assert object_key(node) == ("", "n1")
