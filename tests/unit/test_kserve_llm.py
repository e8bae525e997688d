"""Platform kserve-llm (KServe LLMInferenceService v1alpha2): rendering, readiness from KServe's
conditions, and the per-revision weight / stop / delete lifecycle of `decide`."""

from __future__ import annotations

from typing import Any

import pytest

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.status import NLPModelStatus
from nlpmodel_operator.core.conditions import find
from nlpmodel_operator.core.platforms import Split, platform_of
from nlpmodel_operator.core.platforms.kserve_llm import (
    STOP_ANNOTATION,
    additional_args,
    child_name,
    observe_llm_inference_service,
    share,
)
from nlpmodel_operator.core.reconcile import Observation, decide
from nlpmodel_operator.core.records import Action, Apply, ChildRef, Delete, Patch, RevisionState
from nlpmodel_operator.core.render import render_revision, render_settled
from nlpmodel_operator.core.resolve import resolve
from nlpmodel_operator.core.revision import revision_hash
from nlpmodel_operator.core.validation import parse_spec

SPEC: dict[str, Any] = {
    "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "servedName": "chat"},
    "serving": {"platform": "kserve-llm"},
    "scaling": {"minReplicas": 2, "maxReplicas": 2},
    "rollout": {
        "steps": [{"weight": 10, "pause": "10m"}, {"weight": 50, "pause": "10m"}],
        "stoppedRetention": "10m",
    },
}
REV = revision_hash(NLPModelSpec.model_validate(SPEC))
OLD = "0ld0ld00"
T0, T1, T_LATE = "2026-11-26T10:00:00Z", "2026-11-26T10:05:00Z", "2026-11-26T10:30:00Z"


def resolved(spec: dict[str, Any] = SPEC) -> Any:
    parsed = NLPModelSpec.model_validate(spec)
    resolution = resolve("chat", "ml", parsed)
    assert resolution.resolved is not None, resolution.problems
    return resolution.resolved


def ref(rev: str) -> ChildRef:
    return ChildRef("serving.kserve.io/v1alpha2", "LLMInferenceService", f"chat-{rev}")


def state(rev: str, ready: bool = True, stopped: bool = False) -> RevisionState:
    return RevisionState(rev, (ref(rev),), ready, "", stopped=stopped)


def observe(status: dict[str, Any], revisions: list[RevisionState], now: str = T1) -> Observation:
    return Observation(
        name="chat",
        namespace="ml",
        generation=2,
        spec=SPEC,
        status=status,
        revisions={r.revision: r for r in revisions},
        now=now,
    )


def described(action: Action) -> tuple[str, ...]:
    """An action as (verb, name, what it sets) for the order tables below."""
    if isinstance(action, Apply):
        obj = action.obj
        weight = ((obj.get("spec") or {}).get("router") or {}).get("route", {}).get("weight")
        return ("apply", obj["metadata"]["name"], f"weight={weight}")
    if isinstance(action, Patch):
        body = action.body
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        if STOP_ANNOTATION in annotations:
            return ("patch", action.ref.name, "stop" if annotations[STOP_ANNOTATION] else "restart")
        weight = ((body.get("spec") or {}).get("router") or {}).get("route", {}).get("weight")
        return ("patch", action.ref.name, f"weight={weight}" if weight is not None else "resize")
    if isinstance(action, Delete):
        return ("delete", action.ref.name)
    return (type(action).__name__,)


# ------------------------------------------------------------------------------------------ render


def test_one_llm_inference_service_per_revision_in_the_model_s_group() -> None:
    objects = render_revision(resolved())
    assert [(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("serving.kserve.io/v1alpha2", "LLMInferenceService", f"chat-{REV}")
    ]
    spec = objects[0]["spec"]
    assert spec["model"] == {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "name": "chat"}
    assert spec["replicas"] == 2
    assert "scaling" not in spec
    assert spec["router"] == {"route": {"group": "chat", "weight": 100}, "gateway": {}, "scheduler": {}}
    assert spec["labels"]["serving.nlpmodel.dev/revision"] == REV
    (main,) = spec["template"]["containers"]
    assert main["name"] == "main"
    flags = next(e["value"] for e in main["env"] if e["name"] == "VLLM_ADDITIONAL_ARGS")
    assert "--max-model-len" in flags
    for owned_by_kserve in (
        "--model",
        "--served-model-name",
        "--port",
        "--tensor-parallel-size",
        "/mnt/models",
    ):
        assert owned_by_kserve not in flags.split()


def test_the_router_has_no_objects_of_its_own() -> None:
    settled = render_settled(resolved())
    assert settled.routes == []
    assert [o["kind"] for o in settled.workloads] == ["LLMInferenceService"]


def test_tensor_parallel_gateway_and_pool_reach_the_object() -> None:
    spec = {
        **SPEC,
        "model": {"uri": "hf://meta-llama/Llama-3.1-70B-Instruct"},
        "resources": {"gpu": {"count": 4, "product": "nvidia-a100-80gb"}},
        "serving": {
            "platform": "kserve-llm",
            "gateway": {"name": "inference", "namespace": "gw", "sectionName": "https"},
            "llmInferenceService": {"inferencePool": "shared-pool"},
        },
    }
    (obj,) = render_revision(resolved(spec))
    assert obj["spec"]["parallelism"] == {"tensor": 4}
    assert obj["spec"]["router"]["gateway"] == {
        "refs": [{"name": "inference", "namespace": "gw", "sectionName": "https"}]
    }
    assert obj["spec"]["router"]["scheduler"] == {"pool": {"ref": {"name": "shared-pool"}}}


def test_without_a_scheduler_the_workload_service_is_the_backend() -> None:
    spec = {**SPEC, "serving": {"platform": "kserve-llm", "llmInferenceService": {"scheduler": "none"}}}
    (obj,) = render_revision(resolved(spec))
    assert "scheduler" not in obj["spec"]["router"]


@pytest.mark.parametrize(
    ("revision", "split", "weight"),
    [
        ("s", Split("s"), 100),
        ("s", Split("s", "c", 10), 90),
        ("c", Split("s", "c", 10), 10),
        ("c", Split("s", "c", 0), 0),
        ("x", Split("s", "c", 50), 0),
    ],
)
def test_share_of_each_revision(revision: str, split: Split, weight: int) -> None:
    assert share(revision, split) == weight


@pytest.mark.parametrize(
    ("args", "kept"),
    [
        (["--model", "/mnt/models", "--max-model-len", "8192"], "--max-model-len 8192"),
        (["/mnt/models", "--served-model-name", "chat", "--max-model-len", "8192"], "--max-model-len 8192"),
        (["--port=8080", "--enforce-eager", "--tensor-parallel-size", "2"], "--enforce-eager"),
        (["--served-model-name", "a b"], ""),
        (["--override-generation-config", '{"t": 1}'], "--override-generation-config '{\"t\": 1}'"),
    ],
)
def test_additional_args_leave_kserve_s_flags_to_its_template(args: list[str], kept: str) -> None:
    assert additional_args(args) == kept


def test_child_name_is_kmeta_s() -> None:
    assert child_name("chat-abcdef12", "-kserve-workload-svc") == "chat-abcdef12-kserve-workload-svc"
    long = child_name("m" * 54 + "-abcdef12", "-kserve-workload-svc")
    assert len(long) == 63
    assert long.endswith("-kserve-workload-svc")


# ----------------------------------------------------------------------------------------- observe


def llmisvc(*conditions: tuple[str, str, str], stopped: bool = False, generation: int = 1) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "chat-r", "generation": generation}
    if stopped:
        meta["annotations"] = {STOP_ANNOTATION: "true"}
    return {
        "kind": "LLMInferenceService",
        "metadata": meta,
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {"type": t, "status": s, **({"reason": r, "message": f"{r} says so"} if r else {})}
                for t, s, r in conditions
            ],
        },
    }


@pytest.mark.parametrize(
    ("obj", "ready", "serving", "reason", "fragment", "warning"),
    [
        (llmisvc(), False, False, "", "no Ready condition", ""),
        (
            llmisvc(("WorkloadsReady", "True", ""), ("RouterReady", "True", ""), ("Ready", "True", "")),
            True,
            True,
            "",
            "",
            "",
        ),
        (
            llmisvc(
                ("PresetsCombined", "True", ""),
                ("WorkloadsReady", "False", "MinimumReplicasUnavailable"),
                ("RouterReady", "True", ""),
                ("Ready", "False", "MinimumReplicasUnavailable"),
            ),
            False,
            False,
            "WorkloadsNotReady",
            "WorkloadsReady False (MinimumReplicasUnavailable): MinimumReplicasUnavailable says so",
            "",
        ),
        (
            llmisvc(
                ("WorkloadsReady", "True", ""),
                ("RouterReady", "False", "HTTPRouteNotAccepted"),
                ("Ready", "False", "HTTPRouteNotAccepted"),
            ),
            False,
            False,
            "RouterNotReady",
            "RouterReady False (HTTPRouteNotAccepted)",
            "",
        ),
        (
            llmisvc(
                ("WorkloadsReady", "False", "Stopped"),
                ("RouterReady", "False", "Stopped"),
                ("Ready", "False", "Stopped"),
                stopped=True,
            ),
            False,
            False,
            "Stopped",
            "Stopped",
            "",
        ),
        (
            llmisvc(
                ("Ready", "True", ""),
                ("GroupReady", "True", ""),
                ("GroupDegraded", "True", "MemberDivergence"),
            ),
            True,
            True,
            "",
            "",
            "GroupDegraded True (MemberDivergence): MemberDivergence says so",
        ),
        (
            llmisvc(("Ready", "True", ""), generation=2),
            False,
            True,
            "",
            "has not processed generation 2",
            "",
        ),
    ],
)
def test_readiness_from_kserve_s_conditions(
    obj: dict[str, Any], ready: bool, serving: bool, reason: str, fragment: str, warning: str
) -> None:
    seen = observe_llm_inference_service(obj)
    assert (seen.ready, seen.serving, seen.reason) == (ready, serving, reason)
    assert fragment in seen.message
    assert warning in seen.warning
    assert bool(warning) == bool(seen.warning)
    assert seen.stopped == ("annotations" in obj["metadata"])


# -------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("serving", "field"),
    [
        ({"platform": "kserve-llm", "router": "replica-ratio"}, "spec.serving.router"),
        (
            {"platform": "kserve-llm", "router": "kserve-canary"},
            "router kserve-canary requires platform kserve",
        ),
    ],
)
def test_what_a_routing_group_cannot_express_is_refused(serving: dict[str, Any], field: str) -> None:
    spec, problems = parse_spec({**SPEC, "serving": serving})
    assert spec is None
    assert field in " ".join(str(p) for p in problems)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (
            {"serving": {"platform": "kserve-llm", "hostnames": ["chat.example.com"]}},
            "spec.serving.hostnames",
        ),
        ({"runtime": {"engine": "transformers"}, "task": "embed"}, "spec.runtime.engine"),
    ],
)
def test_platform_problems_name_the_field(overrides: dict[str, Any], field: str) -> None:
    spec = NLPModelSpec.model_validate({**SPEC, **overrides})
    assert field in " ".join(str(p) for p in platform_of(spec.serving).problems(spec))


# ------------------------------------------------------------------ weights, stop, delete, restart

AT_STEP_ONE = {
    "stableRevision": OLD,
    "canaryRevision": REV,
    "currentStep": 0,
    "stage": "Progressing",
    "stepStartedAt": T0,
    "canaryStartedAt": T0,
}


def test_at_a_step_the_canary_carries_its_weight_and_the_stable_the_rest_after_it() -> None:
    d = decide(observe(AT_STEP_ONE, [state(OLD), state(REV)]))
    assert d.status.canary_weight == 10
    steps = [described(a) for a in d.actions]
    assert ("apply", f"chat-{REV}", "weight=10") in steps
    assert ("patch", f"chat-{OLD}", "weight=90") in steps
    # The canary's share is written before the stable's: a rising share passes only between plans.
    assert steps.index(("apply", f"chat-{REV}", "weight=10")) < steps.index(
        ("patch", f"chat-{OLD}", "weight=90")
    )
    assert not any(isinstance(a, Delete) for a in d.actions)


def test_a_canary_not_ready_gets_no_share() -> None:
    d = decide(observe({**AT_STEP_ONE, "stepStartedAt": None}, [state(OLD), state(REV, ready=False)]))
    steps = [described(a) for a in d.actions]
    assert ("apply", f"chat-{REV}", "weight=0") in steps
    assert ("patch", f"chat-{OLD}", "weight=100") in steps


def promoted(now: str = T1) -> Any:
    status = {**AT_STEP_ONE, "currentStep": 2, "stage": "Promoting", "stepStartedAt": T0}
    return decide(observe(status, [state(OLD), state(REV)], now))


def test_promotion_stops_the_old_stable_and_keeps_it() -> None:
    d = promoted()
    assert d.status.stable_revision == REV
    steps = [described(a) for a in d.actions]
    assert ("patch", f"chat-{OLD}", "stop") in steps
    assert ("apply", f"chat-{REV}", "weight=100") in steps
    assert not any(isinstance(a, Delete) for a in d.actions)  # kept, stopped, for the retention
    assert [(s.revision, s.stopped_at) for s in d.status.stopped_revisions] == [(OLD, T1)]


@pytest.mark.parametrize(
    ("now", "observed_stopped", "outcome"),
    [
        (T1, False, "stop"),  # a stop lost to a kill is written again
        (T1, True, "kept"),
        (T_LATE, True, "delete"),  # the retention (10m) has passed
        (T_LATE, False, "stop"),  # never deleted before it is out of traffic
    ],
)
def test_a_stopped_revision_is_deleted_after_its_retention(
    now: str, observed_stopped: bool, outcome: str
) -> None:
    status = {"stableRevision": REV, "stoppedRevisions": [{"revision": OLD, "stoppedAt": T0}]}
    d = decide(observe(status, [state(REV), state(OLD, ready=False, stopped=observed_stopped)], now))
    steps = [described(a) for a in d.actions]
    deleted = ("delete", f"chat-{OLD}") in steps
    stopped = ("patch", f"chat-{OLD}", "stop") in steps
    assert (deleted, stopped) == (outcome == "delete", outcome == "stop")
    kept = [s.revision for s in d.status.stopped_revisions]
    assert kept == ([] if outcome == "delete" else [OLD])
    if kept:
        assert d.status.stopped_revisions[0].stopped_at == T0  # the window is not restarted


def test_a_revert_within_the_window_only_restarts_the_stopped_object() -> None:
    # REV was promoted over OLD, then the template went back to OLD's: OLD comes back as the canary.
    spec_old = {**SPEC, "runtime": {"maxModelLen": 4096}}
    old_rev = revision_hash(NLPModelSpec.model_validate(spec_old))
    status = {"stableRevision": REV, "stoppedRevisions": [{"revision": old_rev, "stoppedAt": T0}]}
    obs = Observation(
        name="chat",
        namespace="ml",
        generation=4,
        spec=spec_old,
        status=status,
        revisions={REV: state(REV), old_rev: state(old_rev, ready=False, stopped=True)},
        now=T1,
    )
    d = decide(obs)
    steps = [described(a) for a in d.actions]
    assert ("patch", f"chat-{old_rev}", "restart") in steps
    assert ("apply", f"chat-{old_rev}", "weight=0") in steps  # the same object, no share until ready
    assert not any(isinstance(a, Delete) for a in d.actions)
    assert d.status.stopped_revisions == []
    assert d.status.canary_revision == old_rev


def test_rollback_moves_the_weight_back_then_stops_the_canary() -> None:
    obs = Observation(
        name="chat",
        namespace="ml",
        generation=2,
        spec=SPEC,
        status=AT_STEP_ONE,
        revisions={OLD: state(OLD), REV: state(REV)},
        now=T1,
        command="abort",
    )
    d = decide(obs)
    steps = [described(a) for a in d.actions]
    back, stop = ("patch", f"chat-{OLD}", "weight=100"), ("patch", f"chat-{REV}", "stop")
    assert back in steps
    assert stop in steps
    assert steps.index(back) < steps.index(stop)
    assert not any(isinstance(a, Delete) for a in d.actions)
    assert d.status.failed_revision == REV
    assert [s.revision for s in d.status.stopped_revisions] == [REV]


def test_group_degraded_becomes_the_traffic_group_condition() -> None:
    degraded = RevisionState(
        OLD, (ref(OLD),), True, warning="LLMInferenceService chat-x: GroupDegraded True (MemberDivergence)"
    )
    d = decide(observe({"stableRevision": OLD}, [degraded]))
    found = find(d.status.conditions, "TrafficGroup")
    assert found is not None
    assert (found.status, found.reason) == ("False", "GroupDegraded")
    assert "MemberDivergence" in found.message


def test_other_platforms_have_no_traffic_group_condition_nor_stopped_revisions() -> None:
    spec = {"model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"}}
    d = decide(
        Observation(name="chat", namespace="ml", generation=1, spec=spec, status={}, revisions={}, now=T0)
    )
    assert find(d.status.conditions, "TrafficGroup") is None
    assert "stoppedRevisions" not in NLPModelStatus.model_validate(d.status).model_dump(
        by_alias=True, exclude_unset=True
    )


def test_a_stop_resumed_after_a_kill_comes_before_the_new_stable_s_full_weight() -> None:
    # The promotion's status was written, its actions were not: the old stable still has its share.
    d = decide(observe({"stableRevision": REV}, [state(REV), state(OLD)]))
    steps = [described(a) for a in d.actions]
    stop, full = ("patch", f"chat-{OLD}", "stop"), ("apply", f"chat-{REV}", "weight=100")
    assert stop in steps
    assert full in steps
    assert steps.index(stop) < steps.index(full)  # never old and new both weighted above the plan


ROUTED_SPEC: dict[str, Any] = {key: value for key, value in SPEC.items() if key != "serving"}
WORKLOAD_OF = {
    "kserve": ChildRef("serving.kserve.io/v1beta1", "InferenceService", "chat-{}"),
    "raw": ChildRef("apps/v1", "Deployment", "chat-{}"),
    "kserve-llm": ChildRef("serving.kserve.io/v1alpha2", "LLMInferenceService", "chat-{}"),
}


def _switch(old_platform: str, new_platform: str) -> tuple[Any, str]:
    """A model Ready on ``old_platform`` whose spec now names ``new_platform``: the decision, and the
    new revision."""
    new_spec = {**ROUTED_SPEC, "serving": {"platform": new_platform}}
    old_spec = {**ROUTED_SPEC, "serving": {"platform": old_platform}}
    old, new = (revision_hash(NLPModelSpec.model_validate(s)) for s in (old_spec, new_spec))
    template = WORKLOAD_OF[old_platform]
    workload = ChildRef(template.api_version, template.kind, template.name.format(old))
    status = {"phase": "Ready", "stableRevision": old, "observedGeneration": 1}
    obs = Observation(
        name="chat",
        namespace="ml",
        generation=2,
        spec=new_spec,
        status=status,
        revisions={old: RevisionState(old, (workload,), True, "")},
        now=T1,
    )
    return decide(obs), new


@pytest.mark.parametrize(
    ("old", "new"), [("kserve", "kserve-llm"), ("kserve-llm", "kserve"), ("raw", "kserve-llm")]
)
def test_a_platform_change_across_who_routes_the_traffic_is_refused_and_the_stable_keeps_serving(
    old: str, new: str
) -> None:
    decision, _ = _switch(old, new)
    spec_valid = find(decision.status.conditions, "SpecValid")
    assert spec_valid is not None
    assert spec_valid.status == "False"
    assert spec_valid.message.startswith("spec.serving.platform: revision ")
    assert f"Set platform {old} back" in spec_valid.message
    assert decision.actions == []  # nothing created for the new platform, nothing of the stable's removed
    ready = find(decision.status.conditions, "Ready")
    assert ready is not None
    assert ready.status == "True"
    assert decision.status.canary_revision is None


def test_a_platform_change_the_same_router_splits_is_rolled_out() -> None:
    decision, new = _switch("raw", "kserve")
    spec_valid = find(decision.status.conditions, "SpecValid")
    assert spec_valid is not None
    assert spec_valid.status == "True"
    assert decision.status.canary_revision == new
    created = [a for a in decision.actions if isinstance(a, Apply) and a.obj["kind"] == "InferenceService"]
    assert [a.obj["metadata"]["name"] for a in created] == [f"chat-{new}"]
