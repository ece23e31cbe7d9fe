"""Metrics: names and labels Prometheus sees, state gauges, and reading API totals back."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ooto.metrics import Metrics, module_state


def families(metrics: Metrics) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        out[family.name] = [(s.name, s.labels, s.value) for s in family.samples]
    return out


def test_every_metric_has_the_ooto_prefix_and_its_own_registry() -> None:
    a, b = Metrics(), Metrics()  # two instances never collide: no global registry
    a.set_leader(True)
    names = set(families(a))
    assert names
    ours = {name for name in names if name.startswith("ooto_")}
    # prometheus-client's standard process metrics; everything else is ours
    assert names - ours <= {
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
        "process_max_fds",
    }
    assert ours and "process_cpu_seconds" in names
    assert families(b)["ooto_leader"][0][2] == 0


def test_webhook_reviews_are_counted_by_outcome() -> None:
    m = Metrics()
    m.webhook_reviewed(True)
    m.webhook_reviewed(False)
    m.webhook_reviewed(False)
    samples = {labels["allowed"]: value for _, labels, value in families(m)["ooto_webhook_reviews"]}
    assert samples == {"true": 1, "false": 2}


def test_issue_6_metrics_are_exposed() -> None:
    m = Metrics()
    m.observe("get", "nodes", 200, 0.01)
    m.build_started("kaniko")
    m.build_finished("kaniko", succeeded=True, seconds=42)
    m.watch_restarted("nodes")
    m.relisted("nodes")
    m.observe_message_latency("KernelActor", 0.002)
    m.set_daemonset_pods("ns", "mod", 3, 2)
    m.set_modules_by_state({"Ready": 1})
    m.set_kernel_actors_by_state({"Deploying": 2})
    m.event_dropped()
    m.actor_failed("KernelActor", died=False)
    m.task_failed("informer:nodes/*")
    m.object_skipped("modules", {"metadata": {"name": "deep"}}, "Recursion limit reached")
    m.observed("modules", "1234")
    m.observe_module("ns", "mod", {"conditions": [{"type": "Ready", "status": "True"}]})
    ours = {name for name in families(m) if name.startswith("ooto_")}
    # counters also have `_created` series (prometheus-client); they are not ours to list
    assert {name for name in ours if not name.endswith("_created")} == {
        "ooto_modules",
        "ooto_module_ready",
        "ooto_kernel_actors",
        "ooto_module_daemonset_pods_desired",
        "ooto_module_daemonset_pods_ready",
        "ooto_upgrade_nodes",
        "ooto_upgrade_node_duration_seconds",
        "ooto_upgrade_step_latency_seconds",
        "ooto_builds_started",
        "ooto_builds_succeeded",
        "ooto_builds_failed",
        "ooto_sign_jobs",
        "ooto_build_duration_seconds",
        "ooto_kube_requests",
        "ooto_kube_request_duration_seconds",
        "ooto_watch_restarts",
        "ooto_watch_relists",
        "ooto_actor_message_latency_seconds",
        "ooto_leader",
        "ooto_events_dropped",
        "ooto_event_loop_lag_seconds",
        "ooto_actor_failures",
        "ooto_task_failures",
        "ooto_watch_objects_skipped",
        "ooto_informer_resource_version",
        "ooto_webhook_reviews",
    }
    text = m.exposition().decode()
    assert 'ooto_informer_resource_version{resource="modules"} 1234.0' in text
    assert 'ooto_kube_requests_total{code="200",resource="nodes",verb="get"} 1.0' in text


def test_a_state_that_empties_goes_to_zero_rather_than_keeping_its_last_value() -> None:
    m = Metrics()
    m.set_modules_by_state({"NotReady": 2})
    m.set_modules_by_state({"Ready": 2})
    samples = {s[1]["state"]: s[2] for s in families(m)["ooto_modules"]}
    # every Module state is exposed from the start, so a dashboard sees 0 rather than nothing
    assert samples == {"NotReady": 0, "Ready": 2, "Invalid": 0}


def test_a_deleted_module_leaves_no_daemonset_series() -> None:
    m = Metrics()
    m.set_daemonset_pods("ns", "a", 3, 3)
    m.set_daemonset_pods("ns", "b", 1, 0)
    m.forget_module("ns", "a")
    m.forget_module("ns", "never-seen")
    modules = {s[1]["module"] for s in families(m)["ooto_module_daemonset_pods_ready"]}
    assert modules == {"b"}


def test_api_totals_read_back_count_writes_by_verb_and_responses_by_code() -> None:
    m = Metrics()
    m.observe("list", "nodes", 200, 0.01)
    m.observe("watch", "nodes", 200, 30)
    m.observe("get", "modules", 403, 0.01)
    m.observe("create", "daemonsets", 201, 0.02)
    m.observe("create", "daemonsets", 409, 0.02)
    m.observe("patch", "nodes", 200, 0.02)
    m.observe("patch_status", "modules", 403, 0.02)
    assert m.writes_total() == {"create": 2, "patch": 1, "patch_status": 1}
    assert m.requests_by_code(403) == 2
    assert m.requests_by_code(500) == 0
    assert m.requests_total(verb="create", code=409) == 1
    assert m.requests_total(resource="nodes") == 3


def test_build_outcomes_are_counted_and_timed_per_backend() -> None:
    m = Metrics()
    m.build_started("kaniko")
    m.build_finished("kaniko", succeeded=False, seconds=12.5)
    m.build_finished("buildconfig", succeeded=True, seconds=None)  # adopted: start unknown
    f = families(m)
    assert ("ooto_builds_failed_total", {"backend": "kaniko"}, 1.0) in f["ooto_builds_failed"]
    counts = [s for s in f["ooto_build_duration_seconds"] if s[0].endswith("_count")]
    assert counts == [
        ("ooto_build_duration_seconds_count", {"backend": "kaniko", "outcome": "failed"}, 1.0)
    ]


def test_state_counts_set_from_many_threads_stay_consistent() -> None:
    """Actor threads report their counts concurrently; the last complete report wins."""
    import threading

    m = Metrics()

    def report(i: int) -> None:
        for j in range(200):
            m.set_kernel_actors_by_state({f"S{(i + j) % 7}": j})

    threads = [threading.Thread(target=report, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    m.set_kernel_actors_by_state({"Ready": 3})
    samples = {s[1]["state"]: s[2] for s in families(m)["ooto_kernel_actors"]}
    assert samples.pop("Ready") == 3
    assert set(samples.values()) == {0}


def test_metrics_satisfy_the_kube_protocols() -> None:
    from ooto.kube.client import RequestObserver
    from ooto.kube.informer import InformerObserver

    m = Metrics()
    as_protocols: tuple[RequestObserver, InformerObserver] = (m, m)  # checked by mypy
    for protocol in (RequestObserver, InformerObserver):
        for name in (n for n in vars(protocol) if not n.startswith("_")):
            assert callable(getattr(m, name)), f"{protocol.__name__}.{name}"
    assert len(as_protocols) == 2


def test_no_metric_carries_a_kernel_label() -> None:
    m = Metrics()
    for family in text_string_to_metric_families(m.exposition().decode()):
        for sample in family.samples:
            assert "kernel" not in sample.labels
    for collector in m.registry._collector_to_names:  # the declared label names
        assert "kernel" not in getattr(collector, "_labelnames", ())


def status(ready: str, reason: str, desired: int = 0, ready_nodes: int = 0) -> dict[str, object]:
    return {
        "conditions": [
            {"type": "Progressing", "status": "False", "reason": "Converged"},
            {"type": "Ready", "status": ready, "reason": reason},
        ],
        "nodesDesired": desired,
        "nodesReady": ready_nodes,
    }


def test_module_state_comes_from_the_ready_condition() -> None:
    assert module_state(status("True", "AllKernelsReady")) == "Ready"
    assert module_state(status("True", "NoNodesSelected")) == "Ready"
    assert module_state(status("False", "Rolling")) == "NotReady"
    assert module_state(status("False", "InvalidSpec")) == "Invalid"
    assert module_state({}) == "NotReady"


def test_modules_by_state_and_pods_follow_each_module_and_forget_drops_them() -> None:
    m = Metrics()

    def series() -> dict[str, dict[tuple[str, ...], float]]:
        out: dict[str, dict[tuple[str, ...], float]] = {}
        for name, samples in families(m).items():
            out[name] = {
                tuple(labels[k] for k in ("namespace", "module", "state") if k in labels): value
                for _, labels, value in samples
            }
        return out

    assert series()["ooto_modules"] == {("Ready",): 0, ("NotReady",): 0, ("Invalid",): 0}
    m.observe_module("ns", "a", status("False", "Rolling", 3, 1))
    m.observe_module("ns", "b", status("False", "InvalidSpec"))
    m.observe_module("ns", "a", status("True", "AllKernelsReady", 3, 3))
    now = series()
    assert now["ooto_modules"] == {("Ready",): 1, ("NotReady",): 0, ("Invalid",): 1}
    assert now["ooto_module_daemonset_pods_desired"][("ns", "a")] == 3
    assert now["ooto_module_daemonset_pods_ready"][("ns", "a")] == 3

    m.forget_module("ns", "a")
    m.forget_module("ns", "a")  # twice is harmless
    after = series()
    assert after["ooto_modules"] == {("Ready",): 0, ("NotReady",): 0, ("Invalid",): 1}
    assert ("ns", "a") not in after["ooto_module_daemonset_pods_desired"]
    assert ("ns", "a") not in after["ooto_module_daemonset_pods_ready"]


def test_sign_jobs_are_counted_by_outcome_from_zero() -> None:
    m = Metrics()
    m.sign_finished(succeeded=True)
    samples = {s[1]["outcome"]: s[2] for s in families(m)["ooto_sign_jobs"]}
    assert samples == {"succeeded": 1.0, "failed": 0.0}


def test_actor_failures_are_counted_by_outcome() -> None:
    m = Metrics()
    m.actor_failed("KernelActor", died=False)
    m.actor_failed("KernelActor", died=True)
    m.actor_failed("ModuleSupervisor", died=True)
    assert m.actor_failures_total(died=True) == 2
    assert m.actor_failures_total(died=False) == 1
    text = m.exposition().decode()
    assert 'ooto_actor_failures_total{actor_kind="KernelActor",outcome="died"} 1.0' in text


def test_module_ready_names_each_module_and_goes_with_it() -> None:
    m = Metrics()
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    invalid = {"conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec"}]}
    m.observe_module("ns", "a", ready)
    m.observe_module("ns", "b", invalid)
    values = {s[1]["module"]: s[2] for s in families(m)["ooto_module_ready"]}
    assert values == {"a": 1, "b": 0}
    m.forget_module("ns", "b")
    assert {s[1]["module"] for s in families(m)["ooto_module_ready"]} == {"a"}


def test_counters_exist_at_zero_before_their_first_event() -> None:
    """`increase()` misses a counter's first increment when its series appears with it."""
    m = Metrics()
    m.declare_build_backend("KanikoJobBackend")
    m.watching("nodes")
    found = families(m)
    for name in ("ooto_builds_started", "ooto_builds_succeeded", "ooto_builds_failed"):
        assert [s[2] for s in found[name] if s[0].endswith("_total")] == [0], name
    for name in ("ooto_watch_restarts", "ooto_watch_relists"):
        series = [s for s in found[name] if s[0].endswith("_total")]
        assert [(s[1], s[2]) for s in series] == [({"resource": "nodes"}, 0)]


def test_issue_12_upgrade_metrics_per_module_and_state() -> None:
    m = Metrics()
    m.set_upgrade_nodes("ns", "mod", {"upToDate": 3, "upgrading": 1})
    m.node_upgraded(12.5)
    samples = {(s[1].get("state"), s[2]) for s in families(m)["ooto_upgrade_nodes"]}
    assert samples == {("upToDate", 3), ("upgrading", 1), ("failed", 0), ("pending", 0)}
    m.forget_module("ns", "mod")
    assert families(m).get("ooto_upgrade_nodes", []) == []


def test_the_rollout_reaction_times_are_exported_per_step_from_the_start() -> None:
    m = Metrics()
    counts = {
        s[1]["step"]: s[2]
        for s in families(m)["ooto_upgrade_step_latency_seconds"]
        if s[0].endswith("_count")
    }
    assert counts == {"label_back": 0, "next_start": 0}
    m.upgrade_step("label_back", 0.04)
    buckets = {
        s[1]["le"]: s[2]
        for s in families(m)["ooto_upgrade_step_latency_seconds"]
        if s[0].endswith("_bucket") and s[1]["step"] == "label_back"
    }
    assert buckets["0.03"] == 0 and buckets["0.05"] == 1


def test_every_actor_class_is_an_actor_kind_counted_from_the_start() -> None:
    """`ooto_actor_failures_total` exists at 0 for every actor class, so `increase()` (the
    OotoActorFailures alert) sees the first failure of each."""
    import importlib
    import pkgutil

    import actors
    from actors.base import OotoActor

    for info in pkgutil.iter_modules(actors.__path__):
        importlib.import_module(f"actors.{info.name}")

    def concrete(cls: type) -> set[str]:
        ours = [sub for sub in cls.__subclasses__() if sub.__module__.startswith("actors.")]
        return {sub.__name__ for sub in ours}.union(*(concrete(sub) for sub in ours))

    from ooto.metrics import ACTOR_KINDS

    assert concrete(OotoActor) <= set(ACTOR_KINDS), (
        f"add to ooto.metrics.ACTOR_KINDS: {sorted(concrete(OotoActor) - set(ACTOR_KINDS))}"
    )
