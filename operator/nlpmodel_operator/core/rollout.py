"""The rollout state machine (pure): which revisions run, at which weight and size, and when a canary
advances, is promoted or rolled back.

`step_rollout(RolloutInput) -> RolloutOutcome`. Everything it needs to resume after an operator restart
is in the status it reads and writes: stableRevision, canaryRevision, currentStep (== len(steps) while
promoting), stepStartedAt, canaryStartedAt, paused, failedRevision, history.

Sizing: a model runs `N` replicas (spec.scaling.replicas, else minReplicas). At weight w the canary
runs ceil(N·w/100) replicas (at least one); with gpuSurge the stable keeps N, without it the stable
gives up as many as the canary takes, so the model never asks for more GPUs than N replicas hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nlpmodel_operator.api.constants import Reason
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.units import format_duration, parse_duration
from nlpmodel_operator.core.analysis.checks import (
    CheckData,
    format_time,
    parse_time,
    record_check,
    step_may_advance,
)
from nlpmodel_operator.core.records import Event, RevisionState
from nlpmodel_operator.core.routers import canary_replicas

HISTORY_LIMIT = 10


@dataclass(frozen=True)
class RolloutInput:
    spec: NLPModelSpec
    desired: str  # revision of the current serving template
    status: Mapping[str, Any]
    revisions: Mapping[str, RevisionState]
    command: str | None
    now: datetime
    check: CheckData | None = None  # metrics gathered for a due analysis check


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
    status: dict[str, Any]  # rollout fields of the new status
    delete: list[str] = field(default_factory=list)  # revisions whose children go (after traffic moved)
    events: list[Event] = field(default_factory=list)
    command_done: bool = False
    rolled_back: tuple[str, str] | None = None  # (reason, message) when this call rolled back
    progressing: tuple[str, str] | None = None  # (reason, message) while a rollout runs


def _history(history: list[Any], revision: str, outcome: str, reason: str, now: datetime) -> list[Any]:
    entries = [
        *history,
        {"revision": revision, "outcome": outcome, "reason": reason, "at": format_time(now)},
    ]
    return entries[-HISTORY_LIMIT:]


def step_rollout(inp: RolloutInput) -> RolloutOutcome:
    old = inp.status
    spec, now, desired = inp.spec, inp.now, inp.desired
    steps = spec.rollout.steps
    total = spec.scaling.base_replicas
    surge = spec.rollout.gpu_surge
    stable: str | None = old.get("stableRevision")
    if stable not in inp.revisions:
        stable = None  # never created, or its children are gone: whatever runs now becomes stable
    canary: str | None = old.get("canaryRevision")
    failed: str | None = old.get("failedRevision")
    history = list(old.get("history") or [])
    events: list[Event] = []
    delete: list[str] = []
    command = inp.command
    done = command is not None  # every command is consumed, applicable or not (nlpctl checks first)

    if command == "retry" and failed is not None:
        events.append(Event("Normal", Reason.RETRY, f"retrying revision {failed} (nlpctl retry)"))
        failed = None

    def settled(stable_rev: str, **extra: Any) -> RolloutOutcome:
        status = {"stableRevision": stable_rev, "history": history, **extra}
        if failed is not None:
            status["failedRevision"] = failed
        return RolloutOutcome(stable_rev, None, 0, Sizing(), status, delete, events, done)

    if stable is None:
        # The first revision (or one whose stable children vanished) is rolled out without a canary.
        return settled(desired)

    if desired == stable:
        if canary is not None:
            history = _history(
                history, canary, "Aborted", "the serving template went back to the stable revision", now
            )
            events.append(
                Event(
                    "Normal",
                    Reason.TEMPLATE_REVERTED,
                    f"canary {canary} removed: the template is the stable one again",
                )
            )
            delete.append(canary)
        return settled(stable)

    if desired == failed:
        # Rolled back: not retried until the template changes again (or `nlpctl retry`).
        if canary is not None and canary != desired:
            delete.append(canary)
        kept = {"analysis": old["analysis"]} if old.get("analysis") else {}
        return settled(stable, **kept)

    status: dict[str, Any] = {}
    step: int = old.get("currentStep") or 0
    step_started = parse_time(old.get("stepStartedAt"))
    canary_started = parse_time(old.get("canaryStartedAt"))
    paused = bool(old.get("paused"))
    if canary != desired:
        if canary is not None:
            history = _history(history, canary, "Aborted", f"superseded by revision {desired}", now)
            events.append(Event("Normal", Reason.CANARY_REPLACED, f"canary {canary} replaced by {desired}"))
            delete.append(canary)
        events.append(
            Event("Normal", Reason.ROLLOUT_STARTED, f"rolling out revision {desired} beside {stable}")
        )
        canary, step, step_started, canary_started, paused = desired, 0, None, now, False
    if spec.rollout.strategy == "direct":
        step = len(steps)  # no steps: straight to promotion
        step_started = step_started or canary_started

    state = inp.revisions.get(canary)
    ready = state is not None and state.ready
    deadline = parse_duration(spec.rollout.progress_deadline)

    def rollback(
        reason: str, message: str, outcome: str = "RolledBack", analysis: Mapping[str, Any] | None = None
    ) -> RolloutOutcome:
        nonlocal history
        history = _history(history, canary, outcome, message, now)
        events.append(Event("Warning", reason, f"revision {canary} rolled back: {message}"))
        status: dict[str, Any] = {"stableRevision": stable, "failedRevision": canary, "history": history}
        if analysis:
            status["analysis"] = dict(analysis)  # the checks that ended it stay visible
        out = RolloutOutcome(
            stable,
            None,
            0,
            Sizing(),
            status,
            [*delete, canary],
            events,
            done,
            rolled_back=(reason, f"revision {canary}: {message}"),
        )
        return out

    if command == "abort":
        return rollback(Reason.ABORTED, "aborted by nlpctl abort", "Aborted")
    if command == "pause" and not paused:
        paused = True
    elif command == "resume" and paused:
        paused = False
        step_started = now if step_started is not None else None  # the step's pause restarts on resume
    if command == "promote" and step < len(steps):
        step, step_started = len(steps), now
        events.append(Event("Normal", Reason.PROMOTING, f"revision {canary} promoted by nlpctl promote"))

    weight = steps[step].weight if step < len(steps) and step_started is not None else 0
    analysis: dict[str, Any] = dict(old.get("analysis") or {}) if canary == old.get("canaryRevision") else {}
    if step < len(steps):
        if ready and step_started is None:
            step_started = now  # the canary is up: its first step's weight applies from now
            weight = steps[step].weight
        elif ready and not paused and step_started is not None:
            if inp.check is not None and spec.rollout.analysis is not None:
                checked = record_check(spec, analysis, inp.check, now, step_started)
                analysis = checked.analysis
                if checked.rollback is not None:
                    reason, message = checked.rollback
                    outcome = "Aborted" if reason == Reason.ANALYSIS_UNAVAILABLE else "RolledBack"
                    return rollback(reason, message, outcome, analysis)
            elapsed = (now - step_started).total_seconds() >= parse_duration(steps[step].pause)
            if elapsed and step_may_advance(spec, analysis):
                analysis["passedChecks"] = 0
                step += 1
                step_started = now
                if step < len(steps):
                    weight = steps[step].weight
                    events.append(
                        Event(
                            "Normal",
                            Reason.STEP_ADVANCED,
                            f"revision {canary}: step {step + 1}/{len(steps)} at {weight}%",
                        )
                    )
                else:
                    events.append(Event("Normal", Reason.PROMOTING, f"revision {canary}: all steps passed"))
        elif not ready:
            since = step_started or canary_started or now
            if (now - since).total_seconds() > deadline:
                return rollback(
                    Reason.PROGRESS_DEADLINE_EXCEEDED,
                    f"not ready within progressDeadline {spec.rollout.progress_deadline}",
                )

    if step >= len(steps):
        # Promotion. With GPU surge the canary first grows to the model's full size; once it is ready
        # at that size all traffic moves to it and the old stable goes. Without surge there are no
        # spare GPUs to grow into: traffic moves at once, the old stable goes, the canary grows after.
        last_weight = steps[-1].weight if spec.rollout.strategy == "canary" else 0
        full = state is not None and state.ready and (state.replicas is None or state.replicas >= total)
        if ready and (full or not surge):
            history = _history(history, canary, "Promoted", "all steps passed", now)
            events.append(Event("Normal", Reason.PROMOTED, f"revision {canary} promoted; {stable} removed"))
            promoted = canary
            out = RolloutOutcome(
                promoted,
                None,
                0,
                Sizing(),
                {"stableRevision": promoted, "history": history},
                [*delete, stable],
                events,
                done,
            )
            return out
        since = step_started or now
        if (now - since).total_seconds() > deadline:
            return rollback(
                Reason.PROGRESS_DEADLINE_EXCEEDED,
                f"not ready at full size within progressDeadline {spec.rollout.progress_deadline}",
            )
        weight = last_weight if surge else 0
        if surge:
            sizing = Sizing(stable=None, canary=total)
        else:  # waiting for the canary at its last step's size
            held = canary_replicas(total, last_weight)
            sizing = Sizing(stable=max(total - held, 1), canary=held)
        message = f"promoting revision {canary}: scaling it to {total} replica(s)"
        reason = Reason.PROMOTING
    else:
        c = canary_replicas(total, weight or steps[step].weight)
        sizing = Sizing(stable=None if surge else max(total - c, 1), canary=c)
        left = ""
        if step_started is not None:
            remaining = parse_duration(steps[step].pause) - (now - step_started).total_seconds()
            left = f", {format_duration(max(0.0, remaining))} left"
        reason = Reason.PAUSED if paused else Reason.CANARY_PROGRESSING
        message = (
            f"revision {canary}: step {step + 1}/{len(steps)} at {weight}%{left}"
            if step_started is not None
            else f"revision {canary}: waiting for it to become ready"
        )
        if paused:
            message += " (paused by nlpctl pause)"
    if state is None or not state.can_serve:
        weight = 0  # no traffic to a canary that cannot take it (not up yet, or its pods went down)
    status.update(
        {
            "stableRevision": stable,
            "canaryRevision": canary,
            "canaryWeight": weight,
            "currentStep": step,
            "canaryStartedAt": format_time(canary_started or now),
            "history": history,
        }
    )
    if step_started is not None:
        status["stepStartedAt"] = format_time(step_started)
    if analysis:
        status["analysis"] = analysis
    if paused:
        status["paused"] = True
    if failed is not None:
        status["failedRevision"] = failed
    return RolloutOutcome(
        stable, canary, weight, sizing, status, delete, events, done, progressing=(reason, message)
    )
