"""`nlpctl wait`: when an outcome is reached, can no longer come, or may still come."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from nlpmodel_operator.api.constants import ConditionType, Phase, Reason
from nlpmodel_operator.cli.control import EXIT_CLUSTER, EXIT_NOT_FOUND, CtlError
from nlpmodel_operator.cli.wait import verdict, wait_for

ROLLED_BACK = {
    "type": ConditionType.ROLLED_BACK,
    "status": "True",
    "reason": Reason.ANALYSIS_FAILED,
    "message": "ttftP95 1.9s > 800ms",
}
READY = {"type": ConditionType.READY, "status": "True", "reason": Reason.CHILDREN_READY, "message": ""}
NOT_READY = {**READY, "status": "False", "reason": Reason.CHILDREN_NOT_READY}


def model(generation: int = 3, observed: int | None = 3, **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "chat", "generation": generation}}
    if observed is not None or status:
        body["status"] = {"observedGeneration": observed, **status}
    return body


PROMOTED = model(phase=Phase.READY, stableRevision="4d2e8b10", conditions=[READY])
CANARY = model(
    phase=Phase.PROGRESSING, stableRevision="1a2b3c4d", canaryRevision="4d2e8b10", conditions=[READY]
)
ROLLBACK = model(
    phase=Phase.ROLLED_BACK,
    stableRevision="1a2b3c4d",
    failedRevision="4d2e8b10",
    conditions=[READY, ROLLED_BACK],
)
FAILED = model(
    phase=Phase.FAILED, conditions=[{**NOT_READY, "reason": Reason.DOES_NOT_FIT, "message": "too big"}]
)
PENDING = model(phase=Phase.PENDING, conditions=[NOT_READY])
STALE = model(generation=4, observed=3, phase=Phase.READY, stableRevision="1a2b3c4d", conditions=[READY])
UNSEEN = model(observed=None)

TABLE = [
    ("promoted", PROMOTED, "met"),
    ("promoted", CANARY, "pending"),
    ("promoted", ROLLBACK, "never"),
    ("promoted", FAILED, "never"),
    ("promoted", PENDING, "pending"),
    ("promoted", STALE, "pending"),
    ("promoted", UNSEEN, "pending"),
    ("ready", PROMOTED, "met"),
    ("ready", CANARY, "met"),  # the stable revision serves during a canary
    ("ready", PENDING, "pending"),
    ("ready", ROLLBACK, "never"),
    ("ready", STALE, "pending"),
    ("rolledback", ROLLBACK, "met"),
    ("rolledback", CANARY, "pending"),
    ("rolledback", PROMOTED, "never"),
    ("rolledback", FAILED, "never"),
    ("rolledback", STALE, "pending"),
]


@pytest.mark.parametrize(("outcome", "body", "state"), TABLE)
def test_verdict(outcome: str, body: Mapping[str, Any], state: str) -> None:
    assert verdict(body, outcome).state == state


def test_a_rollback_reports_its_reason_and_revision() -> None:
    message = verdict(ROLLBACK, "promoted").message
    assert message == "rolled back (revision 4d2e8b10): AnalysisFailed: ttftP95 1.9s > 800ms"


def test_unknown_outcome() -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        verdict(PROMOTED, "deployed")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_polls_until_settled_and_retries_cluster_blips() -> None:
    answers: list[Any] = [CANARY, CtlError("unreachable", EXIT_CLUSTER), CANARY, PROMOTED]
    clock = FakeClock()

    def fetch() -> Mapping[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    result = wait_for(fetch, "promoted", 60, interval_s=2, clock=clock, sleep=clock.sleep)
    assert result.state == "met"
    assert answers == []


def test_wait_gives_up_at_the_timeout_with_the_last_state() -> None:
    clock = FakeClock()
    result = wait_for(lambda: CANARY, "promoted", 10, interval_s=3, clock=clock, sleep=clock.sleep)
    assert result.state == "pending"
    assert "canary 4d2e8b10" in result.message
    assert clock.now == 10


def test_other_errors_end_the_wait() -> None:
    def gone() -> Mapping[str, Any]:
        raise CtlError("nlpmodel chat not found", EXIT_NOT_FOUND)

    with pytest.raises(CtlError):
        wait_for(gone, "ready", 10, clock=FakeClock(), sleep=lambda _: None)
