"""In place: the platform splits traffic by a field of its own workload (Knative's
`canaryTrafficPercent`, see `core.platforms.kserve_serverless`), so the router has no objects.
`router: kserve-canary` asks for it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nlpmodel_operator.api.spec import Serving
from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.routers.base import BackendState, RouteContext


class InPlaceRouter:
    name = "kserve-canary"
    kinds: tuple[ChildKind, ...] = ()

    def render(self, ctx: RouteContext) -> list[dict[str, Any]]:
        return []

    def effective_weight(self, ctx: RouteContext, stable_replicas: int, canary_replicas: int) -> int:
        return ctx.canary_weight if ctx.canary else 0

    def describe(self, serving: Serving) -> str:
        return "canaryTrafficPercent of the model's one InferenceService (Knative mode)"

    def backend_state(self, obj: Mapping[str, Any]) -> BackendState | None:
        return None  # no per-revision objects of its own
