"""The operator (kopf, as its own restricted user) against the real local control plane."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from harness import Cluster, OperatorProcess, missing_fields, run_operator, wait_for
from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.controller.kube import Kube
from nlpmodel_operator.core.autoscaling import ScalingSupport
from nlpmodel_operator.core.reconcile import Observation, decide
from nlpmodel_operator.core.records import Apply
from nlpmodel_operator.core.revision import revision_hash

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"


def example(name: str, namespace: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    body["metadata"]["namespace"] = namespace
    return body


def revision_of(body: dict[str, Any]) -> str:
    return revision_hash(NLPModelSpec.model_validate(body["spec"]))


# The operator of this module knows a Prometheus (never queried here: no canary is analysed), so the
# autoscalers the examples ask for are rendered, and stored, too.
PROMETHEUS_URL = "http://prometheus.invalid:9090"
# What the local plane (v1.20, with the upstream CRDs) offers autoscalers.
LOCAL_PLANE_SCALING = ScalingSupport("autoscaling/v2beta2", keda=True, prometheus_url=PROMETHEUS_URL)


@pytest.fixture(scope="module")
def operator(
    localplane: LocalPlane, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    yield from run_operator(localplane, tmp_path_factory, {"NLPMODEL_PROMETHEUS_URL": PROMETHEUS_URL})


def rendered(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Everything the operator applies for a new model: the revision's objects and the router's."""
    obs = Observation(
        body["metadata"]["name"],
        body["metadata"]["namespace"],
        1,
        body["spec"],
        {},
        {},
        "2026-11-26T10:00:00Z",
        scaling=LOCAL_PLANE_SCALING,
    )
    return [a.obj for a in decide(obs).actions if isinstance(a, Apply)]


def phase(cluster: Cluster, ns: str, name: str) -> str | None:
    status = cluster.model(ns, name).get("status") or {}
    phase_: str | None = status.get("phase")
    return phase_


def test_children_have_owner_references_and_deterministic_names(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    body = example("llama-8b-awq-kserve.yaml", namespace)
    model = cluster.apply_model(body)
    name = f"support-assistant-{revision_of(body)}"
    isvcs = wait_for("the InferenceService", lambda: cluster.inference_services(namespace), 60)
    assert [i["metadata"]["name"] for i in isvcs] == [name]
    owners = isvcs[0]["metadata"]["ownerReferences"]
    assert owners == [
        {
            "apiVersion": "serving.nlpmodel.dev/v1alpha1",
            "kind": "NLPModel",
            "name": "support-assistant",
            "uid": model["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    status = wait_for("status", lambda: cluster.model(namespace, "support-assistant").get("status"))
    assert status["stableRevision"] == revision_of(body)
    assert status["observedGeneration"] == model["metadata"]["generation"]
    assert status["plan"]["fits"] is True
    conditions = {x["type"]: (x["status"], x["reason"]) for x in status["conditions"]}
    assert conditions["SpecValid"] == ("True", "Valid")
    assert conditions["GPUFit"] == ("True", "Fits")
    assert conditions["Ready"][0] == "False"
    # No bookkeeping on the user's object: no kopf annotations, and no finalizer that would block
    # `kubectl delete` while the operator is down.
    meta = cluster.model(namespace, "support-assistant")["metadata"]
    assert not [k for k in meta.get("annotations") or {} if "kopf" in k]
    assert not meta.get("finalizers")


@pytest.mark.parametrize(
    ("file", "router"),
    [
        ("llama-8b-awq-kserve.yaml", None),
        ("bge-embeddings-raw.yaml", None),  # replica-ratio: the model's Service
        ("mistral-7b-nf4-transformers.yaml", "kserve-canary"),  # one Knative-mode InferenceService
        ("llama-70b-fp8-4xh100.yaml", None),
        ("llama-8b-inference-pool.yaml", None),  # an InferencePool and an HTTPRoute to pools
    ],
)
def test_every_rendered_field_is_stored_unpruned(
    cluster: Cluster,
    operator: OperatorProcess,
    namespace: str,
    localplane: LocalPlane,
    file: str,
    router: str | None,
) -> None:
    body = example(file, namespace)
    if router is not None:
        body["spec"].setdefault("serving", {})["router"] = router
    cluster.apply_model(body)
    kinds: set[str] = set()
    for want in rendered(body):
        group_version = want["apiVersion"]
        name = want["metadata"]["name"]

        def stored(want: dict[str, Any] = want, group_version: str = group_version, name: str = name) -> Any:
            return read_object(cluster, group_version, want["kind"], namespace, name)

        have = wait_for(f"{want['kind']} {name}", stored, 60)
        assert missing_fields(want["spec"], have["spec"], ".spec") == []
        assert missing_fields(want["metadata"]["labels"], have["metadata"]["labels"]) == []
        kinds.add(want["kind"])
    # The router's objects are checked too (kserve-canary's is its InferenceService).
    assert kinds & {"HTTPRoute", "Service"} or router == "kserve-canary"


def read_object(cluster: Cluster, api_version: str, kind: str, ns: str, name: str) -> dict[str, Any] | None:
    try:
        if kind in ("InferenceService", "HTTPRoute", "InferencePool"):
            group, version = api_version.split("/")
            plural = kind.lower() + "s"
            found: dict[str, Any] = cluster.api.get_namespaced_custom_object(group, version, ns, plural, name)
            return found
        api_client = cluster.api.api_client
        if kind == "Deployment":
            return api_client.sanitize_for_serialization(cluster.apps.read_namespaced_deployment(name, ns))  # type: ignore[no-any-return]
        if kind == "Service":
            return api_client.sanitize_for_serialization(cluster.core.read_namespaced_service(name, ns))  # type: ignore[no-any-return]
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    raise AssertionError(f"unexpected kind {kind}")


def test_model_that_does_not_fit_gets_conditions_and_no_children(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    cluster.apply_model(example("qwen-72b-does-not-fit.yaml", namespace))
    gpu_fit = wait_for("GPUFit", lambda: cluster.condition(namespace, "qwen-72b", "GPUFit"))
    assert (gpu_fit["status"], gpu_fit["reason"]) == ("False", "DoesNotFit")
    assert "weights need" in gpu_fit["message"]
    assert "nvidia-a100-80gb" in gpu_fit["message"]
    spec_valid = cluster.condition(namespace, "qwen-72b", "SpecValid")
    assert spec_valid is not None
    assert spec_valid["status"] == "False"
    assert phase(cluster, namespace, "qwen-72b") == "Failed"
    assert cluster.inference_services(namespace) == []


def test_scaling_change_keeps_the_revision(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    body = example("llama-8b-awq-kserve.yaml", namespace)
    cluster.apply_model(body)
    first = wait_for("the InferenceService", lambda: cluster.inference_services(namespace))[0]
    changed = copy.deepcopy(body)
    changed["spec"]["scaling"]["maxReplicas"] = 7
    cluster.apply_model(changed)

    def scaled() -> list[dict[str, Any]] | None:
        isvcs = cluster.inference_services(namespace)
        return isvcs if isvcs and isvcs[0]["spec"]["predictor"]["maxReplicas"] == 7 else None

    isvcs = wait_for("maxReplicas 7", scaled)
    assert len(isvcs) == 1
    assert isvcs[0]["metadata"]["name"] == first["metadata"]["name"]
    assert isvcs[0]["metadata"]["uid"] == first["metadata"]["uid"]


def test_ready_follows_the_inference_service_both_ways(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    body = example("llama-8b-awq-kserve.yaml", namespace)
    cluster.apply_model(body)
    isvc = wait_for("the InferenceService", lambda: cluster.inference_services(namespace))[0]["metadata"][
        "name"
    ]

    def ready_is(value: str) -> bool:
        cond = cluster.condition(namespace, "support-assistant", "Ready")
        return cond is not None and cond["status"] == value

    cluster.set_inference_service_ready(namespace, isvc, True)
    wait_for("Ready=True", lambda: ready_is("True"))
    assert phase(cluster, namespace, "support-assistant") == "Ready"
    cluster.set_inference_service_ready(namespace, isvc, False)
    wait_for("Ready=False", lambda: ready_is("False"))
    assert phase(cluster, namespace, "support-assistant") == "Progressing"


def test_deleting_the_model_removes_its_children(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    cluster.apply_model(example("bge-embeddings-raw.yaml", namespace))
    wait_for("the Deployment", lambda: cluster.apps.list_namespaced_deployment(namespace).items)
    cluster.delete_model(namespace, "bge-embed")
    wait_for(
        "garbage collection",
        lambda: (
            not cluster.apps.list_namespaced_deployment(namespace).items
            and not [
                s
                for s in cluster.core.list_namespaced_service(namespace).items
                if s.metadata.name.startswith("bge-embed")
            ]
        ),
    )


def test_operator_restart_converges_without_duplicates(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    body = example("llama-8b-awq-kserve.yaml", namespace)
    cluster.apply_model(body)
    isvc = wait_for("the InferenceService", lambda: cluster.inference_services(namespace))[0]
    operator.kill()
    # While it is down the world changes: KServe marks the service Ready.
    cluster.set_inference_service_ready(namespace, isvc["metadata"]["name"], True)
    operator.start()
    wait_for("Ready after restart", lambda: phase(cluster, namespace, "support-assistant") == "Ready", 90)
    isvcs = cluster.inference_services(namespace)
    assert [i["metadata"]["uid"] for i in isvcs] == [isvc["metadata"]["uid"]]
    assert operator.alive(), operator.log_tail()


def test_wrong_types_are_rejected_at_admission_with_the_field_path(cluster: Cluster, namespace: str) -> None:
    body = example("llama-8b-awq-kserve.yaml", namespace)
    body["spec"]["resources"]["gpu"]["count"] = "two"
    with pytest.raises(ApiException) as rejected:
        cluster.apply_model(body)
    assert rejected.value.status == 422
    assert "spec.resources.gpu.count" in rejected.value.body


def test_cross_field_rules_hold_on_any_server_version(
    cluster: Cluster, operator: OperatorProcess, namespace: str, localplane: LocalPlane
) -> None:
    """CEL rejects min > max at admission where the server has CEL (>= 1.25); older servers accept
    the object and the operator reports the same rule as SpecValid=False, creating nothing."""
    body = example("llama-8b-awq-kserve.yaml", namespace)
    body["spec"]["scaling"] = {"minReplicas": 3, "maxReplicas": 1}
    if localplane.server_version >= (1, 25):
        with pytest.raises(ApiException) as rejected:
            cluster.apply_model(body)
        assert "minReplicas must be <= maxReplicas" in rejected.value.body
        return
    cluster.apply_model(body)
    spec_valid = wait_for("SpecValid", lambda: cluster.condition(namespace, "support-assistant", "SpecValid"))
    assert (spec_valid["status"], spec_valid["reason"]) == ("False", "InvalidSpec")
    assert "spec.scaling: minReplicas must be <= maxReplicas" in spec_valid["message"]
    assert cluster.inference_services(namespace) == []


def test_discovery_lookups_from_many_reconcile_threads_at_once(localplane: LocalPlane) -> None:
    """Reconciles run in threads; a kind the server lacks makes the client re-read discovery, and
    lookups in other threads meanwhile must neither fail nor see a half-read cache."""
    api = localplane.admin_client()
    kube = Kube(api, "nlpmodel-operator")
    kube.MISSING_KIND_TTL_S = 0.0  # re-read discovery on every miss: the worst case
    errors: list[BaseException] = []

    def lookups() -> None:
        try:
            for _ in range(15):
                assert kube.serves("apps/v1", "Deployment")
                assert not kube.serves("autoscaling/v2", "HorizontalPodAutoscaler")  # not on v1.20
                assert kube.hpa_api_version() == "autoscaling/v2beta2"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=lookups) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    api.close()
    assert errors == []
