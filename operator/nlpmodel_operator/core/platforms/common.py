"""Pieces of a revision's pod shared by all platforms: labels, credentials, GPUs, placement, storage."""

from __future__ import annotations

from typing import Any

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.engines import Engine
from nlpmodel_operator.core.gpus import GPU_PRODUCTS
from nlpmodel_operator.core.hostresources import host_requests
from nlpmodel_operator.core.resolved import Resolved

# Secret keys read per URI scheme; the operator only references them (secretKeyRef), never reads them.
CREDENTIAL_KEYS: dict[str, tuple[str, ...]] = {
    "hf": ("HF_TOKEN",),
    "s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    "gs": ("GOOGLE_APPLICATION_CREDENTIALS_JSON",),
    "pvc": (),
}
# Optional keys: used when present in the Secret (S3-compatible stores need an endpoint).
OPTIONAL_CREDENTIAL_KEYS: dict[str, tuple[str, ...]] = {"s3": ("AWS_ENDPOINT_URL", "AWS_REGION")}

MODEL_MOUNT = "/mnt/models"
SHM_VOLUME = "dshm"


def scheme_of(uri: str) -> str:
    return uri.split("://", 1)[0]


def path_of(uri: str) -> str:
    return uri.split("://", 1)[1]


def labels(resolved: Resolved) -> dict[str, str]:
    return {
        c.LABEL_NAME: "nlpmodel",
        c.LABEL_INSTANCE: resolved.name,
        c.LABEL_COMPONENT: "predictor",
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_MODEL: resolved.name,
        c.LABEL_REVISION: resolved.revision,
    }


def selector_labels(resolved: Resolved) -> dict[str, str]:
    """The labels that select exactly one revision's pods (immutable in a Deployment selector)."""
    return {c.LABEL_MODEL: resolved.name, c.LABEL_REVISION: resolved.revision}


def metadata(resolved: Resolved) -> dict[str, Any]:
    return {
        "name": resolved.revision_name,
        "namespace": resolved.namespace,
        "labels": labels(resolved),
        "annotations": {c.ANNOTATION_TEMPLATE_HASH: resolved.revision},
    }


def credential_env(spec: NLPModelSpec) -> list[dict[str, Any]]:
    secret = spec.model.credentials_secret
    if secret is None:
        return []
    scheme = scheme_of(spec.model.uri)
    env = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for key in CREDENTIAL_KEYS[scheme]
    ]
    env += [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
        for key in OPTIONAL_CREDENTIAL_KEYS.get(scheme, ())
    ]
    return env


def container_resources(resolved: Resolved) -> dict[str, Any]:
    """GPUs, and cpu/memory requests: the spec's, else derived from the plan (`core.hostresources`)."""
    spec = resolved.spec
    host = host_requests(spec, resolved.plan)
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if host.cpu:
        requests["cpu"] = host.cpu
    if host.memory:
        requests["memory"] = host.memory
    if host.memory_limit:
        limits["memory"] = host.memory_limit
    if spec.resources.gpu.count > 0:
        requests[c.GPU_RESOURCE] = str(spec.resources.gpu.count)
        limits[c.GPU_RESOURCE] = str(spec.resources.gpu.count)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def node_selector(spec: NLPModelSpec) -> dict[str, str]:
    product = spec.resources.gpu.product
    if spec.resources.gpu.count == 0 or product is None:
        return {}
    return {c.GPU_PRODUCT_NODE_LABEL: GPU_PRODUCTS[product].node_label_value}


def tolerations(spec: NLPModelSpec) -> list[dict[str, Any]]:
    # GPU node pools are commonly tainted nvidia.com/gpu:NoSchedule (GKE, EKS, AKS).
    if spec.resources.gpu.count == 0:
        return []
    return [{"key": c.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]


def container_security_context(engine: Engine) -> dict[str, Any]:
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # The upstream vLLM image runs as root; our own runtime image runs as an unprivileged user.
    if engine.name == "transformers":
        context["runAsNonRoot"] = True
        context["runAsUser"] = 1000
    return context


def shm_volume(spec: NLPModelSpec) -> list[dict[str, Any]]:
    """Tensor parallelism exchanges tensors through /dev/shm, which is 64 MiB in a default pod."""
    if spec.resources.gpu.count < 2:
        return []
    return [{"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}]


def shm_mount(spec: NLPModelSpec) -> list[dict[str, Any]]:
    if spec.resources.gpu.count < 2:
        return []
    return [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]


# Both engines answer 200 here once the model is loaded (vLLM's /health; our runtime mirrors it).
HEALTH_PATH = "/health"


def probes(port_name: str) -> dict[str, Any]:
    """Model loading can take many minutes: a startup probe guards liveness until the engine is up."""

    def check() -> dict[str, Any]:
        return {"httpGet": {"path": HEALTH_PATH, "port": port_name}}

    return {
        "startupProbe": {
            **check(),
            "periodSeconds": 10,
            "failureThreshold": 180,
        },
        "readinessProbe": {
            **check(),
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            **check(),
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
    }
