"""`nlpctl status` text and the applicability of manual commands: pure functions, table-driven."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.cli.statusview import (
    EFFECTS,
    command_blocker,
    describe_state,
    format_ago,
    format_left,
    format_status,
    progress_bar,
    time_left,
)

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
SPEC: dict[str, Any] = {"rollout": {"steps": [{"weight": 10, "pause": "5m"}, {"weight": 50, "pause": "10m"}]}}
TO_100: dict[str, Any] = {
    "rollout": {"steps": [{"weight": 20, "pause": "1m"}, {"weight": 100, "pause": "2m"}]}
}


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def canary(step: int | None, started_s_ago: float | None = None, **extra: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": "Progressing",
        "stableRevision": "1a2b3c4d",
        "canaryRevision": "5e6f7a8b",
        "canaryWeight": 10,
    }
    if step is not None:
        status["currentStep"] = step
    if started_s_ago is not None:
        status["stepStartedAt"] = ago(started_s_ago)
    return {**status, **extra}


READY: dict[str, Any] = {"phase": "Ready", "stableRevision": "1a2b3c4d"}
ROLLED_BACK: dict[str, Any] = {
    "phase": "RolledBack",
    "stableRevision": "1a2b3c4d",
    "failedRevision": "9f8e7d6c",
}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-5, "0s"),
        (0.2, "1s"),  # a countdown rounds up: it says 0s only when the time is up
        (59, "59s"),
        (59.5, "1m00s"),
        (192, "3m12s"),
        (600, "10m00s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (3600 + 5 * 60 + 30, "1h05m"),
    ],
)
def test_format_left(seconds: float, text: str) -> None:
    assert format_left(seconds) == text


@pytest.mark.parametrize(
    ("then", "text"),
    [
        (None, ""),
        (NOW, "0s ago"),
        (NOW + timedelta(seconds=3), "0s ago"),  # a clock slightly ahead is not "in the future"
        (NOW - timedelta(seconds=42), "42s ago"),
        (NOW - timedelta(minutes=3, seconds=59), "3m ago"),
        (NOW - timedelta(hours=2, minutes=1), "2h ago"),
        (NOW - timedelta(days=5, hours=23), "5d ago"),
    ],
)
def test_format_ago(then: datetime | None, text: str) -> None:
    assert format_ago(then, NOW) == text


@pytest.mark.parametrize(
    ("status", "spec", "left"),
    [
        (canary(0, 108), SPEC, 192.0),  # 5m pause, 1m48s in
        (canary(1, 0), SPEC, 600.0),
        (canary(1, 900), SPEC, 0.0),
        (canary(1, 5000), SPEC, 0.0),  # overdue: never negative
        (canary(0, 30), {}, 270.0),  # no steps in the spec: the API's defaults (10% 5m, 50% 10m)
        (canary(2, 30), SPEC, None),  # promoting
        (canary(0, None), SPEC, None),  # not started
        (canary(None, 30), SPEC, None),  # no step
        (canary(0, None, stepStartedAt="yesterday"), SPEC, None),
        (canary(0, 30, canaryRevision=None), SPEC, None),
        (canary(0, 30), {"rollout": {"steps": [{"weight": 10, "pause": "soon"}]}}, None),
        (canary(0, 30), {"rollout": {"steps": [{"weight": 10}]}}, 0.0),  # pause defaults to 0s
    ],
)
def test_time_left(status: dict[str, Any], spec: dict[str, Any], left: float | None) -> None:
    assert time_left(status, spec, NOW) == left


@pytest.mark.parametrize(
    ("status", "spec", "bar"),
    [
        (canary(0, 108), SPEC, "[10%] ← 3m12s left  [50%]  [100%]"),
        (canary(1, 408), SPEC, "[10%] ✓  [50%] ← 3m12s left  [100%]"),
        (canary(1, 3600), SPEC, "[10%] ✓  [50%] ← 0s left  [100%]"),
        (canary(2, 10), SPEC, "[10%] ✓  [50%] ✓  [100%] ← promoting"),
        (canary(1, 408, paused=True), SPEC, "[10%] ✓  [50%] ← paused  [100%]"),
        (canary(0, None), SPEC, "[10%] ← not started  [50%]  [100%]"),
        (canary(None), SPEC, "[10%]  [50%]  [100%]"),
        (canary(0, 0), TO_100, "[20%] ← 1m00s left  [100%]"),  # a last step at 100% is not repeated
        (canary(2, 0), TO_100, "[20%] ✓  [100%] ✓  ← promoting"),
        (canary(0, 60), {}, "[10%] ← 4m00s left  [50%]  [100%]"),
    ],
)
def test_progress_bar(status: dict[str, Any], spec: dict[str, Any], bar: str) -> None:
    assert progress_bar(status, spec, NOW) == bar


@pytest.mark.parametrize(
    ("status", "text"),
    [
        ({}, "no status yet: the operator has not reconciled it"),
        ({"phase": "Pending"}, "phase Pending"),
        (READY, "phase Ready, stable 1a2b3c4d"),
        (canary(0, 1, canaryWeight=10), "phase Progressing, stable 1a2b3c4d, canary 5e6f7a8b at 10%"),
        (
            canary(1, 1, canaryWeight=50, paused=True),
            "phase Progressing, stable 1a2b3c4d, canary 5e6f7a8b at 50%, paused",
        ),
        (ROLLED_BACK, "phase RolledBack, stable 1a2b3c4d, failed 9f8e7d6c"),
    ],
)
def test_describe_state(status: dict[str, Any], text: str) -> None:
    assert describe_state(status) == text


PAUSED = canary(1, 10, paused=True)
PROMOTING = canary(2, 10)

# (command, status, None when it applies, else the reason nlpctl gives)
APPLICABILITY: list[tuple[str, dict[str, Any], str | None]] = [
    ("promote", canary(0, 10), None),
    ("promote", PAUSED, None),
    ("promote", READY, "no canary in progress (phase Ready, stable 1a2b3c4d)"),
    ("promote", {}, "no canary in progress (no status yet: the operator has not reconciled it)"),
    (
        "promote",
        PROMOTING,
        "the canary is already being promoted (phase Progressing, stable 1a2b3c4d, canary 5e6f7a8b at 10%)",
    ),
    ("abort", canary(0, 10), None),
    ("abort", PAUSED, None),
    ("abort", PROMOTING, None),
    ("abort", ROLLED_BACK, "no canary in progress (phase RolledBack, stable 1a2b3c4d, failed 9f8e7d6c)"),
    ("pause", canary(0, 10), None),
    ("pause", canary(0, None), None),  # not started yet: it holds once it starts
    (
        "pause",
        PAUSED,
        "the canary is already paused (phase Progressing, stable 1a2b3c4d, canary 5e6f7a8b at 10%, paused); "
        "`nlpctl resume` continues it",
    ),
    (
        "pause",
        PROMOTING,
        "the canary is already being promoted (phase Progressing, stable 1a2b3c4d, canary 5e6f7a8b at 10%); "
        "only `nlpctl abort` stops that",
    ),
    ("pause", READY, "no canary in progress (phase Ready, stable 1a2b3c4d)"),
    ("resume", PAUSED, None),
    ("resume", canary(0, 10), "not paused (phase Progressing, stable 1a2b3c4d, canary 5e6f7a8b at 10%)"),
    ("resume", READY, "not paused (phase Ready, stable 1a2b3c4d)"),
    ("retry", ROLLED_BACK, None),
    ("retry", {**canary(0, 10), "failedRevision": "9f8e7d6c"}, None),  # a newer canary runs meanwhile
    ("retry", READY, "no failed revision to retry (phase Ready, stable 1a2b3c4d)"),
    (
        "retry",
        canary(0, 10),
        "no failed revision to retry (phase Progressing, stable 1a2b3c4d, canary 5e6f7a8b at 10%)",
    ),
    ("restart", READY, "unknown command 'restart'"),
]


@pytest.mark.parametrize(("command", "status", "blocker"), APPLICABILITY)
def test_command_blocker(command: str, status: dict[str, Any], blocker: str | None) -> None:
    assert command_blocker(command, status, SPEC) == blocker


def test_every_command_is_covered_both_ways() -> None:
    assert set(EFFECTS) == set(c.COMMANDS)
    for command in c.COMMANDS:
        outcomes = {blocker is None for cmd, _, blocker in APPLICABILITY if cmd == command}
        assert outcomes == {True, False}, command


FULL = canary(
    1,
    408,
    canaryWeight=50,
    canaryStartedAt=ago(1200),
    endpoint="http://chat.ml.svc.cluster.local",
    conditions=[
        {
            "type": "Ready",
            "status": "True",
            "reason": "ChildrenReady",
            "message": "stable serves",
            "lastTransitionTime": ago(7300),
        },
        {
            "type": "Progressing",
            "status": "True",
            "reason": "CanaryProgressing",
            "message": "step 2/2 at 50%",
        },
        {"type": "RolledBack", "status": "False"},
    ],
    history=[
        {"revision": "0000aaaa", "outcome": "Promoted", "reason": "all steps passed", "at": ago(2 * 86400)},
        {
            "revision": "9f8e7d6c",
            "outcome": "RolledBack",
            "reason": "ttft p95 850ms > 500ms",
            "at": ago(3600),
        },
        {"revision": "77777777", "outcome": "Aborted", "at": ago(30)},
    ],
)

VIEWS: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], str]] = [
    (
        "canary at step 2 with conditions and history (newest first)",
        FULL,
        SPEC,
        {"name": "chat", "namespace": "ml"},
        """\
nlpmodel   ml/chat
phase      Progressing
stable     1a2b3c4d
routing    gateway-api on kserve: HTTPRoute weights across revisions' Services
canary     5e6f7a8b at 50%, step 2/2, started 20m ago
steps      [10%] ✓  [50%] ← 3m12s left  [100%]
time left  3m12s of 10m in step 2
paused     no
endpoint   http://chat.ml.svc.cluster.local

conditions
  TYPE         STATUS  REASON             SINCE   MESSAGE
  Ready        True    ChildrenReady      2h ago  stable serves
  Progressing  True    CanaryProgressing  -       step 2/2 at 50%
  RolledBack   False   -                  -

history (newest first)
  REVISION  OUTCOME     WHEN     REASON
  77777777  Aborted     30s ago
  9f8e7d6c  RolledBack  1h ago   ttft p95 850ms > 500ms
  0000aaaa  Promoted    2d ago   all steps passed
""",
    ),
    (
        "paused, with a pending command and an effective weight",
        canary(0, 30, paused=True, effectiveCanaryWeight=8),
        SPEC,
        {"pending": "resume"},
        """\
phase      Progressing
stable     1a2b3c4d
routing    gateway-api on kserve: HTTPRoute weights across revisions' Services
canary     5e6f7a8b at 10% (effective 8%), step 1/2
steps      [10%] ← paused  [50%]  [100%]
time left  paused (`nlpctl resume` continues, `nlpctl promote` or `abort` ends)
paused     yes
pending    resume (requested; the operator has not acted on it yet)
""",
    ),
    (
        "promoting",
        canary(2, 10, canaryWeight=50),
        SPEC,
        {},
        """\
phase      Progressing
stable     1a2b3c4d
routing    gateway-api on kserve: HTTPRoute weights across revisions' Services
canary     5e6f7a8b at 50%, promoting
steps      [10%] ✓  [50%] ✓  [100%] ← promoting
time left  none: promoting
paused     no
""",
    ),
    (
        "waiting for the canary to become ready",
        canary(0, None, canaryWeight=0),
        SPEC,
        {},
        """\
phase      Progressing
stable     1a2b3c4d
routing    gateway-api on kserve: HTTPRoute weights across revisions' Services
canary     5e6f7a8b at 0%, step 1/2
steps      [10%] ← not started  [50%]  [100%]
time left  not started: the canary is not ready yet
paused     no
""",
    ),
    (
        "direct strategy",
        canary(2, 10, canaryWeight=0),
        {"rollout": {"strategy": "direct", "steps": SPEC["rollout"]["steps"]}},
        {},
        """\
phase      Progressing
stable     1a2b3c4d
routing    gateway-api on kserve: HTTPRoute weights across revisions' Services
canary     5e6f7a8b at 0%, promoting
steps      none (strategy direct)
time left  none: promoting
paused     no
""",
    ),
    (
        "rolled back",
        ROLLED_BACK,
        SPEC,
        {"name": "chat", "namespace": "ml"},
        """\
nlpmodel  ml/chat
phase     RolledBack
stable    1a2b3c4d
routing   gateway-api on kserve: HTTPRoute weights across revisions' Services
canary    none
failed    9f8e7d6c (rolled back; `nlpctl retry` rolls it out again)
""",
    ),
    (
        "inference-pool router with an endpoint picker",
        ROLLED_BACK,
        {
            **SPEC,
            "serving": {
                "platform": "raw",
                "router": "inference-pool",
                "endpointPicker": {"name": "epp", "port": 9002},
            },
        },
        {},
        """\
phase    RolledBack
serving  raw, router inference-pool
stable   1a2b3c4d
routing  inference-pool on raw: HTTPRoute weights across revisions' InferencePools, endpoint picker epp:9002 (FailClose)
canary   none
failed   9f8e7d6c (rolled back; `nlpctl retry` rolls it out again)
""",
    ),
    (
        "an invalid serving",
        {},
        {"serving": {"router": "nope"}},
        {},
        """\
phase    unknown (no status yet: the operator has not reconciled it)
serving  kserve, router nope
stable   none
routing  unknown (spec.serving is invalid)
canary   none
""",
    ),
    (
        "no status yet",
        {},
        {},
        {"name": "chat"},
        """\
nlpmodel  chat
phase     unknown (no status yet: the operator has not reconciled it)
stable    none
routing   gateway-api on kserve: HTTPRoute weights across revisions' Services
canary    none
""",
    ),
]


@pytest.mark.parametrize(
    ("status", "spec", "kwargs", "text"), [v[1:] for v in VIEWS], ids=[v[0] for v in VIEWS]
)
def test_format_status(
    status: dict[str, Any], spec: dict[str, Any], kwargs: dict[str, Any], text: str
) -> None:
    assert format_status(status, spec, NOW, **kwargs) == text


def test_format_status_tolerates_junk() -> None:
    """A status from another version (or hand-edited) never makes the view crash."""
    junk = {
        "phase": "Progressing",
        "canaryRevision": "5e6f7a8b",
        "currentStep": "two",
        "stepStartedAt": 12,
        "conditions": ["Ready", {"type": "Ready"}],
        "history": [None, {"revision": "r", "at": "not a time"}],
    }
    text = format_status(junk, {"rollout": {"steps": "many"}}, NOW)
    assert "canary     5e6f7a8b at ?%, step unknown" in text
    assert text.endswith("  REVISION  OUTCOME  WHEN        REASON\n  r                  not a time\n")


def test_each_stopped_revision_is_shown_once() -> None:
    status = {
        "phase": "Ready",
        "stableRevision": "1a2b3c4d",
        "stoppedRevisions": [
            {"revision": "0f0f0f0f", "stoppedAt": (NOW - timedelta(minutes=3)).isoformat()},
            {"revision": "0e0e0e0e", "stoppedAt": (NOW - timedelta(minutes=9)).isoformat()},
        ],
    }
    text = format_status(status, {}, NOW)
    stopped = [line for line in text.splitlines() if line.startswith("stopped")]
    assert [line.split()[1] for line in stopped] == ["0f0f0f0f", "0e0e0e0e"]


@pytest.mark.parametrize(
    ("evaluation", "line"),
    [
        (None, None),
        (
            {"verdict": "pending", "canaryRevision": "c", "stableRevision": "s", "step": 0},
            "pending (c vs s, before traffic): running",
        ),
        (
            {
                "verdict": "fail",
                "canaryRevision": "c",
                "stableRevision": "s",
                "step": 1,
                "canaryScore": 0.8,
                "stableScore": 0.9,
                "scored": 200,
                "message": "exact 80% vs stable 90%; worst cases: refund-12",
            },
            "fail (c vs s, before step 2): canary 80.0% vs stable 90.0% on 200 cases; "
            "exact 80% vs stable 90%; worst cases: refund-12",
        ),
        (
            {"verdict": "inconclusive", "canaryScore": "junk", "message": "80 of 80 canary requests failed"},
            "inconclusive (? vs ?, before traffic); 80 of 80 canary requests failed",
        ),
    ],
)
def test_the_evaluation_row(evaluation: dict[str, Any] | None, line: str | None) -> None:
    text = format_status({"phase": "Progressing", "evaluation": evaluation}, {}, NOW)
    rows = [row for row in text.splitlines() if row.startswith("evaluation")]
    assert rows == ([] if line is None else [f"evaluation  {line}"])


def test_each_canary_revisions_last_evaluation_is_one_line_newest_first() -> None:
    status = {
        "phase": "RolledBack",
        "stableRevision": "1a2b3c4d",
        "evaluations": [
            {
                "canaryRevision": "1a2b3c4d",
                "stableRevision": "0f0f0f0f",
                "verdict": "pass",
                "canaryScore": 0.9,
                "stableScore": 0.895,
                "scored": 200,
                "pValue": 0.5,
                "at": ago(3600),
            },
            {
                "canaryRevision": "5e6f7a8b",
                "stableRevision": "1a2b3c4d",
                "verdict": "fail",
                "canaryScore": 0.8,
                "stableScore": 0.9,
                "scored": 200,
                "pValue": 0.00123,
                "failingCases": ["refund-12", "pii-3"],
                "at": ago(120),
            },
            {"canaryRevision": "9c9c9c9c", "verdict": "error", "canaryScore": "junk"},
            "not an entry",
        ],
    }
    lines = format_status(status, {}, NOW).splitlines()
    start = lines.index("evaluations (newest first)")
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines[start + 1 : start + 5]]
    assert cells == [
        ["REVISION", "VERDICT", "CANARY", "STABLE", "N", "P", "WHEN", "WORST CASES"],
        ["9c9c9c9c", "error", "-", "- (?)", "0", "-", "-", "-"],
        ["5e6f7a8b", "fail", "80.0%", "90.0% (1a2b3c4d)", "200", "0.0012", "2m ago", "refund-12, pii-3"],
        ["1a2b3c4d", "pass", "90.0%", "89.5% (0f0f0f0f)", "200", "0.5", "1h ago", "-"],
    ]


def test_no_evaluations_no_table() -> None:
    assert "evaluations" not in format_status({"phase": "Ready", "evaluations": []}, {}, NOW)


def test_format_status_shows_each_revisions_tokens_and_cost() -> None:
    status = {
        "phase": "Progressing",
        "stableRevision": "aaaa1111",
        "canaryRevision": "bbbb2222",
        "cost": {
            "currency": "USD",
            "revisions": [
                {
                    "revision": "aaaa1111",
                    "gpusPerReplica": 1,
                    "replicas": 9,
                    "replicaHourCost": 4.0,
                    "tokensPerSecond": 9000.0,
                    "promptTokensPerRequest": 400.0,
                    "generationTokensPerRequest": 100.0,
                    "prefixCacheHitRatio": 0.5,
                    "costPerMillionTokens": 1.111,
                    "costPerRequest": 0.0005556,
                },
                {"revision": "bbbb2222", "gpusPerReplica": 2, "replicas": 1, "replicaHourCost": 8.0},
            ],
        },
    }
    text = format_status(status, {}, NOW)
    assert "tokens and cost, last analysis window (USD)" in text
    stable = next(line for line in text.splitlines() if line.strip().startswith("aaaa1111"))
    assert stable.split()[1:] == [
        "(stable)",
        "9",
        "x",
        "1",
        "9000",
        "400/100",
        "0.5",
        "4",
        "1.111",
        "0.0005556",
    ]
    canary = next(line for line in text.splitlines() if line.strip().startswith("bbbb2222"))
    assert canary.split()[1:] == ["(canary)", "1", "x", "2", "-", "-/-", "-", "8", "-", "-"]
