"""What a decision records before it acts (`core.reconcile.journal`): a consumed command or check is
recorded, and a step it advances to is recorded without its start, so that an operator killed before
the step's weight reached the route applies it on resuming and only then starts the step's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from decisions import applies

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.status import to_json
from nlpmodel_operator.api.units import format_time
from nlpmodel_operator.core.analysis.checks import CheckData
from nlpmodel_operator.core.analysis.judge import Histogram, RevisionSample
from nlpmodel_operator.core.reconcile import Decision, Observation, decide
from nlpmodel_operator.core.records import ChildRef, RevisionState
from nlpmodel_operator.core.resolve import resolve

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
STABLE = "5ab1e000"
BOUNDS = (0.1, 0.25, 0.5, 0.75, 1.0, 2.5, float("inf"))
FAST = (0.2, 0.5, 0.25, 0.05, 0.0, 0.0, 0.0)
SLOW = (0.0, 0.0, 0.1, 0.2, 0.3, 0.3, 0.1)
SPEC: dict[str, Any] = {
    "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
    "rollout": {
        "steps": [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "1m"}],
        "analysis": {"interval": "30s", "minRequests": 50},
        "slo": {"ttftP95": "800ms", "errorRate": "1%"},
    },
}


def sample(shares: tuple[float, ...], n: float) -> RevisionSample:
    cumulative, running = [], 0.0
    for share in shares:
        running += share * n
        cumulative.append(running)
    return RevisionSample(ttft=Histogram(BOUNDS, tuple(cumulative)), itl=None, e2e=None, requests=n, errors=0)


HEALTHY = CheckData(sample(FAST, 400), sample(FAST, 4000))
BAD = CheckData(sample(SLOW, 400), sample(FAST, 4000))


def canary_revision() -> str:
    resolved = resolve("chat", "ml", NLPModelSpec.model_validate(SPEC)).resolved
    assert resolved is not None
    return resolved.revision


def revisions(canary: str) -> dict[str, RevisionState]:
    isvc = "serving.kserve.io/v1beta1", "InferenceService"
    return {
        r: RevisionState(r, (ChildRef(*isvc, f"chat-{r}"),), True, "", 1, 1, serving=True)
        for r in (STABLE, canary)
    }


def observe(status: dict[str, Any], at: timedelta, check: CheckData | None) -> Observation:
    canary = canary_revision()
    return Observation("chat", "ml", 1, SPEC, status, revisions(canary), format_time(T0 + at), check=check)


def at_first_step(canary: str) -> dict[str, Any]:
    return {
        "phase": "Progressing",
        "observedGeneration": 1,
        "stableRevision": STABLE,
        "canaryRevision": canary,
        "canaryWeight": 10,
        "currentStep": 0,
        "stage": "Progressing",
        "canaryStartedAt": format_time(T0),
        "stepStartedAt": format_time(T0),
    }


def route_weights(decision: Decision) -> dict[str, int]:
    route = next(o for o in applies(decision) if o["kind"] == "HTTPRoute")
    return {ref["name"]: ref["weight"] for ref in route["spec"]["rules"][0]["backendRefs"]}


def test_a_step_advanced_on_a_check_is_recorded_without_its_start() -> None:
    canary = canary_revision()
    decision = decide(observe(at_first_step(canary), timedelta(minutes=2), HEALTHY))
    final = to_json(decision.status)
    assert (final["currentStep"], final["stepStartedAt"]) == (1, format_time(T0 + timedelta(minutes=2)))
    assert decision.journal is not None
    recorded = to_json(decision.journal)
    assert recorded["currentStep"] == 1  # the check is consumed: the step is passed
    assert "stepStartedAt" not in recorded  # ... but the next one has not started
    assert recorded["canaryWeight"] == 10  # nor reached the route
    assert recorded["analysis"] == final["analysis"]


def test_resuming_from_the_record_applies_the_weight_and_starts_the_step_then() -> None:
    canary = canary_revision()
    decision = decide(observe(at_first_step(canary), timedelta(minutes=2), HEALTHY))
    assert decision.journal is not None
    # Killed after the record, restarted 5 minutes later: the step's pause would long be over.
    resumed = decide(observe(to_json(decision.journal), timedelta(minutes=7), None))
    status = to_json(resumed.status)
    assert status["currentStep"] == 1
    assert status["stepStartedAt"] == format_time(T0 + timedelta(minutes=7))
    assert route_weights(resumed) == {f"chat-{STABLE}-predictor": 50, f"chat-{canary}-predictor": 50}
    # and a check due right then (over traffic at the old weight) does not promote it
    checked = decide(observe(to_json(resumed.status), timedelta(minutes=7, seconds=30), HEALTHY))
    assert to_json(checked.status)["currentStep"] == 1


def test_a_rollback_on_a_check_is_recorded_as_decided() -> None:
    canary = canary_revision()
    decision = decide(observe(at_first_step(canary), timedelta(seconds=30), BAD))
    assert decision.journal is not None
    assert to_json(decision.journal) == to_json(decision.status)
    assert to_json(decision.status)["phase"] == "RolledBack"


def test_nothing_is_recorded_first_without_a_command_or_a_check() -> None:
    canary = canary_revision()
    assert decide(observe(at_first_step(canary), timedelta(minutes=2), None)).journal is None
