"""The evaluation gate with real inference: our transformers runtime serving tiny models built from
configs (nothing downloaded), judged by `nlpctl eval` (the operator's client and verdict). ``small-v2``
is ``small`` again under another name (the same weights): it agrees with it on every case; ``large`` is
another model and answers otherwise."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nlpmodel_harness import tinymodels
from nlpmodel_harness.runtime_servers import RuntimeServers
from nlpmodel_operator.cli.evaluate import EXIT_EVAL_FAILED
from nlpmodel_operator.cli.main import main

# Tiny models have no chat template: prompts go to /v1/completions.
CASES = [
    {"id": f"drift-{i}", "prompt": f"The number {i} is", "expect": {"agreement": True}, "maxTokens": 8}
    for i in range(30)
]


@pytest.fixture(scope="module")
def runtimes(runtime_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """name → base URL of a runtime serving that tiny model on this machine's CPU."""
    models = (tinymodels.SMALL, tinymodels.SMALL_V2, tinymodels.LARGE)
    with RuntimeServers(models, tmp_path_factory.mktemp("runtimes"), runtime_python) as urls:
        yield urls


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(json.dumps(case) for case in CASES) + "\n")
    return path


def _eval(
    dataset: Path, endpoint: str, baseline: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, object]]:
    code = main(["eval", str(dataset), "--endpoint", endpoint, "--baseline", baseline, "-o", "json"])
    return code, json.loads(capsys.readouterr().out)


def test_the_same_weights_under_another_name_pass(
    runtimes: dict[str, str], dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _eval(dataset, runtimes["small-v2"], runtimes["small"], capsys)
    assert (code, out["verdict"], out["canaryScore"]) == (0, "pass", 1.0)


def test_another_model_disagrees_and_fails(
    runtimes: dict[str, str], dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _eval(dataset, runtimes["large"], runtimes["small"], capsys)
    assert (code, out["verdict"]) == (EXIT_EVAL_FAILED, "fail")
    assert str(out["message"]).startswith("agreement ")
    assert out["failingCases"]
