"""Gateway API: one HTTPRoute per model whose backendRefs carry the stable/canary weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nlpmodel_operator.api.spec import Serving
from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.routers.base import Backend, BackendState, RouteContext, model_metadata

API_VERSION = "gateway.networking.k8s.io/v1"
HTTP_ROUTE = ChildKind(API_VERSION, "HTTPRoute", "httproutes")


def _backend_ref(backend: Backend, weight: int) -> dict[str, Any]:
    # group ("" = core) and kind (Service) are the defaults: left out, since an explicit empty group
    # is stored as null by some API servers (seen on v1.20 with server-side apply) and then rejected.
    return {"name": backend.service, "port": backend.port, "weight": weight}


def route_spec(serving: Serving, backend_refs: list[dict[str, Any]]) -> dict[str, Any]:
    """An HTTPRoute's spec: one rule over `backend_refs`, attached to the spec's Gateway and hostnames."""
    spec: dict[str, Any] = {"rules": [{"backendRefs": backend_refs}]}
    if serving.gateway is not None:
        parent: dict[str, Any] = {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": serving.gateway.name,
        }
        if serving.gateway.namespace:
            parent["namespace"] = serving.gateway.namespace
        if serving.gateway.section_name:
            parent["sectionName"] = serving.gateway.section_name
        spec["parentRefs"] = [parent]
    if serving.hostnames:
        spec["hostnames"] = list(serving.hostnames)
    return spec


class GatewayAPIRouter:
    name = "gateway-api"
    kinds: tuple[ChildKind, ...] = (HTTP_ROUTE,)

    def render(self, ctx: RouteContext) -> list[dict[str, Any]]:
        backends = [_backend_ref(ctx.stable, 100 - ctx.canary_weight if ctx.canary else 100)]
        if ctx.canary is not None:
            backends.append(_backend_ref(ctx.canary, ctx.canary_weight))
        return [
            {
                "apiVersion": HTTP_ROUTE.api_version,
                "kind": HTTP_ROUTE.kind,
                "metadata": model_metadata(ctx.name, ctx.namespace),
                "spec": route_spec(ctx.spec.serving, backends),
            }
        ]

    def effective_weight(self, ctx: RouteContext, stable_replicas: int, canary_replicas: int) -> int:
        return ctx.canary_weight if ctx.canary else 0

    def describe(self, serving: Serving) -> str:
        return "HTTPRoute weights across revisions' Services"

    def backend_state(self, obj: Mapping[str, Any]) -> BackendState | None:
        return None  # a Service backend is as ready as the revision's workload
