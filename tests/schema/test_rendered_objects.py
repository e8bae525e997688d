"""Every object we render is accepted by its real schema, with no field the server would prune.

Built-in kinds: kubernetes-validate --strict for Kubernetes 1.30+. KServe/Gateway/KEDA/prometheus kinds:
the pinned upstream CRDs (../shared/upstream-crds, or downloaded into the cache where it is absent).
Our own CRD: every example NLPModel passes it, and its CEL rules agree with the Python validators.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from nlpmodel_harness.schemacheck import check_custom_object, check_object
from nlpmodel_harness.upstream_crds import load_crd, upstream_crd_files
from nlpmodel_operator.api.crd import crd as nlpmodel_crd
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.networkpolicy import NetworkPolicies
from nlpmodel_operator.core.reconcile import Monitoring, Observation, decide
from nlpmodel_operator.core.records import Apply, RevisionState
from nlpmodel_operator.core.render import render_revision, render_settled
from nlpmodel_operator.core.resolve import resolve
from nlpmodel_operator.core.revision import revision_hash
from nlpmodel_operator.core.validation import object_problems

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests" / "examples").glob("*.yaml"))
KUBERNETES_VERSIONS = ["1.30.0", "1.34.0"]


@pytest.fixture(scope="module")
def upstream_crds() -> list[dict[str, Any]]:
    return [load_crd(name) for name in upstream_crd_files()]


def rendered(example: Path) -> list[dict[str, Any]]:
    obj = yaml.safe_load(example.read_text())
    spec, problems = object_problems(obj)
    assert spec is not None, problems
    resolution = resolve(obj["metadata"]["name"], obj["metadata"].get("namespace", "default"), spec)
    if resolution.resolved is None:
        return []
    return render_revision(resolution.resolved)


def mid_canary(example: Path, router: str) -> list[dict[str, Any]]:
    """Everything decide() applies for the example halfway through a canary on `router`."""
    obj = yaml.safe_load(example.read_text())
    obj["spec"].setdefault("serving", {})["router"] = router
    obj["spec"].setdefault("rollout", {})["gpuSurge"] = True
    spec = NLPModelSpec.model_validate(obj["spec"])
    # Both up: a canary gets traffic only while it can serve.
    revisions = {r: RevisionState(r, (), True) for r in ("5ab1e000", revision_hash(spec))}
    status = {
        "stableRevision": "5ab1e000",
        "canaryRevision": revision_hash(spec),
        "currentStep": 0,
        "canaryWeight": 10,
        "stepStartedAt": "2026-11-26T10:00:00Z",
        "canaryStartedAt": "2026-11-26T10:00:00Z",
    }
    obs = Observation(
        obj["metadata"]["name"],
        obj["metadata"].get("namespace", "default"),
        1,
        obj["spec"],
        status,
        revisions,
        "2026-11-26T10:00:01Z",
        monitoring=Monitoring(scrape_interval_s=15),
    )
    return [a.obj for a in decide(obs).actions if isinstance(a, Apply)]


def autoscaled(example: str, **scaling: Any) -> list[dict[str, Any]]:
    """The example at rest with its scaling replaced (autoscalers of every kind we render)."""
    obj = yaml.safe_load((EXAMPLES[0].parent / example).read_text())
    obj["spec"]["scaling"] = {"minReplicas": 1, "maxReplicas": 4, **scaling}
    obj["spec"].setdefault("resources", {})["cpu"] = "2"
    spec = NLPModelSpec.model_validate(obj["spec"])
    resolution = resolve(obj["metadata"]["name"], obj["metadata"]["namespace"], spec)
    assert resolution.resolved is not None, resolution.problems
    return render_revision(resolution.resolved)


def all_rendered() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for example in EXAMPLES:
        for obj in rendered(example):
            out.append((f"{example.stem}:{obj['kind']}", obj))
    for example, metric in (
        ("bge-embeddings-raw.yaml", "cpu"),
        ("bge-embeddings-raw.yaml", "queue-depth"),
        ("bge-embeddings-raw.yaml", "kv-cache"),
        ("llama-8b-awq-kserve.yaml", "cpu"),
        ("llama-8b-awq-kserve.yaml", "kv-cache"),
        ("llama-8b-kserve-llm.yaml", "cpu"),
        ("llama-8b-kserve-llm.yaml", "kv-cache"),
    ):
        for obj in autoscaled(example, metric=metric):
            out.append((f"{example.removesuffix('.yaml')}:{metric}:{obj['kind']}", obj))
    for router, example in (
        ("gateway-api", "llama-8b-awq-kserve.yaml"),
        ("replica-ratio", "bge-embeddings-raw.yaml"),
        ("kserve-canary", "mistral-7b-nf4-transformers.yaml"),
        ("gateway-api", "llama-8b-kserve-llm.yaml"),
        ("inference-pool", "llama-8b-awq-kserve.yaml"),
        ("inference-pool", "bge-embeddings-raw.yaml"),
        ("inference-pool", "llama-8b-inference-pool.yaml"),
    ):
        for obj in mid_canary(EXAMPLES[0].parent / example, router):
            out.append(
                (f"{router}:{example.removesuffix('.yaml')}:{obj['kind']}:{obj['metadata']['name']}", obj)
            )
    return out


def with_network_policy() -> list[tuple[str, dict[str, Any]]]:
    """The NetworkPolicy of a model with explicit clients, at rest and mid-canary."""
    obj = yaml.safe_load((EXAMPLES[0].parent / "llama-8b-awq-kserve.yaml").read_text())
    obj["spec"].setdefault("serving", {})["networkPolicy"] = {
        "enabled": True,
        "clients": [
            {"namespace": "apps"},
            {"podLabels": {"app": "ui"}},
            {"namespace": "e", "podLabels": {"a": "b"}},
        ],
    }
    spec = NLPModelSpec.model_validate(obj["spec"])
    resolution = resolve(obj["metadata"]["name"], obj["metadata"]["namespace"], spec)
    assert resolution.resolved is not None, resolution.problems
    at_rest = render_settled(resolution.resolved, network=NetworkPolicies(False, "monitoring")).policies
    return [(f"network-policy:{o['kind']}", o) for o in at_rest]


RENDERED = all_rendered() + with_network_policy()


def test_examples_render_every_kind_we_support() -> None:
    kinds = {obj["kind"] for _, obj in RENDERED}
    assert {
        "InferenceService",
        "Deployment",
        "Service",
        "HTTPRoute",
        "PodMonitor",
        "InferencePool",
        "HorizontalPodAutoscaler",
        "ScaledObject",
        "NetworkPolicy",
        "LLMInferenceService",
    } <= kinds
    classes = {
        o["metadata"]["annotations"].get("serving.kserve.io/autoscalerClass")
        for _, o in RENDERED
        if o["kind"] == "InferenceService"
    }
    assert {"hpa", "keda", "none"} <= classes
    canary_isvc = [
        o for label, o in RENDERED if label.startswith("kserve-canary:") and o["kind"] == "InferenceService"
    ]
    # Mid-canary on kserve-llm, each revision's own object carries its share.
    llm_canary = [
        o for label, o in RENDERED if label.startswith("gateway-api:llama-8b-kserve-llm:LLMInferenceService")
    ]
    assert [o["spec"]["router"]["route"] for o in llm_canary] == [
        {"group": "support-assistant-llm", "weight": 10}
    ]
    assert canary_isvc[0]["spec"]["predictor"]["canaryTrafficPercent"] == 10
    # Knative (the kserve-canary mode) rejects any port name but h2c and http1.
    assert [p["name"] for p in canary_isvc[0]["spec"]["predictor"]["model"]["ports"]] == ["http1"]
    pool_routes = [
        o for label, o in RENDERED if label.startswith("inference-pool:") and o["kind"] == "HTTPRoute"
    ]
    assert {ref["kind"] for o in pool_routes for ref in o["spec"]["rules"][0]["backendRefs"]} == {
        "InferencePool"
    }
    assert any(
        "endpointPickerRef" in o["spec"] for label, o in RENDERED if label.startswith("inference-pool:")
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("label", "obj"), RENDERED, ids=[label for label, _ in RENDERED])
def test_rendered_object_is_accepted(
    label: str, obj: dict[str, Any], version: str, upstream_crds: list[dict[str, Any]]
) -> None:
    assert check_object(obj, upstream_crds, kubernetes_version=version) == [], label


def test_the_checker_would_catch_a_pruned_field(upstream_crds: list[dict[str, Any]]) -> None:
    """Guards the test above: a field KServe does not define must be reported, not passed."""
    isvc = next(obj for _, obj in RENDERED if obj["kind"] == "InferenceService")
    broken = copy.deepcopy(isvc)
    broken["spec"]["predictor"]["model"]["tensorParallel"] = 4
    problems = check_object(broken, upstream_crds)
    assert any("tensorParallel" in p for p in problems), problems


def test_the_checker_would_catch_a_pruned_or_wrong_pod_monitor_field(
    upstream_crds: list[dict[str, Any]],
) -> None:
    """PodMonitors are checked against the pinned PodMonitor CRD: pruned and invalid fields show."""
    monitor = next(obj for _, obj in RENDERED if obj["kind"] == "PodMonitor")
    pruned = copy.deepcopy(monitor)
    pruned["spec"]["podMetricsEndpoints"][0]["metricsPort"] = 8080
    assert any("metricsPort" in p for p in check_object(pruned, upstream_crds))
    wrong = copy.deepcopy(monitor)
    wrong["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["action"] = "copy"
    assert any("action" in p for p in check_object(wrong, upstream_crds))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_passes_our_crd(example: Path) -> None:
    assert check_custom_object(yaml.safe_load(example.read_text()), nlpmodel_crd()) == []


BASE: dict[str, Any] = {
    "apiVersion": "serving.nlpmodel.dev/v1alpha1",
    "kind": "NLPModel",
    "metadata": {"name": "chat", "namespace": "ml"},
    "spec": {"model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"}},
}


def variant(**spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    obj["spec"].update(spec)
    return obj


def custom_metric(**metric: Any) -> dict[str, Any]:
    return variant(
        rollout={"analysis": {"metrics": [{"name": "quality", **metric}]}, "slo": {"ttftP95": "1s"}}
    )


# Each case is checked twice: by the CEL rules of the generated CRD (what a ≥1.25 API server enforces)
# and by the Python validators (what `nlpctl validate` and the operator enforce on any server).
CROSS_FIELD_CASES = [
    pytest.param(variant(scaling={"minReplicas": 1, "maxReplicas": 3}), None, id="min-le-max"),
    pytest.param(
        variant(scaling={"minReplicas": 4, "maxReplicas": 3}),
        "minReplicas must be <= maxReplicas",
        id="min-gt-max",
    ),
    pytest.param(
        variant(scaling={"minReplicas": 2}), "minReplicas must be <= maxReplicas", id="min-gt-default-max"
    ),
    pytest.param(
        variant(rollout={"steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}]}), None, id="ascending"
    ),
    pytest.param(
        variant(rollout={"steps": [{"weight": 50}, {"weight": 10}]}), "strictly ascending", id="descending"
    ),
    pytest.param(
        variant(rollout={"steps": [{"weight": 10}, {"weight": 10}]}), "strictly ascending", id="repeated"
    ),
    pytest.param(variant(rollout={"analysis": {}}), "analysis requires slo", id="analysis-no-slo"),
    pytest.param(variant(rollout={"analysis": {}, "slo": {"ttftP95": "1s"}}), None, id="analysis-slo"),
    pytest.param(
        variant(
            rollout={"strategy": "direct", "evaluation": {"dataset": {"configMap": "g", "key": "c.jsonl"}}}
        ),
        "evaluation requires strategy canary",
        id="evaluation-direct",
    ),
    pytest.param(
        variant(rollout={"evaluation": {"dataset": {"configMap": "g", "key": "c.jsonl"}}}),
        None,
        id="evaluation-canary",
    ),
    pytest.param(
        variant(serving={"platform": "raw", "router": "kserve-canary"}),
        "requires platform kserve",
        id="kserve-canary-raw",
    ),
    pytest.param(variant(serving={"router": "kserve-canary"}), None, id="kserve-canary-kserve"),
    pytest.param(
        variant(serving={"platform": "kserve-llm", "router": "replica-ratio"}),
        "spec.serving.router: platform kserve-llm splits traffic itself",
        id="kserve-llm-replica-ratio",
    ),
    pytest.param(variant(serving={"platform": "kserve-llm"}), None, id="kserve-llm-gateway-api"),
    pytest.param(
        variant(serving={"router": "inference-pool", "endpointPicker": {"name": "epp", "port": 9002}}),
        None,
        id="endpoint-picker-inference-pool",
    ),
    pytest.param(
        variant(serving={"router": "gateway-api", "endpointPicker": {"name": "epp", "port": 9002}}),
        "serving.endpointPicker requires router inference-pool",
        id="endpoint-picker-gateway-api",
    ),
    pytest.param(
        variant(resources={"gpu": {"count": 0, "product": "nvidia-l4"}}),
        "product requires count > 0",
        id="product-no-gpus",
    ),
    pytest.param(
        variant(
            model={
                "uri": "hf://x/y",
                "architecture": {
                    "params": 10,
                    "layers": 1,
                    "hiddenSize": 8,
                    "numHeads": 2,
                    "numKVHeads": 4,
                    "headDim": 4,
                    "vocabSize": 9,
                },
            }
        ),
        "numKVHeads must be <= numHeads",
        id="kv-heads",
    ),
    pytest.param(
        custom_metric(query='avg(quality{nlpmodel_revision="{{ revision }}"})', thresholdRange={"min": 0.8}),
        None,
        id="custom-metric",
    ),
    pytest.param(
        custom_metric(
            query='avg(quality{nlpmodel_revision="{{revision}}"}[{{ interval }}])', thresholdRange={"max": 1}
        ),
        None,
        id="custom-metric-tight-braces",
    ),
    pytest.param(
        custom_metric(query="avg(quality)", thresholdRange={"min": 0.8}),
        "query must select a revision with {{ revision }}",
        id="custom-metric-no-revision",
    ),
    pytest.param(
        custom_metric(query='q{r="{{ revision }}"}', thresholdRange={}),
        "thresholdRange needs min, max or both",
        id="custom-metric-no-bounds",
    ),
    pytest.param(
        custom_metric(query='q{r="{{ revision }}"}', thresholdRange={"min": 2, "max": 1}),
        "thresholdRange min must be <= max",
        id="custom-metric-inverted-bounds",
    ),
    pytest.param(
        variant(
            rollout={
                "analysis": {
                    "httpErrorsQuery": 'sum(increase(x{code=~"5..",rev="{{ revision }}"}[{{ interval }}]))'
                },
                "slo": {"errorRate": "1%"},
            }
        ),
        None,
        id="http-errors-query",
    ),
    pytest.param(
        variant(rollout={"analysis": {"httpErrorsQuery": "sum(x)"}, "slo": {"errorRate": "1%"}}),
        "httpErrorsQuery must select a revision with {{ revision }}",
        id="http-errors-query-no-revision",
    ),
    pytest.param(
        variant(scaling={"minReplicas": 0, "maxReplicas": 2, "metric": "cpu"}, resources={"cpu": "2"}),
        "minReplicas 0 (scale to zero) needs a Prometheus metric",
        id="cpu-scale-to-zero",
    ),
    pytest.param(
        variant(scaling={"minReplicas": 0, "maxReplicas": 2, "metric": "queue-depth"}),
        None,
        id="keda-scale-to-zero",
    ),
    pytest.param(
        variant(scaling={"minReplicas": 1, "maxReplicas": 2, "metric": "cpu"}),
        "scaling.metric cpu needs resources.cpu",
        id="cpu-without-request",
    ),
    pytest.param(
        variant(scaling={"minReplicas": 1, "maxReplicas": 2, "metric": "cpu"}, resources={"cpu": "2"}),
        None,
        id="cpu-with-request",
    ),
    pytest.param(
        variant(
            serving={"router": "kserve-canary"},
            scaling={"minReplicas": 1, "maxReplicas": 2, "metric": "kv-cache"},
        ),
        "router kserve-canary runs KServe's Knative mode",
        id="knative-kv-cache",
    ),
    pytest.param(
        variant(
            serving={"router": "kserve-canary"},
            scaling={"minReplicas": 1, "maxReplicas": 2, "metric": "concurrency"},
        ),
        None,
        id="knative-concurrency",
    ),
    pytest.param(
        variant(scaling={"minReplicas": 1, "maxReplicas": 2, "metric": "kv-cache", "target": 101}),
        "scaling.target of metric kv-cache is a KV-cache usage percentage: at most 100",
        id="kv-cache-target-over-100",
    ),
    pytest.param(
        variant(scaling={"minReplicas": 1, "maxReplicas": 2, "metric": "kv-cache", "target": 100}),
        None,
        id="kv-cache-target-100",
    ),
    pytest.param(
        variant(serving={"router": "kserve-canary", "networkPolicy": {"enabled": True}}),
        "serving.networkPolicy is not rendered for router kserve-canary",
        id="network-policy-on-knative",
    ),
    pytest.param(
        variant(serving={"router": "kserve-canary", "networkPolicy": {"enabled": False}}),
        None,
        id="network-policy-off-on-knative",
    ),
    pytest.param(
        variant(serving={"networkPolicy": {"enabled": True, "clients": [{}]}}),
        "a client needs namespace, podLabels or both",
        id="network-peer-empty",
    ),
    pytest.param(
        variant(
            serving={"networkPolicy": {"clients": [{"namespace": "apps"}, {"podLabels": {"app": "ui"}}]}}
        ),
        None,
        id="network-peers",
    ),
    pytest.param({**BASE, "metadata": {"name": "m" * 55, "namespace": "ml"}}, "at most 54", id="long-name"),
]


@pytest.mark.parametrize(("obj", "message"), CROSS_FIELD_CASES)
def test_cel_rules_and_python_validators_agree(obj: dict[str, Any], message: str | None) -> None:
    cel_problems = check_custom_object(obj, nlpmodel_crd())
    _, python_problems = object_problems(obj)
    if message is None:
        assert cel_problems == []
        assert python_problems == []
    else:
        assert any(message in p for p in cel_problems), cel_problems
        assert any(message in p.message for p in python_problems), python_problems


@pytest.mark.parametrize(
    ("slo", "field", "refused"),
    [
        pytest.param({"errorRate": "150%"}, "errorRate", True, id="error-rate-150"),
        pytest.param({"errorRate": "100.5%"}, "errorRate", True, id="error-rate-100.5"),
        pytest.param({"errorRate": "100%"}, "errorRate", False, id="error-rate-100"),
        pytest.param({"errorRate": "0.1%"}, "errorRate", False, id="error-rate-0.1"),
        pytest.param({"maxRegression": "1001%"}, "maxRegression", True, id="regression-1001"),
        pytest.param({"maxRegression": "1000%"}, "maxRegression", False, id="regression-1000"),
        pytest.param({"maxRegression": "250%"}, "maxRegression", False, id="regression-250"),
    ],
)
def test_percentages_out_of_range_are_refused_by_the_schema_and_by_nlpctl_validate(
    slo: dict[str, str], field: str, refused: bool
) -> None:
    """A plain schema pattern (every API server version enforces it, CEL or not) and the Python
    validator hold each percentage to the same range, and both name the field."""
    obj = variant(rollout={"slo": slo})
    schema_problems = check_custom_object(obj, nlpmodel_crd())
    _, python_problems = object_problems(obj)
    path = f"spec.rollout.slo.{field}"
    if refused:
        assert any(p.startswith(path) for p in schema_problems), schema_problems
        assert [p.path for p in python_problems] == [path], python_problems
        assert "must be a percentage from 0% to" in python_problems[0].message
    else:
        assert schema_problems == []
        assert python_problems == []


def test_the_checker_would_catch_a_pruned_llm_inference_service_field(
    upstream_crds: list[dict[str, Any]],
) -> None:
    """Guards the kserve-llm objects above: a field LLMInferenceService v1alpha2 lacks is reported."""
    llmisvc = next(obj for _, obj in RENDERED if obj["kind"] == "LLMInferenceService")
    assert check_object(llmisvc, upstream_crds) == []
    broken = copy.deepcopy(llmisvc)
    broken["spec"]["router"]["route"]["canaryWeight"] = 10
    problems = check_object(broken, upstream_crds)
    assert any("canaryWeight" in p for p in problems), problems
