"""Gateway API: one HTTPRoute per model whose backendRefs carry the stable/canary weights."""

from __future__ import annotations

from typing import Any

from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.routers.base import Backend, RouteContext, model_metadata

API_VERSION = "gateway.networking.k8s.io/v1"
HTTP_ROUTE = ChildKind(API_VERSION, "HTTPRoute", "httproutes")


def _backend_ref(backend: Backend, weight: int) -> dict[str, Any]:
    # group ("" = core) and kind (Service) are the defaults: left out, since an explicit empty group
    # is stored as null by some API servers (seen on v1.20 with server-side apply) and then rejected.
    return {"name": backend.service, "port": backend.port, "weight": weight}


class GatewayAPIRouter:
    name = "gateway-api"
    kinds: tuple[ChildKind, ...] = (HTTP_ROUTE,)

    def render(self, ctx: RouteContext) -> list[dict[str, Any]]:
        serving = ctx.spec.serving
        backends = [_backend_ref(ctx.stable, 100 - ctx.canary_weight if ctx.canary else 100)]
        if ctx.canary is not None:
            backends.append(_backend_ref(ctx.canary, ctx.canary_weight))
        spec: dict[str, Any] = {"rules": [{"backendRefs": backends}]}
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
        return [
            {
                "apiVersion": HTTP_ROUTE.api_version,
                "kind": HTTP_ROUTE.kind,
                "metadata": model_metadata(ctx.name, ctx.namespace),
                "spec": spec,
            }
        ]

    def effective_weight(self, ctx: RouteContext, stable_replicas: int, canary_replicas: int) -> int:
        return ctx.canary_weight if ctx.canary else 0
