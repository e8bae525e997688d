"""Kubernetes-style conditions: `lastTransitionTime` moves only when a condition's status flips."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from nlpmodel_operator.api.status import Condition, ConditionStatus

# Messages are for people: readable, and well under etcd's object size limit.
MAX_CONDITION_MESSAGE: Final = 2000
# What the API server accepts in an Event's message (events.k8s.io caps its note at 1 kB).
MAX_EVENT_MESSAGE: Final = 1000


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
        message=clip(message, MAX_CONDITION_MESSAGE),
        last_transition_time=transition,
        observed_generation=generation,
    )
    position = next((i for i, c in enumerate(conditions) if c.type == type_), len(conditions))
    out = [c for c in conditions if c.type != type_]
    out.insert(min(position, len(out)), updated)
    return out
