"""GPU planner: weight bytes per method, KV bytes per token, fit / TP / concurrency, messages.

Expected figures are computed by hand in the table comments. The last section checks the planner
against GPU memory measured on an H200 (../shared/gpu/gpu-memory-truth.json).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nlpmodel_operator.api import spec
from nlpmodel_operator.core.catalog import CATALOG, Architecture, lookup
from nlpmodel_operator.core.gpus import GIB, GPU_PRODUCTS, MIB
from nlpmodel_operator.core.planner import (
    KV_CACHE_DTYPES,
    MIN_USEFUL_SEQUENCES,
    QUANT_METHODS,
    KVCacheDtype,
    PlanRequest,
    QuantMethod,
    activation_bytes,
    engine_batch_defaults,
    format_bytes,
    kv_bytes_per_token,
    plan,
    valid_tensor_parallel_sizes,
    weight_breakdown,
    weight_bytes,
)

TRUTH_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "gpu"
TRUTH_FILE = TRUTH_DIR / "gpu-memory-truth.json"


def arch(key: str) -> Architecture:
    return CATALOG[key].architecture


def request(
    key: str,
    method: QuantMethod = "none",
    gpu: str | None = "nvidia-h100-80gb",
    count: int = 1,
    *,
    kv: KVCacheDtype = "auto",
    utilization: float = 0.9,
    max_model_len: int = 8192,
) -> PlanRequest:
    return PlanRequest(
        architecture=arch(key),
        quantization=method,
        kv_cache_dtype=kv,
        gpu_product=gpu,
        gpu_count=count,
        gpu_memory_utilization=utilization,
        max_model_len=max_model_len,
    )


def test_method_and_dtype_tuples_are_the_api_enums() -> None:
    assert QUANT_METHODS == get_args(spec.QuantizationMethod) == get_args(QuantMethod)
    assert KV_CACHE_DTYPES == get_args(spec.KVCacheDtype) == get_args(KVCacheDtype)


# Llama 3.1 8B building blocks used below:
#   quantizable Linear weights q = 32 layers x (4096·6144 qkv + 4096·4096 o + 3·4096·14336 mlp) = 6,979,321,856
#   output rows per layer 4096+1024+1024+4096+14336+14336+4096 = 43,008; x32 = 1,376,256
#   16-bit rest = 2 x (2 x 525,336,576 embed/head + 266,240 norms) = 2,101,878,784
WEIGHTS = [
    # 2 bytes x 8,030,261,248
    ("llama-3.1-8b", "none", 128, False, 16_060_522_496),
    # q + 4·rows 5,505,024 + 4·224 modules 896 + 2,101,878,784
    ("llama-3.1-8b", "fp8", 128, False, 9_086_706_560),
    # q/2 3,489,660,928 + (q/128 = 54,525,952 groups·cols) x (2 B scale + 0.5 B zero) 136,314,880 + rest
    ("llama-3.1-8b", "awq", 128, False, 5_727_854_592),
    # awq + g_idx 4 B x 32·(6·4096 + 14336) input rows = 4,980,736
    ("llama-3.1-8b", "gptq", 128, False, 5_732_835_328),
    # per channel: 3,489,660,928 + 1,376,256 cols x 2.5 B = 3,440,640 + rest
    ("llama-3.1-8b", "awq", -1, False, 5_594_980_352),
    # q + SCB 4·1,376,256 = 5,505,024 + rest (measured 9,086,706,688)
    ("llama-3.1-8b", "bitsandbytes-int8", 128, False, 9_086_705_664),
    # q/2 + absmax 4 B x q/64 = 436,207,616 + 224 x 64 B code tables + rest
    ("llama-3.1-8b", "bitsandbytes-nf4", 128, False, 6_027_761_664),
    # q/2 + q/64 B 8-bit absmax 109,051,904 + 4 B x 425,984 nested absmax + 224 x 1,088 B codes + rest
    ("llama-3.1-8b", "bitsandbytes-nf4", 128, True, 5_702_539_264),
    # ceil((8,030,261,248 - 266,240) x 4.85 / 8) = 4,868,184,474 + 4 B x 266,240 F32 norms
    ("llama-3.1-8b", "gguf", 128, False, 4_869_249_434),
    # q = 68,451,041,280; rows 80·83,968 x 4 B = 26,869,760; 560 modules x 4 B; rest 4,205,330,432
    ("llama-3.1-70b", "fp8", 128, False, 72_683_243_712),
    # 2 x 70,553,706,496
    ("llama-3.1-70b", "none", 128, False, 141_107_412_992),
    # q/2 3,262,644,224 + 28·1,820,672 groups·cols x 2.5 B 127,447,040 + rest incl. 129,024 biases 2,180,656,128
    ("qwen2.5-7b", "awq", 128, False, 5_570_747_392),
    # experts quantized, router kept: 23,219,666,944 + 362,807,296 x 2.5 B 907,018,240 + 526,917,632
    ("mixtral-8x7b", "awq", 128, False, 24_653_602_816),
    # 2 x 109,482,240
    ("bert-base-uncased", "none", 128, False, 218_964_480),
    # 2 x 1,235,814,400
    ("llama-3.2-1b", "none", 128, False, 2_471_628_800),
    # 973,078,528 + 4 x 376,832 rows + 2 x (262,668,288 + 67,584) (measured 1,500,058,624)
    ("llama-3.2-1b", "bitsandbytes-int8", 128, False, 1_500_057_600),
]


@pytest.mark.parametrize(
    ("key", "method", "group_size", "double_quant", "expected"),
    [pytest.param(*row, id=f"{row[0]}-{row[1]}-g{row[2]}{'-dq' if row[3] else ''}") for row in WEIGHTS],
)
def test_weight_bytes(
    key: str, method: QuantMethod, group_size: int, double_quant: bool, expected: int
) -> None:
    assert weight_bytes(arch(key), method, group_size, double_quant) == expected


@pytest.mark.parametrize(
    ("method", "quantized", "state", "unquantized"),
    [
        pytest.param("none", 0, 0, 16_060_522_496, id="none"),
        pytest.param("bitsandbytes-int8", 6_979_321_856, 5_505_024, 2_101_878_784, id="int8"),
        pytest.param("bitsandbytes-nf4", 3_489_660_928, 436_221_952, 2_101_878_784, id="nf4"),
    ],
)
def test_weight_breakdown(method: QuantMethod, quantized: int, state: int, unquantized: int) -> None:
    parts = weight_breakdown(arch("llama-3.1-8b"), method)
    assert (parts.quantized_bytes, parts.quant_state_bytes, parts.unquantized_bytes) == (
        quantized,
        state,
        unquantized,
    )
    assert parts.total == quantized + state + unquantized


KV = [
    # 2 x layers x kv_heads x head_dim x bytes
    ("llama-3.2-1b", "auto", 32_768),  # 2·16·8·64·2
    ("llama-3.2-3b", "auto", 114_688),  # 2·28·8·128·2
    ("llama-3.1-8b", "auto", 131_072),  # 2·32·8·128·2
    ("llama-3.1-8b", "bfloat16", 131_072),
    ("llama-3.1-8b", "float16", 131_072),
    ("llama-3.1-8b", "fp8", 65_536),  # 2·32·8·128·1
    ("llama-3.1-8b", "fp8_e4m3", 65_536),
    ("llama-3.1-8b", "fp8_e5m2", 65_536),
    ("llama-3.1-70b", "auto", 327_680),  # 2·80·8·128·2
    ("llama-3.1-70b", "fp8", 163_840),
    ("qwen2.5-7b", "auto", 57_344),  # 2·28·4·128·2
    ("qwen2.5-72b", "fp8_e5m2", 163_840),  # 2·80·8·128·1
    ("mistral-7b-v0.3", "auto", 131_072),
    ("mixtral-8x7b", "auto", 131_072),  # experts do not add KV
    ("bert-base-uncased", "auto", 0),  # encoders have no KV cache
    ("bge-reranker-base", "fp8", 0),
]


@pytest.mark.parametrize(
    ("key", "dtype", "expected"), [pytest.param(*row, id=f"{row[0]}-{row[1]}") for row in KV]
)
def test_kv_bytes_per_token(key: str, dtype: KVCacheDtype, expected: int) -> None:
    assert kv_bytes_per_token(arch(key), dtype) == expected


@pytest.mark.parametrize(
    ("key", "sizes"),
    [
        pytest.param("llama-3.1-8b", (1, 2, 4, 8), id="32-heads-8-kv"),
        pytest.param("llama-3.2-3b", (1, 2, 4, 8), id="24-heads-8-kv"),
        pytest.param("qwen2.5-7b", (1, 2, 4), id="28-heads-4-kv"),
        pytest.param("bert-base-uncased", (1, 2, 3, 4, 6, 12), id="12-heads-mha"),
    ],
)
def test_valid_tensor_parallel_sizes(key: str, sizes: tuple[int, ...]) -> None:
    assert valid_tensor_parallel_sizes(arch(key)) == sizes


@pytest.mark.parametrize(
    ("gpu", "defaults"),
    [
        pytest.param("nvidia-a10g", (2048, 256), id="a10g"),
        pytest.param("nvidia-l4", (2048, 256), id="l4"),
        pytest.param("nvidia-l40s", (2048, 256), id="l40s"),
        pytest.param("nvidia-a100-40gb", (2048, 256), id="a100-40gb"),
        pytest.param("nvidia-a100-80gb", (2048, 256), id="a100-80gb-excluded-by-vllm"),
        pytest.param("nvidia-h100-80gb", (8192, 1024), id="h100"),
        pytest.param("nvidia-h200-141gb", (8192, 1024), id="h200"),
    ],
)
def test_engine_batch_defaults(gpu: str, defaults: tuple[int, int]) -> None:
    assert engine_batch_defaults(GPU_PRODUCTS[gpu]) == defaults


# Per-GPU budget, e.g. Llama 3.1 8B bf16 on 1 x A10G, utilization 0.9, maxModelLen 8192:
#   floor(23,601,348,608 x 0.9)                       = 21,241,213,747
#   - CUDA context 650,969,088 - runtime 1 GiB 1,073,741,824
#   - activations 2048 tok x 2 B x (4·4096 + 4·14336) = 301,989,888
#   - sampler 256 seqs x 128,256 x 4 B                 = 131,334,144
#   usable = 19,083,178,803; - weights 16,060,522,496 = 3,022,656,307 free
#   one sequence 8192 x 131,072 = 1 GiB -> 2 concurrent sequences: it fits. At 32768 (4 GiB) it does not.
# Llama 3.1 8B AWQ on 1 x L4: floor(23,654,825,984 x 0.9) - 2,158,034,944 reserve = 19,131,308,441 usable;
#   - 5,727,854,592 weights = 13,403,453,849 -> 12 sequences of 1 GiB.
# Llama 3.1 70B fp8 on 4 x H100: floor(84,944,093,184 x 0.9) - (650,969,088 + 1 GiB
#   + 8192 x 2 x (4·8192 + 4·28672/4) + 1024 x 128,256 x 4) = 73,193,003,417 usable;
#   - 72,683,243,712/4 weights = 55,022,192,489 free x 4 GPUs / (8192 x 327,680) = 81 sequences.
SHORT_GPU_NAMES = {
    "a10g": "nvidia-a10g",
    "l4": "nvidia-l4",
    "l40s": "nvidia-l40s",
    "a100-40gb": "nvidia-a100-40gb",
    "a100-80gb": "nvidia-a100-80gb",
    "h100": "nvidia-h100-80gb",
    "h200": "nvidia-h200-141gb",
}
PLANS = [
    # key, method, kv, gpu, count, utilization, max_model_len, fits, min_tp, max_concurrent, usable/GPU
    ("llama-3.1-70b", "none", "auto", "h100", 1, 0.9, 8192, False, 2, 0, 71_783_717_273),
    ("llama-3.1-70b", "none", "auto", "h100", 2, 0.9, 8192, True, 2, 1, 72_723_241_369),
    ("llama-3.1-70b", "fp8", "auto", "h100", 1, 0.9, 8192, False, 2, 0, 71_783_717_273),
    ("llama-3.1-70b", "fp8", "auto", "h100", 4, 0.9, 8192, True, 2, 81, 73_193_003_417),
    ("llama-3.1-70b", "fp8", "auto", "h200", 1, 0.9, 8192, True, 1, 21, 130_432_925_696),
    ("llama-3.1-70b", "awq", "auto", "a100-80gb", 1, 0.9, 8192, True, 1, 12, 74_124_610_764),
    ("llama-3.1-8b", "awq", "auto", "l4", 1, 0.9, 8192, True, 1, 12, 19_131_308_441),
    ("llama-3.1-8b", "bitsandbytes-nf4", "auto", "l4", 1, 0.9, 8192, True, 1, 12, 19_131_308_441),
    ("llama-3.1-8b", "none", "auto", "a10g", 1, 0.9, 8192, True, 1, 2, 19_083_178_803),
    ("llama-3.1-8b", "none", "auto", "a10g", 1, 0.9, 32768, False, 2, 0, 19_083_178_803),
    ("llama-3.1-8b", "none", "fp8", "a10g", 1, 0.9, 32768, True, 1, 1, 19_083_178_803),
    ("llama-3.1-8b", "none", "auto", "h100", 1, 0.9, 131072, True, 1, 3, 72_991_676_825),
    # fp8 on Ampere runs weight-only (Marlin): allowed, no reason
    ("llama-3.1-8b", "fp8", "auto", "a100-40gb", 1, 0.9, 8192, True, 1, 25, 36_013_486_899),
    ("qwen2.5-7b", "none", "auto", "l40s", 1, 0.9, 32768, True, 1, 13, 40_676_451_942),
    ("qwen2.5-72b", "awq", "auto", "a100-40gb", 2, 0.9, 8192, True, 2, 11, 35_914_658_611),
    ("mixtral-8x7b", "none", "auto", "h100", 2, 0.9, 32768, True, 2, 12, 73_385_941_401),
    ("mixtral-8x7b", "awq", "auto", "l40s", 1, 0.9, 8192, True, 1, 14, 40_631_625_318),
    ("mistral-7b-v0.3", "none", "auto", "l4", 1, 0.9, 8192, True, 1, 4, 19_229_088_153),
    ("llama-3.2-3b", "none", "auto", "a10g", 1, 0.5, 8192, True, 1, 3, 9_760_079_872),
    # encoders: capacity counts sequences whose activations fit (no KV cache)
    ("bge-base-en-v1.5", "none", "auto", "l4", 1, 0.9, 512, True, 1, 1225, 19_501_717_913),
]


@pytest.mark.parametrize(
    (
        "key",
        "method",
        "kv",
        "gpu",
        "count",
        "utilization",
        "length",
        "fits",
        "min_tp",
        "concurrent",
        "usable",
    ),
    [pytest.param(*row, id="{}-{}-kv{}-{}x{}-u{}-{}".format(*row[:7])) for row in PLANS],
)
def test_plan(
    key: str,
    method: QuantMethod,
    kv: KVCacheDtype,
    gpu: str,
    count: int,
    utilization: float,
    length: int,
    fits: bool,
    min_tp: int,
    concurrent: int,
    usable: int,
) -> None:
    product = SHORT_GPU_NAMES[gpu]
    result = plan(request(key, method, product, count, kv=kv, utilization=utilization, max_model_len=length))
    assert (result.fits, result.tensor_parallel, result.min_tensor_parallel) == (fits, count, min_tp)
    assert result.max_concurrent_sequences == concurrent
    assert result.usable_bytes_per_gpu == usable
    assert result.gpu_memory_bytes == GPU_PRODUCTS[product].memory_bytes
    assert result.weight_bytes == weight_bytes(arch(key), method)
    assert result.weight_bytes_per_gpu == -(-result.weight_bytes // count)
    assert result.kv_bytes_per_sequence == kv_bytes_per_token(arch(key), kv) * length
    assert bool(result.reasons) == (not fits)
    if fits and arch(key).kind == "decoder":
        free = usable - result.weight_bytes_per_gpu
        assert result.kv_cache_bytes == count * free
        assert result.max_concurrent_sequences == result.kv_cache_bytes // result.kv_bytes_per_sequence


MESSAGES = [
    pytest.param(
        request("llama-3.1-70b", "none"),
        "weights need 131.4 GiB in 16-bit but 1 × nvidia-h100-80gb give 66.9 GiB usable per GPU at "
        "gpuMemoryUtilization 0.90: use gpu.count 4 or quantize to 4 bits (quantization.method awq or gptq)",
        id="70b-bf16-1xh100",
    ),
    pytest.param(
        request("llama-3.1-70b", "fp8"),
        "weights need 67.7 GiB in fp8 but 1 × nvidia-h100-80gb give 66.9 GiB usable per GPU at "
        "gpuMemoryUtilization 0.90: use gpu.count 2, quantize to 4 bits (quantization.method awq or gptq) "
        "or use gpu.product nvidia-h200-141gb",
        id="70b-fp8-1xh100",
    ),
    pytest.param(
        request("llama-3.1-70b", "awq", "nvidia-l4"),
        "weights need 37.0 GiB in awq but 1 × nvidia-l4 give 17.5 GiB usable per GPU at "
        "gpuMemoryUtilization 0.90: use gpu.count 4 or use gpu.product nvidia-h100-80gb",
        id="70b-awq-1xl4",
    ),
    pytest.param(
        # 32768 x 131,072 B = 4.0 GiB; free 3,022,656,307 B x 1 / 131,072 = 23,061 tokens -> 23,056 (16-token blocks)
        request("llama-3.1-8b", "none", "nvidia-a10g", max_model_len=32768),
        "one sequence of maxModelLen 32768 needs 4.0 GiB of KV cache per GPU but only 2.8 GiB is left after "
        "15.0 GiB of weights on 1 × nvidia-a10g at gpuMemoryUtilization 0.90: lower maxModelLen to 5760, "
        "use gpu.count 2 or use gpu.product nvidia-a100-40gb",
        id="8b-kv-too-long-for-a10g",
    ),
    pytest.param(
        request("llama-3.1-8b", "none", "nvidia-a10g", 3),
        "tensor parallel size 3 (gpu.count) must divide the model's 32 attention heads and 8 KV heads: "
        "use gpu.count 1, 2, 4 or 8",
        id="tp-3-of-32-heads",
    ),
    pytest.param(
        request("qwen2.5-7b", "none", "nvidia-h100-80gb", 8),
        "tensor parallel size 8 (gpu.count) must divide the model's 28 attention heads and 4 KV heads: "
        "use gpu.count 1, 2 or 4",
        id="tp-8-of-4-kv-heads",
    ),
    pytest.param(
        request("llama-3-8b", max_model_len=16384),
        "maxModelLen 16384 exceeds the 8192 tokens the model supports (max_position_embeddings): "
        "lower maxModelLen to 8192 or less",
        id="beyond-max-position",
    ),
    pytest.param(
        request("llama-3.1-8b", gpu=None, count=0),
        "the model has 8.0B parameters, too many to generate on CPU (decoders below 1.5B, encoders of any "
        "size): set resources.gpu.count to 1 or more",
        id="8b-on-cpu",
    ),
]


@pytest.mark.parametrize(("req", "message"), MESSAGES)
def test_reasons_tell_the_user_what_to_change(req: PlanRequest, message: str) -> None:
    result = plan(req)
    assert not result.fits
    assert result.reasons == (message,)
    assert result.max_concurrent_sequences == 0


@pytest.mark.parametrize(
    ("key", "method", "fits"),
    [
        pytest.param("llama-3.2-1b", "none", True, id="1b-decoder"),
        pytest.param("llama-3.2-1b", "bitsandbytes-int8", True, id="1b-int8"),
        pytest.param("bge-base-en-v1.5", "none", True, id="embedding-encoder"),
        pytest.param("e5-large-v2", "none", True, id="large-encoder"),
        pytest.param("bge-reranker-base", "none", True, id="reranker"),
        pytest.param("llama-3.2-3b", "none", False, id="3b-decoder"),
        pytest.param("llama-3.1-8b", "bitsandbytes-nf4", False, id="8b-even-4-bit"),
        pytest.param("mixtral-8x7b", "none", False, id="moe"),
    ],
)
def test_cpu_plans(key: str, method: QuantMethod, fits: bool) -> None:
    result = plan(request(key, method, gpu=None, count=0, max_model_len=512))
    assert result.fits is fits
    assert (result.tensor_parallel, result.min_tensor_parallel, result.gpu_memory_bytes) == (0, 0, 0)
    assert (result.weight_bytes_per_gpu, result.usable_bytes_per_gpu, result.kv_cache_bytes) == (0, 0, 0)
    assert result.weight_bytes == weight_bytes(arch(key), method)
    assert result.max_concurrent_sequences == (1 if fits else 0)


def test_a_product_with_zero_gpus_is_cpu() -> None:
    assert (
        plan(request("bert-base-uncased", gpu="nvidia-l4", count=0, max_model_len=512)).tensor_parallel == 0
    )


def test_encoders_have_no_kv_cache() -> None:
    result = plan(request("bge-base-en-v1.5", gpu="nvidia-l4", max_model_len=512))
    assert (result.kv_bytes_per_token, result.kv_bytes_per_sequence, result.kv_cache_bytes) == (0, 0, 0)
    # free 19,501,717,913 - 218,964,480 over one 512-token sequence's activations 512·2·(4·768 + 4·3072) B
    assert activation_bytes(arch("bge-base-en-v1.5"), 512) == 15_728_640
    assert result.max_concurrent_sequences == (19_501_717_913 - 218_964_480) // 15_728_640 == 1225


def test_to_status_keys() -> None:
    fitting = plan(request("llama-3.1-8b", "awq", "nvidia-l4")).to_status()
    assert list(fitting) == [
        "weightBytes",
        "weightBytesPerGPU",
        "kvBytesPerToken",
        "kvBytesPerSequence",
        "kvCacheBytes",
        "tensorParallel",
        "minTensorParallel",
        "maxConcurrentSequences",
        "fits",
        "gpuMemoryBytes",
        "usableBytesPerGPU",
    ]
    assert fitting["weightBytes"] == 5_727_854_592
    assert fitting["maxConcurrentSequences"] == 12
    assert fitting["fits"] is True
    failing = plan(request("llama-3.1-70b")).to_status()
    assert failing["fits"] is False
    assert isinstance(failing["reasons"], list)
    assert len(failing["reasons"]) == 1
    json.dumps(failing)  # status must serialise


@pytest.mark.parametrize(
    ("n", "text"),
    [
        pytest.param(0, "0.0 KiB", id="zero"),
        pytest.param(131_072, "128.0 KiB", id="kv-per-token-8b"),
        pytest.param(512 * 1024, "512.0 KiB", id="half-mib"),
        pytest.param(MIB, "1.0 MiB", id="mib"),
        pytest.param(650_969_088, "620.8 MiB", id="cuda-context"),
        pytest.param(GIB, "1.0 GiB", id="gib"),
        pytest.param(141_107_412_992, "131.4 GiB", id="70b-bf16"),
        pytest.param(150_109_880_320, "139.8 GiB", id="h200"),
    ],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"quantization": "int3"}, "unknown quantization method", id="method"),
        pytest.param({"kv_cache_dtype": "int4"}, "unknown kv cache dtype", id="kv-dtype"),
        pytest.param({"gpu_count": -1}, "gpu_count", id="negative-count"),
        pytest.param({"gpu_memory_utilization": 0.0}, "gpu_memory_utilization", id="zero-utilization"),
        pytest.param({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization", id="utilization-above-1"),
        pytest.param({"max_model_len": 0}, "max_model_len", id="zero-length"),
        pytest.param({"gpu_product": "nvidia-t4"}, "unknown GPU product", id="product"),
    ],
)
def test_malformed_requests_raise(change: dict[str, Any], message: str) -> None:
    fields = {f: getattr(request("llama-3.1-8b"), f) for f in PlanRequest.__dataclass_fields__}
    with pytest.raises(ValueError, match=message):
        plan(PlanRequest(**{**fields, **change}))


def test_group_size_zero_is_per_channel() -> None:
    llama = arch("llama-3.1-8b")
    assert weight_bytes(llama, "awq", 0) == weight_bytes(llama, "awq", -1) == 5_594_980_352
    assert weight_bytes(llama, "awq", 32) > weight_bytes(llama, "awq", 64) > weight_bytes(llama, "awq", 128)


# ---------------------------------------------------------------------------------------------------
# Properties

DECODER_KEYS = [key for key, entry in CATALOG.items() if entry.architecture.kind == "decoder"]
SIXTEEN_BIT: tuple[QuantMethod, ...] = ("none",)
EIGHT_BIT: tuple[QuantMethod, ...] = ("fp8", "bitsandbytes-int8")
FOUR_BIT: tuple[QuantMethod, ...] = ("awq", "gptq", "bitsandbytes-nf4", "gguf")


@st.composite
def architectures(draw: st.DrawFn) -> Architecture:
    """Self-consistent decoders: params follow from the figures."""
    heads = draw(st.sampled_from([4, 8, 16, 32, 64]))
    kv_heads = draw(st.sampled_from([h for h in (1, 2, 4, 8, 16, 32, 64) if heads % h == 0]))
    head_dim = draw(st.sampled_from([64, 128]))
    hidden = heads * head_dim
    layers = draw(st.integers(1, 96))
    inter = 256 * draw(st.integers(1, 128))
    vocab = draw(st.integers(1000, 260_000))
    experts = draw(st.sampled_from([1, 1, 8]))
    tied = draw(st.booleans())
    q, kv = heads * head_dim, kv_heads * head_dim
    per_layer = hidden * (q + 2 * kv) + q * hidden + experts * 3 * hidden * inter + 2 * hidden
    params = vocab * hidden * (1 if tied else 2) + layers * per_layer + hidden
    return Architecture(
        params=params,
        layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=vocab,
        intermediate_size=inter,
        tie_word_embeddings=tied,
        num_experts=experts,
        experts_per_token=2 if experts > 1 else 1,
    )


@given(architectures(), st.sampled_from([32, 64, 128, -1]))
def test_more_bits_more_bytes(a: Architecture, group_size: int) -> None:
    def size(method: QuantMethod, double_quant: bool = False) -> int:
        return weight_bytes(a, method, group_size, double_quant)

    assert size("none") == 2 * a.params
    assert size("none") > max(size(m) for m in EIGHT_BIT)
    assert min(size(m) for m in EIGHT_BIT) > max(size(m) for m in FOUR_BIT)
    assert size("bitsandbytes-nf4", True) < size("bitsandbytes-nf4")
    assert size("gptq") > size("awq")


@settings(max_examples=200)
@given(
    st.sampled_from(DECODER_KEYS),
    st.sampled_from(QUANT_METHODS),
    st.sampled_from(KV_CACHE_DTYPES),
    st.sampled_from(list(GPU_PRODUCTS)),
    st.floats(0.5, 0.98),
    st.integers(1, 131_072),
)
def test_more_gpus_never_reduce_concurrency(
    key: str, method: QuantMethod, kv: KVCacheDtype, gpu: str, utilization: float, length: int
) -> None:
    sizes = [t for t in valid_tensor_parallel_sizes(arch(key)) if t & (t - 1) == 0]
    plans = [
        plan(request(key, method, gpu, t, kv=kv, utilization=utilization, max_model_len=length))
        for t in sizes
    ]
    for smaller, larger in itertools.pairwise(plans):
        assert larger.max_concurrent_sequences >= smaller.max_concurrent_sequences
        assert larger.kv_cache_bytes >= smaller.kv_cache_bytes
        assert larger.fits or not smaller.fits
        assert larger.min_tensor_parallel == smaller.min_tensor_parallel


@settings(max_examples=300)
@given(
    st.sampled_from(list(CATALOG)),
    st.sampled_from(QUANT_METHODS),
    st.sampled_from(KV_CACHE_DTYPES),
    st.sampled_from([None, *GPU_PRODUCTS]),
    st.integers(0, 8),
    st.floats(0.05, 1.0),
    st.integers(1, 200_000),
)
def test_fitting_plans_serve_at_least_one_sequence(
    key: str,
    method: QuantMethod,
    kv: KVCacheDtype,
    gpu: str | None,
    count: int,
    utilization: float,
    length: int,
) -> None:
    result = plan(request(key, method, gpu, count, kv=kv, utilization=utilization, max_model_len=length))
    assert result.fits == (not result.reasons)
    if result.fits:
        assert result.max_concurrent_sequences >= 1
    else:
        assert result.max_concurrent_sequences == 0
    if result.tensor_parallel > 0:
        assert result.weight_bytes_per_gpu * result.tensor_parallel >= result.weight_bytes


# ---------------------------------------------------------------------------------------------------
# Measured GPU memory (H200). The file is measured data, not a component: absent, these tests skip.

MODES: dict[str, tuple[QuantMethod, bool]] = {
    "bf16": ("none", False),
    "int8": ("bitsandbytes-int8", False),
    "nf4": ("bitsandbytes-nf4", False),
    "nf4_double_quant": ("bitsandbytes-nf4", True),
}


def _truth() -> dict[str, Any] | None:
    if not TRUTH_FILE.is_file():
        return None
    data: dict[str, Any] = json.loads(TRUTH_FILE.read_text())
    return data


TRUTH = _truth()
NO_TRUTH = pytest.mark.skip(reason=f"measured GPU memory not present at {TRUTH_FILE}")


def _truth_params(per_mode: bool) -> list[Any]:
    if TRUTH is None:
        return [pytest.param(None, None, id="truth-absent", marks=NO_TRUTH)]
    return [
        pytest.param(name, mode, id=f"{name}-{mode}" if per_mode else name)
        for name, measured in TRUTH["archs"].items()
        for mode in (measured["weights"] if per_mode else [None])
    ]


def _truth_arch(name: str) -> Architecture:
    assert TRUTH is not None
    measured = TRUTH["archs"][name]
    c = measured["config"]
    return Architecture(
        params=measured["params_total"],
        layers=c["num_hidden_layers"],
        hidden_size=c["hidden_size"],
        num_heads=c["num_attention_heads"],
        num_kv_heads=c["num_key_value_heads"],
        head_dim=c["head_dim"],
        vocab_size=c["vocab_size"],
        intermediate_size=c["intermediate_size"],
        tie_word_embeddings=c["tie_word_embeddings"],
    )


@pytest.mark.parametrize(("name", "mode"), _truth_params(per_mode=True))
def test_weight_bytes_match_measured_gpu_memory(name: str, mode: str) -> None:
    assert TRUTH is not None
    measured = TRUTH["archs"][name]["weights"][mode]
    method, double_quant = MODES[mode]  # a new mode in the file must be mapped here
    parts = weight_breakdown(_truth_arch(name), method, double_quant=double_quant)
    # allocated_bytes: memory_allocated delta of the whole load (parameters + quant state + allocator rounding)
    assert parts.total == pytest.approx(measured["allocated_bytes"], rel=0.05)
    # param_storage_bytes: the parameter tensors themselves (packed 4-bit / int8 / 16-bit)
    assert parts.quantized_bytes + parts.unquantized_bytes == measured["param_storage_bytes"]
    # quant_state_bytes: absmax / nested absmax / code tables (nf4) or SCB row scales (int8) that
    # get_memory_footprint() leaves out because they are not parameters
    assert parts.quant_state_bytes == measured.get("quant_state_bytes", 0)


@pytest.mark.parametrize(("name", "mode"), _truth_params(per_mode=False))
def test_kv_bytes_and_parameter_groups_match_measured(name: str, mode: None) -> None:
    assert TRUTH is not None
    measured = TRUTH["archs"][name]
    a = _truth_arch(name)
    assert kv_bytes_per_token(a, "auto") == measured["kv_bytes_per_token_formula_bf16"]
    assert kv_bytes_per_token(a, "bfloat16") == measured["kv_cache_bf16"]["formula_bytes_per_token"]
    for run in measured["kv_cache_bf16"].values():
        if isinstance(run, dict):
            assert kv_bytes_per_token(a, "auto") * run["seq_len"] == run["kv_tensor_bytes"]
    assert a.embedding_params == measured["params_embedding"]
    assert (a.lm_head_params or a.embedding_params) == measured["params_lm_head"]
    # catalog entries agree with the measured configs (names are "<catalog key>-like")
    entry = lookup(f"hf://measured/{name.removesuffix('-like')}")
    assert entry is not None
    assert entry.architecture.params == a.params
    assert entry.architecture.linear_shapes() == a.linear_shapes()
    assert kv_bytes_per_token(entry.architecture, "auto") == kv_bytes_per_token(a, "auto")


@pytest.mark.parametrize(("name", "mode"), _truth_params(per_mode=False))
def test_activation_reserve_covers_measured_forward_peaks(name: str, mode: None) -> None:
    assert TRUTH is not None
    a = _truth_arch(name)
    for key in ("seq512_last_logit", "seq2048_last_logit"):
        run = TRUTH["archs"][name]["kv_cache_bf16"][key]
        measured = run["forward_peak_delta_bytes"] - run["kv_tensor_bytes"]
        modelled = activation_bytes(a, run["seq_len"])
        assert measured <= modelled <= 1.5 * measured


@pytest.mark.parametrize(("name", "mode"), _truth_params(per_mode=False))
def test_measured_models_fit_the_measured_card(name: str, mode: None) -> None:
    # every measured model was loaded and run on one H200: the planner must agree it fits there
    result = plan(
        PlanRequest(
            architecture=_truth_arch(name),
            quantization="none",
            kv_cache_dtype="auto",
            gpu_product="nvidia-h200-141gb",
            gpu_count=1,
            gpu_memory_utilization=0.9,
            max_model_len=2048,
        )
    )
    assert result.fits, result.reasons


# ------------------------------------------------------------------ advice worth its GPUs


@pytest.mark.parametrize(
    ("req", "useful", "count"),
    [
        # Qwen2.5-72B in bf16 on A100-80GB: 2 GPUs load it but hold 1 sequence of 8192 tokens; 4 hold 56.
        pytest.param(request("qwen2.5-72b", "none", "nvidia-a100-80gb"), 4, 4, id="qwen-72b-default-minimum"),
        pytest.param(request("qwen2.5-72b", "none", "nvidia-a100-80gb"), 1, 2, id="one-sequence-asked-for"),
        pytest.param(request("qwen2.5-72b", "none", "nvidia-a100-80gb"), 100, 8, id="a-high-target"),
        pytest.param(request("llama-3.1-70b", "none"), 4, 4, id="70b-bf16-h100"),
    ],
)
def test_the_advised_gpu_count_is_the_smallest_that_reaches_a_useful_concurrency(
    req: PlanRequest, useful: int, count: int
) -> None:
    result = plan(replace(req, useful_sequences=useful))
    assert not result.fits
    advised = next(o for o in result.options if o.text.startswith("use gpu.count"))
    assert advised.text == f"use gpu.count {count}"
    assert advised.max_concurrent_sequences >= useful
    smaller = plan(replace(req, gpu_count=count // 2, useful_sequences=useful))
    assert count == 1 or smaller.max_concurrent_sequences < useful
    # What `nlpctl plan` then says of the advised count agrees with the advice.
    taken = plan(replace(req, gpu_count=count, useful_sequences=useful))
    assert taken.fits
    assert taken.max_concurrent_sequences == advised.max_concurrent_sequences
    assert not taken.below_useful


def test_every_option_reaches_the_useful_concurrency_and_says_what_it_gives() -> None:
    result = plan(request("llama-3.1-70b", "fp8"))
    assert result.options
    for option in result.options:
        assert option.max_concurrent_sequences >= MIN_USEFUL_SEQUENCES, option
        assert option.text in result.reasons[0]
    by_text = {o.text: o for o in result.options}
    assert (by_text["use gpu.count 2"].gpu_count, by_text["use gpu.count 2"].gpu_product) == (
        2,
        "nvidia-h100-80gb",
    )
    assert by_text["use gpu.product nvidia-h200-141gb"].gpu_count == 1


def test_where_nothing_reaches_it_the_options_that_fit_are_offered() -> None:
    # Asking 100000 full-length sequences: no option reaches it, so the ones that fit are advised.
    result = plan(replace(request("qwen2.5-72b", "none", "nvidia-a100-80gb"), useful_sequences=100_000))
    assert "use gpu.count 2" in result.reasons[0]


def test_a_fit_below_the_useful_concurrency_carries_its_options() -> None:
    result = plan(request("qwen2.5-72b", "none", "nvidia-a100-80gb", 2))
    assert result.fits
    assert result.max_concurrent_sequences == 1
    assert result.below_useful
    assert [(o.text, o.max_concurrent_sequences) for o in result.options] == [
        ("lower maxModelLen to 2464", 4),
        ("use gpu.count 4", 56),
        ("quantize to 4 bits (quantization.method awq or gptq)", 39),
        ("raise gpuMemoryUtilization to 0.95", 4),
        ("use gpu.product nvidia-h200-141gb", 43),
    ]
    roomy = plan(request("qwen2.5-72b", "none", "nvidia-a100-80gb", 4))
    assert (roomy.below_useful, roomy.options) == (False, ())
