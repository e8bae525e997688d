"""`status.evaluations`: the last concluded evaluation of each canary revision, newest last, at most
eight, kept beside the gate (`status.evaluation`) in the same status write. Level-based: derived from
the gate in status, so writing the same status again (a restart) neither repeats nor loses an entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.status import EvaluationStatus, read_status, to_json
from nlpmodel_operator.api.units import format_time
from nlpmodel_operator.core.evaluation.gate import EvaluationVerdict, Requests
from nlpmodel_operator.core.evaluation.gating import (
    EVALUATIONS_KEPT,
    EvaluationKey,
    EvaluationOutcome,
    remembered,
)
from nlpmodel_operator.core.reconcile import Observation, decide
from nlpmodel_operator.core.records import ChildRef, RevisionState
from nlpmodel_operator.core.rollout import RolloutInput, RolloutOutcome, step_rollout

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
S, C, D = "5ab1e000", "ca4a2700", "d0d0d0d0"
SPEC: dict[str, Any] = {
    "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
    "scaling": {"minReplicas": 4, "maxReplicas": 4},
    "rollout": {
        "steps": [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "2m"}],
        "progressDeadline": "10m",
        "evaluation": {"dataset": {"configMap": "golden", "key": "cases.jsonl"}, "maxDrop": "2%"},
    },
}


def entry(canary: str, verdict: str = "pass", step: int = 0, at: int = 0) -> EvaluationStatus:
    return EvaluationStatus(
        canary_revision=canary,
        stable_revision=S,
        step=step,
        verdict=verdict,  # type: ignore[arg-type]
        requested_at=format_time(T0),
        at=format_time(T0 + timedelta(minutes=at)),
    )


def revisions_of(entries: list[EvaluationStatus]) -> list[tuple[str, str, int]]:
    return [(e.canary_revision, e.verdict, e.step) for e in entries]


EIGHT = [entry(f"r{i:07d}") for i in range(EVALUATIONS_KEPT)]


@pytest.mark.parametrize(
    ("before", "gate", "after"),
    [
        pytest.param([], entry(C), [(C, "pass", 0)], id="the first verdict is kept"),
        pytest.param(
            [entry(S)], entry(C, "fail"), [(S, "pass", 0), (C, "fail", 0)], id="a new revision goes last"
        ),
        pytest.param(
            [entry(C, "inconclusive"), entry(D)],
            entry(C, "pass", at=5),
            [(D, "pass", 0), (C, "pass", 0)],
            id="a re-evaluation replaces its revision's entry and is newest",
        ),
        pytest.param(
            [entry(C, "pass", step=0)],
            entry(C, "pass", step=1, at=3),
            [(C, "pass", 1)],
            id="everyStep: the later step's verdict replaces the earlier",
        ),
        pytest.param([entry(D)], entry(C, "pending"), [(D, "pass", 0)], id="pending is never recorded"),
        pytest.param([entry(D)], None, [(D, "pass", 0)], id="no gate leaves the list"),
        pytest.param([], entry(C, "error"), [(C, "error", 0)], id="an unreadable dataset is a verdict"),
        pytest.param(
            EIGHT,
            entry(C, "fail"),
            [*revisions_of(EIGHT[1:]), (C, "fail", 0)],
            id="at most eight: the oldest is dropped",
        ),
        pytest.param(
            EIGHT,
            entry(EIGHT[0].canary_revision, "fail", at=9),
            [*revisions_of(EIGHT[1:]), (EIGHT[0].canary_revision, "fail", 0)],
            id="eight, one replaced: none dropped",
        ),
        pytest.param(
            [entry(C), entry(D)],
            entry(C),
            [(C, "pass", 0), (D, "pass", 0)],
            id="the entry already kept leaves the list as it is",
        ),
    ],
)
def test_the_history_rule(
    before: list[EvaluationStatus], gate: EvaluationStatus | None, after: list[tuple[str, str, int]]
) -> None:
    assert revisions_of(remembered(before, gate)) == after


def test_recording_the_same_gate_twice_gives_the_same_list() -> None:
    once = remembered([entry(S), entry(D)], entry(C, "fail"))
    assert remembered(once, entry(C, "fail")) == once
    # ... also after the list went through the cluster (JSON, as a restart reads it back)
    read = read_status(to_json(read_status({"evaluations": [to_json(e) for e in once]}))).evaluations
    assert remembered(read, read[-1]) == read


# ------------------------------------------------------------------------ in the state machine


def verdict(result: str, canary_score: float) -> EvaluationVerdict:
    return EvaluationVerdict(
        result,  # type: ignore[arg-type]
        f"200 cases, canary {canary_score:.0%} vs stable 90%",
        Requests(200, 0, 0, (1000, 500), (1000, 400)),
        scored=200,
        stable_score=0.9,
        canary_score=canary_score,
        p_value=0.5 if result == "pass" else 0.001,
        failing_cases=("refund-12", "pii-3") if result == "fail" else (),
    )


def rev(name: str) -> RevisionState:
    return RevisionState(name, (ChildRef("apps/v1", "Deployment", f"m-{name}"),), True, "", 1, 1)


def step(
    status: dict[str, Any], canary: str, minutes: float, outcome: EvaluationOutcome | None = None
) -> RolloutOutcome:
    spec = NLPModelSpec.model_validate(SPEC)
    revisions = {S: rev(S), canary: rev(canary)}
    now = T0 + timedelta(minutes=minutes)
    return step_rollout(RolloutInput(spec, canary, status, revisions, None, now, None, outcome))


def test_a_verdict_is_written_with_the_gate_and_survives_the_next_canary() -> None:
    # canary C: asked (pending, not in the history), then passed
    asked = to_json(step({"stableRevision": S}, C, 0).status)
    assert asked["evaluation"]["verdict"] == "pending"
    assert "evaluations" not in asked
    passed = step(asked, C, 1, EvaluationOutcome(EvaluationKey(C, S, 0), verdict("pass", 0.9)))
    written = to_json(passed.status)
    assert written["evaluations"] == [written["evaluation"]]
    assert written["evaluations"][0]["verdict"] == "pass"
    # the template changes to D while C is at 10 %: C is superseded, D is evaluated and fails
    replaced = to_json(step(written, D, 2).status)
    assert (replaced["evaluation"]["canaryRevision"], replaced["evaluation"]["verdict"]) == (D, "pending")
    failed = step(replaced, D, 3, EvaluationOutcome(EvaluationKey(D, S, 0), verdict("fail", 0.7)))
    assert failed.rolled_back is not None
    history = to_json(failed.status)["evaluations"]
    assert [(e["canaryRevision"], e["verdict"]) for e in history] == [(C, "pass"), (D, "fail")]
    assert (history[0]["canaryScore"], history[1]["canaryScore"]) == (0.9, 0.7)
    assert history[1]["failingCases"] == ["refund-12", "pii-3"]
    assert (history[1]["pValue"], history[1]["scored"]) == (0.001, 200)
    assert (history[1]["canaryPromptTokens"], history[1]["canaryCompletionTokens"]) == (1000, 500)
    assert (history[1]["stablePromptTokens"], history[1]["stableCompletionTokens"]) == (1000, 400)
    assert history[1]["canaryTokens"] == 1500


def test_a_restart_that_writes_the_same_status_again_keeps_the_list() -> None:
    asked = to_json(step({"stableRevision": S}, C, 0).status)
    outcome = EvaluationOutcome(EvaluationKey(C, S, 0), verdict("fail", 0.7))
    first = to_json(step(asked, C, 1, outcome).status)
    # the same outcome handed over again (the status written, the operator killed before it forgot
    # the outcome), then reconciles without one: the list stays as it was written
    again = to_json(step(first, C, 1, outcome).status)
    later = to_json(step(again, C, 5).status)
    assert first["evaluations"] == again["evaluations"] == later["evaluations"]
    assert len(first["evaluations"]) == 1


def test_an_older_status_with_a_verdict_but_no_list_gets_its_entry() -> None:
    """Written by an operator before `evaluations` existed: the gate's verdict is its first entry."""
    promoted = {
        "stableRevision": C,
        "evaluation": to_json(entry(C, "pass")),
    }
    out = step_rollout(RolloutInput(NLPModelSpec.model_validate(SPEC), C, promoted, {C: rev(C)}, None, T0))
    assert revisions_of(out.status.evaluations) == [(C, "pass", 0)]


def test_an_invalid_spec_keeps_the_evaluations() -> None:
    kept = [to_json(entry(C, "fail")), to_json(entry(D))]
    status = {"stableRevision": S, "evaluations": kept}
    bad = {**SPEC, "quantization": {"method": "bitsandbytes-nf4"}}
    obs = Observation("chat", "ml", 2, bad, status, {S: rev(S)}, format_time(T0))
    written = to_json(decide(obs).status)
    spec_valid = next(c for c in written["conditions"] if c["type"] == "SpecValid")
    assert (spec_valid["status"], spec_valid["reason"]) == ("False", "InvalidSpec")
    assert written["evaluations"] == kept
