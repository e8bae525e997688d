"""The plug-in registries: each platform and router declares every kind it renders, a model at rest is
applied exactly as `render_settled` (what `nlpctl render` prints) renders it, and Knative's in-place
canary runs on its own platform."""

from __future__ import annotations

from typing import Any

import pytest
from decisions import applies

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.autoscaling import ScalingSupport
from nlpmodel_operator.core.children import child_kinds, watched_kinds
from nlpmodel_operator.core.monitoring import Monitoring
from nlpmodel_operator.core.observe import revision_states
from nlpmodel_operator.core.platforms import PLATFORMS, Split, platform_of
from nlpmodel_operator.core.reconcile import Observation, RevisionState, decide
from nlpmodel_operator.core.render import at_rest, render_settled
from nlpmodel_operator.core.resolve import resolve
from nlpmodel_operator.core.resolved import Resolved
from nlpmodel_operator.core.routers import ROUTERS

SUPPORT = ScalingSupport("autoscaling/v2", keda=True, prometheus_url="http://prom:9090")
T0 = "2026-11-26T10:00:00Z"
# Every platform and router, fixed and autoscaled (cpu and an LLM metric).
SERVINGS = [
    {"platform": "kserve", "router": "gateway-api"},
    {"platform": "kserve", "router": "replica-ratio"},
    {"platform": "kserve", "router": "kserve-canary"},
    {"platform": "raw", "router": "gateway-api"},
    {"platform": "raw", "router": "replica-ratio"},
]
SCALINGS = [
    {"minReplicas": 2, "maxReplicas": 2},
    {"minReplicas": 1, "maxReplicas": 4, "metric": "cpu", "target": 70},
    {"minReplicas": 1, "maxReplicas": 4, "metric": "queue-depth", "target": 8},
]


def spec(serving: dict[str, str], scaling: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
        "resources": {"gpu": {"count": 1, "product": "nvidia-l4"}, "cpu": "4"},
        "serving": serving,
        "scaling": scaling,
    }


def resolved_of(body: dict[str, Any]) -> Resolved | None:
    """None where the combination is not valid (Knative autoscales on concurrency or cpu only)."""
    try:
        parsed = NLPModelSpec.model_validate(body)
    except ValueError:
        return None
    resolution = resolve("chat", "ml", parsed)
    return resolution.resolved if not resolution.problems else None


RESOLVED = {
    f"{s['platform']}-{s['router']}-{sc.get('metric', 'fixed')}": r
    for s in SERVINGS
    for sc in SCALINGS
    if (r := resolved_of(spec(s, sc))) is not None
}
CASES = [pytest.param(r, id=case) for case, r in RESOLVED.items()]


def identity(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["apiVersion"], obj["kind"], obj["metadata"]["name"]


def declared(kinds: tuple[Any, ...]) -> set[tuple[str, str]]:
    return {(k.api_version, k.kind) for k in kinds}


@pytest.mark.parametrize("resolved", CASES)
def test_each_plugin_declares_the_kinds_it_renders(resolved: Resolved) -> None:
    platform = platform_of(resolved.spec.serving)
    settled = render_settled(resolved, SUPPORT, Monitoring(15))
    assert {(o["apiVersion"], o["kind"]) for o in settled.workloads} <= declared(platform.kinds)
    router = next(r for r in ROUTERS if r.name == resolved.spec.serving.router)
    assert {(o["apiVersion"], o["kind"]) for o in settled.routes} <= declared(router.kinds)
    # The shell lists every kind decide() may apply (HPAs in the version the server offers).
    listed = declared(child_kinds())
    assert {(o["apiVersion"], o["kind"]) for o in settled.objects} <= listed


@pytest.mark.parametrize("resolved", CASES)
def test_a_new_model_is_applied_as_render_settled_renders_it(resolved: Resolved) -> None:
    obs = Observation(
        "chat",
        "ml",
        1,
        resolved.spec.model_dump(by_alias=True),
        {},
        {},
        T0,
        scaling=SUPPORT,
        monitoring=Monitoring(15),
    )
    applied = applies(decide(obs))
    rendered = render_settled(resolved, SUPPORT, Monitoring(15)).objects
    assert sorted(map(identity, applied)) == sorted(map(identity, rendered))
    for want in rendered:
        (have,) = [o for o in applied if identity(o) == identity(want)]
        if want["kind"] == "Deployment" and "replicas" not in want["spec"]:
            have = {**have, "spec": {k: v for k, v in have["spec"].items() if k != "replicas"}}  # born at min
        assert have == want


def test_a_model_at_rest_is_applied_as_render_settled_renders_it() -> None:
    resolved = RESOLVED["raw-gateway-api-cpu"]
    at_rest = RevisionState(resolved.revision, (), True)
    status = {"stableRevision": resolved.revision}
    obs = Observation(
        "chat",
        "ml",
        1,
        resolved.spec.model_dump(by_alias=True),
        status,
        {resolved.revision: at_rest},
        T0,
        scaling=SUPPORT,
    )
    applied = applies(decide(obs))
    assert applied == render_settled(resolved, SUPPORT).objects


def test_kserve_canary_runs_one_serverless_inference_service_named_after_the_model() -> None:
    resolved = RESOLVED["kserve-kserve-canary-fixed"]
    settled = render_settled(resolved)
    (isvc,) = settled.objects
    assert (isvc["kind"], isvc["metadata"]["name"]) == ("InferenceService", "chat")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert platform_of(resolved.spec.serving).name == "kserve-serverless"
    # Mid-canary the same object carries the split.
    (split,) = platform_of(resolved.spec.serving).render(
        resolved, at_rest(resolved, SUPPORT), SUPPORT, Split("0ld0ld00", resolved.revision, 25)
    )
    assert split["spec"]["predictor"]["canaryTrafficPercent"] == 25


def test_each_workload_has_one_owner_and_the_previous_knative_revision_is_served() -> None:
    standard, knative = RESOLVED["kserve-gateway-api-fixed"], RESOLVED["kserve-kserve-canary-fixed"]
    objects = [
        *render_settled(standard).workloads,
        *platform_of(knative.spec.serving).render(
            knative, at_rest(knative, SUPPORT), SUPPORT, Split("0ld0ld00", knative.revision, 10)
        ),
    ]
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    owners = [[p.name for p in PLATFORMS if p.owns({**o, **ready})] for o in objects]
    assert owners == [["kserve"], ["kserve-serverless"]]
    states = revision_states([{**o, **ready} for o in objects[1:]])
    assert set(states) == {knative.revision, "0ld0ld00"}
    assert states["0ld0ld00"].children == ()
    assert states["0ld0ld00"].ready


def test_the_watched_kinds_are_those_that_serve_or_carry_traffic() -> None:
    # An InferencePool carries traffic, and its Gateway's report decides whether its revision may.
    assert [k.kind for k in watched_kinds()] == [
        "InferenceService",
        "Deployment",
        "Service",
        "LLMInferenceService",
        "HTTPRoute",
        "InferencePool",
    ]
    assert [k.kind for k in child_kinds() if not k.watched] == [
        "PodMonitor",
        "NetworkPolicy",
        "ScaledObject",
        "HorizontalPodAutoscaler",
    ]
