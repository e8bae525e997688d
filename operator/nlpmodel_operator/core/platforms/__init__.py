"""Serving platforms, one module each (see `base.ServingPlatform`), chosen by `platform_of`.

A new platform: one module, and one entry in `PLATFORMS` below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nlpmodel_operator.api.spec import Serving
from nlpmodel_operator.core.platforms.base import (
    ServingPlatform,
    Split,
    TrafficMode,
    WeightedRevisions,
    WorkloadState,
)
from nlpmodel_operator.core.platforms.kserve import KServePlatform
from nlpmodel_operator.core.platforms.kserve_llm import KServeLLMPlatform
from nlpmodel_operator.core.platforms.kserve_serverless import KServeServerlessPlatform
from nlpmodel_operator.core.platforms.raw import RawPlatform
from nlpmodel_operator.core.records import ChildRef

# In this order a kind's owner is looked up (`running`): KServe's Standard mode before Knative's.
PLATFORMS: tuple[ServingPlatform, ...] = (
    KServePlatform(),
    RawPlatform(),
    KServeServerlessPlatform(),
    KServeLLMPlatform(),
)
_BY_NAME = {p.name: p for p in PLATFORMS}
# Routers that are a platform's own traffic field: Knative's in-place canary runs on its own platform.
IN_PLACE_ROUTERS = {"kserve-canary": "kserve-serverless"}


def platform_of(serving: Serving) -> ServingPlatform:
    """The platform a spec's revisions run on."""
    return _BY_NAME[IN_PLACE_ROUTERS.get(serving.router, serving.platform)]


def weighted(platform: ServingPlatform) -> WeightedRevisions | None:
    """The per-revision weights and stop of a "per-revision" platform (None: any other mode)."""
    if platform.traffic == "per-revision" and isinstance(platform, WeightedRevisions):
        return platform
    return None


def owner_of(obj: Mapping[str, Any]) -> ServingPlatform | None:
    """The platform whose workload `obj` is (None: not a workload)."""
    return next((p for p in PLATFORMS if p.owns(obj)), None)


def running(
    children: tuple[ChildRef, ...], preferred: ServingPlatform
) -> tuple[ServingPlatform, ChildRef] | None:
    """The platform that runs a revision, and its workload, from the revision's children: `preferred`
    (the spec's) where its workload kind is there, else the first platform whose is."""
    for platform in (preferred, *PLATFORMS):
        workload = next((ref for ref in children if ref.kind == platform.workload.kind), None)
        if workload is not None:
            return platform, workload
    return None


__all__ = [
    "PLATFORMS",
    "ServingPlatform",
    "Split",
    "TrafficMode",
    "WeightedRevisions",
    "WorkloadState",
    "owner_of",
    "platform_of",
    "running",
    "weighted",
]
