"""vLLM checks vLLM: every command line the operator renders for an example is parsed by vLLM's own CLI.

The checker (runtimes/vllm/check_args.py) runs in the runtime venv, where the vLLM release the operator
supports is installed; it runs `vllm serve`'s real parser and validation and the config validators for
values vLLM checks only later (quantization, kv-cache dtype, load format). Any rejection fails here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from rendered_commands import EXAMPLES, REPO, command_lines, example_spec, runtime_env

from nlpmodel_harness import runtime_venv

CHECKER = REPO / "runtimes" / "vllm" / "check_args.py"
CASES = [case for example in EXAMPLES for case in command_lines(example, "vllm")]


def vllm_verdicts(python: Path, cases: list[tuple[str, list[str]]], tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "verdicts.json"
    payload = json.dumps([{"label": label, "argv": argv} for label, argv in cases])
    result = subprocess.run(
        [str(python), str(CHECKER), str(out)],
        input=payload,
        capture_output=True,
        text=True,
        env=runtime_env(hub_offline=False),
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return {v["label"]: v for v in json.loads(out.read_text())}


def test_every_vllm_example_is_covered() -> None:
    vllm_examples = {e.stem for e in EXAMPLES if example_spec(e)[1].runtime.engine == "vllm"}
    assert len(vllm_examples) >= 4
    assert {label.split(":")[0] for label, _ in CASES} == vllm_examples
    on_own_platform = {(e.stem, example_spec(e)[1].serving.platform) for e in EXAMPLES}
    assert {(label.split(":")[0], label.split(":")[1]) for label, _ in CASES} >= {
        (stem, platform) for stem, platform in on_own_platform if stem in vllm_examples
    }
    assert all(argv[:2] == ["vllm", "serve"] for _, argv in CASES)


def test_examples_target_the_vllm_release_in_the_venv() -> None:
    versions = {
        example_spec(e)[1].runtime.version for e in EXAMPLES if example_spec(e)[1].runtime.engine == "vllm"
    }
    assert versions == {runtime_venv.vllm_version()}


@pytest.mark.timeout(1800)  # the first run builds the venv
def test_vllm_accepts_every_rendered_command_line(runtime_python: Path, tmp_path: Path) -> None:
    # Negative controls in the same run: the checker must reject what vLLM 0.33 rejects.
    base = CASES[0][1]
    controls = [
        ("control:unknown-flag", [*base, "--no-such-flag"]),
        ("control:bitsandbytes", [*base, "--quantization", "bitsandbytes"]),
        ("control:kv-cache-dtype", [*base, "--kv-cache-dtype", "fp9"]),
        ("control:runner", [*base, "--runner", "pool"]),
    ]
    verdicts = vllm_verdicts(runtime_python, CASES + controls, tmp_path)
    rejected = {
        label: v["error"] for label, v in verdicts.items() if not v["ok"] and not label.startswith("control:")
    }
    assert rejected == {}
    assert set(verdicts) == {label for label, _ in CASES + controls}
    # The model is `vllm serve`'s positional argument (0.33 deprecates --model), and vLLM's parser
    # takes it as the model to load.
    assert {label: argv[2] for label, argv in CASES} == {
        label: verdicts[label]["model"] for label, _ in CASES
    }
    assert all("--model" not in argv for _, argv in CASES)
    for label, _ in controls:
        assert not verdicts[label]["ok"], label
    assert "bitsandbytes" in verdicts["control:bitsandbytes"]["error"]
    assert "--no-such-flag" in verdicts["control:unknown-flag"]["error"]
