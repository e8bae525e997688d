"""bitsandbytes quantization on load: which BitsAndBytesConfig a --quantization asks for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class QuantizationError(ValueError):
    """The requested quantization cannot run here (wrong device, bitsandbytes missing)."""


@dataclass(frozen=True)
class BnbPlan:
    """The BitsAndBytesConfig keyword arguments, as data (testable without bitsandbytes or a GPU)."""

    bits: int  # 4 (nf4) or 8 (LLM.int8)
    double_quant: bool = False

    def config_kwargs(self, compute_dtype: Any) -> dict[str, Any]:
        if self.bits == 8:
            return {"load_in_8bit": True}
        return {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_use_double_quant": self.double_quant,
            "bnb_4bit_compute_dtype": compute_dtype,
        }


def bnb_plan(method: str, double_quant: bool, device: str) -> BnbPlan | None:
    """None for no quantization; QuantizationError when the method cannot run on the device."""
    if method == "none":
        return None
    if method not in ("bitsandbytes-nf4", "bitsandbytes-int8"):
        raise QuantizationError(f"unknown quantization {method!r}: use bitsandbytes-nf4 or bitsandbytes-int8")
    if device != "cuda":
        # bitsandbytes has CPU code paths, but the operator plans (and we support) GPU quantization only.
        raise QuantizationError(f"{method} needs --device cuda: bitsandbytes quantization runs on GPUs only")
    if double_quant and method != "bitsandbytes-nf4":
        raise QuantizationError("--double-quant applies to bitsandbytes-nf4 only")
    return BnbPlan(bits=4 if method == "bitsandbytes-nf4" else 8, double_quant=double_quant)


def require_bitsandbytes() -> None:
    """Fail with a message (not an ImportError deep inside transformers) when bitsandbytes is absent."""
    try:
        import bitsandbytes  # noqa: F401, PLC0415 - only needed when quantizing
    except ImportError as exc:
        raise QuantizationError(
            "bitsandbytes is not installed: use the runtime's GPU image or `pip install nlpmodel-runtime[bitsandbytes]`"
        ) from exc
