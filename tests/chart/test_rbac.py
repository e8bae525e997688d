"""The chart's ClusterRole rules (the one file the chart renders and the integration tests bind the
operator to) grant every verb the operator needs on every kind the registries declare."""

from __future__ import annotations

from typing import Any

import pytest

from nlpmodel_harness.rbac import operator_rules
from nlpmodel_operator.core.children import child_kinds
from nlpmodel_operator.core.kinds import ChildKind


def granted(rules: list[dict[str, Any]], group: str, plural: str) -> set[str]:
    return {
        verb
        for rule in rules
        if group in rule.get("apiGroups", []) and plural in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


@pytest.mark.parametrize("kind", child_kinds(), ids=lambda k: f"{k.kind}.{k.group or 'core'}")
def test_the_rules_grant_each_registered_kind_its_verbs(kind: ChildKind) -> None:
    missing = kind.verbs - granted(operator_rules(), kind.group, kind.plural)
    assert not missing, f"clusterrole-rules.yaml lacks {sorted(missing)} on {kind.plural}.{kind.group}"


def test_every_kind_is_watched_by_the_informers_and_deleted() -> None:
    for kind in (*child_kinds(), ChildKind("v1", "Example", "examples", watched=False)):
        assert {"watch", "list", "create", "patch", "delete"} <= kind.verbs


def test_the_evaluation_gate_may_read_configmaps_and_nothing_more() -> None:
    # The dataset of spec.rollout.evaluation is read with a GET; Secrets are never readable.
    assert granted(operator_rules(), "", "configmaps") == {"get"}
    assert granted(operator_rules(), "", "secrets") == set()
