"""Spec parsing: defaults, and every kind of bad input gives a problem naming its field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nlpmodel_operator.core.validation import object_problems, parse_spec

BASE: dict[str, Any] = {
    "apiVersion": "serving.nlpmodel.dev/v1alpha1",
    "kind": "NLPModel",
    "metadata": {"name": "chat"},
    "spec": {"model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"}},
}


def with_spec(**changes: Any) -> dict[str, Any]:
    """BASE with dotted-path changes to spec, e.g. `**{"scaling.minReplicas": 3}`."""
    obj = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = obj["spec"]
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return obj


def test_defaults_fill_a_minimal_spec() -> None:
    spec, problems = parse_spec(BASE["spec"])
    assert problems == []
    assert spec is not None
    assert (spec.task, spec.runtime.engine, spec.runtime.version) == ("generate", "vllm", "0.33.0")
    assert (spec.quantization.method, spec.quantization.kv_cache_dtype) == ("none", "auto")
    assert (spec.resources.gpu.count, spec.resources.gpu.product) == (1, None)
    assert (spec.serving.platform, spec.serving.router) == ("kserve", "gateway-api")
    assert (spec.scaling.min_replicas, spec.scaling.max_replicas, spec.scaling.metric) == (
        1,
        1,
        "queue-depth",
    )
    assert [(s.weight, s.pause) for s in spec.rollout.steps] == [(10, "5m"), (50, "10m")]
    assert spec.rollout.analysis is None


@pytest.mark.parametrize(
    ("obj", "path", "fragment"),
    [
        pytest.param(
            with_spec(**{"model.uri": "ftp://x/y"}), "spec.model.uri", "should match pattern", id="uri-scheme"
        ),
        pytest.param(
            with_spec(task="summarize"), "spec.task", "unsupported value 'summarize'", id="task-enum"
        ),
        pytest.param(
            with_spec(**{"quantization.method": "int3"}),
            "spec.quantization.method",
            "'int3'",
            id="quant-enum",
        ),
        pytest.param(
            with_spec(**{"resources.gpu.count": "two"}),
            "spec.resources.gpu.count",
            "integer",
            id="wrong-type",
        ),
        pytest.param(
            with_spec(**{"resources.gpu.count": 17}), "spec.resources.gpu.count", "16", id="gpu-range"
        ),
        pytest.param(
            with_spec(**{"resources.gpu.product": "nvidia-rtx-4090"}),
            "spec.resources.gpu.product",
            "nvidia-h100-80gb",
            id="gpu-product-enum",
        ),
        pytest.param(
            with_spec(**{"scaling.minReplicas": 5, "scaling.maxReplicas": 2}),
            "spec.scaling",
            "minReplicas must be <= maxReplicas",
            id="min-gt-max",
        ),
        pytest.param(
            with_spec(**{"rollout.steps": [{"weight": 50}, {"weight": 10}]}),
            "spec.rollout",
            "strictly ascending",
            id="steps-descending",
        ),
        pytest.param(
            with_spec(**{"rollout.steps": [{"weight": 20}, {"weight": 20}]}),
            "spec.rollout",
            "strictly ascending",
            id="steps-equal",
        ),
        pytest.param(
            with_spec(**{"rollout.steps": [{"weight": 150}]}),
            "spec.rollout.steps[0].weight",
            "less than or equal to 100",
            id="weight-over-100",
        ),
        pytest.param(
            with_spec(**{"rollout.steps": [{"weight": 10, "pause": "5 minutes"}]}),
            "spec.rollout.steps[0].pause",
            "should match pattern",
            id="bad-duration",
        ),
        pytest.param(
            with_spec(**{"rollout.analysis": {"interval": "30s"}}),
            "spec.rollout",
            "analysis requires slo",
            id="analysis-without-slo",
        ),
        pytest.param(
            with_spec(
                **{"rollout.evaluation": {"dataset": {"configMap": "golden", "key": "c.jsonl"}, "samples": 5}}
            ),
            "spec.rollout.evaluation.samples",
            "greater than or equal to 10",
            id="evaluation-too-few-samples",
        ),
        pytest.param(
            with_spec(
                **{
                    "rollout.evaluation": {
                        "dataset": {"configMap": "golden", "key": "c.jsonl"},
                        "maxDrop": "200%",
                    }
                }
            ),
            "spec.rollout.evaluation.maxDrop",
            "must be a percentage from 0% to 100%",
            id="evaluation-max-drop-over-100",
        ),
        pytest.param(
            with_spec(**{"rollout.evaluation": {"dataset": {"secret": "golden", "key": "c.jsonl"}}}),
            "spec.rollout.evaluation.dataset.secret",
            "unknown field",
            id="evaluation-dataset-from-a-secret",
        ),
        pytest.param(
            with_spec(**{"rollout.slo": {"errorRate": "one percent"}}),
            "spec.rollout.slo.errorRate",
            "must be a percentage from 0% to 100%",
            id="bad-percent",
        ),
        pytest.param(
            with_spec(**{"rollout.slo": {"errorRate": "150%"}}),
            "spec.rollout.slo.errorRate",
            "must be a percentage from 0% to 100%, e.g. 1% (got '150%')",
            id="error-rate-over-100",
        ),
        pytest.param(
            with_spec(**{"rollout.slo": {"errorRate": "100.01%"}}),
            "spec.rollout.slo.errorRate",
            "from 0% to 100%",
            id="error-rate-just-over-100",
        ),
        pytest.param(
            with_spec(**{"rollout.slo": {"errorRate": "-1%"}}),
            "spec.rollout.slo.errorRate",
            "from 0% to 100%",
            id="error-rate-negative",
        ),
        pytest.param(
            with_spec(**{"rollout.slo": {"maxRegression": "1500%"}}),
            "spec.rollout.slo.maxRegression",
            "must be a percentage from 0% to 1000%",
            id="regression-over-1000",
        ),
        pytest.param(
            with_spec(**{"rollout.slo": {"maxCostRegression": "2000%"}}),
            "spec.rollout.slo.maxCostRegression",
            "must be a percentage from 0% to 1000%",
            id="cost-regression-over-1000",
        ),
        pytest.param(
            with_spec(**{"rollout.slo": {"maxPromptTokensRegression": "-5%"}}),
            "spec.rollout.slo.maxPromptTokensRegression",
            "from 0% to 1000%",
            id="prompt-regression-negative",
        ),
        pytest.param(
            with_spec(**{"rollout.slo": {"costPerMillionTokens": 0}}),
            "spec.rollout.slo.costPerMillionTokens",
            "greater than or equal to 0.0001",
            id="cost-per-million-zero",
        ),
        pytest.param(
            with_spec(**{"rollout.slo": {"costPerMillionTokens": "cheap"}}),
            "spec.rollout.slo.costPerMillionTokens",
            "number",
            id="cost-per-million-not-a-number",
        ),
        pytest.param(
            with_spec(**{"scaling.metric": "kv-cache", "scaling.maxReplicas": 3, "scaling.target": 120}),
            "spec.scaling",
            "scaling.target of metric kv-cache is a KV-cache usage percentage: at most 100",
            id="kv-cache-target-over-100",
        ),
        pytest.param(
            with_spec(**{"serving.platform": "raw", "serving.router": "kserve-canary"}),
            "spec",
            "kserve-canary requires platform kserve",
            id="router-platform",
        ),
        pytest.param(
            with_spec(**{"resources.gpu": {"count": 0, "product": "nvidia-l4"}}),
            "spec.resources.gpu",
            "product requires count > 0",
            id="product-without-gpus",
        ),
        pytest.param(
            with_spec(**{"runtime.gpuMemoryUtilization": 1.5}),
            "spec.runtime.gpuMemoryUtilization",
            "0.99",
            id="utilization-range",
        ),
        pytest.param(
            with_spec(**{"runtime.maxModelLen": 0}), "spec.runtime.maxModelLen", "16", id="len-range"
        ),
        pytest.param(
            with_spec(
                **{
                    "model.architecture": {
                        "params": 1,
                        "layers": 1,
                        "hiddenSize": 8,
                        "numHeads": 2,
                        "numKVHeads": 4,
                        "headDim": 4,
                        "vocabSize": 10,
                    }
                }
            ),
            "spec.model.architecture",
            "numKVHeads must be <= numHeads",
            id="kv-heads-gt-heads",
        ),
        pytest.param(with_spec(replicas=3), "spec.replicas", "unknown field", id="unknown-top-field"),
        pytest.param(
            with_spec(**{"runtime.tensorParallel": 2}),
            "spec.runtime.tensorParallel",
            "unknown field",
            id="unknown",
        ),
        pytest.param(
            with_spec(**{"model": {}}), "spec.model.uri", "required field is missing", id="missing-uri"
        ),
        pytest.param({**BASE, "kind": "Deployment"}, "kind", "must be NLPModel", id="kind"),
        pytest.param(
            {**BASE, "apiVersion": "v1"}, "apiVersion", "serving.nlpmodel.dev/v1alpha1", id="api-version"
        ),
        pytest.param({**BASE, "metadata": {}}, "metadata.name", "required", id="no-name"),
        pytest.param(
            {**BASE, "metadata": {"name": "x" * 60}}, "metadata.name", "at most 54", id="name-too-long"
        ),
        pytest.param(
            {**BASE, "metadata": {"name": "7b-chat"}}, "metadata.name", "lowercase letter", id="dns1035"
        ),
        pytest.param(
            {**BASE, "metadata": {"name": "ünïcode"}}, "metadata.name", "lowercase letter", id="unicode"
        ),
        pytest.param({**BASE, "spec": "oops"}, "spec", "must be an object", id="spec-not-object"),
    ],
)
def test_bad_input_names_the_field(obj: dict[str, Any], path: str, fragment: str) -> None:
    _, problems = object_problems(obj)
    matching = [p for p in problems if p.path == path]
    assert matching, f"no problem at {path}: {[str(p) for p in problems]}"
    assert any(fragment in p.message for p in matching), [str(p) for p in matching]


@pytest.mark.parametrize(
    ("slo", "scaling"),
    [
        pytest.param({"errorRate": "0%"}, {}, id="error-rate-0"),
        pytest.param({"errorRate": "100%"}, {}, id="error-rate-100"),
        pytest.param({"errorRate": "99.95%"}, {}, id="error-rate-fraction"),
        pytest.param({"maxRegression": "0%"}, {}, id="regression-0"),
        pytest.param({"maxRegression": "1000%"}, {}, id="regression-1000"),
        pytest.param({}, {"metric": "kv-cache", "maxReplicas": 3, "target": 100}, id="kv-cache-target-100"),
        pytest.param({}, {"metric": "cpu", "maxReplicas": 3, "target": 150}, id="cpu-target-over-100"),
    ],
)
def test_percentages_at_the_ends_of_their_range_are_accepted(
    slo: dict[str, str], scaling: dict[str, Any]
) -> None:
    """The bounds are inclusive; CPU utilization may exceed 100 % of the request, so it is not capped."""
    obj = with_spec(**{"rollout.slo": slo, "scaling": scaling, "resources.cpu": "2"})
    assert object_problems(obj)[1] == []
