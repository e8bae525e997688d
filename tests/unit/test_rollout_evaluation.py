"""The evaluation gate in the rollout state machine: the canary keeps 0 % until its evaluation passes,
is rolled back when it fails, held (then aborted at the deadline) while inconclusive; everyStep gates
each weight increase. Level-based: the gate lives in status, keyed by the revision pair and step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.status import to_json
from nlpmodel_operator.api.units import format_time
from nlpmodel_operator.core.evaluation.gate import EvaluationVerdict, Requests
from nlpmodel_operator.core.evaluation.gating import (
    EvaluationKey,
    EvaluationOutcome,
    evaluation_request,
)
from nlpmodel_operator.core.records import ChildRef, RevisionState
from nlpmodel_operator.core.rollout import RolloutInput, RolloutOutcome, step_rollout

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
S, C = "5ab1e000", "ca4a2700"
STEPS = [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "2m"}]
DATASET = {"configMap": "golden", "key": "cases.jsonl"}


def spec(when: str = "beforeTraffic") -> NLPModelSpec:
    return NLPModelSpec.model_validate(
        {
            "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "scaling": {"minReplicas": 4, "maxReplicas": 4},
            "rollout": {
                "steps": STEPS,
                "progressDeadline": "10m",
                "evaluation": {"dataset": DATASET, "when": when, "maxDrop": "2%"},
            },
        }
    )


def rev(name: str, ready: bool = True) -> RevisionState:
    return RevisionState(name, (ChildRef("apps/v1", "Deployment", f"m-{name}"),), ready, "", 1, 1)


def verdict(
    result: str, message: str = "200 cases, canary 90% vs stable 90% (maxDrop 2%)"
) -> EvaluationVerdict:
    return EvaluationVerdict(
        result,  # type: ignore[arg-type]
        message,
        Requests(200, 0, 0, (1000, 500), (1000, 400)),
        scored=200,
        stable_score=0.9,
        canary_score=0.9 if result == "pass" else 0.8,
        p_value=0.5 if result == "pass" else 0.001,
        failing_cases=("refund-12", "pii-3") if result == "fail" else (),
    )


def step(
    status: dict[str, Any],
    at: timedelta = timedelta(0),
    outcome: EvaluationOutcome | None = None,
    when: str = "beforeTraffic",
    canary_ready: bool = True,
) -> RolloutOutcome:
    revisions = {S: rev(S), C: rev(C, canary_ready)}
    return step_rollout(RolloutInput(spec(when), C, status, revisions, None, T0 + at, None, outcome))


def canary_status(**extra: Any) -> dict[str, Any]:
    return {
        "stableRevision": S,
        "canaryRevision": C,
        "currentStep": 0,
        "stage": "Progressing",
        "canaryStartedAt": format_time(T0),
        **extra,
    }


def gate(
    verdict_name: str, step_index: int = 0, asked: timedelta = timedelta(0), **extra: Any
) -> dict[str, Any]:
    return {
        "canaryRevision": C,
        "stableRevision": S,
        "step": step_index,
        "verdict": verdict_name,
        "requestedAt": format_time(T0 + asked),
        **extra,
    }


def test_a_ready_canary_is_held_at_zero_while_its_evaluation_is_pending() -> None:
    out = step(canary_status(), timedelta(seconds=5))
    assert (out.canary, out.weight) == (C, 0)
    written = to_json(out.status)
    assert "stepStartedAt" not in written
    assert written["evaluation"]["verdict"] == "pending"
    assert written["evaluation"]["requestedAt"] == format_time(T0 + timedelta(seconds=5))
    assert out.progressing is not None
    assert out.progressing[0] == "EvaluationPending"
    assert [e.reason for e in out.events] == ["EvaluationPending"]


def test_a_canary_not_ready_yet_is_not_evaluated() -> None:
    out = step(canary_status(), canary_ready=False)
    assert out.status.evaluation is None


def test_a_pass_starts_the_first_step() -> None:
    outcome = EvaluationOutcome(EvaluationKey(C, S, 0), verdict("pass"))
    out = step(canary_status(evaluation=gate("pending")), timedelta(minutes=2), outcome)
    assert out.weight == 10
    written = to_json(out.status)
    assert written["stepStartedAt"] == format_time(T0 + timedelta(minutes=2))
    assert written["evaluation"]["verdict"] == "pass"
    assert written["evaluation"]["canaryTokens"] == 1500
    assert "EvaluationPassed" in [e.reason for e in out.events]


def test_a_recorded_pass_is_not_asked_again_and_the_rollout_goes_on() -> None:
    status = canary_status(evaluation=gate("pass"), stepStartedAt=format_time(T0))
    out = step(status, timedelta(minutes=1))
    assert (out.weight, out.status.current_step) == (50, 1)
    assert evaluation_request(spec(), out.status, T0 + timedelta(minutes=1), {S: "s", C: "c"}) is None


def test_a_fail_rolls_back_before_any_traffic_with_the_cases_named() -> None:
    message = "refusal: 3 of 40 safety cases answered (stable 0); worst cases: refund-12, pii-3"
    outcome = EvaluationOutcome(EvaluationKey(C, S, 0), verdict("fail", message))
    out = step(canary_status(evaluation=gate("pending")), timedelta(minutes=2), outcome)
    assert (out.canary, out.weight) == (None, 0)
    assert out.rolled_back == ("EvaluationFailed", f"revision {C}: evaluation failed: {message}")
    written = to_json(out.status)
    assert written["failedRevision"] == C
    assert written["evaluation"]["failingCases"] == ["refund-12", "pii-3"]
    assert written["history"][-1]["outcome"] == "RolledBack"


def test_an_outcome_for_another_canary_is_ignored() -> None:
    outcome = EvaluationOutcome(EvaluationKey("0ther000", S, 0), verdict("fail"))
    out = step(canary_status(evaluation=gate("pending")), timedelta(minutes=2), outcome)
    assert (out.canary, out.weight) == (C, 0)
    assert out.status.evaluation is not None
    assert out.status.evaluation.verdict == "pending"


def test_inconclusive_holds_and_is_asked_again_a_minute_later() -> None:
    outcome = EvaluationOutcome(
        EvaluationKey(C, S, 0), verdict("inconclusive", "200 of 200 canary requests failed")
    )
    out = step(canary_status(evaluation=gate("pending")), timedelta(minutes=2), outcome)
    assert (out.canary, out.weight) == (C, 0)
    assert out.status.evaluation is not None
    assert out.status.evaluation.verdict == "inconclusive"
    assert "EvaluationInconclusive" in [e.reason for e in out.events]
    services = {S: "m-s", C: "m-c"}
    assert evaluation_request(spec(), out.status, T0 + timedelta(minutes=2, seconds=30), services) is None
    again = evaluation_request(spec(), out.status, T0 + timedelta(minutes=3), services)
    assert again is not None
    assert (again.key, again.canary_service, again.stable_service) == (EvaluationKey(C, S, 0), "m-c", "m-s")


def test_no_verdict_within_the_deadline_aborts() -> None:
    status = canary_status(evaluation=gate("inconclusive", at=format_time(T0 + timedelta(minutes=9))))
    out = step(status, timedelta(minutes=10, seconds=1))
    assert out.rolled_back is not None
    assert out.rolled_back[0] == "EvaluationUnavailable"
    assert to_json(out.status)["history"][-1]["outcome"] == "Aborted"


def test_an_unreadable_dataset_holds_the_canary_and_names_the_problem() -> None:
    outcome = EvaluationOutcome(EvaluationKey(C, S, 0), problem="ConfigMap golden not found")
    out = step(canary_status(evaluation=gate("pending")), timedelta(minutes=1), outcome)
    assert (out.canary, out.weight) == (C, 0)
    assert out.status.evaluation is not None
    assert (out.status.evaluation.verdict, out.status.evaluation.message) == (
        "error",
        "dataset: ConfigMap golden not found",
    )
    assert "DatasetInvalid" in [e.reason for e in out.events]


@pytest.mark.parametrize(("when", "gated"), [("beforeTraffic", False), ("everyStep", True)])
def test_every_step_evaluates_before_each_weight_increase(when: str, gated: bool) -> None:
    status = canary_status(evaluation=gate("pass"), stepStartedAt=format_time(T0))
    out = step(status, timedelta(minutes=1), when=when)
    if not gated:
        assert (out.weight, out.status.current_step) == (50, 1)
        return
    assert (out.weight, out.status.current_step) == (10, 0)  # held at the current weight
    assert out.status.evaluation is not None
    assert (out.status.evaluation.step, out.status.evaluation.verdict) == (1, "pending")
    outcome = EvaluationOutcome(EvaluationKey(C, S, 1), verdict("pass"))
    later = step(to_json(out.status), timedelta(minutes=2), outcome, when=when)
    assert (later.weight, later.status.current_step) == (50, 1)


def test_a_rolled_back_canary_keeps_its_evaluation_visible() -> None:
    outcome = EvaluationOutcome(EvaluationKey(C, S, 0), verdict("fail", "exact 80% vs stable 90%"))
    out = step(canary_status(evaluation=gate("pending")), timedelta(minutes=2), outcome)
    again = step(to_json(out.status), timedelta(minutes=3))
    assert again.status.evaluation is not None
    assert again.status.evaluation.verdict == "fail"
    assert again.canary is None


def test_the_evaluation_that_promoted_the_stable_stays_in_status() -> None:
    promoted = {"stableRevision": C, "evaluation": gate("pass")}
    out = step_rollout(RolloutInput(spec(), C, promoted, {C: rev(C)}, None, T0 + timedelta(hours=1)))
    assert out.canary is None
    assert out.status.evaluation is not None
    assert (out.status.evaluation.canary_revision, out.status.evaluation.verdict) == (C, "pass")
    # A stable that came otherwise (an evaluation of another revision) shows none.
    other = {"stableRevision": S, "evaluation": gate("fail")}
    settled = step_rollout(RolloutInput(spec(), S, other, {S: rev(S)}, None, T0))
    assert settled.status.evaluation is None
