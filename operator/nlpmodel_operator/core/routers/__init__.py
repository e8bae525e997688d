"""Traffic routers, one module each, chosen by `router_for(spec.serving.router)`.

A new router: one module (see `base.Router`), and one entry in `ROUTERS` below."""

from __future__ import annotations

from nlpmodel_operator.api.spec import RouterName
from nlpmodel_operator.core.routers.base import Backend, RouteContext, Router, canary_replicas
from nlpmodel_operator.core.routers.gateway_api import GatewayAPIRouter
from nlpmodel_operator.core.routers.in_place import InPlaceRouter
from nlpmodel_operator.core.routers.replica_ratio import ReplicaRatioRouter

ROUTERS: tuple[Router, ...] = (GatewayAPIRouter(), InPlaceRouter(), ReplicaRatioRouter())
_BY_NAME = {r.name: r for r in ROUTERS}


def router_for(name: RouterName) -> Router:
    return _BY_NAME[name]


__all__ = ["ROUTERS", "Backend", "RouteContext", "Router", "canary_replicas", "router_for"]
