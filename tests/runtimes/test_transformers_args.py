"""The operator's command lines for `engine: transformers` are the runtime's contract: the real entry
point (`python -m nlpmodel_runtime`, in the runtime venv) accepts each one and only then fails, because
this machine has neither the model at /mnt/models nor a GPU (exit 3 with a message, never 2 = usage)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from rendered_commands import EXAMPLES, command_lines, example_spec, runtime_env

CASES = [case for example in EXAMPLES for case in command_lines(example, "transformers")]
EXIT_LOAD_FAILED = 3


def test_transformers_examples_are_covered() -> None:
    examples = {e.stem for e in EXAMPLES if example_spec(e)[1].runtime.engine == "transformers"}
    assert examples == {"bert-classifier-cpu", "mistral-7b-nf4-transformers"}
    assert {label.split(":")[0] for label, _ in CASES} == examples


@pytest.mark.parametrize(("label", "argv"), CASES, ids=[label for label, _ in CASES])
def test_runtime_accepts_the_rendered_command_line(label: str, argv: list[str], runtime_python: Path) -> None:
    assert argv[:3] == ["python", "-m", "nlpmodel_runtime"]
    result = subprocess.run(
        [str(runtime_python), *argv[1:]],
        capture_output=True,
        text=True,
        env=runtime_env(),
        timeout=300,
        check=False,
    )
    assert result.returncode == EXIT_LOAD_FAILED, result.stderr[-3000:]
    assert "usage:" not in result.stderr
    assert "Traceback" not in result.stderr
    expected = (
        "no CUDA device"
        if "--device" in argv and argv[argv.index("--device") + 1] == "cuda"
        else "cannot load"
    )
    assert expected in result.stderr
