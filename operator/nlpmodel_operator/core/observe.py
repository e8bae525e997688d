"""Readiness of a revision read from its children as the API server shows them (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.core.platforms import owner_of
from nlpmodel_operator.core.records import ChildRef, RevisionState
from nlpmodel_operator.core.routers import backend_states


def child_readiness(obj: Mapping[str, Any]) -> tuple[bool, str, int | None, int | None]:
    """(ready, why not, replicas, ready replicas) of one child object, as its platform reads it (a
    child that is no workload is ready as soon as it exists)."""
    platform = owner_of(obj)
    if platform is None:
        return True, "", None, None
    state = platform.observe(obj)
    return state.ready, state.message, state.replicas, state.ready_replicas


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
        workloads = [(o, platform.observe(o)) for o in objs if (platform := owner_of(o)) is not None]
        applied = field_manager is not None and any(applies_replicas(o, field_manager) for o, _ in workloads)
        if not workloads:
            ready, messages = False, [f"revision {revision} has no workload"]
        for _, workload in workloads:  # any other child is ready as soon as it exists
            ready = ready and workload.ready
            if workload.message:
                messages.append(workload.message)
            if workload.replicas is not None:
                replicas, ready_replicas = workload.replicas, workload.ready_replicas
        serving = bool(workloads) and all(w.serving for _, w in workloads)
        # A router's own per-revision object (an InferencePool a Gateway rejected) can keep a revision
        # from taking traffic even while its workload serves.
        for blocked in (b for o in objs for b in backend_states(o) if not b.can_take_traffic):
            ready = serving = False
            messages.append(blocked.message)
        states[revision] = RevisionState(
            revision,
            refs,
            ready,
            "; ".join(messages),
            replicas,
            ready_replicas,
            replicas_applied=applied,
            serving=serving,
            stopped=any(w.stopped for _, w in workloads),
            reason=next((w.reason for _, w in workloads if not w.ready and w.reason), ""),
            warning="; ".join(w.warning for _, w in workloads if w.warning),
        )
        for obj, workload in workloads:
            # A workload that keeps serving an earlier revision (Knative's previously rolled-out one):
            # that revision has no objects of its own.
            previous = workload.also_serves
            if previous and previous != revision and previous not in grouped:
                by = f"served by {obj['kind']} {obj['metadata']['name']} as its previous revision"
                states[previous] = RevisionState(previous, (), True, by)
    return states


def other_children(children: Iterable[Mapping[str, Any]]) -> tuple[ChildRef, ...]:
    """Owned children of no revision: the model's routes and Service."""
    return tuple(
        ChildRef(o["apiVersion"], o["kind"], o["metadata"]["name"])
        for o in children
        if not ((o.get("metadata") or {}).get("labels") or {}).get(c.LABEL_REVISION)
    )
