"""The order of a decision's actions, as data: each safety rule of the house, one row."""

from __future__ import annotations

from typing import get_args

import pytest

from nlpmodel_operator.core.ordering import Part, action_order, in_order
from nlpmodel_operator.core.records import Apply, ChildRef, Delete

BOTH = (True, False)

# (when revisions go?, earlier part, later part): what must have happened before what.
RULES: list[tuple[tuple[bool, ...], Part, Part, str]] = [
    ((True,), "route", "delete", "traffic leaves a revision before it is deleted"),
    (
        (True,),
        "delete",
        "revision",
        "the revisions that lost traffic free their GPUs before the survivor grows",
    ),
    (
        (True,),
        "delete",
        "resize",
        "the revisions that lost traffic free their GPUs before the survivor grows",
    ),
    (
        (True,),
        "delete",
        "scaler",
        "the revisions that lost traffic free their GPUs before the survivor grows",
    ),
    ((False,), "resize", "revision", "the stable gives GPUs up before the canary takes them"),
    ((False,), "revision", "route", "the canary is there at its size before traffic moves to it"),
    ((False,), "resize", "route", "capacity before traffic"),
    ((False,), "scaler", "route", "capacity before traffic"),
    ((False,), "route", "delete", "traffic leaves a stale object before it is deleted"),
    (BOTH, "monitor", "revision", "a new revision's pods are scraped from their start"),
    (BOTH, "stale-scaler", "scaler", "one autoscaler per workload: the stale one goes first"),
    (BOTH, "handover", "revision", "the live count is kept before an apply without replicas"),
]


@pytest.mark.parametrize(
    ("revisions_go", "earlier", "later"),
    [
        pytest.param(
            go, earlier, later, id=f"{'revisions-go' if go else 'nothing-goes'}: {why}: {earlier}<{later}"
        )
        for cases, earlier, later, why in RULES
        for go in cases
    ],
)
def test_safety_rules(revisions_go: bool, earlier: Part, later: Part) -> None:
    order = action_order(revisions_go)
    assert order.index(earlier) < order.index(later)


@pytest.mark.parametrize("revisions_go", BOTH)
def test_every_part_runs_once(revisions_go: bool) -> None:
    assert sorted(action_order(revisions_go)) == sorted(get_args(Part))


def test_actions_run_part_by_part_in_their_order() -> None:
    route = Apply({"kind": "HTTPRoute", "metadata": {"name": "m"}})
    old = Delete(ChildRef("apps/v1", "Deployment", "m-old"))
    stable = Apply({"kind": "Deployment", "metadata": {"name": "m-new"}})
    parts: dict[Part, list[Apply | Delete]] = {"revision": [stable], "delete": [old], "route": [route]}
    assert in_order(parts, revisions_go=True) == [route, old, stable]
    assert in_order(parts, revisions_go=False) == [stable, route, old]
