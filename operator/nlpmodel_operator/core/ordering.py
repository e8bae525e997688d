"""The order in which a decision's actions run: safety-critical, so it is data (checked by a
table-driven test) rather than code.

The shell runs the actions in order and stops at the first failure; the next reconcile starts over. So
every prefix of the list must leave the model serving: no traffic to a revision that is not there yet,
no revision deleted while it still takes traffic, no more GPUs asked for than the model may hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Literal

from nlpmodel_operator.core.records import Action

Part = Literal[
    "monitor",  # the model's PodMonitor: first, so that a new revision's pods are scraped from their start
    "route",  # the router's objects: where traffic goes
    "delete",  # children of revisions that lost their traffic, and stale model-level objects
    "stale-scaler",  # autoscalers no longer wanted: gone before any other takes their place
    "handover",  # a Deployment's live replica count kept before an autoscaler takes the count over
    "revision",  # the rendered revision (its workload, Service)
    "resize",  # the revision not re-rendered (the stable during a rollout), resized
    "scaler",  # the autoscalers wanted
]

# Revisions go (a rollback, a promotion, a replaced canary): traffic moves first, to the revision that
# keeps it; then the revisions that lost it go and free their GPUs; then the survivor gets its size.
TRAFFIC_FIRST: Final[tuple[Part, ...]] = (
    "monitor",
    "route",
    "delete",
    "stale-scaler",
    "handover",
    "revision",
    "resize",
    "scaler",
)

# Nothing goes: capacity first. The stable gives GPUs up (without surge), the canary takes them, and
# only then does traffic move.
CAPACITY_FIRST: Final[tuple[Part, ...]] = (
    "monitor",
    "stale-scaler",
    "resize",
    "handover",
    "revision",
    "scaler",
    "route",
    "delete",
)


def action_order(revisions_go: bool) -> tuple[Part, ...]:
    return TRAFFIC_FIRST if revisions_go else CAPACITY_FIRST


def in_order(parts: Mapping[Part, Sequence[Action]], revisions_go: bool) -> list[Action]:
    """The actions of every part, the parts in their order for this decision."""
    return [action for part in action_order(revisions_go) for action in parts.get(part, ())]
