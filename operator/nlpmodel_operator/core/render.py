"""Child objects of a resolved model, by its serving platform."""

from __future__ import annotations

from typing import Any

from nlpmodel_operator.core.autoscaling import (
    Scale,
    ScalingSupport,
    autoscaler_objects,
    serving_scale,
    unavailable,
)
from nlpmodel_operator.core.platforms import platform_for
from nlpmodel_operator.core.resolved import Resolved


def render_revision(
    resolved: Resolved, scale: Scale | None = None, support: ScalingSupport | None = None
) -> list[dict[str, Any]]:
    """The objects that run one revision (named `<model>-<hash8>`), without owner references, with
    the operator's own autoscaler where it has one.

    `scale` sizes it (a canary runs a fixed number); None: as the spec asks at rest. `support` is what
    the cluster offers for autoscaling (default: everything, as `nlpctl render` assumes).
    """
    support = support or ScalingSupport()
    spec = resolved.spec
    if scale is None:
        scale = serving_scale(spec, None, 0, unavailable(spec, support) is None)
    objects = platform_for(spec.serving.platform).render(resolved, scale, support)
    return objects + autoscaler_objects(
        resolved.name, resolved.namespace, resolved.revision, spec, scale, support
    )
