"""The engine interface: what a serving platform needs to know to run a model on an engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.problems import Problem

# Every engine listens here inside the pod (KServe's convention for custom runtimes).
SERVING_PORT = 8080


@dataclass(frozen=True)
class EngineInput:
    """Resolved settings an engine renders its arguments from."""

    spec: NLPModelSpec
    served_name: str
    model_path: str  # what the engine loads: a local directory, an hf repo id or an object-store URI
    max_model_len: int
    tensor_parallel: int
    load_format: str | None = None  # e.g. runai_streamer to stream s3:// / gs:// weights


class Engine(Protocol):
    name: str
    kserve_runtime: str  # name of the ClusterServingRuntime we ship for this engine
    kserve_model_format: str

    def problems(self, spec: NLPModelSpec) -> list[Problem]:
        """What this engine (at the requested version) cannot do with the spec."""
        ...

    def image(self, spec: NLPModelSpec) -> str: ...

    def command(self) -> list[str]: ...

    def args(self, inp: EngineInput) -> list[str]: ...

    def streams_object_storage(self) -> bool:
        """Whether the engine reads s3:// / gs:// itself (else the platform must download first)."""
        ...
