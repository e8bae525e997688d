"""Autoscaling on the local control plane: the HPA version the server offers, one autoscaler per
workload through a canary, its promotion and a rollback, a replica count handed over without a dip,
and KEDA queries that select exactly one revision's series in a real Prometheus."""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.dynamic import DynamicClient

from harness import (
    Cluster,
    OperatorProcess,
    chat_model,
    revision,
    run_operator,
    status,
    wait_for,
    with_prometheus,
)
from nlpmodel_harness.k8stools import ensure_tools
from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_harness.prometheus import PrometheusProcess
from nlpmodel_harness.revision_servers import RevisionServers
from nlpmodel_harness.standins import StandInControllers
from nlpmodel_operator.api import constants as c
from nlpmodel_operator.providers import Value
from nlpmodel_operator.providers.prometheus import PrometheusProvider

PAUSE = "3s"


@pytest.fixture(scope="module")
def operator(
    localplane: LocalPlane,
    cluster: Cluster,
    prometheus: PrometheusProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    yield from run_operator(localplane, tmp_path_factory, with_prometheus(prometheus.url))


def model(namespace: str, max_model_len: int = 8192, **scaling: Any) -> dict[str, Any]:
    return chat_model(
        namespace,
        max_model_len,
        resources={"gpu": {"count": 1, "product": "nvidia-l4"}, "cpu": "2"},  # cpu: what the HPA scales on
        serving={"platform": "raw", "router": "gateway-api"},
        scaling={"minReplicas": 2, "maxReplicas": 4, "metric": "queue-depth", **scaling},
        rollout={
            "steps": [{"weight": 10, "pause": PAUSE}, {"weight": 50, "pause": PAUSE}],
            "progressDeadline": "60s",
        },
    )


def get_json(cluster: Cluster, path: str) -> dict[str, Any]:
    found: dict[str, Any] = DynamicClient(cluster.api.api_client).request("GET", path).to_dict()
    return found


class Scalers:
    """Samples, continuously, which autoscaler targets which Deployment and every Deployment's count."""

    def __init__(self, cluster: Cluster, namespace: str, hpa_version: str) -> None:
        self.cluster, self.namespace, self.hpa_version = cluster, namespace, hpa_version
        self.samples: list[tuple[dict[str, list[str]], dict[str, int | None]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Scalers:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def now(self) -> tuple[dict[str, list[str]], dict[str, int | None]]:
        """(Deployment → the autoscalers targeting it, Deployment → spec.replicas)."""
        targets: dict[str, list[str]] = {}
        hpas = get_json(
            self.cluster, f"/apis/{self.hpa_version}/namespaces/{self.namespace}/horizontalpodautoscalers"
        )
        for hpa in hpas["items"]:
            targets.setdefault(hpa["spec"]["scaleTargetRef"]["name"], []).append(
                f"hpa/{hpa['metadata']['name']}"
            )
        scaled = self.cluster.api.list_namespaced_custom_object(
            "keda.sh", "v1alpha1", self.namespace, "scaledobjects"
        )
        for so in scaled["items"]:
            targets.setdefault(so["spec"]["scaleTargetRef"]["name"], []).append(
                f"so/{so['metadata']['name']}"
            )
        counts = {
            d.metadata.name: d.spec.replicas
            for d in self.cluster.apps.list_namespaced_deployment(self.namespace).items
        }
        return targets, counts

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.samples.append(self.now())
            except client.ApiException:
                continue


@pytest.fixture
def world(
    localplane: LocalPlane,
    cluster: Cluster,
    operator: OperatorProcess,
    prometheus: PrometheusProcess,
    namespace: str,
    tmp_path: Path,
) -> Iterator[tuple[StandInControllers, RevisionServers]]:
    admin = localplane.admin_client()
    servers = RevisionServers(admin, prometheus, namespace, "chat", tmp_path)
    with StandInControllers(admin, namespace) as standins, servers:
        yield standins, servers
    admin.close()


def served_hpa_version(cluster: Cluster) -> str:
    group = get_json(cluster, "/apis/autoscaling")
    versions = {v["groupVersion"] for v in group["versions"]}
    return "autoscaling/v2" if "autoscaling/v2" in versions else "autoscaling/v2beta2"


def test_the_operator_creates_the_hpa_version_the_server_offers(
    cluster: Cluster, namespace: str, world: Any
) -> None:
    version = served_hpa_version(cluster)
    assert version == "autoscaling/v2beta2"  # the local plane is v1.20: no autoscaling/v2 yet
    v1 = model(namespace, metric="cpu", minReplicas=1, maxReplicas=3)
    cluster.apply_model(v1)
    name = f"chat-{revision(v1)}"
    path = f"/apis/{version}/namespaces/{namespace}/horizontalpodautoscalers"
    hpa = wait_for("the HPA", lambda: next(iter(get_json(cluster, path)["items"]), None), 60)
    assert hpa["metadata"]["name"] == name
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    assert hpa["metadata"]["ownerReferences"][0]["kind"] == "NLPModel"
    wait_for(
        "Autoscaling condition",
        lambda: (cluster.condition(namespace, "chat", "Autoscaling") or {}).get("status") == "True",
        30,
    )
    assert (
        "HorizontalPodAutoscaler (autoscaling/v2beta2)"
        in cluster.condition(namespace, "chat", "Autoscaling")["message"]
    )  # type: ignore[index]


def test_one_autoscaler_per_workload_through_a_canary_its_promotion_and_a_rollback(
    cluster: Cluster,
    namespace: str,
    world: tuple[StandInControllers, RevisionServers],
    prometheus: PrometheusProcess,
) -> None:
    standins, _servers = world
    v1, v2, v3 = (model(namespace, max_model_len=n) for n in (8192, 4096, 2048))
    r1, r2, r3 = revision(v1), revision(v2), revision(v3)
    with Scalers(cluster, namespace, served_hpa_version(cluster)) as scalers:
        cluster.apply_model(v1)
        wait_for("v1 Ready", lambda: status(cluster, namespace).get("phase") == "Ready", 90)
        wait_for("v1's ScaledObject", lambda: scalers.now()[0] == {f"chat-{r1}": [f"so/chat-{r1}"]}, 30)

        # The ScaledObject's query selects exactly one revision's series in a real Prometheus that
        # scrapes both revisions through the operator's PodMonitor. The 50 % step waits until the
        # check is done (then `nlpctl promote`): both revisions must live until Prometheus has both.
        v2["spec"]["rollout"]["steps"][1]["pause"] = "1h"
        cluster.apply_model(v2)
        wait_for("canary at 50 %", lambda: status(cluster, namespace).get("canaryWeight") == 50, 90)
        so = cluster.api.get_namespaced_custom_object(
            "keda.sh", "v1alpha1", namespace, "scaledobjects", f"chat-{r1}"
        )
        query = so["spec"]["triggers"][0]["metadata"]["query"]
        selected = wait_for(
            "both revisions scraped, one selected",
            lambda: revisions_selected(prometheus, query, namespace),
            30,
        )
        assert selected == {r1}
        cluster.command(namespace, "chat", "promote")

        wait_for(
            "v2 promoted",
            lambda: (
                status(cluster, namespace).get("stableRevision") == r2
                and status(cluster, namespace).get("phase") == "Ready"
            ),
            90,
        )
        wait_for("v2's ScaledObject", lambda: scalers.now()[0] == {f"chat-{r2}": [f"so/chat-{r2}"]}, 30)
        promoted_at = len(scalers.samples)

        standins.broken.add(r3)  # a canary that never comes up, then aborted
        cluster.apply_model(v3)
        wait_for("v3 canary", lambda: status(cluster, namespace).get("canaryRevision") == r3, 60)
        cluster.command(namespace, "chat", "abort")
        wait_for("rolled back", lambda: status(cluster, namespace).get("phase") == "RolledBack", 60)
        wait_for("v3 gone", lambda: f"chat-{r3}" not in scalers.now()[1], 30)
        final_targets, final_counts = scalers.now()

    assert len(scalers.samples) > 20
    for targets, _counts in scalers.samples:
        # Never two autoscalers on one workload, and never one on a canary (it runs a fixed count).
        assert all(len(owners) == 1 for owners in targets.values()), targets
        assert f"chat-{r3}" not in targets
        assert not (f"chat-{r2}" in targets and f"chat-{r1}" in targets)
    assert final_targets == {f"chat-{r2}": [f"so/chat-{r2}"]}
    # v1 was born at its minimum (2) and handed to its autoscaler: its count never dropped.
    assert {counts[f"chat-{r1}"] for _, counts in scalers.samples if f"chat-{r1}" in counts} == {2}
    # The promoted canary ran at full size (2) under the operator; the count was handed over to its
    # autoscaler without server-side apply resetting it to the default of 1 (no KEDA runs here).
    after_promotion = [counts.get(f"chat-{r2}") for _, counts in scalers.samples[promoted_at:]]
    assert after_promotion
    assert set(after_promotion) == {2}
    assert final_counts[f"chat-{r2}"] == 2


def revisions_selected(prometheus: PrometheusProcess, query: str, namespace: str) -> set[str] | None:
    """The revisions whose series the ScaledObject's query reads, once Prometheus has both."""
    inner = re.fullmatch(r"sum\((.*)\)", query)
    assert inner is not None, query

    async def ask(promql: str) -> Any:
        async with PrometheusProvider(prometheus.url) as provider:
            return await provider.query(promql)

    both = asyncio.run(
        ask(f'count by (nlpmodel_revision) (vllm:num_requests_waiting{{namespace="{namespace}"}})')
    )
    if not isinstance(both, Value) or len(both.samples) < 2:
        return None
    chosen = asyncio.run(ask(f"count by (nlpmodel_revision) ({inner.group(1)})"))
    assert isinstance(chosen, Value), chosen
    return {s.labels["nlpmodel_revision"] for s in chosen.samples}


def test_kubectl_scale_sizes_a_model_without_autoscaling(
    localplane: LocalPlane, cluster: Cluster, namespace: str, world: Any
) -> None:
    v1 = model(namespace, minReplicas=1, maxReplicas=1)
    cluster.apply_model(v1)
    wait_for("Ready", lambda: status(cluster, namespace).get("phase") == "Ready", 90)
    kubectl = ensure_tools().kubectl
    scaled = subprocess.run(
        [
            str(kubectl),
            "--kubeconfig",
            str(localplane.admin_kubeconfig),
            "-n",
            namespace,
            "scale",
            "nlpmodel/chat",
            "--replicas=3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert scaled.returncode == 0, scaled.stderr
    name = f"chat-{revision(v1)}"
    wait_for(
        "3 replicas", lambda: cluster.apps.read_namespaced_deployment(name, namespace).spec.replicas == 3, 30
    )
    assert cluster.model(namespace, "chat")["spec"]["scaling"]["replicas"] == 3
    scale_path = f"/apis/{c.API_VERSION}/namespaces/{namespace}/{c.PLURAL}/chat/scale"
    scale = wait_for(
        "the scale subresource",
        lambda: (s := get_json(cluster, scale_path))["status"].get("replicas") == 3 and s,
        30,
    )
    assert scale["spec"]["replicas"] == 3
    assert scale["status"]["selector"] == f"{c.LABEL_MODEL}=chat,{c.LABEL_REVISION}={revision(v1)}"
    # Nothing else scales it: no autoscaler was created for a fixed-size model.
    assert Scalers(cluster, namespace, served_hpa_version(cluster)).now()[0] == {}
