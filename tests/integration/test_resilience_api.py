"""API faults under a running canary: kube-apiserver restarted, a concurrent writer fighting over the
HTTPRoute and the InferenceService, a watch that goes silent, status writes failing. The operator talks
to the API server through `FaultProxy` (the faults a real server does not produce on demand); the
rollout history is recorded and checked (`Timeline`): no unplanned traffic change, no lost update, and
the model converges once the fault is over."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from timeline import Timeline, route_weights

from harness import Cluster, OperatorProcess, chat_model, revision, status, wait_for
from nlpmodel_harness.faultproxy import FaultProxy
from nlpmodel_harness.localplane import LocalPlane, pid_alive
from nlpmodel_harness.standins import StandInControllers

PLAN = [10, 50]


@pytest.fixture(scope="module")
def proxy(localplane: LocalPlane) -> Iterator[FaultProxy]:
    with FaultProxy(localplane.api_url, localplane.state_dir / "pki" / "serving") as p:
        yield p


@pytest.fixture(scope="module")
def operator(
    localplane: LocalPlane, cluster: Cluster, proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    where = tmp_path_factory.mktemp("operator")
    kubeconfig = proxy.write_kubeconfig(localplane.operator_kubeconfig, where / "via-proxy.kubeconfig")
    proc = OperatorProcess(kubeconfig, where / "operator.log")
    proc.start()
    yield proc
    proc.stop()
    assert not [pid for pid in proc.pids if pid_alive(pid)]
    log = proc.log_path.read_text(errors="replace")
    assert "Traceback" not in log, proc.log_tail(80)


@pytest.fixture
def world(
    localplane: LocalPlane, operator: OperatorProcess, proxy: FaultProxy, namespace: str
) -> Iterator[tuple[client.ApiClient, Timeline]]:
    admin = localplane.admin_client()
    try:
        with StandInControllers(admin, namespace), Timeline(localplane.etcd_url, namespace) as timeline:
            yield admin, timeline
    finally:
        proxy.heal()
        admin.close()


def model(
    namespace: str, max_model_len: int = 8192, pause: str = "4s", hostnames: tuple[str, ...] = ()
) -> dict[str, Any]:
    return chat_model(
        namespace,
        max_model_len,
        serving={"hostnames": list(hostnames)},  # a routing field: changing it is no new revision
        rollout={"steps": [{"weight": w, "pause": pause} for w in PLAN], "progressDeadline": "90s"},
    )


def serve(cluster: Cluster, namespace: str, body: dict[str, Any]) -> None:
    cluster.apply_model(body)
    wait_for(
        f"{revision(body)} serving alone",
        lambda: (
            status(cluster, namespace).get("stableRevision") == revision(body)
            and status(cluster, namespace).get("phase") == "Ready"
        ),
        120,
    )


def converged(cluster: Cluster, namespace: str) -> bool:
    """The status was written for the latest spec (no update lost)."""
    body = cluster.model(namespace, "chat")
    return bool((body.get("status") or {}).get("observedGeneration") == body["metadata"]["generation"])


def route(cluster: Cluster, namespace: str) -> dict[str, int]:
    return route_weights(
        cluster.api.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "httproutes", "chat"
        )
    )


def route_hostnames(cluster: Cluster, namespace: str) -> list[str]:
    found = cluster.api.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", "chat"
    )
    return list(found["spec"].get("hostnames") or [])


def isvc(cluster: Cluster, namespace: str, rev: str) -> dict[str, Any]:
    found: dict[str, Any] = cluster.api.get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", namespace, "inferenceservices", f"chat-{rev}"
    )
    return found


def test_the_apiserver_restarted_mid_rollout(
    cluster: Cluster,
    operator: OperatorProcess,
    namespace: str,
    localplane: LocalPlane,
    world: tuple[client.ApiClient, Timeline],
) -> None:
    _, timeline = world
    v1, v2 = model(namespace), model(namespace, 4096)
    serve(cluster, namespace, v1)
    cluster.apply_model(v2)
    wait_for("canary at 10 %", lambda: status(cluster, namespace).get("canaryWeight") == 10, 60)
    localplane.restart_apiserver(down_s=3)
    # A spec change right after the restart (a routing field, no new revision) is not lost.
    changed = model(namespace, 4096, hostnames=("chat.example.com",))
    cluster.apply_model(changed)
    wait_for(
        "promoted after the restart",
        lambda: (
            status(cluster, namespace).get("stableRevision") == revision(v2)
            and status(cluster, namespace).get("phase") == "Ready"
            and converged(cluster, namespace)
        ),
        120,
    )
    assert route_hostnames(cluster, namespace) == ["chat.example.com"]
    timeline.wait_quiet()
    assert timeline.violations(PLAN) == [], timeline.describe()
    splits = timeline.route_history()
    assert {revision(v1): 50, revision(v2): 50} in splits  # the step after the restart was taken
    assert splits[-1] == {revision(v2): 100}
    assert operator.alive(), operator.log_tail()


def test_a_concurrent_writer_fighting_over_the_route_and_the_inference_service(
    cluster: Cluster, operator: OperatorProcess, namespace: str, world: tuple[client.ApiClient, Timeline]
) -> None:
    admin, _ = world
    v1, v2 = model(namespace), model(namespace, 4096, pause="1h")
    serve(cluster, namespace, v1)
    cluster.apply_model(v2)
    wait_for("canary at 10 %", lambda: status(cluster, namespace).get("canaryWeight") == 10, 60)
    custom = client.CustomObjectsApi(admin)
    stop = threading.Event()
    outcomes: dict[str, int] = {"written": 0, "conflicts": 0}

    def fight() -> None:
        """Another controller's read-modify-write (with the resourceVersion it read): 50/50 on the route,
        another node selector on the canary's InferenceService; the operator's writes in between give
        it 409s."""
        while not stop.is_set():
            for group, version, plural, name, change in (
                ("gateway.networking.k8s.io", "v1", "httproutes", "chat", _even_split),
                ("serving.kserve.io", "v1beta1", "inferenceservices", f"chat-{revision(v2)}", _reschedule),
            ):
                try:
                    obj = custom.get_namespaced_custom_object(group, version, namespace, plural, name)
                    time.sleep(0.2)  # long enough for the operator to write in between, sometimes
                    custom.replace_namespaced_custom_object(
                        group, version, namespace, plural, name, change(obj)
                    )
                    outcomes["written"] += 1
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    outcomes["conflicts"] += 1

    fighter = threading.Thread(target=fight, daemon=True)
    fighter.start()
    time.sleep(4)
    # The user's spec change while the two fight (a routing field): not lost.
    cluster.apply_model(model(namespace, 4096, pause="1h", hostnames=("chat.example.com",)))
    time.sleep(4)
    stop.set()
    fighter.join(10)
    print(f"\nthe other writer: {outcomes['written']} writes, {outcomes['conflicts']} conflicts (409)")
    assert outcomes["written"] > 0
    # Converged to the plan once the other writer stops: the canary's split, the operator's node
    # selector, the user's change; the rollout goes on from where it was (promoted on request).
    stable, canary = revision(v1), revision(v2)
    wait_for("the planned split back", lambda: route(cluster, namespace) == {stable: 90, canary: 10}, 30)
    wait_for(
        "the canary's node selector back, the user's change in",
        lambda: (
            isvc(cluster, namespace, canary)["spec"]["predictor"]["nodeSelector"]
            == isvc(cluster, namespace, stable)["spec"]["predictor"]["nodeSelector"]
            and route_hostnames(cluster, namespace) == ["chat.example.com"]
            and converged(cluster, namespace)
        ),
        30,
    )
    assert status(cluster, namespace)["currentStep"] == 0  # the rollout state survived the fight
    cluster.command(namespace, "chat", "promote")
    wait_for("promoted", lambda: status(cluster, namespace).get("stableRevision") == canary, 60)
    assert route(cluster, namespace) == {canary: 100}


def _even_split(route: dict[str, Any]) -> dict[str, Any]:
    for ref in route["spec"]["rules"][0]["backendRefs"]:
        ref["weight"] = 50
    return route


def _reschedule(isvc: dict[str, Any]) -> dict[str, Any]:
    isvc["spec"]["predictor"]["nodeSelector"]["nvidia.com/gpu.product"] = "NVIDIA-A100-SXM4-80GB"
    return isvc


def test_a_silent_watch_still_converges_through_the_resync(
    cluster: Cluster,
    operator: OperatorProcess,
    proxy: FaultProxy,
    namespace: str,
    world: tuple[client.ApiClient, Timeline],
) -> None:
    _, timeline = world
    v1, v2 = model(namespace), model(namespace, 4096, pause="2s")
    serve(cluster, namespace, v1)
    proxy.silence_watches()  # the operator's watch connections stay open and deliver nothing
    dropped = proxy.silenced_bytes
    cluster.apply_model(v2)
    wait_for(
        "promoted while the watch says nothing",
        lambda: (
            status(cluster, namespace).get("stableRevision") == revision(v2)
            and status(cluster, namespace).get("phase") == "Ready"
        ),
        120,
    )
    assert proxy.silenced_bytes > dropped  # events were written to the watch, and swallowed
    proxy.heal()
    # After the fault the watch works again: a change is picked up and converges.
    cluster.apply_model(model(namespace, 4096, pause="2s", hostnames=("chat.example.com",)))
    wait_for("converged after the fault", lambda: converged(cluster, namespace), 60)
    timeline.wait_quiet()
    assert timeline.violations(PLAN) == [], timeline.describe()
    assert timeline.route_history()[-1] == {revision(v2): 100}


def test_an_abort_is_not_lost_when_status_writes_fail(
    cluster: Cluster,
    operator: OperatorProcess,
    proxy: FaultProxy,
    namespace: str,
    world: tuple[client.ApiClient, Timeline],
) -> None:
    """The command is consumed (its annotation removed) only together with the decision it made: while
    status writes fail the operator neither forgets the abort nor brings the aborted canary back."""
    _, timeline = world
    v1, v2 = model(namespace), model(namespace, 4096, pause="1h")
    serve(cluster, namespace, v1)
    cluster.apply_model(v2)
    wait_for("canary at 10 %", lambda: status(cluster, namespace).get("canaryWeight") == 10, 60)
    proxy.reject(rf"^PATCH \S*/namespaces/{namespace}/nlpmodels/chat/status")
    cluster.command(namespace, "chat", "abort")
    rejected = proxy.rejected
    wait_for("status writes failing", lambda: proxy.rejected > rejected + 2, 30)
    proxy.heal()
    wait_for("rolled back", lambda: status(cluster, namespace).get("phase") == "RolledBack", 60)
    time.sleep(3)  # a few more reconciles
    st = status(cluster, namespace)
    assert st["failedRevision"] == revision(v2)
    assert next(x for x in st["conditions"] if x["type"] == "RolledBack")["reason"] == "Aborted"
    assert route(cluster, namespace) == {revision(v1): 100}
    assert [i["metadata"]["name"] for i in cluster.inference_services(namespace)] == [f"chat-{revision(v1)}"]
    timeline.wait_quiet()
    assert timeline.violations(PLAN) == [], timeline.describe()
    assert timeline.route_history()[-2:] == [{revision(v1): 90, revision(v2): 10}, {revision(v1): 100}]
    assert timeline.isvc_creations()[revision(v2)] == 1  # the aborted canary never came back
