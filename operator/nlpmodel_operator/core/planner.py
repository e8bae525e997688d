"""GPU planner: weight and KV-cache bytes, and whether a model fits a GPU product at a given size.

Pure arithmetic, no I/O. Weight bytes are calibrated against measured GPU memory
(../shared/gpu/gpu-memory-truth.json): the bitsandbytes figures reproduce the measured parameter
storage and quantization state to the byte; allocator rounding adds at most 0.6 %.

Memory model of one GPU (mirrors how vLLM sizes its KV cache: the budget `total x utilization` must
hold everything, CUDA context included):

    usable = floor(total_memory x gpu_memory_utilization)
             - CUDA_CONTEXT_BYTES                 (measured, 621 MiB)
             - RUNTIME_RESERVE_BYTES              (CUDA graphs, cuBLAS/NCCL workspaces, fragmentation)
             - activations of the profiling batch (max_num_batched_tokens x 2 B x (4 hidden + 4 inter/TP))
             - sampler logits                     (max_num_seqs x vocab x 4 B, decoders only)
    free   = usable - weights / TP                (the KV cache, across GPUs: TP x free)

Advice (the options a reason lists) is worth its GPUs: each option must let a replica hold at least
`useful_sequences` full-length sequences at once (MIN_USEFUL_SEQUENCES, or the concurrency target the
spec autoscales on), so `gpu.count` is the smallest that reaches it, not the smallest that loads the
weights; only when no option reaches it are the options that merely fit offered. A plan that fits
below it carries the same options (`Plan.options`), for `nlpctl plan` to show with their cost.

The activation term is fitted to the measured forward peaks (2 B x (3.0 hidden + 3.3 intermediate) per
token) and rounded up; max_num_batched_tokens and max_num_seqs default to vLLM's own defaults for the
card (8192 / 1024 on >= 70 GiB cards other than A100, else 2048 / 256).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Final, Literal

from nlpmodel_operator.core.catalog import Architecture
from nlpmodel_operator.core.gpus import CUDA_CONTEXT_BYTES, GIB, GPU_PRODUCTS, MIB, GPUProduct, product

QuantMethod = Literal["none", "fp8", "awq", "gptq", "bitsandbytes-nf4", "bitsandbytes-int8", "gguf"]
QUANT_METHODS: Final[tuple[QuantMethod, ...]] = (
    "none",
    "fp8",
    "awq",
    "gptq",
    "bitsandbytes-nf4",
    "bitsandbytes-int8",
    "gguf",
)
KVCacheDtype = Literal["auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2"]
KV_CACHE_DTYPES: Final[tuple[KVCacheDtype, ...]] = (
    "auto",
    "bfloat16",
    "float16",
    "fp8",
    "fp8_e4m3",
    "fp8_e5m2",
)
_KV_DTYPE_BYTES: Final[dict[str, int]] = {
    "auto": 2,  # vLLM: the model dtype, 16-bit for every method here (fp8 checkpoints included)
    "bfloat16": 2,
    "float16": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}
FOUR_BIT_METHODS: Final[frozenset[str]] = frozenset({"awq", "gptq", "bitsandbytes-nf4", "gguf"})

# llama.cpp Q4_K_M mixes Q4_K and Q6_K blocks (super-block scales included): about 4.85 bits per
# weight over every tensor, embeddings and output head too; norms stay F32.
GGUF_Q4_K_M_BITS_PER_WEIGHT: Final = 4.85
BNB_BLOCK: Final = 64  # nf4 block size (one absmax per block)
BNB_NESTED_BLOCK: Final = 256  # double quant: one fp32 absmax per 256 8-bit absmax values
BNB_NF4_CODE_BYTES: Final = 16 * 4  # the 16-entry fp32 NF4 code table, per Linear4bit
BNB_NESTED_CODE_BYTES: Final = 256 * 4  # the 256-entry fp32 dynamic code of the nested quantization

RUNTIME_RESERVE_BYTES: Final = GIB
ACTIVATION_DTYPE_BYTES: Final = 2
ACTIVATION_HIDDEN_FACTOR: Final = 4
ACTIVATION_INTERMEDIATE_FACTOR: Final = 4
LOGITS_BYTES: Final = 4  # the sampler works on fp32 logits
VLLM_BLOCK_TOKENS: Final = 16
LARGE_GPU_BYTES: Final = 70 * GIB
MAX_TENSOR_PARALLEL: Final = 16  # spec.resources.gpu.count maximum
CPU_MAX_DECODER_PARAMS: Final = 1_500_000_000
FALLBACK_UTILIZATION: Final = 0.95
# Full-length (maxModelLen) sequences a replica should hold at once to be worth its GPUs: fewer serves
# one long conversation at a time (shorter requests fit more, but the plan counts at maxModelLen).
MIN_USEFUL_SEQUENCES: Final = 4


def format_bytes(n: int) -> str:
    """GiB with one decimal from 1 GiB up, MiB from 1 MiB up, KiB below (KV bytes per token)."""
    if abs(n) >= GIB:
        return f"{n / GIB:.1f} GiB"
    if abs(n) >= MIB:
        return f"{n / MIB:.1f} MiB"
    return f"{n / 1024:.1f} KiB"


@dataclass(frozen=True)
class WeightBreakdown:
    """Weight memory split the way the measurements split it."""

    quantized_bytes: int  # low-bit Linear weights
    quant_state_bytes: int  # scales, zeros, absmax, g_idx, code tables (not parameters)
    unquantized_bytes: int  # 16-bit: embeddings, lm_head, norms, biases, MoE routers (all of it for "none")

    @property
    def total(self) -> int:
        return self.quantized_bytes + self.quant_state_bytes + self.unquantized_bytes


def _check_method(method: str) -> None:
    if method not in QUANT_METHODS:
        raise ValueError(f"unknown quantization method {method!r}; known: {', '.join(QUANT_METHODS)}")


def weight_breakdown(
    arch: Architecture, method: QuantMethod, group_size: int = 128, double_quant: bool = False
) -> WeightBreakdown:
    """Bytes of the weights on the GPU(s); group_size <= 0 means one group per column (per channel)."""
    _check_method(method)
    if method == "none":
        return WeightBreakdown(0, 0, 2 * arch.params)
    if method == "gguf":
        quantizable = max(0, arch.params - arch.norm_params)
        return WeightBreakdown(
            math.ceil(quantizable * GGUF_Q4_K_M_BITS_PER_WEIGHT / 8),
            0,
            4 * min(arch.norm_params, arch.params),
        )

    shapes = arch.linear_shapes()
    structured = sum(i * o * c for i, o, c in shapes)
    quantizable = min(structured, arch.linear_params)
    # Biases, routers and whatever the config figures leave outside the q/k/v/o/MLP matrices.
    passthrough = arch.linear_params - quantizable
    unquantized = 2 * (arch.embedding_params + arch.lm_head_params + arch.norm_params + passthrough)
    out_rows = sum(o * c for _, o, c in shapes)
    modules = sum(c for _, _, c in shapes)

    if method == "fp8":
        # 1 byte/weight + fp32 per-output-channel weight scale + fp32 per-tensor input scale.
        return WeightBreakdown(quantizable, 4 * out_rows + 4 * modules, unquantized)
    if method == "bitsandbytes-int8":
        # int8 weights + SCB: one fp32 scale per output row (Linear8bitLt).
        return WeightBreakdown(quantizable, 4 * out_rows, unquantized)
    if method == "bitsandbytes-nf4":
        packed = sum((i * o + 1) // 2 * c for i, o, c in shapes)
        state = 0
        for i, o, c in shapes:
            blocks = math.ceil(i * o / BNB_BLOCK)
            if double_quant:
                nested = math.ceil(blocks / BNB_NESTED_BLOCK)
                per_module = blocks + 4 * nested + BNB_NF4_CODE_BYTES + BNB_NESTED_CODE_BYTES
            else:
                per_module = 4 * blocks + BNB_NF4_CODE_BYTES
            state += per_module * c
        return WeightBreakdown(packed, state, unquantized)
    # awq / gptq: packed int4 weights, fp16 scale and packed 4-bit zero per (group, output column).
    packed = sum((i * o + 1) // 2 * c for i, o, c in shapes)
    state = 0
    for i, o, c in shapes:
        groups = math.ceil(i / group_size) if group_size > 0 else 1
        state += (groups * o * 2 + groups * math.ceil(o / 8) * 4) * c
        if method == "gptq":
            state += 4 * i * c  # g_idx: int32 per input row
    return WeightBreakdown(packed, state, unquantized)


def weight_bytes(
    arch: Architecture, method: QuantMethod, group_size: int = 128, double_quant: bool = False
) -> int:
    """Total bytes of the weights (all GPUs together)."""
    return weight_breakdown(arch, method, group_size, double_quant).total


def kv_bytes_per_token(arch: Architecture, kv_cache_dtype: KVCacheDtype) -> int:
    """K and V for every layer: 2 x layers x kv_heads x head_dim x dtype bytes; 0 for encoders."""
    if kv_cache_dtype not in _KV_DTYPE_BYTES:
        raise ValueError(f"unknown kv cache dtype {kv_cache_dtype!r}; known: {', '.join(KV_CACHE_DTYPES)}")
    if arch.kind == "encoder":
        return 0
    return 2 * arch.layers * arch.num_kv_heads * arch.head_dim * _KV_DTYPE_BYTES[kv_cache_dtype]


def engine_batch_defaults(gpu: GPUProduct) -> tuple[int, int]:
    """vLLM's default (max_num_batched_tokens, max_num_seqs) for the OpenAI server on this card."""
    if gpu.memory_bytes >= LARGE_GPU_BYTES and "a100" not in gpu.name:
        return 8192, 1024
    return 2048, 256


def activation_bytes(arch: Architecture, tokens: int, tensor_parallel: int = 1) -> int:
    """Peak activations of a forward pass over `tokens` tokens on one GPU (MLP sharded by TP)."""
    inter = arch.mlp_intermediate_size * arch.experts_per_token
    per_token = ACTIVATION_HIDDEN_FACTOR * arch.hidden_size + math.ceil(
        ACTIVATION_INTERMEDIATE_FACTOR * inter / max(1, tensor_parallel)
    )
    return tokens * ACTIVATION_DTYPE_BYTES * per_token


def valid_tensor_parallel_sizes(arch: Architecture) -> tuple[int, ...]:
    """Sizes that divide both the attention heads and the KV heads."""
    common = math.gcd(arch.num_heads, arch.num_kv_heads)
    return tuple(t for t in range(1, common + 1) if common % t == 0)


@dataclass(frozen=True)
class PlanRequest:
    architecture: Architecture
    quantization: QuantMethod
    kv_cache_dtype: KVCacheDtype
    gpu_product: str | None  # None, or gpu_count 0: CPU
    gpu_count: int
    gpu_memory_utilization: float
    max_model_len: int
    group_size: int = 128
    double_quant: bool = False
    max_num_batched_tokens: int | None = None  # None: vLLM's default for the card
    max_num_seqs: int | None = None  # None: vLLM's default for the card
    useful_sequences: int = MIN_USEFUL_SEQUENCES  # what advice must reach (see the module docstring)

    @property
    def on_cpu(self) -> bool:
        return self.gpu_product is None or self.gpu_count == 0


@dataclass(frozen=True)
class PlanOption:
    """One change the planner advises, and what a replica would then be."""

    text: str  # as the reason lists it, e.g. "use gpu.count 4"
    gpu_product: str
    gpu_count: int
    max_concurrent_sequences: int


@dataclass(frozen=True)
class Plan:
    weight_bytes: int
    weight_bytes_per_gpu: int
    kv_bytes_per_token: int  # whole model, all GPUs together
    kv_bytes_per_sequence: int  # at max_model_len
    gpu_memory_bytes: int  # per card, as CUDA reports it; 0 on CPU
    usable_bytes_per_gpu: int  # budget for weights + KV after context, runtime and activation reserves
    kv_cache_bytes: int  # across all GPUs
    tensor_parallel: int  # gpu_count; 0 on CPU
    min_tensor_parallel: int  # smallest power-of-two TP that fits; 0 when none does (and on CPU)
    max_concurrent_sequences: int  # full max_model_len sequences the KV cache holds; 0 if not fitting
    fits: bool
    reasons: tuple[str, ...] = ()
    reserve_bytes_per_gpu: int = 0  # context + runtime + activations + sampler
    max_num_batched_tokens: int = 0
    max_num_seqs: int = 0
    useful_sequences: int = 0  # what the advice aims at; 0 on CPU
    # The changes advised: to fit (not fitting) or to reach useful_sequences (fitting below it).
    options: tuple[PlanOption, ...] = ()

    @property
    def below_useful(self) -> bool:
        return self.fits and 0 < self.max_concurrent_sequences < self.useful_sequences

    def to_status(self) -> dict[str, object]:
        status: dict[str, object] = {
            "weightBytes": self.weight_bytes,
            "weightBytesPerGPU": self.weight_bytes_per_gpu,
            "kvBytesPerToken": self.kv_bytes_per_token,
            "kvBytesPerSequence": self.kv_bytes_per_sequence,
            "kvCacheBytes": self.kv_cache_bytes,
            "tensorParallel": self.tensor_parallel,
            "minTensorParallel": self.min_tensor_parallel,
            "maxConcurrentSequences": self.max_concurrent_sequences,
            "fits": self.fits,
            "gpuMemoryBytes": self.gpu_memory_bytes,
            "usableBytesPerGPU": self.usable_bytes_per_gpu,
        }
        if not self.fits:
            status["reasons"] = list(self.reasons)
        return status


@dataclass(frozen=True)
class _Fit:
    """Memory of one GPU for one (method, TP, card, ...) choice."""

    reserve: int
    usable: int
    weights_per_gpu: int
    sequence_bytes_per_gpu: int  # one max_model_len sequence: its KV (decoder) or activations (encoder)
    tokens: int
    seqs: int
    tp: int = 1
    sequence_bytes: int = 0  # one max_model_len sequence's KV across all GPUs (decoders; 0: encoders)

    @property
    def free(self) -> int:
        return max(0, self.usable - self.weights_per_gpu)

    @property
    def weights_fit(self) -> bool:
        return self.weights_per_gpu <= self.usable

    @property
    def ok(self) -> bool:
        return self.weights_fit and self.sequence_bytes_per_gpu <= self.free

    @property
    def sequences(self) -> int:
        """Full-length sequences the replica holds at once (as `plan` counts them); 0 if not fitting."""
        if not self.ok:
            return 0
        if self.sequence_bytes:
            return self.tp * self.free // self.sequence_bytes
        return self.free // max(1, self.sequence_bytes_per_gpu)

    def holds(self, sequences: int) -> bool:
        return self.ok and self.sequences >= sequences


def _fit(
    req: PlanRequest,
    gpu: GPUProduct,
    tp: int,
    *,
    method: QuantMethod | None = None,
    kv_cache_dtype: KVCacheDtype | None = None,
    utilization: float | None = None,
) -> _Fit:
    arch = req.architecture
    weights = weight_bytes(arch, method or req.quantization, req.group_size, req.double_quant)
    default_tokens, default_seqs = engine_batch_defaults(gpu)
    tokens = req.max_num_batched_tokens or default_tokens
    seqs = req.max_num_seqs or default_seqs
    whole = 0
    if arch.kind == "encoder":
        tokens = max(tokens, req.max_model_len)  # pooling models run whole sequences, no chunked prefill
        sequence = activation_bytes(arch, req.max_model_len, tp)
        sampler = 0
    else:
        whole = kv_bytes_per_token(arch, kv_cache_dtype or req.kv_cache_dtype) * req.max_model_len
        sequence = math.ceil(whole / tp)
        sampler = seqs * arch.vocab_size * LOGITS_BYTES
    reserve = CUDA_CONTEXT_BYTES + RUNTIME_RESERVE_BYTES + activation_bytes(arch, tokens, tp) + sampler
    budget = math.floor(gpu.memory_bytes * (utilization or req.gpu_memory_utilization))
    return _Fit(
        reserve=reserve,
        usable=max(0, budget - reserve),
        weights_per_gpu=math.ceil(weights / tp),
        sequence_bytes_per_gpu=sequence,
        tokens=tokens,
        seqs=seqs,
        tp=tp,
        sequence_bytes=whole,
    )


def _power_of_two_sizes(arch: Architecture) -> tuple[int, ...]:
    return tuple(
        t for t in valid_tensor_parallel_sizes(arch) if t & (t - 1) == 0 and t <= MAX_TENSOR_PARALLEL
    )


def _method_label(req: PlanRequest) -> str:
    if req.quantization == "none":
        return "16-bit"
    if req.quantization == "bitsandbytes-nf4" and req.double_quant:
        return "bitsandbytes-nf4 with double quant"
    return req.quantization


def _join_options(options: list[str]) -> str:
    if len(options) <= 1:
        return "".join(options)
    return ", ".join(options[:-1]) + " or " + options[-1]


def _memory_options(
    req: PlanRequest, gpu: GPUProduct, tp: int, *, kv_short: bool, need: int, quantize: bool | None = None
) -> list[PlanOption]:
    """Changes after which a replica holds `need` full-length sequences, each checked against the same
    memory model (the smallest gpu.count, the smallest larger card)."""
    arch = req.architecture
    options: list[PlanOption] = []

    def option(text: str, fit: _Fit, card: GPUProduct = gpu, count: int = tp) -> None:
        options.append(PlanOption(text, card.name, count, fit.sequences))

    if kv_short and arch.kind == "decoder":
        at_tp = _fit(req, gpu, tp)
        per_token = kv_bytes_per_token(arch, req.kv_cache_dtype)
        longest = at_tp.free * tp // (per_token * need) // VLLM_BLOCK_TOKENS * VLLM_BLOCK_TOKENS
        if longest >= VLLM_BLOCK_TOKENS:
            shorter = replace(req, max_model_len=longest)
            option(f"lower maxModelLen to {longest}", _fit(shorter, gpu, tp))
        fp8_kv = _fit(req, gpu, tp, kv_cache_dtype="fp8")
        if _KV_DTYPE_BYTES[req.kv_cache_dtype] > 1 and fp8_kv.holds(need):
            option("set quantization.kvCacheDtype fp8", fp8_kv)
    bigger = next(
        ((t, f) for t in _power_of_two_sizes(arch) if t > tp and (f := _fit(req, gpu, t)).holds(need)), None
    )
    if bigger is not None:
        option(f"use gpu.count {bigger[0]}", bigger[1], count=bigger[0])
    if (not kv_short if quantize is None else quantize) and req.quantization not in FOUR_BIT_METHODS:
        if (four_bit := _fit(req, gpu, tp, method="awq")).holds(need):
            option("quantize to 4 bits (quantization.method awq or gptq)", four_bit)
        elif req.quantization == "none" and (eight_bit := _fit(req, gpu, tp, method="fp8")).holds(need):
            option("use quantization.method fp8", eight_bit)
    raised = _fit(req, gpu, tp, utilization=FALLBACK_UTILIZATION)
    if req.gpu_memory_utilization < FALLBACK_UTILIZATION and raised.holds(need):
        option(f"raise gpuMemoryUtilization to {FALLBACK_UTILIZATION:.2f}", raised)
    larger = sorted(
        (p for p in GPU_PRODUCTS.values() if p.memory_bytes > gpu.memory_bytes), key=lambda p: p.memory_bytes
    )
    card = next(((p, f) for p in larger if (f := _fit(req, p, tp)).holds(need)), None)
    if card is not None:
        option(f"use gpu.product {card[0].name}", card[1], card=card[0])
    return options


def _advice(req: PlanRequest, gpu: GPUProduct, tp: int, *, kv_short: bool) -> list[PlanOption]:
    """The options that reach a useful concurrency; where none does, those that fit at all."""
    useful = _memory_options(req, gpu, tp, kv_short=kv_short, need=max(1, req.useful_sequences))
    return useful or _memory_options(req, gpu, tp, kv_short=kv_short, need=1)


def _check_request(req: PlanRequest) -> None:
    _check_method(req.quantization)
    if req.kv_cache_dtype not in _KV_DTYPE_BYTES:
        raise ValueError(
            f"unknown kv cache dtype {req.kv_cache_dtype!r}; known: {', '.join(KV_CACHE_DTYPES)}"
        )
    if req.gpu_count < 0:
        raise ValueError("gpu_count must be >= 0")
    if not 0 < req.gpu_memory_utilization <= 1:
        raise ValueError("gpu_memory_utilization must be in (0, 1]")
    if req.max_model_len < 1:
        raise ValueError("max_model_len must be >= 1")
    if req.gpu_product is not None:
        product(req.gpu_product)


def plan(req: PlanRequest) -> Plan:
    """Weights, KV cache and fit of one replica. Raises ValueError only for malformed requests."""
    _check_request(req)
    arch = req.architecture
    weights = weight_bytes(arch, req.quantization, req.group_size, req.double_quant)
    per_token = kv_bytes_per_token(arch, req.kv_cache_dtype)
    per_sequence = per_token * req.max_model_len
    reasons: list[str] = []
    limit = arch.max_position_embeddings
    if limit is not None and req.max_model_len > limit:
        reasons.append(
            f"maxModelLen {req.max_model_len} exceeds the {limit} tokens the model supports "
            f"(max_position_embeddings): lower maxModelLen to {limit} or less"
        )

    if req.on_cpu:
        if arch.kind == "decoder" and arch.params >= CPU_MAX_DECODER_PARAMS:
            reasons.append(
                f"the model has {arch.params / 1e9:.1f}B parameters, too many to generate on CPU "
                f"(decoders below {CPU_MAX_DECODER_PARAMS / 1e9:.1f}B, encoders of any size): "
                "set resources.gpu.count to 1 or more"
            )
        fits = not reasons
        # Host memory is not planned; a fitting CPU replica serves one batch at a time.
        return Plan(
            weight_bytes=weights,
            weight_bytes_per_gpu=0,
            kv_bytes_per_token=per_token,
            kv_bytes_per_sequence=per_sequence,
            gpu_memory_bytes=0,
            usable_bytes_per_gpu=0,
            kv_cache_bytes=0,
            tensor_parallel=0,
            min_tensor_parallel=0,
            max_concurrent_sequences=1 if fits else 0,
            fits=fits,
            reasons=tuple(reasons),
        )

    assert req.gpu_product is not None  # on_cpu covers None
    gpu = product(req.gpu_product)
    tp = req.gpu_count
    at_tp = _fit(req, gpu, tp)
    min_tp = next((t for t in _power_of_two_sizes(arch) if _fit(req, gpu, t).ok), 0)
    valid = valid_tensor_parallel_sizes(arch)
    if tp not in valid:
        choices = [str(t) for t in valid if t <= MAX_TENSOR_PARALLEL]
        reasons.append(
            f"tensor parallel size {tp} (gpu.count) must divide the model's {arch.num_heads} attention heads "
            f"and {arch.num_kv_heads} KV heads: use gpu.count {_join_options(choices)}"
        )
    options: list[PlanOption] = []
    on = f"{tp} \N{MULTIPLICATION SIGN} {gpu.name}"
    at_util = f"at gpuMemoryUtilization {req.gpu_memory_utilization:.2f}"
    if not at_tp.weights_fit:
        share = f" ({format_bytes(at_tp.weights_per_gpu)} per GPU)" if tp > 1 else ""
        message = (
            f"weights need {format_bytes(weights)} in {_method_label(req)}{share} but {on} give "
            f"{format_bytes(at_tp.usable)} usable per GPU {at_util}"
        )
        options = _advice(req, gpu, tp, kv_short=False)
        fallback = (
            f"{message}; no larger gpu.count, 4-bit quantization or GPU makes it fit: use a smaller model"
        )
        texts = [o.text for o in options]
        reasons.append(f"{message}: {_join_options(texts)}" if options else fallback)
    elif not at_tp.ok:
        what = "KV cache" if arch.kind == "decoder" else "activations"
        message = (
            f"one sequence of maxModelLen {req.max_model_len} needs "
            f"{format_bytes(at_tp.sequence_bytes_per_gpu)} of {what} per GPU but only "
            f"{format_bytes(at_tp.free)} is left after {format_bytes(at_tp.weights_per_gpu)} of weights "
            f"on {on} {at_util}"
        )
        options = _advice(req, gpu, tp, kv_short=True)
        texts = [o.text for o in options]
        reasons.append(f"{message}: {_join_options(texts)}" if options else message)

    fits = not reasons
    if fits and at_tp.sequences < req.useful_sequences:
        # It fits, below a useful concurrency: what would reach it (nothing fits better otherwise).
        options = _memory_options(req, gpu, tp, kv_short=True, need=req.useful_sequences, quantize=True)
    if arch.kind == "decoder":
        kv_cache = tp * at_tp.free
        capacity = kv_cache // per_sequence
    else:
        kv_cache = 0
        capacity = at_tp.free // at_tp.sequence_bytes_per_gpu
    return Plan(
        weight_bytes=weights,
        weight_bytes_per_gpu=at_tp.weights_per_gpu,
        kv_bytes_per_token=per_token,
        kv_bytes_per_sequence=per_sequence,
        gpu_memory_bytes=gpu.memory_bytes,
        usable_bytes_per_gpu=at_tp.usable,
        kv_cache_bytes=kv_cache,
        tensor_parallel=tp,
        min_tensor_parallel=min_tp,
        max_concurrent_sequences=capacity if fits else 0,
        fits=fits,
        reasons=tuple(reasons),
        reserve_bytes_per_gpu=at_tp.reserve,
        max_num_batched_tokens=at_tp.tokens,
        max_num_seqs=at_tp.seqs,
        useful_sequences=req.useful_sequences,
        options=tuple(options),
    )
