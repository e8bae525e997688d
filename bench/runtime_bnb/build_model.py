"""Save a random-weight Llama-shaped model built from a config, plus a small local tokenizer (runtime venv).

python bench/runtime_bnb/build_model.py --out DIR --size 1b     # ~1.1B parameters (TinyLlama's shape), bf16
python bench/runtime_bnb/build_model.py --out DIR --size tiny   # 2 layers, for the CPU dry run
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SHAPES: dict[str, dict[str, Any]] = {
    "1b": {
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "vocab_size": 32000,
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 512,
    },
}
CORPUS = [
    "the support team answers billing questions quickly",
    "the model serves tokens at a steady pace",
] * 8


def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", choices=sorted(SHAPES), required=True)
    args = parser.parse_args()
    tok = tokenizer()
    shape = SHAPES[args.size]
    # eos outside the tokenizer's ids the model is likely to pick: generation runs to max_tokens.
    config = LlamaConfig(
        **shape,
        max_position_embeddings=4096,
        eos_token_id=shape["vocab_size"] - 1,
        bos_token_id=0,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model: Any = LlamaForCausalLM(config)
    model = model.to(torch.bfloat16)
    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)
    params = sum(p.numel() for p in model.parameters())
    (args.out / "bench-architecture.json").write_text(
        json.dumps(
            {
                "params": params,
                "layers": shape["num_hidden_layers"],
                "hiddenSize": shape["hidden_size"],
                "numHeads": shape["num_attention_heads"],
                "numKVHeads": shape["num_key_value_heads"],
                "headDim": shape["hidden_size"] // shape["num_attention_heads"],
                "vocabSize": shape["vocab_size"],
                "intermediateSize": shape["intermediate_size"],
                "tieWordEmbeddings": False,
            }
        )
    )
    print(json.dumps({"params": params, "dir": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
