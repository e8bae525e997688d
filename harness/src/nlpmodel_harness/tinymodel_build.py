"""Save a random-weight GPT-2 built from a config, with a small trained tokenizer (runs in the runtime venv).

    python tinymodel_build.py --out DIR --layers 2 --hidden 64

Nothing is downloaded: the tokenizer is trained on a few sentences, the weights are random (seeded).
The model has no end-of-sequence token, so no sampled token ends a request early: generation runs to
max_tokens (the e2e counts its tokens), and the cost of a request is its token count times the model's
per-token cost: a larger config is slower.
Run by :mod:`nlpmodel_harness.tinymodels`; type-checked with the runtime (torch) like bench/runtime_bnb.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

CORPUS = [
    "the support team answers billing questions quickly",
    "a customer asks the assistant about an invoice",
    "the model serves tokens at a steady pace and then stops",
] * 8
VOCAB = 384


def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - 8, special_tokens=["<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--hidden", type=int, required=True)
    parser.add_argument("--heads", type=int, default=4)
    args = parser.parse_args()
    tok = tokenizer()
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=512,
        n_embd=args.hidden,
        n_layer=args.layers,
        n_head=args.heads,
        bos_token_id=0,
        # None: a random-weight model samples any token in its vocabulary now and then (temperature > 0).
        eos_token_id=None,
    )
    torch.manual_seed(0)
    model: Any = GPT2LMHeadModel(config)
    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"params": params, "dir": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
