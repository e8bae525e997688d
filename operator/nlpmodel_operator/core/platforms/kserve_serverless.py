"""KServe Serverless (Knative): one InferenceService per model. Its spec describes the newest revision;
`canaryTrafficPercent` sends that share to it while KServe keeps serving the rest from the previously
rolled-out revision. Promotion drops the field (KServe moves all traffic); rollback sets it to 0
(KServe's documented rollback: everything back to the previous revision).

Not a `spec.serving.platform` value: `router: kserve-canary` (on platform kserve) chooses it, since the
in-place canary is what Knative mode is for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.autoscaling import (
    KSERVE_AUTOSCALER_CLASS,
    Autoscaled,
    Scale,
    ScalingSupport,
    serving_scale,
)
from nlpmodel_operator.core.engines import SERVING_PORT
from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.platforms import common
from nlpmodel_operator.core.platforms.base import Split, TrafficMode, WorkloadState
from nlpmodel_operator.core.platforms.kserve import (
    API_VERSION,
    DEPLOYMENT_MODE_ANNOTATION,
    INFERENCE_SERVICE,
    deployment_mode,
    observe_inference_service,
    predictor,
)
from nlpmodel_operator.core.problems import Problem
from nlpmodel_operator.core.records import Action, ChildRef, RevisionState
from nlpmodel_operator.core.resolved import Resolved

ANNOTATION_STABLE_REVISION = f"{c.GROUP}/stable-revision"
KNATIVE_MODE = "Serverless"
KNATIVE_PORT_NAME = "http1"


class KServeServerlessPlatform:
    name = "kserve-serverless"
    workload = INFERENCE_SERVICE
    kinds: tuple[ChildKind, ...] = (INFERENCE_SERVICE,)
    traffic: TrafficMode = "in-place"
    pod_port = SERVING_PORT
    pod_tls = False

    def problems(self, spec: NLPModelSpec) -> list[Problem]:
        if spec.rollout.gpu_surge:
            return []
        return [
            Problem(
                "spec.rollout.gpuSurge",
                "router kserve-canary leaves revision sizes to Knative: gpuSurge: false needs gateway-api or "
                "replica-ratio",
            )
        ]

    def owns(self, obj: Mapping[str, Any]) -> bool:
        return obj.get("kind") == INFERENCE_SERVICE.kind and deployment_mode(obj) == KNATIVE_MODE

    def observe(self, obj: Mapping[str, Any]) -> WorkloadState:
        state = observe_inference_service(obj)
        # The revision it served before the newest: it has no objects of its own, and keeps the
        # traffic the newest does not get.
        previous = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_STABLE_REVISION)
        return WorkloadState(
            state.ready, state.message, state.replicas, state.ready_replicas, state.serving, previous
        )

    def service_name(self, model: str, revision: str) -> str:
        return f"{model}-predictor"  # one Knative Service for every revision of the model

    def scaling_unavailable(self, spec: NLPModelSpec, support: ScalingSupport) -> str | None:
        return None  # Knative's own autoscaler (validation allows only concurrency and cpu here)

    def autoscaled_by(self, spec: NLPModelSpec, support: ScalingSupport) -> str:
        return "Knative's HPA class" if spec.scaling.metric == "cpu" else "Knative's autoscaler (KPA)"

    def autoscalers(
        self, resolved: Resolved, revision: str, scale: Scale, support: ScalingSupport
    ) -> list[dict[str, Any]]:
        return []  # Knative's own

    def resize(
        self, workload: ChildRef, resolved: Resolved, revision: str, scale: Scale, support: ScalingSupport
    ) -> list[Action]:
        return []  # Knative sizes each of its revisions itself

    def hand_over(self, state: RevisionState, scale: Scale) -> list[Action]:
        return []

    def born(self, objects: list[dict[str, Any]], scale: Autoscaled) -> None:
        pass  # Knative starts it at minReplicas

    def render(
        self, resolved: Resolved, scale: Scale, support: ScalingSupport, split: Split
    ) -> list[dict[str, Any]]:
        # Knative scales each of its revisions itself (concurrency or cpu): no fixed canary count.
        knative_scale = serving_scale(resolved.spec, None, 0, autoscaling_possible=True)
        autoscaler_class, body = predictor(resolved, knative_scale, ScalingSupport(), knative=True)
        # Knative accepts only h2c or http1 as the name of the user container's port.
        for port in body["model"].get("ports", []):
            port["name"] = KNATIVE_PORT_NAME
        if split.canary is not None:
            body["canaryTrafficPercent"] = split.weight
        elif split.stable != resolved.revision:
            body["canaryTrafficPercent"] = 0  # rolled back: the failed template gets no traffic
        meta = common.metadata(resolved)
        meta["name"] = resolved.name
        meta["annotations"][DEPLOYMENT_MODE_ANNOTATION] = KNATIVE_MODE
        meta["annotations"][ANNOTATION_STABLE_REVISION] = split.stable
        if autoscaler_class is not None:
            meta["annotations"][KSERVE_AUTOSCALER_CLASS] = autoscaler_class
        return [
            {
                "apiVersion": API_VERSION,
                "kind": INFERENCE_SERVICE.kind,
                "metadata": meta,
                "spec": {"predictor": body},
            }
        ]
