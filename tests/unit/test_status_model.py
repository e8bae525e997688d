"""The typed status: read once and never failing on what an older (or broken) writer left, the stage of a
rollout stored or derived, and the one rule of which manual command applies when."""

from __future__ import annotations

from typing import Any

import pytest

from nlpmodel_operator.api.constants import COMMANDS
from nlpmodel_operator.api.status import RolloutStage, read_status, to_json
from nlpmodel_operator.core.commands import refusal

WRITTEN: dict[str, Any] = {
    "phase": "Progressing",
    "observedGeneration": 3,
    "stableRevision": "5ab1e000",
    "canaryRevision": "ca4a2700",
    "canaryWeight": 10,
    "currentStep": 0,
    "stage": "Progressing",
    "stepStartedAt": "2026-11-26T10:00:00Z",
    "canaryStartedAt": "2026-11-26T09:59:00Z",
    "analysis": {"passedChecks": 0},
    "history": [{"revision": "0e11e000", "outcome": "Promoted", "reason": "all steps passed", "at": "x"}],
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "ChildrenReady",
            "message": "revision 5ab1e000 is ready",
            "lastTransitionTime": "2026-11-26T09:00:00Z",
            "observedGeneration": 3,
        }
    ],
}


def test_a_status_read_is_written_back_unchanged() -> None:
    assert to_json(read_status(WRITTEN)) == WRITTEN


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        pytest.param(None, {}, id="no-status"),
        pytest.param("garbage", {}, id="not-an-object"),
        pytest.param(
            {**WRITTEN, "currentStep": "two"},
            {k: v for k, v in WRITTEN.items() if k != "currentStep"},
            id="bad-field",
        ),
        pytest.param({**WRITTEN, "retired": True}, WRITTEN, id="unknown-field"),
        pytest.param(
            {**WRITTEN, "stage": "Exploding"},
            {k: v for k, v in WRITTEN.items() if k != "stage"},
            id="bad-stage",
        ),
        pytest.param(
            {**WRITTEN, "conditions": [{"type": "Ready"}, *WRITTEN["conditions"]]},
            WRITTEN,
            id="bad-condition-entry",
        ),
        pytest.param(
            {**WRITTEN, "history": [{"outcome": "Exploded"}, *WRITTEN["history"]]},
            WRITTEN,
            id="bad-history-entry",
        ),
    ],
)
def test_a_bad_status_keeps_what_is_valid_in_it(raw: object, kept: dict[str, Any]) -> None:
    assert to_json(read_status(raw)) == kept


@pytest.mark.parametrize(
    ("status", "stage"),
    [
        pytest.param({"stableRevision": "a"}, None, id="no-canary"),
        pytest.param({"canaryRevision": "c", "currentStep": 1}, "Progressing", id="old-at-a-step"),
        pytest.param({"canaryRevision": "c", "currentStep": 1, "paused": True}, "Paused", id="old-paused"),
        pytest.param({"canaryRevision": "c", "currentStep": 2}, "Promoting", id="old-promoting"),
        pytest.param({"canaryRevision": "c"}, "Progressing", id="old-no-step-yet"),
        pytest.param(
            {"canaryRevision": "c", "currentStep": 2, "stage": "Promoting"}, "Promoting", id="stored"
        ),
        pytest.param(
            {"canaryRevision": "c", "currentStep": 1, "stage": "Paused"}, "Paused", id="stored-paused"
        ),
    ],
)
def test_the_stage_is_read_or_derived_once_for_an_older_status(
    status: dict[str, Any], stage: RolloutStage | None
) -> None:
    assert read_status(status).rollout_stage(steps=2) == stage


# (command, canary, stage, failed) → whether it applies: the rule nlpctl and the operator share.
RULE: list[tuple[str, str | None, RolloutStage | None, str | None, bool]] = [
    ("promote", "c", "Progressing", None, True),
    ("promote", "c", "Paused", None, True),
    ("promote", "c", "Promoting", None, False),
    ("promote", None, None, None, False),
    ("abort", "c", "Progressing", None, True),
    ("abort", "c", "Paused", None, True),
    ("abort", "c", "Promoting", None, True),
    ("abort", None, None, "f", False),
    ("pause", "c", "Progressing", None, True),
    ("pause", "c", "Paused", None, False),
    ("pause", "c", "Promoting", None, False),
    ("pause", None, None, None, False),
    ("resume", "c", "Paused", None, True),
    ("resume", "c", "Progressing", None, False),
    ("resume", None, None, None, False),
    ("retry", None, None, "f", True),
    ("retry", "c", "Progressing", "f", True),
    ("retry", None, None, None, False),
    ("restart", "c", "Progressing", "f", False),
]


@pytest.mark.parametrize(("command", "canary", "stage", "failed", "applies"), RULE)
def test_which_command_applies_when(
    command: str, canary: str | None, stage: RolloutStage | None, failed: str | None, applies: bool
) -> None:
    assert (refusal(command, canary=canary, stage=stage, failed=failed) is None) is applies


def test_the_rule_covers_every_command_both_ways() -> None:
    for command in COMMANDS:
        assert {applies for cmd, *_, applies in RULE if cmd == command} == {True, False}, command
