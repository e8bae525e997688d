"""The GPU bench script (bench/runtime_bnb), run end to end in its CPU dry-run mode."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# bench/ is run as `python -m bench.runtime_bnb.run` from the repository root; load it the same way.
_spec = importlib.util.spec_from_file_location(
    "bench_runtime_bnb_run", REPO / "bench" / "runtime_bnb" / "run.py"
)
assert _spec is not None
assert _spec.loader is not None
bench_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_run)
quantile, rendered_args, spec_for = bench_run.quantile, bench_run.rendered_args, bench_run.spec_for

ARCH = {
    "params": 1_100_048_384,
    "layers": 22,
    "hiddenSize": 2048,
    "numHeads": 32,
    "numKVHeads": 4,
    "headDim": 64,
    "vocabSize": 32000,
}


def test_quantile_interpolates_like_histogram_quantile() -> None:
    buckets = [(0.1, 0.0), (0.2, 10.0), (0.4, 20.0), (math.inf, 20.0)]
    assert quantile(buckets, 0.5) == pytest.approx(0.2)
    assert quantile(buckets, 0.75) == pytest.approx(0.3)
    assert quantile([(math.inf, 0.0)], 0.5) is None


def test_bench_uses_the_operators_rendered_contract() -> None:
    spec = spec_for(ARCH, "bitsandbytes-nf4", "nvidia-h100-80gb", 2048)
    args = rendered_args(spec, Path("/models/m"), 18001, 2048)
    assert args[args.index("--quantization") + 1] == "bitsandbytes-nf4"
    assert "--double-quant" in args
    assert args[args.index("--device") + 1] == "cuda"
    assert args[args.index("--http-port") + 1] == "18001"


@pytest.mark.timeout(1800)
def test_dry_run_writes_latencies_and_memory(runtime_python: Path, tmp_path: Path) -> None:
    out = tmp_path / "runtime_bnb.json"
    cmd = [sys.executable, "-m", "bench.runtime_bnb.run", "--dry-run", "--requests", "3", "--max-tokens", "4"]
    result = subprocess.run(
        [*cmd, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    (mode,) = report["results"]
    assert mode["device"] == "cpu"
    assert mode["metrics"]["vllm:time_to_first_token_seconds"]["count"] == 3
    assert mode["metrics"]["vllm:inter_token_latency_seconds"]["count"] == 3 * 3
    assert mode["measured_memory_bytes_after_load"] > 0
    assert mode["plan_weight_bytes"] > 0
