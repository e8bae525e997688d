"""A valid model with everything derived from its spec that rendering needs."""

from __future__ import annotations

from dataclasses import dataclass

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core import planner
from nlpmodel_operator.core.revision import revision_name


@dataclass(frozen=True)
class Resolved:
    """A valid model, ready to render."""

    name: str
    namespace: str
    spec: NLPModelSpec
    revision: str
    served_name: str
    max_model_len: int
    architecture_source: str | None  # catalog key, "spec", or None when unknown
    plan: planner.Plan | None
    planned_gpu: str | None

    @property
    def revision_name(self) -> str:
        return revision_name(self.name, self.revision)

    @property
    def tensor_parallel(self) -> int:
        return max(1, self.spec.resources.gpu.count)
