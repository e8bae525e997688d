"""Kubernetes-style conditions: `lastTransitionTime` moves only when a condition's status flips."""

from __future__ import annotations

from collections.abc import Sequence

from nlpmodel_operator.api.status import Condition, ConditionStatus


def find(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: str,
    generation: int | None = None,
) -> list[Condition]:
    """A new list with `type_` set; the others are kept in their order."""
    previous = find(conditions, type_)
    transition = now
    if previous is not None and previous.status == status and previous.last_transition_time:
        transition = previous.last_transition_time
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    )
    position = next((i for i, c in enumerate(conditions) if c.type == type_), len(conditions))
    out = [c for c in conditions if c.type != type_]
    out.insert(min(position, len(out)), updated)
    return out


def is_true(conditions: Sequence[Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == "True"
