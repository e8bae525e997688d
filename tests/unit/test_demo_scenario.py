"""The demo's scenario: three revisions of one NLPModel that our CRD admits; --fast shortens only the
rollout's timing; a directory that is not such a scenario is refused with the reason. The local
story's fourth chapter (evaluation/): a dataset the gate parses and an update that carries the gate,
whose stand-ins' wrong answers the gate fails with the failing case ids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from nlpmodel_harness import tinymodels
from nlpmodel_harness.demo import (
    EVALUATION,
    FAST_INTERVAL,
    FAST_PAUSE,
    NODE_SCENARIO,
    SCENARIO,
    WRONG_RATE,
    DemoError,
    load_evaluation,
    load_scenario,
)
from nlpmodel_harness.modelserver import Params, scripted_answer
from nlpmodel_harness.schemacheck import check_custom_object
from nlpmodel_operator.api.crd import crd
from nlpmodel_operator.cli.main import main as nlpctl
from nlpmodel_operator.core.evaluation.dataset import Case, parse_dataset
from nlpmodel_operator.core.evaluation.gate import Thresholds, evaluate
from nlpmodel_operator.core.evaluation.scorers import Answer


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


def test_the_evaluation_chapter_updates_the_same_model_with_a_gate_on_its_dataset() -> None:
    chapters = load_scenario(SCENARIO, fast=False)
    evaluation = load_evaluation(SCENARIO, fast=False)
    assert evaluation is not None
    worse = evaluation.chapter
    assert check_custom_object(worse.body, crd()) == []
    assert worse.revision not in {c.revision for c in chapters}
    assert worse.body["metadata"] == chapters[0].body["metadata"]
    gate = worse.body["spec"]["rollout"]["evaluation"]
    assert gate.get("when", "beforeTraffic") == "beforeTraffic"
    assert gate["dataset"]["configMap"] == evaluation.dataset["metadata"]["name"]
    assert evaluation.dataset["metadata"]["namespace"] == chapters[0].body["metadata"]["namespace"]
    fast = load_evaluation(SCENARIO, fast=True)
    assert fast is not None
    assert fast.chapter.revision == worse.revision
    assert fast.chapter.body["spec"]["rollout"]["analysis"]["interval"] == FAST_INTERVAL
    assert load_evaluation(NODE_SCENARIO, fast=False) is None  # real models: no scripted wrong answers


def _answers(cases: Sequence[Case], params: Params) -> dict[str, Answer | None]:
    """What a stand-in with these params answers to each chat case (its last message)."""
    return {case.id: Answer(text=scripted_answer(case.messages[-1][1], params)) for case in cases}


def test_the_stand_ins_wrong_answers_fail_the_gate_and_name_the_cases() -> None:
    """What the demo's fourth chapter relies on, in the pure core: the stable's stand-in answers every
    case right, the canary's (WRONG_RATE) enough of them wrong for the paired test at the manifest's
    maxDrop; the verdict names the cases."""
    evaluation = load_evaluation(SCENARIO, fast=False)
    assert evaluation is not None
    gate = evaluation.chapter.body["spec"]["rollout"]["evaluation"]
    cases = parse_dataset(evaluation.dataset["data"][gate["dataset"]["key"]])
    stable = _answers(cases, Params())
    canary = _answers(cases, Params(wrong_rate=WRONG_RATE))
    max_drop = float(gate["maxDrop"].rstrip("%")) / 100
    assert evaluate(cases, stable, stable, Thresholds(max_drop=max_drop)).result == "pass"
    verdict = evaluate(cases, canary, stable, Thresholds(max_drop=max_drop))
    assert verdict.result == "fail", verdict.message
    assert verdict.stable_score == 1.0
    assert verdict.canary_score is not None
    assert verdict.canary_score < 1.0
    assert verdict.failing_cases
    assert all(canary[i] == Answer(text="I do not know.") for i in verdict.failing_cases)
    assert "worst cases: " + verdict.failing_cases[0] in verdict.message


def test_an_evaluation_chapter_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    for path in sorted(SCENARIO.glob("*.yaml")):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / EVALUATION).mkdir()
    originals = {p.name: yaml.safe_load(p.read_text()) for p in (SCENARIO / EVALUATION).glob("*.yaml")}
    model_name = next(n for n, b in originals.items() if b["kind"] == "NLPModel")
    dataset_name = next(n for n, b in originals.items() if b["kind"] == "ConfigMap")
    (tmp_path / EVALUATION / model_name).write_text(yaml.safe_dump(originals[model_name]))
    with pytest.raises(DemoError, match="one ConfigMap"):
        load_evaluation(tmp_path, fast=False)
    broken = originals[dataset_name]
    key = next(iter(broken["data"]))
    broken["data"][key] += '{"id": "x", "prompt": "p", "expect": {"nope": 1}}\n'
    (tmp_path / EVALUATION / dataset_name).write_text(yaml.safe_dump(broken))
    with pytest.raises(DemoError, match=rf"{dataset_name}: line 41"):
        load_evaluation(tmp_path, fast=False)
    other = {**originals[model_name], "metadata": {**originals[model_name]["metadata"], "name": "other"}}
    (tmp_path / EVALUATION / model_name).write_text(yaml.safe_dump(other))
    with pytest.raises(DemoError, match="must update the scenario's NLPModel chat"):
        load_evaluation(tmp_path, fast=False)
