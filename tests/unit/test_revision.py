"""Revision hashes: what restarts pods changes the hash, what does not restart them leaves it alone."""

from __future__ import annotations

from typing import Any

import pytest

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.revision import revision_hash, revision_name

BASE: dict[str, Any] = {"model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"}}


def h(**sections: Any) -> str:
    return revision_hash(NLPModelSpec.model_validate({**BASE, **sections}))


def test_hash_is_eight_hex_digits_and_stable() -> None:
    value = h()
    assert len(value) == 8
    assert int(value, 16) >= 0
    # A golden value: a change here restarts every model of every user on upgrade.
    assert value == h() == "786b51e7"
    assert revision_name("chat", value) == f"chat-{value}"


@pytest.mark.parametrize(
    "sections",
    [
        pytest.param({"scaling": {"minReplicas": 2, "maxReplicas": 8, "metric": "kv-cache"}}, id="scaling"),
        pytest.param({"rollout": {"strategy": "direct"}}, id="rollout"),
        pytest.param({"rollout": {"steps": [{"weight": 5}, {"weight": 100, "pause": "1h"}]}}, id="steps"),
        pytest.param({"serving": {"router": "replica-ratio"}}, id="router"),
        pytest.param({"serving": {"gateway": {"name": "gw"}, "hostnames": ["a.example.com"]}}, id="gateway"),
        pytest.param({"runtime": {"version": "0.33.0"}}, id="explicit-default"),
        pytest.param({"serving": {"platform": "kserve"}}, id="explicit-default-platform"),
    ],
)
def test_fields_outside_the_serving_template_keep_the_revision(sections: dict[str, Any]) -> None:
    assert h(**sections) == h()


@pytest.mark.parametrize(
    "sections",
    [
        pytest.param(
            {"model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "revision": "abc"}}, id="revision"
        ),
        pytest.param({"task": "embed"}, id="task"),
        pytest.param({"runtime": {"maxModelLen": 4096}}, id="max-model-len"),
        pytest.param({"runtime": {"args": ["--enable-prefix-caching"]}}, id="args"),
        pytest.param({"quantization": {"method": "fp8"}}, id="quantization"),
        pytest.param({"quantization": {"kvCacheDtype": "fp8"}}, id="kv-dtype"),
        pytest.param({"resources": {"gpu": {"count": 2}}}, id="gpus"),
        pytest.param({"resources": {"memory": "32Gi"}}, id="memory"),
        pytest.param({"serving": {"platform": "raw"}}, id="platform"),
    ],
)
def test_serving_template_changes_make_a_new_revision(sections: dict[str, Any]) -> None:
    assert h(**sections) != h()
