"""GPU products the operator plans for, keyed by the names used in `spec.resources.gpu.product`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

MIB: Final = 1 << 20
GIB: Final = 1 << 30

# Device memory a process holds once CUDA is initialised (context, kernels, cuBLAS handle), outside
# what PyTorch allocates. Measured on an H200 (../shared/gpu/gpu-memory-truth.json,
# env.used_after_init_bytes = total - free after torch.cuda.init()); the context size barely depends
# on the card, so it is used for every product.
CUDA_CONTEXT_BYTES: Final = 650_969_088


@dataclass(frozen=True)
class GPUProduct:
    """One GPU product: memory as CUDA reports it and the node label value that selects it."""

    name: str
    memory_bytes: int  # torch.cuda.get_device_properties(i).total_memory, not the marketing size
    node_label_value: str  # value of the nvidia.com/gpu.product label (GFD: NVML name, spaces -> '-')
    fp8_compute: bool  # native FP8 tensor cores (Ada, Hopper); Ampere runs fp8 weights weight-only
    compute_capability: tuple[int, int]

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB


def _mib(n: int) -> int:
    return n * MIB


# total_memory figures: H200 is measured (gpu-memory-truth.json, env.gpu_total_memory_props). The
# others are the "GPU 0 has a total capacity of X GiB" that PyTorch prints from total_memory in its
# out-of-memory errors, rounded to the MiB (drivers differ by a few hundred MiB; the smaller
# figures seen were kept):
#   A10G 21.98 GiB (AWS g5), L4 22.03 GiB (ArcInstitute/evo2#190), L40S 44.42 GiB
#   (stepfun-ai/Step-Video-T2V#8), A100-40GB 39.50 GiB (TianheWu/CoSeR#10), A100-80GB 79.25 GiB
#   (HiDream-ai/VAREdit#6), H100-80GB-HBM3 79.11 GiB (vllm-project/vllm#27508).
_PRODUCTS: Final = (
    GPUProduct("nvidia-a10g", _mib(22_508), "NVIDIA-A10G", fp8_compute=False, compute_capability=(8, 6)),
    GPUProduct("nvidia-l4", _mib(22_559), "NVIDIA-L4", fp8_compute=True, compute_capability=(8, 9)),
    GPUProduct("nvidia-l40s", _mib(45_486), "NVIDIA-L40S", fp8_compute=True, compute_capability=(8, 9)),
    GPUProduct(
        "nvidia-a100-40gb",
        _mib(40_448),
        "NVIDIA-A100-SXM4-40GB",
        fp8_compute=False,
        compute_capability=(8, 0),
    ),
    GPUProduct(
        "nvidia-a100-80gb",
        _mib(81_152),
        "NVIDIA-A100-SXM4-80GB",
        fp8_compute=False,
        compute_capability=(8, 0),
    ),
    GPUProduct(
        "nvidia-h100-80gb", _mib(81_009), "NVIDIA-H100-80GB-HBM3", fp8_compute=True, compute_capability=(9, 0)
    ),
    GPUProduct(
        "nvidia-h200-141gb", 150_109_880_320, "NVIDIA-H200", fp8_compute=True, compute_capability=(9, 0)
    ),
)

GPU_PRODUCTS: Final[Mapping[str, GPUProduct]] = MappingProxyType({p.name: p for p in _PRODUCTS})


def product(name: str) -> GPUProduct:
    """The product called `name`; ValueError listing the known names otherwise."""
    try:
        return GPU_PRODUCTS[name]
    except KeyError:
        raise ValueError(f"unknown GPU product {name!r}; known: {', '.join(GPU_PRODUCTS)}") from None
