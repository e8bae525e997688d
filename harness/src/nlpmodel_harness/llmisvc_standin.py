"""A stand-in for KServe's LLMInferenceService controller (kserve/kserve @aaac4e2,
pkg/controller/v1alpha2/llmisvc): the status it writes, computed from the objects of a namespace.

What the real controller writes, and this stand-in with it:
- the roll-up conditions Ready = PresetsCombined ∧ WorkloadsReady ∧ RouterReady (Knative's living
  condition set: Ready takes the reason and message of the first that is not True), with their
  sub-conditions (MainWorkloadReady; HTTPRoutesReady, GatewaysReady, InferencePoolReady and
  SchedulerWorkloadReady where a scheduler is configured);
- `serving.kserve.io/stop: "true"`: the workload and routes go, every sub-condition is False with
  reason Stopped ("Service is stopped"), `status.router` is cleared (router.go updateRoutingStatus);
- a member of a routing group (`spec.router.route.group` + `weight`): `status.router.group` lists the
  group's eligible members (not terminating; routable, i.e. RouterReady and ready replicas, or
  stopped; itself always) sorted by name, with weight, stopped and backendRef; GroupReady True, and
  GroupDegraded True (reason MemberDivergence) while members serve different model names
  (router_group.go, router_group_status.go);
- `status.workloads.primary` (the Deployment `<name>-kserve` and its ready replicas) and
  `observedGeneration`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1alpha2", "llminferenceservices"
STOP = "serving.kserve.io/stop"
STOPPED_MESSAGE = "Service is stopped"
UNAVAILABLE = ("MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
POOL_GROUP = "inference.networking.k8s.io"
PORT = 8000


def stopped(obj: Mapping[str, Any]) -> bool:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(STOP) == "true"


def _group(obj: Mapping[str, Any]) -> str | None:
    route = ((obj.get("spec") or {}).get("router") or {}).get("route") or {}
    group: str | None = route.get("group")
    return group


def _has_scheduler(obj: Mapping[str, Any]) -> bool:
    return "scheduler" in ((obj.get("spec") or {}).get("router") or {})


def _model_name(obj: Mapping[str, Any]) -> str:
    name: str = ((obj.get("spec") or {}).get("model") or {}).get("name") or obj["metadata"]["name"]
    return name


def _condition(type_: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": type_, "status": "True" if ok else "False"}
    if not ok:
        out.update(reason=reason, message=message)
    return out


def _backend_ref(obj: Mapping[str, Any]) -> dict[str, Any]:
    name = obj["metadata"]["name"]
    if _has_scheduler(obj):
        pool = (((obj.get("spec") or {}).get("router") or {}).get("scheduler") or {}).get("pool") or {}
        pool_name = (pool.get("ref") or {}).get("name") or f"{name}-inference-pool"
        return {"group": POOL_GROUP, "kind": "InferencePool", "name": pool_name, "port": PORT}
    return {"group": "", "kind": "Service", "name": f"{name}-kserve-workload-svc", "port": PORT}


def _routable(obj: Mapping[str, Any], ready: bool) -> bool:
    return ready and not stopped(obj)


def desired_status(
    obj: Mapping[str, Any],
    namespace_objects: Collection[Mapping[str, Any]],
    broken: Collection[str],
    revision: str,
) -> dict[str, Any]:
    """The status the controller writes for `obj`, given every LLMInferenceService of its namespace
    (its group's other members) and the revisions whose pods never become ready (`broken`)."""
    meta = obj["metadata"]
    name = meta["name"]
    scheduler = _has_scheduler(obj)
    status: dict[str, Any] = {"observedGeneration": meta.get("generation")}
    if stopped(obj):
        subs = [_condition("MainWorkloadReady", False, "Stopped", STOPPED_MESSAGE)]
        router_subs = [
            _condition("GatewaysReady", False, "Stopped", STOPPED_MESSAGE),
            _condition("HTTPRoutesReady", False, "Stopped", STOPPED_MESSAGE),
        ]
        if scheduler:
            router_subs.append(_condition("InferencePoolReady", False, "Stopped", STOPPED_MESSAGE))
        conditions = [
            _condition("PresetsCombined", True),
            *subs,
            _condition("WorkloadsReady", False, "Stopped", STOPPED_MESSAGE),
            *router_subs,
            _condition("RouterReady", False, "Stopped", STOPPED_MESSAGE),
            _condition("Ready", False, "Stopped", STOPPED_MESSAGE),
        ]
        status.update(conditions=conditions, router=None, workloads=None)
        return status
    up = revision not in broken
    replicas = (obj.get("spec") or {}).get("replicas")
    if replicas is None:
        replicas = ((obj.get("spec") or {}).get("scaling") or {}).get("minReplicas", 1)
    conditions = [
        _condition("PresetsCombined", True),
        _condition("MainWorkloadReady", up, *UNAVAILABLE),
        _condition("WorkloadsReady", up, *UNAVAILABLE),
        _condition("GatewaysReady", True),
        _condition("HTTPRoutesReady", True),
    ]
    if scheduler:
        conditions += [_condition("InferencePoolReady", True), _condition("SchedulerWorkloadReady", True)]
    conditions.append(_condition("RouterReady", True))
    router: dict[str, Any] = {}
    if scheduler:
        router["scheduler"] = {
            "inferencePool": {"group": POOL_GROUP, "kind": "InferencePool", "name": f"{name}-inference-pool"}
        }
    group = _group(obj)
    if group is not None:
        members = []
        divergent = []
        for other in sorted(namespace_objects, key=lambda o: o["metadata"]["name"]):
            if _group(other) != group or (other["metadata"].get("deletionTimestamp")):
                continue
            is_self = other["metadata"]["name"] == name
            other_ready = _ready_now(other)
            if not (is_self or stopped(other) or _routable(other, other_ready)):
                continue
            member = {
                "name": other["metadata"]["name"],
                "weight": int(((other["spec"].get("router") or {}).get("route") or {}).get("weight") or 0),
                "backendRef": _backend_ref(other),
            }
            if stopped(other):
                member["stopped"] = True
            if _model_name(other) == _model_name(obj):
                members.append(member)
            else:
                divergent.append(_model_name(other))
        router["group"] = {"name": group, "members": members}
        conditions.append(_condition("GroupReady", True))
        if divergent:
            models = ", ".join(sorted({*divergent}))
            conditions.append(
                {
                    "type": "GroupDegraded",
                    "status": "True",
                    "reason": "MemberDivergence",
                    "message": f"group has members with different model sets: {models}",
                }
            )
    conditions.append(_condition("Ready", up, *UNAVAILABLE))
    status.update(
        conditions=conditions,
        router=router or None,
        workloads={
            "primary": {
                "apiGroup": "apps",
                "kind": "Deployment",
                "name": f"{name}-kserve",
                "readyReplicas": replicas if up else 0,
            }
        },
    )
    return status


def _ready_now(obj: Mapping[str, Any]) -> bool:
    """Whether the object's current status says Ready and RouterReady (what isMemberRoutable reads)."""
    conditions = {x.get("type"): x.get("status") for x in (obj.get("status") or {}).get("conditions") or []}
    primary = ((obj.get("status") or {}).get("workloads") or {}).get("primary") or {}
    return (
        conditions.get("Ready") == "True"
        and conditions.get("RouterReady") == "True"
        and int(primary.get("readyReplicas") or 0) > 0
    )


def _essence(status: Mapping[str, Any]) -> Any:
    """A status without the times (what tells whether a write would change anything)."""
    conditions = [
        {k: v for k, v in x.items() if k != "lastTransitionTime"} for x in status.get("conditions") or []
    ]
    return {**status, "conditions": conditions}


def with_times(wanted: dict[str, Any], current: Mapping[str, Any], now: str) -> dict[str, Any]:
    """`wanted` with each condition's lastTransitionTime: kept where its status did not flip."""
    before = {x.get("type"): x for x in current.get("conditions") or []}
    for condition in wanted.get("conditions") or []:
        old = before.get(condition["type"])
        same = old is not None and old.get("status") == condition["status"]
        condition["lastTransitionTime"] = old.get("lastTransitionTime", now) if same and old else now
    return wanted


def needs_write(wanted: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    keys = set(wanted)
    return bool(
        _essence({k: wanted[k] for k in keys if wanted[k] is not None})
        != _essence({k: current.get(k) for k in keys if current.get(k) is not None})
    )
