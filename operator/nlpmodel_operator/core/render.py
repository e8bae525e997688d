"""Child objects of a resolved model, by its serving platform."""

from __future__ import annotations

from typing import Any

from nlpmodel_operator.core.platforms import platform_for
from nlpmodel_operator.core.resolved import Resolved


def render_revision(resolved: Resolved, replicas: int | None = None) -> list[dict[str, Any]]:
    """The objects that run one revision (named `<model>-<hash8>`), without owner references.

    `replicas` fixes the size (a canary runs a fixed number); None sizes it by spec.scaling.
    """
    return platform_for(resolved.spec.serving.platform).render(resolved, replicas)
