"""GPU product table: names, node labels, memory as CUDA reports it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from nlpmodel_operator.api.constants import GPU_PRODUCT_NODE_LABEL as NODE_LABEL
from nlpmodel_operator.api.spec import GPUProductName
from nlpmodel_operator.core.gpus import CUDA_CONTEXT_BYTES, GIB, GPU_PRODUCTS, product

TRUTH_FILE = Path(__file__).resolve().parents[2].parent / "shared" / "gpu" / "gpu-memory-truth.json"

PRODUCTS = [
    # name, nvidia.com/gpu.product value, fp8 tensor cores, compute capability, total_memory bytes
    # 22,508 MiB = 21.98 GiB
    ("nvidia-a10g", "NVIDIA-A10G", False, (8, 6), 22_508 * 2**20),
    # 22,559 MiB = 22.03 GiB
    ("nvidia-l4", "NVIDIA-L4", True, (8, 9), 22_559 * 2**20),
    # 45,486 MiB = 44.42 GiB
    ("nvidia-l40s", "NVIDIA-L40S", True, (8, 9), 45_486 * 2**20),
    # 40,448 MiB = 39.50 GiB
    ("nvidia-a100-40gb", "NVIDIA-A100-SXM4-40GB", False, (8, 0), 40_448 * 2**20),
    # 81,152 MiB = 79.25 GiB
    ("nvidia-a100-80gb", "NVIDIA-A100-SXM4-80GB", False, (8, 0), 81_152 * 2**20),
    # 81,009 MiB = 79.11 GiB
    ("nvidia-h100-80gb", "NVIDIA-H100-80GB-HBM3", True, (9, 0), 81_009 * 2**20),
    # measured: gpu-memory-truth.json env.gpu_total_memory_props = 139.80 GiB
    ("nvidia-h200-141gb", "NVIDIA-H200", True, (9, 0), 150_109_880_320),
]


@pytest.mark.parametrize(
    ("name", "label", "fp8", "capability", "memory"), [pytest.param(*row, id=row[0]) for row in PRODUCTS]
)
def test_product_table(name: str, label: str, fp8: bool, capability: tuple[int, int], memory: int) -> None:
    gpu = product(name)
    assert (gpu.name, gpu.node_label_value, gpu.fp8_compute, gpu.compute_capability, gpu.memory_bytes) == (
        name,
        label,
        fp8,
        capability,
        memory,
    )
    # Ada (8.9) and Hopper (9.0) have FP8 tensor cores, Ampere (8.0, 8.6) does not.
    assert gpu.fp8_compute == (gpu.compute_capability >= (8, 9))


def test_products_are_exactly_the_api_enum() -> None:
    assert tuple(GPU_PRODUCTS) == get_args(GPUProductName) == tuple(row[0] for row in PRODUCTS)


@pytest.mark.parametrize(
    ("name", "marketing_gb"),
    [
        pytest.param("nvidia-a10g", 24, id="a10g"),
        pytest.param("nvidia-l4", 24, id="l4"),
        pytest.param("nvidia-l40s", 48, id="l40s"),
        pytest.param("nvidia-a100-40gb", 40, id="a100-40gb"),
        pytest.param("nvidia-a100-80gb", 80, id="a100-80gb"),
        pytest.param("nvidia-h100-80gb", 80, id="h100"),
        pytest.param("nvidia-h200-141gb", 141, id="h200"),
    ],
)
def test_cuda_reports_less_than_the_marketing_size(name: str, marketing_gb: int) -> None:
    gpu = product(name)
    # total_memory is below the marketing size in GiB and within 10 % of it
    assert 0.9 * marketing_gb * GIB < gpu.memory_bytes < marketing_gb * GIB
    assert gpu.memory_gib == pytest.approx(gpu.memory_bytes / 2**30)


def test_unknown_product_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown GPU product 'nvidia-t4'; known: nvidia-a10g, nvidia-l4"):
        product("nvidia-t4")


def test_node_label_name() -> None:
    assert NODE_LABEL == "nvidia.com/gpu.product"


@pytest.mark.skipif(not TRUTH_FILE.is_file(), reason=f"measured GPU data not present at {TRUTH_FILE}")
def test_measured_device_facts() -> None:
    env = json.loads(TRUTH_FILE.read_text())["env"]
    assert env["gpu_name"].replace(" ", "-") == product("nvidia-h200-141gb").node_label_value
    assert env["gpu_total_memory_props"] == product("nvidia-h200-141gb").memory_bytes
    assert env["used_after_init_bytes"] == CUDA_CONTEXT_BYTES
