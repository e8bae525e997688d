"""CPU and memory requests of model pods: the spec's when given, else derived from the plan for GPU
models (core.hostresources), on every platform that renders pods."""

from __future__ import annotations

import itertools
import math
from typing import Any, get_args

import pytest

from nlpmodel_operator.api.spec import NLPModelSpec, Platform, RouterName
from nlpmodel_operator.core.gpus import GIB
from nlpmodel_operator.core.hostresources import HOST_BYTES_PER_GPU, HOST_CPUS_PER_GPU, host_requests
from nlpmodel_operator.core.platforms import PLATFORMS, platform_of
from nlpmodel_operator.core.render import render_revision
from nlpmodel_operator.core.resolve import resolve
from nlpmodel_operator.core.resolved import Resolved

LLAMA_8B = "hf://meta-llama/Llama-3.1-8B-Instruct"
BGE = "hf://BAAI/bge-base-en-v1.5"
UNKNOWN_ARCH = "hf://someone/unknown-model"


def resolved(uri: str = LLAMA_8B, **sections: Any) -> Resolved:
    raw: dict[str, Any] = {"model": {"uri": uri}, **sections}
    resolution = resolve("chat", "ml", NLPModelSpec.model_validate(raw))
    assert resolution.resolved is not None, [str(p) for p in resolution.problems]
    return resolution.resolved


def llama_8b_memory(gpus: int, quantization: str = "none") -> str:
    plan = resolved(
        quantization={"method": quantization},
        resources={"gpu": {"count": gpus, "product": "nvidia-h100-80gb"}},
    ).plan
    assert plan is not None
    return f"{math.ceil((plan.weight_bytes + HOST_BYTES_PER_GPU * gpus) / GIB)}Gi"


@pytest.mark.parametrize(
    ("uri", "sections", "cpu", "memory", "limit"),
    [
        pytest.param(LLAMA_8B, {}, str(HOST_CPUS_PER_GPU), llama_8b_memory(1), None, id="gpus-only"),
        pytest.param(
            LLAMA_8B,
            {"resources": {"gpu": {"count": 2, "product": "nvidia-h100-80gb"}}},
            str(2 * HOST_CPUS_PER_GPU),
            llama_8b_memory(2),
            None,
            id="two-gpus",
        ),
        pytest.param(
            LLAMA_8B,
            {"quantization": {"method": "awq"}},
            str(HOST_CPUS_PER_GPU),
            llama_8b_memory(1, "awq"),
            None,
            id="awq-weights-are-smaller",
        ),
        pytest.param(
            LLAMA_8B, {"resources": {"cpu": "6"}}, "6", llama_8b_memory(1), None, id="user-cpu-wins"
        ),
        pytest.param(
            LLAMA_8B,
            {"resources": {"memory": "40Gi"}},
            str(HOST_CPUS_PER_GPU),
            "40Gi",
            "40Gi",
            id="user-memory-wins-and-limits",
        ),
        pytest.param(
            LLAMA_8B,
            {"resources": {"cpu": "500m", "memory": "8Gi"}},
            "500m",
            "8Gi",
            "8Gi",
            id="user-both",
        ),
        pytest.param(
            BGE,
            {"resources": {"gpu": {"count": 0}}, "runtime": {"engine": "transformers"}, "task": "embed"},
            None,
            None,
            None,
            id="cpu-model-left-as-written",
        ),
        pytest.param(
            UNKNOWN_ARCH, {}, str(HOST_CPUS_PER_GPU), None, None, id="unknown-architecture-no-memory"
        ),
    ],
)
def test_requests(
    uri: str, sections: dict[str, Any], cpu: str | None, memory: str | None, limit: str | None
) -> None:
    r = resolved(uri, **sections)
    host = host_requests(r.spec, r.plan)
    assert (host.cpu, host.memory, host.memory_limit) == (cpu, memory, limit)
    assert host.cpu_why
    assert host.memory_why


def test_the_derived_memory_is_the_weights_plus_a_worker_per_gpu() -> None:
    r = resolved()
    assert r.plan is not None
    host = host_requests(r.spec, r.plan)
    assert host.memory is not None
    gib = int(host.memory.removesuffix("Gi"))
    assert (
        r.plan.weight_bytes + HOST_BYTES_PER_GPU <= gib * GIB < r.plan.weight_bytes + HOST_BYTES_PER_GPU + GIB
    )
    assert "derived" in host.memory_why
    assert "spec.resources.memory" in host.memory_why


def _containers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for obj in objects:
        if obj["kind"] == "InferenceService":
            out.append(obj["spec"]["predictor"]["model"])
        elif obj["kind"] == "Deployment":
            out.append(obj["spec"]["template"]["spec"]["containers"][0])
        elif obj["kind"] == "LLMInferenceService":
            out.append(obj["spec"]["template"]["containers"][0])
    return out


def _serving_per_platform() -> dict[str, dict[str, str]]:
    """One valid `serving` section for each registered platform (every platform x router tried)."""
    found: dict[str, dict[str, str]] = {}
    for platform, router in itertools.product(get_args(Platform), get_args(RouterName)):
        serving = {"platform": platform, "router": router}
        try:
            spec = NLPModelSpec.model_validate({"model": {"uri": LLAMA_8B}, "serving": serving})
        except ValueError:
            continue
        found.setdefault(platform_of(spec.serving).name, serving)
    return found


SERVING = _serving_per_platform()


def test_every_registered_platform_is_covered() -> None:
    assert set(SERVING) == {p.name for p in PLATFORMS}


@pytest.mark.parametrize("platform", sorted(SERVING))
def test_every_platform_that_renders_pods_requests_cpu_and_memory(platform: str) -> None:
    r = resolved(serving=SERVING[platform])
    containers = _containers(render_revision(r))
    assert containers, f"{platform} rendered no pod"
    host = host_requests(r.spec, r.plan)
    for container in containers:
        resources = container["resources"]
        assert resources["requests"]["cpu"] == host.cpu
        assert resources["requests"]["memory"] == host.memory
        assert "memory" not in resources["limits"]  # a derived figure is never a limit
        assert resources["limits"]["nvidia.com/gpu"] == "1"
