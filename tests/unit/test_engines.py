"""Engine compatibility and argument rendering, table-driven against the real vLLM 0.33 flag table."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.engines import EngineInput, engine_for
from nlpmodel_operator.core.engines.vllm import flag_table, known_versions

PACKAGE_DATA = Path(__file__).resolve().parents[2] / "operator" / "nlpmodel_operator" / "data"
SHARED_VLLM = Path(__file__).resolve().parents[2].parent / "shared" / "vllm"


def spec(**sections: Any) -> NLPModelSpec:
    raw: dict[str, Any] = {"model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"}}
    raw.update(sections)
    return NLPModelSpec.model_validate(raw)


def render_args(s: NLPModelSpec, model_path: str = "/mnt/models", tp: int = 1) -> list[str]:
    inp = EngineInput(
        spec=s, served_name="chat", model_path=model_path, max_model_len=4096, tensor_parallel=tp
    )
    return engine_for(s.runtime.engine).args(inp)


def flag_values(args: list[str]) -> dict[str, str | None]:
    """`--flag value` pairs (value None for boolean flags)."""
    out: dict[str, str | None] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            nxt = args[i + 1] if i + 1 < len(args) else None
            out[arg] = nxt if nxt is not None and not nxt.startswith("--") else None
    return out


def test_packaged_vllm_tables_match_the_extracted_facts() -> None:
    """The operator ships copies of ../shared/vllm tables; a stale copy fails here (`make vllm-table`)."""
    if not SHARED_VLLM.is_dir():
        pytest.skip("../shared/vllm is not beside this checkout (the packaged copy is then the source)")
    for source in SHARED_VLLM.glob("vllm-*-cli.json"):
        packaged = PACKAGE_DATA / source.name
        assert packaged.is_file(), f"{source.name} is not packaged: run make vllm-table"
        assert json.loads(packaged.read_text()) == json.loads(source.read_text())
    assert "0.33.0" in known_versions()


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        pytest.param(
            {}, {"--max-model-len": "4096", "--tensor-parallel-size": "1", "--port": "8080"}, id="defaults"
        ),
        pytest.param({"quantization": {"method": "awq"}}, {"--quantization": "awq"}, id="awq"),
        pytest.param({"quantization": {"method": "gptq"}}, {"--quantization": "gptq"}, id="gptq"),
        pytest.param(
            {"quantization": {"method": "fp8", "kvCacheDtype": "fp8"}},
            {"--quantization": "fp8", "--kv-cache-dtype": "fp8"},
            id="fp8-kv-fp8",
        ),
        pytest.param(
            {"runtime": {"gpuMemoryUtilization": 0.85}}, {"--gpu-memory-utilization": "0.85"}, id="util"
        ),
        pytest.param({"task": "embed"}, {"--runner": "pooling", "--convert": "embed"}, id="embed"),
        pytest.param({"task": "classify"}, {"--runner": "pooling", "--convert": "classify"}, id="classify"),
        pytest.param({"task": "rerank"}, {"--runner": "pooling", "--convert": "classify"}, id="rerank"),
        pytest.param(
            {"runtime": {"args": ["--enable-prefix-caching", "--max-num-seqs", "64"]}},
            {"--enable-prefix-caching": None, "--max-num-seqs": "64"},
            id="extra-args-appended",
        ),
    ],
)
def test_vllm_args(sections: dict[str, Any], expected: dict[str, str | None]) -> None:
    s = spec(**sections)
    assert engine_for("vllm").problems(s) == []
    args = render_args(s)
    values = flag_values(args)
    assert args[0] == "/mnt/models"  # the positional model of `vllm serve`
    assert "--model" not in values
    assert values["--served-model-name"] == "chat"
    for flag, value in expected.items():
        assert values.get(flag, "<absent>") == value, args
    table = flag_table("0.33.0")
    assert table is not None
    assert {f for f in values if f not in table.flags} == set()


def test_vllm_omits_flags_for_defaults() -> None:
    values = flag_values(render_args(spec()))
    assert "--quantization" not in values
    assert "--kv-cache-dtype" not in values
    assert "--runner" not in values


def test_vllm_tensor_parallel_follows_the_gpu_count() -> None:
    assert flag_values(render_args(spec(), tp=4))["--tensor-parallel-size"] == "4"


def test_vllm_pins_the_hf_revision_when_it_downloads_itself() -> None:
    s = spec(model={"uri": "hf://org/m", "revision": "abc123"})
    assert flag_values(render_args(s, model_path="org/m"))["--revision"] == "abc123"
    # Under KServe the storage initializer downloads the pinned revision: no --revision then.
    assert "--revision" not in flag_values(render_args(s, model_path="/mnt/models"))


@pytest.mark.parametrize(
    ("sections", "path", "fragment"),
    [
        pytest.param(
            {"quantization": {"method": "bitsandbytes-nf4"}},
            "spec.quantization.method",
            "engine: transformers",
            id="bnb-points-to-transformers",
        ),
        pytest.param(
            {"quantization": {"method": "bitsandbytes-int8"}},
            "spec.quantization.method",
            "engine: transformers",
            id="bnb-int8",
        ),
        pytest.param(
            {"quantization": {"method": "gguf"}}, "spec.quantization.method", "older vLLM", id="gguf"
        ),
        pytest.param(
            {"runtime": {"args": ["--enable-turbo-mode"]}},
            "spec.runtime.args[0]",
            "unknown flag --enable-turbo-mode for vLLM 0.33.0",
            id="unknown-flag",
        ),
        pytest.param(
            {"runtime": {"args": ["--max-num-seqs", "8", "--bogus=1"]}},
            "spec.runtime.args[2]",
            "unknown flag --bogus",
            id="unknown-flag-with-equals",
        ),
        pytest.param(
            {"runtime": {"args": ["--max-model-len", "4096"]}},
            "spec.runtime.args[0]",
            "spec.runtime.maxModelLen",
            id="owned-flag",
        ),
        pytest.param(
            {"runtime": {"args": ["--hf-token", "hf_xxx"]}},
            "spec.runtime.args[0]",
            "secret",
            id="secret-flag",
        ),
        pytest.param(
            {"runtime": {"args": ["-tp", "2"]}}, "spec.runtime.args[0]", "long form", id="short-flag"
        ),
        pytest.param(
            {"runtime": {"version": "0.1.0"}}, "spec.runtime.version", "0.33.0", id="unknown-version"
        ),
        pytest.param(
            {"resources": {"gpu": {"count": 0}}},
            "spec.resources.gpu.count",
            "engine: transformers",
            id="vllm-cpu",
        ),
    ],
)
def test_vllm_problems(sections: dict[str, Any], path: str, fragment: str) -> None:
    problems = engine_for("vllm").problems(spec(**sections))
    assert any(p.path == path and fragment in p.message for p in problems), [str(p) for p in problems]


@pytest.mark.parametrize(
    ("sections", "expected_args"),
    [
        pytest.param(
            {
                "runtime": {"engine": "transformers"},
                "quantization": {"method": "bitsandbytes-nf4", "doubleQuant": True},
            },
            ["--quantization", "bitsandbytes-nf4", "--double-quant", "--device", "cuda"],
            id="nf4-double-quant",
        ),
        pytest.param(
            {"runtime": {"engine": "transformers"}, "quantization": {"method": "bitsandbytes-int8"}},
            ["--quantization", "bitsandbytes-int8"],
            id="int8",
        ),
        pytest.param(
            {"task": "embed", "runtime": {"engine": "transformers"}, "resources": {"gpu": {"count": 0}}},
            ["--task", "embed", "--device", "cpu"],
            id="cpu-embed",
        ),
    ],
)
def test_transformers_args(sections: dict[str, Any], expected_args: list[str]) -> None:
    s = spec(**sections)
    assert engine_for("transformers").problems(s) == []
    args = render_args(s)
    for i in range(0, len(expected_args)):
        assert expected_args[i] in args
    pairs = flag_values(args)
    for flag, value in itertools.pairwise(expected_args):
        if flag.startswith("--") and not value.startswith("--"):
            assert pairs[flag] == value


@pytest.mark.parametrize(
    ("sections", "path", "fragment"),
    [
        pytest.param(
            {"quantization": {"method": "awq"}}, "spec.quantization.method", "engine: vllm", id="awq"
        ),
        pytest.param(
            {"quantization": {"method": "bitsandbytes-nf4"}, "resources": {"gpu": {"count": 0}}},
            "spec.resources.gpu.count",
            "GPUs only",
            id="bnb-on-cpu",
        ),
        pytest.param(
            {"quantization": {"kvCacheDtype": "fp8"}}, "spec.quantization.kvCacheDtype", "auto", id="kv-dtype"
        ),
        pytest.param({"resources": {"gpu": {"count": 2}}}, "spec.resources.gpu.count", "one GPU", id="tp"),
        pytest.param({"runtime": {"args": ["--x"]}}, "spec.runtime.args", "no extra args", id="args"),
    ],
)
def test_transformers_problems(sections: dict[str, Any], path: str, fragment: str) -> None:
    merged = {**sections, "runtime": {"engine": "transformers", **sections.get("runtime", {})}}
    problems = engine_for("transformers").problems(spec(**merged))
    assert any(p.path == path and fragment in p.message for p in problems), [str(p) for p in problems]
