"""Analysis in the rollout: when checks are due, and how verdicts move (or stop) a canary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.status import to_json
from nlpmodel_operator.api.units import format_time
from nlpmodel_operator.core.analysis.checks import CheckData, check_request
from nlpmodel_operator.core.analysis.judge import Histogram, RevisionSample
from nlpmodel_operator.core.records import ChildRef, RevisionState
from nlpmodel_operator.core.rollout import RolloutInput, RolloutOutcome, step_rollout

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
S, C = "5ab1e000", "ca4a2700"
BOUNDS = (0.1, 0.25, 0.5, 0.75, 1.0, 2.5, float("inf"))


def spec() -> NLPModelSpec:
    return NLPModelSpec.model_validate(
        {
            "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "rollout": {
                "steps": [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "1m"}],
                "analysis": {
                    "interval": "30s",
                    "minRequests": 50,
                    "failureThreshold": 2,
                    "inconclusiveDeadline": "3m",
                },
                "slo": {"ttftP95": "800ms", "errorRate": "1%"},
            },
        }
    )


def sample(shares: tuple[float, ...], n: float, errors: float = 0.0) -> RevisionSample:
    """`shares` of n requests per TTFT bucket (non-cumulative), as increase() would report them."""
    cumulative, running = [], 0.0
    for share in shares:
        running += share * n
        cumulative.append(running)
    return RevisionSample(
        ttft=Histogram(BOUNDS, tuple(cumulative)), itl=None, e2e=None, requests=n, errors=errors
    )


FAST = (0.2, 0.5, 0.25, 0.05, 0.0, 0.0, 0.0)  # p95 inside 0.5-0.75 s
SLOW = (0.0, 0.0, 0.1, 0.2, 0.3, 0.3, 0.1)  # p95 far above 0.8 s
HEALTHY = CheckData(sample(FAST, 400), sample(FAST, 4000))
BAD = CheckData(sample(SLOW, 400), sample(FAST, 4000))
MILD = CheckData(sample((0.12, 0.44, 0.31, 0.09, 0.04, 0.0, 0.0), 120), sample(FAST, 1080))
QUIET = CheckData(sample(FAST, 10), sample(FAST, 4000))
DOWN = CheckData(None, None, "metrics query failed: connection refused")


def at_step(
    step: int = 0, analysis: dict[str, Any] | None = None, started: timedelta = timedelta(0)
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "stableRevision": S,
        "canaryRevision": C,
        "currentStep": step,
        "canaryStartedAt": format_time(T0),
        "stepStartedAt": format_time(T0 + started),
    }
    if analysis:
        status["analysis"] = analysis
    return status


def ready() -> dict[str, RevisionState]:
    return {
        S: RevisionState(S, (ChildRef("apps/v1", "Deployment", "s"),), True, "", 1, 1),
        C: RevisionState(C, (ChildRef("apps/v1", "Deployment", "c"),), True, "", 1, 1),
    }


def run(status: dict[str, Any], check: CheckData | None, at: timedelta) -> RolloutOutcome:
    return step_rollout(RolloutInput(spec(), C, status, ready(), None, T0 + at, check))


@pytest.mark.parametrize(
    ("status", "at", "due"),
    [
        pytest.param(at_step(), timedelta(seconds=29), False, id="first-interval-not-over"),
        pytest.param(at_step(), timedelta(seconds=30), True, id="first-interval-over"),
        pytest.param(
            at_step(analysis={"lastCheckAt": format_time(T0 + timedelta(seconds=40))}),
            timedelta(seconds=60),
            False,
            id="since-last-check",
        ),
        pytest.param(
            at_step(analysis={"lastCheckAt": format_time(T0 + timedelta(seconds=40))}),
            timedelta(seconds=70),
            True,
            id="next-interval",
        ),
        pytest.param({**at_step(), "paused": True}, timedelta(minutes=5), False, id="paused"),
        pytest.param({**at_step(2)}, timedelta(minutes=5), False, id="promoting"),
        pytest.param({"stableRevision": S}, timedelta(minutes=5), False, id="no-canary"),
    ],
)
def test_checks_are_due_every_interval_while_the_canary_takes_traffic(
    status: dict[str, Any], at: timedelta, due: bool
) -> None:
    request = check_request(spec(), status, T0 + at)
    assert (request is not None) is due
    if request is not None:
        assert (request.stable, request.canary, request.window_s) == (S, C, 30.0)


def test_a_step_needs_a_passed_check_not_just_time() -> None:
    waited = run(at_step(), None, timedelta(minutes=2))
    assert to_json(waited.status)["currentStep"] == 0  # the pause is over but nothing was checked
    passed = run(at_step(), HEALTHY, timedelta(minutes=2))
    assert to_json(passed.status)["currentStep"] == 1
    assert to_json(passed.status)["analysis"]["passedChecks"] == 0  # counted afresh for the new step
    assert to_json(passed.status)["analysis"]["lastChecks"][-1]["verdict"] == "pass"


def test_a_clear_regression_rolls_back_at_the_first_check_with_the_values() -> None:
    out = run(at_step(), BAD, timedelta(seconds=30))
    assert out.rolled_back is not None
    reason, message = out.rolled_back
    assert reason == "AnalysisFailed"
    assert "ttft p95 2.50s > slo 0.80s over 1 check" in message
    assert "always-valid p<0.001" in message
    assert to_json(out.status)["failedRevision"] == C
    assert out.delete == [C]
    evidence = {e["test"]: e for e in to_json(out.status)["analysis"]["evidence"]}
    assert evidence["ttft p95 slo"]["checks"] == 1  # the evidence that decided stays visible


def test_evidence_accumulates_across_checks_and_steps_until_it_is_clear() -> None:
    """Each check of a canary ~30 % slower passes alone; the third, at the next step, rolls it back."""
    status = at_step()
    verdicts = []
    for seconds in (30, 60, 90):
        out = run(status, MILD, timedelta(seconds=seconds))
        status = to_json(out.status)
        verdicts.append((status["analysis"]["lastChecks"][-1]["verdict"], status.get("currentStep")))
        if out.rolled_back is not None:
            break
    # The second pass ends the first step's pause: the step advances and the evidence goes along.
    assert verdicts == [("pass", 0), ("pass", 1), ("fail", None)]
    assert out.rolled_back is not None
    reason, message = out.rolled_back
    assert reason == "AnalysisFailed"
    assert "ttft 30% slower than stable over 3 checks (> 20% allowed, always-valid p=" in message
    assert "n=360/3240" in message


def test_a_pass_never_resets_the_evidence() -> None:
    first = run(at_step(), HEALTHY, timedelta(seconds=30))
    second = run(at_step(analysis=to_json(first.status)["analysis"]), HEALTHY, timedelta(seconds=60))
    evidence = {e["test"]: e["checks"] for e in to_json(second.status)["analysis"]["evidence"]}
    assert evidence == {"ttft p95 slo": 2, "ttft regression": 2, "error rate slo": 2}


@pytest.mark.parametrize("check", [QUIET, DOWN], ids=["too-few-requests", "prometheus-down"])
def test_inconclusive_and_errors_never_pass_or_fail_until_the_deadline(check: CheckData) -> None:
    analysis: dict[str, Any] = {}
    for seconds in range(30, 181, 30):
        out = run(at_step(analysis=analysis), check, timedelta(seconds=seconds))
        assert out.rolled_back is None
        assert to_json(out.status)["currentStep"] == 0  # never promoted on missing evidence
        analysis = to_json(out.status)["analysis"]
    assert analysis["failedChecks"] == 0
    assert analysis["passedChecks"] == 0
    late = run(at_step(analysis=analysis), check, timedelta(minutes=3, seconds=30))
    assert late.rolled_back is not None
    assert late.rolled_back[0] == "AnalysisUnavailable"
    assert to_json(late.status)["history"][-1]["outcome"] == "Aborted"


def test_last_checks_are_bounded() -> None:
    analysis: dict[str, Any] = {}
    for seconds in range(30, 400, 30):
        analysis = to_json(
            run(
                at_step(analysis=analysis, started=timedelta(seconds=seconds - 30)),
                QUIET,
                timedelta(seconds=seconds),
            ).status
        ).get("analysis", analysis)
    assert len(analysis["lastChecks"]) == 5
