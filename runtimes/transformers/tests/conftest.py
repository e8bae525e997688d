"""Tiny models built from configs inside the tests (random weights, nothing downloaded).

A byte-level BPE tokenizer is trained on a few sentences, then saved with a GPT-2 (generate) or BERT
(embed, classify, rerank) of two layers and 32 hidden units into a temporary model directory, exactly
what the runtime loads from KServe's /mnt/models.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from starlette.testclient import TestClient
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from nlpmodel_runtime.engine import load
from nlpmodel_runtime.server import build_app
from nlpmodel_runtime.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a test that tried to download would fail, not hang

CORPUS = [
    "the support team answers billing questions quickly",
    "a customer asks the assistant about an invoice",
    "sales wants a demo of the product next week",
    "the model serves tokens at a steady pace and then stops",
] * 4
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
LABELS = {0: "billing", 1: "support", 2: "sales"}
GENERATE_MAX_LEN = 64
POOLING_MAX_LEN = 32


def tiny_tokenizer(*, pair_template: bool) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<eos>", "[CLS]", "[SEP]"]
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    if pair_template:  # BERT-style inputs: [CLS] a [SEP] (b [SEP])
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", cls_token="[CLS]", sep_token="[SEP]"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_gpt2(directory: Path) -> Path:
    tokenizer = tiny_tokenizer(pair_template=False)
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_bert(directory: Path, head: str) -> Path:
    tokenizer = tiny_tokenizer(pair_template=True)
    common: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
        "pad_token_id": tokenizer.pad_token_id,
    }
    torch.manual_seed(0)
    if head == "embed":
        model: torch.nn.Module = BertModel(BertConfig(**common))
    elif head == "classify":
        config = BertConfig(**common)
        config.id2label, config.label2id = dict(LABELS), {v: k for k, v in LABELS.items()}
        model = BertForSequenceClassification(config)
    else:  # rerank: a cross-encoder with one relevance logit
        config = BertConfig(**common)
        config.num_labels = 1
        model = BertForSequenceClassification(config)
    model.save_pretrained(directory)  # type: ignore[operator]
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_gpt2(tmp_path_factory.mktemp("gpt2"))


def settings_for(model_dir: Path, task: str, max_model_len: int, name: str = "tiny") -> Settings:
    return Settings(
        model_name=name,
        model_dir=str(model_dir),
        task=task,
        max_model_len=max_model_len,
        device="cpu",
        http_port=8080,
    )


def client_for(settings: Settings, max_waiting: int = 256) -> TestClient:
    return TestClient(build_app(load(settings), max_waiting=max_waiting))


@pytest.fixture(scope="session")
def generate_client(gpt2_dir: Path) -> Iterator[TestClient]:
    with client_for(settings_for(gpt2_dir, "generate", GENERATE_MAX_LEN, name="tiny-gpt2")) as client:
        yield client


@pytest.fixture(scope="session")
def embed_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    directory = save_bert(tmp_path_factory.mktemp("bert-embed"), "embed")
    with client_for(settings_for(directory, "embed", POOLING_MAX_LEN, name="tiny-embed")) as client:
        yield client


@pytest.fixture(scope="session")
def classify_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    directory = save_bert(tmp_path_factory.mktemp("bert-classify"), "classify")
    with client_for(settings_for(directory, "classify", POOLING_MAX_LEN, name="tiny-classifier")) as client:
        yield client


@pytest.fixture(scope="session")
def rerank_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    directory = save_bert(tmp_path_factory.mktemp("bert-rerank"), "rerank")
    with client_for(settings_for(directory, "rerank", POOLING_MAX_LEN, name="tiny-reranker")) as client:
        yield client
