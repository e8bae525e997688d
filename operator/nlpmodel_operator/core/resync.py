"""Which models the periodic resync must visit each round, and which it may leave for longer.

Changes reach the operator as events: of the model (spec, annotations, scale) and of the children that
serve or route its traffic (InferenceService, Deployment, Service, HTTPRoute). The resync is for what
time alone moves on (a step's pause, an analysis interval, a progress deadline) and a safety net for
anything an event missed.
A model at rest has nothing that time moves on, so it is only re-read at the slower, settled period:
1,000 models at rest must not keep the API server busy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from nlpmodel_operator.api.constants import ANNOTATION_COMMAND, ConditionType, Phase
from nlpmodel_operator.api.status import read_status
from nlpmodel_operator.core.conditions import find

__all__ = ["fingerprint", "in_flight", "model_fingerprint", "settled"]

# Phases in which a model with no rollout in flight waits for nothing but its user.
_AT_REST = frozenset({Phase.READY, Phase.ROLLED_BACK})


def settled(body: Mapping[str, Any]) -> bool:
    """True when the model is at rest: its current spec handled, no rollout and no command pending,
    serving and Ready. Anything else (Pending, a canary, a failed apply to retry) is visited each round."""
    meta = body.get("metadata") or {}
    status = read_status(body.get("status"))
    if status.observed_generation != meta.get("generation"):
        return False
    if status.phase not in _AT_REST or status.canary_revision:
        return False
    if status.stopped_revisions:
        return False  # a stopped revision is deleted when its retention ends: time moves it
    if ANNOTATION_COMMAND in (meta.get("annotations") or {}):
        return False
    ready = find(status.conditions, ConditionType.READY)
    return ready is not None and ready.status == "True"


def in_flight(body: Mapping[str, Any]) -> bool:
    """Whether a rollout is in flight: a canary shares the traffic (or is about to)."""
    return bool(read_status(body.get("status")).canary_revision)


def fingerprint(obj: Mapping[str, Any]) -> str:
    """What a child's watch event may tell the operator, as a digest: everything but the
    resourceVersion and the times in managedFields (who owns which field stays in).

    An apply that changes nothing still rewrites the object on some servers (Kubernetes 1.20 bumps
    the applier's managedFields time on every apply of a CRD with defaulted fields, e.g. an
    HTTPRoute): its event, answered with another apply, would reconcile the model forever."""
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)
    meta["managedFields"] = [
        {k: v for k, v in entry.items() if k != "time"} for entry in meta.get("managedFields") or []
    ]
    essence = {**obj, "metadata": meta}
    text = json.dumps(essence, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def model_fingerprint(body: Mapping[str, Any]) -> str:
    """A model's metadata, spec and status as a digest, without what every write changes (the
    resourceVersion, managedFields): a watch event that carries exactly the model a reconcile saw,
    with the status it wrote, tells the operator nothing new (the echo of its own status write)."""
    meta = {
        k: v for k, v in (body.get("metadata") or {}).items() if k not in {"resourceVersion", "managedFields"}
    }
    essence = {"metadata": meta, "spec": body.get("spec"), "status": body.get("status") or {}}
    text = json.dumps(essence, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
