"""The offline schema checker is only useful if it is not lenient: every test here that expects a
rejection names the path and reason a real kube-apiserver would give.

Upstream CRDs come from ``../shared/upstream-crds`` (or ``$NLPMODEL_SHARED_DIR``).
"""

from __future__ import annotations

import copy
import hashlib
import re
import urllib.error
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from nlpmodel_harness import upstream_crds
from nlpmodel_harness.schemacheck import (
    PRUNED,
    apply_defaults,
    check_builtin_object,
    check_custom_object,
    check_object,
    evaluate_cel_rules,
    kubernetes_validate_versions,
    resolve_kubernetes_version,
)
from nlpmodel_harness.upstream_crds import (
    PINNED_FILES,
    PROMETHEUS_OPERATOR_VERSION,
    ChecksumMismatchError,
    UpstreamCRDsUnavailableError,
    crd_for,
    load_crd,
    upstream_crd_files,
)

pytestmark = pytest.mark.schema

Obj = dict[str, Any]
Mutation = Callable[[Obj], object]

BLOCKED = "<root>: some validation rules were not checked because the object was invalid"


# --------------------------------------------------------------------------- helpers


def _at(obj: Any, path: str) -> Any:
    """Follow a dotted path with [i] indices."""
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        obj = obj[int(part[1:-1])] if part.startswith("[") else obj[part]
    return obj


def _set(path: str, value: Any) -> Mutation:
    parent, _, key = path.rpartition(".")

    def mutate(obj: Obj) -> None:
        _at(obj, parent)[key] = value

    return mutate


def _del(path: str) -> Mutation:
    parent, _, key = path.rpartition(".")
    return lambda obj: _at(obj, parent).pop(key)


def _mutated(base: Obj, mutation: Mutation) -> Obj:
    obj = copy.deepcopy(base)
    mutation(obj)
    return obj


def _assert_problem(problems: list[str], expected: str) -> None:
    assert any(p.startswith(expected) for p in problems), f"expected {expected!r} in {problems}"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def isvc_crd() -> dict[str, Any]:
    return crd_for("serving.kserve.io/v1beta1", "InferenceService")


@pytest.fixture(scope="module")
def httproute_crd() -> dict[str, Any]:
    return crd_for("gateway.networking.k8s.io/v1", "HTTPRoute")


@pytest.fixture(scope="module")
def scaledobject_crd() -> dict[str, Any]:
    return crd_for("keda.sh/v1alpha1", "ScaledObject")


ISVC: Obj = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "llama-3-8b", "namespace": "models", "labels": {"app.kubernetes.io/name": "llama"}},
    "spec": {
        "predictor": {
            "minReplicas": 1,
            "maxReplicas": 3,
            "model": {
                "modelFormat": {"name": "huggingface"},
                "runtime": "kserve-huggingfaceserver",
                "storageUri": "hf://meta-llama/Meta-Llama-3-8B-Instruct",
                "args": ["--max-model-len=4096", "--dtype=bfloat16"],
                "env": [
                    {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}},
                    {"name": "VLLM_LOGGING_LEVEL", "value": "INFO"},
                ],
                "resources": {
                    "limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
                    "requests": {"cpu": "500m", "memory": "16Gi", "nvidia.com/gpu": 1},
                },
            },
        }
    },
}

HTTPROUTE: Obj = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "llama", "namespace": "models"},
    "spec": {
        "parentRefs": [{"name": "inference-gateway", "namespace": "gateway"}],
        "hostnames": ["llama.models.example.com"],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                "backendRefs": [
                    {"name": "llama-stable", "port": 80, "weight": 90},
                    {"name": "llama-canary", "port": 80, "weight": 10},
                ],
            }
        ],
    },
}

SCALEDOBJECT: Obj = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "ScaledObject",
    "metadata": {"name": "llama", "namespace": "models"},
    "spec": {
        "scaleTargetRef": {"name": "llama-predictor"},
        "minReplicaCount": 1,
        "maxReplicaCount": 4,
        "pollingInterval": 15,
        "triggers": [
            {
                "type": "prometheus",
                "metadata": {
                    "serverAddress": "http://prometheus.monitoring:9090",
                    "query": 'sum(vllm:num_requests_waiting{model="llama"})',
                    "threshold": "10",
                },
            }
        ],
    },
}

SERVICEMONITOR: Obj = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "ServiceMonitor",
    "metadata": {"name": "llama", "namespace": "models"},
    "spec": {
        "selector": {"matchLabels": {"app.kubernetes.io/name": "llama"}},
        "endpoints": [{"port": "metrics", "interval": "30s", "path": "/metrics"}],
    },
}

PROMETHEUSRULE: Obj = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PrometheusRule",
    "metadata": {"name": "llama-slo", "namespace": "models"},
    "spec": {
        "groups": [
            {
                "name": "llama.slo",
                "rules": [
                    {
                        "alert": "LlamaHighLatency",
                        "expr": "histogram_quantile(0.99, sum(rate(x_bucket[5m])) by (le)) > 2",
                        "for": "5m",
                        "labels": {"severity": "page"},
                    },
                    {"record": "llama:requests:rate5m", "expr": "sum(rate(x_total[5m]))"},
                ],
            }
        ]
    },
}

DEPLOYMENT: Obj = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "nlpmodel-operator", "namespace": "nlpmodel-system"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "nlpmodel-operator"}},
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/name": "nlpmodel-operator"}},
            "spec": {
                "serviceAccountName": "nlpmodel-operator",
                "containers": [
                    {
                        "name": "operator",
                        "image": "ghcr.io/example/nlpmodel-operator:0.1.0",
                        "args": ["--standalone"],
                        "ports": [{"name": "metrics", "containerPort": 8080}],
                        "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m"}},
                    }
                ],
            },
        },
    },
}

HPA: Obj = {
    "apiVersion": "autoscaling/v2",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "llama", "namespace": "models"},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama"},
        "minReplicas": 1,
        "maxReplicas": 4,
        "metrics": [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
            }
        ],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
    },
}


# --------------------------------------------------------------------------- upstream CRD files


def test_upstream_files_are_the_pinned_ones() -> None:
    files = upstream_crd_files()
    assert set(files) == {p.name for p in PINNED_FILES}
    for pin in PINNED_FILES:
        assert hashlib.sha256(files[pin.name].read_bytes()).hexdigest() == pin.sha256


def test_pinned_urls_match_the_readme_table() -> None:
    readme = next(iter(upstream_crd_files().values())).parent / "README.md"
    if not readme.is_file():
        pytest.skip("the upstream CRDs came from the download cache, which has no README")
    # | file | repository | path (an optional note in parentheses) | commit |
    rows = re.findall(
        r"^\| (\S+\.yaml) \| (\S+) \| (\S+)(?: \([^)]*\))? \| ([0-9a-f]{40}) \|$", readme.read_text(), re.M
    )
    table = {name: (repo, path, commit) for name, repo, path, commit in rows}
    # Every file pinned at a commit is in the table, at that commit (the others are pinned at a tag).
    at_commit = [p for p in PINNED_FILES if re.search(r"/[0-9a-f]{40}/", p.url)]
    assert len(at_commit) >= 7
    for pin in at_commit:
        repo, path, commit = table[pin.name]
        assert pin.url == f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


@pytest.mark.parametrize(
    "name",
    [
        "prometheus-operator.monitoring.coreos.com_servicemonitors.yaml",
        "prometheus-operator.monitoring.coreos.com_prometheusrules.yaml",
    ],
)
def test_prometheus_operator_pin_matches_the_file(name: str) -> None:
    pin = next(p for p in PINNED_FILES if p.name == name)
    text = upstream_crd_files()[name].read_text()
    assert text.startswith(pin.header), "kube-prometheus-stack prepends '# <source url>'"
    assert f"/v{PROMETHEUS_OPERATOR_VERSION}/" in pin.url
    crd = load_crd(name)
    assert crd["metadata"]["annotations"]["operator.prometheus.io/version"] == PROMETHEUS_OPERATOR_VERSION


@pytest.fixture
def no_local_copies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Hide the shared copies; the download cache lives in tmp_path."""
    monkeypatch.setattr(upstream_crds, "_search_dirs", lambda: [tmp_path / "nowhere"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(upstream_crds.ENV_NO_DOWNLOAD, raising=False)
    return tmp_path / "cache" / "nlpmodel-operator" / "upstream-crds"


@pytest.fixture(scope="module")
def official_bodies() -> dict[str, bytes]:
    """What each official URL serves: the shared bytes without the chart's header line (module scope:
    computed before ``no_local_copies`` hides the shared copies)."""
    shared = upstream_crd_files()
    return {p.url: shared[p.name].read_bytes()[len(p.header.encode()) :] for p in PINNED_FILES}


def test_download_fills_the_cache_and_checks_hashes(
    official_bodies: dict[str, bytes], no_local_copies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[str] = []

    def fake_fetch(url: str) -> bytes:
        fetched.append(url)
        return official_bodies[url]

    monkeypatch.setattr(upstream_crds, "_fetch", fake_fetch)
    files = upstream_crd_files()
    assert all(path.parent == no_local_copies for path in files.values())
    assert sorted(fetched) == sorted(p.url for p in PINNED_FILES)
    assert not list(no_local_copies.glob(".*.tmp")), "atomic writes leave no temp files"
    upstream_crd_files()
    assert len(fetched) == len(PINNED_FILES), "second call is served from the cache"


def test_download_with_wrong_hash_is_refused(no_local_copies: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream_crds, "_fetch", lambda url: b"apiVersion: v1\nkind: Tampered\n")
    with pytest.raises(ChecksumMismatchError, match=r"sha256 is [0-9a-f]{64}, not the pinned"):
        upstream_crd_files()
    assert not no_local_copies.exists() or not any(no_local_copies.iterdir())


def test_no_files_and_no_network_is_a_clear_error(
    no_local_copies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str) -> bytes:
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(upstream_crds, "_fetch", offline)
    with pytest.raises(UpstreamCRDsUnavailableError, match="NLPMODEL_SHARED_DIR"):
        upstream_crd_files()


def test_no_download_env_forbids_the_network(no_local_copies: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(upstream_crds.ENV_NO_DOWNLOAD, "1")
    monkeypatch.setattr(upstream_crds, "_fetch", lambda url: pytest.fail("must not download"))
    with pytest.raises(UpstreamCRDsUnavailableError, match="forbids downloading"):
        upstream_crd_files()


def test_changed_shared_copy_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "upstream-crds").mkdir(parents=True)
    for name, path in upstream_crd_files().items():
        (shared / "upstream-crds" / name).write_bytes(path.read_bytes() + b"# edited\n")
    monkeypatch.setenv(upstream_crds.ENV_SHARED_DIR, str(shared))
    with pytest.raises(ChecksumMismatchError, match="not the pinned"):
        upstream_crd_files()


def test_crd_lookup() -> None:
    assert load_crd("scaledobjects.keda.sh")["spec"]["names"]["kind"] == "ScaledObject"
    crd = crd_for("monitoring.coreos.com/v1", "ServiceMonitor")
    assert crd["metadata"]["name"] == "servicemonitors.monitoring.coreos.com"
    assert (
        crd_for("monitoring.coreos.com/v1", "PodMonitor")["metadata"]["name"]
        == "podmonitors.monitoring.coreos.com"
    )
    pool = crd_for("inference.networking.k8s.io/v1", "InferencePool")
    assert pool["metadata"]["name"] == "inferencepools.inference.networking.k8s.io"
    with pytest.raises(KeyError, match="no pinned upstream CRD defines Gateway"):
        crd_for("gateway.networking.k8s.io/v1", "Gateway")


# --------------------------------------------------------------------------- InferenceService


def test_valid_inferenceservice_passes(isvc_crd: Mapping[str, Any]) -> None:
    assert check_custom_object(ISVC, isvc_crd) == []


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        pytest.param(
            _set("spec.predictor.minReplicas", "two"),
            "spec.predictor.minReplicas: 'two' is not of type 'integer'",
            id="wrong-type",
        ),
        pytest.param(
            _set("spec.predictor.model.bogus", True),
            f"spec.predictor.model.bogus: {PRUNED}",
            id="unknown-field-pruned",
        ),
        pytest.param(
            _set("spec.predictor.model.env[0].valueFrom.secretKeyRef.namespace", "other"),
            f"spec.predictor.model.env[0].valueFrom.secretKeyRef.namespace: {PRUNED}",
            id="unknown-field-in-secretKeyRef",
        ),
        pytest.param(
            _set("spec.predictorr", {}),
            f"spec.predictorr: {PRUNED}",
            id="typo-in-spec",
        ),
        pytest.param(
            _del("spec.predictor.model.modelFormat.name"),
            "spec.predictor.model.modelFormat.name: Required value",
            id="missing-required",
        ),
        pytest.param(
            _set("spec.predictor.maxReplicas", 2**31),
            "spec.predictor.maxReplicas: Invalid value: 2147483648: must be of format int32",
            id="int32-overflow",
        ),
        pytest.param(
            _set("spec.predictor.model.resources.limits.memory", "32GB"),
            "spec.predictor.model.resources.limits.memory: '32GB' does not match",
            id="bad-quantity",
        ),
        pytest.param(
            _set("spec.predictor.model.resources.requests.cpu", 0.5),
            "spec.predictor.model.resources.requests.cpu: 0.5 is not of type 'integer', 'string'",
            id="float-quantity",
        ),
        pytest.param(
            _set("spec.predictor.model.args", [4096]),
            "spec.predictor.model.args[0]: 4096 is not of type 'string'",
            id="non-string-arg",
        ),
        pytest.param(
            lambda o: o["spec"]["predictor"]["model"]["env"].append({"name": "HF_TOKEN", "value": "x"}),
            "spec.predictor.model.env[2]: Duplicate value: {'name': 'HF_TOKEN'}",
            id="duplicate-list-map-key",
        ),
        pytest.param(
            _set("metadata.name", "Llama_3"), "metadata.name: Invalid value: 'Llama_3'", id="bad-name"
        ),
        pytest.param(
            _set("metadata.name", "a" * 254), "metadata.name: Invalid value: 'aaaa", id="name-too-long"
        ),
        pytest.param(
            _set("metadata.labels.tier", "not ok"),
            "metadata.labels.tier: invalid label value 'not ok'",
            id="bad-label-value",
        ),
        pytest.param(
            _set("metadata.labels", {"-bad-key": "x"}),
            "metadata.labels.-bad-key: invalid label key",
            id="bad-label-key",
        ),
        pytest.param(_set("metadata.uuid", "x"), f"metadata.uuid: {PRUNED}", id="unknown-metadata-field"),
        pytest.param(_del("metadata.name"), "metadata.name: Required value", id="no-name"),
        pytest.param(
            _set("apiVersion", "serving.kserve.io/v1alpha1"),
            "apiVersion: version 'v1alpha1' is not defined by CRD inferenceservices.serving.kserve.io",
            id="unknown-version",
        ),
    ],
)
def test_invalid_inferenceservice_is_rejected(
    isvc_crd: Mapping[str, Any], mutation: Mutation, expected: str
) -> None:
    _assert_problem(check_custom_object(_mutated(ISVC, mutation), isvc_crd), expected)


def test_null_in_non_nullable_field_is_dropped_like_the_apiserver(isvc_crd: Mapping[str, Any]) -> None:
    assert check_custom_object(_mutated(ISVC, _set("spec.predictor.minReplicas", None)), isvc_crd) == []
    problems = check_custom_object(
        _mutated(ISVC, _set("spec.predictor.model.modelFormat.name", None)), isvc_crd
    )
    assert problems == ["spec.predictor.model.modelFormat.name: Required value"]


def test_checker_does_not_mutate_its_input(isvc_crd: Mapping[str, Any]) -> None:
    obj = _mutated(ISVC, _set("spec.predictor.model.bogus", 1))
    before = copy.deepcopy(obj)
    check_custom_object(obj, isvc_crd)
    assert obj == before


# --------------------------------------------------------------------------- HTTPRoute


def test_valid_weighted_httproute_passes(httproute_crd: Mapping[str, Any]) -> None:
    assert check_custom_object(HTTPROUTE, httproute_crd) == []
    v1beta1 = _mutated(HTTPROUTE, _set("apiVersion", "gateway.networking.k8s.io/v1beta1"))
    assert check_custom_object(v1beta1, httproute_crd) == []


def test_httproute_with_filters_and_timeouts_passes_upstream_cel(httproute_crd: Mapping[str, Any]) -> None:
    # Exercises the upstream rules built on has(), exists_one(), filter(), duration() and
    # the escaped `__namespace__`: a checker bug there would show up as a false rejection.
    route = _mutated(
        HTTPROUTE,
        _set(
            "spec.parentRefs", [{"name": "gw", "sectionName": "https"}, {"name": "gw", "sectionName": "http"}]
        ),
    )
    rule = route["spec"]["rules"][0]
    rule["filters"] = [
        {
            "type": "URLRewrite",
            "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
        },
        {
            "type": "RequestHeaderModifier",
            "requestHeaderModifier": {"set": [{"name": "x-model", "value": "llama"}]},
        },
    ]
    rule["timeouts"] = {"request": "30s", "backendRequest": "10s"}
    assert check_custom_object(route, httproute_crd) == []


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        pytest.param(
            _set("spec.rules[0].timeouts", {"request": "10s", "backendRequest": "30s"}),
            "spec.rules[0].timeouts: backendRequest timeout cannot be longer than request timeout",
            id="cel-duration",
        ),
        pytest.param(
            _set("spec.rules[0].backendRefs[1].weight", -1),
            "spec.rules[0].backendRefs[1].weight: -1 is less than the minimum of 0",
            id="negative-weight",
        ),
        pytest.param(
            _set("spec.rules[0].backendRefs[1].weight", 1_000_001),
            "spec.rules[0].backendRefs[1].weight: 1000001 is greater than the maximum of 1000000",
            id="weight-too-large",
        ),
        pytest.param(
            _set("spec.rules[0].matches[0].path.value", "v1"),
            "spec.rules[0].matches[0].path: value must be an absolute path and start with '/'",
            id="cel-relative-path",
        ),
        pytest.param(
            _del("spec.rules[0].backendRefs[1].port"),
            "spec.rules[0].backendRefs[1]: Must have port for Service reference",
            id="cel-service-port",
        ),
        pytest.param(
            lambda o: o["spec"]["parentRefs"].append({"name": "inference-gateway", "namespace": "gateway"}),
            "spec.parentRefs: sectionName must be unique when parentRefs includes 2 or more references",
            id="cel-namespace-escaping",
        ),
        pytest.param(
            _set("spec.hostnames", ["Llama_Models.example.com"]),
            "spec.hostnames[0]: 'Llama_Models.example.com' does not match",
            id="bad-hostname",
        ),
        pytest.param(
            _set("spec.rules[0].backendRefs[0].weigth", 5),
            f"spec.rules[0].backendRefs[0].weigth: {PRUNED}",
            id="typo-pruned",
        ),
    ],
)
def test_invalid_httproute_is_rejected(
    httproute_crd: Mapping[str, Any], mutation: Mutation, expected: str
) -> None:
    _assert_problem(check_custom_object(_mutated(HTTPROUTE, mutation), httproute_crd), expected)


def test_httproute_defaults_follow_the_schema(httproute_crd: Mapping[str, Any]) -> None:
    schema = httproute_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    route = _mutated(HTTPROUTE, _del("spec.rules[0].matches"))
    defaulted = apply_defaults(route, schema)
    assert defaulted["spec"]["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert defaulted["spec"]["parentRefs"][0] == {
        "name": "inference-gateway",
        "namespace": "gateway",
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
    }
    assert defaulted["spec"]["rules"][0]["backendRefs"][0]["kind"] == "Service"


# --------------------------------------------------------------------------- ScaledObject


def test_valid_scaledobject_passes(scaledobject_crd: Mapping[str, Any]) -> None:
    assert check_custom_object(SCALEDOBJECT, scaledobject_crd) == []


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        pytest.param(_del("spec.scaleTargetRef"), "spec.scaleTargetRef: Required value", id="missing-target"),
        pytest.param(
            _set("spec.minReplicaCount", 5),
            "spec: minReplicaCount must be less than or equal to maxReplicaCount",
            id="cel-min-max",
        ),
        pytest.param(
            _set("spec.triggers[0].metadata.threshold", 10),
            "spec.triggers[0].metadata.threshold: 10 is not of type 'string'",
            id="metadata-values-are-strings",
        ),
        pytest.param(_set("spec.triggers", []), "spec.triggers: [] should be non-empty", id="no-triggers"),
        pytest.param(
            _set("spec.pollingInterval", 0),
            "spec.pollingInterval: 0 is less than the minimum of 1",
            id="polling",
        ),
    ],
)
def test_invalid_scaledobject_is_rejected(
    scaledobject_crd: Mapping[str, Any], mutation: Mutation, expected: str
) -> None:
    _assert_problem(check_custom_object(_mutated(SCALEDOBJECT, mutation), scaledobject_crd), expected)


def test_type_errors_block_cel_like_the_apiserver(scaledobject_crd: Mapping[str, Any]) -> None:
    obj = _mutated(SCALEDOBJECT, _set("spec.minReplicaCount", "5"))
    problems = check_custom_object(obj, scaledobject_crd)
    assert problems[0] == "spec.minReplicaCount: '5' is not of type 'integer'"
    _assert_problem(problems, BLOCKED)


# --------------------------------------------------------------------------- prometheus-operator


def test_servicemonitor_and_prometheusrule() -> None:
    sm_crd = crd_for("monitoring.coreos.com/v1", "ServiceMonitor")
    rule_crd = crd_for("monitoring.coreos.com/v1", "PrometheusRule")
    assert check_custom_object(SERVICEMONITOR, sm_crd) == []
    assert check_custom_object(PROMETHEUSRULE, rule_crd) == []
    bad = _mutated(SERVICEMONITOR, _set("spec.endpoints[0].scrapeInterval", "30s"))
    assert check_custom_object(bad, sm_crd) == [f"spec.endpoints[0].scrapeInterval: {PRUNED}"]
    bad = _mutated(SERVICEMONITOR, _set("spec.endpoints[0].interval", "30 seconds"))
    _assert_problem(
        check_custom_object(bad, sm_crd), "spec.endpoints[0].interval: '30 seconds' does not match"
    )


def test_podmonitor_is_checked_against_its_pinned_crd() -> None:
    crds = [load_crd(name) for name in upstream_crd_files()]
    pod_monitor = {**SERVICEMONITOR, "kind": "PodMonitor"}  # a ServiceMonitor's spec is not a PodMonitor's
    problems = check_object(pod_monitor, crds)
    assert f"spec.endpoints: {PRUNED}" in problems


# --------------------------------------------------------------------------- CEL


CEL_SCHEMA: Obj = {
    "type": "object",
    "properties": {
        "minReplicas": {"type": "integer", "default": 1},
        "maxReplicas": {"type": "integer"},
        "mode": {"type": "string", "default": "fast"},
        "namespace": {"type": "string"},
        "canary": {
            "type": "object",
            "properties": {"weight": {"type": "integer"}},
            "x-kubernetes-validations": [
                {"rule": "self.weight <= 100", "message": "canary weight is a percentage"}
            ],
        },
        "steps": {
            "type": "array",
            "items": {"type": "object", "properties": {"weight": {"type": "integer"}}},
            "x-kubernetes-validations": [
                {"rule": "self.map(s, s.weight).isSorted()", "message": "step weights must be ascending"}
            ],
        },
    },
    "x-kubernetes-validations": [
        {
            "rule": "!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            "message": "minReplicas must not exceed maxReplicas",
        },
        {"rule": "self.mode in ['fast', 'safe']", "messageExpression": "'unknown mode ' + self.mode"},
        {"rule": "self.minReplicas == oldSelf.minReplicas", "message": "transition rules only run on update"},
        {
            "rule": "!has(self.__namespace__) || self.__namespace__ != 'kube-system'",
            "message": "kube-system is reserved",
            "fieldPath": ".namespace",
        },
        {"rule": "has(self.canary) ? has(self.steps) : true", "message": "a canary needs steps"},
    ],
}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param({}, [], id="defaults-satisfy-rules"),
        pytest.param({"minReplicas": 2, "maxReplicas": 4}, [], id="min-below-max"),
        pytest.param(
            {"minReplicas": 3, "maxReplicas": 2},
            ["<root>: minReplicas must not exceed maxReplicas"],
            id="min>max",
        ),
        pytest.param(
            {"maxReplicas": 0}, ["<root>: minReplicas must not exceed maxReplicas"], id="defaulted-min>max"
        ),
        pytest.param({"steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}]}, [], id="sorted-steps"),
        pytest.param(
            {"steps": [{"weight": 50}, {"weight": 10}]},
            ["steps: step weights must be ascending"],
            id="unsorted",
        ),
        pytest.param({"mode": "turbo"}, ["<root>: unknown mode turbo"], id="messageExpression"),
        pytest.param({"namespace": "kube-system"}, ["namespace: kube-system is reserved"], id="fieldPath"),
        pytest.param({"canary": {"weight": 10}, "steps": [{"weight": 10}]}, [], id="has-present"),
        pytest.param({"canary": {"weight": 10}}, ["<root>: a canary needs steps"], id="has-absent"),
        pytest.param(
            {"canary": {"weight": 150}, "steps": []},
            ["canary: canary weight is a percentage"],
            id="nested-rule",
        ),
    ],
)
def test_cel_rules(obj: Obj, expected: list[str]) -> None:
    assert evaluate_cel_rules(obj, CEL_SCHEMA) == expected


def test_cel_absent_field_access_is_an_error_but_has_is_false() -> None:
    schema = {
        "type": "object",
        "properties": {"canary": {"type": "object", "properties": {"weight": {"type": "integer"}}}},
        "x-kubernetes-validations": [{"rule": "self.canary.weight > 0"}],
    }
    [problem] = evaluate_cel_rules({}, schema)
    assert problem.startswith("<root>: rule 'self.canary.weight > 0' could not be evaluated")
    assert evaluate_cel_rules({"canary": {"weight": 5}}, schema) == []


@pytest.mark.parametrize(
    "expression",
    [
        "[1, 2, 3].isSorted()",
        "['a', 'b', 'b'].isSorted()",
        "[].isSorted()",
        "![3, 1].isSorted()",
        "[1, 2, 3].sum() == 6",
        "[1.5, 2.5].sum() == 4.0",
        "[].sum() == 0",
        "[4, 2, 9].min() == 2",
        "[4, 2, 9].max() == 9",
        "[1, 2, 3].indexOf(2) == 1",
        "[1, 2].indexOf(5) == -1",
        "[1, 2, 1].lastIndexOf(1) == 2",
        "'hello'.indexOf('l') == 2",
        "'hello'.indexOf('l', 3) == 3",
        "'hello'.lastIndexOf('l') == 3",
        "'HeLLo-1'.lowerAscii() == 'hello-1'",
        "'ÄB'.lowerAscii() == 'Äb'",
        "'hello'.upperAscii() == 'HELLO'",
        "'model-a'.startsWith('model-')",
        "!'model-a'.startsWith('x')",
        "'model-a'.endsWith('-a')",
        "'llama-3'.matches('^[a-z0-9-]+$')",
        "!'Llama'.matches('^[a-z]+$')",
        "'  x '.trim() == 'x'",
        "'a,b,c'.split(',') == ['a', 'b', 'c']",
        "['a', 'b'].join('-') == 'a-b'",
        "'hello'.substring(1, 3) == 'el'",
        "'hello'.charAt(1) == 'e'",
        "'a.b.c'.replace('.', '-') == 'a-b-c'",
        "'abc123'.find('[0-9]+') == '123'",
        "'a1b2'.findAll('[0-9]') == ['1', '2']",
        "'abc'.contains('b') && size('abc') == 3",
    ],
)
def test_cel_kubernetes_extension_functions(expression: str) -> None:
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": expression, "message": "false"}]}
    assert evaluate_cel_rules({}, schema) == []
    negated = {
        "type": "object",
        "x-kubernetes-validations": [{"rule": f"!({expression})", "message": "false"}],
    }
    assert evaluate_cel_rules({}, negated) == ["<root>: false"]


@pytest.mark.parametrize(
    "expression",
    ["[].min() == 0", "quantity('1Gi').isGreaterThan(quantity('1'))", "'x'.indexOf('x', 9) == 0"],
)
def test_cel_unevaluable_rules_are_reported_not_passed(expression: str) -> None:
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": expression}]}
    [problem] = evaluate_cel_rules({}, schema)
    assert "could not be evaluated" in problem


# --------------------------------------------------------------------------- defaults and pruning


def test_apply_defaults() -> None:
    schema = {
        "type": "object",
        "properties": {
            "route": {
                "type": "object",
                "default": {},
                "properties": {
                    "timeout": {"type": "string", "default": "30s"},
                    "retries": {"type": "integer"},
                },
            },
            "backends": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "weight": {"type": "integer", "default": 1}},
                },
            },
            "byName": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {"v": {"type": "string", "default": "x"}},
                },
            },
            "nullable": {"type": "string", "nullable": True, "default": "d"},
            "notNullable": {"type": "string", "default": "n"},
            "absentParent": {"type": "object", "properties": {"x": {"type": "integer", "default": 1}}},
        },
    }
    obj: Obj = {
        "backends": [{"name": "a"}, {"name": "b", "weight": 5}],
        "byName": {"k": {}},
        "nullable": None,
        "notNullable": None,
    }
    before = copy.deepcopy(obj)
    assert apply_defaults(obj, schema) == {
        "route": {"timeout": "30s"},  # defaulted value is defaulted further
        "backends": [{"name": "a", "weight": 1}, {"name": "b", "weight": 5}],
        "byName": {"k": {"v": "x"}},
        "nullable": None,  # null is a value of a nullable field
        "notNullable": "n",  # null of a non-nullable field is dropped, then defaulted
    }
    assert obj == before


PRUNE_CRD: Obj = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"kind": "Widget", "plural": "widgets"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "template": {
                                        "type": "object",
                                        "properties": {"metadata": {"type": "object"}},
                                    },
                                    "config": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                    "embedded": {
                                        "type": "object",
                                        "x-kubernetes-embedded-resource": True,
                                        "properties": {
                                            "spec": {
                                                "type": "object",
                                                "properties": {"a": {"type": "string"}},
                                            }
                                        },
                                    },
                                    "tags": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                        "x-kubernetes-list-type": "set",
                                    },
                                    "ratio": {"type": "number", "nullable": True},
                                },
                            }
                        },
                    }
                },
            },
            {
                "name": "v0",
                "served": False,
                "storage": False,
                "schema": {"openAPIV3Schema": {"type": "object"}},
            },
        ],
    },
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({"config": {"anything": {"goes": [1]}}}, [], id="preserve-unknown-fields"),
        pytest.param({"ratio": None}, [], id="nullable-null"),
        pytest.param(
            {"template": {"metadata": {"labels": {"a": "b"}}}},
            [f"spec.template.metadata.labels: {PRUNED}"],
            id="nested-metadata-without-properties-is-pruned",
        ),
        pytest.param(
            {
                "embedded": {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "x"},
                    "spec": {"a": "b"},
                }
            },
            [],
            id="embedded-resource",
        ),
        pytest.param(
            {"embedded": {"kind": "ConfigMap", "metadata": {"name": "x", "bogus": 1}}},
            [f"spec.embedded.metadata.bogus: {PRUNED}", "spec.embedded.apiVersion: Required value"],
            id="embedded-resource-checks",
        ),
        pytest.param({"tags": ["a", "a"]}, ["spec.tags[1]: Duplicate value: 'a'"], id="list-type-set"),
    ],
)
def test_pruning_and_structural_extensions(spec: Obj, expected: list[str]) -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}
    problems = check_custom_object(obj, PRUNE_CRD)
    assert sorted(problems) == sorted(expected)


def test_unserved_version_is_rejected() -> None:
    obj = {"apiVersion": "example.com/v0", "kind": "Widget", "metadata": {"name": "w"}}
    assert check_custom_object(obj, PRUNE_CRD) == [
        "apiVersion: version 'v0' is not served by CRD widgets.example.com"
    ]


# --------------------------------------------------------------------------- built-in kinds

SERVICE: Obj = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "nlpmodel-operator-metrics", "namespace": "nlpmodel-system"},
    "spec": {
        "selector": {"app.kubernetes.io/name": "nlpmodel-operator"},
        "ports": [{"name": "metrics", "port": 8080, "targetPort": "metrics"}],
    },
}
CONFIGMAP: Obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}
SERVICEACCOUNT: Obj = {
    "apiVersion": "v1",
    "kind": "ServiceAccount",
    "metadata": {"name": "nlpmodel-operator"},
}
CLUSTERROLE: Obj = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRole",
    "metadata": {"name": "nlpmodel-operator"},
    "rules": [
        {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "verbs": ["get", "list"]}
    ],
}
ROLEBINDING: Obj = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "RoleBinding",
    "metadata": {"name": "nlpmodel-operator", "namespace": "models"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "nlpmodel-operator"},
    "subjects": [{"kind": "ServiceAccount", "name": "nlpmodel-operator", "namespace": "nlpmodel-system"}],
}
PDB: Obj = {
    "apiVersion": "policy/v1",
    "kind": "PodDisruptionBudget",
    "metadata": {"name": "llama"},
    "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "llama"}}},
}


@pytest.mark.parametrize(
    "obj",
    [DEPLOYMENT, HPA, SERVICE, CONFIGMAP, SERVICEACCOUNT, CLUSTERROLE, ROLEBINDING, PDB],
    ids=lambda o: str(o["kind"]),
)
def test_valid_builtin_objects_pass(obj: Obj) -> None:
    assert check_builtin_object(obj, "1.30.0") == []
    # Agrees with kubernetes-validate's own entry point.
    assert kubernetes_validate.validate(copy.deepcopy(obj), "1.30.0", strict=True) == "1.30"


@pytest.mark.parametrize(
    ("obj", "mutation", "expected"),
    [
        pytest.param(
            DEPLOYMENT,
            _set("spec.template.spec.containers[0].bogus", 1),
            f"spec.template.spec.containers[0].bogus: {PRUNED}",
            id="deployment-unknown-field",
        ),
        pytest.param(
            DEPLOYMENT, _set("spec.replicas", "3"), "spec.replicas: '3' is not of type", id="deployment-type"
        ),
        pytest.param(
            DEPLOYMENT,
            _set("spec.template.metadata.labels", {"app": "other"}),
            "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`",
            id="selector-mismatch",
        ),
        pytest.param(
            DEPLOYMENT, _del("spec.selector"), "spec.selector: Required value", id="deployment-no-selector"
        ),
        pytest.param(
            DEPLOYMENT,
            _set("spec.template.spec.containers[0].resources.limits.memory", "256MB"),
            "spec.template.spec.containers[0].resources.limits.memory: Invalid value: '256MB'",
            id="deployment-bad-quantity",
        ),
        pytest.param(
            HPA,
            _set("spec.metrics[0].resource.target.averageUtilization", "80"),
            "spec.metrics[0].resource.target.averageUtilization: '80' is not of type",
            id="hpa-type",
        ),
        pytest.param(HPA, _set("spec.minReplica", 1), f"spec.minReplica: {PRUNED}", id="hpa-typo"),
        pytest.param(
            SERVICE,
            _set("metadata.name", "1-metrics"),
            "metadata.name: Invalid value: '1-metrics': a DNS-1035 label",
            id="service-name-dns1035",
        ),
        pytest.param(
            CONFIGMAP, _set("metadata.name", "Bad_Name"), "metadata.name: Invalid value", id="configmap-name"
        ),
    ],
)
def test_invalid_builtin_objects_are_rejected(obj: Obj, mutation: Mutation, expected: str) -> None:
    _assert_problem(check_builtin_object(_mutated(obj, mutation), "1.30.0"), expected)


def test_unknown_builtin_kind() -> None:
    assert check_builtin_object({"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "w"}}) == [
        "kind: v1 Widget is not a built-in kind of Kubernetes 1.30.0"
    ]


@pytest.mark.parametrize(
    ("requested", "resolved"),
    [("1.30.0", "1.30.0"), ("v1.30.7", "1.30.0"), ("1.20", "1.25.0"), ("1.37.1", "1.37.0")],
)
def test_kubernetes_version_resolution(requested: str, resolved: str) -> None:
    assert resolve_kubernetes_version(requested) == resolved


def test_kubernetes_version_newer_than_shipped_is_an_error() -> None:
    assert kubernetes_validate_versions()[0] == "1.25.0"
    with pytest.raises(ValueError, match="ships schemas up to"):
        resolve_kubernetes_version("1.99")


# --------------------------------------------------------------------------- dispatch


def test_check_object_dispatches_by_group_and_kind() -> None:
    crds = [load_crd(name) for name in upstream_crd_files()]
    for obj in (ISVC, HTTPROUTE, SCALEDOBJECT, SERVICEMONITOR, PROMETHEUSRULE, DEPLOYMENT, HPA, SERVICE):
        assert check_object(obj, crds) == [], obj["kind"]
    _assert_problem(
        check_object(_mutated(ISVC, _set("spec.predictor.model.bogus", 1)), crds),
        f"spec.predictor.model.bogus: {PRUNED}",
    )
    # A CRD reusing a built-in kind name in its own group is not validated as the built-in.
    impostor = {**DEPLOYMENT, "apiVersion": "apps.example.com/v1"}
    _assert_problem(check_object(impostor, crds), "kind: unknown kind apps.example.com/v1 Deployment")


def test_manifest_round_trip_through_yaml(isvc_crd: Mapping[str, Any]) -> None:
    # What tests of rendered manifests do: dump, load, check.
    loaded = yaml.safe_load(yaml.safe_dump(ISVC))
    assert check_custom_object(loaded, isvc_crd) == []
