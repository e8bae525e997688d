"""Which models the periodic resync must visit each round, and which it may leave for longer.

Changes reach the operator as events: of the model (spec, annotations, scale) and of the children whose
state it reads (InferenceService, Deployment, HTTPRoute). The resync is what time alone moves on — a
step's pause, an analysis interval, a progress deadline — and a safety net for anything an event missed.
A model at rest has nothing that time moves on, so it is only re-read at the slower, settled period:
1,000 models at rest must not keep the API server busy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nlpmodel_operator.api.constants import ANNOTATION_COMMAND, ConditionType, Phase

__all__ = ["settled"]

# Phases in which a model with no rollout in flight waits for nothing but its user.
_AT_REST = frozenset({Phase.READY, Phase.ROLLED_BACK})


def settled(body: Mapping[str, Any]) -> bool:
    """True when the model is at rest: its current spec handled, no rollout and no command pending,
    serving and Ready. Anything else (Pending, a canary, a failed apply to retry) is visited each round."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    if status.get("observedGeneration") != meta.get("generation"):
        return False
    if status.get("phase") not in _AT_REST or status.get("canaryRevision"):
        return False
    if ANNOTATION_COMMAND in (meta.get("annotations") or {}):
        return False
    ready = next(
        (x for x in status.get("conditions") or [] if x.get("type") == ConditionType.READY),
        None,
    )
    return ready is not None and ready.get("status") == "True"
