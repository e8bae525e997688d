"""Replica ratio: no mesh needed. One Service selects the pods of every revision of the model, so
traffic splits by the number of ready pods; the canary weight is approximated by replica counts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.spec import Serving
from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.routers.base import BackendState, RouteContext, model_metadata

SERVICE = ChildKind("v1", "Service", "services")


class ReplicaRatioRouter:
    name = "replica-ratio"
    kinds: tuple[ChildKind, ...] = (SERVICE,)

    def render(self, ctx: RouteContext) -> list[dict[str, Any]]:
        return [
            {
                "apiVersion": SERVICE.api_version,
                "kind": SERVICE.kind,
                "metadata": model_metadata(ctx.name, ctx.namespace),
                "spec": {
                    "type": "ClusterIP",
                    "selector": {c.LABEL_MODEL: ctx.name},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
                },
            }
        ]

    def effective_weight(self, ctx: RouteContext, stable_replicas: int, canary_replicas: int) -> int:
        if ctx.canary is None or canary_replicas == 0:
            return 0
        return round(100 * canary_replicas / (stable_replicas + canary_replicas))

    def describe(self, serving: Serving) -> str:
        return "replica counts behind the model's one Service"

    def backend_state(self, obj: Mapping[str, Any]) -> BackendState | None:
        return None  # no per-revision objects of its own
