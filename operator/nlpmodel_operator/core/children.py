"""Every kind a model's children may have, from the registries (platforms, routers, autoscalers,
monitoring, network policy): the shell's informers list and watch each of these (a status change
reconciles the model only for the watched ones), and the chart's RBAC grants each the verbs it needs
(`ChildKind.verbs`; checked by tests/chart/test_rbac.py)."""

from __future__ import annotations

from nlpmodel_operator.core.autoscaling import AUTOSCALER_CHILD_KINDS
from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.monitoring import POD_MONITOR
from nlpmodel_operator.core.networkpolicy import NETWORK_POLICY
from nlpmodel_operator.core.platforms import PLATFORMS
from nlpmodel_operator.core.routers import ROUTERS


def child_kinds() -> tuple[ChildKind, ...]:
    """Each kind once, in registry order (a kind two plug-ins create is watched if either says so)."""
    found: dict[tuple[str, str], ChildKind] = {}
    declared = [
        *(k for p in PLATFORMS for k in p.kinds),
        *(k for r in ROUTERS for k in r.kinds),
        POD_MONITOR,
        NETWORK_POLICY,
        *AUTOSCALER_CHILD_KINDS,
    ]
    for kind in declared:
        key = (kind.api_version, kind.kind)
        seen = found.get(key)
        if seen is None or (kind.watched and not seen.watched):
            found[key] = kind if seen is None else ChildKind(kind.api_version, kind.kind, kind.plural, True)
    return tuple(found.values())


def watched_kinds() -> tuple[ChildKind, ...]:
    return tuple(k for k in child_kinds() if k.watched)
