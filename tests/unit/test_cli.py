"""`nlpctl validate | render | plan`, run as a user would run them (the installed console script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "manifests" / "examples"
NOT_FITTING = EXAMPLES / "qwen-72b-does-not-fit.yaml"
FITTING = sorted(p for p in EXAMPLES.glob("*.yaml") if p != NOT_FITTING)


def nlpctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    nlpctl_bin = Path(sys.executable).with_name("nlpctl")
    return subprocess.run(
        [str(nlpctl_bin), *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def write(tmp_path: Path, body: Any, name: str = "model.yaml") -> Path:
    path = tmp_path / name
    path.write_text(body if isinstance(body, str) else yaml.safe_dump(body))
    return path


def model(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"}}
    base.update(spec)
    return {
        "apiVersion": "serving.nlpmodel.dev/v1alpha1",
        "kind": "NLPModel",
        "metadata": {"name": "chat", "namespace": "ml"},
        "spec": base,
    }


def test_examples_cover_what_users_ask_for() -> None:
    specs = [yaml.safe_load(p.read_text())["spec"] for p in FITTING]
    assert any(
        s.get("quantization", {}).get("method") == "awq"
        and s.get("serving", {}).get("platform", "kserve") == "kserve"
        for s in specs
    )
    assert any(
        s.get("quantization", {}).get("method") == "fp8"
        and s["quantization"].get("kvCacheDtype") == "fp8"
        and s["resources"]["gpu"] == {"count": 4, "product": "nvidia-h100-80gb"}
        for s in specs
    )
    assert any(s.get("task") == "embed" and s.get("serving", {}).get("platform") == "raw" for s in specs)
    assert any(
        s.get("quantization", {}).get("method") == "bitsandbytes-nf4"
        and s.get("runtime", {}).get("engine") == "transformers"
        for s in specs
    )


@pytest.mark.parametrize("example", FITTING, ids=lambda p: p.stem)
def test_validate_accepts_every_example(example: Path) -> None:
    result = nlpctl("validate", str(example))
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": valid (revision " in result.stdout


def test_validate_explains_a_model_that_does_not_fit() -> None:
    result = nlpctl("validate", str(NOT_FITTING))
    assert result.returncode == 1
    assert "qwen-72b: spec.resources.gpu: weights need" in result.stdout
    assert "nvidia-a100-80gb" in result.stdout
    assert "gpu.count" in result.stdout  # says what to change


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            model(resources={"gpu": {"count": "one"}}), "spec.resources.gpu.count:", id="wrong-type"
        ),
        pytest.param(
            model(quantization={"method": "int2"}),
            "spec.quantization.method: unsupported value",
            id="unknown-quantization",
        ),
        pytest.param(
            model(scaling={"minReplicas": 4, "maxReplicas": 1}),
            "spec.scaling: minReplicas must be <= maxReplicas",
            id="min-gt-max",
        ),
        pytest.param(
            model(rollout={"steps": [{"weight": 60}, {"weight": 30}]}),
            "spec.rollout: step weights must be strictly ascending",
            id="steps-not-ascending",
        ),
        pytest.param(
            model(rollout={"steps": [{"weight": 101}]}), "spec.rollout.steps[0].weight:", id="weight-101"
        ),
        pytest.param(
            model(runtime={"args": ["--turbo"]}),
            "spec.runtime.args[0]: unknown flag --turbo for vLLM 0.33.0",
            id="unknown-flag",
        ),
        pytest.param(
            model(quantization={"method": "bitsandbytes-nf4"}),
            "spec.quantization.method: vLLM 0.33.0 does not support --quantization bitsandbytes",
            id="bnb-on-vllm",
        ),
        pytest.param(
            model(
                model={"uri": "hf://meta-llama/Llama-3.1-70B-Instruct"},
                resources={"gpu": {"count": 1, "product": "nvidia-l4"}},
            ),
            "spec.resources.gpu: weights need",
            id="too-large",
        ),
        pytest.param(model(extra=True), "spec.extra: unknown field", id="unknown-field"),
    ],
)
def test_validate_rejects_with_path_and_message(tmp_path: Path, body: Any, expected: str) -> None:
    result = nlpctl("validate", str(write(tmp_path, body)))
    assert result.returncode == 1
    assert expected in result.stdout, result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("spec: [unclosed", "invalid YAML (line 1", id="bad-yaml"),
        pytest.param("- a\n- b\n", "an NLPModel must be a YAML/JSON object", id="a-list"),
        pytest.param("kind: NLPModel\n", "required", id="nearly-empty"),
        pytest.param("\x00\x01\x02binary", "", id="binary"),
        pytest.param(
            json.dumps(model()).replace('"chat"', '"' + "a" * 300 + '"'), "metadata.name", id="long-name"
        ),
    ],
)
def test_garbage_never_gives_a_traceback(tmp_path: Path, content: str, expected: str) -> None:
    result = nlpctl("validate", str(write(tmp_path, content)))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert expected in output
    assert "Traceback" not in output


def test_missing_file_is_an_error_not_a_traceback() -> None:
    result = nlpctl("validate", "/nonexistent/model.yaml")
    assert result.returncode == 1
    assert "no such file" in result.stderr
    assert "Traceback" not in result.stderr


GOLDEN = EXAMPLES / "evaluation" / "support-golden.yaml"
ASSISTANT = EXAMPLES / "evaluation" / "support-assistant.yaml"


def test_validate_checks_an_evaluation_dataset_given_beside_its_model() -> None:
    result = nlpctl("validate", str(ASSISTANT), str(GOLDEN))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "support-assistant: valid" in result.stdout
    assert "dataset support-golden/cases.jsonl: 8 cases" in result.stdout


def test_validate_names_the_line_and_field_of_a_bad_dataset(tmp_path: Path) -> None:
    golden = yaml.safe_load(GOLDEN.read_text())
    lines = golden["data"]["cases.jsonl"].splitlines()
    lines[2] = lines[2].replace('"expect"', '"expected"')
    golden["data"]["cases.jsonl"] = "\n".join(lines)
    result = nlpctl("validate", str(ASSISTANT), str(write(tmp_path, golden, "golden.yaml")))
    assert result.returncode == 1
    assert (
        "spec.rollout.evaluation.dataset: ConfigMap support-golden key cases.jsonl: line 3: expected: "
        "unknown field" in result.stdout
    )


def test_validate_says_when_a_dataset_is_not_checked_or_nothing_is_a_model() -> None:
    alone = nlpctl("validate", str(ASSISTANT))
    assert alone.returncode == 0
    assert "dataset ConfigMap support-golden not among the files, not checked" in alone.stdout
    nothing = nlpctl("validate", str(GOLDEN))
    assert nothing.returncode == 0
    assert "no NLPModel to validate" in nothing.stderr


def test_render_prints_only_child_objects() -> None:
    result = nlpctl("render", *map(str, FITTING))
    assert result.returncode == 0, result.stderr
    objects = list(yaml.safe_load_all(result.stdout))
    # The revisions, the routers' objects and the PodMonitors: what the operator applies at rest
    # (tests/integration/test_render_matches.py compares them with the live children).
    assert {o["kind"] for o in objects} == {
        "InferenceService",
        "Deployment",
        "Service",
        "HTTPRoute",
        "LLMInferenceService",
        "InferencePool",
        "PodMonitor",
    }
    assert all("ownerReferences" not in o["metadata"] for o in objects)
    assert "&id" not in result.stdout  # no YAML anchors: some consumers mishandle them
    without = nlpctl("render", "--no-pod-monitor", *map(str, FITTING))
    assert "PodMonitor" not in {o["kind"] for o in yaml.safe_load_all(without.stdout)}


def test_render_reads_stdin_and_fails_cleanly_on_invalid_input() -> None:
    ok = nlpctl("render", "-", "--namespace", "team-a", stdin=yaml.safe_dump(model()))
    assert ok.returncode == 0
    assert next(yaml.safe_load_all(ok.stdout))["metadata"]["namespace"] == "team-a"
    bad = nlpctl("render", "-", stdin=yaml.safe_dump(model(task="poetry")))
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert "spec.task" in bad.stderr


def test_plan_json_is_the_status_plan() -> None:
    result = nlpctl("plan", "-o", "json", str(EXAMPLES / "llama-70b-fp8-4xh100.yaml"))
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert {
        "weightBytes",
        "kvBytesPerToken",
        "tensorParallel",
        "fits",
        "maxConcurrentSequences",
    } <= plan.keys()
    assert plan["tensorParallel"] == 4
    assert plan["fits"] is True
    # 70B in fp8 is ~70 GB of weights; an fp8 KV cache is 1 byte per element: 2·80 layers·8 heads·128.
    assert 65e9 < plan["weightBytes"] < 80e9
    assert plan["kvBytesPerToken"] == 2 * 80 * 8 * 128


def test_plan_says_which_cpu_and_memory_requests_it_chose_and_why(tmp_path: Path) -> None:
    derived = nlpctl("plan", str(EXAMPLES / "llama-70b-fp8-4xh100.yaml"))
    assert derived.returncode == 0, derived.stderr
    lines = {line.split("  ", 1)[0]: line for line in derived.stdout.splitlines()}
    assert "8 (derived: 2 per GPU x 4 GPU(s)" in lines["cpu request"]
    assert "derived:" in lines["memory request"]
    assert "GiB of weights" in lines["memory request"]
    given = nlpctl("plan", str(write(tmp_path, model(resources={"memory": "48Gi"}))))
    assert "48Gi (given in spec.resources.memory)" in given.stdout
    both = nlpctl(
        "plan", "-o", "json", str(EXAMPLES / "llama-70b-fp8-4xh100.yaml"), str(write(tmp_path, model()))
    )
    hosts = [r["hostRequests"] for r in json.loads(both.stdout)]
    assert [h["cpu"] for h in hosts] == ["8", "2"]
    assert all(h["memory"].endswith("Gi") for h in hosts)


PRICES = {"pricing": {"currency": "EUR", "gpuHour": {"nvidia-l4": 0.8, "nvidia-h100-80gb": 4.5}}}


def rows_of(stdout: str) -> dict[str, str]:
    return {
        line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in stdout.splitlines() if "  " in line
    }


def test_plan_shows_the_cost_per_hour_at_min_and_max_replicas_only_when_priced(tmp_path: Path) -> None:
    example = str(EXAMPLES / "llama-8b-awq-kserve.yaml")  # 1 x nvidia-l4, 1-4 replicas
    unpriced = nlpctl("plan", example)
    assert "cost / hour" not in unpriced.stdout  # no price, no cost
    prices = write(tmp_path, PRICES, "values.yaml")
    priced = nlpctl("plan", "--prices", str(prices), example)
    assert priced.returncode == 0, priced.stderr
    assert rows_of(priced.stdout)["cost / hour"].startswith("0.80 EUR at 1 replica(s), 3.20 EUR at 4")
    # The same prices from the operator's variable; a product without a price gets no figure.
    no_gpu_product = write(tmp_path, model(resources={"gpu": {"count": 1}}))
    from_env = subprocess.run(
        [str(Path(sys.executable).with_name("nlpctl")), "plan", str(no_gpu_product)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "NLPMODEL_PRICING": json.dumps(PRICES["pricing"])},
    )
    assert "no cost: spec.resources.gpu.product is unset" in rows_of(from_env.stdout)["cost / hour"]
    as_json = nlpctl("plan", "-o", "json", "--prices", str(prices), example, str(no_gpu_product))
    costs = [r["costPerHour"] for r in json.loads(as_json.stdout)]
    assert costs[0]["minReplicasHour"] == pytest.approx(0.8)
    assert costs[0]["maxReplicasHour"] == pytest.approx(3.2)
    assert costs[1]["perReplicaHour"] is None


def test_plan_advises_a_gpu_count_worth_its_gpus_with_the_cost_of_each_option(tmp_path: Path) -> None:
    prices = write(tmp_path, {"pricing": {"gpuHour": {"nvidia-a100-80gb": 3.0}}}, "values.yaml")
    advice = nlpctl("plan", "--prices", str(prices), str(NOT_FITTING))
    assert advice.returncode == 1
    options = [line for line in advice.stdout.splitlines() if line.startswith("option")]
    assert options[0].split("  ", 1)[1].strip() == (
        "use gpu.count 4: 56 sequence(s) at once, 4 × nvidia-a100-80gb; 12.00 USD per replica-hour"
    )
    assert "use gpu.count 4 or quantize to 4 bits" in advice.stdout
    # Taking the advice: nlpctl plan calls it a fit with the concurrency the advice promised.
    taken = NOT_FITTING.read_text().replace("count: 1", "count: 4")
    fits = nlpctl("plan", "--prices", str(prices), str(write(tmp_path, taken, "taken.yaml")))
    assert fits.returncode == 0
    assert rows_of(fits.stdout)["max sequences"] == "56"
    assert rows_of(fits.stdout)["cost / hour"].startswith("12.00 USD at 1 replica(s)")
    assert "option" not in rows_of(fits.stdout)
    # Two GPUs fit, below a useful concurrency: said so, with what would reach it.
    low = nlpctl(
        "plan", str(write(tmp_path, NOT_FITTING.read_text().replace("count: 1", "count: 2"), "two.yaml"))
    )
    assert low.returncode == 0
    assert rows_of(low.stdout)["max sequences"].startswith("1 (below a useful 4 at once")
    assert "use gpu.count 4: 56 sequence(s) at once" in low.stdout
    as_json = nlpctl("plan", "-o", "json", str(NOT_FITTING), str(EXAMPLES / "llama-8b-awq-kserve.yaml"))
    advised, fitting = json.loads(as_json.stdout)
    assert advised["options"][0] == {
        "change": "use gpu.count 4",
        "gpuCount": 4,
        "gpuProduct": "nvidia-a100-80gb",
        "maxConcurrentSequences": 56,
    }
    assert fitting["options"] == []


def test_plan_refuses_unusable_prices(tmp_path: Path) -> None:
    bad = write(tmp_path, {"pricing": {"gpuHour": {"nvidia-rtx-4090": 1}}}, "values.yaml")
    result = nlpctl("plan", "--prices", str(bad), str(EXAMPLES / "llama-8b-awq-kserve.yaml"))
    assert result.returncode == 1
    assert "unknown GPU product(s) nvidia-rtx-4090" in result.stderr


def test_plan_table_is_readable_and_exit_code_reflects_fit() -> None:
    fits = nlpctl("plan", str(EXAMPLES / "llama-8b-awq-kserve.yaml"))
    assert fits.returncode == 0
    for label in ("weights", "kv cache / token", "tensor parallel", "fits", "max sequences"):
        assert label in fits.stdout
    assert "routing" in fits.stdout
    assert "gateway-api on kserve" in fits.stdout
    pool = nlpctl("plan", str(EXAMPLES / "llama-8b-inference-pool.yaml"))
    assert "inference-pool on raw: HTTPRoute weights across revisions' InferencePools" in pool.stdout
    assert "endpoint picker chat-pool-epp:9002 (FailClose)" in pool.stdout
    too_big = nlpctl("plan", str(NOT_FITTING))
    assert too_big.returncode == 1
    assert "NO" in too_big.stdout
