"""The router interface: the per-model objects that split traffic between stable and canary
(Flagger's router interface, as data: it renders objects, the shell applies them)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.spec import NLPModelSpec, Serving
from nlpmodel_operator.core.kinds import ChildKind


@dataclass(frozen=True)
class Backend:
    revision: str
    service: str  # the Service in front of the revision's pods
    port: int = 80


@dataclass(frozen=True)
class BackendState:
    """Whether a router's per-revision object lets its revision take traffic, as the cluster reports it."""

    can_take_traffic: bool
    message: str = ""  # why not (for the Ready condition)


@dataclass(frozen=True)
class RouteContext:
    name: str
    namespace: str
    spec: NLPModelSpec
    stable: Backend
    canary: Backend | None
    canary_weight: int  # % of requests the plan gives the canary


class Router(Protocol):
    """A new router: one module implementing this (copy `gateway_api.py`) and one entry in
    `core/routers/__init__.py`."""

    name: str
    kinds: tuple[ChildKind, ...]  # every kind it creates: the shell lists and watches these

    def render(self, ctx: RouteContext) -> list[dict[str, Any]]:
        """The model's traffic objects for this split (applied every reconcile)."""
        ...

    def effective_weight(self, ctx: RouteContext, stable_replicas: int, canary_replicas: int) -> int:
        """The canary share the router actually achieves."""
        ...

    def describe(self, serving: Serving) -> str:
        """How it splits traffic, in words (for `nlpctl plan` and `nlpctl status`)."""
        ...

    def backend_state(self, obj: Mapping[str, Any]) -> BackendState | None:
        """What `obj`, one of a revision's children as the API server shows it, says about whether
        the revision can take traffic through this router (None: not an object this router reads).
        A revision takes traffic only while its workload and every such object allow it."""
        ...


def model_metadata(name: str, namespace: str, component: str = "router") -> dict[str, Any]:
    """Per-model objects carry the model label but no revision label: they are not a revision's."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": {
            c.LABEL_NAME: "nlpmodel",
            c.LABEL_INSTANCE: name,
            c.LABEL_COMPONENT: component,
            c.LABEL_MANAGED_BY: c.MANAGED_BY,
            c.LABEL_MODEL: name,
        },
    }


def canary_replicas(total: int, weight: int) -> int:
    """Canary replicas that carry `weight` % of a model sized for `total` replicas (at least one)."""
    return max(1, min(total, math.ceil(total * weight / 100)))
