"""The Helm chart, rendered by the real `helm`: lint, RBAC exactly as designed, pod security.

Skipped only when helm is missing and OOTO_REQUIRE_CLUSTER is unset (CI sets it).
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ooto.domain.validation import ModulePolicy
from ooto.settings import Settings
from ooto.testing.binaries import Binaries

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "ooto"

# docs/operations.md, "RBAC": each verb is there for a named feature, nothing more
# (tests/integration/test_operator_rbac.py proves each is used, or lists why not).
# (group, resource) -> verbs. buildconfigs/instantiate is how OpenShift starts a Build;
# modules/finalizers is what OpenShift's OwnerReferencesPermissionEnforcement asks for.
DESIGN_CLUSTER_RULES: dict[tuple[str, str], set[str]] = {
    ("", "nodes"): {"list", "watch", "patch"},
    ("ooto.sigs.k8s.io", "modules"): {"list", "watch"},
    ("ooto.sigs.k8s.io", "modules/status"): {"patch"},
    ("ooto.sigs.k8s.io", "modules/finalizers"): {"update"},
    ("apps", "daemonsets"): {"get", "list", "watch", "create", "update", "delete"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
    ("build.openshift.io", "buildconfigs"): {"get", "create", "delete"},
    ("build.openshift.io", "builds"): {"list", "watch", "create", "delete"},
    ("build.openshift.io", "buildconfigs/instantiate"): {"create"},
    ("", "pods"): {"list", "watch", "delete"},
    ("", "pods/eviction"): {"create"},
    ("", "pods/log"): {"get"},
    ("", "events"): {"create", "patch", "list", "watch"},
    ("ooto.sigs.k8s.io", "preflightvalidations"): {"list", "watch"},
    ("ooto.sigs.k8s.io", "preflightvalidations/status"): {"patch"},
}
# Cluster-wide without watchNamespace; in a Role in the watched namespace with it.
DESIGN_NAMESPACED_RULES: dict[tuple[str, str], set[str]] = {
    ("", "configmaps"): {"get", "create", "update", "delete"},
    ("", "secrets"): {"get"},
}
DESIGN_LEASE_RULES = {("coordination.k8s.io", "leases"): {"get", "create", "update"}}


def helm_binary() -> Path:
    helm = Binaries.expected().helm
    if not os.access(helm, os.X_OK):
        if os.environ.get("OOTO_REQUIRE_CLUSTER"):
            pytest.fail(f"OOTO_REQUIRE_CLUSTER is set but helm is missing at {helm}")
        pytest.skip(f"helm missing at {helm}; run `ooto cluster install`")
    return helm


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, timeout=60, check=False
    )


def render(*sets: str, namespace: str = "ooto-system") -> list[dict[str, Any]]:
    flags = [f"--set={s}" for s in sets]
    result = helm("template", "rel", str(CHART), "--namespace", namespace, *flags)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    (found,) = [
        d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)
    ]
    return found


def rules_table(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule  # no resourceNames tricks
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert (group, resource) not in table, f"{group}/{resource} granted twice"
                table[(group, resource)] = set(rule["verbs"])
    return table


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = only(docs, "Deployment", "rel-ooto")
    (operator,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(operator, dict)
    return operator


class TestLint:
    @pytest.mark.parametrize(
        "sets",
        [
            [],
            ["registry.enabled=true", "serviceMonitor.enabled=true"],
            ["replicas=1", "leaderElection.enabled=false", "watchNamespace=team-a"],
        ],
    )
    def test_helm_lint_strict_passes(self, sets: list[str]) -> None:
        result = helm("lint", "--strict", str(CHART), *(f"--set={s}" for s in sets))
        assert result.returncode == 0, result.stdout + result.stderr


class TestRbac:
    def test_cluster_role_grants_exactly_the_designed_verbs(self) -> None:
        role = only(render(), "ClusterRole", "rel-ooto")
        assert rules_table(role) == DESIGN_CLUSTER_RULES | DESIGN_NAMESPACED_RULES

    def test_with_watch_namespace_secrets_and_configmaps_only_in_that_namespace(self) -> None:
        docs = render("watchNamespace=team-a", namespace="kmods")
        assert rules_table(only(docs, "ClusterRole", "rel-ooto")) == DESIGN_CLUSTER_RULES
        (role,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "rel-ooto"]
        assert role["metadata"]["namespace"] == "team-a"
        assert rules_table(role) == DESIGN_NAMESPACED_RULES
        (binding,) = [
            d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == "rel-ooto"
        ]
        assert binding["metadata"]["namespace"] == "team-a"
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "rel-ooto",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "rel-ooto", "namespace": "kmods"}
        ]

    def test_leases_only_through_a_role_in_the_release_namespace(self) -> None:
        docs = render(namespace="kmods")
        role = only(docs, "Role")
        assert role["metadata"]["namespace"] == "kmods"
        assert rules_table(role) == DESIGN_LEASE_RULES
        binding = only(docs, "RoleBinding")
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        }

    def test_bindings_name_the_operator_service_account(self) -> None:
        docs = render("watchNamespace=team-a", namespace="kmods")
        account = only(docs, "ServiceAccount")
        subject = {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": "kmods",
        }
        bindings = [d for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")]
        assert len(bindings) == 3
        for binding in bindings:
            assert binding["subjects"] == [subject], binding["metadata"]["name"]
        pod = only(docs, "Deployment")["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == account["metadata"]["name"]

    def test_rbac_can_be_left_to_the_admin(self) -> None:
        kinds = {d["kind"] for d in render("rbac.create=false", "watchNamespace=team-a")}
        assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


class TestModuleRoles:
    """ClusterRoles for people: creating a Module is root on its nodes (docs/security.md)."""

    def test_editor_writes_modules_but_not_their_status_and_aggregates_nowhere(self) -> None:
        editor = only(render(), "ClusterRole", "rel-ooto-module-editor")
        assert rules_table(editor) == {
            ("ooto.sigs.k8s.io", "modules"): {
                *("get", "list", "watch", "create", "update", "patch", "delete"),
                "deletecollection",
            },
            ("ooto.sigs.k8s.io", "modules/status"): {"get", "list", "watch"},
        }
        aggregating = [k for k in editor["metadata"]["labels"] if "aggregate-to" in k]
        assert not aggregating, "module editors are chosen by an admin, never inherited"
        assert "aggregationRule" not in editor

    def test_viewer_reads_modules_and_is_aggregated_to_view(self) -> None:
        viewer = only(render(), "ClusterRole", "rel-ooto-module-viewer")
        assert rules_table(viewer) == {
            ("ooto.sigs.k8s.io", "modules"): {"get", "list", "watch"},
            ("ooto.sigs.k8s.io", "modules/status"): {"get", "list", "watch"},
        }
        labels = viewer["metadata"]["labels"]
        assert labels["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
        assert not [k for k in labels if "aggregate-to" in k and not k.endswith("-view")]

    def test_names_are_ooto_module_editor_for_release_ooto_and_prefixed_otherwise(self) -> None:
        names = {
            d["metadata"]["name"]
            for d in yaml.safe_load_all(helm("template", "ooto", str(CHART)).stdout)
            if d and d["kind"] == "ClusterRole"
        }
        assert {"ooto-module-editor", "ooto-module-viewer"} <= names
        other = {d["metadata"]["name"] for d in render() if d["kind"] == "ClusterRole"}
        assert {"rel-ooto-module-editor", "rel-ooto-module-viewer"} <= other

    def test_module_roles_can_be_turned_off(self) -> None:
        names = {d["metadata"]["name"] for d in render("rbac.moduleRoles=false")}
        assert not {n for n in names if n.endswith(("-module-editor", "-module-viewer"))}


class TestDeployment:
    def test_runs_non_root_read_only_with_no_capabilities(self) -> None:
        docs = render()
        pod = only(docs, "Deployment", "rel-ooto")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        security = container(docs)["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "privileged" not in security

    def test_probes_hit_healthz_and_readyz_on_the_metrics_port(self) -> None:
        operator = container(render("metrics.port=9100"))
        assert operator["ports"][0] == {"name": "metrics", "containerPort": 9100, "protocol": "TCP"}
        assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert operator["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}

    def test_two_replicas_with_leader_election_by_default(self) -> None:
        docs = render()
        assert only(docs, "Deployment", "rel-ooto")["spec"]["replicas"] == 2
        env = {e["name"]: e.get("value") for e in container(docs)["env"]}
        assert env["OOTO_LEADER_ELECTION"] == "true"

    def test_several_replicas_without_leader_election_are_refused(self) -> None:
        result = helm("template", "rel", str(CHART), "--set=leaderElection.enabled=false")
        assert result.returncode != 0
        assert "replicas > 1 needs leaderElection.enabled" in result.stderr

    def test_operator_namespace_comes_from_the_downward_api(self) -> None:
        env = {e["name"]: e for e in container(render())["env"]}
        assert env["OOTO_OPERATOR_NAMESPACE"]["valueFrom"] == {
            "fieldRef": {"fieldPath": "metadata.namespace"}
        }

    def test_rendered_environment_is_valid_settings(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Every OOTO_* variable the chart sets is a setting, and its value validates."""
        sets = [
            "watchNamespace=team-a",
            "buildBackend=kaniko",
            "allowPrivilegedModuleLoader=true",
            "allowHostPathVolumes=true",
            "allowedServiceAccounts={loader,team-a/builder}",
            "extraEnv[0].name=OOTO_BACKOFF_MAX_SECONDS",
            "extraEnv[0].value=120",
        ]
        env = container(render(*sets))["env"]
        for item in env:
            name = item["name"]
            assert name.startswith("OOTO_"), name
            assert name.removeprefix("OOTO_").lower() in Settings.model_fields, name
            assert isinstance(item.get("value", ""), str), item  # Kubernetes wants strings
            monkeypatch.setenv(name, item.get("value", "ooto-system"))
        settings = Settings.load()
        assert settings.watch_namespace == "team-a"
        assert settings.build_backend == "kaniko"
        assert settings.allow_privileged_module_loader is True
        assert settings.module_policy() == ModulePolicy(
            allow_privileged_module_loader=True,
            allow_host_path_volumes=True,
            allowed_service_accounts=frozenset({"loader", "team-a/builder"}),
        )
        assert settings.webhook_port == 9443
        assert settings.webhook_cert_dir == Path("/tmp/k8s-webhook-server/serving-certs")
        assert settings.backoff_max_seconds == 120
        assert settings.log_format == "json"

    def test_defaults_agree_with_settings_defaults(self) -> None:
        env = {e["name"]: e.get("value") for e in container(render())["env"]}
        defaults = Settings.load({"operator_namespace": "x"})
        assert env["OOTO_KANIKO_IMAGE"] == defaults.kaniko_image
        assert env["OOTO_BUILDAH_IMAGE"] == defaults.buildah_image
        assert env["OOTO_LEASE_NAME"] == "rel-ooto"  # the full name: one Lease per release
        assert int(env["OOTO_METRICS_PORT"]) == defaults.metrics_port
        assert int(env["OOTO_API_CONCURRENCY"]) == defaults.api_concurrency
        assert int(env["OOTO_WEBHOOK_PORT"]) == defaults.webhook_port
        assert env["OOTO_ALLOW_HOST_PATH_VOLUMES"] == "false"
        assert env["OOTO_ALLOWED_SERVICE_ACCOUNTS"] == ""  # the safe default: namespace default
        # The default signer is the operator image itself; with default values both name it
        # exactly as `ooto run` does without the setting.
        assert env["OOTO_SIGNER_IMAGE"] == container(render())["image"] == defaults.signer_image

    def test_the_signer_image_follows_the_operator_image_unless_overridden(self) -> None:
        sets = ("image.repository=reg.example/team/ooto", "image.tag=0.1.0-rc1")
        operator = container(render(*sets))
        env = {e["name"]: e.get("value") for e in operator["env"]}
        assert operator["image"] == "reg.example/team/ooto:0.1.0-rc1"
        assert env["OOTO_SIGNER_IMAGE"] == operator["image"]
        own = container(
            render(
                *sets,
                "signerImage.registry=reg.example",
                "signerImage.repository=signer",
                "signerImage.digest=sha256:" + "a" * 64,
            )
        )
        env = {e["name"]: e.get("value") for e in own["env"]}
        assert env["OOTO_SIGNER_IMAGE"] == "reg.example/signer@sha256:" + "a" * 64


class TestOptionalParts:
    def test_default_install_has_no_registry_and_no_service_monitor(self) -> None:
        kinds = sorted(d["kind"] for d in render())
        assert kinds == [
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Pod",  # the `helm test` hook
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "Service",
            "ServiceAccount",
            "ValidatingWebhookConfiguration",
        ]

    def test_a_drain_keeps_one_replica_to_hold_the_lease(self) -> None:
        budget = only(render(), "PodDisruptionBudget")
        assert budget["spec"]["maxUnavailable"] == 1
        single = render("replicas=1", "leaderElection.enabled=false")
        assert "PodDisruptionBudget" not in {d["kind"] for d in single}

    def test_service_monitor_scrapes_the_metrics_service(self) -> None:
        docs = render("serviceMonitor.enabled=true", "serviceMonitor.labels.release=prom")
        monitor = only(docs, "ServiceMonitor")
        assert monitor["metadata"]["labels"]["release"] == "prom"
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
        service = only(docs, "Service", "-metrics")
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= service["metadata"]["labels"].items()
        )

    def test_in_cluster_registry_is_a_non_root_distribution_registry(self) -> None:
        docs = render("registry.enabled=true")
        deployment = only(docs, "Deployment", "-registry")
        pod = deployment["spec"]["template"]["spec"]
        (registry,) = pod["containers"]
        assert registry["image"].startswith("docker.io/library/registry:")
        assert registry["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["volumes"] == [{"name": "storage", "emptyDir": {}}]
        service = only(docs, "Service", "-registry")
        assert service["spec"]["ports"][0]["port"] == 5000
        selector = service["spec"]["selector"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


class TestSelectors:
    """The registry's pods share the release's name and instance labels; `component` keeps the
    operator's Service, PDB and ServiceMonitor off them (and the registry's Service off the
    operator). A Deployment's selector is immutable: it must be right from the first install."""

    def test_every_selector_picks_only_its_own_pods(self) -> None:
        docs = render("registry.enabled=true", "serviceMonitor.enabled=true")
        pods = {
            d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
            for d in docs
            if d["kind"] == "Deployment"
        }
        assert sorted(pods) == ["rel-ooto", "rel-ooto-registry"]
        selectors = {
            "Deployment rel-ooto": (only(docs, "Deployment", "rel-ooto"), "rel-ooto"),
            "Deployment registry": (only(docs, "Deployment", "-registry"), "rel-ooto-registry"),
            "PodDisruptionBudget": (only(docs, "PodDisruptionBudget"), "rel-ooto"),
        }
        for what, (obj, owner) in selectors.items():
            selector = obj["spec"]["selector"]
            assert set(selector) == {"matchLabels"}, what
            picked = [
                name for name, labels in pods.items() if matches(selector["matchLabels"], labels)
            ]
            assert picked == [owner], what
        services = (
            ("-metrics", "rel-ooto"),
            ("-webhook", "rel-ooto"),
            ("-registry", "rel-ooto-registry"),
        )
        for suffix, owner in services:
            selector = only(docs, "Service", suffix)["spec"]["selector"]
            assert [name for name, labels in pods.items() if matches(selector, labels)] == [owner]

    def test_service_monitor_selects_only_the_metrics_service(self) -> None:
        docs = render("registry.enabled=true", "serviceMonitor.enabled=true")
        selector = only(docs, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
        services = [d for d in docs if d["kind"] == "Service"]
        picked = [
            s["metadata"]["name"] for s in services if matches(selector, s["metadata"]["labels"])
        ]
        assert picked == ["rel-ooto-metrics"]

    def test_operator_pods_are_labelled_with_their_component(self) -> None:
        labels = only(render(), "Deployment", "rel-ooto")["spec"]["selector"]["matchLabels"]
        assert labels == {
            "app.kubernetes.io/name": "ooto",
            "app.kubernetes.io/instance": "rel",
            "app.kubernetes.io/component": "operator",
        }


def openssl(*args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


class TestWebhook:
    """The admission webhook: registered for Module writes, served by the Deployment over TLS."""

    def test_registered_for_module_create_and_update_failing_closed(self) -> None:
        docs = render(namespace="kmods")
        (hook,) = only(docs, "ValidatingWebhookConfiguration")["webhooks"]
        assert hook["rules"] == [
            {
                "apiGroups": ["ooto.sigs.k8s.io"],
                "apiVersions": ["v1alpha1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["modules"],
                "scope": "Namespaced",
            }
        ]
        assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"] and hook["timeoutSeconds"] <= 10
        assert "namespaceSelector" not in hook  # every namespace
        service = hook["clientConfig"]["service"]
        assert service == {
            "name": "rel-ooto-webhook",
            "namespace": "kmods",
            "path": "/validate-module",
            "port": 443,
        }
        webhook_service = only(docs, "Service", "-webhook")["spec"]
        assert webhook_service["ports"][0]["targetPort"] == "webhook"
        pod = only(docs, "Deployment")["spec"]["template"]
        assert webhook_service["selector"].items() <= pod["metadata"]["labels"].items()

    def test_the_deployment_serves_it_from_the_secret(self) -> None:
        docs = render("webhook.port=10443")
        operator = container(docs)
        assert {"name": "webhook", "containerPort": 10443, "protocol": "TCP"} in operator["ports"]
        env = {e["name"]: e.get("value") for e in operator["env"]}
        assert env["OOTO_WEBHOOK_PORT"] == "10443"
        mount = {m["name"]: m for m in operator["volumeMounts"]}["webhook-certs"]
        assert mount["mountPath"] == env["OOTO_WEBHOOK_CERT_DIR"] and mount["readOnly"] is True
        volumes = only(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        secret = {v["name"]: v for v in volumes}["webhook-certs"]["secret"]["secretName"]
        assert only(docs, "Secret")["metadata"]["name"] == secret

    def test_generated_certificate_is_trusted_through_the_ca_bundle_for_the_service(
        self, tmp_path: Path
    ) -> None:
        docs = render(namespace="kmods")
        data = only(docs, "Secret")["data"]
        (hook,) = only(docs, "ValidatingWebhookConfiguration")["webhooks"]
        assert hook["clientConfig"]["caBundle"] == data["ca.crt"]
        for name in ("ca.crt", "tls.crt", "tls.key"):
            (tmp_path / name).write_bytes(base64.b64decode(data[name]))
        ca, cert = str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt")
        assert "OK" in openssl("verify", "-CAfile", ca, cert)
        names = openssl("x509", "-in", cert, "-noout", "-ext", "subjectAltName")
        assert "DNS:rel-ooto-webhook.kmods.svc" in names
        public = openssl("x509", "-in", cert, "-noout", "-pubkey")
        key = openssl("pkey", "-in", str(tmp_path / "tls.key"), "-pubout")
        assert public == key

    def test_cert_manager_issues_it_instead(self) -> None:
        docs = render("webhook.certManager.enabled=true", namespace="kmods")
        kinds = {d["kind"] for d in docs}
        assert "Secret" not in kinds and {"Issuer", "Certificate"} <= kinds
        certificate = only(docs, "Certificate")
        assert "rel-ooto-webhook.kmods.svc" in certificate["spec"]["dnsNames"]
        assert certificate["spec"]["issuerRef"]["name"] == only(docs, "Issuer")["metadata"]["name"]
        configuration = only(docs, "ValidatingWebhookConfiguration")
        annotations = configuration["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == "kmods/rel-ooto-webhook"
        assert "caBundle" not in configuration["webhooks"][0]["clientConfig"]
        volumes = only(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        secret = {v["name"]: v for v in volumes}["webhook-certs"]["secret"]["secretName"]
        assert certificate["spec"]["secretName"] == secret

    def test_cert_manager_with_an_existing_issuer(self) -> None:
        docs = render(
            "webhook.certManager.enabled=true",
            "webhook.certManager.issuerRef.name=corp-ca",
            "webhook.certManager.issuerRef.kind=ClusterIssuer",
        )
        assert "Issuer" not in {d["kind"] for d in docs}
        assert only(docs, "Certificate")["spec"]["issuerRef"] == {
            "name": "corp-ca",
            "kind": "ClusterIssuer",
        }

    def test_disabled_it_is_all_gone_and_the_operator_serves_no_port(self) -> None:
        docs = render("webhook.enabled=false")
        kinds = {d["kind"] for d in docs}
        assert not kinds & {"ValidatingWebhookConfiguration", "Secret", "Certificate", "Issuer"}
        assert [d for d in docs if d["metadata"]["name"].endswith("-webhook")] == []
        operator = container(docs)
        env = {e["name"]: e.get("value") for e in operator["env"]}
        assert env["OOTO_WEBHOOK_PORT"] == "0" and "OOTO_WEBHOOK_CERT_DIR" not in env
        assert [p["name"] for p in operator["ports"]] == ["metrics"]
        assert "webhook-certs" not in {m["name"] for m in operator["volumeMounts"]}

    def test_with_watch_namespace_only_that_namespace_is_judged(self) -> None:
        (hook,) = only(render("watchNamespace=team-a"), "ValidatingWebhookConfiguration")[
            "webhooks"
        ]
        assert hook["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "team-a"}
        }

    def test_namespace_selector_and_failure_policy_are_values(self) -> None:
        docs = render(
            "webhook.namespaceSelector.matchLabels.team=a", "webhook.failurePolicy=Ignore"
        )
        (hook,) = only(docs, "ValidatingWebhookConfiguration")["webhooks"]
        assert hook["namespaceSelector"] == {"matchLabels": {"team": "a"}}
        assert hook["failurePolicy"] == "Ignore"


class TestValuesSchema:
    @pytest.mark.parametrize(
        ("setting", "message"),
        [
            ("buildBackend=docker", "/buildBackend"),
            ("logging.format=xml", "/logging/format"),
            ("apiConcurrency=0", "/apiConcurrency"),
            ("watchNamespace=Team_A", "/watchNamespace"),
            ("metrics.port=70000", "/metrics/port"),
            ("webhook.failurePolicy=Sometimes", "/webhook/failurePolicy"),
            ("webhook.timeoutSeconds=60", "/webhook/timeoutSeconds"),
            ("allowedServiceAccounts={Not_Valid}", "/allowedServiceAccounts/0"),
        ],
    )
    def test_bad_values_are_refused_before_anything_is_installed(
        self, setting: str, message: str
    ) -> None:
        result = helm("template", "rel", str(CHART), f"--set={setting}")
        assert result.returncode != 0
        assert message in result.stderr


class TestCrds:
    def test_chart_crds_are_a_copy_of_the_generated_crds(self) -> None:
        """`ooto crds` writes both copies (in the repository); catches a stale one."""
        generated = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
        assert generated, "crds/ holds no generated CRD (run `ooto crds`)"
        in_chart = {p.name: p.read_bytes() for p in (CHART / "files" / "crds").glob("*.yaml")}
        assert sorted(in_chart) == sorted(generated)
        stale = [name for name in generated if in_chart[name] != generated[name]]
        assert not stale, f"charts/ooto/files/crds/ differs from crds/ for {stale}"
        assert not (CHART / "crds").exists(), "Helm never upgrades crds/: templates/crds.yaml does"


def test_every_value_is_documented_in_operations_md() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    operations = (ROOT / "docs" / "operations.md").read_text()
    undocumented = [key for key in values if not re.search(rf"`{key}[.`]", operations)]
    assert not undocumented


def test_image_user_and_entrypoint_match_the_chart() -> None:
    """The Dockerfile's numeric user is the chart's runAsUser; the chart adds no command."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    uid = values["podSecurityContext"]["runAsUser"]
    assert re.search(rf"^USER {uid}:{uid}$", dockerfile, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["ooto", "run"\]$', dockerfile, re.MULTILINE)
    # The base image is pinned to one exact Python release (same tag in both stages).
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert len(bases) == 2 and len(set(bases)) == 1, bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", bases[0]), bases
    # Dependencies install at the versions tests ran with.
    assert re.search(r"pip install -c constraints\.txt \.", dockerfile)
    template = (CHART / "templates" / "deployment.yaml").read_text()
    assert "command:" not in template
