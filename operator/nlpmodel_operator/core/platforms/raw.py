"""Raw platform: a Deployment and a Service per revision running the engine's server directly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.autoscaling import (
    KEDA_KIND,
    Autoscaled,
    Fixed,
    Scale,
    ScalingSupport,
    autoscaler_objects,
    unavailable,
)
from nlpmodel_operator.core.engines import SERVING_PORT, EngineInput, engine_for
from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.platforms import common
from nlpmodel_operator.core.platforms.base import Split, TrafficMode, WorkloadState
from nlpmodel_operator.core.problems import Problem
from nlpmodel_operator.core.records import Action, ChildRef, HandOver, Patch, RevisionState
from nlpmodel_operator.core.resolved import Resolved
from nlpmodel_operator.core.revision import revision_name

MODEL_VOLUME = "model"
CACHE_VOLUME = "hf-cache"
CACHE_MOUNT = "/var/cache/huggingface"
DEPLOYMENT = ChildKind("apps/v1", "Deployment", "deployments")
SERVICE = ChildKind("v1", "Service", "services")


class RawPlatform:
    name = "raw"
    workload = DEPLOYMENT
    kinds: tuple[ChildKind, ...] = (DEPLOYMENT, SERVICE)
    traffic: TrafficMode = "router"
    pod_port = SERVING_PORT
    pod_tls = False

    def owns(self, obj: Mapping[str, Any]) -> bool:
        return obj.get("kind") == DEPLOYMENT.kind

    def observe(self, obj: Mapping[str, Any]) -> WorkloadState:
        meta = obj.get("metadata") or {}
        name = meta.get("name", "?")
        status = obj.get("status") or {}
        wanted = (obj.get("spec") or {}).get("replicas", 1)
        ready_n = status.get("readyReplicas", 0) or 0
        updated = status.get("updatedReplicas", 0) or 0
        current = status.get("observedGeneration", 0) >= meta.get("generation", 0)
        serving = ready_n > 0  # some pod can take traffic
        if wanted == 0:
            return WorkloadState(False, f"Deployment {name} is scaled to zero", 0, 0, serving)
        if current and ready_n >= wanted and updated >= wanted:
            return WorkloadState(True, "", wanted, ready_n, serving)
        return WorkloadState(
            False, f"Deployment {name}: {ready_n}/{wanted} replicas ready", wanted, ready_n, serving
        )

    def service_name(self, model: str, revision: str) -> str:
        return revision_name(model, revision)

    def scaling_unavailable(self, spec: NLPModelSpec, support: ScalingSupport) -> str | None:
        return unavailable(spec, support)

    def autoscaled_by(self, spec: NLPModelSpec, support: ScalingSupport) -> str:
        if spec.scaling.metric == "cpu":
            return f"HorizontalPodAutoscaler ({support.hpa_api_version})"
        return f"KEDA {KEDA_KIND}"

    def autoscalers(
        self, resolved: Resolved, revision: str, scale: Scale, support: ScalingSupport
    ) -> list[dict[str, Any]]:
        return autoscaler_objects(resolved.name, resolved.namespace, revision, resolved.spec, scale, support)

    def resize(
        self, workload: ChildRef, resolved: Resolved, revision: str, scale: Scale, support: ScalingSupport
    ) -> list[Action]:
        # Under an autoscaler the count is its own; the bounds are on the autoscaler object.
        return [Patch(workload, {"spec": {"replicas": scale.replicas}})] if isinstance(scale, Fixed) else []

    def hand_over(self, state: RevisionState, scale: Scale) -> list[Action]:
        """Before a Deployment is applied without `replicas` (an autoscaler owns the count now), keep
        the live count under a second manager: otherwise server-side apply would reset it to 1 the
        moment the operator stops applying the field (Kubernetes' documented hand-over of `replicas`
        to an HPA)."""
        workload = next((c for c in state.children if c.kind == DEPLOYMENT.kind), None)
        if workload is None or not state.replicas_applied or not isinstance(scale, Autoscaled):
            return []
        live = state.replicas if state.replicas is not None else scale.min
        return [HandOver(workload, min(max(live, scale.min), scale.max))]

    def problems(self, spec: NLPModelSpec) -> list[Problem]:
        engine = engine_for(spec.runtime.engine)
        scheme = common.scheme_of(spec.model.uri)
        if scheme in ("s3", "gs") and not engine.streams_object_storage():
            return [
                Problem(
                    "spec.model.uri",
                    f"engine {engine.name} on platform raw cannot read {scheme}:// itself: "
                    "use platform kserve "
                    "(its storage initializer downloads the weights), an hf:// or a pvc:// URI",
                )
            ]
        return []

    def _engine_input(self, resolved: Resolved) -> EngineInput:
        uri = resolved.spec.model.uri
        scheme, path = common.scheme_of(uri), common.path_of(uri)
        if scheme == "pvc":
            # pvc://CLAIM/PATH: the claim is mounted read-only, the engine loads PATH inside it.
            sub = path.split("/", 1)[1] if "/" in path else ""
            model_path = f"{common.MODEL_MOUNT}/{sub}".rstrip("/")
            load_format = None
        elif scheme == "hf":
            model_path, load_format = path, None
        else:
            model_path, load_format = uri, "runai_streamer"
        return EngineInput(
            spec=resolved.spec,
            served_name=resolved.served_name,
            model_path=model_path,
            max_model_len=resolved.max_model_len,
            tensor_parallel=resolved.tensor_parallel,
            load_format=load_format,
        )

    def _volumes(self, resolved: Resolved) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        spec = resolved.spec
        volumes = [{"name": CACHE_VOLUME, "emptyDir": {}}, *common.shm_volume(spec)]
        mounts = [{"name": CACHE_VOLUME, "mountPath": CACHE_MOUNT}, *common.shm_mount(spec)]
        if common.scheme_of(spec.model.uri) == "pvc":
            claim = common.path_of(spec.model.uri).split("/", 1)[0]
            volumes.append(
                {"name": MODEL_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
            )
            mounts.append({"name": MODEL_VOLUME, "mountPath": common.MODEL_MOUNT, "readOnly": True})
        return volumes, mounts

    def born(self, objects: list[dict[str, Any]], scale: Autoscaled) -> None:
        # At the minimum: an HPA without metrics yet would leave it at the default of one.
        for obj in objects:
            if obj["kind"] == DEPLOYMENT.kind:
                obj["spec"]["replicas"] = max(scale.min, 1)

    def render(
        self, resolved: Resolved, scale: Scale, support: ScalingSupport, split: Split
    ) -> list[dict[str, Any]]:
        spec = resolved.spec
        engine = engine_for(spec.runtime.engine)
        volumes, mounts = self._volumes(resolved)
        container: dict[str, Any] = {
            "name": "server",
            "image": engine.image(spec),
            "command": engine.command(),
            "args": engine.args(self._engine_input(resolved)),
            "ports": [{"name": "http", "containerPort": SERVING_PORT, "protocol": "TCP"}],
            "env": [{"name": "HF_HOME", "value": CACHE_MOUNT}, *common.credential_env(spec)],
            "volumeMounts": mounts,
            "securityContext": common.container_security_context(engine),
            **common.probes("http"),
        }
        resources = common.container_resources(resolved)
        if resources:
            container["resources"] = resources
        pod_spec: dict[str, Any] = {
            "containers": [container],
            "volumes": volumes,
            "automountServiceAccountToken": False,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            # Give in-flight generations time to finish when a pod is replaced.
            "terminationGracePeriodSeconds": 120,
        }
        for key, value in (
            ("nodeSelector", common.node_selector(spec)),
            ("tolerations", common.tolerations(spec)),
        ):
            if value:
                pod_spec[key] = value
        selector = common.selector_labels(resolved)
        deployment: dict[str, Any] = {
            "apiVersion": DEPLOYMENT.api_version,
            "kind": DEPLOYMENT.kind,
            "metadata": common.metadata(resolved),
            "spec": {
                "selector": {"matchLabels": selector},
                # A GPU pod cannot surge on a full node: replace in place, one at a time.
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                "template": {"metadata": {"labels": common.labels(resolved)}, "spec": pod_spec},
            },
        }
        if isinstance(scale, Fixed):
            # Only while the operator owns the count: an autoscaler's changes must not be applied over.
            deployment["spec"]["replicas"] = scale.replicas
        service = {
            "apiVersion": SERVICE.api_version,
            "kind": SERVICE.kind,
            "metadata": common.metadata(resolved),
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        }
        return [deployment, service]
