"""The reconcile decision, as a pure function: (observed state, now) → (ordered actions, status, events).

The kopf shell gathers an `Observation` (the NLPModel and its children as they are), calls `decide`,
then executes the `Decision`. Every trigger (create, update, resume, resync) goes through here, so the
outcome depends only on the state of the world, never on which event woke the operator up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.constants import ConditionType, Phase, Reason
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.status import (
    Condition,
    ConditionStatus,
    EvaluationStatus,
    NLPModelStatus,
    PhaseName,
    PlanStatus,
    SpendStatus,
    merged,
    read_status,
)
from nlpmodel_operator.api.units import parse_time
from nlpmodel_operator.core.analysis.checks import CheckData, CheckRequest, check_request
from nlpmodel_operator.core.autoscaling import (
    AUTOSCALER_KINDS,
    Autoscaled,
    Fixed,
    Scale,
    ScalingSupport,
    serving_scale,
)
from nlpmodel_operator.core.autoscaling import describe as describe_scaling
from nlpmodel_operator.core.conditions import MAX_CONDITION_MESSAGE, clip, find, set_condition
from nlpmodel_operator.core.economics import cost_status, plan_pricing, pricing_by_revision, wants_cost
from nlpmodel_operator.core.evaluation.gating import EvaluationOutcome, EvaluationRequest, evaluation_request
from nlpmodel_operator.core.monitoring import Monitoring, pod_monitors
from nlpmodel_operator.core.networkpolicy import NetworkPolicies, network_policies
from nlpmodel_operator.core.ordering import Part, in_order
from nlpmodel_operator.core.planner import format_bytes
from nlpmodel_operator.core.platforms import ServingPlatform, Split, platform_of, running, weighted
from nlpmodel_operator.core.pricing import Prices
from nlpmodel_operator.core.problems import Problem
from nlpmodel_operator.core.records import (
    Action,
    Apply,
    ChildRef,
    ClearCommand,
    Delete,
    Event,
    RevisionState,
)
from nlpmodel_operator.core.render import model_routes, render_settled, route_context
from nlpmodel_operator.core.resolve import Resolution, resolve
from nlpmodel_operator.core.resolved import Resolved
from nlpmodel_operator.core.rollout import RolloutInput, RolloutOutcome, step_rollout
from nlpmodel_operator.core.routers import RouteContext, router_for
from nlpmodel_operator.core.spend import SpendInput, current_shape, spend
from nlpmodel_operator.core.stopping import Retirement, retire
from nlpmodel_operator.core.validation import name_problems, parse_spec

__all__ = ["ChildRef", "Decision", "Event", "Monitoring", "Observation", "RevisionState", "decide"]


@dataclass(frozen=True)
class Observation:
    name: str
    namespace: str
    generation: int
    spec: Any
    # Validated once (`api.status.read_status`); a mapping is validated here (tests build dicts).
    status: NLPModelStatus
    revisions: Mapping[str, RevisionState]
    now: str  # RFC 3339
    others: tuple[ChildRef, ...] = ()  # owned children that belong to no revision (routes, model Service)
    command: str | None = None  # the manual-control annotation, if set
    check: CheckData | None = None  # metrics of a due analysis check (see `check_request_for`)
    # The verdict of an evaluation the shell ran (see `evaluation_request_for`).
    evaluation: EvaluationOutcome | None = None
    # Scrape settings for the model's PodMonitor; None: the cluster serves no PodMonitor (or the
    # operator is configured not to render one), so none is applied.
    monitoring: Monitoring | None = None
    # The cluster's NetworkPolicy defaults (the operator's configuration); a spec may override them.
    network: NetworkPolicies = field(default_factory=NetworkPolicies)
    # What the cluster offers autoscalers (discovery, configuration); by default everything.
    scaling: ScalingSupport = field(default_factory=ScalingSupport)
    # The platform team's prices and namespace budgets (the operator's configuration), and the model's
    # daily-budget annotation if set (`core.spend`).
    prices: Prices = field(default_factory=Prices)
    daily_budget: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", read_status(self.status))


@dataclass
class Decision:
    actions: list[Action] = field(default_factory=list)
    status: NLPModelStatus = field(default_factory=NLPModelStatus)
    events: list[Event] = field(default_factory=list)
    # What status must say before any action runs (None: nothing; the status is written after the
    # actions). A decision that consumed what cannot be seen again (a manual command, an analysis
    # check over a window that has passed) is recorded first, so that an operator killed in between
    # resumes from it instead of deciding again (see `journal`).
    journal: NLPModelStatus | None = None


def journal(obs: Observation, status: NLPModelStatus) -> NLPModelStatus | None:
    """The status to record before acting on a decision that consumed a command or a check; None for
    any other decision (it follows from status and the world alone, and is reported after its actions).

    A step the decision advances to is recorded without its start: its weight is not applied yet, and
    an operator killed before it is resumes by applying it then, and only then starts the step's pause
    and its analysis. Recorded with a start, a slow restart let the step's pause elapse (and a check
    over traffic at the previous weight pass) before its weight ever reached the route: the canary
    went from 10 % to 100 % without carrying 50 %."""
    if obs.command is None and obs.check is None and obs.evaluation is None:
        return None
    before = obs.status
    advanced = (
        status.stage == "Progressing"
        and status.canary_revision is not None
        and status.canary_revision == before.canary_revision
        and status.current_step != before.current_step
    )
    if not advanced:
        return status
    return status.model_copy(update={"step_started_at": None, "canary_weight": before.canary_weight})


def _join(problems: list[Problem]) -> str:
    text = "; ".join(str(p) for p in problems)
    return clip(text, MAX_CONDITION_MESSAGE)


def _platform_running(state: RevisionState | None, spec: NLPModelSpec) -> ServingPlatform:
    """The platform a revision runs on: as its workload shows (a rollout may change platforms), else
    the spec's."""
    preferred = platform_of(spec.serving)
    found = running(state.children, preferred) if state is not None else None
    return found[0] if found is not None else preferred


def _service_of(name: str, revision: str, state: RevisionState | None, spec: NLPModelSpec) -> str:
    """The Service in front of a revision."""
    return _platform_running(state, spec).service_name(name, revision)


def _plan_status(resolution: Resolution, max_model_len: int | None) -> PlanStatus | None:
    if resolution.plan is None:
        return None
    plan = PlanStatus.model_validate(resolution.plan.to_status())
    return plan.model_copy(
        update={"architecture": resolution.architecture_source, "max_model_len": max_model_len}
    )


def _gpu_fit_condition(resolution: Resolution | None) -> tuple[ConditionStatus, str, str]:
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


def _resize(
    state: RevisionState | None, resolved: Resolved, scale: Scale, support: ScalingSupport
) -> list[Action]:
    """Size a revision we do not re-render (the stable during a rollout, or after a rollback)."""
    found = running(state.children, platform_of(resolved.spec.serving)) if state is not None else None
    if state is None or found is None:
        return []
    platform, workload = found
    return platform.resize(workload, resolved, state.revision, scale, support)


def _handover(state: RevisionState | None, spec: NLPModelSpec, scale: Scale) -> list[Action]:
    """Before a workload is applied without its replica count (an autoscaler owns it now), keep the
    live count (see `ServingPlatform.hand_over`)."""
    if state is None:
        return []
    return _platform_running(state, spec).hand_over(state, scale)


class _Conditions:
    def __init__(self, old: NLPModelStatus, now: str, generation: int) -> None:
        self.items: list[Condition] = list(old.conditions)
        self.now, self.generation = now, generation

    def set(self, type_: str, status: ConditionStatus, reason: str, message: str) -> None:
        self.items = set_condition(self.items, type_, status, reason, message, self.now, self.generation)

    def drop(self, type_: str) -> None:
        self.items = [item for item in self.items if item.type != type_]


def _spend(
    obs: Observation,
    conds: _Conditions,
    resolved: Resolved | None,
    applied: Mapping[str, int] | None = None,
) -> SpendStatus | None:
    """`status.spend`, and BudgetValid while the model carries a daily-budget annotation."""
    current = current_shape(resolved.revision, resolved.spec, resolved.plan) if resolved is not None else None
    observed = (obs.namespace, obs.prices, obs.daily_budget, obs.revisions, obs.status)
    found = spend(SpendInput(*observed, current, applied or {}))
    if not found.annotated:
        conds.drop(ConditionType.BUDGET_VALID)
    elif found.budget_problem is not None:
        conds.set(ConditionType.BUDGET_VALID, "False", Reason.INVALID_BUDGET, found.budget_problem)
    else:
        amount = found.status.daily_budget if found.status is not None else None
        shown = obs.prices.format(amount) if amount is not None else obs.daily_budget
        conds.set(ConditionType.BUDGET_VALID, "True", Reason.VALID, f"daily budget {shown} per 24 h")
    return found.status


def _invalid(obs: Observation, problems: list[Problem], resolution: Resolution | None) -> Decision:
    """Nothing is applied or deleted: a bad update never takes down what already serves."""
    old = obs.status
    conds = _Conditions(old, obs.now, obs.generation)
    events = []
    spec_only = [p for p in problems if p.reason != Reason.DOES_NOT_FIT]
    if spec_only:
        conds.set(ConditionType.SPEC_VALID, "False", Reason.INVALID_SPEC, _join(spec_only))
    else:
        # The schema accepts it but the requested GPUs cannot hold it: the spec asks the impossible.
        conds.set(ConditionType.SPEC_VALID, "False", Reason.DOES_NOT_FIT, _join(problems))
    conds.set(ConditionType.GPU_FIT, *_gpu_fit_condition(resolution))
    previous = find(old.conditions, ConditionType.SPEC_VALID)
    message = _join(problems)
    if previous is None or previous.message != message:
        events.append(Event("Warning", Reason.INVALID_SPEC, message))
    stable = old.stable_revision
    state = obs.revisions.get(stable) if stable else None
    if state is not None:
        conds.set(
            ConditionType.READY,
            "True" if state.ready else "False",
            Reason.CHILDREN_READY if state.ready else Reason.CHILDREN_NOT_READY,
            f"revision {stable} keeps serving; the new spec is invalid",
        )
        held = old  # a rollout in progress is held, not lost
    else:
        conds.set(
            ConditionType.READY, "False", Reason.INVALID_SPEC, "nothing is deployed until the spec is valid"
        )
        held = NLPModelStatus()
    spent = _spend(obs, conds, None)  # before the conditions are taken: it sets BudgetValid
    status = NLPModelStatus(
        phase=Phase.READY if state is not None and state.ready else Phase.FAILED,
        observed_generation=obs.generation,
        stable_revision=stable if state is not None else None,
        canary_revision=held.canary_revision,
        canary_weight=held.canary_weight,
        current_step=held.current_step,
        stage=held.stage,
        step_started_at=held.step_started_at,
        canary_started_at=held.canary_started_at,
        paused=held.paused,
        failed_revision=old.failed_revision,
        plan=_plan_status(resolution, None) if resolution is not None else None,
        spend=spent,
        history=old.history,
        evaluations=old.evaluations,
        stopped_revisions=old.stopped_revisions,
        conditions=conds.items,
    )
    return Decision([], status, events, journal(obs, status))


def check_request_for(obs: Observation) -> CheckRequest | None:
    """The analysis check the shell should gather metrics for before deciding, if one is due."""
    spec, problems = parse_spec(obs.spec)
    now = parse_time(obs.now)
    if spec is None or problems or now is None:
        return None
    return check_request(spec, obs.status, now)


def evaluation_request_for(obs: Observation) -> EvaluationRequest | None:
    """The evaluation the shell should run (in a task of its own) for the gate the rollout waits at."""
    spec, problems = parse_spec(obs.spec)
    now = parse_time(obs.now)
    if spec is None or problems or now is None:
        return None
    services = {
        revision: _service_of(obs.name, revision, obs.revisions.get(revision), spec)
        for revision in (obs.status.stable_revision, obs.status.canary_revision)
        if revision is not None and revision in obs.revisions
    }
    return evaluation_request(spec, obs.status, now, services)


def decide(obs: Observation) -> Decision:
    spec, problems = parse_spec(obs.spec)
    problems = name_problems(obs.name) + problems
    resolution = resolve(obs.name, obs.namespace, spec) if spec is not None and not problems else None
    if resolution is not None:
        problems = resolution.problems
    if resolution is None or resolution.resolved is None:
        return _invalid(obs, problems, resolution)
    switch = traffic_switch_problems(obs, resolution.resolved)
    if switch:
        return _invalid(obs, switch, resolution)
    return _valid(obs, resolution, resolution.resolved)


# Who moves a revision's traffic, by platform traffic mode (`platforms.base.TrafficMode`).
_ROUTED_BY = {
    "router": "the operator's router (spec.serving.router)",
    "in-place": "Knative's in-place canary",
    "per-revision": "KServe's routing group of LLMInferenceServices",
}


def traffic_switch_problems(obs: Observation, resolved: Resolved) -> list[Problem]:
    """A new revision on a platform whose traffic is moved by other hands than the stable's (our
    HTTPRoute vs KServe's routing group): no canary weight can be split between the two, and applying
    it would leave the stable without its route or send every request to the unproven revision.
    Refused while the stable serves; reverting the platform, or a new model, is the way."""
    stable = obs.status.stable_revision
    state = obs.revisions.get(stable) if stable else None
    if state is None or stable == resolved.revision:
        return []
    new = platform_of(resolved.spec.serving)
    found = running(state.children, new)
    if found is None or (found[0].traffic == "per-revision") == (new.traffic == "per-revision"):
        return []
    old = found[0]
    return [
        Problem(
            "spec.serving.platform",
            f"revision {stable} serves on platform {old.name}, whose traffic {_ROUTED_BY[old.traffic]} "
            f"moves; on {new.name} {_ROUTED_BY[new.traffic]} moves it, and no canary can be weighed "
            f"between the two. Set platform {old.name} back, or create the model under a new name on "
            f"{new.name}, move its clients, then delete this one",
        )
    ]


def _valid(obs: Observation, resolution: Resolution, resolved: Resolved) -> Decision:
    spec = resolved.spec
    now = parse_time(obs.now)
    assert now is not None
    pricing = pricing_by_revision(
        resolved.revision, plan_pricing(spec, resolved.plan, obs.prices), obs.status.cost, obs.revisions
    )
    outcome = step_rollout(
        RolloutInput(
            spec,
            resolved.revision,
            obs.status,
            obs.revisions,
            obs.command,
            now,
            obs.check,
            obs.evaluation,
            pricing=pricing,
            currency=obs.prices.currency,
        )
    )
    retirement = _retirement(obs, spec, outcome, now)
    actions = _actions(obs, resolved, outcome, retirement)
    status = _status(obs, resolution, resolved, outcome, retirement)
    if wants_cost(spec, obs.prices, obs.status.cost):
        cost = cost_status(
            obs.status.cost,
            pricing,
            outcome.stable,
            outcome.canary,
            obs.check,
            now,
            obs.prices.currency if obs.prices.configured else None,
            status.failed_revision,
            (obs.status.stable_revision, obs.status.canary_revision),
        )
        status = status.model_copy(update={"cost": cost})
    return Decision(actions, status, outcome.events, journal(obs, status))


def _retirement(obs: Observation, spec: NLPModelSpec, outcome: RolloutOutcome, now: datetime) -> Retirement:
    """What becomes of the revisions that are neither stable nor canary any more (`core.stopping`)."""
    keep = {outcome.stable, outcome.canary}
    gone = set(outcome.delete) | {r for r in obs.revisions if r not in keep}
    live = {r for r in keep if r is not None}
    return retire(spec, obs.revisions, gone, live, obs.status.stopped_revisions, now)


def _route(obs: Observation, resolved: Resolved, outcome: RolloutOutcome) -> RouteContext:
    stable_platform = _platform_running(obs.revisions.get(outcome.stable), resolved.spec)
    split = Split(outcome.stable, outcome.canary, outcome.weight)
    return route_context(resolved, split, stable_platform)


def _actions(
    obs: Observation, resolved: Resolved, outcome: RolloutOutcome, retirement: Retirement
) -> list[Action]:
    spec = resolved.spec
    platform = platform_of(spec.serving)
    support = obs.scaling
    stable_state = obs.revisions.get(outcome.stable)
    stable_scale = _stable_scale(obs, resolved, outcome)
    resize: list[Action] = []
    handover: list[Action] = []
    weights: list[Action] = []  # a "per-revision" platform's stable, not re-rendered, at its share
    if outcome.canary is None and outcome.stable == resolved.revision:
        # At rest: exactly what `nlpctl render` prints.
        settled = render_settled(resolved, support, obs.monitoring, stable_scale, obs.network)
        # The model's NetworkPolicy goes with its PodMonitor: per model, applied before any pod starts.
        monitor_objects = [*settled.monitors, *settled.policies]
        workloads, scalers = settled.workloads, settled.autoscalers
        route_objects = settled.routes
        if stable_state is None and isinstance(stable_scale, Autoscaled):
            platform.born(workloads, stable_scale)
        handover = _handover(stable_state, spec, stable_scale)
    else:
        route_objects = model_routes(resolved, _route(obs, resolved, outcome))
        monitor_objects = [
            *pod_monitors(obs.name, obs.namespace, obs.monitoring, platform.pod_port, platform.pod_tls),
            *network_policies(resolved, obs.network),
        ]
        split = Split(outcome.stable, outcome.canary, outcome.weight)
        workloads, scalers = [], []
        if platform.traffic == "in-place":
            workloads = platform.render(resolved, stable_scale, support, split)
        else:
            if outcome.canary is not None:
                canary_scale = Fixed(outcome.sizing.canary or 1)
                workloads = platform.render(resolved, canary_scale, support, split)
            resize = _resize(stable_state, resolved, stable_scale, support)
            if stable_state is not None:
                scalers = _platform_running(stable_state, spec).autoscalers(
                    resolved, outcome.stable, stable_scale, support
                )
                weights = _stable_share(stable_state, spec, 100 - outcome.weight)
    if platform.traffic == "in-place":
        # Its one workload carries the split: it moves with the traffic, before anything is deleted.
        route_objects, workloads = [*workloads, *route_objects], []
    # The canary's own share is applied with it ("revision"); the stable's after it ("route" comes
    # later when capacity comes first): a rising canary share passes only through values between the
    # planned ones. When revisions go, traffic comes first: the stable takes its share back before
    # the canary is stopped.
    routes: list[Action] = [Apply(o) for o in route_objects] + weights
    # First, so that a new revision's pods are scraped from their start.
    monitors: list[Action] = [Apply(o) for o in monitor_objects]
    revision_objects: list[Action] = [Apply(o) for o in workloads] + retirement.restarts
    keep = {outcome.stable, outcome.canary}
    gone = retirement.delete
    wanted = {(o["kind"], o["metadata"]["name"]) for o in [*route_objects, *monitor_objects]}
    deletes: list[Action] = [*retirement.stops] + [
        Delete(ref)
        for r in sorted(gone)
        if r in obs.revisions
        for ref in obs.revisions[r].children
        if (ref.kind, ref.name) not in wanted  # kserve-canary: the shared object carries the newest label
    ]
    deletes += [Delete(ref) for ref in obs.others if (ref.kind, ref.name) not in wanted]
    # One scaler per workload: an autoscaler that is no longer wanted (the canary's, the old metric's)
    # goes before any other takes its place.
    wanted_scalers = {(o["kind"], o["metadata"]["name"]) for o in scalers}
    stale_scalers: list[Action] = [
        Delete(ref)
        for r in sorted(r for r in keep if r is not None and r in obs.revisions)
        for ref in obs.revisions[r].children
        if ref.kind in AUTOSCALER_KINDS and (ref.kind, ref.name) not in wanted_scalers
    ]
    parts: dict[Part, list[Action]] = {
        "monitor": monitors,
        "route": routes,
        "delete": deletes,
        "stale-scaler": stale_scalers,
        "handover": handover,
        "revision": revision_objects,
        "resize": resize,
        "scaler": [Apply(o) for o in scalers],
    }
    # A revision stopped (kserve-llm) leaves the traffic as one deleted does: traffic moves first.
    ordered = in_order(parts, revisions_go=bool(outcome.delete) or bool(retirement.stops))
    if outcome.command_done and obs.command is not None:
        ordered.append(ClearCommand(obs.command))
    return ordered


def _stable_scale(obs: Observation, resolved: Resolved, outcome: RolloutOutcome) -> Scale:
    spec = resolved.spec
    lent = (outcome.sizing.canary or 0) if outcome.sizing.stable is not None else 0
    possible = platform_of(spec.serving).scaling_unavailable(spec, obs.scaling) is None
    return serving_scale(spec, outcome.sizing.stable, lent, possible)


def _applied_replicas(obs: Observation, resolved: Resolved, outcome: RolloutOutcome) -> dict[str, int]:
    """The replica counts the operator itself applies (none where an autoscaler owns the count): what
    a revision runs where its platform does not report replicas (KServe's InferenceService)."""
    applied: dict[str, int] = {}
    scale = _stable_scale(obs, resolved, outcome)
    if isinstance(scale, Fixed):
        applied[outcome.stable] = scale.replicas
    if outcome.canary is not None:
        applied[outcome.canary] = outcome.sizing.canary or 1  # as `_actions` renders it
    return applied


def _stable_share(state: RevisionState, spec: NLPModelSpec, weight: int) -> list[Action]:
    """The stable's share, where its platform gives each revision its own (none otherwise)."""
    found = running(state.children, platform_of(spec.serving))
    weights = weighted(found[0]) if found is not None else None
    if found is None or weights is None:
        return []
    return weights.weigh(found[1], weight)


def _status(
    obs: Observation,
    resolution: Resolution,
    resolved: Resolved,
    outcome: RolloutOutcome,
    retirement: Retirement,
) -> NLPModelStatus:
    old = obs.status
    conds = _Conditions(old, obs.now, obs.generation)
    gate = outcome.status.evaluation
    if outcome.canary is not None and gate is not None and gate.verdict == "error":
        # The dataset is part of the spec's meaning: the canary holds at its weight, the stable serves.
        conds.set(
            ConditionType.SPEC_VALID,
            "False",
            Reason.DATASET_INVALID,
            f"rollout.evaluation.{gate.message}",
        )
    else:
        conds.set(ConditionType.SPEC_VALID, "True", Reason.VALID, "spec is valid")
    conds.set(ConditionType.GPU_FIT, *_gpu_fit_condition(resolution))
    platform = platform_of(resolved.spec.serving)
    conds.set(
        ConditionType.AUTOSCALING,
        *describe_scaling(
            resolved.spec,
            platform.scaling_unavailable(resolved.spec, obs.scaling),
            platform.autoscaled_by(resolved.spec, obs.scaling),
        ),
    )
    rollout = outcome.status
    stable = outcome.stable
    serving = obs.revisions.get(stable)
    ready = serving is not None and serving.ready
    if ready:
        conds.set(ConditionType.READY, "True", Reason.CHILDREN_READY, f"revision {stable} is ready")
    elif serving is None:
        conds.set(
            ConditionType.READY, "False", Reason.CHILDREN_MISSING, f"revision {stable} is being created"
        )
    else:
        conds.set(
            ConditionType.READY,
            "False",
            serving.reason or Reason.CHILDREN_NOT_READY,
            serving.message or f"revision {stable} is not ready",
        )
    if platform.traffic == "per-revision":
        members = [obs.revisions.get(r) for r in (stable, outcome.canary) if r is not None]
        warnings = [m.warning for m in members if m is not None and m.warning]
        if warnings:
            conds.set(ConditionType.TRAFFIC_GROUP, "False", Reason.GROUP_DEGRADED, "; ".join(warnings))
        else:
            conds.set(
                ConditionType.TRAFFIC_GROUP,
                "True",
                Reason.GROUP_HEALTHY,
                f"routing group {resolved.name}: no member reports a problem",
            )
    if outcome.progressing is not None:
        conds.set(ConditionType.PROGRESSING, "True", *outcome.progressing)
    else:
        conds.set(ConditionType.PROGRESSING, "False", Reason.NO_ROLLOUT, "no rollout in progress")
    checks = rollout.analysis.last_checks if rollout.analysis is not None else []
    if outcome.canary is not None and resolved.spec.rollout.analysis is not None:
        last = checks[-1] if checks else None
        if last is None or last.verdict in ("inconclusive", "error"):
            conds.set(
                ConditionType.CANARY_HEALTHY,
                "Unknown",
                Reason.NO_CONCLUSIVE_CHECK,
                last.summary if last else "no check yet",
            )
        elif last.verdict == "fail":
            conds.set(ConditionType.CANARY_HEALTHY, "False", Reason.CHECK_FAILED, last.summary)
        else:
            conds.set(ConditionType.CANARY_HEALTHY, "True", Reason.CHECKS_PASSING, last.summary)
    if resolved.spec.rollout.evaluation is not None and gate is not None:
        conds.set(ConditionType.EVALUATED, *_evaluated_condition(gate))
    failed = rollout.failed_revision
    if outcome.rolled_back is not None:
        conds.set(ConditionType.ROLLED_BACK, "True", *outcome.rolled_back)
    elif failed is not None and failed == resolved.revision:
        previous = find(conds.items, ConditionType.ROLLED_BACK)
        if previous is not None and previous.status == "True":
            conds.set(ConditionType.ROLLED_BACK, "True", previous.reason, previous.message)
    else:
        conds.set(
            ConditionType.ROLLED_BACK, "False", Reason.NO_ROLLOUT, "the current template is not rolled back"
        )
    effective_weight: int | None = None
    phase: PhaseName
    if outcome.canary is not None:
        phase = Phase.PROGRESSING
        router = router_for(resolved.spec.serving.router)
        canary_state = obs.revisions.get(outcome.canary)
        canary_live = (outcome.sizing.canary or 0) if canary_state is not None and canary_state.ready else 0
        stable_live = (
            outcome.sizing.stable
            if outcome.sizing.stable is not None
            else resolved.spec.scaling.base_replicas
        )
        effective_weight = router.effective_weight(_route(obs, resolved, outcome), stable_live, canary_live)
    elif failed is not None and failed == resolved.revision:
        phase = Phase.ROLLED_BACK
    elif stable == resolved.revision:
        phase = Phase.READY if ready else (Phase.PENDING if serving is None else Phase.PROGRESSING)
    else:
        phase = Phase.PROGRESSING
    front = (
        obs.name
        if resolved.spec.serving.router == "replica-ratio"
        else _service_of(obs.name, stable, serving, resolved.spec)
    )
    counted = serving if serving is not None and serving.replicas is not None else None
    # Before the conditions are taken: it sets BudgetValid.
    spent = _spend(obs, conds, resolved, _applied_replicas(obs, resolved, outcome))
    report = NLPModelStatus(
        phase=phase,
        observed_generation=obs.generation,
        effective_canary_weight=effective_weight,
        replicas=counted.replicas if counted is not None else None,
        ready_replicas=(counted.ready_replicas or 0) if counted is not None else None,
        selector=f"{c.LABEL_MODEL}={resolved.name},{c.LABEL_REVISION}={stable}",
        **({"stopped_revisions": retirement.stopped} if retirement.stopped or old.stopped_revisions else {}),
        endpoint=f"http://{front}.{obs.namespace}.svc.cluster.local",
        plan=_plan_status(resolution, resolved.max_model_len),
        spend=spent,
        conditions=conds.items,
    )
    return merged(rollout, report)


def _evaluated_condition(gate: EvaluationStatus) -> tuple[ConditionStatus, str, str]:
    where = f"revision {gate.canary_revision} against {gate.stable_revision}"
    if gate.verdict == "pass":
        return "True", Reason.EVALUATION_PASSED, f"{where}: {gate.message}"
    if gate.verdict == "fail":
        return "False", Reason.EVALUATION_FAILED, f"{where}: {gate.message}"
    if gate.verdict == "pending":
        return "Unknown", Reason.EVALUATION_PENDING, f"{where}: evaluation running"
    if gate.verdict == "error":
        return "Unknown", Reason.DATASET_INVALID, f"{where}: {gate.message}"
    return "Unknown", Reason.EVALUATION_INCONCLUSIVE, f"{where}: {gate.message}"
