"""Serving platforms (KServe, raw Deployments), one module each, chosen by `platform_for`."""

from __future__ import annotations

from typing import Any, Protocol

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.spec import Platform as PlatformName
from nlpmodel_operator.core.autoscaling import Scale, ScalingSupport
from nlpmodel_operator.core.platforms.kserve import KServePlatform
from nlpmodel_operator.core.platforms.raw import RawPlatform
from nlpmodel_operator.core.problems import Problem
from nlpmodel_operator.core.resolved import Resolved


class ServingPlatform(Protocol):
    name: str

    def problems(self, spec: NLPModelSpec) -> list[Problem]: ...

    def render(self, resolved: Resolved, scale: Scale, support: ScalingSupport) -> list[dict[str, Any]]:
        """The child objects of one revision (no owner references: the operator adds them), sized by
        `scale`; an autoscaler of the operator's own is not among them (see `core.autoscaling`)."""
        ...


_PLATFORMS: dict[str, ServingPlatform] = {"kserve": KServePlatform(), "raw": RawPlatform()}


def platform_for(name: PlatformName) -> ServingPlatform:
    return _PLATFORMS[name]


__all__ = ["ServingPlatform", "platform_for"]
