"""Traffic routers, one module each, chosen by `router_for(spec.serving.router)`."""

from __future__ import annotations

from nlpmodel_operator.api.spec import RouterName
from nlpmodel_operator.core.routers.base import Backend, RouteContext, Router, canary_replicas
from nlpmodel_operator.core.routers.gateway_api import GatewayAPIRouter
from nlpmodel_operator.core.routers.kserve_canary import KServeCanaryRouter
from nlpmodel_operator.core.routers.replica_ratio import ReplicaRatioRouter

_ROUTERS: dict[str, Router] = {
    "gateway-api": GatewayAPIRouter(),
    "kserve-canary": KServeCanaryRouter(),
    "replica-ratio": ReplicaRatioRouter(),
}


def router_for(name: RouterName) -> Router:
    return _ROUTERS[name]


__all__ = ["Backend", "RouteContext", "Router", "canary_replicas", "router_for"]
