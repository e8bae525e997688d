"""The pure reconcile decision and readiness observation, scenario by scenario."""

from __future__ import annotations

from typing import Any

import pytest
from decisions import applies, deletes

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.status import NLPModelStatus, to_json
from nlpmodel_operator.core.conditions import find
from nlpmodel_operator.core.observe import child_readiness, revision_states
from nlpmodel_operator.core.reconcile import ChildRef, Observation, RevisionState, decide
from nlpmodel_operator.core.revision import revision_hash

SPEC: dict[str, Any] = {"model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"}}
REV = revision_hash(NLPModelSpec.model_validate(SPEC))
OLD = "0ld0ld00"
T0, T1 = "2026-11-26T10:00:00Z", "2026-11-26T10:05:00Z"


def isvc_ref(rev: str) -> ChildRef:
    return ChildRef("serving.kserve.io/v1beta1", "InferenceService", f"chat-{rev}")


def state(rev: str, ready: bool, message: str = "") -> RevisionState:
    return RevisionState(rev, (isvc_ref(rev),), ready, message)


def observe(
    spec: Any = None,
    status: dict[str, Any] | None = None,
    revisions: list[RevisionState] | None = None,
    now: str = T0,
) -> Observation:
    return Observation(
        name="chat",
        namespace="ml",
        generation=3,
        spec=SPEC if spec is None else spec,
        status=status or {},
        revisions={r.revision: r for r in revisions or []},
        now=now,
    )


def cond(status: NLPModelStatus, type_: str) -> tuple[str, str]:
    found = find(status.conditions, type_)
    assert found is not None, type_
    return found.status, found.reason


def test_new_model_creates_its_revision() -> None:
    d = decide(observe())
    assert [(o["kind"], o["metadata"]["name"]) for o in applies(d)] == [
        ("InferenceService", f"chat-{REV}"),
        ("HTTPRoute", "chat"),
    ]
    assert deletes(d) == []
    s = to_json(d.status)
    assert (s["phase"], s["stableRevision"], s["observedGeneration"]) == ("Pending", REV, 3)
    assert cond(d.status, "SpecValid") == ("True", "Valid")
    assert cond(d.status, "GPUFit") == ("True", "Fits")
    assert cond(d.status, "Ready") == ("False", "ChildrenMissing")
    assert s["plan"]["fits"] is True
    assert s["plan"]["architecture"] == "llama-3.1-8b"
    assert s["selector"] == f"serving.nlpmodel.dev/model=chat,serving.nlpmodel.dev/revision={REV}"
    assert s["endpoint"] == f"http://chat-{REV}-predictor.ml.svc.cluster.local"


@pytest.mark.parametrize(
    ("ready", "phase", "condition"),
    [(False, "Progressing", ("False", "ChildrenNotReady")), (True, "Ready", ("True", "ChildrenReady"))],
)
def test_ready_follows_the_revision(ready: bool, phase: str, condition: tuple[str, str]) -> None:
    d = decide(observe(status={"stableRevision": REV}, revisions=[state(REV, ready, "predictor not ready")]))
    assert to_json(d.status)["phase"] == phase
    assert cond(d.status, "Ready") == condition


def test_ready_flips_back_and_transition_time_moves_only_on_flips() -> None:
    first = decide(observe(revisions=[state(REV, True)], now=T0)).status
    same = decide(observe(status=first, revisions=[state(REV, True)], now=T1)).status
    assert same == first  # nothing changed: nothing to write
    flipped = decide(observe(status=first, revisions=[state(REV, False, "pods crashed")], now=T1)).status
    ready = find(flipped.conditions, "Ready")
    assert ready is not None
    assert (ready.status, ready.last_transition_time, ready.message) == ("False", T1, "pods crashed")
    spec_valid = find(flipped.conditions, "SpecValid")
    assert spec_valid is not None
    assert spec_valid.last_transition_time == T0


def test_model_that_does_not_fit_gets_no_children() -> None:
    spec = {
        "model": {"uri": "hf://Qwen/Qwen2.5-72B-Instruct"},
        "resources": {"gpu": {"count": 1, "product": "nvidia-l4"}},
    }
    d = decide(observe(spec=spec))
    assert applies(d) == []
    assert deletes(d) == []
    assert to_json(d.status)["phase"] == "Failed"
    assert cond(d.status, "SpecValid") == ("False", "DoesNotFit")
    assert cond(d.status, "GPUFit") == ("False", "DoesNotFit")
    gpu_fit = find(d.status.conditions, "GPUFit")
    assert gpu_fit is not None
    assert "weights need" in gpu_fit.message
    assert "nvidia-l4" in gpu_fit.message
    assert to_json(d.status)["plan"]["fits"] is False
    assert [e.reason for e in d.events] == ["InvalidSpec"]
    # The same problem again posts no second Event.
    assert decide(observe(spec=spec, status=d.status)).events == []


def test_invalid_update_keeps_the_serving_revision() -> None:
    bad = {**SPEC, "quantization": {"method": "bitsandbytes-nf4"}}  # vLLM 0.33 has no bitsandbytes
    d = decide(observe(spec=bad, status={"stableRevision": OLD}, revisions=[state(OLD, True)]))
    assert applies(d) == []
    assert deletes(d) == []
    assert (to_json(d.status)["phase"], to_json(d.status)["stableRevision"]) == ("Ready", OLD)
    assert cond(d.status, "SpecValid") == ("False", "InvalidSpec")
    spec_valid = find(d.status.conditions, "SpecValid")
    assert spec_valid is not None
    assert "engine: transformers" in spec_valid.message


def test_schema_level_garbage_never_raises() -> None:
    d = decide(observe(spec={"model": {"uri": 42}, "scaling": "lots"}))
    assert applies(d) == []
    assert to_json(d.status)["phase"] == "Failed"
    assert cond(d.status, "GPUFit")[0] == "Unknown"


def test_template_change_starts_a_canary_beside_the_stable() -> None:
    d = decide(observe(status={"stableRevision": OLD}, revisions=[state(OLD, True)]))
    assert [(o["kind"], o["metadata"]["name"]) for o in applies(d)] == [
        ("InferenceService", f"chat-{REV}"),
        ("HTTPRoute", "chat"),
    ]
    assert deletes(d) == []  # the stable serves until the canary is promoted
    assert (
        to_json(d.status)["stableRevision"],
        to_json(d.status)["canaryRevision"],
        to_json(d.status)["canaryWeight"],
    ) == (OLD, REV, 0)
    assert to_json(d.status)["phase"] == "Progressing"
    assert cond(d.status, "Ready") == ("True", "ChildrenReady")
    assert cond(d.status, "Progressing") == ("True", "CanaryProgressing")
    route = applies(d)[1]
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"name": f"chat-{OLD}-predictor", "port": 80, "weight": 100},
        {"name": f"chat-{REV}-predictor", "port": 80, "weight": 0},
    ]


def test_leftover_revisions_are_removed() -> None:
    d = decide(observe(status={"stableRevision": REV}, revisions=[state(REV, True), state(OLD, False)]))
    assert deletes(d) == [isvc_ref(OLD)]


def test_unknown_architecture_is_served_without_a_plan() -> None:
    d = decide(observe(spec={"model": {"uri": "s3://bucket/my-finetune"}}))
    assert [o["kind"] for o in applies(d)] == ["InferenceService", "HTTPRoute"]
    assert cond(d.status, "GPUFit") == ("Unknown", "UnknownArchitecture")
    assert "plan" not in to_json(d.status)


def test_scaling_change_keeps_the_revision_and_updates_replicas() -> None:
    spec = {**SPEC, "scaling": {"minReplicas": 2, "maxReplicas": 5}}
    d = decide(observe(spec=spec, status={"stableRevision": REV}, revisions=[state(REV, True)]))
    assert applies(d)[0]["metadata"]["name"] == f"chat-{REV}"
    predictor = applies(d)[0]["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 5)
    assert deletes(d) == []


def isvc(ready: str | None, message: str = "") -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "chat-abc", "labels": {"serving.nlpmodel.dev/revision": "abc"}},
    }
    if ready is not None:
        obj["status"] = {"conditions": [{"type": "Ready", "status": ready, "message": message}]}
    return obj


def deployment(
    replicas: int, ready: int, updated: int, generation: int = 2, observed: int = 2
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "chat-abc",
            "generation": generation,
            "labels": {"serving.nlpmodel.dev/revision": "abc"},
        },
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready, "updatedReplicas": updated, "observedGeneration": observed},
    }


@pytest.mark.parametrize(
    ("obj", "ready", "fragment"),
    [
        pytest.param(isvc(None), False, "no Ready condition", id="isvc-new"),
        pytest.param(
            isvc("False", "predictor pods pending"), False, "predictor pods pending", id="isvc-not-ready"
        ),
        pytest.param(isvc("True"), True, "", id="isvc-ready"),
        pytest.param(deployment(2, 2, 2), True, "", id="deploy-ready"),
        pytest.param(deployment(2, 1, 2), False, "1/2 replicas ready", id="deploy-partial"),
        pytest.param(deployment(2, 2, 1), False, "2/2", id="deploy-old-pods"),
        pytest.param(deployment(2, 2, 2, generation=3, observed=2), False, "2/2", id="deploy-stale-status"),
        pytest.param(deployment(0, 0, 0), False, "scaled to zero", id="deploy-zero"),
    ],
)
def test_child_readiness(obj: dict[str, Any], ready: bool, fragment: str) -> None:
    ok, why, _, _ = child_readiness(obj)
    assert ok is ready
    assert fragment in why


def test_revision_states_group_children_and_need_a_workload() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "chat-def", "labels": {"serving.nlpmodel.dev/revision": "def"}},
    }
    route = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "chat", "labels": {}}}
    states = revision_states([isvc("True"), deployment(1, 1, 1), service, route])
    assert set(states) == {"abc", "def"}
    assert states["abc"].ready is True
    assert len(states["abc"].children) == 2
    assert (states["abc"].replicas, states["abc"].ready_replicas) == (1, 1)
    assert states["def"].ready is False  # a Service alone does not serve anything
