"""A problem found in a spec: where, what, and which condition reason it maps to."""

from __future__ import annotations

from dataclasses import dataclass

from nlpmodel_operator.api.constants import Reason


@dataclass(frozen=True)
class Problem:
    """`path` is a dotted field path from the object root (e.g. `spec.scaling.minReplicas`)."""

    path: str
    message: str
    reason: str = Reason.INVALID_SPEC

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"
