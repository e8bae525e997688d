"""Gateway API Inference Extension: one `InferencePool` (v1) per revision selecting exactly that
revision's pods, and the model's HTTPRoute weighting the stable and canary pools.

A pool is a revision's object (it carries the revision label): it is created with the revision's
route and deleted with the revision, after traffic has left it. Whether a pool can take traffic is
read from what a Gateway implementation writes on it (`status.parents[].conditions`, Accepted and
ResolvedRefs); where no Gateway reports on it, the revision's workload decides alone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.spec import Serving
from nlpmodel_operator.core.engines import SERVING_PORT
from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.revision import revision_name
from nlpmodel_operator.core.routers.base import Backend, BackendState, RouteContext, model_metadata
from nlpmodel_operator.core.routers.gateway_api import HTTP_ROUTE, route_spec

GROUP = "inference.networking.k8s.io"
INFERENCE_POOL = ChildKind(f"{GROUP}/v1", "InferencePool", "inferencepools")
# The conditions a Gateway writes per parent; both must be True for the pool to take traffic.
POOL_CONDITIONS = ("Accepted", "ResolvedRefs")
GATEWAY_GROUP = "gateway.networking.k8s.io"


def pool_name(model: str, revision: str) -> str:
    """A revision's pool: named like its workload (another kind, so no clash)."""
    return revision_name(model, revision)


def _pool(ctx: RouteContext, backend: Backend) -> dict[str, Any]:
    # The model's labels (the operator lists a model's children by them) plus the revision's.
    metadata = model_metadata(ctx.name, ctx.namespace)
    metadata["name"] = pool_name(ctx.name, backend.revision)
    metadata["labels"][c.LABEL_REVISION] = backend.revision
    # The labels every platform puts on a revision's pods (see `core.platforms.common.labels`; KServe
    # copies the predictor's `labels` onto its pods).
    selector = {c.LABEL_MODEL: ctx.name, c.LABEL_REVISION: backend.revision}
    spec: dict[str, Any] = {"selector": {"matchLabels": selector}, "targetPorts": [{"number": SERVING_PORT}]}
    picker = ctx.spec.serving.endpoint_picker
    if picker is not None:
        spec["endpointPickerRef"] = {
            "name": picker.name,
            "port": {"number": picker.port},
            "failureMode": picker.failure_mode,
        }
    return {
        "apiVersion": INFERENCE_POOL.api_version,
        "kind": INFERENCE_POOL.kind,
        "metadata": metadata,
        "spec": spec,
    }


def _backend_ref(ctx: RouteContext, backend: Backend, weight: int) -> dict[str, Any]:
    return {
        "group": GROUP,
        "kind": INFERENCE_POOL.kind,
        "name": pool_name(ctx.name, backend.revision),
        "weight": weight,
    }


def _parent_key(parent: Mapping[str, Any]) -> str:
    ref = parent.get("parentRef") or {}
    namespace = f"{ref['namespace']}/" if ref.get("namespace") else ""
    return f"{ref.get('kind') or 'Gateway'} {namespace}{ref.get('name', '?')}"


def pool_state(obj: Mapping[str, Any]) -> BackendState:
    """Whether a pool can take traffic, as the Gateways it is attached to report it. Only Gateway
    parents count; a pool no Gateway reports on leaves the decision to its revision's workload."""
    parents = [
        p
        for p in (obj.get("status") or {}).get("parents") or []
        if ((p.get("parentRef") or {}).get("group") or GATEWAY_GROUP) == GATEWAY_GROUP
        and ((p.get("parentRef") or {}).get("kind") or "Gateway") == "Gateway"
    ]
    name = (obj.get("metadata") or {}).get("name", "?")
    problems = []
    for parent in parents:
        conditions = {cond.get("type"): cond for cond in parent.get("conditions") or []}
        for type_ in POOL_CONDITIONS:
            cond = conditions.get(type_)
            if cond is None:
                problems.append(f"{_parent_key(parent)} has not reported {type_}")
            elif cond.get("status") != "True":
                detail = f" ({cond['reason']})" if cond.get("reason") else ""
                text = f": {cond['message']}" if cond.get("message") else ""
                problems.append(f"{_parent_key(parent)} reports {type_}={cond.get('status')}{detail}{text}")
    if problems:
        return BackendState(False, f"InferencePool {name}: " + "; ".join(problems))
    return BackendState(True)


class InferencePoolRouter:
    name = "inference-pool"
    kinds: tuple[ChildKind, ...] = (INFERENCE_POOL, HTTP_ROUTE)

    def render(self, ctx: RouteContext) -> list[dict[str, Any]]:
        backends = [ctx.stable, *([ctx.canary] if ctx.canary is not None else [])]
        refs = [_backend_ref(ctx, ctx.stable, 100 - ctx.canary_weight if ctx.canary else 100)]
        if ctx.canary is not None:
            refs.append(_backend_ref(ctx, ctx.canary, ctx.canary_weight))
        route = {
            "apiVersion": HTTP_ROUTE.api_version,
            "kind": HTTP_ROUTE.kind,
            "metadata": model_metadata(ctx.name, ctx.namespace),
            "spec": route_spec(ctx.spec.serving, refs),
        }
        # Pools first: the route's references resolve as soon as it is applied.
        return [*(_pool(ctx, b) for b in backends), route]

    def effective_weight(self, ctx: RouteContext, stable_replicas: int, canary_replicas: int) -> int:
        return ctx.canary_weight if ctx.canary else 0

    def describe(self, serving: Serving) -> str:
        text = "HTTPRoute weights across revisions' InferencePools"
        picker = serving.endpoint_picker
        if picker is not None:
            text += f", endpoint picker {picker.name}:{picker.port} ({picker.failure_mode})"
        return text

    def backend_state(self, obj: Mapping[str, Any]) -> BackendState | None:
        if obj.get("apiVersion") != INFERENCE_POOL.api_version or obj.get("kind") != INFERENCE_POOL.kind:
            return None
        return pool_state(obj)
