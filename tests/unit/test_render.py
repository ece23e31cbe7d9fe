"""Rendering the DaemonSets of one (Module, kernel), as docs/architecture.md's "Pods" says."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from ooto.domain.api.module import Module
from ooto.domain.digest import LOAD_DIGEST_ANNOTATION, load_digest
from ooto.domain.kernels import KernelPlan, daemonset_name, kernel_label_value, plan_kernel
from ooto.domain.render import (
    LABEL_KERNEL,
    LABEL_MODULE,
    LABEL_ROLE,
    NODE_KERNEL_ANNOTATION,
    NODE_KERNEL_LABEL,
    SPEC_HASH_ANNOTATION,
    node_kernel_labels,
    render_daemonsets,
    spec_hash,
)
from ooto.domain.stored import (
    daemonset_ready,
    owned_by,
    pod_images,
    stored_hash,
    trim_daemonset,
    uid_of,
)
from ooto.domain.upgrade.facts import template_digest

SAMPLE = """
apiVersion: ooto.sigs.k8s.io/v1alpha1
kind: Module
metadata: {name: module-sample, namespace: kmm, uid: 1234-abcd}
spec:
  additionalVolumes: [{name: some-volume, configMap: {name: some-configmap}}]
  devicePlugin:
    name: overwritten-anyway
    image: some-image
    volumeMounts: [{name: some-volume, mountPath: /etc/dp}]
  moduleLoader:
    name: overwritten-anyway
    image: overwritten-anyway
    securityContext: {capabilities: {add: [SYS_MODULE]}}
    lifecycle: {preStop: {exec: {command: [modprobe, -r, sample]}}}
  kernelMappings:
    - literal: 5.16.11-200.fc35.x86_64
      containerImage: quay.io/vendor/module-sample:fedora-5.16.11-200.fc35.x86_64
    - regexp: '^.*\\-gke$'
      containerImage: quay.io/vendor/module-sample:gke
    - regexp: '.'
      containerImage: quay.io/vendor/module-sample:${KERNEL_FULL_VERSION}
  selector:
    feature.node.kubernetes.io/cpu-cpuid.VMX: true
  tolerations: [{key: dedicated, operator: Exists, effect: NoSchedule}]
  serviceAccountName: loader
  imageRepoSecret: {name: pull-secret}
"""


def sample(**spec_changes: Any) -> Module:
    raw = yaml.safe_load(SAMPLE)
    raw["spec"].update(spec_changes)
    return Module.model_validate(raw)


def plan_for(module: Module, kernel: str) -> KernelPlan:
    plan = plan_kernel(module, kernel)
    assert plan is not None
    return plan


def render(module: Module, kernel: str = "5.4.0-1054-gke") -> list[dict[str, Any]]:
    return render_daemonsets(module, plan_for(module, kernel))


def pod_spec(daemonset: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = daemonset["spec"]["template"]["spec"]
    return spec


class TestObjects:
    def test_module_loader_and_device_plugin_daemonsets(self) -> None:
        loader, plugin = render(sample())
        assert (loader["apiVersion"], loader["kind"]) == ("apps/v1", "DaemonSet")
        assert loader["metadata"]["name"] == daemonset_name(
            "module-sample", "module-loader", "5.4.0-1054-gke"
        )
        assert plugin["metadata"]["name"] == daemonset_name(
            "module-sample", "device-plugin", "5.4.0-1054-gke"
        )
        assert loader["metadata"]["namespace"] == plugin["metadata"]["namespace"] == "kmm"

    def test_no_device_plugin_means_one_daemonset(self) -> None:
        assert len(render(sample(devicePlugin=None))) == 1

    def test_labels_and_immutable_selector_use_only_our_labels(self) -> None:
        for daemonset, role in zip(
            render(sample()), ["module-loader", "device-plugin"], strict=True
        ):
            ours = {LABEL_MODULE: "module-sample", LABEL_KERNEL: "5.4.0-1054-gke", LABEL_ROLE: role}
            assert daemonset["spec"]["selector"] == {"matchLabels": ours}
            labels = {**ours, "app.kubernetes.io/managed-by": "ooto"}
            assert daemonset["metadata"]["labels"] == labels
            assert daemonset["spec"]["template"]["metadata"]["labels"] == labels

    def test_owner_reference_to_the_module(self) -> None:
        for daemonset in render(sample()):
            assert daemonset["metadata"]["ownerReferences"] == [
                {
                    "apiVersion": "ooto.sigs.k8s.io/v1alpha1",
                    "kind": "Module",
                    "name": "module-sample",
                    "uid": "1234-abcd",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]

    def test_node_selector_is_module_selector_plus_kernel_label(self) -> None:
        kernel = "6.1.0-rpi7-rpi-v8+"
        for daemonset in render(sample(), kernel):
            extra = {}
            if daemonset["metadata"]["labels"][LABEL_ROLE] == "device-plugin":
                extra = {"ready.ooto.sigs.k8s.io/kmm.module-sample": "true"}  # follows the module
            assert pod_spec(daemonset)["nodeSelector"] == {
                "feature.node.kubernetes.io/cpu-cpuid.VMX": "true",
                NODE_KERNEL_LABEL: kernel_label_value(kernel),
                **extra,
            }
            assert daemonset["spec"]["selector"]["matchLabels"][LABEL_KERNEL] == kernel_label_value(
                kernel
            )


class TestModuleLoader:
    def test_container_name_and_image_are_ours_the_rest_is_the_users(self) -> None:
        (container,) = pod_spec(render(sample())[0])["containers"]
        assert container["name"] == "module-loader"
        assert container["image"] == "quay.io/vendor/module-sample:gke"
        assert container["lifecycle"] == {
            "preStop": {"exec": {"command": ["modprobe", "-r", "sample"]}}
        }

    def test_sys_module_is_added_and_privileged_never_set(self) -> None:
        loader = copy.deepcopy(sample().spec.module_loader)
        del loader["securityContext"]
        (container,) = pod_spec(render(sample(moduleLoader=loader))[0])["containers"]
        assert container["securityContext"] == {"capabilities": {"add": ["SYS_MODULE"]}}

    def test_user_capabilities_keep_sys_module(self) -> None:
        """`drop: [ALL]` alone would leave modprobe without CAP_SYS_MODULE on the node."""
        loader = {
            "image": "x",
            "securityContext": {"capabilities": {"drop": ["ALL"]}, "runAsUser": 0},
        }
        (container,) = pod_spec(render(sample(moduleLoader=loader))[0])["containers"]
        assert container["securityContext"] == {
            "capabilities": {"add": ["SYS_MODULE"], "drop": ["ALL"]},
            "runAsUser": 0,
        }

    @pytest.mark.parametrize(
        ("capabilities", "expected"),
        [
            ({"add": ["NET_ADMIN"]}, {"add": ["NET_ADMIN", "SYS_MODULE"]}),
            ({"add": None, "drop": ["ALL"]}, {"add": ["SYS_MODULE"], "drop": ["ALL"]}),
            ({}, {"add": ["SYS_MODULE"]}),
            (None, {"add": ["SYS_MODULE"]}),
            # already there, in any case the runtimes accept: nothing added twice
            ({"add": ["sys_module"], "drop": ["ALL"]}, {"add": ["sys_module"], "drop": ["ALL"]}),
            # ALL (allowed only by allowPrivilegedModuleLoader) includes it
            ({"add": ["all"]}, {"add": ["all"]}),
            # an explicit drop beats an add in the runtimes (containerd, CRI-O): it goes
            (
                {"add": ["SYS_MODULE"], "drop": ["NET_RAW", "SYS_MODULE", "sys_module"]},
                {"add": ["SYS_MODULE"], "drop": ["NET_RAW"]},
            ),
        ],
    )
    def test_the_loader_always_gets_sys_module(
        self, capabilities: dict[str, Any] | None, expected: dict[str, Any]
    ) -> None:
        loader = {"image": "x", "securityContext": {"capabilities": capabilities}}
        module = sample(moduleLoader=loader)
        (container,) = pod_spec(render(module)[0])["containers"]
        assert container["securityContext"]["capabilities"] == expected
        assert module.spec.module_loader["securityContext"]["capabilities"] == capabilities

    def test_a_user_privileged_flag_is_kept(self) -> None:
        loader = {"image": "x", "securityContext": {"privileged": True}}
        (container,) = pod_spec(render(sample(moduleLoader=loader))[0])["containers"]
        assert container["securityContext"]["privileged"] is True

    def test_module_directories_are_mounted_read_only(self) -> None:
        spec = pod_spec(render(sample())[0])
        mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["/lib/modules"]["readOnly"] is True
        assert mounts["/usr/lib/modules"]["readOnly"] is True
        host_paths = {v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
        assert host_paths == {"/lib/modules", "/usr/lib/modules"}

    def test_a_path_the_user_mounts_is_not_mounted_twice(self) -> None:
        mount = {"name": "some-volume", "mountPath": "/lib/modules"}
        loader = {"image": "x", "volumeMounts": [mount]}
        (container,) = pod_spec(render(sample(moduleLoader=loader))[0])["containers"]
        assert [m["mountPath"] for m in container["volumeMounts"]] == [
            "/lib/modules",
            "/usr/lib/modules",
        ]


class TestDevicePlugin:
    def test_a_hardened_security_context_still_gives_a_valid_privileged_pod(self) -> None:
        """The API server refuses privileged with allowPrivilegeEscalation false (ApplyFailed)."""
        plugin = {
            "image": "dp",
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
        }
        (container,) = pod_spec(render(sample(devicePlugin=plugin))[1])["containers"]
        assert container["securityContext"] == {"privileged": True, "readOnlyRootFilesystem": True}

    def test_container_is_kept_privileged_with_device_plugins_dir(self) -> None:
        spec = pod_spec(render(sample())[1])
        (container,) = spec["containers"]
        assert (container["name"], container["image"]) == ("overwritten-anyway", "some-image")
        assert container["securityContext"] == {"privileged": True}
        assert {
            "name": "ooto-device-plugins",
            "mountPath": "/var/lib/kubelet/device-plugins",
            "readOnly": False,
        } in container["volumeMounts"]
        assert {"name": "some-volume", "mountPath": "/etc/dp"} in container["volumeMounts"]


class TestBothPods:
    def test_additional_volumes_tolerations_and_pod_settings(self) -> None:
        for daemonset in render(sample()):
            spec = pod_spec(daemonset)
            assert {"name": "some-volume", "configMap": {"name": "some-configmap"}} in spec[
                "volumes"
            ]
            assert spec["tolerations"] == [
                {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}
            ]
            assert spec["priorityClassName"] == "system-node-critical"
            assert spec["serviceAccountName"] == "loader"
            assert spec["imagePullSecrets"] == [{"name": "pull-secret"}]

    def test_optional_pod_settings_are_omitted_when_unset(self) -> None:
        module = sample(tolerations=[], serviceAccountName=None, imageRepoSecret=None)
        spec = pod_spec(render(module)[0])
        assert not {"tolerations", "serviceAccountName", "imagePullSecrets"} & set(spec)

    @pytest.mark.parametrize(
        ("policy", "expected"),
        [
            (None, {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}),
            (
                {"maxParallel": "10%"},
                {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            ),
        ],
    )
    def test_update_strategy(self, policy: dict[str, Any] | None, expected: dict[str, Any]) -> None:
        """ooto alone replaces loader pods (OnDelete); device plugins roll at maxParallel."""
        module = sample() if policy is None else sample(upgradePolicy=policy)
        loader, plugin = render(module)
        assert loader["spec"]["updateStrategy"] == {"type": "OnDelete"}
        assert plugin["spec"]["updateStrategy"] == expected


class TestLoadDigest:
    """The loader pod template carries the load digest; only what is loaded changes it."""

    def digest(self, module: Module) -> str:
        loader = render(module)[0]
        annotations = loader["spec"]["template"]["metadata"]["annotations"]
        plan = plan_for(module, "5.4.0-1054-gke")
        assert annotations[LOAD_DIGEST_ANNOTATION] == load_digest(module, plan)
        return str(annotations[LOAD_DIGEST_ANNOTATION])

    @pytest.mark.parametrize(
        "change",
        [
            {"tolerations": [{"operator": "Exists"}]},
            {"priorityClassName": "other"},
            {"serviceAccountName": "sa"},
            {"imageRepoSecret": {"name": "pull"}},
            {"upgradePolicy": {"maxParallel": 5}},
            {"devicePlugin": {"name": "dp", "image": "r/dp:2"}},
            {
                "moduleLoader": {
                    "name": "x",
                    "image": "ignored",
                    "resources": {"limits": {"cpu": "1"}},
                }
            },
        ],
    )
    def test_changes_outside_the_digest_keep_it(self, change: dict[str, Any]) -> None:
        base = sample(moduleLoader={"name": "x", "image": "ignored"})
        changed = sample(**{"moduleLoader": {"name": "x", "image": "ignored"}, **change})
        assert render(changed) != render(base)
        assert self.digest(changed) == self.digest(base)

    @pytest.mark.parametrize(
        "change",
        [
            {"moduleLoader": {"name": "x", "command": ["modprobe", "other"]}},
            {"additionalVolumes": [{"name": "v", "emptyDir": {}}]},
        ],
    )
    def test_changes_to_what_is_loaded_change_it(self, change: dict[str, Any]) -> None:
        assert self.digest(sample(**change)) != self.digest(sample())

    def test_a_new_image_changes_it(self) -> None:
        module = sample()
        plan = plan_for(module, "5.4.0-1054-gke")
        assert load_digest(module, replace(plan, image="r/other:1")) != load_digest(module, plan)

    def test_labels_and_annotations_of_the_module_do_not_reach_it(self) -> None:
        raw = sample().model_dump(by_alias=True)
        raw["metadata"]["labels"] = {"team": "a"}
        assert self.digest(Module.model_validate(raw)) == self.digest(sample())


class TestSpecHash:
    def test_annotation_is_the_hash_of_the_object_without_it(self) -> None:
        for daemonset in render(sample()):
            assert daemonset["metadata"]["annotations"][SPEC_HASH_ANNOTATION] == spec_hash(
                daemonset
            )

    def test_hash_changes_only_when_intent_changes(self) -> None:
        before = render(sample())[0]
        same = render(sample())[0]
        changed = render(sample(priorityClassName="other"))[0]
        key = SPEC_HASH_ANNOTATION
        assert before["metadata"]["annotations"][key] == same["metadata"]["annotations"][key]
        assert before["metadata"]["annotations"][key] != changed["metadata"]["annotations"][key]

    def test_render_does_not_mutate_the_module(self) -> None:
        module = sample()
        frozen = module.model_dump(by_alias=True)
        render(module)
        assert module.model_dump(by_alias=True) == frozen


@given(
    st.from_regex(r"[0-9]\.[0-9]{1,2}\.[0-9][-a-z0-9_.+]{0,60}", fullmatch=True),
    st.permutations(["a", "b", "c"]),
)
def test_render_is_deterministic_whatever_the_key_order(kernel: str, order: list[str]) -> None:
    module = sample()
    loader = {key: {"a": "x", "b": "y", "c": "z"}[key] for key in order}
    shuffled = sample(moduleLoader={"image": "i", "env": [{"name": "A", "value": "1"}], **loader})
    reference = sample(
        moduleLoader={
            "image": "i",
            "env": [{"name": "A", "value": "1"}],
            "a": "x",
            "b": "y",
            "c": "z",
        }
    )
    plan = plan_for(module, kernel)
    first = json.dumps(render_daemonsets(shuffled, plan))
    second = json.dumps(render_daemonsets(reference, plan))
    assert first == second
    assert yaml.safe_dump(render_daemonsets(shuffled, plan)) == yaml.safe_dump(
        render_daemonsets(reference, plan)
    )


def test_node_kernel_labels_carry_label_safe_value_and_raw_annotation() -> None:
    labels, annotations = node_kernel_labels("6.1.0-rpi7-rpi-v8+")
    assert labels == {NODE_KERNEL_LABEL: kernel_label_value("6.1.0-rpi7-rpi-v8+")}
    assert annotations == {NODE_KERNEL_ANNOTATION: "6.1.0-rpi7-rpi-v8+"}
    assert node_kernel_labels("5.4.0-1054-gke")[0] == {NODE_KERNEL_LABEL: "5.4.0-1054-gke"}


# Changed on purpose by day 2 (issue 12): loader DaemonSets became OnDelete, loader pods carry the
# load digest, the device plugin selects the ready label. Existing DaemonSets are updated once;
# their loader pods keep running (OnDelete) and are adopted (no digest yet: nothing to upgrade).
PINNED_HASHES = [
    "bc9757f9e817c5af61a3b3c551aafdb99b10d522afd1ad0332b6a195b5874956",
    "fba3c0a7e04256b3eec9d316a3b4ea7dcb95c8e3285ab0da4a213e2dd7d4cc05",
]
PINNED_LOAD_DIGEST = "sha256:c8d5a9c7098e8f05ccbf7df97d25df503593a8520d26f7a19be0b5376aaaf8e7"


def test_rendering_is_pinned_across_operator_versions() -> None:
    """A changed spec-hash here means every existing DaemonSet is rewritten on upgrade. Since
    loader DaemonSets are OnDelete that restarts no pod; the load digest is what reloads modules
    (the KMM 1.x lesson): a change to it upgrades every node. Change these values only on
    purpose, and say so in the release notes."""
    hashes = [ds["metadata"]["annotations"][SPEC_HASH_ANNOTATION] for ds in render(sample())]
    assert hashes == PINNED_HASHES
    module = sample()
    assert load_digest(module, plan_for(module, "5.4.0-1054-gke")) == PINNED_LOAD_DIGEST


def test_a_trimmed_daemonset_answers_every_reader_as_the_whole_one() -> None:
    """The DaemonSet cache keeps only what ooto reads (`trim_daemonset`): every reader of a
    cached DaemonSet must see the same from the trimmed object as from the whole one."""
    for daemonset in render(sample()):
        stored = copy.deepcopy(daemonset)
        stored["metadata"].update(uid="u1", resourceVersion="42", generation=3)
        stored["status"] = {
            "observedGeneration": 3,
            "desiredNumberScheduled": 2,
            "numberReady": 2,
            "updatedNumberScheduled": 2,
        }
        trimmed = copy.deepcopy(stored)
        trim_daemonset(trimmed)
        assert len(json.dumps(trimmed)) < 0.7 * len(json.dumps(stored))
        for read in (stored_hash, pod_images, template_digest, daemonset_ready, uid_of):
            assert read(trimmed) == read(stored), read.__name__
        owner = stored["metadata"]["ownerReferences"][0]["uid"]
        assert owned_by(trimmed, owner) and trimmed["metadata"] == stored["metadata"]
        assert trimmed["spec"]["updateStrategy"] == stored["spec"]["updateStrategy"]
