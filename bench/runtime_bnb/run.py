"""bitsandbytes nf4 / int8 on our transformers runtime: GPU memory vs `nlpctl plan`, TTFT/ITL from /metrics.

    .venv/bin/python -m bench.runtime_bnb.run                   # GPU: ~1.1B Llama from a config, nf4 and int8
    .venv/bin/python -m bench.runtime_bnb.run --dry-run         # CPU: a 2-layer model, no quantization

For each mode: build the model directory (random weights, nothing downloaded) with the runtime venv,
start `python -m nlpmodel_runtime` with exactly the args the operator renders for an NLPModel of that
model (engine transformers), send `--requests` greedy completions one after another, then read the
runtime's vLLM metrics (TTFT, ITL, E2E quantiles interpolated in vLLM's buckets, as Prometheus'
histogram_quantile does) and the process's memory (GPU: nvidia-smi's per-process used memory, which
includes the CUDA context; CPU: resident set), beside the plan's weight bytes and per-GPU reserve.
Results go to bench/results/runtime_bnb.json (or --out). Prints ratios, asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from nlpmodel_harness import runtime_venv
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.engines import EngineInput, engine_for
from nlpmodel_operator.core.resolve import resolve

ROOT = Path(__file__).resolve().parents[2]
TTFT, ITL, E2E = (
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:e2e_request_latency_seconds",
)


def spec_for(
    architecture: dict[str, Any], quantization: str, gpu_product: str | None, max_model_len: int
) -> NLPModelSpec:
    gpu = {"count": 1, "product": gpu_product} if gpu_product else {"count": 0}
    return NLPModelSpec.model_validate(
        {
            "model": {"uri": "pvc://bench/model", "architecture": architecture, "servedName": "bench"},
            "runtime": {"engine": "transformers", "maxModelLen": max_model_len},
            "quantization": {"method": quantization, "doubleQuant": quantization == "bitsandbytes-nf4"},
            "resources": {"gpu": gpu},
        }
    )


def rendered_args(spec: NLPModelSpec, model_dir: Path, port: int, max_model_len: int) -> list[str]:
    inp = EngineInput(
        spec=spec,
        served_name="bench",
        model_path=str(model_dir),
        max_model_len=max_model_len,
        tensor_parallel=1,
    )
    args = engine_for("transformers").args(inp)
    args[args.index("--http-port") + 1] = str(port)
    return [*args, "--host", "127.0.0.1"]


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """histogram_quantile over cumulative (le, count) pairs, linear within a bucket."""
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = le, count
    return lower


def scrape(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        if family.name in (TTFT, ITL, E2E):
            buckets = sorted(
                (float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket")
            )
            out[family.name] = {
                "count": buckets[-1][1] if buckets else 0,
                "p50_s": quantile(buckets, 0.5),
                "p95_s": quantile(buckets, 0.95),
            }
    return out


def process_memory_bytes(pid: int, gpu: bool) -> int | None:
    if gpu:
        query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
        lines = subprocess.run(query, capture_output=True, text=True, check=True).stdout.splitlines()
        used = [int(m) for p, m in (line.split(",") for line in lines if "," in line) if int(p) == pid]
        return used[0] * 1024 * 1024 if used else None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def run_mode(
    python: Path,
    model_dir: Path,
    architecture: dict[str, Any],
    quantization: str,
    gpu_product: str | None,
    args: Any,
) -> dict[str, Any]:
    spec = spec_for(architecture, quantization, gpu_product, args.max_model_len)
    resolution = resolve("bench", "bench", spec)
    plan = resolution.plan
    port = 18000 + os.getpid() % 1000
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in runtime_venv.RUNTIME_SOURCES)
    env["HF_HUB_OFFLINE"] = "1"
    cmd = [str(python), "-m", "nlpmodel_runtime", *rendered_args(spec, model_dir, port, args.max_model_len)]
    log_path = Path(tempfile.mkstemp(prefix=f"bench-{quantization}-", suffix=".log")[1])
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 1800
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"runtime exited {proc.returncode}: {log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        memory_loaded = process_memory_bytes(proc.pid, gpu_product is not None)
        for i in range(args.requests):
            post(
                url + "/v1/completions",
                {"prompt": f"request {i}: the support team", "max_tokens": args.max_tokens, "temperature": 0},
            )
        memory_after = process_memory_bytes(proc.pid, gpu_product is not None)
        latency = scrape(url)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {
        "quantization": quantization,
        "device": "cuda" if gpu_product else "cpu",
        "gpu_product": gpu_product,
        "command": cmd[1:],
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "measured_memory_bytes_after_load": memory_loaded,
        "measured_memory_bytes_after_requests": memory_after,
        "plan_weight_bytes": plan.weight_bytes if plan else None,
        "plan_reserve_bytes_per_gpu": plan.reserve_bytes_per_gpu if plan else None,
        "measured_over_plan_weights": (memory_loaded / plan.weight_bytes)
        if plan and memory_loaded and plan.weight_bytes
        else None,
        "metrics": latency,
    }


def gpu_product_name() -> str:
    """Our product key for the visible GPU (the planner's table), from nvidia-smi's name."""
    name = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=True,
    )
    text = name.stdout.splitlines()[0].lower()
    for key, product in (
        ("h200", "nvidia-h200-141gb"),
        ("h100", "nvidia-h100-80gb"),
        ("a100", "nvidia-a100-80gb"),
        ("l40s", "nvidia-l40s"),
        ("l4", "nvidia-l4"),
        ("a10g", "nvidia-a10g"),
    ):
        if key in text:
            return product
    raise SystemExit(f"unknown GPU {text!r}: add it to gpu_product_name()")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model, no quantization")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "runtime_bnb.json")
    args = parser.parse_args()
    python = runtime_venv.ensure()
    gpu_product = None if args.dry_run else gpu_product_name()
    modes = ["none"] if args.dry_run else ["bitsandbytes-nf4", "bitsandbytes-int8"]
    with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
        model_dir = Path(tmp) / "model"
        build = [str(python), str(ROOT / "bench" / "runtime_bnb" / "build_model.py"), "--out", str(model_dir)]
        subprocess.run([*build, "--size", "tiny" if args.dry_run else "1b"], check=True)
        architecture = json.loads((model_dir / "bench-architecture.json").read_text())
        results = [run_mode(python, model_dir, architecture, mode, gpu_product, args) for mode in modes]
    report = {"dry_run": args.dry_run, "architecture": architecture, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for r in results:
        m = r["metrics"]
        print(
            f"{r['quantization']:>18} {r['device']}: memory {r['measured_memory_bytes_after_load']} B "
            f"(plan weights {r['plan_weight_bytes']} B, ratio {r['measured_over_plan_weights']}), "
            f"TTFT p50/p95 {m[TTFT]['p50_s']}/{m[TTFT]['p95_s']} s, ITL p50/p95 {m[ITL]['p50_s']}/{m[ITL]['p95_s']} s"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
