"""The command-line contract, as the operator renders it (core/engines/transformers.py).

    python -m nlpmodel_runtime --model-name NAME --model-dir DIR --task TASK --max-model-len N
        --device cpu|cuda --http-port PORT [--revision REV] [--quantization METHOD] [--double-quant]

Pure (stdlib only): the operator's tests parse rendered args with this parser without torch.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

TASKS: Final = ("generate", "embed", "classify", "rerank")
DEVICES: Final = ("cpu", "cuda")
QUANTIZATION_METHODS: Final = ("none", "bitsandbytes-nf4", "bitsandbytes-int8")
DTYPES: Final = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Settings:
    model_name: str
    model_dir: str  # a local directory (KServe's /mnt/models) or a Hugging Face repo id
    task: str
    max_model_len: int
    device: str
    http_port: int
    host: str = "0.0.0.0"
    revision: str | None = None
    quantization: str = "none"
    double_quant: bool = False
    dtype: str = "auto"
    max_waiting: int = 256  # queued requests beyond this are refused with 503 (vLLM's frontend queues)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nlpmodel_runtime",
        description="OpenAI-style model server (torch + transformers) exporting vLLM's metrics.",
    )
    p.add_argument("--model-name", required=True, help="the served model name (requests' `model`)")
    p.add_argument("--model-dir", required=True, help="local directory or Hugging Face repo id")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--max-model-len", required=True, type=_positive_int, help="prompt + output tokens")
    p.add_argument("--device", required=True, choices=DEVICES)
    p.add_argument("--http-port", required=True, type=_port)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--revision", default=None, help="Hugging Face revision (repo ids only)")
    p.add_argument("--quantization", default="none", choices=QUANTIZATION_METHODS)
    p.add_argument("--double-quant", action="store_true", help="bitsandbytes-nf4: quantize the constants too")
    p.add_argument(
        "--dtype", default="auto", choices=DTYPES, help="auto: bfloat16/float16 on cuda, else float32"
    )
    p.add_argument("--max-waiting", default=256, type=_positive_int)
    return p


def settings_problems(settings: Settings) -> list[str]:
    """Cross-flag rules argparse cannot express; each message says what to change."""
    problems = []
    if settings.double_quant and settings.quantization != "bitsandbytes-nf4":
        problems.append("--double-quant applies to --quantization bitsandbytes-nf4 only")
    if settings.quantization != "none" and settings.device != "cuda":
        problems.append(
            f"--quantization {settings.quantization} runs on GPUs only (bitsandbytes kernels): "
            "use --device cuda, or --quantization none on cpu"
        )
    return problems


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    """Settings from argv; exits with status 2 and a usage message on any problem (argparse's way)."""
    p = parser()
    ns = p.parse_args(argv)
    settings = Settings(
        model_name=ns.model_name,
        model_dir=ns.model_dir,
        task=ns.task,
        max_model_len=ns.max_model_len,
        device=ns.device,
        http_port=ns.http_port,
        host=ns.host,
        revision=ns.revision,
        quantization=ns.quantization,
        double_quant=ns.double_quant,
        dtype=ns.dtype,
        max_waiting=ns.max_waiting,
    )
    problems = settings_problems(settings)
    if problems:
        p.error("; ".join(problems))
    return settings


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), not {value}")
    return value
