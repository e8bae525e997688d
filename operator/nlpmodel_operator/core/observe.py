"""Readiness of a revision read from its children as the API server shows them (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.core.records import ChildRef, RevisionState
from nlpmodel_operator.core.routers.kserve_canary import ANNOTATION_STABLE_REVISION

WORKLOAD_KINDS = frozenset({"InferenceService", "Deployment"})


def _ready_condition(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((x for x in conditions if x.get("type") == "Ready"), None)


def child_readiness(obj: Mapping[str, Any]) -> tuple[bool, str, int | None, int | None]:
    """(ready, why not, replicas, ready replicas) of one child object."""
    kind = obj.get("kind")
    name = (obj.get("metadata") or {}).get("name", "?")
    status = obj.get("status") or {}
    if kind == "InferenceService":
        generation = (obj.get("metadata") or {}).get("generation")
        observed = status.get("observedGeneration")
        if generation is not None and observed is not None and observed < generation:
            return (
                False,
                f"InferenceService {name}: KServe has not processed generation {generation} yet",
                None,
                None,
            )
        ready = _ready_condition(obj)
        if ready is None:
            return False, f"InferenceService {name} has no Ready condition yet", None, None
        if ready.get("status") == "True":
            return True, "", None, None
        why = ready.get("message") or ready.get("reason") or "not ready"
        return False, f"InferenceService {name}: {why}", None, None
    if kind == "Deployment":
        meta = obj.get("metadata") or {}
        wanted = (obj.get("spec") or {}).get("replicas", 1)
        ready_n = status.get("readyReplicas", 0) or 0
        updated = status.get("updatedReplicas", 0) or 0
        current = status.get("observedGeneration", 0) >= meta.get("generation", 0)
        if wanted == 0:
            return False, f"Deployment {name} is scaled to zero", 0, 0
        if current and ready_n >= wanted and updated >= wanted:
            return True, "", wanted, ready_n
        return False, f"Deployment {name}: {ready_n}/{wanted} replicas ready", wanted, ready_n
    return True, "", None, None


def can_serve(obj: Mapping[str, Any]) -> bool:
    """A workload that can take traffic now: KServe reports it Ready (a newer generation may still be
    rolling out behind it), or a Deployment has a ready pod."""
    if obj.get("kind") == "InferenceService":
        ready = _ready_condition(obj)
        return ready is not None and ready.get("status") == "True"
    if obj.get("kind") == "Deployment":
        return bool((obj.get("status") or {}).get("readyReplicas"))
    return True


def applies_replicas(obj: Mapping[str, Any], field_manager: str) -> bool:
    """Whether `field_manager`'s server-side apply owns the object's spec.replicas."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == field_manager and entry.get("operation") == "Apply":
            spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
            if "f:replicas" in spec:
                return True
    return False


def revision_states(
    children: Iterable[Mapping[str, Any]], field_manager: str | None = None
) -> dict[str, RevisionState]:
    """Children grouped by their revision label; objects without one (routes, …) are not revisions.

    field_manager: the operator's, to tell whether it applies a Deployment's replica count."""
    grouped: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for obj in children:
        revision = ((obj.get("metadata") or {}).get("labels") or {}).get(c.LABEL_REVISION)
        if revision:
            grouped[revision].append(obj)
    states = {}
    for revision, objs in grouped.items():
        refs = tuple(ChildRef(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in objs)
        ready, messages, replicas, ready_replicas = True, [], None, None
        applied = field_manager is not None and any(
            o.get("kind") == "Deployment" and applies_replicas(o, field_manager) for o in objs
        )
        workloads = [o for o in objs if o.get("kind") in WORKLOAD_KINDS]
        if not workloads:
            ready, messages = False, [f"revision {revision} has no workload"]
        for obj in objs:
            ok, why, wanted, ready_n = child_readiness(obj)
            ready = ready and ok
            if why:
                messages.append(why)
            if wanted is not None:
                replicas, ready_replicas = wanted, ready_n
        serving = bool(workloads) and all(can_serve(o) for o in workloads)
        states[revision] = RevisionState(
            revision,
            refs,
            ready,
            "; ".join(messages),
            replicas,
            ready_replicas,
            replicas_applied=applied,
            serving=serving,
        )
        for obj in objs:
            # kserve-canary: KServe keeps serving the previously rolled-out revision from the same
            # InferenceService, which names it; that revision has no objects of its own.
            previous = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_STABLE_REVISION)
            if previous and previous != revision and previous not in grouped:
                states[previous] = RevisionState(previous, (), True, "served by KServe's previous revision")
    return states


def other_children(children: Iterable[Mapping[str, Any]]) -> tuple[ChildRef, ...]:
    """Owned children of no revision: the model's routes and Service."""
    return tuple(
        ChildRef(o["apiVersion"], o["kind"], o["metadata"]["name"])
        for o in children
        if not ((o.get("metadata") or {}).get("labels") or {}).get(c.LABEL_REVISION)
    )
