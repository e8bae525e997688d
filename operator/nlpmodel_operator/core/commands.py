"""Which manual command applies in which rollout state (pure): the one rule `nlpctl` checks before it
records a command and the rollout state machine checks before it acts on one.

promote, abort, pause: a canary is in progress; promote and pause not while it is being promoted,
pause not when it is paused already. resume: the rollout is paused. retry: a revision was rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass

from nlpmodel_operator.api.status import RolloutStage

__all__ = ["Refusal", "refusal"]


@dataclass(frozen=True)
class Refusal:
    """Why a command does not apply: `why` describes the state, `hint` what to do instead (may be "")."""

    why: str
    hint: str = ""


def refusal(
    command: str, *, canary: str | None, stage: RolloutStage | None, failed: str | None
) -> Refusal | None:
    """None when `command` applies to a rollout with this canary, stage and failed revision."""
    if command in {"promote", "abort", "pause"}:
        if canary is None:
            return Refusal("no canary in progress")
        if command == "promote" and stage == "Promoting":
            return Refusal("the canary is already being promoted")
        if command == "pause" and stage == "Promoting":
            return Refusal("the canary is already being promoted", "only `nlpctl abort` stops that")
        if command == "pause" and stage == "Paused":
            return Refusal("the canary is already paused", "`nlpctl resume` continues it")
        return None
    if command == "resume":
        return None if stage == "Paused" else Refusal("not paused")
    if command == "retry":
        return None if failed is not None else Refusal("no failed revision to retry")
    return Refusal(f"unknown command {command!r}")
