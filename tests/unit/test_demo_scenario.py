"""The demo's scenario: three revisions of one NLPModel that our CRD admits; --fast shortens only the
rollout's timing; a directory that is not such a scenario is refused with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nlpmodel_harness import tinymodels
from nlpmodel_harness.demo import FAST_INTERVAL, FAST_PAUSE, NODE_SCENARIO, SCENARIO, DemoError, load_scenario
from nlpmodel_harness.schemacheck import check_custom_object
from nlpmodel_operator.api.crd import crd
from nlpmodel_operator.cli.main import main as nlpctl


def test_the_shipped_scenario_is_three_revisions_of_one_model() -> None:
    chapters = load_scenario(SCENARIO, fast=False)
    assert [c.path.name for c in chapters] == ["chat-v1.yaml", "chat-v2-slow.yaml", "chat-v3-healthy.yaml"]
    assert len({c.revision for c in chapters}) == 3
    for chapter in chapters:
        assert check_custom_object(chapter.body, crd()) == [], chapter.path.name
        assert chapter.body["spec"]["rollout"]["analysis"]["failureThreshold"] == 2


def test_fast_changes_the_timing_not_the_revisions() -> None:
    normal, fast = load_scenario(SCENARIO, fast=False), load_scenario(SCENARIO, fast=True)
    assert [c.revision for c in fast] == [c.revision for c in normal]
    rollout = fast[1].body["spec"]["rollout"]
    assert rollout["analysis"]["interval"] == FAST_INTERVAL
    assert {s["pause"] for s in rollout["steps"]} == {FAST_PAUSE}
    assert (
        load_scenario(SCENARIO, fast=False, namespace="elsewhere")[0].body["metadata"]["namespace"]
        == "elsewhere"
    )


def test_a_directory_that_is_not_a_scenario_is_refused(tmp_path: Path) -> None:
    bodies = [yaml.safe_load(p.read_text()) for p in sorted(SCENARIO.glob("*.yaml"))]
    for i, body in enumerate(bodies[:2]):
        (tmp_path / f"{i}.yaml").write_text(yaml.safe_dump(body))
    with pytest.raises(DemoError, match="exactly three"):
        load_scenario(tmp_path, fast=False)
    bodies[2]["metadata"]["name"] = "other"
    (tmp_path / "2.yaml").write_text(yaml.safe_dump(bodies[2]))
    with pytest.raises(DemoError, match="the same NLPModel"):
        load_scenario(tmp_path, fast=False)


def test_nlpctl_demo_takes_the_demos_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert nlpctl(["demo", "--fast", "--offline"]) == 0
    assert "chat-v2-slow.yaml: chat: valid" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        nlpctl(["demo", "--no-such-option"])
    assert usage.value.code == 2


def test_the_real_pods_scenario_rolls_out_a_larger_model_then_one_of_the_same_size() -> None:
    """`demo --node`: the slow canary is slow because its model is larger, not because it is told to be."""
    chapters = load_scenario(NODE_SCENARIO, fast=False)
    assert len({c.revision for c in chapters}) == 3
    for chapter in chapters:
        assert check_custom_object(chapter.body, crd()) == [], chapter.path.name
    uris = [c.body["spec"]["model"]["uri"] for c in chapters]
    assert uris == ["pvc://models/small", "pvc://models/large", "pvc://models/small-v2"]
    small, large, small_v2 = (tinymodels.SMALL, tinymodels.LARGE, tinymodels.SMALL_V2)
    assert [m.name for m in (small, large, small_v2)] == [u.rsplit("/", 1)[1] for u in uris]
    assert large.layers * large.hidden**2 > 100 * small.layers * small.hidden**2
    assert (small.layers, small.hidden, small.heads) == (small_v2.layers, small_v2.hidden, small_v2.heads)


def test_nlpctl_demo_node_offline_checks_its_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert nlpctl(["demo", "--node", "--offline"]) == 0
    assert "chat-v2-larger.yaml: chat: valid" in capsys.readouterr().out
