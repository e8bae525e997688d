"""Our transformers runtime (runtimes/transformers): bitsandbytes quantization and CPU pooling tasks.

Its command-line contract is defined here and implemented by the runtime's server; it exports the
vLLM metric names so canary analysis does not depend on the engine.
"""

from __future__ import annotations

from nlpmodel_operator import __version__
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.engines.base import SERVING_PORT, EngineInput
from nlpmodel_operator.core.problems import Problem

IMAGE_REPOSITORY = "ghcr.io/nlpmodel-operator/transformers-runtime"
SUPPORTED_QUANTIZATION = ("none", "bitsandbytes-nf4", "bitsandbytes-int8")
_GPU_ONLY_QUANTIZATION = ("bitsandbytes-nf4", "bitsandbytes-int8")


class TransformersEngine:
    name = "transformers"
    kserve_runtime = "nlpmodel-transformers"
    kserve_model_format = "huggingface"

    def problems(self, spec: NLPModelSpec) -> list[Problem]:
        problems: list[Problem] = []
        method = spec.quantization.method
        if method not in SUPPORTED_QUANTIZATION:
            problems.append(
                Problem(
                    "spec.quantization.method",
                    f"engine transformers supports {', '.join(SUPPORTED_QUANTIZATION)}; "
                    f"use engine: vllm for {method}",
                    "UnsupportedByEngine",
                )
            )
        if method in _GPU_ONLY_QUANTIZATION and spec.resources.gpu.count == 0:
            problems.append(
                Problem(
                    "spec.resources.gpu.count",
                    f"{method} runs on GPUs only (bitsandbytes kernels): set gpu.count >= 1",
                    "UnsupportedByEngine",
                )
            )
        if spec.quantization.kv_cache_dtype != "auto":
            problems.append(
                Problem(
                    "spec.quantization.kvCacheDtype",
                    "engine transformers keeps the KV cache in the model dtype: use auto",
                    "UnsupportedByEngine",
                )
            )
        if spec.resources.gpu.count > 1:
            problems.append(
                Problem(
                    "spec.resources.gpu.count",
                    "engine transformers runs on one GPU per replica: use engine vllm for tensor parallelism",
                    "UnsupportedByEngine",
                )
            )
        if spec.runtime.args:
            problems.append(
                Problem("spec.runtime.args", "engine transformers takes no extra args", "UnsupportedByEngine")
            )
        return problems

    def image(self, spec: NLPModelSpec) -> str:
        return spec.runtime.image or f"{IMAGE_REPOSITORY}:v{__version__}"

    def command(self) -> list[str]:
        return ["python", "-m", "nlpmodel_runtime"]

    def streams_object_storage(self) -> bool:
        return False

    def args(self, inp: EngineInput) -> list[str]:
        spec = inp.spec
        args = [
            "--model-name",
            inp.served_name,
            "--model-dir",
            inp.model_path,
            "--task",
            spec.task,
            "--max-model-len",
            str(inp.max_model_len),
            "--device",
            "cuda" if spec.resources.gpu.count > 0 else "cpu",
            "--http-port",
            str(SERVING_PORT),
        ]
        if spec.model.revision and not inp.model_path.startswith("/"):
            args += ["--revision", spec.model.revision]
        if spec.quantization.method != "none":
            args += ["--quantization", spec.quantization.method]
        if spec.quantization.double_quant:
            args += ["--double-quant"]
        return args
