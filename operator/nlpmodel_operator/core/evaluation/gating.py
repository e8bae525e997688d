"""The evaluation gate in the rollout (pure): which evaluation is due, and its verdict as status.

Level-based: the state machine writes ``status.evaluation`` (``pending``) when a gate is reached, for
a key (canary revision, stable revision, step). The shell sees a due evaluation in status
(:func:`evaluation_request_for`), runs it in a task of its own, and hands the verdict to the next
reconcile of the model (:class:`EvaluationOutcome`); the state machine records it in the same status
write as its consequence. So a restart never repeats a verdict that was recorded, and never loses a
gate: one that was asked for and not answered is asked again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.status import EvaluationStatus, NLPModelStatus
from nlpmodel_operator.api.units import format_time, parse_duration, parse_percent, parse_time
from nlpmodel_operator.core.evaluation.gate import EvaluationVerdict, Thresholds

# An inconclusive evaluation (or an unreadable dataset) is asked again this long after its verdict:
# often enough to pass soon after the canary recovers (or the ConfigMap is fixed), seldom enough not
# to hammer an unreachable Service.
RETRY_AFTER_S: Final = 60.0

# Concluded evaluations kept in ``status.evaluations``, one per canary revision: enough to compare the
# last few releases, few enough to keep the status small.
EVALUATIONS_KEPT: Final = 8


@dataclass(frozen=True)
class EvaluationKey:
    canary: str
    stable: str
    step: int

    def matches(self, status: EvaluationStatus | None) -> bool:
        return (
            status is not None
            and status.canary_revision == self.canary
            and status.stable_revision == self.stable
            and status.step == self.step
        )


@dataclass(frozen=True)
class EvaluationRequest:
    """An evaluation the shell is to run: the dataset, where each revision answers, the thresholds."""

    key: EvaluationKey
    config_map: str
    data_key: str
    canary_service: str  # each revision's own Service, never the user-facing route
    stable_service: str
    samples: int
    concurrency: int
    timeout_s: float
    thresholds: Thresholds


@dataclass(frozen=True)
class EvaluationOutcome:
    """What an evaluation the shell ran came to: a verdict, or why the dataset could not be used."""

    key: EvaluationKey
    verdict: EvaluationVerdict | None = None
    problem: str | None = None


def thresholds_of(spec: NLPModelSpec) -> Thresholds:
    evaluation = spec.rollout.evaluation
    assert evaluation is not None
    floor = parse_percent(evaluation.min_score) if evaluation.min_score is not None else None
    return Thresholds(max_drop=parse_percent(evaluation.max_drop), min_score=floor)


def evaluation_due(status: EvaluationStatus | None, now: datetime) -> bool:
    """Whether the gate in status waits for an evaluation to be run now."""
    if status is None or status.verdict in ("pass", "fail"):
        return False
    if status.verdict == "pending":
        return True
    last = parse_time(status.at)
    return last is None or (now - last).total_seconds() >= RETRY_AFTER_S


def evaluation_request(
    spec: NLPModelSpec,
    status: NLPModelStatus,
    now: datetime,
    service_of: dict[str, str],
) -> EvaluationRequest | None:
    """The evaluation the shell should run before the next reconcile, if the rollout waits for one.
    ``service_of`` maps a revision to its Service name."""
    evaluation, gate = spec.rollout.evaluation, status.evaluation
    if evaluation is None or gate is None or not evaluation_due(gate, now):
        return None
    if gate.canary_revision != status.canary_revision or gate.stable_revision != status.stable_revision:
        return None
    canary, stable = service_of.get(gate.canary_revision), service_of.get(gate.stable_revision)
    if canary is None or stable is None:
        return None
    return EvaluationRequest(
        EvaluationKey(gate.canary_revision, gate.stable_revision, gate.step),
        evaluation.dataset.config_map,
        evaluation.dataset.key,
        canary,
        stable,
        evaluation.samples,
        evaluation.concurrency,
        parse_duration(evaluation.timeout),
        thresholds_of(spec),
    )


def pending(key: EvaluationKey, now: datetime) -> EvaluationStatus:
    return EvaluationStatus(
        canary_revision=key.canary,
        stable_revision=key.stable,
        step=key.step,
        verdict="pending",
        message=f"evaluating revision {key.canary} against {key.stable}",
        requested_at=format_time(now),
    )


def recorded(gate: EvaluationStatus, outcome: EvaluationOutcome, now: datetime) -> EvaluationStatus:
    """The gate's status once ``outcome`` came (it keeps when the gate was first asked for)."""
    base = {
        "canary_revision": gate.canary_revision,
        "stable_revision": gate.stable_revision,
        "step": gate.step,
        "requested_at": gate.requested_at,
        "at": format_time(now),
    }
    verdict = outcome.verdict
    if verdict is None:
        return EvaluationStatus(verdict="error", message=f"dataset: {outcome.problem}", **base)
    requests = verdict.requests
    return EvaluationStatus(
        verdict=verdict.result,
        message=verdict.message,
        cases=requests.cases,
        scored=verdict.scored,
        canary_score=verdict.canary_score,
        stable_score=verdict.stable_score,
        p_value=verdict.p_value,
        failing_cases=list(verdict.failing_cases),
        canary_failed_requests=requests.canary_failed,
        canary_tokens=sum(requests.canary_tokens),
        stable_tokens=sum(requests.stable_tokens),
        canary_prompt_tokens=requests.canary_tokens[0],
        canary_completion_tokens=requests.canary_tokens[1],
        stable_prompt_tokens=requests.stable_tokens[0],
        stable_completion_tokens=requests.stable_tokens[1],
        **base,
    )


def remembered(evaluations: list[EvaluationStatus], gate: EvaluationStatus | None) -> list[EvaluationStatus]:
    """``status.evaluations`` once ``gate`` (the gate in status) is accounted for: its verdict, when it
    has one, as its revision's entry, newest last, at most EVALUATIONS_KEPT of them. A re-evaluation of
    a revision (everyStep, a retry after inconclusive) replaces its entry; a pending gate is not a
    verdict. Level-based: the gate already kept leaves the list as it is, so writing the same status
    twice (a restart) neither repeats an entry nor loses one."""
    if gate is None or gate.verdict == "pending" or gate in evaluations:
        return evaluations
    others = [e for e in evaluations if e.canary_revision != gate.canary_revision]
    return [*others, gate][-EVALUATIONS_KEPT:]
