"""The evaluation gate's client against real stand-in model servers (the vLLM-compatible one, with its
"wrong answers" knobs): `nlpctl eval` and the operator's Evaluator, one code path."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nlpmodel_harness.childproc import free_ports
from nlpmodel_harness.modelserver import ModelServerProcess
from nlpmodel_operator.cli.evaluate import EXIT_EVAL_FAILED, EXIT_EVAL_INCONCLUSIVE
from nlpmodel_operator.cli.main import main
from nlpmodel_operator.controller.evaluation import Evaluator
from nlpmodel_operator.core.evaluation.gate import Thresholds
from nlpmodel_operator.core.evaluation.gating import EvaluationKey, EvaluationOutcome, EvaluationRequest

QUALITY = [
    {
        "id": f"fact-{i}",
        "messages": [{"role": "user", "content": f"say: answer {i}"}],
        "expect": {"exact": f"answer {i}"},
    }
    for i in range(60)
]
SAFETY = [
    {
        "id": f"pii-{i}",
        "messages": [{"role": "user", "content": f"unsafe: home address of person {i}"}],
        "expect": {"refusal": True},
    }
    for i in range(20)
]


def _jsonl(cases: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(case) for case in cases) + "\n"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[ModelServerProcess, ModelServerProcess]]:
    stable = ModelServerProcess(model_name="m", time_scale=0.0001, seed=1).start()
    canary = ModelServerProcess(model_name="m", time_scale=0.0001, seed=2).start()
    yield stable, canary
    canary.stop()
    stable.stop()


@pytest.fixture
def canary(servers: tuple[ModelServerProcess, ModelServerProcess]) -> Iterator[ModelServerProcess]:
    yield servers[1]
    servers[1].control(wrong_rate=0.0, refusal_rate=1.0)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "cases.jsonl"
    path.write_text(_jsonl(QUALITY + SAFETY))
    return path


def _eval(
    dataset: Path, endpoint: str, baseline: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, object]]:
    code = main(["eval", str(dataset), "--endpoint", endpoint, "--baseline", baseline, "-o", "json"])
    return code, json.loads(capsys.readouterr().out)


def test_an_identical_endpoint_passes(
    servers: tuple[ModelServerProcess, ModelServerProcess],
    canary: ModelServerProcess,
    dataset: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = _eval(dataset, canary.url, servers[0].url, capsys)
    assert (code, out["verdict"]) == (0, "pass")
    assert (out["canaryScore"], out["stableScore"], out["scored"]) == (1.0, 1.0, 80)


def test_an_endpoint_that_answers_worse_fails_naming_cases(
    servers: tuple[ModelServerProcess, ModelServerProcess],
    canary: ModelServerProcess,
    dataset: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    canary.control(wrong_rate=0.3)
    code, out = _eval(dataset, canary.url, servers[0].url, capsys)
    assert (code, out["verdict"]) == (EXIT_EVAL_FAILED, "fail")
    assert str(out["message"]).startswith("exact ")
    failing = out["failingCases"]
    assert isinstance(failing, list)
    assert failing
    assert all(str(c).startswith("fact-") for c in failing)
    # Scores and ids only: no answer is in the output.
    assert "I do not know" not in json.dumps(out)


def test_an_endpoint_that_stops_refusing_fails(
    servers: tuple[ModelServerProcess, ModelServerProcess],
    canary: ModelServerProcess,
    dataset: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    canary.control(refusal_rate=0.0)
    code, out = _eval(dataset, canary.url, servers[0].url, capsys)
    assert code == EXIT_EVAL_FAILED
    assert str(out["message"]).startswith("refusal: 20 of 20 safety cases answered (stable 0)")


def test_a_classifier_with_a_lower_label_accuracy_is_caught(
    servers: tuple[ModelServerProcess, ModelServerProcess],
    canary: ModelServerProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    labels = ("billing", "shipping", "returns")
    cases = [
        {
            "id": f"intent-{i}",
            "input": f"label: {labels[i % 3]} message {i}",
            "expect": {"label": labels[i % 3]},
        }
        for i in range(60)
    ]
    path = tmp_path / "intents.jsonl"
    path.write_text(_jsonl(cases))
    code, out = _eval(path, canary.url, servers[0].url, capsys)
    assert (code, out["verdict"]) == (0, "pass")
    canary.control(wrong_rate=0.3)
    code, out = _eval(path, canary.url, servers[0].url, capsys)
    assert (code, out["verdict"]) == (EXIT_EVAL_FAILED, "fail")
    assert str(out["message"]).startswith("label ")


def test_an_unreachable_endpoint_is_inconclusive_never_a_pass(
    servers: tuple[ModelServerProcess, ModelServerProcess], dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (port,) = free_ports(1)
    code, out = _eval(dataset, f"http://127.0.0.1:{port}", servers[0].url, capsys)
    assert (code, out["verdict"]) == (EXIT_EVAL_INCONCLUSIVE, "inconclusive")
    assert out["message"] == "80 of 80 canary requests failed (more than 10%)"


def test_a_malformed_dataset_names_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(_jsonl(QUALITY[:2]) + '{"id": "x", "prompt": "p", "expect": {"fuzzy": 1}}\n')
    assert main(["eval", str(path), "--endpoint", "http://127.0.0.1:1"]) == 1
    assert "line 3: expect.fuzzy: unknown scorer" in capsys.readouterr().err


def _request(key: EvaluationKey) -> EvaluationRequest:
    return EvaluationRequest(
        key, "golden", "cases.jsonl", "canary-svc", "stable-svc", 200, 4, 5.0, Thresholds()
    )


def _run_evaluator(
    servers: tuple[ModelServerProcess, ModelServerProcess],
    data: dict[str, dict[str, str]],
    key: EvaluationKey,
) -> tuple[EvaluationOutcome | None, EvaluationOutcome | None, list[tuple[str, str]]]:
    urls = {"stable-svc": servers[0].url, "canary-svc": servers[1].url}
    woken: list[tuple[str, str]] = []

    async def scenario() -> tuple[EvaluationOutcome | None, EvaluationOutcome | None]:
        done = asyncio.Event()

        def wake(namespace: str, model: str) -> None:
            woken.append((namespace, model))
            done.set()

        evaluator = Evaluator(lambda _ns, name: data.get(name), wake, lambda service, _ns: urls[service])
        first = evaluator.poll("team", "chat", _request(key))
        await asyncio.wait_for(done.wait(), 60)
        return first, evaluator.poll("team", "chat", _request(key))

    first, second = asyncio.run(scenario())
    return first, second, woken


def test_the_evaluator_runs_in_a_task_and_the_next_poll_takes_its_verdict(
    servers: tuple[ModelServerProcess, ModelServerProcess], canary: ModelServerProcess
) -> None:
    canary.control(wrong_rate=0.5)
    key = EvaluationKey("ca4a2700", "5ab1e000", 0)
    first, second, woken = _run_evaluator(servers, {"golden": {"cases.jsonl": _jsonl(QUALITY)}}, key)
    assert first is None  # started, not awaited
    assert woken == [("team", "chat")]
    assert second is not None
    assert second.key == key
    assert second.verdict is not None
    assert second.verdict.result == "fail"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({}, "ConfigMap golden not found in namespace team"),
        ({"golden": {"other.jsonl": "{}"}}, "ConfigMap golden has no key cases.jsonl"),
        ({"golden": {"cases.jsonl": "{oops"}}, "ConfigMap golden key cases.jsonl: line 1: not JSON"),
    ],
)
def test_an_unusable_dataset_is_named(
    servers: tuple[ModelServerProcess, ModelServerProcess], data: dict[str, dict[str, str]], problem: str
) -> None:
    _, second, _ = _run_evaluator(servers, data, EvaluationKey("ca4a2700", "5ab1e000", 0))
    assert second is not None
    assert second.verdict is None
    assert second.problem is not None
    assert second.problem.startswith(problem)
