"""Children's changes reach their model as events, not at the next resync.

The operator of this module resyncs once an hour: whatever it does within the test, it does because an
event told it to. (The other modules resync every second and would hide a missing watch.)
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness import Cluster, OperatorProcess, run_operator, status, wait_for
from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_harness.standins import StandInControllers

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
AN_HOUR = "3600"


def example(name: str, namespace: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    body["metadata"]["namespace"] = namespace
    return body


@pytest.fixture(scope="module")
def operator(
    localplane: LocalPlane, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    yield from run_operator(
        localplane,
        tmp_path_factory,
        {
            "NLPMODEL_RESYNC_SECONDS": AN_HOUR,
            "NLPMODEL_SETTLED_RESYNC_SECONDS": AN_HOUR,
        },
    )


def ready(cluster: Cluster, namespace: str, name: str) -> str | None:
    cond = cluster.condition(namespace, name, "Ready")
    return None if cond is None else str(cond["status"])


def test_ready_follows_the_inference_service_without_a_resync(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    cluster.apply_model(example("llama-8b-awq-kserve.yaml", namespace))
    isvc = wait_for("the InferenceService", lambda: cluster.inference_services(namespace))[0]["metadata"][
        "name"
    ]
    wait_for("Ready=False", lambda: ready(cluster, namespace, "support-assistant") == "False", 30)
    cluster.set_inference_service_ready(namespace, isvc, True)
    wait_for("Ready=True", lambda: ready(cluster, namespace, "support-assistant") == "True", 30)
    assert status(cluster, namespace, "support-assistant")["phase"] == "Ready"
    cluster.set_inference_service_ready(namespace, isvc, False)
    wait_for("Ready=False", lambda: ready(cluster, namespace, "support-assistant") == "False", 30)


def test_ready_follows_the_deployment_of_a_raw_model_without_a_resync(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    # The pods turn Ready (the stand-in kubelet); the Deployment controller updates the Deployment's
    # status; that event, not a resync, brings the model to Ready.
    with StandInControllers(cluster.api.api_client, namespace):
        cluster.apply_model(example("bge-embeddings-raw.yaml", namespace))
        wait_for("Ready=True", lambda: ready(cluster, namespace, "bge-embed") == "True", 60)
    assert status(cluster, namespace, "bge-embed")["phase"] == "Ready"


def test_a_deleted_route_is_put_back_without_a_resync(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    routes = client.CustomObjectsApi(cluster.api.api_client)
    group, version, plural = "gateway.networking.k8s.io", "v1", "httproutes"

    def route() -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = routes.get_namespaced_custom_object(
                group, version, namespace, plural, "support-assistant"
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    cluster.apply_model(example("llama-8b-awq-kserve.yaml", namespace))
    before = wait_for("the HTTPRoute", route, 30)
    routes.delete_namespaced_custom_object(group, version, namespace, plural, "support-assistant")
    after = wait_for(
        "the HTTPRoute back",
        lambda: (r := route()) is not None and r["metadata"]["uid"] != before["metadata"]["uid"] and r,
        30,
    )
    assert after["spec"]["rules"] == before["spec"]["rules"]


def quiet(operator: OperatorProcess, namespace: str, for_s: float = 3.0) -> int:
    """Wait until the namespace's reconciles stop for `for_s` (a busy machine delays the last ones);
    their count then."""
    deadline = time.monotonic() + 60
    count, since = reconciles(operator, namespace), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = reconciles(operator, namespace)
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= for_s:
            return count
    raise AssertionError(f"the operator kept reconciling {namespace} for 60 s ({count} reconciles)")


def reconciles(operator: OperatorProcess, namespace: str) -> int:
    """How many reconciles of the namespace's models the operator has run (its verbose log has a line
    for each)."""
    get = re.compile(rf"reconciling {namespace}/")
    return sum(1 for line in operator.log_path.read_text(errors="replace").splitlines() if get.search(line))


def test_an_unchanged_child_is_not_applied_again_and_an_applys_echo_reconciles_nothing(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """A reconcile applies only what differs from what it applied before (the watches' cache shows what
    the cluster holds). On v1.20 an apply rewrites an HTTPRoute even where it changes nothing (the
    applier's managedFields time): were the echo of the operator's own apply answered with a reconcile,
    a busy operator would reconcile its models in a loop."""
    routes = client.CustomObjectsApi(cluster.api.api_client)

    def route() -> dict[str, Any]:
        found: dict[str, Any] = routes.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "httproutes", "support-assistant"
        )
        return found

    cluster.apply_model(example("llama-8b-awq-kserve.yaml", namespace))
    isvc = wait_for("the InferenceService", lambda: cluster.inference_services(namespace))[0]["metadata"][
        "name"
    ]
    cluster.set_inference_service_ready(namespace, isvc, True)
    wait_for("Ready=True", lambda: ready(cluster, namespace, "support-assistant") == "True", 30)
    quiet(operator, namespace)  # past the reconciles answering the operator's own last writes
    before, route_before = reconciles(operator, namespace), route()
    # Someone labels the InferenceService: one reconcile, which has nothing to apply.
    cluster.api.patch_namespaced_custom_object(
        "serving.kserve.io",
        "v1beta1",
        namespace,
        "inferenceservices",
        isvc,
        {"metadata": {"labels": {"team": "a"}}},
    )
    wait_for("a reconcile", lambda: reconciles(operator, namespace) > before, 30)
    quiet(operator, namespace)
    assert route()["metadata"]["resourceVersion"] == route_before["metadata"]["resourceVersion"]
    assert reconciles(operator, namespace) == before + 1
    # Someone changes the operator's route: it is put back with one apply, whose echo is no news.
    changed = route()
    changed["spec"]["hostnames"] = ["someone-else.example.com"]
    routes.replace_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", "support-assistant", changed
    )
    wait_for("the route put back", lambda: route()["spec"] == route_before["spec"], 30)
    # One reconcile for the other writer's change (and at most one more: the watch may deliver the
    # event of the operator's apply before the apply's answer reaches the cache; that reconcile finds
    # nothing to do). Then nothing: no loop of applies answering their own echoes.
    settled = quiet(operator, namespace)
    assert before + 2 <= settled <= before + 3
    put_back = route()["metadata"]["resourceVersion"]
    time.sleep(3)
    assert reconciles(operator, namespace) == settled
    assert route()["metadata"]["resourceVersion"] == put_back
