"""The kopf peering objects the operator creates for `--peering NAME`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nlpmodel_operator.controller.peering import default_priority, leads, peering_objects


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


NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def peer(priority: int, seen_s_ago: float, lifetime: int = 60) -> dict[str, object]:
    return {
        "priority": priority,
        "lastseen": (NOW - timedelta(seconds=seen_s_ago)).isoformat(),
        "lifetime": lifetime,
    }


@pytest.mark.parametrize(
    ("peers", "expected"),
    [
        pytest.param({"me": peer(5, 1)}, True, id="alone"),
        pytest.param({"me": peer(5, 1), "old": peer(9, 1)}, False, id="an-older-replica-is-alive"),
        pytest.param({"me": peer(5, 1), "new": peer(1, 1)}, True, id="a-newer-replica-waits"),
        pytest.param({"me": peer(5, 1), "twin": peer(5, 1)}, False, id="same-priority-pauses-all-as-kopf"),
        pytest.param({"me": peer(5, 1), "dead": peer(9, 61)}, True, id="the-older-one-died"),
        pytest.param({"other": peer(1, 1)}, False, id="not-joined-yet"),
        pytest.param({"me": peer(5, 61)}, False, id="own-entry-expired"),
    ],
)
def test_a_replica_leads_by_kopfs_rule(peers: dict[str, object], expected: bool) -> None:
    assert leads(peers, "me", 5, NOW) is expected


def test_older_replicas_have_higher_priority() -> None:
    assert default_priority(1000.0) > default_priority(1000.001)
