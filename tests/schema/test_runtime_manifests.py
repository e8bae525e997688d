"""The ClusterServingRuntimes we ship pass KServe's real CRD (no field pruned) and fit what the operator
renders into them: the runtime name and model format it references, the default image, and empty args
(KServe appends the InferenceService's args, which carry the whole command line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from nlpmodel_harness.schemacheck import check_object
from nlpmodel_harness.upstream_crds import load_crd, upstream_crd_files
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.engines import engine_for

RUNTIMES = Path(__file__).resolve().parents[2] / "runtimes"
MANIFESTS = {
    "vllm": RUNTIMES / "vllm" / "clusterservingruntime.yaml",
    "transformers": RUNTIMES / "transformers" / "clusterservingruntime.yaml",
}


@pytest.fixture(scope="module")
def upstream_crds() -> list[dict[str, Any]]:
    return [load_crd(name) for name in upstream_crd_files()]


def manifest(engine: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(MANIFESTS[engine].read_text())
    return obj


@pytest.mark.parametrize("engine", sorted(MANIFESTS))
@pytest.mark.parametrize("version", ["1.30.0", "1.34.0"])
def test_runtime_passes_kserve_crd(engine: str, version: str, upstream_crds: list[dict[str, Any]]) -> None:
    assert check_object(manifest(engine), upstream_crds, kubernetes_version=version) == []


def test_checker_would_catch_a_field_kserve_prunes(upstream_crds: list[dict[str, Any]]) -> None:
    broken = manifest("vllm")
    broken["spec"]["containers"][0]["gpuCount"] = 1
    assert any("gpuCount" in p for p in check_object(broken, upstream_crds))


@pytest.mark.parametrize("engine", sorted(MANIFESTS))
def test_runtime_fits_what_the_operator_renders(engine: str) -> None:
    obj = manifest(engine)
    impl = engine_for(engine)  # type: ignore[arg-type]
    spec = NLPModelSpec.model_validate({"model": {"uri": "hf://org/model"}, "runtime": {"engine": engine}})
    container = obj["spec"]["containers"][0]
    assert obj["kind"] == "ClusterServingRuntime"
    assert obj["metadata"]["name"] == impl.kserve_runtime
    assert impl.kserve_model_format in [f["name"] for f in obj["spec"]["supportedModelFormats"]]
    assert container["command"] == impl.command()
    assert container.get("args", []) == []
    assert container["image"] == impl.image(spec)
    assert obj["metadata"]["annotations"]["prometheus.kserve.io/port"] == "8080"
