"""Autoscaling: who sizes each revision, the autoscaler objects, and the hand-over of a live count."""

from __future__ import annotations

import re
from typing import Any

import pytest
from decisions import applies, deletes

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.status import to_json
from nlpmodel_operator.core.autoscaling import (
    Autoscaled,
    Fixed,
    ScalingSupport,
    metric_query,
    serving_scale,
)
from nlpmodel_operator.core.conditions import find
from nlpmodel_operator.core.observe import applies_replicas, revision_states
from nlpmodel_operator.core.reconcile import Decision, Observation, decide
from nlpmodel_operator.core.records import Action, Apply, ChildRef, Delete, HandOver, Patch, RevisionState
from nlpmodel_operator.core.revision import revision_hash

OLD = "0ld0ld00"
T0 = "2026-11-26T10:00:00Z"
FULL = ScalingSupport(hpa_api_version="autoscaling/v2", keda=True, prometheus_url="http://prom:9090")


def body(platform: str = "raw", **scaling: Any) -> dict[str, Any]:
    return {
        "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
        "resources": {"gpu": {"count": 1, "product": "nvidia-l4"}, "cpu": "4"},
        "serving": {"platform": platform, "router": "gateway-api"},
        "scaling": {"minReplicas": 2, "maxReplicas": 6, "metric": "cpu", **scaling},
        "rollout": {"steps": [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "1m"}]},
    }


def rev_of(spec: dict[str, Any]) -> str:
    return revision_hash(NLPModelSpec.model_validate(spec))


def deployment_state(
    revision: str, *, scaler: str | None = None, replicas: int = 2, applied: bool = False
) -> RevisionState:
    children = [
        ChildRef("apps/v1", "Deployment", f"chat-{revision}"),
        ChildRef("v1", "Service", f"chat-{revision}"),
    ]
    if scaler == "HorizontalPodAutoscaler":
        children.append(ChildRef("autoscaling/v2", scaler, f"chat-{revision}"))
    elif scaler == "ScaledObject":
        children.append(ChildRef("keda.sh/v1alpha1", scaler, f"chat-{revision}"))
    return RevisionState(revision, tuple(children), True, "", replicas, replicas, replicas_applied=applied)


def observe(
    spec: dict[str, Any],
    status: dict[str, Any] | None = None,
    revisions: tuple[RevisionState, ...] | list[RevisionState] = (),
    support: ScalingSupport = FULL,
    command: str | None = None,
) -> Observation:
    return Observation(
        "chat",
        "ml",
        1,
        spec,
        status or {},
        {r.revision: r for r in revisions},
        T0,
        command=command,
        scaling=support,
    )


def canary_status(canary: str, step: int = 0) -> dict[str, Any]:
    return {
        "stableRevision": OLD,
        "canaryRevision": canary,
        "currentStep": step,
        "stepStartedAt": T0,
        "canaryStartedAt": T0,
    }


def applied(decision: Decision, kind: str) -> list[dict[str, Any]]:
    return [o for o in applies(decision) if o["kind"] == kind]


def scalers_by_target(decision: Decision, obs: Observation) -> dict[str, int]:
    """After the decision: how many autoscalers target each workload (applied or left standing)."""
    deleted = set(deletes(decision))
    standing = {
        (ref.kind, ref.name)
        for state in obs.revisions.values()
        for ref in state.children
        if ref.kind in {"HorizontalPodAutoscaler", "ScaledObject"} and ref not in deleted
    }
    standing |= {
        (o["kind"], o["metadata"]["name"])
        for o in applies(decision)
        if o["kind"] in {"HorizontalPodAutoscaler", "ScaledObject"}
    }
    counts: dict[str, int] = {}
    for _, name in standing:  # an autoscaler is named like the Deployment it scales
        counts[name] = counts.get(name, 0) + 1
    return counts


def index(actions: list[Action], predicate: Any) -> int:
    return next(i for i, a in enumerate(actions) if predicate(a))


@pytest.mark.parametrize(
    ("scaling", "fixed", "lent", "possible", "expected"),
    [
        ({"minReplicas": 2, "maxReplicas": 6}, None, 0, True, Autoscaled(2, 6)),
        ({"minReplicas": 2, "maxReplicas": 6}, 5, 2, True, Autoscaled(2, 4)),  # gpuSurge: false lends 2
        ({"minReplicas": 2, "maxReplicas": 3}, 2, 3, True, Autoscaled(1, 1)),  # never below one
        ({"minReplicas": 2, "maxReplicas": 6}, None, 0, False, Fixed(2)),  # no autoscaler here
        ({"minReplicas": 3, "maxReplicas": 3}, None, 0, True, Fixed(3)),
        ({"minReplicas": 3, "maxReplicas": 3, "replicas": 5}, None, 0, True, Fixed(5)),  # kubectl scale
        ({"minReplicas": 3, "maxReplicas": 3}, 2, 1, True, Fixed(2)),  # the rollout sizes it
    ],
)
def test_who_sizes_the_serving_revision(
    scaling: dict[str, Any], fixed: int | None, lent: int, possible: bool, expected: Any
) -> None:
    spec = NLPModelSpec.model_validate({**body(), "scaling": {"metric": "queue-depth", **scaling}})
    assert serving_scale(spec, fixed, lent, possible) == expected


@pytest.mark.parametrize("version", ["autoscaling/v2", "autoscaling/v2beta2"])
def test_a_new_raw_model_on_cpu_gets_an_hpa_of_the_served_version_and_starts_at_its_minimum(
    version: str,
) -> None:
    spec = body()
    d = decide(
        observe(spec, support=ScalingSupport(hpa_api_version=version, keda=False, prometheus_url=None))
    )
    (deployment,) = applied(d, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    (hpa,) = applied(d, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == version
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"chat-{rev_of(spec)}",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {
        "type": "Utilization",
        "averageUtilization": 70,
    }
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert hpa["metadata"]["labels"]["serving.nlpmodel.dev/revision"] == rev_of(spec)
    condition = find(d.status.conditions, "Autoscaling")
    assert condition is not None
    assert (condition.status, condition.reason) == ("True", "Autoscaled")
    assert f"HorizontalPodAutoscaler ({version})" in condition.message


def test_an_autoscaled_deployment_is_applied_without_a_count_once_it_runs() -> None:
    spec = body()
    r = rev_of(spec)
    d = decide(
        observe(
            spec, {"stableRevision": r}, [deployment_state(r, scaler="HorizontalPodAutoscaler", replicas=5)]
        )
    )
    (deployment,) = applied(d, "Deployment")
    assert "replicas" not in deployment["spec"]  # the HPA's count stands
    assert not [a for a in d.actions if isinstance(a, Patch | HandOver)]  # nothing to hand over
    assert deletes(d) == []


@pytest.mark.parametrize(("live", "kept"), [(5, 5), (9, 6), (1, 2)])
def test_the_live_count_is_handed_over_before_the_operator_stops_applying_it(live: int, kept: int) -> None:
    spec = body()
    r = rev_of(spec)
    state = deployment_state(r, replicas=live, applied=True)  # e.g. a canary just promoted
    d = decide(observe(spec, {"stableRevision": r}, [state]))
    handover = index(d.actions, lambda a: isinstance(a, HandOver))
    apply = index(d.actions, lambda a: isinstance(a, Apply) and a.obj["kind"] == "Deployment")
    assert handover < apply
    assert d.actions[handover] == HandOver(ChildRef("apps/v1", "Deployment", f"chat-{r}"), kept)


def test_during_a_canary_the_stable_keeps_its_autoscaler_and_the_canary_runs_a_fixed_count() -> None:
    spec = body()
    canary = rev_of(spec)
    obs = observe(
        spec,
        canary_status(canary),
        [deployment_state(OLD, scaler="HorizontalPodAutoscaler", replicas=4)],
    )
    d = decide(obs)
    (deployment,) = applied(d, "Deployment")
    assert deployment["metadata"]["name"] == f"chat-{canary}"
    assert deployment["spec"]["replicas"] == 1  # 10 % of the base size, at least one
    hpas = applied(d, "HorizontalPodAutoscaler")
    assert [h["metadata"]["name"] for h in hpas] == [f"chat-{OLD}"]
    assert (hpas[0]["spec"]["minReplicas"], hpas[0]["spec"]["maxReplicas"]) == (2, 6)
    assert not [p for p in d.actions if isinstance(p, Patch) and p.ref.name == f"chat-{OLD}"]  # HPA's count
    assert scalers_by_target(d, obs) == {f"chat-{OLD}": 1}


def test_without_gpu_surge_the_stable_autoscaler_lends_the_canary_its_replicas() -> None:
    spec = body()
    spec["rollout"]["gpuSurge"] = False
    canary = rev_of(spec)
    obs = observe(
        spec,
        canary_status(canary, 1),
        [
            deployment_state(OLD, scaler="HorizontalPodAutoscaler", replicas=2),
            deployment_state(canary, replicas=1, applied=True),
        ],
    )
    d = decide(obs)
    (hpa,) = applied(d, "HorizontalPodAutoscaler")
    assert hpa["metadata"]["name"] == f"chat-{OLD}"
    assert hpa["spec"]["maxReplicas"] == 6 - 1  # canary at 50 % of 2 replicas: 1
    assert scalers_by_target(d, obs) == {f"chat-{OLD}": 1}


def test_a_rollback_leaves_the_stable_autoscaler_and_removes_the_canary() -> None:
    spec = body()
    canary = rev_of(spec)
    obs = observe(
        spec,
        canary_status(canary),
        [
            deployment_state(OLD, scaler="HorizontalPodAutoscaler", replicas=4),
            deployment_state(canary, replicas=1, applied=True),
        ],
        command="abort",
    )
    d = decide(obs)
    assert ChildRef("apps/v1", "Deployment", f"chat-{canary}") in deletes(d)
    assert [h["metadata"]["name"] for h in applied(d, "HorizontalPodAutoscaler")] == [f"chat-{OLD}"]
    assert scalers_by_target(d, obs) == {f"chat-{OLD}": 1}


def test_on_promotion_the_autoscaler_moves_to_the_new_stable() -> None:
    spec = body()
    new = rev_of(spec)
    # The promoted canary runs at full size; the old stable's children (its HPA among them) go.
    obs = observe(
        spec,
        canary_status(new, 2),
        [
            deployment_state(OLD, scaler="HorizontalPodAutoscaler", replicas=4),
            deployment_state(new, replicas=2, applied=True),
        ],
    )
    d = decide(obs)
    assert to_json(d.status)["stableRevision"] == new
    assert ChildRef("autoscaling/v2", "HorizontalPodAutoscaler", f"chat-{OLD}") in deletes(d)
    (hpa,) = applied(d, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"chat-{new}"
    assert scalers_by_target(d, obs) == {f"chat-{new}": 1}
    handover = [a for a in d.actions if isinstance(a, HandOver)]
    assert handover == [HandOver(ChildRef("apps/v1", "Deployment", f"chat-{new}"), 2)]


def test_a_new_metric_replaces_the_autoscaler_never_two_at_once() -> None:
    spec = body(metric="queue-depth", target=4)
    r = rev_of(spec)
    d = decide(observe(spec, {"stableRevision": r}, [deployment_state(r, scaler="HorizontalPodAutoscaler")]))
    gone = index(d.actions, lambda a: isinstance(a, Delete) and a.ref.kind == "HorizontalPodAutoscaler")
    new = index(d.actions, lambda a: isinstance(a, Apply) and a.obj["kind"] == "ScaledObject")
    assert gone < new
    so = d.actions[new]
    assert isinstance(so, Apply)
    (trigger,) = so.obj["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metricType"] == "AverageValue"
    assert trigger["metadata"]["serverAddress"] == "http://prom:9090"
    assert trigger["metadata"]["threshold"] == "4"
    assert f'nlpmodel_revision="{r}"' in trigger["metadata"]["query"]


def test_turning_autoscaling_off_removes_the_autoscaler_before_the_operator_sets_the_count() -> None:
    spec = body(minReplicas=3, maxReplicas=3)
    r = rev_of(spec)
    d = decide(
        observe(
            spec, {"stableRevision": r}, [deployment_state(r, scaler="HorizontalPodAutoscaler", replicas=5)]
        )
    )
    gone = index(d.actions, lambda a: isinstance(a, Delete) and a.ref.kind == "HorizontalPodAutoscaler")
    apply = index(d.actions, lambda a: isinstance(a, Apply) and a.obj["kind"] == "Deployment")
    assert gone < apply
    deployment = d.actions[apply]
    assert isinstance(deployment, Apply)
    assert deployment.obj["spec"]["replicas"] == 3
    condition = find(d.status.conditions, "Autoscaling")
    assert condition is not None
    assert (condition.status, condition.reason) == ("False", "FixedReplicas")


@pytest.mark.parametrize(
    ("support", "fragment"),
    [
        (ScalingSupport(keda=False, prometheus_url="http://prom:9090"), "needs KEDA"),
        (ScalingSupport(keda=True, prometheus_url=None), "Prometheus URL"),
    ],
)
def test_an_llm_metric_without_keda_or_prometheus_runs_fixed_and_says_why(
    support: ScalingSupport, fragment: str
) -> None:
    spec = body(metric="queue-depth")
    d = decide(observe(spec, support=support))
    (deployment,) = applied(d, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert applied(d, "ScaledObject") == []
    condition = find(d.status.conditions, "Autoscaling")
    assert condition is not None
    assert (condition.status, condition.reason) == ("False", "AutoscalerUnavailable")
    assert fragment in condition.message
    assert "running 2 replica(s)" in condition.message


def test_kserve_revisions_use_kserve_autoscaler_classes() -> None:
    spec = body("kserve", metric="kv-cache")
    canary = rev_of(spec)
    obs = observe(
        spec,
        canary_status(canary),
        [
            RevisionState(
                OLD, (ChildRef("serving.kserve.io/v1beta1", "InferenceService", f"chat-{OLD}"),), True
            )
        ],
    )
    d = decide(obs)
    (isvc,) = applied(d, "InferenceService")  # the canary: a fixed count, no autoscaler
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "none"
    assert (isvc["spec"]["predictor"]["minReplicas"], isvc["spec"]["predictor"]["maxReplicas"]) == (1, 1)
    assert "autoScaling" not in isvc["spec"]["predictor"]
    (resize,) = [a for a in d.actions if isinstance(a, Patch)]  # the stable keeps KEDA, on its own series
    assert resize.body["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "keda"
    predictor = resize.body["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 6)
    (metric,) = predictor["autoScaling"]["metrics"]
    assert metric["external"]["target"] == {"type": "Value", "value": "80"}
    assert metric["external"]["metric"]["query"] == f"100 * avg(vllm:kv_cache_usage_perc{{{_selector(OLD)}}})"
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == (None, None)  # merge patch: removed


def _selector(revision: str) -> str:
    return f'namespace="ml",nlpmodel_model="chat",nlpmodel_revision="{revision}"'


@pytest.mark.parametrize(
    ("metric", "query", "kind"),
    [
        ("queue-depth", "sum(vllm:num_requests_waiting{SEL})", "AverageValue"),
        ("concurrency", "sum(vllm:num_requests_running{SEL})", "AverageValue"),
        ("kv-cache", "100 * avg(vllm:kv_cache_usage_perc{SEL})", "Value"),
    ],
)
def test_scaling_queries_select_exactly_one_revision(metric: str, query: str, kind: str) -> None:
    assert metric_query(metric, "ml", "chat", "ca4a2700") == (
        query.replace("SEL", _selector("ca4a2700")),
        kind,
    )
    matchers = dict(re.findall(r'(\w+)="([^"]*)"', metric_query(metric, "ml", "chat", "ca4a2700")[0]))
    assert matchers == {"namespace": "ml", "nlpmodel_model": "chat", "nlpmodel_revision": "ca4a2700"}


def managed(manager: str, operation: str, replicas: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"f:template": {}}
    if replicas:
        spec["f:replicas"] = {}
    return {"manager": manager, "operation": operation, "fieldsV1": {"f:spec": spec}}


@pytest.mark.parametrize(
    ("entries", "owned"),
    [
        ([managed("nlpmodel-operator", "Apply", True)], True),
        ([managed("nlpmodel-operator", "Apply", False), managed("nlpmodel-operator", "Update", True)], False),
        (
            [
                managed("kube-controller-manager", "Update", True),
                managed("nlpmodel-operator", "Apply", False),
            ],
            False,
        ),
        ([], False),
    ],
)
def test_whether_the_operator_applies_the_count_is_read_from_managed_fields(
    entries: list[dict[str, Any]], owned: bool
) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "chat-5ab1e000",
            "labels": {"serving.nlpmodel.dev/revision": "5ab1e000"},
            "managedFields": entries,
        },
        "spec": {"replicas": 3},
        "status": {},
    }
    assert applies_replicas(deployment, "nlpmodel-operator") is owned
    assert revision_states([deployment], "nlpmodel-operator")["5ab1e000"].replicas_applied is owned
