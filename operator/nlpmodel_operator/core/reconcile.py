"""The reconcile decision, as a pure function: (observed state, now) → (objects to apply/delete, status, events).

The kopf shell gathers `Observation` (the NLPModel and its children as they are), calls `decide`, then
executes the `Decision`. Every trigger (create, update, resume, timer) goes through here, so the
outcome depends only on the state of the world, never on which event woke the operator up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.constants import ConditionType, Phase, Reason
from nlpmodel_operator.core.conditions import find, set_condition
from nlpmodel_operator.core.planner import format_bytes
from nlpmodel_operator.core.problems import Problem
from nlpmodel_operator.core.render import render_revision
from nlpmodel_operator.core.resolve import Resolution, resolve
from nlpmodel_operator.core.resolved import Resolved
from nlpmodel_operator.core.validation import name_problems, parse_spec

# A condition message is for people: keep it readable and well under etcd's object size limits.
MAX_MESSAGE = 2000


@dataclass(frozen=True)
class ChildRef:
    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class RevisionState:
    """What the cluster shows of one revision's children."""

    revision: str
    children: tuple[ChildRef, ...]
    ready: bool
    message: str = ""
    replicas: int | None = None
    ready_replicas: int | None = None


@dataclass(frozen=True)
class Observation:
    name: str
    namespace: str
    generation: int
    spec: Any
    status: Mapping[str, Any]
    revisions: Mapping[str, RevisionState]
    now: str  # RFC 3339


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Decision:
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[ChildRef] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


def _join(problems: list[Problem]) -> str:
    text = "; ".join(str(p) for p in problems)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _endpoint(resolved: Resolved, revision: str) -> str:
    name = f"{resolved.name}-{revision}"
    service = f"{name}-predictor" if resolved.spec.serving.platform == "kserve" else name
    return f"http://{service}.{resolved.namespace}.svc.cluster.local"


def _plan_status(resolution: Resolution, max_model_len: int | None) -> dict[str, Any] | None:
    if resolution.plan is None:
        return None
    plan = dict(resolution.plan.to_status())
    plan["architecture"] = resolution.architecture_source
    if max_model_len is not None:
        plan["maxModelLen"] = max_model_len
    return plan


def _gpu_fit_condition(resolution: Resolution | None) -> tuple[str, str, str]:
    if resolution is None:
        return "Unknown", Reason.INVALID_SPEC, "the spec must be valid before it can be planned"
    if resolution.plan_problems:
        return "False", Reason.DOES_NOT_FIT, _join(resolution.plan_problems)
    plan = resolution.plan
    if plan is None:
        return (
            "Unknown",
            Reason.UNKNOWN_ARCHITECTURE,
            "the model's architecture is not in the built-in catalog: add spec.model.architecture to plan it",
        )
    if resolution.planned_gpu is None:
        return "True", Reason.CPU_ONLY, f"runs on CPU; weights {format_bytes(plan.weight_bytes)}"
    return (
        "True",
        Reason.FITS,
        f"{plan.tensor_parallel} × {resolution.planned_gpu}: weights {format_bytes(plan.weight_bytes_per_gpu)} "
        f"per GPU, KV cache for {plan.max_concurrent_sequences} sequences",
    )


def decide(obs: Observation) -> Decision:
    decision = Decision()
    old = dict(obs.status)
    conditions: list[dict[str, Any]] = [dict(x) for x in old.get("conditions") or []]
    gen = obs.generation

    def condition(type_: str, status: str, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, type_, status, reason, message, obs.now, gen)

    spec, problems = parse_spec(obs.spec)
    problems = name_problems(obs.name) + problems
    resolution = resolve(obs.name, obs.namespace, spec) if spec is not None and not problems else None
    if resolution is not None:
        problems = resolution.problems
    stable = old.get("stableRevision")
    if stable not in obs.revisions:
        stable = None

    status: dict[str, Any] = {
        key: old[key] for key in ("history", "failedRevision") if old.get(key) is not None
    }
    fit = _gpu_fit_condition(resolution)

    if resolution is None or resolution.resolved is None:
        spec_only = [p for p in problems if p.reason != Reason.DOES_NOT_FIT]
        if spec_only:
            condition(ConditionType.SPEC_VALID, "False", Reason.INVALID_SPEC, _join(spec_only))
        else:
            # The schema accepts it but the requested GPUs cannot hold it: the spec asks the impossible.
            condition(ConditionType.SPEC_VALID, "False", Reason.DOES_NOT_FIT, _join(problems))
        condition(ConditionType.GPU_FIT, *fit)
        previous_message = (find(obs.status.get("conditions") or [], ConditionType.SPEC_VALID) or {}).get(
            "message"
        )
        message = _join(problems)
        if previous_message != message:
            decision.events.append(Event("Warning", Reason.INVALID_SPEC, message))
        # Nothing is applied or deleted: a bad update never takes down what already serves.
        if stable is not None:
            state = obs.revisions[stable]
            condition(
                ConditionType.READY,
                "True" if state.ready else "False",
                Reason.CHILDREN_READY if state.ready else Reason.CHILDREN_NOT_READY,
                f"revision {stable} keeps serving; the new spec is invalid",
            )
            status["phase"] = Phase.READY if state.ready else Phase.FAILED
            status["stableRevision"] = stable
        else:
            condition(
                ConditionType.READY,
                "False",
                Reason.INVALID_SPEC,
                "nothing is deployed until the spec is valid",
            )
            status["phase"] = Phase.FAILED
        if resolution is not None and resolution.plan is not None:
            status["plan"] = _plan_status(resolution, None)
        status["observedGeneration"] = gen
        status["conditions"] = conditions
        decision.status = status
        return decision

    resolved = resolution.resolved
    desired = resolved.revision
    condition(ConditionType.SPEC_VALID, "True", Reason.VALID, "spec is valid")
    condition(ConditionType.GPU_FIT, *fit)
    decision.apply = render_revision(resolved)
    desired_state = obs.revisions.get(desired)
    desired_ready = desired_state is not None and desired_state.ready

    if stable is None or stable == desired or desired_ready:
        # Direct replacement: the new revision takes over once ready; older ones are removed then.
        if stable is not None and stable != desired:
            decision.events.append(Event("Normal", "Promoted", f"revision {desired} replaced {stable}"))
        stable = desired
        for revision, state in obs.revisions.items():
            if revision != desired:
                decision.delete.extend(state.children)
    serving = obs.revisions.get(stable)
    ready = serving is not None and serving.ready
    if stable != desired:
        status["canaryRevision"] = desired
        status["canaryWeight"] = 0
    if ready:
        condition(ConditionType.READY, "True", Reason.CHILDREN_READY, f"revision {stable} is ready")
    elif serving is None:
        condition(
            ConditionType.READY, "False", Reason.CHILDREN_MISSING, f"revision {stable} is being created"
        )
    else:
        condition(
            ConditionType.READY,
            "False",
            Reason.CHILDREN_NOT_READY,
            serving.message or f"revision {stable} is not ready",
        )
    if stable == desired:
        status["phase"] = Phase.READY if ready else (Phase.PENDING if serving is None else Phase.PROGRESSING)
    else:
        status["phase"] = Phase.PROGRESSING
    status["stableRevision"] = stable
    status["observedGeneration"] = gen
    status["endpoint"] = _endpoint(resolved, stable)
    status["selector"] = f"{c.LABEL_MODEL}={resolved.name},{c.LABEL_REVISION}={stable}"
    if serving is not None and serving.replicas is not None:
        status["replicas"] = serving.replicas
        status["readyReplicas"] = serving.ready_replicas or 0
    plan = _plan_status(resolution, resolved.max_model_len)
    if plan is not None:
        status["plan"] = plan
    status["conditions"] = conditions
    decision.status = status
    return decision
