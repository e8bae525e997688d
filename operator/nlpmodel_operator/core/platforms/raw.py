"""Raw platform: a Deployment and a Service per revision running the engine's server directly."""

from __future__ import annotations

from typing import Any

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.autoscaling import Fixed, Scale, ScalingSupport
from nlpmodel_operator.core.engines import SERVING_PORT, EngineInput, engine_for
from nlpmodel_operator.core.platforms import common
from nlpmodel_operator.core.problems import Problem
from nlpmodel_operator.core.resolved import Resolved

MODEL_VOLUME = "model"
CACHE_VOLUME = "hf-cache"
CACHE_MOUNT = "/var/cache/huggingface"


class RawPlatform:
    name = "raw"

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

    def render(self, resolved: Resolved, scale: Scale, support: ScalingSupport) -> list[dict[str, Any]]:
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
        resources = common.container_resources(spec)
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
            "apiVersion": "apps/v1",
            "kind": "Deployment",
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
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": common.metadata(resolved),
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        }
        return [deployment, service]
