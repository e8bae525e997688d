"""vLLM: arguments rendered from the typed spec, checked against the flag table of the vLLM version.

The tables are package data (`data/vllm-<version>.json`), copied verbatim from the facts extracted
from each vLLM wheel (see `make vllm-table`); a test fails when a copy is stale.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.engines.base import SERVING_PORT, EngineInput
from nlpmodel_operator.core.problems import Problem

IMAGE_REPOSITORY = "vllm/vllm-openai"

# Our quantization names → vLLM's --quantization values ("none" renders no flag).
_QUANTIZATION_FLAG = {
    "fp8": "fp8",
    "awq": "awq",
    "gptq": "gptq",
    "bitsandbytes-nf4": "bitsandbytes",
    "bitsandbytes-int8": "bitsandbytes",
    "gguf": "gguf",
}

# Task → pooling flags; generate needs none (the runner is detected from the architecture).
_TASK_FLAGS = {
    "generate": [],
    "embed": ["--runner", "pooling", "--convert", "embed"],
    "classify": ["--runner", "pooling", "--convert", "classify"],
    "rerank": ["--runner", "pooling", "--convert", "classify"],  # cross-encoders score via classify
}

# Flags the operator renders from typed fields: setting them in `args` would contradict the spec.
_OWNED_FLAGS = {
    "--model": "spec.model.uri",
    "--served-model-name": "spec.model.servedName",
    "--revision": "spec.model.revision",
    "--quantization": "spec.quantization.method",
    "--kv-cache-dtype": "spec.quantization.kvCacheDtype",
    "--max-model-len": "spec.runtime.maxModelLen",
    "--gpu-memory-utilization": "spec.runtime.gpuMemoryUtilization",
    "--tensor-parallel-size": "spec.resources.gpu.count",
    "--port": "the operator (the pod always listens on 8080)",
    "--host": "the operator",
    "--runner": "spec.task",
    "--convert": "spec.task",
    "--load-format": "spec.model.uri",
}
# Secrets never go into args: they would be visible in the pod spec and in Argo CD.
_SECRET_FLAGS = {"--hf-token", "--api-key", "--ssl-keyfile"}


@dataclass(frozen=True)
class FlagTable:
    version: str
    flags: frozenset[str]
    quantization: frozenset[str]
    kv_cache_dtype: frozenset[str]
    load_format: frozenset[str]


def known_versions() -> list[str]:
    names = (p.name for p in resources.files("nlpmodel_operator.data").iterdir())
    return sorted(n.removeprefix("vllm-").removesuffix("-cli.json") for n in names if n.startswith("vllm-"))


@cache
def flag_table(version: str) -> FlagTable | None:
    resource = resources.files("nlpmodel_operator.data") / f"vllm-{version}-cli.json"
    if not resource.is_file():
        return None
    data = json.loads(resource.read_text())
    return FlagTable(
        version=version,
        flags=frozenset(data["cli_flags"]),
        quantization=frozenset(data["quantization"]),
        kv_cache_dtype=frozenset(data["kv_cache_dtype"]),
        load_format=frozenset(data["load_format"]),
    )


def _flag_name(arg: str) -> str:
    return arg.split("=", 1)[0]


class VLLMEngine:
    name = "vllm"
    kserve_runtime = "nlpmodel-vllm"
    kserve_model_format = "vllm"

    def problems(self, spec: NLPModelSpec) -> list[Problem]:
        version = spec.runtime.version
        table = flag_table(version)
        if table is None:
            return [
                Problem(
                    "spec.runtime.version",
                    f"no flag table for vLLM {version}; supported versions: {', '.join(known_versions())}",
                    "UnsupportedByEngine",
                )
            ]
        problems: list[Problem] = []
        method = spec.quantization.method
        flag = _QUANTIZATION_FLAG.get(method)
        if flag is not None and flag not in table.quantization:
            hint = (
                "use engine: transformers (our runtime supports bitsandbytes nf4/int8) or an older vLLM"
                if flag == "bitsandbytes"
                else "use an older vLLM version or a different quantization (awq, gptq, fp8)"
            )
            problems.append(
                Problem(
                    "spec.quantization.method",
                    f"vLLM {version} does not support --quantization {flag}: {hint}",
                    "UnsupportedByEngine",
                )
            )
        kv = spec.quantization.kv_cache_dtype
        if kv not in table.kv_cache_dtype:
            problems.append(
                Problem(
                    "spec.quantization.kvCacheDtype",
                    f"vLLM {version} does not accept --kv-cache-dtype {kv}",
                    "UnsupportedByEngine",
                )
            )
        for index, arg in enumerate(spec.runtime.args):
            path = f"spec.runtime.args[{index}]"
            if re.fullmatch(r"-[A-Za-z].*", arg):
                problems.append(Problem(path, f"use the long form of {arg}: short flags cannot be checked"))
                continue
            if not arg.startswith("--"):
                continue  # a value of the previous flag
            name = _flag_name(arg)
            if name in _SECRET_FLAGS:
                problems.append(
                    Problem(
                        path,
                        f"{name} would put a secret into the pod spec: use "
                        "spec.model.credentialsSecret or a Secret-backed env var",
                    )
                )
            elif name in _OWNED_FLAGS:
                problems.append(Problem(path, f"{name} is set by the operator from {_OWNED_FLAGS[name]}"))
            elif name not in table.flags:
                problems.append(
                    Problem(path, f"unknown flag {name} for vLLM {version}", "UnsupportedByEngine")
                )
        if spec.resources.gpu.count == 0 and spec.runtime.image is None:
            problems.append(
                Problem(
                    "spec.resources.gpu.count",
                    "the vLLM image needs a GPU: set gpu.count >= 1, use engine: transformers for CPU, "
                    "or set runtime.image to a vLLM CPU build",
                )
            )
        return problems

    def image(self, spec: NLPModelSpec) -> str:
        return spec.runtime.image or f"{IMAGE_REPOSITORY}:v{spec.runtime.version}"

    def command(self) -> list[str]:
        return ["vllm", "serve"]

    def streams_object_storage(self) -> bool:
        return True

    def args(self, inp: EngineInput) -> list[str]:
        spec = inp.spec
        # The model is `vllm serve`'s positional argument: vLLM 0.33 deprecates `--model` for it. Every
        # version we have a flag table for takes it positionally (so has `vllm serve` since it
        # appeared), so no version needs `--model`; it stays an owned flag so `args` cannot repeat it.
        args = [inp.model_path, "--served-model-name", inp.served_name]
        if spec.model.revision and spec.model.uri.startswith("hf://") and not inp.model_path.startswith("/"):
            args += ["--revision", spec.model.revision]
        if inp.load_format:
            args += ["--load-format", inp.load_format]
        flag = _QUANTIZATION_FLAG.get(spec.quantization.method)
        if flag:
            args += ["--quantization", flag]
        if spec.quantization.kv_cache_dtype != "auto":
            args += ["--kv-cache-dtype", spec.quantization.kv_cache_dtype]
        args += [
            "--max-model-len",
            str(inp.max_model_len),
            "--gpu-memory-utilization",
            f"{spec.runtime.gpu_memory_utilization:g}",
            "--tensor-parallel-size",
            str(inp.tensor_parallel),
            "--port",
            str(SERVING_PORT),
        ]
        args += _TASK_FLAGS[spec.task]
        return args + list(spec.runtime.args)
