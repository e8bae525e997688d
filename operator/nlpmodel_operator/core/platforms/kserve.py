"""KServe platform: one InferenceService per revision, Standard (raw Deployment) mode."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.autoscaling import (
    KSERVE_AUTOSCALER_CLASS,
    Autoscaled,
    Scale,
    ScalingSupport,
    kserve_scaling,
    unavailable,
)
from nlpmodel_operator.core.engines import SERVING_PORT, EngineInput, engine_for
from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.platforms import common
from nlpmodel_operator.core.platforms.base import Split, TrafficMode, WorkloadState
from nlpmodel_operator.core.problems import Problem
from nlpmodel_operator.core.records import Action, ChildRef, Patch, RevisionState
from nlpmodel_operator.core.resolved import Resolved

DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
DEPLOYMENT_MODE = "Standard"
API_VERSION = "serving.kserve.io/v1beta1"
INFERENCE_SERVICE = ChildKind(API_VERSION, "InferenceService", "inferenceservices")


def storage_uri(resolved: Resolved) -> str:
    """KServe's storage initializer takes hf://, s3://, gs:// and pvc://; hf pins a revision as `:rev`."""
    uri = resolved.spec.model.uri
    revision = resolved.spec.model.revision
    if revision and common.scheme_of(uri) == "hf":
        return f"{uri}:{revision}"
    return uri


def deployment_mode(obj: Mapping[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(DEPLOYMENT_MODE_ANNOTATION)


def _ready_condition(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((x for x in conditions if x.get("type") == "Ready"), None)


def observe_inference_service(obj: Mapping[str, Any]) -> WorkloadState:
    """KServe reports an InferenceService Ready (a newer generation may still be rolling out behind
    it: it serves meanwhile, but is not converged)."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "?")
    ready = _ready_condition(obj)
    serving = ready is not None and ready.get("status") == "True"
    generation = meta.get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        why = f"InferenceService {name}: KServe has not processed generation {generation} yet"
        return WorkloadState(False, why, serving=serving)
    if ready is None:
        return WorkloadState(False, f"InferenceService {name} has no Ready condition yet")
    if serving:
        return WorkloadState(True, serving=True)
    why = ready.get("message") or ready.get("reason") or "not ready"
    return WorkloadState(False, f"InferenceService {name}: {why}")


class KServePlatform:
    name = "kserve"
    workload = INFERENCE_SERVICE
    kinds: tuple[ChildKind, ...] = (INFERENCE_SERVICE,)
    traffic: TrafficMode = "router"
    pod_port = SERVING_PORT
    pod_tls = False

    def problems(self, spec: NLPModelSpec) -> list[Problem]:
        return []

    def owns(self, obj: Mapping[str, Any]) -> bool:
        return obj.get("kind") == INFERENCE_SERVICE.kind and deployment_mode(obj) != "Serverless"

    def observe(self, obj: Mapping[str, Any]) -> WorkloadState:
        return observe_inference_service(obj)

    def service_name(self, model: str, revision: str) -> str:
        return f"{model}-{revision}-predictor"  # KServe names it `<isvc>-predictor`

    def scaling_unavailable(self, spec: NLPModelSpec, support: ScalingSupport) -> str | None:
        return unavailable(spec, support)

    def autoscaled_by(self, spec: NLPModelSpec, support: ScalingSupport) -> str:
        return f"KServe autoscaler class {'hpa' if spec.scaling.metric == 'cpu' else 'keda'}"

    def autoscalers(
        self, resolved: Resolved, revision: str, scale: Scale, support: ScalingSupport
    ) -> list[dict[str, Any]]:
        return []  # KServe's autoscaler classes, set on the InferenceService

    def resize(
        self, workload: ChildRef, resolved: Resolved, revision: str, scale: Scale, support: ScalingSupport
    ) -> list[Action]:
        autoscaler_class, fields = kserve_scaling(
            resolved.name, resolved.namespace, revision, resolved.spec, scale, support
        )
        return [
            Patch(
                workload,
                {
                    "metadata": {"annotations": {KSERVE_AUTOSCALER_CLASS: autoscaler_class}},
                    "spec": {"predictor": fields},
                },
            )
        ]

    def hand_over(self, state: RevisionState, scale: Scale) -> list[Action]:
        return []  # the replica bounds are fields of the InferenceService, applied whole

    def born(self, objects: list[dict[str, Any]], scale: Autoscaled) -> None:
        pass  # KServe starts it at minReplicas

    def render(
        self, resolved: Resolved, scale: Scale, support: ScalingSupport, split: Split
    ) -> list[dict[str, Any]]:
        meta = common.metadata(resolved)
        meta["annotations"][DEPLOYMENT_MODE_ANNOTATION] = DEPLOYMENT_MODE
        autoscaler_class, body = predictor(resolved, scale, support)
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


def predictor(
    resolved: Resolved, scale: Scale, support: ScalingSupport, knative: bool = False
) -> tuple[str | None, dict[str, Any]]:
    """(autoscaler class, the InferenceService predictor) that runs one revision, in Standard mode or
    (`knative`) for the kserve-serverless platform."""
    spec = resolved.spec
    engine = engine_for(spec.runtime.engine)
    inp = EngineInput(
        spec=spec,
        served_name=resolved.served_name,
        model_path=common.MODEL_MOUNT,
        max_model_len=resolved.max_model_len,
        tensor_parallel=resolved.tensor_parallel,
    )
    model: dict[str, Any] = {
        "modelFormat": {"name": engine.kserve_model_format},
        "runtime": engine.kserve_runtime,
        "storageUri": storage_uri(resolved),
        "image": engine.image(spec),
        "args": engine.args(inp),
        "ports": [{"name": "http", "containerPort": SERVING_PORT, "protocol": "TCP"}],
        "securityContext": common.container_security_context(engine),
    }
    for key, value in (
        ("env", common.credential_env(spec)),
        ("resources", common.container_resources(resolved)),
        ("volumeMounts", common.shm_mount(spec)),
    ):
        if value:
            model[key] = value
    autoscaler_class, scaling = kserve_scaling(
        resolved.name, resolved.namespace, resolved.revision, spec, scale, support, knative
    )
    out: dict[str, Any] = {
        **{key: value for key, value in scaling.items() if value is not None},
        # KServe puts these on the pods: the replica-ratio Service selects them by the model label.
        "labels": common.labels(resolved),
        "model": model,
    }
    for key, value in (
        ("nodeSelector", common.node_selector(spec)),
        ("tolerations", common.tolerations(spec)),
        ("volumes", common.shm_volume(spec)),
    ):
        if value:
            out[key] = value
    return autoscaler_class, out
