"""Engines (vLLM, our transformers runtime), one module each, chosen by `engine_for`."""

from __future__ import annotations

from nlpmodel_operator.api.spec import Engine as EngineName
from nlpmodel_operator.core.engines.base import SERVING_PORT, Engine, EngineInput
from nlpmodel_operator.core.engines.transformers import TransformersEngine
from nlpmodel_operator.core.engines.vllm import VLLMEngine

_ENGINES: dict[str, Engine] = {"vllm": VLLMEngine(), "transformers": TransformersEngine()}


def engine_for(name: EngineName) -> Engine:
    return _ENGINES[name]


__all__ = ["SERVING_PORT", "Engine", "EngineInput", "engine_for"]
