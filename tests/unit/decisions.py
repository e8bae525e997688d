"""What a decision applies and deletes, in its order (the tests' view of `Decision.actions`)."""

from __future__ import annotations

from typing import Any

from nlpmodel_operator.core.reconcile import Decision
from nlpmodel_operator.core.records import Apply, ChildRef, Delete


def applies(decision: Decision) -> list[dict[str, Any]]:
    return [a.obj for a in decision.actions if isinstance(a, Apply)]


def deletes(decision: Decision) -> list[ChildRef]:
    return [a.ref for a in decision.actions if isinstance(a, Delete)]
