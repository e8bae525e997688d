"""The optional NetworkPolicy per model on the local control plane: applied where the cluster default
(the chart's operator.modelNetworkPolicy.enabled) or the model asks for one, stored as rendered (nothing
pruned), owned by the model, and removed when the model switches it off; none of it restarts a pod."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness import Cluster, OperatorProcess, chat_model, missing_fields, revision, run_operator, wait_for
from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_operator.core.networkpolicy import NetworkPolicies, network_policies
from nlpmodel_operator.core.resolve import resolve
from nlpmodel_operator.core.validation import parse_spec

PROMETHEUS_NAMESPACE = "monitoring"


@pytest.fixture(scope="module")
def operator(
    localplane: LocalPlane, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    env = {
        "NLPMODEL_NETWORK_POLICIES": "true",  # the platform team's default: every model gets one
        "NLPMODEL_NETWORK_POLICY_PROMETHEUS_NAMESPACE": PROMETHEUS_NAMESPACE,
    }
    yield from run_operator(localplane, tmp_path_factory, env)


def stored_policy(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    api = client.NetworkingV1Api(cluster.api.api_client)
    try:
        found = api.read_namespaced_network_policy(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    obj: dict[str, Any] = cluster.api.api_client.sanitize_for_serialization(found)
    return obj


def expected_policy(body: dict[str, Any]) -> dict[str, Any]:
    spec, problems = parse_spec(body["spec"])
    assert spec is not None, problems
    resolved = resolve(body["metadata"]["name"], body["metadata"]["namespace"], spec).resolved
    assert resolved is not None
    (policy,) = network_policies(resolved, NetworkPolicies(True, PROMETHEUS_NAMESPACE))
    return policy


def test_applied_by_default_replaced_when_the_clients_change_and_removed_when_switched_off(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    body = chat_model(namespace, rollout={"strategy": "direct"})
    model = cluster.apply_model(body)
    isvc = f"chat-{revision(body)}"

    # The cluster default: a NetworkPolicy named after the model, owned by it, stored as rendered.
    policy = wait_for("the NetworkPolicy", lambda: stored_policy(cluster, namespace, "chat"), 60)
    want = expected_policy(body)
    assert missing_fields(want["spec"], policy["spec"], "spec") == []
    assert policy["metadata"]["labels"] == want["metadata"]["labels"]
    (owner,) = policy["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"]) == ("NLPModel", model["metadata"]["uid"])
    # Applied before the revision's workload (with the PodMonitor), which follows.
    wait_for(
        "the InferenceService",
        lambda: [i["metadata"]["name"] for i in cluster.inference_services(namespace)] == [isvc] or None,
        60,
    )

    # The model names its clients: the same object now lets exactly them in.
    with_clients = copy.deepcopy(body)
    with_clients["spec"]["serving"] = {
        "networkPolicy": {"clients": [{"namespace": "apps", "podLabels": {"app": "chat-ui"}}]}
    }
    cluster.apply_model(with_clients)
    want = expected_policy(with_clients)

    def updated() -> dict[str, Any] | None:
        found = stored_policy(cluster, namespace, "chat")
        return found if found and not missing_fields(want["spec"], found["spec"], "spec") else None

    policy = wait_for("the NetworkPolicy with the model's clients", updated, 60)
    assert policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {"app": "chat-ui"}

    # Switched off by the model: the policy is deleted; the revision (and its pods) stay as they were.
    switched_off = copy.deepcopy(body)
    switched_off["spec"]["serving"] = {"networkPolicy": {"enabled": False}}
    cluster.apply_model(switched_off)
    wait_for(
        "the NetworkPolicy deleted", lambda: stored_policy(cluster, namespace, "chat") is None or None, 60
    )
    assert [i["metadata"]["name"] for i in cluster.inference_services(namespace)] == [isvc]
    assert cluster.model(namespace, "chat")["status"]["stableRevision"] == revision(body)
