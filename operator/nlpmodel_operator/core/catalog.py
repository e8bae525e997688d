"""Built-in catalog of model architectures, matched from a model URI.

Figures come from each model's published `config.json`; `params` is the exact parameter count of the
checkpoint (safetensors metadata), which the tests re-derive from the config figures.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

ArchitectureKind = Literal["decoder", "encoder"]


@dataclass(frozen=True)
class Architecture:
    """The figures of a transformer that decide its memory: weights and KV cache."""

    params: int  # total, every expert included
    layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    intermediate_size: int | None = None  # per expert for MoE; derived from params when unknown
    tie_word_embeddings: bool = False
    num_experts: int = 1
    kind: ArchitectureKind = "decoder"
    max_position_embeddings: int | None = None
    experts_per_token: int = 1  # MoE top-k; sizes the activations of the routed MLP

    def __post_init__(self) -> None:
        for name in (
            "params",
            "layers",
            "hidden_size",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "vocab_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.num_kv_heads > self.num_heads:
            raise ValueError("num_kv_heads must be <= num_heads")
        if not 1 <= self.experts_per_token <= self.num_experts:
            raise ValueError("experts_per_token must be between 1 and num_experts")
        if self.kind not in ("decoder", "encoder"):
            raise ValueError(f"kind must be decoder or encoder, not {self.kind!r}")

    @property
    def embedding_params(self) -> int:
        """Input token embedding (vocab x hidden)."""
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        """Output head; 0 when tied to the embedding or for encoders (no LM head served)."""
        if self.tie_word_embeddings or self.kind == "encoder":
            return 0
        return self.vocab_size * self.hidden_size

    @property
    def norm_params(self) -> int:
        """Estimate: two norms per layer plus the final one (exact for Llama/Qwen/Mistral RMSNorm)."""
        return 2 * self.hidden_size * self.layers + self.hidden_size

    @property
    def linear_params(self) -> int:
        """Parameters in Linear layers (weights and biases): total - embeddings - lm_head - norms."""
        return max(0, self.params - self.embedding_params - self.lm_head_params - self.norm_params)

    @property
    def attention_params_per_layer(self) -> int:
        """q, k, v, o projection weights of one layer."""
        q = self.num_heads * self.head_dim
        kv = self.num_kv_heads * self.head_dim
        return self.hidden_size * (q + 2 * kv) + q * self.hidden_size

    @property
    def mlp_intermediate_size(self) -> int:
        """intermediate_size; when unknown, 4 x hidden for encoders (the BERT convention) and, for
        decoders, what the parameter count leaves for the gated MLPs."""
        if self.intermediate_size is not None:
            return self.intermediate_size
        if self.kind == "encoder":
            return 4 * self.hidden_size
        mlp_per_layer = self.linear_params // self.layers - self.attention_params_per_layer
        return max(1, mlp_per_layer // (3 * self.num_experts * self.hidden_size))

    def linear_shapes(self) -> tuple[tuple[int, int, int], ...]:
        """(in_features, out_features, count over all layers) of the quantizable Linear weights.

        MoE routers are left out: quantization methods keep them in 16-bit.
        """
        h, n = self.hidden_size, self.layers
        q = self.num_heads * self.head_dim
        kv = self.num_kv_heads * self.head_dim
        inter = self.mlp_intermediate_size
        if self.kind == "encoder":
            return ((h, q, n), (h, kv, 2 * n), (q, h, n), (h, inter, n), (inter, h, n))
        e = self.num_experts
        return ((h, q, n), (h, kv, 2 * n), (q, h, n), (h, inter, 2 * e * n), (inter, h, e * n))


@dataclass(frozen=True)
class CatalogEntry:
    key: str
    architecture: Architecture
    patterns: tuple[str, ...]  # regexes over the normalised URI, bounded by non-alphanumerics


def _llama(
    params: int, layers: int, hidden: int, heads: int, inter: int, *, tied: bool, ctx: int
) -> Architecture:
    return Architecture(
        params=params,
        layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=8,
        head_dim=hidden // heads,
        vocab_size=128_256,
        intermediate_size=inter,
        tie_word_embeddings=tied,
        max_position_embeddings=ctx,
    )


def _bert(params: int, layers: int, hidden: int, heads: int, vocab: int) -> Architecture:
    return Architecture(
        params=params,
        layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        vocab_size=vocab,
        intermediate_size=4 * hidden,
        kind="encoder",
        max_position_embeddings=512,
    )


LLAMA_3_2_1B: Final = _llama(1_235_814_400, 16, 2048, 32, 8192, tied=True, ctx=131_072)
LLAMA_3_2_3B: Final = _llama(3_212_749_824, 28, 3072, 24, 8192, tied=True, ctx=131_072)
LLAMA_3_1_8B: Final = _llama(8_030_261_248, 32, 4096, 32, 14_336, tied=False, ctx=131_072)
LLAMA_3_8B: Final = _llama(8_030_261_248, 32, 4096, 32, 14_336, tied=False, ctx=8192)
LLAMA_3_1_70B: Final = _llama(70_553_706_496, 80, 8192, 64, 28_672, tied=False, ctx=131_072)
LLAMA_3_70B: Final = _llama(70_553_706_496, 80, 8192, 64, 28_672, tied=False, ctx=8192)
# Qwen2.5: q/k/v projections carry biases (counted in params, kept 16-bit by quantizers).
# max_position_embeddings 32768 is the Instruct config; 128K needs YaRN rope scaling set explicitly.
QWEN_2_5_7B: Final = Architecture(
    params=7_615_616_512,
    layers=28,
    hidden_size=3584,
    num_heads=28,
    num_kv_heads=4,
    head_dim=128,
    vocab_size=152_064,
    intermediate_size=18_944,
    max_position_embeddings=32_768,
)
QWEN_2_5_72B: Final = Architecture(
    params=72_706_203_648,
    layers=80,
    hidden_size=8192,
    num_heads=64,
    num_kv_heads=8,
    head_dim=128,
    vocab_size=152_064,
    intermediate_size=29_568,
    max_position_embeddings=32_768,
)
MISTRAL_7B_V0_3: Final = Architecture(
    params=7_248_023_552,
    layers=32,
    hidden_size=4096,
    num_heads=32,
    num_kv_heads=8,
    head_dim=128,
    vocab_size=32_768,
    intermediate_size=14_336,
    max_position_embeddings=32_768,
)
MIXTRAL_8X7B: Final = Architecture(
    params=46_702_792_704,
    layers=32,
    hidden_size=4096,
    num_heads=32,
    num_kv_heads=8,
    head_dim=128,
    vocab_size=32_000,
    intermediate_size=14_336,
    num_experts=8,
    experts_per_token=2,
    max_position_embeddings=32_768,
)
BERT_BASE_UNCASED: Final = _bert(109_482_240, 12, 768, 12, 30_522)  # BertModel incl. pooler
BERT_LARGE_UNCASED: Final = _bert(335_141_888, 24, 1024, 16, 30_522)  # BertModel incl. pooler
# XLM-RoBERTa base + classification head (1 label); 514 positions of which 512 are usable.
XLM_ROBERTA_BASE_RERANKER: Final = _bert(278_044_417, 12, 768, 12, 250_002)

_V = r"[.-]?"  # "3.1", "3-1" (after "_" -> "-"), "31"
_ENTRIES: Final = (
    CatalogEntry("llama-3.2-1b", LLAMA_3_2_1B, (rf"llama-?3{_V}2-1b",)),
    CatalogEntry("llama-3.2-3b", LLAMA_3_2_3B, (rf"llama-?3{_V}2-3b",)),
    CatalogEntry("llama-3-8b", LLAMA_3_8B, (r"llama-?3-8b",)),
    CatalogEntry("llama-3.1-8b", LLAMA_3_1_8B, (rf"llama-?3{_V}1-8b",)),
    CatalogEntry("llama-3-70b", LLAMA_3_70B, (r"llama-?3-70b",)),
    CatalogEntry("llama-3.1-70b", LLAMA_3_1_70B, (rf"llama-?3{_V}1-70b",)),
    CatalogEntry("llama-3.3-70b", LLAMA_3_1_70B, (rf"llama-?3{_V}3-70b",)),
    CatalogEntry("qwen2.5-7b", QWEN_2_5_7B, (rf"qwen-?2{_V}5-7b",)),
    CatalogEntry("qwen2.5-72b", QWEN_2_5_72B, (rf"qwen-?2{_V}5-72b",)),
    CatalogEntry("mistral-7b-v0.3", MISTRAL_7B_V0_3, (rf"mistral-7b(-instruct)?-v0{_V}3",)),
    CatalogEntry("mixtral-8x7b", MIXTRAL_8X7B, (r"mixtral-8x7b",)),
    CatalogEntry("bert-base-uncased", BERT_BASE_UNCASED, (r"bert-base-uncased",)),
    CatalogEntry("bge-base-en-v1.5", BERT_BASE_UNCASED, (rf"bge-base-en(-v1{_V}5)?",)),
    CatalogEntry("bge-large-en-v1.5", BERT_LARGE_UNCASED, (rf"bge-large-en(-v1{_V}5)?",)),
    CatalogEntry("e5-large-v2", BERT_LARGE_UNCASED, (r"e5-large-v2",)),
    CatalogEntry("bge-reranker-base", XLM_ROBERTA_BASE_RERANKER, (r"bge-reranker-base",)),
)

CATALOG: Final[Mapping[str, CatalogEntry]] = MappingProxyType({e.key: e for e in _ENTRIES})

_COMPILED: Final = tuple(
    (entry, re.compile(rf"(?<![a-z0-9]){pattern}(?![a-z0-9])"))
    for entry in _ENTRIES
    for pattern in entry.patterns
)


def normalise(uri: str) -> str:
    """Lower-case URI path without scheme; '_' and whitespace become '-'."""
    path = re.sub(r"^[a-z0-9+.-]+://", "", uri.strip().lower())
    return re.sub(r"[_\s]+", "-", path)


def lookup(uri: str) -> CatalogEntry | None:
    """The catalog entry whose pattern matches the URI; the longest match wins, then the leftmost."""
    name = normalise(uri)
    best: tuple[int, int, CatalogEntry] | None = None
    for entry, regex in _COMPILED:
        for match in regex.finditer(name):
            rank = (-(match.end() - match.start()), match.start(), entry)
            if best is None or rank[:2] < best[:2]:
                best = rank
    return best[2] if best is not None else None
