"""The model side: loading with transformers (optionally bitsandbytes) and the inference primitives.

Synchronous and single-request: the server runs one model call at a time in a worker thread and
queues the rest (that queue is what vllm:num_requests_waiting reports).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import transformers
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BitsAndBytesConfig,
    PreTrainedTokenizerBase,
)

from nlpmodel_runtime.quantization import QuantizationError, bnb_plan, require_bitsandbytes
from nlpmodel_runtime.settings import Settings

log = logging.getLogger("nlpmodel_runtime.engine")


class EngineError(RuntimeError):
    """The model cannot be served as asked (bad directory, no chat template, no GPU...)."""


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Step:
    """One generated token: the text it added (possibly empty mid-character) and, last, why it ended."""

    text: str
    finished_reason: str | None = None  # stop | length, on the last step only


class Engine:
    def __init__(self, settings: Settings, tokenizer: PreTrainedTokenizerBase, model: Any) -> None:
        self.settings = settings
        self.tokenizer = tokenizer
        self.model = model
        self.device = torch.device(settings.device if settings.device == "cpu" else "cuda:0")

    # ------------------------------------------------------------------------------------ tokens

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        return ids

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> list[int]:
        if not getattr(self.tokenizer, "chat_template", None):
            raise EngineError("this model's tokenizer has no chat template: use /v1/completions")
        text = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        ids: list[int] = self.tokenizer(str(text), add_special_tokens=False)["input_ids"]
        return ids

    def vocab_size(self) -> int:
        return len(self.tokenizer)

    # -------------------------------------------------------------------------------- generation

    @torch.inference_mode()
    def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> Iterator[Step]:
        """Token by token with the KV cache; each `next()` runs one forward pass."""
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(params.seed)
        eos = _eos_ids(self.model, self.tokenizer)
        input_ids = torch.tensor([list(prompt_ids)], device=self.device)
        past: Any = None
        out_ids: list[int] = []
        text = ""
        room = self.settings.max_model_len - len(prompt_ids)
        while True:
            outputs = self.model(input_ids=input_ids, past_key_values=past, use_cache=True)
            past = outputs.past_key_values
            token = _sample(outputs.logits[0, -1, :].float(), params, generator)
            if token in eos:
                yield Step("", "stop")
                return
            out_ids.append(token)
            full = str(self.tokenizer.decode(out_ids, skip_special_tokens=True))
            # A token may end mid-character (byte-level BPE): emit only text that is complete.
            delta = full[len(text) :] if full.startswith(text) and not full.endswith("\ufffd") else ""
            text += delta
            stop_at = _first_stop(text, params.stop)
            if stop_at is not None:
                cut = stop_at - (len(text) - len(delta))
                yield Step(delta[: max(cut, 0)], "stop")
                return
            if len(out_ids) >= params.max_tokens or len(out_ids) >= room:
                yield Step(delta, "length")
                return
            yield Step(delta)
            input_ids = torch.tensor([[token]], device=self.device)

    # ----------------------------------------------------------------------------------- pooling

    @torch.inference_mode()
    def embed(self, batch: Sequence[Sequence[int]]) -> list[list[float]]:
        """Mean of the last hidden states over real tokens, L2-normalised (sentence-transformers' way)."""
        ids, mask = self._pad(batch)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        normed = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        result: list[list[float]] = normed.cpu().tolist()
        return result

    @torch.inference_mode()
    def classify(self, batch: Sequence[Sequence[int]]) -> list[list[float]]:
        """Class probabilities (softmax; sigmoid for a single-logit head) per input."""
        ids, mask = self._pad(batch)
        logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
        probs = torch.sigmoid(logits) if logits.shape[-1] == 1 else torch.softmax(logits, dim=-1)
        result: list[list[float]] = probs.cpu().tolist()
        return result

    def encode_pair(self, query: str, document: str) -> list[int]:
        ids: list[int] = self.tokenizer(query, document, add_special_tokens=True)["input_ids"]
        return ids

    def labels(self) -> list[str]:
        id2label = getattr(self.model.config, "id2label", None) or {}
        return [str(id2label.get(i, f"LABEL_{i}")) for i in range(int(self.model.config.num_labels))]

    def _pad(self, batch: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(len(seq) for seq in batch)
        ids = torch.full((len(batch), width), int(pad), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, : len(seq)] = 1
        return ids.to(self.device), mask.to(self.device)


def _eos_ids(model: Any, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return frozenset(ids)


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None


def _sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    if params.temperature == 0:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p  # always keeps the top one
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
        probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=generator).item())


# ---------------------------------------------------------------------------------------- loading


def torch_dtype(settings: Settings) -> torch.dtype:
    if settings.dtype != "auto":
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[
            settings.dtype
        ]
    if settings.device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load(settings: Settings) -> Engine:
    """Tokenizer and model for the task; EngineError/QuantizationError with a message on failure."""
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise EngineError("--device cuda but no CUDA device is visible to torch (check the GPU request)")
    plan = bnb_plan(settings.quantization, settings.double_quant, settings.device)
    dtype = torch_dtype(settings)
    kwargs: dict[str, Any] = {"revision": settings.revision, "dtype": dtype}
    if plan is not None:
        require_bitsandbytes()
        kwargs["quantization_config"] = BitsAndBytesConfig(**plan.config_kwargs(dtype))
        kwargs["device_map"] = {"": 0}  # bitsandbytes places the quantized weights itself
    model_class: Any = {
        "generate": AutoModelForCausalLM,
        "embed": AutoModel,
        "classify": AutoModelForSequenceClassification,
        "rerank": AutoModelForSequenceClassification,
    }[settings.task]
    try:
        tokenizer = AutoTokenizer.from_pretrained(settings.model_dir, revision=settings.revision)
        model = model_class.from_pretrained(settings.model_dir, **kwargs)
    except (OSError, ValueError) as exc:
        raise EngineError(f"cannot load {settings.model_dir} for task {settings.task}: {exc}") from exc
    if plan is None:
        model = model.to(torch.device(settings.device if settings.device == "cpu" else "cuda:0"))
    model.eval()
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    log.info(
        "loaded %s (%s, transformers %s) for %s on %s, dtype %s, quantization %s",
        settings.model_dir,
        type(model).__name__,
        transformers.__version__,
        settings.task,
        settings.device,
        dtype,
        settings.quantization,
    )
    return Engine(settings, tokenizer, model)


__all__ = ["Engine", "EngineError", "QuantizationError", "SamplingParams", "Step", "load", "torch_dtype"]
