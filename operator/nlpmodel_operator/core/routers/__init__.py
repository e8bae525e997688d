"""Traffic routers, one module each, chosen by `router_for(spec.serving.router)`.

A new router: one module (see `base.Router`), and one entry in `ROUTERS` below."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nlpmodel_operator.api.spec import RouterName
from nlpmodel_operator.core.routers.base import (
    Backend,
    BackendState,
    RouteContext,
    Router,
    canary_replicas,
)
from nlpmodel_operator.core.routers.gateway_api import GatewayAPIRouter
from nlpmodel_operator.core.routers.in_place import InPlaceRouter
from nlpmodel_operator.core.routers.inference_pool import InferencePoolRouter
from nlpmodel_operator.core.routers.replica_ratio import ReplicaRatioRouter

ROUTERS: tuple[Router, ...] = (
    GatewayAPIRouter(),
    InferencePoolRouter(),
    InPlaceRouter(),
    ReplicaRatioRouter(),
)
_BY_NAME = {r.name: r for r in ROUTERS}


def router_for(name: RouterName) -> Router:
    return _BY_NAME[name]


def backend_states(obj: Mapping[str, Any]) -> list[BackendState]:
    """What every router that reads `obj` (a revision's child) says about its revision taking traffic."""
    return [state for r in ROUTERS if (state := r.backend_state(obj)) is not None]


__all__ = [
    "ROUTERS",
    "Backend",
    "BackendState",
    "RouteContext",
    "Router",
    "backend_states",
    "canary_replicas",
    "router_for",
]
