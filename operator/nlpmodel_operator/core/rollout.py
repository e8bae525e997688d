"""The rollout state machine (pure): which revisions run, at which weight and size, and when a canary
advances, is promoted or rolled back.

`step_rollout(RolloutInput) -> RolloutOutcome`. Everything it needs to resume after an operator restart
is in the status it reads and writes: stableRevision, canaryRevision, stage, currentStep (== len(steps)
while promoting), stepStartedAt, canaryStartedAt, paused, failedRevision, history, evaluation (the
gate) and evaluations (each canary revision's last verdict).

A canary is in one stage at a time, each with its own function: Progressing (at a step: waiting for the
canary to be ready, then for the step's pause and checks), Paused (held at its step by `nlpctl pause`)
and Promoting (all steps passed, `nlpctl promote`, or strategy direct). A status written before stages
were stored is read by deriving the stage once (`NLPModelStatus.rollout_stage`).

Sizing: a model runs `N` replicas (spec.scaling.replicas, else minReplicas). At weight w the canary
runs ceil(N·w/100) replicas (at least one); with gpuSurge the stable keeps N, without it the stable
gives up as many as the canary takes, so the model never asks for more GPUs than N replicas hold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from nlpmodel_operator.api.constants import Reason
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.status import (
    AnalysisStatus,
    EvaluationStatus,
    HistoryEntry,
    NLPModelStatus,
    Outcome,
    RolloutStage,
    read_status,
)
from nlpmodel_operator.api.units import format_duration, format_time, parse_duration, parse_time
from nlpmodel_operator.core.analysis.checks import (
    CheckData,
    record_check,
    step_may_advance,
)
from nlpmodel_operator.core.analysis.cost import RevisionPricing
from nlpmodel_operator.core.analysis.sequential import CostContext
from nlpmodel_operator.core.commands import refusal
from nlpmodel_operator.core.evaluation.gating import (
    EvaluationKey,
    EvaluationOutcome,
    pending,
    recorded,
    remembered,
)
from nlpmodel_operator.core.records import Event, RevisionState
from nlpmodel_operator.core.routers import canary_replicas

HISTORY_LIMIT = 10


@dataclass(frozen=True)
class RolloutInput:
    spec: NLPModelSpec
    desired: str  # revision of the current serving template
    status: NLPModelStatus  # a mapping is validated here (tests and older callers build dicts)
    revisions: Mapping[str, RevisionState]
    command: str | None
    now: datetime
    check: CheckData | None = None  # metrics gathered for a due analysis check
    evaluation: EvaluationOutcome | None = None  # the verdict of an evaluation the shell ran
    # Each revision's replica and its price (core.economics), and the prices' currency: the cost SLOs.
    pricing: Mapping[str, RevisionPricing] = field(default_factory=dict)
    currency: str = "USD"

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", read_status(self.status))


@dataclass(frozen=True)
class Sizing:
    """Replicas per revision; None keeps what the spec says (the revision's own autoscaling range)."""

    stable: int | None = None
    canary: int | None = None


@dataclass
class RolloutOutcome:
    stable: str
    canary: str | None
    weight: int  # % to the canary
    sizing: Sizing
    status: NLPModelStatus  # the rollout's fields of the new status
    delete: list[str] = field(default_factory=list)  # revisions whose children go (after traffic moved)
    events: list[Event] = field(default_factory=list)
    command_done: bool = False
    rolled_back: tuple[str, str] | None = None  # (reason, message) when this call rolled back
    progressing: tuple[str, str] | None = None  # (reason, message) while a rollout runs


@dataclass
class _Run:
    """What one call carries from stage to stage: its input, and what it has recorded so far."""

    inp: RolloutInput
    stable: str
    failed: str | None
    history: list[HistoryEntry]
    events: list[Event] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)

    @property
    def spec(self) -> NLPModelSpec:
        return self.inp.spec

    @property
    def now(self) -> datetime:
        return self.inp.now

    @property
    def steps(self) -> int:
        return len(self.inp.spec.rollout.steps)

    @property
    def command_done(self) -> bool:
        return self.inp.command is not None  # every command is consumed, applicable or not

    def record(self, revision: str, outcome: Outcome, reason: str) -> None:
        entry = HistoryEntry(revision=revision, outcome=outcome, reason=reason, at=format_time(self.now))
        self.history = [*self.history, entry][-HISTORY_LIMIT:]

    def state(self, revision: str) -> RevisionState | None:
        return self.inp.revisions.get(revision)


@dataclass(frozen=True)
class _Canary:
    """The canary being rolled out, as this call moves it."""

    revision: str
    stage: RolloutStage
    step: int
    step_started: datetime | None  # when its step's weight applied (None: not ready yet)
    started: datetime | None  # when it was created
    analysis: AnalysisStatus | None
    evaluation: EvaluationStatus | None = None  # the evaluation gate of this canary, if one was reached


def step_rollout(inp: RolloutInput) -> RolloutOutcome:
    outcome = _step(inp)
    # Each canary revision's last verdict, written with the gate that carries it (`gating.remembered`).
    evaluations = remembered(inp.status.evaluations, outcome.status.evaluation)
    outcome.status = outcome.status.model_copy(update={"evaluations": evaluations})
    return outcome


def _step(inp: RolloutInput) -> RolloutOutcome:
    old = inp.status
    stable = old.stable_revision if old.stable_revision in inp.revisions else None
    run = _Run(
        inp,
        # never created, or its children are gone: whatever runs now becomes stable
        stable or inp.desired,
        old.failed_revision,
        list(old.history),
    )
    if inp.command == "retry" and _applies(run, "retry", None):
        run.events.append(Event("Normal", Reason.RETRY, f"retrying revision {run.failed} (nlpctl retry)"))
        run.failed = None
    if stable is None:
        # The first revision (or one whose stable children vanished) is rolled out without a canary.
        return _settled(run)
    if inp.desired == stable:
        return _template_reverted(run, old.canary_revision)
    if inp.desired == run.failed:
        return _held_back(run, old)
    canary = _command(run, _canary(run, old))
    if isinstance(canary, RolloutOutcome):
        return canary
    return _STAGES[canary.stage](run, canary)


def _applies(run: _Run, command: str, canary: _Canary | None) -> bool:
    revision, stage = (canary.revision, canary.stage) if canary is not None else (None, None)
    return refusal(command, canary=revision, stage=stage, failed=run.failed) is None


# ---------------------------------------------------------------------------------- no canary


def _settled(
    run: _Run, analysis: AnalysisStatus | None = None, evaluation: EvaluationStatus | None = None
) -> RolloutOutcome:
    previous = run.inp.status.evaluation
    if evaluation is None and previous is not None and previous.canary_revision == run.stable:
        evaluation = previous  # the evaluation that promoted the stable stays visible
    status = NLPModelStatus(
        stable_revision=run.stable,
        history=run.history,
        analysis=analysis,
        evaluation=evaluation,
        failed_revision=run.failed,
    )
    return RolloutOutcome(run.stable, None, 0, Sizing(), status, run.delete, run.events, run.command_done)


def _template_reverted(run: _Run, canary: str | None) -> RolloutOutcome:
    if canary is not None:
        run.record(canary, "Aborted", "the serving template went back to the stable revision")
        run.events.append(
            Event(
                "Normal",
                Reason.TEMPLATE_REVERTED,
                f"canary {canary} removed: the template is the stable one again",
            )
        )
        run.delete.append(canary)
    return _settled(run)


def _held_back(run: _Run, old: NLPModelStatus) -> RolloutOutcome:
    """Rolled back: not retried until the template changes again (or `nlpctl retry`)."""
    if old.canary_revision is not None and old.canary_revision != run.inp.desired:
        run.delete.append(old.canary_revision)
    # the checks and the evaluation that ended it stay visible
    return _settled(run, analysis=old.analysis, evaluation=old.evaluation)


# ------------------------------------------------------------------------------ canary stages


def _canary(run: _Run, old: NLPModelStatus) -> _Canary:
    """The canary of the desired revision: the one in progress, or a new one (replacing another)."""
    desired, steps = run.inp.desired, run.steps
    if old.canary_revision == desired:
        canary = _Canary(
            desired,
            old.rollout_stage(steps) or "Progressing",
            old.current_step or 0,
            parse_time(old.step_started_at),
            parse_time(old.canary_started_at),
            old.analysis,
            old.evaluation if old.evaluation and old.evaluation.canary_revision == desired else None,
        )
        if canary.stage != "Promoting" and canary.step >= steps:
            canary = replace(canary, stage="Promoting")  # the spec lost steps: this one has passed them
    else:
        if old.canary_revision is not None:
            run.record(old.canary_revision, "Aborted", f"superseded by revision {desired}")
            run.events.append(
                Event("Normal", Reason.CANARY_REPLACED, f"canary {old.canary_revision} replaced by {desired}")
            )
            run.delete.append(old.canary_revision)
        run.events.append(
            Event("Normal", Reason.ROLLOUT_STARTED, f"rolling out revision {desired} beside {run.stable}")
        )
        canary = _Canary(desired, "Progressing", 0, None, run.now, None)
    if run.spec.rollout.strategy == "direct":  # no steps: straight to promotion
        canary = replace(
            canary, stage="Promoting", step=steps, step_started=canary.step_started or canary.started
        )
    return canary


def _command(run: _Run, canary: _Canary) -> _Canary | RolloutOutcome:
    """Act on a manual command, where it applies (`core.commands.refusal`, nlpctl's rule too)."""
    command = run.inp.command
    if command is None or command == "retry" or not _applies(run, command, canary):
        return canary
    if command == "abort":
        return _rollback(run, canary, Reason.ABORTED, "aborted by nlpctl abort", "Aborted")
    if command == "pause":
        return replace(canary, stage="Paused")
    if command == "resume":
        # The step's pause restarts on resume.
        started = run.now if canary.step_started is not None else None
        return replace(canary, stage="Progressing", step_started=started)
    run.events.append(
        Event("Normal", Reason.PROMOTING, f"revision {canary.revision} promoted by nlpctl promote")
    )
    return replace(canary, stage="Promoting", step=run.steps, step_started=run.now)


def _cost_context(run: _Run, canary: _Canary) -> CostContext | None:
    pricing = run.inp.pricing.get(canary.revision)
    if pricing is None:
        return None
    window = run.inp.check.window_s if run.inp.check is not None else None
    return CostContext(pricing, run.inp.pricing.get(run.stable), window or 0.0, run.inp.currency)


def _progressing(run: _Run, canary: _Canary) -> RolloutOutcome:
    """At a step: its weight applies once the canary is ready; it advances when its pause has elapsed
    and the analysis allows."""
    started = canary.step_started
    if not _ready(run, canary) or started is None:
        return _waiting(run, canary)
    spec, now = run.spec, run.now
    if run.inp.check is not None and spec.rollout.analysis is not None:
        checked = record_check(spec, canary.analysis, run.inp.check, now, started, _cost_context(run, canary))
        canary = replace(canary, analysis=checked.analysis)
        if checked.rollback is not None:
            reason, message = checked.rollback
            outcome: Outcome = "Aborted" if reason == Reason.ANALYSIS_UNAVAILABLE else "RolledBack"
            return _rollback(run, canary, reason, message, outcome, keep_analysis=True)
    steps = spec.rollout.steps
    elapsed = (now - started).total_seconds() >= parse_duration(steps[canary.step].pause)
    if not (elapsed and step_may_advance(spec, canary.analysis)):
        return _at_step(run, canary)
    gated = _gate(run, canary, canary.step + 1)
    if isinstance(gated, RolloutOutcome):
        return gated
    canary, gate_open = gated
    if not gate_open:
        return _at_step(run, canary)
    step = canary.step + 1
    counted_afresh = (canary.analysis or AnalysisStatus()).model_copy(update={"passed_checks": 0})
    canary = replace(canary, step=step, step_started=now, analysis=counted_afresh)
    if step < len(steps):
        run.events.append(
            Event(
                "Normal",
                Reason.STEP_ADVANCED,
                f"revision {canary.revision}: step {step + 1}/{len(steps)} at {steps[step].weight}%",
            )
        )
        return _at_step(run, canary)
    run.events.append(Event("Normal", Reason.PROMOTING, f"revision {canary.revision}: all steps passed"))
    return _promoting(run, replace(canary, stage="Promoting"))


def _paused(run: _Run, canary: _Canary) -> RolloutOutcome:
    """Held at its step by `nlpctl pause`: no checks, no advance; progressDeadline still applies."""
    if _ready(run, canary) and canary.step_started is not None:
        return _at_step(run, canary)
    return _waiting(run, canary)


def _waiting(run: _Run, canary: _Canary) -> RolloutOutcome:
    """A canary not ready (yet, or any more) is rolled back after progressDeadline; once it is ready
    for the first time, its step starts."""
    if _ready(run, canary):
        gated = _gate(run, canary, canary.step)
        if isinstance(gated, RolloutOutcome):
            return gated
        canary, gate_open = gated
        return _at_step(run, replace(canary, step_started=run.now) if gate_open else canary)
    since = canary.step_started or canary.started or run.now
    if (run.now - since).total_seconds() > parse_duration(run.spec.rollout.progress_deadline):
        return _rollback(
            run,
            canary,
            Reason.PROGRESS_DEADLINE_EXCEEDED,
            f"not ready within progressDeadline {run.spec.rollout.progress_deadline}",
        )
    return _at_step(run, canary)


def _gate(run: _Run, canary: _Canary, step: int) -> tuple[_Canary, bool] | RolloutOutcome:
    """The evaluation gate before ``step``'s weight (``len(steps)``: before promotion). Open (True)
    where none applies or the evaluation passed; held (False) while it is pending or inconclusive,
    with the verdict that came recorded; a rollback when it failed, or when no verdict came within
    progressDeadline of the gate (Aborted, as analysis does without metrics)."""
    evaluation = run.spec.rollout.evaluation
    if evaluation is None or (step > 0 and evaluation.when != "everyStep"):
        return canary, True
    key = EvaluationKey(canary.revision, run.stable, step)
    gate = canary.evaluation if key.matches(canary.evaluation) else None
    if gate is None:
        gate = pending(key, run.now)
        where = "before any traffic" if step == 0 else f"before step {step + 1}"
        run.events.append(
            Event("Normal", Reason.EVALUATION_PENDING, f"revision {canary.revision}: evaluating {where}")
        )
    outcome = run.inp.evaluation
    if outcome is not None and outcome.key == key and gate.verdict not in ("pass", "fail"):
        gate = recorded(gate, outcome, run.now)
        _evaluation_event(run, gate)
    canary = replace(canary, evaluation=gate)
    if gate.verdict == "pass":
        return canary, True
    if gate.verdict == "fail":
        return _rollback(
            run, canary, Reason.EVALUATION_FAILED, f"evaluation failed: {gate.message}", keep_analysis=True
        )
    asked = parse_time(gate.requested_at) or run.now
    deadline = run.spec.rollout.progress_deadline
    if (run.now - asked).total_seconds() > parse_duration(deadline):
        return _rollback(
            run,
            canary,
            Reason.EVALUATION_UNAVAILABLE,
            f"no evaluation verdict within progressDeadline {deadline} ({gate.verdict}: {gate.message})",
            "Aborted",
            keep_analysis=True,
        )
    return canary, False


def _evaluation_event(run: _Run, gate: EvaluationStatus) -> None:
    revision = gate.canary_revision
    if gate.verdict == "pass":
        run.events.append(
            Event(
                "Normal", Reason.EVALUATION_PASSED, f"revision {revision}: evaluation passed: {gate.message}"
            )
        )
    elif gate.verdict == "inconclusive":
        run.events.append(
            Event(
                "Warning",
                Reason.EVALUATION_INCONCLUSIVE,
                f"revision {revision}: evaluation inconclusive: {gate.message}",
            )
        )
    elif gate.verdict == "error":
        run.events.append(Event("Warning", Reason.DATASET_INVALID, f"revision {revision}: {gate.message}"))


def _held(canary: _Canary) -> EvaluationStatus | None:
    """The evaluation the canary waits for, if it is held by one."""
    gate = canary.evaluation
    return gate if gate is not None and gate.verdict not in ("pass", "fail") else None


def _ready(run: _Run, canary: _Canary) -> bool:
    state = run.state(canary.revision)
    return state is not None and state.ready


def _at_step(run: _Run, canary: _Canary) -> RolloutOutcome:
    """The canary at its step's weight (0 until the step starts), sized for it."""
    spec, steps, total = run.spec, run.spec.rollout.steps, run.spec.scaling.base_replicas
    step = steps[canary.step]
    weight = step.weight if canary.step_started is not None else 0
    replicas = canary_replicas(total, step.weight)
    sizing = Sizing(stable=None if spec.rollout.gpu_surge else max(total - replicas, 1), canary=replicas)
    paused = canary.stage == "Paused"
    if canary.step_started is None:
        message = f"revision {canary.revision}: waiting for it to become ready"
    else:
        remaining = parse_duration(step.pause) - (run.now - canary.step_started).total_seconds()
        message = (
            f"revision {canary.revision}: step {canary.step + 1}/{len(steps)} at {weight}%, "
            f"{format_duration(max(0.0, remaining))} left"
        )
    if paused:
        message += " (paused by nlpctl pause)"
    reason = Reason.PAUSED if paused else Reason.CANARY_PROGRESSING
    gate = _held(canary)
    if gate is not None and not paused and _ready(run, canary):
        reason = Reason.EVALUATION_PENDING
        message = (
            f"revision {canary.revision}: held at {weight}% until its evaluation passes "
            f"({gate.verdict}: {gate.message})"
        )
    return _in_progress(run, canary, weight, sizing, (reason, message))


def _promoting(run: _Run, canary: _Canary) -> RolloutOutcome:
    """With GPU surge the canary first grows to the model's full size; once it is ready at that size all
    traffic moves to it and the old stable goes. Without surge there are no spare GPUs to grow into:
    traffic moves at once, the old stable goes, the canary grows after."""
    spec, now, total, surge = run.spec, run.now, run.spec.scaling.base_replicas, run.spec.rollout.gpu_surge
    state = run.state(canary.revision)
    ready = state is not None and state.ready
    full = ready and state is not None and (state.replicas is None or state.replicas >= total)
    if ready and (full or not surge):
        run.record(canary.revision, "Promoted", "all steps passed")
        run.events.append(
            Event("Normal", Reason.PROMOTED, f"revision {canary.revision} promoted; {run.stable} removed")
        )
        status = NLPModelStatus(
            stable_revision=canary.revision, history=run.history, evaluation=canary.evaluation
        )
        delete = [*run.delete, run.stable]
        return RolloutOutcome(
            canary.revision, None, 0, Sizing(), status, delete, run.events, run.command_done
        )
    since = canary.step_started or now
    if (now - since).total_seconds() > parse_duration(spec.rollout.progress_deadline):
        return _rollback(
            run,
            canary,
            Reason.PROGRESS_DEADLINE_EXCEEDED,
            f"not ready at full size within progressDeadline {spec.rollout.progress_deadline}",
        )
    last_weight = spec.rollout.steps[-1].weight if spec.rollout.strategy == "canary" else 0
    if surge:
        sizing = Sizing(stable=None, canary=total)
    else:  # waiting for the canary at its last step's size
        held = canary_replicas(total, last_weight)
        sizing = Sizing(stable=max(total - held, 1), canary=held)
    message = f"promoting revision {canary.revision}: scaling it to {total} replica(s)"
    return _in_progress(run, canary, last_weight if surge else 0, sizing, (Reason.PROMOTING, message))


_STAGES: Mapping[RolloutStage, Callable[[_Run, _Canary], RolloutOutcome]] = {
    "Progressing": _progressing,
    "Paused": _paused,
    "Promoting": _promoting,
}


# ----------------------------------------------------------------------------------- endings


def _in_progress(
    run: _Run, canary: _Canary, weight: int, sizing: Sizing, progressing: tuple[str, str]
) -> RolloutOutcome:
    state = run.state(canary.revision)
    if state is None or not state.can_serve:
        weight = 0  # no traffic to a canary that cannot take it (not up yet, or its pods went down)
    status = NLPModelStatus(
        stable_revision=run.stable,
        canary_revision=canary.revision,
        canary_weight=weight,
        current_step=canary.step,
        stage=canary.stage,
        step_started_at=format_time(canary.step_started) if canary.step_started is not None else None,
        canary_started_at=format_time(canary.started or run.now),
        paused=True if canary.stage == "Paused" else None,
        analysis=canary.analysis,
        evaluation=canary.evaluation,
        failed_revision=run.failed,
        history=run.history,
    )
    return RolloutOutcome(
        run.stable,
        canary.revision,
        weight,
        sizing,
        status,
        run.delete,
        run.events,
        run.command_done,
        progressing=progressing,
    )


def _rollback(
    run: _Run,
    canary: _Canary,
    reason: str,
    message: str,
    outcome: Outcome = "RolledBack",
    *,
    keep_analysis: bool = False,
) -> RolloutOutcome:
    run.record(canary.revision, outcome, message)
    run.events.append(Event("Warning", reason, f"revision {canary.revision} rolled back: {message}"))
    status = NLPModelStatus(
        stable_revision=run.stable,
        failed_revision=canary.revision,
        history=run.history,
        # the checks that ended it stay visible
        analysis=canary.analysis if keep_analysis else None,
        evaluation=canary.evaluation,
    )
    return RolloutOutcome(
        run.stable,
        None,
        0,
        Sizing(),
        status,
        [*run.delete, canary.revision],
        run.events,
        run.command_done,
        rolled_back=(reason, f"revision {canary.revision}: {message}"),
    )
