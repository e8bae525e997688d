"""Status writes: a merge patch that really turns the old status into the new one."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nlpmodel_operator.controller.runner import status_patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies it."""
    if not isinstance(patch, dict):
        return patch
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        pytest.param({"phase": "Ready"}, {"phase": "Ready"}, None, id="unchanged"),
        pytest.param({"phase": "Pending"}, {"phase": "Ready"}, {"phase": "Ready"}, id="scalar"),
        pytest.param(
            {"canaryRevision": "abc", "phase": "Progressing"},
            {"phase": "Ready"},
            {"canaryRevision": None, "phase": "Ready"},
            id="removed-key",
        ),
        pytest.param(
            {"plan": {"fits": False, "reasons": ["too big"]}},
            {"plan": {"fits": True}},
            {"plan": {"fits": True, "reasons": None}},
            id="nested-removed-key",
        ),
        pytest.param({"history": [1, 2]}, {"history": [2, 3]}, {"history": [2, 3]}, id="lists-replaced"),
    ],
)
def test_status_patch(old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any] | None) -> None:
    assert status_patch(old, new) == patch


# Status objects never hold nulls (absent means unset): merge patches cannot express a stored null.
json_values = st.recursive(
    st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=2), children, max_size=3)
    ),
    max_leaves=8,
)
statuses = st.dictionaries(st.text(max_size=2), json_values, max_size=4)


@given(statuses, statuses)
def test_applying_the_patch_gives_the_new_status(old: dict[str, Any], new: dict[str, Any]) -> None:
    patch = status_patch(old, new)
    assert (old if patch is None else apply_merge_patch(old, patch)) == new
