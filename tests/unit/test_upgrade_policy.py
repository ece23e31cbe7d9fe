"""upgradePolicy: selectors, maxParallel, and which pods leave a node before its upgrade."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ooto.domain.api import Module
from ooto.domain.upgrade.budget import max_parallel
from ooto.domain.upgrade.selector import matches, parse_selector
from ooto.domain.upgrade.workloads import departures, must_evict


def module(policy: dict[str, Any] | None = None) -> Module:
    spec: dict[str, Any] = {
        "kernelMappings": [{"regexp": ".", "containerImage": "r/m:1"}],
        "moduleLoader": {"name": "x"},
    }
    if policy is not None:
        spec["upgradePolicy"] = policy
    return Module.model_validate({"metadata": {"name": "m", "namespace": "ns"}, "spec": spec})


def pod(name: str, labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": extra.pop("namespace", "apps"), "labels": labels or {}}
    meta.update(extra.pop("meta", {}))
    return {"metadata": meta, "spec": {"containers": extra.pop("containers", [{}])}, **extra}


class TestSelectors:
    @pytest.mark.parametrize(
        ("text", "labels", "expected"),
        [
            ("", {}, True),
            ("app=a", {"app": "a"}, True),
            ("app==a", {"app": "b"}, False),
            ("app!=a", {}, True),
            ("tier in (x, y),!gpu", {"tier": "y"}, True),
            ("tier notin (x)", {"tier": "x"}, False),
            ("example.com/uses", {"example.com/uses": ""}, True),
        ],
    )
    def test_kubectl_syntax(self, text: str, labels: dict[str, str], expected: bool) -> None:
        assert matches(parse_selector(text), labels) is expected

    @pytest.mark.parametrize("text", ["a b", "=x", "a in ()", "a in (x", "a=(", "a,,=b"])
    def test_nonsense_is_an_error_naming_the_part(self, text: str) -> None:
        with pytest.raises(ValueError, match="invalid label selector"):
            parse_selector(text)

    def test_a_bad_selector_is_refused_with_the_module(self) -> None:
        with pytest.raises(ValidationError, match="podDeletion"):
            module({"podDeletion": {"podSelector": "app in ("}})


@pytest.mark.parametrize(
    ("value", "nodes", "expected"),
    [(1, 20, 1), (3, 20, 3), ("10%", 20, 2), ("10%", 21, 3), ("1%", 5, 1), ("100%", 7, 7)],
)
def test_max_parallel(value: int | str, nodes: int, expected: int) -> None:
    assert max_parallel(value, nodes) == expected


@pytest.mark.parametrize("bad", [0, -1, "0%", "101%", "abc", "-5%"])
def test_max_parallel_out_of_range_is_refused(bad: Any) -> None:
    with pytest.raises(ValidationError):
        module({"maxParallel": bad})


class TestDepartures:
    POLICY = {"podDeletion": {"podSelector": "app=uses", "resourceNames": ["example.com/fpga"]}}

    def test_matching_pods_are_evicted_and_the_device_plugin_is_waited_for(self) -> None:
        fpga = {"resources": {"limits": {"example.com/fpga": "1"}}}
        pods = [
            pod("by-label", {"app": "uses"}),
            pod("by-resource", containers=[fpga]),
            pod("other", {"app": "other"}),
            pod(
                "dp",
                {"ooto.sigs.k8s.io/module": "m", "ooto.sigs.k8s.io/role": "device-plugin"},
                namespace="ns",
            ),
            pod("loader", {"app": "uses", "ooto.sigs.k8s.io/role": "module-loader"}),
            pod("leaving", {"app": "uses"}, meta={"deletionTimestamp": "now"}),
            pod("done", {"app": "uses"}, status={"phase": "Succeeded"}),
        ]
        found = departures(module(self.POLICY), "m", pods)
        assert [p["metadata"]["name"] for p in found.evict] == ["by-label", "by-resource"]
        assert found.waiting == 4  # by-label, by-resource, dp, leaving
        assert must_evict(module(self.POLICY))

    def test_a_drain_evicts_all_but_daemonset_and_mirror_pods(self) -> None:
        policy = {"drain": {"enable": True}}
        daemon = {"ownerReferences": [{"kind": "DaemonSet", "name": "d"}]}
        mirror = {"annotations": {"kubernetes.io/config.mirror": "x"}}
        pods = [pod("web"), pod("daemon", meta=daemon), pod("static", meta=mirror)]
        found = departures(module(policy), "m", pods)
        assert [p["metadata"]["name"] for p in found.evict] == ["web"]

    def test_without_a_policy_only_the_device_plugin_must_leave(self) -> None:
        labels = {"ooto.sigs.k8s.io/module": "m", "ooto.sigs.k8s.io/role": "device-plugin"}
        found = departures(module(), "m", [pod("web"), pod("dp", labels, namespace="ns")])
        assert found.evict == () and found.waiting == 1
        assert not must_evict(module()) and not must_evict(module({"drain": {"enable": False}}))


def test_a_drain_holds_pods_with_empty_dir_data_unless_allowed() -> None:
    scratch = pod("scratch")
    scratch["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    held = departures(module({"drain": {"enable": True}}), "m", [scratch])
    assert held.evict == () and held.waiting == 1
    assert held.held == ("apps/scratch has emptyDir data and drain.deleteEmptyDir is false",)
    allowed = departures(
        module({"drain": {"enable": True, "deleteEmptyDir": True}}), "m", [scratch]
    )
    assert [p["metadata"]["name"] for p in allowed.evict] == ["scratch"] and allowed.held == ()
    scratch["metadata"]["labels"] = {"app": "uses"}  # podDeletion names it: it goes anyway
    both = {"drain": {"enable": True}, "podDeletion": {"podSelector": "app=uses"}}
    assert [p["metadata"]["name"] for p in departures(module(both), "m", [scratch]).evict]


class TestDaemonSetPodsAreNeverEvicted:
    """A DaemonSet pod podDeletion names would be recreated on the cordoned node at once."""

    POLICY = {"podDeletion": {"podSelector": "app=uses"}}
    DAEMON = {"ownerReferences": [{"kind": "DaemonSet", "name": "exporter"}]}
    LABEL = "ready.ooto.sigs.k8s.io/ns.m"

    def exporter(self, spec: dict[str, Any]) -> dict[str, Any]:
        found = pod("exporter", {"app": "uses"}, meta=self.DAEMON)
        found["spec"].update(spec)
        return found

    @pytest.mark.parametrize(
        "spec",
        [
            {"nodeSelector": {LABEL: "true"}},
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": LABEL, "operator": "Exists"}]}
                            ]
                        }
                    }
                }
            },
        ],
        ids=["nodeSelector", "affinity"],
    )
    def test_one_that_follows_the_ready_label_is_waited_for(self, spec: dict[str, Any]) -> None:
        found = departures(module(self.POLICY), "m", [self.exporter(spec)])
        assert (found.evict, found.waiting, found.held) == ((), 1, ())

    def test_one_that_does_not_holds_the_node_and_says_why(self) -> None:
        found = departures(module(self.POLICY), "m", [self.exporter({"nodeSelector": {}})])
        assert (found.evict, found.waiting) == ((), 1)
        assert found.held == (
            "apps/exporter is a DaemonSet pod that podDeletion names: its DaemonSet must "
            f"select on {self.LABEL}=true to leave",
        )

    def test_a_selector_naming_ooto_s_own_pods_evicts_none_of_them(self) -> None:
        """Loaders (this Module's or another's) never; this Module's device plugin is waited for,
        another Module's is a DaemonSet pod like any other."""
        policy = {"podDeletion": {"podSelector": "ooto.sigs.k8s.io/role"}}
        loader = {"ooto.sigs.k8s.io/module": "m", "ooto.sigs.k8s.io/role": "module-loader"}
        plugin = {"ooto.sigs.k8s.io/module": "m", "ooto.sigs.k8s.io/role": "device-plugin"}
        other = {"ooto.sigs.k8s.io/module": "o", "ooto.sigs.k8s.io/role": "device-plugin"}
        pods = [
            pod("loader", loader, namespace="ns", meta=self.DAEMON),
            pod("other-loader", {**loader, "ooto.sigs.k8s.io/module": "o"}, meta=self.DAEMON),
            pod("dp", plugin, namespace="ns", meta=self.DAEMON),
            pod("other-dp", other, namespace="ns", meta=self.DAEMON),
        ]
        found = departures(module(policy), "m", pods)
        assert found.evict == () and found.waiting == 2
        assert [why.split(" ")[0] for why in found.held] == ["ns/other-dp"]
