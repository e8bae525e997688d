"""Which models the resync leaves for the settled period: only those at rest."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nlpmodel_operator.api.constants import ANNOTATION_COMMAND
from nlpmodel_operator.core.resync import fingerprint, model_fingerprint, settled

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


ROUTE: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {
        "name": "chat",
        "namespace": "ml",
        "resourceVersion": "260",
        "managedFields": [
            {
                "manager": "nlpmodel-operator",
                "operation": "Apply",
                "time": "2026-11-26T10:50:19Z",
                "fieldsV1": {"f:spec": {"f:rules": {}}},
            }
        ],
    },
    "spec": {"rules": [{"backendRefs": [{"name": "chat-aaaa1111-predictor", "port": 80, "weight": 100}]}]},
}


def edited(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(ROUTE)
    node: Any = body
    *parents, last = path.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return body


@pytest.mark.parametrize(
    ("other", "tells_something", "why"),
    [
        (edited("metadata.resourceVersion", "263"), False, "rewritten by an apply that changed nothing"),
        (edited("metadata.managedFields.0.time", "2026-11-26T10:50:33Z"), False, "only the apply's time"),
        (
            edited("spec.rules.0.backendRefs.0.weight", 90),
            True,
            "a weight changed",
        ),
        (edited("metadata.managedFields.0.fieldsV1", {}), True, "ownership changed (replica hand-over)"),
        (edited("metadata.labels", {"a": "b"}), True, "a label changed"),
        (edited("status", {"parents": []}), True, "status written"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_childs_fingerprint_changes_with_what_the_operator_reads(
    other: dict[str, Any], tells_something: bool, why: str
) -> None:
    assert (fingerprint(other) != fingerprint(ROUTE)) is tells_something, why


MODEL: dict[str, Any] = {
    **copy.deepcopy(AT_REST),
    "apiVersion": "serving.nlpmodel.dev/v1alpha1",
    "kind": "NLPModel",
    "spec": {"model": {"uri": "hf://org/chat"}},
}
MODEL["metadata"].update(resourceVersion="41", managedFields=[{"manager": "kubectl", "time": "t1"}])


def model_edited(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(MODEL)
    *parents, last = path.split(".")
    node = body
    for key in parents:
        node = node[key]
    node[last] = value
    return body


@pytest.mark.parametrize(
    ("other", "tells_something", "why"),
    [
        (model_edited("metadata.resourceVersion", "42"), False, "written again, same content"),
        (model_edited("metadata.managedFields", []), False, "only who wrote it"),
        (model_edited("spec.model", {"uri": "hf://org/chat-v2"}), True, "the user's spec"),
        (model_edited("metadata.annotations", {ANNOTATION_COMMAND: "abort"}), True, "a command"),
        (model_edited("status.phase", "Progressing"), True, "a status the last reconcile did not write"),
        (model_edited("metadata.deletionTimestamp", "2026-11-26T10:00:00Z"), True, "being deleted"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_models_fingerprint_leaves_out_only_what_every_write_changes(
    other: dict[str, Any], tells_something: bool, why: str
) -> None:
    assert (model_fingerprint(other) != model_fingerprint(MODEL)) is tells_something, why
