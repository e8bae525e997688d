"""The kopf peering objects the operator creates for `--peering NAME`."""

from __future__ import annotations

from nlpmodel_operator.controller.peering import peering_objects


def test_cluster_wide_operator_uses_one_cluster_peering() -> None:
    assert peering_objects("nlpm", ()) == [
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "nlpm"}}
    ]


def test_namespaced_operator_uses_a_peering_per_namespace() -> None:
    objects = peering_objects("nlpm", ("team-a", "team-b"))
    assert [(o["kind"], o["metadata"]["namespace"]) for o in objects] == [
        ("KopfPeering", "team-a"),
        ("KopfPeering", "team-b"),
    ]
