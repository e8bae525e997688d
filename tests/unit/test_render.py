"""Rendering of a revision's children per platform: names, labels, GPUs, placement, credentials."""

from __future__ import annotations

from typing import Any

import pytest

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.render import render_revision
from nlpmodel_operator.core.resolve import resolve
from nlpmodel_operator.core.resolved import Resolved


def resolved(name: str = "chat", **sections: Any) -> Resolved:
    raw: dict[str, Any] = {"model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"}}
    raw.update(sections)
    resolution = resolve(name, "ml", NLPModelSpec.model_validate(raw))
    assert resolution.problems == [], [str(p) for p in resolution.problems]
    assert resolution.resolved is not None
    return resolution.resolved


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


def container_of(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "InferenceService":
        model: dict[str, Any] = obj["spec"]["predictor"]["model"]
        return model
    container: dict[str, Any] = obj["spec"]["template"]["spec"]["containers"][0]
    return container


def pod_spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = (
        obj["spec"]["predictor"] if obj["kind"] == "InferenceService" else obj["spec"]["template"]["spec"]
    )
    return spec


@pytest.mark.parametrize(
    ("platform", "kinds"),
    [("kserve", ["InferenceService"]), ("raw", ["Deployment", "Service"])],
)
def test_children_are_named_by_revision_and_labelled(platform: str, kinds: list[str]) -> None:
    r = resolved(serving={"platform": platform})
    objects = render_revision(r)
    assert [o["kind"] for o in objects] == kinds
    for obj in objects:
        meta = obj["metadata"]
        assert meta["name"] == f"chat-{r.revision}"
        assert meta["namespace"] == "ml"
        assert meta["labels"][c.LABEL_MODEL] == "chat"
        assert meta["labels"][c.LABEL_REVISION] == r.revision
        assert "ownerReferences" not in meta  # the operator adopts; `nlpctl render` output stays portable


def test_kserve_inference_service() -> None:
    r = resolved(
        model={
            "uri": "hf://org/llama-3.1-8b-instruct-awq",
            "revision": "abc123",
            "credentialsSecret": "hf-token",
        },
        quantization={"method": "awq"},
        resources={"gpu": {"count": 1, "product": "nvidia-l4"}},
        scaling={"minReplicas": 1, "maxReplicas": 3},
    )
    isvc = by_kind(render_revision(r))["InferenceService"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)
    model = predictor["model"]
    assert model["storageUri"] == "hf://org/llama-3.1-8b-instruct-awq:abc123"
    assert model["runtime"] == "nlpmodel-vllm"
    assert model["modelFormat"] == {"name": "vllm"}
    assert model["image"] == "vllm/vllm-openai:v0.33.0"
    assert model["args"][0] == "/mnt/models"  # vllm serve's positional model (0.33 deprecates --model)
    assert "--model" not in model["args"]
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert model["env"] == [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}}}
    ]


@pytest.mark.parametrize(
    ("uri", "model_arg", "extra"),
    [
        ("hf://BAAI/bge-base-en-v1.5", "BAAI/bge-base-en-v1.5", {}),
        ("s3://models/llama", "s3://models/llama", {"--load-format": "runai_streamer"}),
        ("pvc://weights/llama/8b", "/mnt/models/llama/8b", {}),
    ],
)
def test_raw_model_location(uri: str, model_arg: str, extra: dict[str, str]) -> None:
    r = resolved(
        model={
            "uri": uri,
            "architecture": {
                "params": 10**8,
                "layers": 4,
                "hiddenSize": 256,
                "numHeads": 4,
                "numKVHeads": 4,
                "headDim": 64,
                "vocabSize": 1000,
            },
        },
        serving={"platform": "raw"},
    )
    deployment = by_kind(render_revision(r))["Deployment"]
    args = container_of(deployment)["args"]
    assert args[0] == model_arg
    assert "--model" not in args
    for flag, value in extra.items():
        assert args[args.index(flag) + 1] == value
    volumes = {v["name"]: v for v in pod_spec_of(deployment)["volumes"]}
    if uri.startswith("pvc://"):
        assert volumes["model"]["persistentVolumeClaim"] == {"claimName": "weights", "readOnly": True}
    else:
        assert "model" not in volumes


def test_raw_deployment_and_service_select_one_revision() -> None:
    r = resolved(serving={"platform": "raw"}, scaling={"minReplicas": 2, "maxReplicas": 2})
    objs = by_kind(render_revision(r))
    deployment, service = objs["Deployment"], objs["Service"]
    selector = {c.LABEL_MODEL: "chat", c.LABEL_REVISION: r.revision}
    assert deployment["spec"]["selector"]["matchLabels"] == selector
    assert service["spec"]["selector"] == selector
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert deployment["spec"]["replicas"] == 2
    container = container_of(deployment)
    assert container["command"] == ["vllm", "serve"]
    assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_tensor_parallel_gets_shared_memory_and_gpu_count() -> None:
    r = resolved(
        model={"uri": "hf://meta-llama/Llama-3.1-70B-Instruct"},
        quantization={"method": "fp8"},
        resources={"gpu": {"count": 4, "product": "nvidia-h100-80gb"}},
    )
    isvc = by_kind(render_revision(r))["InferenceService"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["args"][model["args"].index("--tensor-parallel-size") + 1] == "4"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert isvc["spec"]["predictor"]["volumes"][0]["emptyDir"]["medium"] == "Memory"
    assert model["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]


def test_cpu_model_has_no_gpu_resources_or_placement() -> None:
    r = resolved(
        task="embed",
        model={"uri": "hf://BAAI/bge-base-en-v1.5"},
        runtime={"engine": "transformers"},
        resources={"gpu": {"count": 0}, "cpu": "2", "memory": "4Gi"},
    )
    isvc = by_kind(render_revision(r))["InferenceService"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    assert "nodeSelector" not in isvc["spec"]["predictor"]
    assert "tolerations" not in isvc["spec"]["predictor"]
    assert model["runtime"] == "nlpmodel-transformers"
    assert model["securityContext"]["runAsNonRoot"] is True


def test_s3_credentials_are_referenced_never_copied() -> None:
    r = resolved(model={"uri": "s3://bucket/llama-3.1-8b", "credentialsSecret": "s3-creds"})
    env = container_of(render_revision(r)[0])["env"]
    assert [(e["name"], e["valueFrom"]["secretKeyRef"]["name"]) for e in env] == [
        ("AWS_ACCESS_KEY_ID", "s3-creds"),
        ("AWS_SECRET_ACCESS_KEY", "s3-creds"),
        ("AWS_ENDPOINT_URL", "s3-creds"),
        ("AWS_REGION", "s3-creds"),
    ]
    assert all("value" not in e for e in env)


def test_rendering_is_deterministic() -> None:
    assert render_revision(resolved()) == render_revision(resolved())
