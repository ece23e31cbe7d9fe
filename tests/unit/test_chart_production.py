"""The chart as production charts do it (cert-manager, GPU Operator, kube-prometheus-stack):
rollout safety, names, a closed values schema, images, placement, CRD upgrades, `helm test`.

Each test renders the chart with the real `helm` (helpers of test_chart.py).
"""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from ooto.settings import Settings
from tests.unit.test_chart import CHART, ROOT, container, helm, only, render

LONG_RELEASE = "a" * 17 + "-release-name-at-helms-limit-of-53-c"  # 53 characters, no "ooto"


def env_of(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(container(docs)["env"])


def refused(*sets: str) -> str:
    result = helm("template", "rel", str(CHART), *(f"--set={s}" for s in sets))
    assert result.returncode != 0, "rendered although it should not"
    return result.stderr


class TestRollout:
    def test_single_replica_without_leader_election_stops_the_old_pod_first(self) -> None:
        docs = render("replicas=1", "leaderElection.enabled=false")
        strategy = only(docs, "Deployment", "rel-ooto")["spec"]["strategy"]
        assert strategy == {"type": "Recreate"}

    def test_with_leader_election_a_rolling_update_is_safe(self) -> None:
        strategy = only(render(), "Deployment", "rel-ooto")["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"

    def test_the_lease_is_named_after_the_release(self) -> None:
        names = set()
        for release in ("first", "second"):
            result = helm("template", release, str(CHART), "-n", "shared")
            assert result.returncode == 0, result.stderr
            docs = [d for d in yaml.safe_load_all(result.stdout) if d]
            deployment = [d for d in docs if d["kind"] == "Deployment"]
            env = {
                e["name"]: e.get("value")
                for e in deployment[0]["spec"]["template"]["spec"]["containers"][0]["env"]
            }
            names.add(env["OOTO_LEASE_NAME"])
        assert names == {"first-ooto", "second-ooto"}
        env = {e["name"]: e.get("value") for e in env_of(render("leaderElection.leaseName=mine"))}
        assert env["OOTO_LEASE_NAME"] == "mine"

    @pytest.mark.parametrize(
        "timings",
        [(10, 15, 2), (15, 10, 10), (15, 2, 10), (15, 15, 2)],
        ids=["duration<deadline", "deadline=retry", "deadline<retry", "duration=deadline"],
    )
    def test_lease_timings_out_of_order_fail_at_render(self, timings: tuple[int, ...]) -> None:
        keys = ("leaseDurationSeconds", "renewDeadlineSeconds", "retryPeriodSeconds")
        sets = [f"leaderElection.{k}={v}" for k, v in zip(keys, timings, strict=True)]
        message = refused(*sets)
        assert "leaseDurationSeconds > renewDeadlineSeconds > retryPeriodSeconds" in message
        # The chart refuses exactly what the operator would refuse at start-up.
        env = dict(
            zip(
                ("lease_duration_seconds", "renew_deadline_seconds", "retry_period_seconds"),
                timings,
                strict=True,
            )
        )
        with pytest.raises(ValueError):
            Settings.load({"operator_namespace": "x", **env})


class TestEnvironment:
    def test_extra_env_replaces_a_chart_variable_in_place(self) -> None:
        default = [e["name"] for e in env_of(render())]
        env = env_of(render("extraEnv[0].name=OOTO_LOG_LEVEL", "extraEnv[0].value=DEBUG"))
        names = [e["name"] for e in env]
        assert names == default  # same names, same order, none twice
        assert {"name": "OOTO_LOG_LEVEL", "value": "DEBUG"} in env

    def test_extra_env_adds_new_variables_after_the_chart_ones(self) -> None:
        env = env_of(render("extraEnv[0].name=OOTO_BACKOFF_MAX_SECONDS", "extraEnv[0].value=120"))
        assert env[-1] == {"name": "OOTO_BACKOFF_MAX_SECONDS", "value": "120"}
        assert len({e["name"] for e in env}) == len(env)

    def test_extra_env_from_a_secret_replaces_the_chart_value(self) -> None:
        sets = [
            "extraEnv[0].name=OOTO_LOG_FORMAT",
            "extraEnv[0].valueFrom.configMapKeyRef.name=ooto",
            "extraEnv[0].valueFrom.configMapKeyRef.key=format",
        ]
        (entry,) = [e for e in env_of(render(*sets)) if e["name"] == "OOTO_LOG_FORMAT"]
        assert entry == {
            "name": "OOTO_LOG_FORMAT",
            "valueFrom": {"configMapKeyRef": {"name": "ooto", "key": "format"}},
        }

    def test_an_extra_env_entry_with_only_a_name_is_an_empty_variable(self) -> None:
        env = env_of(render("extraEnv[0].name=OOTO_EXTRA"))
        assert env[-1] == {"name": "OOTO_EXTRA", "value": ""}

    @pytest.mark.parametrize(
        "sets",
        [
            ["extraEnv[0].name=A", "extraEnv[0].value=1", "extraEnv[0].valueFrom.x.y=z"],
            ["extraEnv[0].value=1"],
            ["extraEnv[0].name=A", "extraEnv[0].valeu=1"],
        ],
        ids=["value-and-valueFrom", "no-name", "misspelt"],
    )
    def test_bad_extra_env_is_refused_by_the_schema(self, sets: list[str]) -> None:
        assert "/extraEnv/0" in refused(*sets)

    @pytest.mark.parametrize("probe", ["liveness", "readiness"])
    def test_a_removed_probe_timing_keeps_the_probe(self, probe: str) -> None:
        operator = container(render(f"probes.{probe}=null"))
        key = f"{probe}Probe"
        assert set(operator[key]) == {"httpGet"}, operator[key]


class TestNames:
    def test_every_name_fits_and_stays_distinct_at_helms_longest_release_name(self) -> None:
        assert len(LONG_RELEASE) == 53
        result = helm(
            "template", LONG_RELEASE, str(CHART), "--set=registry.enabled=true",
            "--set=serviceMonitor.enabled=true", "--set=grafanaDashboard.enabled=true",
            "--set=prometheusRule.enabled=true", "--set=webhook.certManager.enabled=true",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        names = [(d["kind"], d["metadata"]["name"]) for d in docs]
        too_long = [n for n in names if len(n[1]) > 63]
        assert not too_long
        assert len(set(names)) == len(names)
        services = {n for k, n in names if k == "Service"}
        assert len(services) == 3 and all(
            n.endswith(("-metrics", "-webhook", "-registry")) for n in services
        )

    def test_name_overrides_and_common_labels(self) -> None:
        docs = render("fullnameOverride=kmm", "commonLabels.team=kernel")
        assert only(docs, "Deployment")["metadata"]["name"] == "kmm"
        assert {"kmm", "kmm-module-editor", "kmm-module-viewer"} == {
            d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"
        }
        unlabelled = [
            d["metadata"]["name"]
            for d in docs
            if d["metadata"].get("labels", {}).get("team") != "kernel"
        ]
        assert not unlabelled
        pods = [
            d["spec"]["template"]["metadata"]["labels"] for d in docs if d["kind"] == "Deployment"
        ]
        assert all(labels["team"] == "kernel" for labels in pods)
        # The chart's own labels are not the user's to change (selectors depend on them).
        assert "invalid propertyName 'app.kubernetes.io/component'" in refused(
            "commonLabels.app\\.kubernetes\\.io/component=other"
        )
        docs = render("podLabels.app\\.kubernetes\\.io/component=other", "podLabels.x=y")
        pod = only(docs, "Deployment", "rel-ooto")["spec"]["template"]["metadata"]["labels"]
        assert pod["app.kubernetes.io/component"] == "operator" and pod["x"] == "y"
        docs = render("nameOverride=kmod")
        assert only(docs, "Deployment")["metadata"]["name"] == "rel-kmod"
        selector = only(docs, "Deployment")["spec"]["selector"]["matchLabels"]
        assert selector["app.kubernetes.io/name"] == "kmod"


class TestSchema:
    @pytest.mark.parametrize(
        ("setting", "where"),
        [
            ("imgae.tag=x", "additional properties 'imgae'"),
            ("image.tga=x", "/image"),
            ("leaderElection.leaseNmae=x", "/leaderElection"),
            ("webhook.certManager.enabeld=true", "/webhook/certManager"),
            ("podDisruptionBudget.maxUnavaliable=1", "/podDisruptionBudget"),
            ("registry.image.tga=x", "/registry/image"),
            ("probes.liveness.periodSecond=3", "/probes/liveness"),
            ("crds.keep=maybe", "/crds/keep"),
            ("global.imageRegistyr=x", "/global"),
        ],
    )
    def test_unknown_or_misspelt_keys_are_refused(self, setting: str, where: str) -> None:
        assert where in refused(setting)


class TestImages:
    def images(self, *sets: str) -> dict[str, str]:
        docs = render("registry.enabled=true", *sets)
        env = {e["name"]: e.get("value") for e in env_of(docs)}
        registry = only(docs, "Deployment", "-registry")["spec"]["template"]["spec"]
        test = only(docs, "Pod")["spec"]
        return {
            "operator": container(docs)["image"],
            "kaniko": str(env["OOTO_KANIKO_IMAGE"]),
            "buildah": str(env["OOTO_BUILDAH_IMAGE"]),
            "signer": str(env["OOTO_SIGNER_IMAGE"]),
            "registry": registry["containers"][0]["image"],
            "test": test["containers"][0]["image"],
        }

    def test_defaults(self) -> None:
        assert self.images() == {
            "operator": "ooto:0.1.0",
            "kaniko": Settings.load({"operator_namespace": "x"}).kaniko_image,
            "buildah": Settings.load({"operator_namespace": "x"}).buildah_image,
            "signer": "ooto:0.1.0",  # the operator image (it ships sign-file)
            "registry": "docker.io/library/registry:2.8.3",
            "test": "ooto:0.1.0",
        }

    def test_global_registry_mirrors_every_image(self) -> None:
        images = self.images("global.imageRegistry=mirror.example:5000")
        assert images == {
            "operator": "mirror.example:5000/ooto:0.1.0",
            "kaniko": "mirror.example:5000/kaniko-project/executor:v1.23.2",
            "buildah": "mirror.example:5000/buildah/stable:v1.35.4",
            "signer": "mirror.example:5000/ooto:0.1.0",
            "registry": "mirror.example:5000/library/registry:2.8.3",
            "test": "mirror.example:5000/ooto:0.1.0",
        }
        images = self.images(
            "global.imageRegistry=mirror.example:5000",
            "signerImage.repository=corp/signer",
            "signerImage.tag=1.0",
        )
        assert images["signer"] == "mirror.example:5000/corp/signer:1.0"
        settings = Settings.load({"operator_namespace": "x", "signer_image": images["signer"]})
        assert settings.signer_image == images["signer"]

    def test_a_digest_wins_over_the_tag_and_the_operator_accepts_it(self) -> None:
        digest = "sha256:" + "ab" * 32
        images = self.images(
            f"image.digest={digest}", f"kanikoImage.digest={digest}", "image.tag=9"
        )
        assert images["operator"] == f"ooto@{digest}"
        assert images["kaniko"] == f"gcr.io/kaniko-project/executor@{digest}"
        settings = Settings.load({"operator_namespace": "x", "kaniko_image": images["kaniko"]})
        assert settings.kaniko_image == images["kaniko"]

    def test_global_pull_secrets_reach_every_pod(self) -> None:
        docs = render(
            "registry.enabled=true",
            "global.imagePullSecrets={corp}",
            "imagePullSecrets[0].name=own",
        )
        pods = {
            d["metadata"]["name"]: (
                d["spec"]["template"]["spec"] if d["kind"] == "Deployment" else d["spec"]
            )
            for d in docs
            if d["kind"] in ("Deployment", "Pod")
        }
        assert pods["rel-ooto"]["imagePullSecrets"] == [{"name": "corp"}, {"name": "own"}]
        assert pods["rel-ooto-registry"]["imagePullSecrets"] == [{"name": "corp"}]
        assert pods["rel-ooto-test"]["imagePullSecrets"] == [{"name": "corp"}, {"name": "own"}]


class TestPlacement:
    def test_pdb_takes_max_unavailable_or_min_available(self) -> None:
        budget = only(render("podDisruptionBudget.maxUnavailable=50%"), "PodDisruptionBudget")
        assert budget["spec"]["maxUnavailable"] == "50%"
        budget = only(render("podDisruptionBudget.minAvailable=1"), "PodDisruptionBudget")
        assert budget["spec"]["minAvailable"] == 1 and "maxUnavailable" not in budget["spec"]

    def test_replicas_are_spread_over_nodes_when_the_scheduler_can(self) -> None:
        docs = render()
        pod = only(docs, "Deployment", "rel-ooto")["spec"]["template"]
        (spread,) = pod["spec"]["topologySpreadConstraints"]
        assert spread["topologyKey"] == "kubernetes.io/hostname"
        assert spread["whenUnsatisfiable"] == "ScheduleAnyway"  # one node still schedules both
        assert spread["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        single = only(render("replicas=1"), "Deployment", "rel-ooto")["spec"]["template"]["spec"]
        assert "topologySpreadConstraints" not in single
        result = helm("template", "rel", str(CHART), "--set-json=topologySpreadConstraints=[]")
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        off = only(docs, "Deployment", "rel-ooto")["spec"]["template"]["spec"]
        assert "topologySpreadConstraints" not in off


class TestCrdTemplates:
    def crds(self, *sets: str) -> dict[str, dict[str, Any]]:
        return {
            d["metadata"]["name"]: d
            for d in render(*sets)
            if d["kind"] == "CustomResourceDefinition"
        }

    def test_rendered_crds_are_the_generated_ones_kept_on_uninstall(self) -> None:
        rendered = self.crds()
        generated = {
            d["metadata"]["name"]: d
            for d in (yaml.safe_load(p.read_text()) for p in (ROOT / "crds").glob("*.yaml"))
        }
        assert sorted(rendered) == sorted(generated)
        for name, crd in rendered.items():
            assert crd["spec"] == generated[name]["spec"], name
            assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"

    def test_keep_and_enabled_are_values(self) -> None:
        for crd in self.crds("crds.keep=false").values():
            assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})
        assert self.crds("crds.enabled=false") == {}


def test_chart_metadata_names_home_sources_icon_and_maintainers() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    for key in ("home", "sources", "icon", "maintainers", "kubeVersion"):
        assert chart.get(key), key
    assert chart["icon"].startswith("https://")


def test_chart_readme_is_in_step_with_values_yaml() -> None:
    """scripts/chart_readme.py writes charts/ooto/README.md from the `# --` comments."""
    script = ROOT / "scripts" / "chart_readme.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


class TestHelmTestPod:
    def test_pod_is_a_test_hook_asking_the_metrics_service(self) -> None:
        docs = render("metrics.port=9100", namespace="kmods")
        pod = only(docs, "Pod")
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert pod["spec"]["restartPolicy"] == "Never"
        (test,) = pod["spec"]["containers"]
        env = {e["name"]: e["value"] for e in test["env"]}
        assert env["OOTO_TEST_URL"] == "http://rel-ooto-metrics.kmods.svc:9100"
        assert only(docs, "Service", "-metrics")["spec"]["ports"][0]["port"] == 9100
        assert test["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True

    @pytest.mark.parametrize(
        ("ready", "metrics", "code"),
        [(200, "ooto_up 1\n", 0), (503, "ooto_up 1\n", 1), (200, "other 1\n", 1)],
        ids=["ready", "not-ready", "no-ooto-metrics"],
    )
    def test_the_pod_command_passes_only_a_ready_operator_with_metrics(
        self, ready: int, metrics: str, code: int
    ) -> None:
        (test,) = only(render(), "Pod")["spec"]["containers"]
        with fake_operator(ready, metrics) as url:
            result = subprocess.run(
                [sys.executable, *test["command"][1:], *test["args"]],
                env={"OOTO_TEST_URL": url}, capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
        assert result.returncode == code, result.stdout + result.stderr


@contextlib.contextmanager
def fake_operator(ready: int, metrics: str) -> Iterator[str]:
    """An HTTP server answering /readyz with `ready` and /metrics with `metrics`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = (ready, "ok") if self.path == "/readyz" else (200, metrics)
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
