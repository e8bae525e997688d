"""The container command lines the operator's rendered objects start, per example, engine and platform."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import yaml

from nlpmodel_harness import runtime_venv
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.render import render_revision
from nlpmodel_operator.core.resolve import architecture_of, effective_max_model_len, resolve
from nlpmodel_operator.core.resolved import Resolved
from nlpmodel_operator.core.revision import revision_hash
from nlpmodel_operator.core.validation import object_problems

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "manifests" / "examples").glob("*.yaml"))
RUNTIME_MANIFESTS = {
    "vllm": REPO / "runtimes" / "vllm" / "clusterservingruntime.yaml",
    "transformers": REPO / "runtimes" / "transformers" / "clusterservingruntime.yaml",
}


def runtime_env(*, hub_offline: bool = True) -> dict[str, str]:
    """Our runtime sources on the path; hub_offline makes a would-be download fail fast. (vLLM's
    EngineArgs resolves model ids to local snapshots when offline, so the vLLM tier leaves it unset;
    it never loads a model.)"""
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in runtime_venv.RUNTIME_SOURCES)
    env.pop("HF_HUB_OFFLINE", None)
    if hub_offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def example_spec(example: Path) -> tuple[dict[str, Any], NLPModelSpec]:
    obj = yaml.safe_load(example.read_text())
    spec, problems = object_problems(obj)
    assert spec is not None, problems
    return obj, spec


def resolved_for(example: Path, platform: str) -> tuple[Resolved, bool] | None:
    """The example on `platform` (None when the operator refuses the spec there); one that the planner
    refuses (does not fit) is rendered anyway, since its args are what the operator would produce.
    Returns (resolved, deployable)."""
    obj, spec = example_spec(example)
    own_platform = spec.serving.platform
    spec = spec.model_copy(update={"serving": spec.serving.model_copy(update={"platform": platform})})
    name, namespace = obj["metadata"]["name"], obj["metadata"].get("namespace", "default")
    resolution = resolve(name, namespace, spec)
    if resolution.resolved is not None:
        return resolution.resolved, True
    if platform != own_platform and resolution.spec_problems:
        return None  # e.g. s3:// on raw for an engine that cannot stream it
    assert resolution.spec_problems == [], resolution.spec_problems
    _, arch = architecture_of(spec)
    forced = Resolved(
        name=name,
        namespace=namespace,
        spec=spec,
        revision=revision_hash(spec),
        served_name=spec.model.served_name or name,
        max_model_len=effective_max_model_len(spec, arch),
        architecture_source=None,
        plan=None,
        planned_gpu=None,
    )
    return forced, False


def kserve_merge(runtime_container: dict[str, Any], model: dict[str, Any]) -> list[str]:
    """The command line KServe starts: the InferenceService's container overrides the runtime's fields
    (strategic merge), except args, which KServe concatenates (runtime's first)."""
    command = model.get("command", runtime_container["command"])
    return [*command, *runtime_container.get("args", []), *model.get("args", [])]


def command_lines(example: Path, engine: str) -> list[tuple[str, list[str]]]:
    """(label, argv) for the example on each platform that accepts it, as the pod would run it."""
    runtime = yaml.safe_load(RUNTIME_MANIFESTS[engine].read_text())["spec"]["containers"][0]
    out = []
    for platform in ("kserve", "raw", "kserve-llm"):
        found = resolved_for(example, platform)
        if found is None:
            continue
        resolved, deployable = found
        if resolved.spec.runtime.engine != engine:
            continue
        label = f"{example.stem}:{platform}" + ("" if deployable else ":does-not-fit")
        for obj in render_revision(resolved):
            if obj["kind"] == "InferenceService":
                model = obj["spec"]["predictor"]["model"]
                assert model["runtime"] == runtime_venv_name(engine)
                out.append((label, kserve_merge(runtime, model)))
            elif obj["kind"] == "Deployment":
                container = obj["spec"]["template"]["spec"]["containers"][0]
                out.append((label, [*container["command"], *container["args"]]))
            elif obj["kind"] == "LLMInferenceService":
                out.append((label, kserve_llm_template(obj)))
    return out


def kserve_llm_template(llmisvc: dict[str, Any]) -> list[str]:
    """What KServe's LLMInferenceService template (`kserve-config-llm-template`) runs: `vllm serve` on
    the downloaded model with its own name, port and tensor parallelism, then VLLM_ADDITIONAL_ARGS."""
    spec = llmisvc["spec"]
    argv = ["vllm", "serve", "/mnt/models", "--served-model-name", spec["model"]["name"], "--port", "8000"]
    tensor = (spec.get("parallelism") or {}).get("tensor")
    if tensor:
        argv += ["--tensor-parallel-size", str(tensor)]
    container = next(c for c in spec["template"]["containers"] if c["name"] == "main")
    extra = next((e["value"] for e in container.get("env") or [] if e["name"] == "VLLM_ADDITIONAL_ARGS"), "")
    return argv + shlex.split(extra)


def runtime_venv_name(engine: str) -> str:
    return str(yaml.safe_load(RUNTIME_MANIFESTS[engine].read_text())["metadata"]["name"])
