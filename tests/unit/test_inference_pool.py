"""The inference-pool router (pure): one InferencePool per revision, the HTTPRoute weighting pools, and
a pool's readiness as its Gateways report it."""

from __future__ import annotations

from typing import Any

import pytest
from decisions import applies, deletes

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.observe import revision_states
from nlpmodel_operator.core.reconcile import ChildRef, Observation, RevisionState, decide
from nlpmodel_operator.core.records import Apply, Delete
from nlpmodel_operator.core.revision import revision_hash
from nlpmodel_operator.core.routers import ROUTERS, Backend, RouteContext, router_for
from nlpmodel_operator.core.routers.inference_pool import pool_state

MODEL = "hf://meta-llama/Llama-3.1-8B-Instruct"
GATEWAY = {"name": "inference-gateway", "namespace": "gateway-system"}
PICKER = {"name": "chat-epp", "port": 9002, "failureMode": "FailOpen"}
REV_LABEL = "serving.nlpmodel.dev/revision"


def spec(**serving: Any) -> NLPModelSpec:
    return NLPModelSpec.model_validate(
        {"model": {"uri": MODEL}, "serving": {"platform": "raw", "router": "inference-pool", **serving}}
    )


def context(serving: dict[str, Any], canary: bool, weight: int) -> RouteContext:
    return RouteContext(
        "chat",
        "ml",
        spec(**serving),
        Backend("aaaa1111", "chat-aaaa1111"),
        Backend("bbbb2222", "chat-bbbb2222") if canary else None,
        weight,
    )


@pytest.mark.parametrize(
    ("canary", "weight", "pools", "weights"),
    [
        pytest.param(False, 0, ["chat-aaaa1111"], [("chat-aaaa1111", 100)], id="settled"),
        pytest.param(
            True,
            0,
            ["chat-aaaa1111", "chat-bbbb2222"],
            [("chat-aaaa1111", 100), ("chat-bbbb2222", 0)],
            id="canary-not-ready",
        ),
        pytest.param(
            True,
            10,
            ["chat-aaaa1111", "chat-bbbb2222"],
            [("chat-aaaa1111", 90), ("chat-bbbb2222", 10)],
            id="step-10",
        ),
        pytest.param(
            True,
            50,
            ["chat-aaaa1111", "chat-bbbb2222"],
            [("chat-aaaa1111", 50), ("chat-bbbb2222", 50)],
            id="step-50",
        ),
    ],
)
def test_render_weights_one_pool_per_revision(
    canary: bool, weight: int, pools: list[str], weights: list[tuple[str, int]]
) -> None:
    objects = router_for("inference-pool").render(context({"gateway": GATEWAY}, canary, weight))
    assert [o["kind"] for o in objects] == ["InferencePool"] * len(pools) + ["HTTPRoute"]
    assert [o["metadata"]["name"] for o in objects[:-1]] == pools
    route = objects[-1]
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == weights
    assert {(r["group"], r["kind"]) for r in refs} == {("inference.networking.k8s.io", "InferencePool")}
    assert route["metadata"]["name"] == "chat"


@pytest.mark.parametrize(
    ("serving", "picker"),
    [
        pytest.param({}, None, id="no-picker"),
        pytest.param(
            {"endpointPicker": PICKER},
            {"name": "chat-epp", "port": {"number": 9002}, "failureMode": "FailOpen"},
            id="picker",
        ),
        pytest.param(
            {"endpointPicker": {"name": "chat-epp", "port": 9002}},
            {"name": "chat-epp", "port": {"number": 9002}, "failureMode": "FailClose"},
            id="picker-default-fail-close",
        ),
    ],
)
def test_pool_selects_exactly_its_revisions_pods(serving: dict[str, Any], picker: Any) -> None:
    pool = router_for("inference-pool").render(context(serving, True, 10))[1]
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    assert pool["metadata"]["name"] == "chat-bbbb2222"
    # Listed among the model's children by its model label; a revision's object: goes with it.
    assert pool["metadata"]["labels"]["serving.nlpmodel.dev/model"] == "chat"
    assert pool["metadata"]["labels"][REV_LABEL] == "bbbb2222"
    assert pool["spec"]["selector"] == {
        "matchLabels": {"serving.nlpmodel.dev/model": "chat", REV_LABEL: "bbbb2222"}
    }
    assert pool["spec"]["targetPorts"] == [{"number": 8080}]  # the serving container's port
    assert pool["spec"].get("endpointPickerRef") == picker


@pytest.mark.parametrize("platform", ["raw", "kserve"])
def test_the_pools_selector_matches_the_labels_of_the_revisions_pods(platform: str) -> None:
    """Raw: the Deployment's pod template; KServe: the predictor's `labels`, which it copies to the pods."""
    model = NLPModelSpec.model_validate(
        {"model": {"uri": MODEL}, "serving": {"platform": platform, "router": "inference-pool"}}
    )
    rev = revision_hash(model)
    d = decide(Observation("chat", "ml", 1, model.model_dump(by_alias=True), {}, {}, "2026-11-26T10:00:00Z"))
    objects = applies(d)
    pool = next(o for o in objects if o["kind"] == "InferencePool")
    workload = next(o for o in objects if o["kind"] in ("Deployment", "InferenceService"))
    pod_labels = (
        workload["spec"]["template"]["metadata"]["labels"]
        if platform == "raw"
        else workload["spec"]["predictor"]["labels"]
    )
    assert pool["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pool["metadata"]["name"] == f"chat-{rev}"


def test_route_attaches_like_the_gateway_api_router() -> None:
    serving = {"gateway": {**GATEWAY, "sectionName": "http"}, "hostnames": ["chat.example.com"]}
    pool_route = router_for("inference-pool").render(context(serving, True, 10))[-1]
    ctx = context(serving, True, 10)
    service_route = router_for("gateway-api").render(ctx)[0]
    for field in ("parentRefs", "hostnames"):
        assert pool_route["spec"][field] == service_route["spec"][field]
    assert pool_route["metadata"] == service_route["metadata"]


def accepted_by(
    gateway: str, accepted: str = "True", resolved: str | None = "True", kind: str | None = "Gateway"
) -> dict[str, Any]:
    conditions = [{"type": "Accepted", "status": accepted, "reason": "Accepted", "message": ""}]
    if resolved is not None:
        reason = "ResolvedRefs" if resolved == "True" else "InvalidExtensionRef"
        conditions.append({"type": "ResolvedRefs", "status": resolved, "reason": reason, "message": "no epp"})
    ref: dict[str, Any] = {"name": gateway}
    if kind is not None:
        ref["kind"] = kind
    return {"parentRef": ref, "conditions": conditions}


def pool(*parents: dict[str, Any], rev: str = "abc") -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": f"chat-{rev}", "labels": {REV_LABEL: rev}},
        "spec": {},
    }
    if parents:
        obj["status"] = {"parents": list(parents)}
    return obj


@pytest.mark.parametrize(
    ("obj", "ok", "fragment"),
    [
        pytest.param(pool(), True, "", id="no-gateway-reports"),
        pytest.param(
            pool(accepted_by("default", "Unknown", None, kind="Status")), True, "", id="not-a-gateway"
        ),
        pytest.param(pool(accepted_by("gw")), True, "", id="accepted-and-resolved"),
        pytest.param(pool(accepted_by("gw", kind=None)), True, "", id="kind-defaults-to-gateway"),
        pytest.param(
            pool(accepted_by("gw", "False")), False, "Gateway gw reports Accepted=False", id="rejected"
        ),
        pytest.param(
            pool(accepted_by("gw", resolved="False")),
            False,
            "ResolvedRefs=False (InvalidExtensionRef): no epp",
            id="picker-unresolved",
        ),
        pytest.param(
            pool(accepted_by("gw", resolved=None)), False, "not reported ResolvedRefs", id="half-way"
        ),
        pytest.param(
            pool(accepted_by("gw"), accepted_by("other", "False")), False, "Gateway other", id="one-of-two"
        ),
    ],
)
def test_pool_state_reads_what_the_gateways_report(obj: dict[str, Any], ok: bool, fragment: str) -> None:
    state = pool_state(obj)
    assert state.can_take_traffic is ok
    assert fragment in state.message
    if not ok:
        assert "InferencePool chat-abc" in state.message


def test_only_the_inference_pool_router_reads_pools() -> None:
    """The other routers judge nothing: their revisions' readiness is their workloads' alone."""
    for router in ROUTERS:
        verdict = router.backend_state(pool(accepted_by("gw", "False")))
        assert (verdict is not None) is (router.name == "inference-pool")
        assert router.backend_state({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}}) is None


def ready_deployment(rev: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"chat-{rev}", "generation": 1, "labels": {REV_LABEL: rev}},
        "spec": {"replicas": 1},
        "status": {"readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1},
    }


@pytest.mark.parametrize(
    ("pool_obj", "ready", "fragment"),
    [
        pytest.param(None, True, "", id="no-pool"),
        pytest.param(pool(), True, "", id="pool-without-gateway"),
        pytest.param(pool(accepted_by("gw")), True, "", id="pool-accepted"),
        pytest.param(pool(accepted_by("gw", "False")), False, "Accepted=False", id="pool-rejected"),
    ],
)
def test_a_revision_serves_only_while_its_pool_can(
    pool_obj: dict[str, Any] | None, ready: bool, fragment: str
) -> None:
    children = [ready_deployment("abc"), *([pool_obj] if pool_obj is not None else [])]
    state = revision_states(children)["abc"]
    assert (state.ready, state.can_serve) == (ready, ready)
    assert fragment in state.message


def test_canary_whose_pool_is_rejected_gets_no_traffic_and_goes_after_the_route_moved() -> None:
    model = spec(gateway=GATEWAY)
    canary = revision_hash(model)
    stable = "5ab1e000"
    canary_children = revision_states(
        [ready_deployment(canary), pool(accepted_by("gw", "False"), rev=canary)]
    )[canary]
    status = {
        "stableRevision": stable,
        "canaryRevision": canary,
        "currentStep": 0,
        "canaryWeight": 10,
        "stepStartedAt": "2026-11-26T10:00:00Z",
        "canaryStartedAt": "2026-11-26T10:00:00Z",
    }
    stable_state = RevisionState(stable, (ChildRef("apps/v1", "Deployment", f"chat-{stable}"),), True)
    obs = Observation(
        "chat",
        "ml",
        1,
        model.model_dump(by_alias=True),
        status,
        {stable: stable_state, canary: canary_children},
        "2026-11-26T10:00:01Z",
    )
    d = decide(obs)
    route = next(o for o in applies(d) if o["kind"] == "HTTPRoute")
    assert [(r["name"], r["weight"]) for r in route["spec"]["rules"][0]["backendRefs"]] == [
        (f"chat-{stable}", 100),
        (f"chat-{canary}", 0),
    ]
    assert d.status.canary_weight == 0
    # Aborted: the route goes back to the stable alone before the canary's pool and workload are deleted.
    aborted = decide(
        Observation(
            "chat",
            "ml",
            1,
            model.model_dump(by_alias=True),
            status,
            {stable: stable_state, canary: canary_children},
            "2026-11-26T10:00:01Z",
            command="abort",
        )
    )
    kinds = [
        ("Apply", a.obj["kind"]) if isinstance(a, Apply) else ("Delete", a.ref.kind)
        for a in aborted.actions
        if isinstance(a, Apply | Delete)
    ]
    route_at = kinds.index(("Apply", "HTTPRoute"))
    pool_gone = kinds.index(("Delete", "InferencePool"))
    assert route_at < pool_gone
    assert {r.kind for r in deletes(aborted)} == {"Deployment", "InferencePool"}
