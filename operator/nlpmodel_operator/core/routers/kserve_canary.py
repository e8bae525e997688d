"""KServe canary: one InferenceService per model in Knative (Serverless) mode. Its spec describes the
newest revision; `canaryTrafficPercent` sends that share to it while KServe keeps serving the rest
from the previously rolled-out revision. Promotion drops the field (KServe moves all traffic);
rollback sets it to 0 (KServe's documented rollback: everything back to the previous revision)."""

from __future__ import annotations

from typing import Any

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.core.autoscaling import KSERVE_AUTOSCALER_CLASS, ScalingSupport, serving_scale
from nlpmodel_operator.core.platforms import common
from nlpmodel_operator.core.platforms.kserve import API_VERSION, DEPLOYMENT_MODE_ANNOTATION, predictor
from nlpmodel_operator.core.routers.base import RouteContext

ANNOTATION_STABLE_REVISION = f"{c.GROUP}/stable-revision"
KNATIVE_MODE = "Serverless"
KNATIVE_PORT_NAME = "http1"


class KServeCanaryRouter:
    name = "kserve-canary"
    # The router's own object is the workload: revisions have no children of their own.
    renders_workload = True

    def render(self, ctx: RouteContext) -> list[dict[str, Any]]:
        desired = ctx.desired
        assert desired is not None, "the kserve-canary router renders the desired revision"
        # Knative scales each of its revisions itself (concurrency or cpu): no fixed canary count.
        scale = serving_scale(desired.spec, None, 0, autoscaling_possible=True)
        autoscaler_class, body = predictor(desired, scale, ScalingSupport())
        # Knative accepts only h2c or http1 as the name of the user container's port.
        for port in body["model"].get("ports", []):
            port["name"] = KNATIVE_PORT_NAME
        if ctx.canary is not None:
            body["canaryTrafficPercent"] = ctx.canary_weight
        elif ctx.stable.revision != desired.revision:
            body["canaryTrafficPercent"] = 0  # rolled back: the failed template gets no traffic
        meta = common.metadata(desired)
        meta["name"] = ctx.name
        meta["annotations"][DEPLOYMENT_MODE_ANNOTATION] = KNATIVE_MODE
        meta["annotations"][ANNOTATION_STABLE_REVISION] = ctx.stable.revision
        if autoscaler_class is not None:
            meta["annotations"][KSERVE_AUTOSCALER_CLASS] = autoscaler_class
        return [
            {
                "apiVersion": API_VERSION,
                "kind": "InferenceService",
                "metadata": meta,
                "spec": {"predictor": body},
            }
        ]

    def effective_weight(self, ctx: RouteContext, stable_replicas: int, canary_replicas: int) -> int:
        return ctx.canary_weight if ctx.canary else 0
