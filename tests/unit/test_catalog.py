"""Built-in catalog: published config figures, exact parameter counts, URI matching."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from nlpmodel_operator.core.catalog import CATALOG, Architecture, lookup, normalise


@dataclass(frozen=True)
class Config:
    """The config.json figures a parameter count follows from."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    inter: int
    tied: bool = False
    experts: int = 1
    qkv_bias: bool = False
    max_pos: int | None = None


def decoder_params(c: Config) -> int:
    """Embedding (+ untied head) + per layer (q,k,v,o [+ biases] + E gated MLPs [+ router] + 2 norms) + final norm."""
    q, kv = c.heads * c.head_dim, c.kv_heads * c.head_dim
    attn = c.hidden * (q + 2 * kv) + q * c.hidden + ((q + 2 * kv) if c.qkv_bias else 0)
    mlp = c.experts * 3 * c.hidden * c.inter + (c.hidden * c.experts if c.experts > 1 else 0)
    per_layer = attn + mlp + 2 * c.hidden
    return c.vocab * c.hidden * (1 if c.tied else 2) + c.layers * per_layer + c.hidden


def bert_params(layers: int, hidden: int, vocab: int, positions: int, types: int, head: int) -> int:
    """Embeddings (word, position, type, LayerNorm) + layers + pooler/classifier head."""
    inter = 4 * hidden
    embeddings = (vocab + positions + types) * hidden + 2 * hidden
    per_layer = (
        4 * (hidden * hidden + hidden) + 2 * hidden + (hidden * inter + inter) + (inter * hidden + hidden)
    )
    per_layer += 2 * hidden
    return embeddings + layers * per_layer + head


# key, config figures, exact published parameter count (safetensors metadata)
DECODERS = [
    # 128256·2048 (tied) + 16·(2048·(2048+2·512) + 2048·2048 + 3·2048·8192 + 2·2048) + 2048 = 1,235,814,400
    ("llama-3.2-1b", Config(16, 2048, 32, 8, 64, 128_256, 8192, tied=True, max_pos=131_072), 1_235_814_400),
    # 128256·3072 (tied) + 28·(3072·(3072+2·1024) + 3072² + 3·3072·8192 + 2·3072) + 3072 = 3,212,749,824
    ("llama-3.2-3b", Config(28, 3072, 24, 8, 128, 128_256, 8192, tied=True, max_pos=131_072), 3_212_749_824),
    # 2·128256·4096 + 32·(41,943,040 + 176,160,768 + 8192) + 4096 = 8,030,261,248
    ("llama-3.1-8b", Config(32, 4096, 32, 8, 128, 128_256, 14_336, max_pos=131_072), 8_030_261_248),
    ("llama-3-8b", Config(32, 4096, 32, 8, 128, 128_256, 14_336, max_pos=8192), 8_030_261_248),
    # 2·128256·8192 + 80·(150,994,944 + 704,643,072 + 16,384) + 8192 = 70,553,706,496
    ("llama-3.1-70b", Config(80, 8192, 64, 8, 128, 128_256, 28_672, max_pos=131_072), 70_553_706_496),
    ("llama-3.3-70b", Config(80, 8192, 64, 8, 128, 128_256, 28_672, max_pos=131_072), 70_553_706_496),
    ("llama-3-70b", Config(80, 8192, 64, 8, 128, 128_256, 28_672, max_pos=8192), 70_553_706_496),
    # 2·152064·3584 + 28·(29,360,128 + 4608 bias + 203,685,888 + 7168) + 3584 = 7,615,616,512
    (
        "qwen2.5-7b",
        Config(28, 3584, 28, 4, 128, 152_064, 18_944, qkv_bias=True, max_pos=32_768),
        7_615_616_512,
    ),
    # 2·152064·8192 + 80·(150,994,944 + 10,240 bias + 726,663,168 + 16,384) + 8192 = 72,706,203,648
    (
        "qwen2.5-72b",
        Config(80, 8192, 64, 8, 128, 152_064, 29_568, qkv_bias=True, max_pos=32_768),
        72_706_203_648,
    ),
    # 2·32768·4096 + 32·(41,943,040 + 176,160,768 + 8192) + 4096 = 7,248,023,552
    ("mistral-7b-v0.3", Config(32, 4096, 32, 8, 128, 32_768, 14_336, max_pos=32_768), 7_248_023_552),
    # 2·32000·4096 + 32·(41,943,040 + 8·176,160,768 + 32,768 router + 8192) + 4096 = 46,702,792,704
    ("mixtral-8x7b", Config(32, 4096, 32, 8, 128, 32_000, 14_336, experts=8, max_pos=32_768), 46_702_792_704),
]


@pytest.mark.parametrize(("key", "config", "params"), [pytest.param(*row, id=row[0]) for row in DECODERS])
def test_decoder_entries_match_their_published_config(key: str, config: Config, params: int) -> None:
    arch = CATALOG[key].architecture
    assert decoder_params(config) == params
    assert arch == Architecture(
        params=params,
        layers=config.layers,
        hidden_size=config.hidden,
        num_heads=config.heads,
        num_kv_heads=config.kv_heads,
        head_dim=config.head_dim,
        vocab_size=config.vocab,
        intermediate_size=config.inter,
        tie_word_embeddings=config.tied,
        num_experts=config.experts,
        kind="decoder",
        max_position_embeddings=config.max_pos,
        experts_per_token=2 if config.experts > 1 else 1,
    )


ENCODERS = [
    # BertModel: (30522+512+2)·768 + 1536 + 12·7,087,872 + pooler 590,592 = 109,482,240
    ("bert-base-uncased", bert_params(12, 768, 30_522, 512, 2, 768 * 768 + 768), 109_482_240, 12, 768, 12),
    ("bge-base-en-v1.5", bert_params(12, 768, 30_522, 512, 2, 768 * 768 + 768), 109_482_240, 12, 768, 12),
    # BERT-large: (30522+512+2)·1024 + 2048 + 24·12,596,224 + pooler 1,049,600 = 335,141,888
    (
        "bge-large-en-v1.5",
        bert_params(24, 1024, 30_522, 512, 2, 1024 * 1024 + 1024),
        335_141_888,
        24,
        1024,
        16,
    ),
    ("e5-large-v2", bert_params(24, 1024, 30_522, 512, 2, 1024 * 1024 + 1024), 335_141_888, 24, 1024, 16),
    # XLM-R base: (250002+514+1)·768 + 1536 + 12·7,087,872 + head (768²+768 + 768+1) = 278,044,417
    (
        "bge-reranker-base",
        bert_params(12, 768, 250_002, 514, 1, 768 * 768 + 768 + 768 + 1),
        278_044_417,
        12,
        768,
        12,
    ),
]


@pytest.mark.parametrize(
    ("key", "derived", "params", "layers", "hidden", "heads"),
    [pytest.param(*row, id=row[0]) for row in ENCODERS],
)
def test_encoder_entries_match_their_published_config(
    key: str, derived: int, params: int, layers: int, hidden: int, heads: int
) -> None:
    arch = CATALOG[key].architecture
    assert derived == params == arch.params
    assert (arch.layers, arch.hidden_size, arch.num_heads, arch.num_kv_heads) == (
        layers,
        hidden,
        heads,
        heads,
    )
    assert arch.head_dim * arch.num_heads == hidden
    assert arch.kind == "encoder"
    assert arch.max_position_embeddings == 512
    assert arch.lm_head_params == 0


def test_catalog_keys() -> None:
    assert set(CATALOG) == {row[0] for row in DECODERS} | {row[0] for row in ENCODERS}
    assert all(entry.key == key for key, entry in CATALOG.items())


LOOKUPS = [
    ("hf://meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b"),
    ("hf://meta-llama/Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b"),
    ("hf://meta-llama/Llama-3.1-8B", "llama-3.1-8b"),
    ("s3://models/llama_3_1_8b_instruct/", "llama-3.1-8b"),
    ("pvc://weights/llama31-8b-awq", "llama-3.1-8b"),
    ("hf://hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4", "llama-3.1-8b"),
    ("hf://meta-llama/Meta-Llama-3-8B-Instruct", "llama-3-8b"),
    ("hf://meta-llama/Llama-3.2-1B-Instruct", "llama-3.2-1b"),
    ("HF://META-LLAMA/LLAMA-3.2-1B", "llama-3.2-1b"),
    ("hf://meta-llama/Llama-3.2-3B-Instruct", "llama-3.2-3b"),
    ("s3://bucket/llama-3.1-70b-instruct-fp8/", "llama-3.1-70b"),
    ("hf://meta-llama/Llama-3.3-70B-Instruct", "llama-3.3-70b"),
    ("hf://meta-llama/Meta-Llama-3-70B-Instruct", "llama-3-70b"),
    ("hf://Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b"),
    ("hf://Qwen/Qwen2.5-7B-Instruct-AWQ", "qwen2.5-7b"),
    ("gs://models/qwen2.5-7b-instruct-gptq-int4", "qwen2.5-7b"),
    ("hf://Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4", "qwen2.5-72b"),
    ("hf://mistralai/Mistral-7B-Instruct-v0.3", "mistral-7b-v0.3"),
    ("hf://mistralai/Mistral-7B-v0.3", "mistral-7b-v0.3"),
    ("hf://mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b"),
    ("hf://TheBloke/Mixtral-8x7B-Instruct-v0.1-AWQ", "mixtral-8x7b"),
    ("hf://google-bert/bert-base-uncased", "bert-base-uncased"),
    ("hf://bert-base-uncased", "bert-base-uncased"),
    ("hf://BAAI/bge-base-en-v1.5", "bge-base-en-v1.5"),
    ("hf://BAAI/bge-large-en-v1.5", "bge-large-en-v1.5"),
    ("hf://intfloat/e5-large-v2", "e5-large-v2"),
    ("hf://BAAI/bge-reranker-base", "bge-reranker-base"),
    # the longest match wins: a fine-tune named after its parent and its base
    ("s3://ft/llama-3.1-70b-distilled-into-llama-3.2-1b", "llama-3.1-70b"),
    # not in the catalog: neighbours with other sizes or versions must not match
    ("hf://meta-llama/Llama-3.2-11B-Vision-Instruct", None),
    ("hf://meta-llama/Llama-3.1-405B-Instruct", None),
    ("hf://Qwen/Qwen2.5-0.5B-Instruct", None),
    ("hf://Qwen/Qwen2.5-Coder-7B-Instruct", None),
    ("hf://Qwen/Qwen2-7B-Instruct", None),
    ("hf://mistralai/Mistral-7B-Instruct-v0.2", None),
    ("hf://mistralai/Mixtral-8x22B-Instruct-v0.1", None),
    ("hf://distilbert/distilbert-base-uncased", None),
    ("hf://google-bert/bert-base-cased", None),
    ("hf://BAAI/bge-base-zh-v1.5", None),
    ("hf://intfloat/multilingual-e5-large", None),
    ("hf://BAAI/bge-reranker-v2-m3", None),
    ("hf://sentence-transformers/all-MiniLM-L6-v2", None),
    ("s3://bucket/my-model/", None),
    ("", None),
]


@pytest.mark.parametrize(("uri", "key"), [pytest.param(uri, key, id=uri or "empty") for uri, key in LOOKUPS])
def test_lookup(uri: str, key: str | None) -> None:
    entry = lookup(uri)
    assert (entry.key if entry is not None else None) == key


@pytest.mark.parametrize(
    ("uri", "normalised"),
    [
        pytest.param("hf://Qwen/Qwen2.5-7B-Instruct", "qwen/qwen2.5-7b-instruct", id="hf"),
        pytest.param("s3://Bucket/Llama_3_1_8B/", "bucket/llama-3-1-8b/", id="s3-underscores"),
        pytest.param("  pvc://vol/My Model ", "vol/my-model", id="whitespace"),
    ],
)
def test_normalise(uri: str, normalised: str) -> None:
    assert normalise(uri) == normalised


@pytest.mark.parametrize(
    ("key", "embedding", "lm_head", "norms", "linear"),
    [
        # tied: no separate head; 1,235,814,400 - 262,668,288 - (2·2048·16 + 2048) = 973,078,528
        pytest.param("llama-3.2-1b", 262_668_288, 0, 67_584, 973_078_528, id="tied"),
        # 8,030,261,248 - 2·525,336,576 - (2·4096·32 + 4096) = 6,979,321,856
        pytest.param("llama-3.1-8b", 525_336_576, 525_336_576, 266_240, 6_979_321_856, id="untied"),
        # encoder: no LM head served; 30522·768 = 23,440,896; 109,482,240 - 23,440,896 - 19,200
        pytest.param("bert-base-uncased", 23_440_896, 0, 19_200, 86_022_144, id="encoder"),
    ],
)
def test_derived_parameter_groups(key: str, embedding: int, lm_head: int, norms: int, linear: int) -> None:
    arch = CATALOG[key].architecture
    assert (arch.embedding_params, arch.lm_head_params, arch.norm_params, arch.linear_params) == (
        embedding,
        lm_head,
        norms,
        linear,
    )


@pytest.mark.parametrize(
    ("key", "intermediate"),
    [
        # (6,979,321,856/32 - 41,943,040) / (3·4096) = 14336
        pytest.param("llama-3.1-8b", 14_336, id="dense"),
        # (46,440,644,608/32 - 41,943,040) / (3·4096·8) = 14336 (the router's 32,768 rounds away)
        pytest.param("mixtral-8x7b", 14_336, id="moe"),
        # encoders: 4·768 (BERT convention; their params also hold position embeddings and poolers)
        pytest.param("bert-base-uncased", 3072, id="encoder"),
    ],
)
def test_intermediate_size_is_derived_when_unknown(key: str, intermediate: int) -> None:
    known = CATALOG[key].architecture
    fields = {f: getattr(known, f) for f in known.__dataclass_fields__}
    unknown = Architecture(**{**fields, "intermediate_size": None})
    assert unknown.mlp_intermediate_size == intermediate


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"num_kv_heads": 64}, "num_kv_heads", id="kv-heads-above-heads"),
        pytest.param({"layers": 0}, "layers", id="zero-layers"),
        pytest.param({"experts_per_token": 2}, "experts_per_token", id="top-k-above-experts"),
        pytest.param({"kind": "seq2seq"}, "kind", id="unknown-kind"),
    ],
)
def test_architecture_rejects_impossible_figures(change: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "params": 8_030_261_248,
        "layers": 32,
        "hidden_size": 4096,
        "num_heads": 32,
        "num_kv_heads": 8,
        "head_dim": 128,
        "vocab_size": 128_256,
    }
    with pytest.raises(ValueError, match=message):
        Architecture(**{**fields, **change})  # type: ignore[arg-type]
