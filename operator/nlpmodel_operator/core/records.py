"""Plain records shared by the reconcile core: observed children and revisions, events, actions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ChildRef:
    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class RevisionState:
    """What the cluster shows of one revision's children."""

    revision: str
    children: tuple[ChildRef, ...]
    ready: bool
    message: str = ""
    replicas: int | None = None
    ready_replicas: int | None = None
    # The operator's server-side apply owns the workload's `replicas` (see autoscaling.handover).
    replicas_applied: bool = False
    # Whether it can take traffic now (KServe says Ready, or some pod is), even while it is not `ready`
    # (converged at its current spec: scaling up, a new generation not yet processed). None: as ready.
    serving: bool | None = None
    stopped: bool = False  # held at zero pods on purpose (platform kserve-llm's stop annotation)
    reason: str = ""  # why not ready, as a reason of ours (api.constants.Reason); "": ChildrenNotReady
    warning: str = ""  # the platform's warning that does not block readiness (GroupDegraded)

    @property
    def can_serve(self) -> bool:
        return self.ready if self.serving is None else self.serving


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Apply:
    """Server-side apply of a whole object we own."""

    obj: dict[str, Any]


@dataclass(frozen=True)
class Patch:
    """Merge patch of a few fields of a live object (resizing a revision we do not re-render)."""

    ref: ChildRef
    body: dict[str, Any]


@dataclass(frozen=True)
class HandOver:
    """Keep a Deployment's live count under a second field manager of the operator's, so that the
    next apply without `replicas` does not reset it (server-side apply resets a field its last
    applier stops applying; an update that changes nothing takes no ownership, so it must be an apply)."""

    ref: ChildRef
    replicas: int


@dataclass(frozen=True)
class Delete:
    ref: ChildRef


@dataclass(frozen=True)
class ClearCommand:
    """Remove the manual-control annotation once acted upon (only if it still holds `command`)."""

    command: str


Action = Apply | Patch | HandOver | Delete | ClearCommand
