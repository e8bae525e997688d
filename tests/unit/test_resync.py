"""Which models the resync leaves for the settled period: only those at rest."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nlpmodel_operator.api.constants import ANNOTATION_COMMAND
from nlpmodel_operator.core.resync import settled

AT_REST: dict[str, Any] = {
    "metadata": {"name": "chat", "namespace": "ml", "generation": 3},
    "status": {
        "observedGeneration": 3,
        "phase": "Ready",
        "stableRevision": "aaaa1111",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Serving"}],
    },
}


def changed(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(AT_REST)
    *parents, last = path.split(".")
    node = body
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return body


@pytest.mark.parametrize(
    ("body", "at_rest", "why"),
    [
        (AT_REST, True, "serving its current spec"),
        (changed("status.phase", "RolledBack"), True, "rolled back: waits for its user"),
        (changed("metadata.generation", 4), False, "a spec change not handled yet"),
        (changed("status.observedGeneration", None), False, "never reconciled"),
        (changed("status", None), False, "no status at all"),
        (changed("status.phase", "Progressing"), False, "a rollout in flight"),
        (changed("status.phase", "Pending"), False, "waiting for its children"),
        (changed("status.phase", "Failed"), False, "an apply to retry"),
        (changed("status.canaryRevision", "bbbb2222"), False, "a canary (pauses, analysis)"),
        (changed("metadata.annotations", {ANNOTATION_COMMAND: "promote"}), False, "a command pending"),
        (
            changed("status.conditions", [{"type": "Ready", "status": "False", "reason": "ApplyFailed"}]),
            False,
            "not Ready",
        ),
        (changed("status.conditions", []), False, "no Ready condition"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_only_models_at_rest_are_settled(body: dict[str, Any], at_rest: bool, why: str) -> None:
    assert settled(body) is at_rest, why
