"""The watches' cache of children: indexed by model, echoes and stale answers dropped, a status-only
change told apart, listings taken as the truth, and small (only the operator's own managedFields)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.controller.informer import ChildCache, LatestModels

MANAGER = "nlpmodel-operator"


def child(
    name: str = "chat-abc",
    model: str = "chat",
    namespace: str = "ml",
    kind: str = "Deployment",
    rv: str = "10",
    replicas: int = 1,
    ready: int = 0,
    owned: bool = True,
) -> dict[str, Any]:
    owners = [{"apiVersion": c.API_VERSION, "kind": c.KIND, "name": model, "uid": "u1", "controller": True}]
    if not owned:
        owners = [{"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "name": model}]
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "resourceVersion": rv,
            "labels": {c.LABEL_MODEL: model},
            "ownerReferences": owners,
            "managedFields": [
                {
                    "manager": MANAGER,
                    "operation": "Apply",
                    "time": f"2026-12-03T10:00:{rv[-2:].zfill(2)}Z",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}},
                },
                {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:status": {}}},
            ],
        },
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready},
    }


def test_a_new_child_is_indexed_by_its_model_and_decoded_afresh() -> None:
    cache = ChildCache(MANAGER)
    assert cache.put(child()) == (("ml", "chat"), True)
    found = cache.children("ml", "chat")
    assert [o["metadata"]["name"] for o in found] == ["chat-abc"]
    found[0]["spec"]["replicas"] = 99  # a caller's change stays the caller's
    assert cache.children("ml", "chat")[0]["spec"]["replicas"] == 1
    assert cache.children("ml", "other") == []
    assert cache.children("other-ns", "chat") == []


def test_only_the_operators_own_apply_is_kept_of_managed_fields() -> None:
    cache = ChildCache(MANAGER)
    cache.put(child())
    kept = cache.get("ml", "Deployment", "chat-abc")
    assert kept is not None
    assert kept["metadata"]["managedFields"] == [
        {"manager": MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    ]


@pytest.mark.parametrize(
    ("second", "outcome"),
    [
        (child(rv="11"), None),  # an echo: only the resourceVersion (and the apply's time) changed
        (child(rv="9", ready=1), None),  # older than what is held: our own write got here first
        (child(rv="11", ready=1), (("ml", "chat"), False)),  # the status alone changed
        (child(rv="11", replicas=3), (("ml", "chat"), True)),  # more than the status
        (child(rv="11", owned=False, ready=1), None),  # not the model's (KServe's Deployment)
    ],
    ids=["echo", "older", "status-only", "spec", "not-owned"],
)
def test_what_a_second_event_tells(second: dict[str, Any], outcome: object) -> None:
    cache = ChildCache(MANAGER)
    cache.put(child(rv="10"))
    assert cache.put(second) == outcome


def test_an_older_answer_never_overwrites_a_newer_one() -> None:
    cache = ChildCache(MANAGER)
    cache.put(child(rv="12", replicas=3))
    cache.put(child(rv="11", replicas=2))
    kept = cache.get("ml", "Deployment", "chat-abc")
    assert kept is not None
    assert kept["spec"]["replicas"] == 3


def test_removal_forgets_the_object_and_its_model() -> None:
    cache = ChildCache(MANAGER)
    cache.put(child())
    assert cache.remove("ml", "Deployment", "chat-abc") == ("ml", "chat")
    assert cache.remove("ml", "Deployment", "chat-abc") is None
    assert cache.children("ml", "chat") == []
    assert len(cache) == 0


def test_a_listing_is_the_truth_for_its_kind_and_scope_and_syncs_it() -> None:
    cache = ChildCache(MANAGER, scopes=("ml", "ops"))
    cache.put(child("chat-old"))
    cache.put(child("ops-1", model="ops", namespace="ops"))
    cache.put(child("chat-route", kind="HTTPRoute"))
    assert not cache.synced("Deployment")
    changed = cache.replace_kind("Deployment", "ml", [child("chat-new")])
    # chat-old is gone, chat-new came: the model is told (twice is fine: requests coalesce)
    assert set(changed) == {(("ml", "chat"), True)}
    names = sorted(o["metadata"]["name"] for o in cache.children("ml", "chat"))
    assert names == ["chat-new", "chat-route"]  # another kind untouched
    assert cache.children("ops", "ops") != []  # another namespace's listing is its own
    assert not cache.synced("Deployment")  # "ops" not listed yet
    assert cache.replace_kind("Deployment", "ops", [child("ops-1", model="ops", namespace="ops")]) == []
    assert cache.synced("Deployment")


def test_a_fresh_read_of_one_model_replaces_what_is_held_of_it() -> None:
    cache = ChildCache(MANAGER)
    cache.put(child("chat-a"))
    cache.put(child("chat-b"))
    cache.put(child("other-a", model="other"))
    b = copy.deepcopy(child("chat-b", rv="20", ready=1))
    cache.replace_model_kind("ml", "chat", "Deployment", [b])
    assert [o["metadata"]["name"] for o in cache.children("ml", "chat")] == ["chat-b"]
    assert cache.children("ml", "chat")[0]["status"]["readyReplicas"] == 1
    assert [o["metadata"]["name"] for o in cache.children("ml", "other")] == ["other-a"]


def test_a_child_relabelled_to_another_model_moves() -> None:
    cache = ChildCache(MANAGER)
    cache.put(child("shared", model="a"))
    moved = child("shared", model="b", rv="11")
    assert cache.put(moved) == (("ml", "b"), True)
    assert cache.children("ml", "a") == []
    assert [o["metadata"]["name"] for o in cache.children("ml", "b")] == ["shared"]


def _model(rv: str, uid: str = "m1", replicas: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ml", "name": "chat", "uid": uid, "resourceVersion": rv},
        "spec": {"scaling": {"minReplicas": replicas}},
    }


def test_the_models_held_tell_a_listing_which_bodies_it_must_read() -> None:
    models = LatestModels()
    assert not models.holds(_model("5")["metadata"])  # never seen: read it
    models.remember(_model("5"))
    assert models.holds(_model("5")["metadata"])  # unchanged: no need to read it
    assert models.holds(_model("4")["metadata"])  # we hold newer (the answer to our own write)
    assert not models.holds(_model("6")["metadata"])  # changed since: an event was missed
    assert not models.holds(_model("5", uid="m2")["metadata"])  # deleted and created again


def test_a_model_is_kept_as_the_newest_seen() -> None:
    models = LatestModels()
    models.remember(_model("7", replicas=2))
    models.remember(_model("6", replicas=1))  # older: a listing from before our write
    held = models.get("ml", "chat")
    assert held is not None
    assert held["spec"]["scaling"]["minReplicas"] == 2
    models.remember(_model("8", replicas=3))
    held = models.get("ml", "chat")
    assert held is not None
    assert held["spec"]["scaling"]["minReplicas"] == 3
