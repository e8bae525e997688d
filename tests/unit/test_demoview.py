"""The demo's view: which events two snapshots of a model make, and the live panel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nlpmodel_harness.demoview import (
    Snapshot,
    evaluation_line,
    events,
    panel,
    ttft_pair,
    verdict_marks,
    weight_bar,
)

SPEC: dict[str, Any] = {
    "rollout": {
        "steps": [{"weight": 10, "pause": "10s"}, {"weight": 50, "pause": "10s"}],
        "analysis": {"interval": "5s", "failureThreshold": 2},
    }
}
NOW = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)


def snap(status: dict[str, Any], ttft: dict[str, float] | None = None) -> Snapshot:
    return Snapshot(12.0, status, SPEC, ttft or {})


def check(at: str, verdict: str, summary: str = "") -> dict[str, str]:
    return {"at": at, "verdict": verdict, "summary": summary}


CANARY_AT_10: dict[str, Any] = {
    "phase": "Progressing",
    "stableRevision": "aaaa1111",
    "canaryRevision": "bbbb2222",
    "canaryWeight": 10,
    "currentStep": 0,
    "stepStartedAt": "2026-01-01T12:00:25Z",
    "analysis": {"failedChecks": 0, "lastChecks": []},
}


def test_a_new_canary_and_its_weight_are_events() -> None:
    before = snap({"phase": "Ready", "stableRevision": "aaaa1111"})
    lines = events(before, snap(CANARY_AT_10))
    assert lines == [
        "canary bbbb2222 created beside stable aaaa1111 (no traffic until it is ready)",
        "canary bbbb2222 weight 10% (step 1)",
        "phase Ready -> Progressing",
    ]


def test_only_new_checks_are_shown_with_the_ttft_of_both_revisions() -> None:
    one = {
        **CANARY_AT_10,
        "analysis": {"failedChecks": 1, "lastChecks": [check("t1", "fail", "ttft slower")]},
    }
    two = {
        **CANARY_AT_10,
        "analysis": {
            "failedChecks": 2,
            "lastChecks": [check("t1", "fail", "ttft slower"), check("t2", "fail", "x")],
        },
    }
    lines = events(snap(one), snap(two, {"aaaa1111": 0.6, "bbbb2222": 1.08}))
    assert lines == [
        "check FAIL         ttft p95 stable 0.60s, canary 1.08s (+80%) [2/2 failed in a row]\n    x"
    ]


def test_the_rollback_carries_the_reason_and_message_of_the_condition() -> None:
    rolled = {
        "phase": "RolledBack",
        "stableRevision": "aaaa1111",
        "failedRevision": "bbbb2222",
        "history": [
            {"revision": "bbbb2222", "outcome": "RolledBack", "reason": "AnalysisFailed", "at": "t3"}
        ],
        "conditions": [
            {
                "type": "RolledBack",
                "status": "True",
                "reason": "AnalysisFailed",
                "message": "ttft is 80% slower",
            }
        ],
    }
    lines = events(snap(CANARY_AT_10), snap(rolled))
    assert lines == [
        "ROLLED BACK bbbb2222 (RolledBack): traffic back to stable aaaa1111\n"
        "    reason AnalysisFailed: ttft is 80% slower",
        "phase Progressing -> RolledBack",
    ]


def test_a_promotion_is_one_event_not_also_a_stable_change() -> None:
    promoted = {
        "phase": "Ready",
        "stableRevision": "bbbb2222",
        "history": [{"revision": "bbbb2222", "outcome": "Promoted", "at": "t9"}],
    }
    lines = events(snap(CANARY_AT_10), snap(promoted))
    assert lines == [
        "PROMOTED bbbb2222: it is the stable revision now, with 100% of the traffic",
        "phase Progressing -> Ready",
    ]


def test_nothing_changed_nothing_shown() -> None:
    assert events(snap(CANARY_AT_10), snap(CANARY_AT_10, {"aaaa1111": 0.5})) == []


def test_ttft_pair_without_data_says_so() -> None:
    assert ttft_pair(snap(CANARY_AT_10), "aaaa1111", "bbbb2222") == "ttft p95 stable n/a, canary n/a"


def test_panel_shows_weight_steps_and_verdicts() -> None:
    status = {
        **CANARY_AT_10,
        "analysis": {"failedChecks": 1, "lastChecks": [check("a", "error"), check("b", "fail")]},
    }
    lines = panel(snap(status, {"aaaa1111": 0.6, "bbbb2222": 1.1}), "demo/chat", NOW)
    text = "\n".join(lines)
    assert "phase Progressing" in lines[0]
    assert "stable  aaaa1111  ttft p95  0.60s" in text
    assert "canary  bbbb2222  ttft p95  1.10s" in text
    assert weight_bar(10) in text
    assert "[10%] ← 5s left  [50%]  [100%]" in text
    assert "checks  ! ✗" in text


def test_weight_bar_and_marks() -> None:
    assert weight_bar(50) == "[##########..........]  50%"
    assert weight_bar(None) == "[....................]   0%"
    assert verdict_marks({}) == "none yet"


EVALUATING: dict[str, Any] = {
    **CANARY_AT_10,
    "canaryWeight": 0,
    "evaluation": {
        "canaryRevision": "bbbb2222",
        "stableRevision": "aaaa1111",
        "verdict": "pending",
        "requestedAt": "t1",
    },
}


def test_an_evaluation_is_an_event_when_asked_for_and_when_it_decides() -> None:
    assert events(snap(CANARY_AT_10), snap(EVALUATING)) == [
        "evaluation PENDING canary bbbb2222: the dataset goes to the stable's and the canary's own "
        "Services (no traffic meanwhile)",
        "canary bbbb2222 weight 0% (step 1)",
    ]
    failed = {
        **EVALUATING,
        "evaluation": {
            **EVALUATING["evaluation"],
            "verdict": "fail",
            "at": "t2",
            "scored": 40,
            "canaryScore": 0.725,
            "stableScore": 1.0,
            "pValue": 0.0011,
            "failingCases": ["order-1006", "order-1008"],
            "message": "evaluation failed: exact ...; worst cases: order-1006, order-1008",
        },
    }
    assert events(snap(EVALUATING), snap(failed)) == [
        "evaluation FAIL    canary bbbb2222 72% vs stable 100% on 40 cases (p=0.0011); "
        "failing: order-1006, order-1008"
    ]
    assert events(snap(failed), snap(failed)) == []


def test_an_inconclusive_evaluation_without_failing_cases_says_why() -> None:
    held = {"verdict": "inconclusive", "canaryRevision": "bbbb2222", "message": "canary requests failed"}
    assert evaluation_line(held) == (
        "evaluation INCONCLUSIVE canary bbbb2222 n/a vs stable n/a on 0 cases\n    canary requests failed"
    )


def test_panel_shows_the_canarys_evaluation() -> None:
    assert not any("eval " in line for line in panel(snap(CANARY_AT_10), "demo/chat", NOW))
    lines = panel(snap(EVALUATING), "demo/chat", NOW)
    assert "  eval    pending   the dataset's cases at the stable's and the canary's Services" in lines
    assert weight_bar(0) in "\n".join(lines)
    passed = {
        **EVALUATING,
        "evaluation": {
            **EVALUATING["evaluation"],
            "verdict": "pass",
            "scored": 40,
            "canaryScore": 0.975,
            "stableScore": 1.0,
        },
    }
    assert "  eval    pass   canary 98% vs stable 100% on 40 cases" in panel(snap(passed), "demo/chat", NOW)
