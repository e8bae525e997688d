"""Revisions that leave the traffic of a "per-revision" platform (KServe LLMInferenceService) are
stopped first and deleted only after a retention window (pure).

A revision leaves when it is neither the stable nor the canary any more: the old stable at promotion,
a rolled-back, aborted or replaced canary. On a "per-revision" platform it is stopped (pods to zero, its
object kept, out of the routing group) and recorded in `status.stoppedRevisions` with the time; a
reconcile after the retention deletes it. Going back to it within the window (a GitOps revert: the
same template, so the same revision and object) only restarts it. Revisions of any other platform
are deleted at once, as before.

Everything needed to resume is in the status: a restart keeps each revision's stop time, and a stop
lost to a SIGKILL is written again (the stop is level-based: every reconcile stops what should be).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.status import StoppedRevision
from nlpmodel_operator.api.units import format_time, parse_time
from nlpmodel_operator.core.platforms import platform_of, running, weighted
from nlpmodel_operator.core.records import Action, RevisionState


@dataclass
class Retirement:
    stops: list[Action] = field(default_factory=list)  # take revisions out of traffic (part "delete")
    restarts: list[Action] = field(default_factory=list)  # undo a stop (part "revision")
    delete: set[str] = field(default_factory=set)  # revisions whose children go now
    stopped: list[StoppedRevision] = field(default_factory=list)  # the new status.stoppedRevisions


def retire(
    spec: NLPModelSpec,
    revisions: Mapping[str, RevisionState],
    gone: Collection[str],
    live: Collection[str],
    recorded: list[StoppedRevision],
    now: datetime,
) -> Retirement:
    """What happens to the revisions that leave (`gone`) and to those that serve (`live`), given the
    stops recorded so far."""
    since = {entry.revision: entry for entry in recorded}
    out = Retirement()
    for revision in sorted(live):
        state = revisions.get(revision)
        if state is None or not state.stopped:
            continue
        found = running(state.children, platform_of(spec.serving))
        weights = weighted(found[0]) if found is not None else None
        if found is not None and weights is not None:
            out.restarts += weights.restart(found[1])
    for revision in sorted(gone):
        state = revisions.get(revision)
        if state is None:
            continue
        found = running(state.children, platform_of(spec.serving))
        weights = weighted(found[0]) if found is not None else None
        if found is None or weights is None:
            out.delete.add(revision)
            continue
        entry = since.get(revision) or StoppedRevision(revision=revision, stopped_at=format_time(now))
        stopped_at = parse_time(entry.stopped_at) or now
        expired = (now - stopped_at).total_seconds() >= weights.retention_s(spec)
        if expired and state.stopped:
            out.delete.add(revision)  # out of traffic for the whole window
            continue
        if not state.stopped:
            out.stops += weights.stop(found[1])
        out.stopped.append(entry)
    return out
