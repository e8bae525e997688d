"""The platform interface: everything the core and the shell ask of the workload that runs a revision.

A new platform is one module implementing `ServingPlatform` (copy `raw.py` for plain Kubernetes
objects, `kserve.py` for a custom resource another controller runs) plus one line in the registry
(`core/platforms/__init__.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.autoscaling import Autoscaled, Scale, ScalingSupport
from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.problems import Problem
from nlpmodel_operator.core.records import Action, ChildRef, RevisionState
from nlpmodel_operator.core.resolved import Resolved


@dataclass(frozen=True)
class Split:
    """Which revisions get traffic: the stable, and the canary with its share (%)."""

    stable: str
    canary: str | None = None
    weight: int = 0


# How traffic reaches the revisions:
# - "router": each revision has its own objects, and a router (core/routers) splits traffic between
#   their Services;
# - "in-place": one object serves every revision and splits traffic by a field of its own (Knative's
#   canaryTrafficPercent); it is rendered from the current template with the split, and revisions are
#   neither resized nor handed over;
# - "per-revision": each revision has its own object, and each object carries its own share of the
#   traffic (KServe LLMInferenceService's router.route weight in a group); the platform routes itself,
#   so the router renders nothing, and it implements `WeightedRevisions` as well.
TrafficMode = Literal["router", "in-place", "per-revision"]


@dataclass(frozen=True)
class WorkloadState:
    """A workload as its platform reads it from the object the API server shows."""

    ready: bool  # converged at its current spec
    message: str = ""  # why not
    replicas: int | None = None
    ready_replicas: int | None = None
    serving: bool = False  # can take traffic now, even while not `ready` (scaling, a new generation)
    # Another revision the same object keeps serving (Knative's previously rolled-out revision).
    also_serves: str | None = None
    stopped: bool = False  # its pods are held at zero on purpose (see `WeightedRevisions.stop`)
    reason: str = ""  # why not ready, as a reason of ours (api.constants.Reason); "": ChildrenNotReady
    # The platform's own warning that does not block readiness (LLMInferenceService GroupDegraded).
    warning: str = ""


class ServingPlatform(Protocol):
    name: str
    # The object that runs one revision (looked up among a revision's children by its kind).
    workload: ChildKind
    # Every kind it creates, the workload's included: the shell lists and watches these.
    kinds: tuple[ChildKind, ...]
    traffic: TrafficMode  # see `TrafficMode`
    # The port the revision's pods serve on (what a NetworkPolicy opens, where Prometheus scrapes), and
    # whether they serve it over TLS.
    pod_port: int
    pod_tls: bool

    def problems(self, spec: NLPModelSpec) -> list[Problem]: ...

    def render(
        self, resolved: Resolved, scale: Scale, support: ScalingSupport, split: Split
    ) -> list[dict[str, Any]]:
        """The objects that run `resolved`'s revision (no owner references: the operator adds them),
        sized by `scale`; `split` only matters where the platform splits traffic itself. The operator's
        own autoscaler is not among them (see `autoscalers`)."""
        ...

    def autoscalers(
        self, resolved: Resolved, revision: str, scale: Scale, support: ScalingSupport
    ) -> list[dict[str, Any]]:
        """The operator's own autoscaler objects of `revision` at `scale` (none where the platform
        scales its workload itself)."""
        ...

    def owns(self, obj: Mapping[str, Any]) -> bool:
        """Whether `obj` (as the API server shows it) is a workload of this platform."""
        ...

    def observe(self, obj: Mapping[str, Any]) -> WorkloadState: ...

    def scaling_unavailable(self, spec: NLPModelSpec, support: ScalingSupport) -> str | None:
        """Why the autoscaling the spec asks for cannot be set up in this cluster (None: it can)."""
        ...

    def autoscaled_by(self, spec: NLPModelSpec, support: ScalingSupport) -> str:
        """What sizes an autoscaled revision (for the Autoscaling condition)."""
        ...

    def service_name(self, model: str, revision: str) -> str:
        """The Service in front of a revision's pods (what a router sends its share to)."""
        ...

    def resize(
        self, workload: ChildRef, resolved: Resolved, revision: str, scale: Scale, support: ScalingSupport
    ) -> list[Action]:
        """Size a live revision that is not re-rendered (the stable during a rollout, or after one)."""
        ...

    def hand_over(self, state: RevisionState, scale: Scale) -> list[Action]:
        """What keeps a live replica count when an autoscaler takes it over (see `records.HandOver`)."""
        ...

    def born(self, objects: list[dict[str, Any]], scale: Autoscaled) -> None:
        """Set what a new revision starts at when an autoscaler will own its count (in place)."""
        ...


@runtime_checkable
class WeightedRevisions(Protocol):
    """What a "per-revision" platform adds: the share of a live revision that is not re-rendered (the
    stable during a rollout) and the stop that takes a revision out of the traffic group without
    deleting it (so that going back to it only restarts it)."""

    def weigh(self, workload: ChildRef, weight: int) -> list[Action]:
        """Give a live revision `weight` (the share of 100 the plan gives it)."""
        ...

    def stop(self, workload: ChildRef) -> list[Action]:
        """Take a revision out of traffic, its pods to zero, its object kept (and its weight to 0)."""
        ...

    def restart(self, workload: ChildRef) -> list[Action]:
        """Undo `stop`."""
        ...

    def retention_s(self, spec: NLPModelSpec) -> float:
        """How long a stopped revision is kept before it is deleted."""
        ...
