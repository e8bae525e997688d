"""The operator, its chart and our runtime on a real node, tried as a platform team would.

1. `helm install`: the operator runs in-cluster from its image, as the chart's ServiceAccount, restricted.
2. A real Prometheus scrapes the pods the operator's PodMonitor selects, at their pod IPs.
3. An NLPModel (raw platform, replica-ratio router, transformers runtime) serves a tiny model in real pods;
   load goes through the model's Service, and kube-proxy gives the canary its share.
4. A canary with a larger model is rolled back on latency the real runtime measured; the chart's alert
   fires; an equivalent canary is promoted; `nlpctl status/wait` agree.
5. The operator's pod deleted mid-canary: kubelet's replacement resumes it, with no stray revision.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from nodecluster import MODEL_NAMESPACE, NodeCluster, wait_for

from nlpmodel_harness.nodestack import MODELS_CLAIM, RELEASE, RELEASE_NAMESPACE, ServiceLoad
from nlpmodel_harness.stack import apply_model
from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.analysis.queries import TARGET_LABEL_MODEL, TARGET_LABEL_REVISION
from nlpmodel_operator.core.revision import revision_hash

NLPCTL = Path(sys.executable).with_name("nlpctl")
SERVED = "tiny"
MAX_TOKENS = 12


def model(name: str, directory: str) -> dict[str, Any]:
    """A CPU model on the raw platform; a canary at 50 % for 40 s, checked every 10 s."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": name, "namespace": MODEL_NAMESPACE},
        "spec": {
            "task": "generate",
            "model": {"uri": f"pvc://{MODELS_CLAIM}/{directory}", "servedName": SERVED},
            "runtime": {"engine": "transformers", "maxModelLen": 256},
            "resources": {"gpu": {"count": 0}},
            "serving": {"platform": "raw", "router": "replica-ratio"},
            "scaling": {"minReplicas": 1, "maxReplicas": 1},
            "rollout": {
                "strategy": "canary",
                "steps": [{"weight": 50, "pause": "40s"}],
                "analysis": {"interval": "10s", "minRequests": 5, "failureThreshold": 2},
                # Relative to the stable revision only: a loaded CI machine slows both alike.
                "slo": {"maxRegression": "50%"},
            },
        },
    }


def revision_of(body: dict[str, Any]) -> str:
    return revision_hash(NLPModelSpec.model_validate(body["spec"]))


def status_of(cluster: NodeCluster, name: str) -> dict[str, Any]:
    found = cluster.custom.get_namespaced_custom_object(c.GROUP, c.VERSION, MODEL_NAMESPACE, c.PLURAL, name)
    result: dict[str, Any] = found.get("status") or {}
    return result


def nlpctl(cluster: NodeCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NLPCTL), *args, "-n", MODEL_NAMESPACE, "--kubeconfig", str(cluster.admin_kubeconfig)],
        capture_output=True,
        text=True,
        check=False,
    )


def load(cluster: NodeCluster, name: str) -> ServiceLoad:
    return ServiceLoad(cluster.admin, MODEL_NAMESPACE, name, served_name=SERVED, max_tokens=MAX_TOKENS)


def ready_model(cluster: NodeCluster, name: str, directory: str) -> dict[str, Any]:
    body = model(name, directory)
    apply_model(cluster.custom, body)
    wait_for(
        f"{name} Ready on real pods",
        lambda: (
            status_of(cluster, name).get("phase") == "Ready"
            and status_of(cluster, name).get("stableRevision") == revision_of(body)
        ),
        300,
    )
    return body


def requests_by_revision(cluster: NodeCluster, name: str) -> dict[str, float]:
    """Requests each revision's runtime counted, as Prometheus scraped them (kept after a pod is gone)."""
    query = (
        f"sum by ({TARGET_LABEL_REVISION}) "
        f'(max_over_time(vllm:request_success_total{{{TARGET_LABEL_MODEL}="{name}"}}[15m]))'
    )
    return {r["metric"][TARGET_LABEL_REVISION]: float(r["value"][1]) for r in cluster.prometheus.query(query)}


def model_deployments(cluster: NodeCluster, name: str) -> list[str]:
    found = cluster.apps.list_namespaced_deployment(MODEL_NAMESPACE, label_selector=f"{c.LABEL_MODEL}={name}")
    return sorted(d.metadata.name for d in found.items)


@pytest.fixture
def cleanup(node_cluster: NodeCluster) -> Iterator[list[str]]:
    """Models a test created, deleted afterwards so the next test has the node's CPUs to itself."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            node_cluster.custom.delete_namespaced_custom_object(
                c.GROUP, c.VERSION, MODEL_NAMESPACE, c.PLURAL, name
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
    for name in names:
        wait_for(
            f"{name}'s pods gone",
            lambda n=name: not node_cluster.pods(MODEL_NAMESPACE, f"{c.LABEL_MODEL}={n}"),
            180,
        )


def test_the_operator_runs_in_cluster_from_its_image_as_the_chart_says(node_cluster: NodeCluster) -> None:
    selector = "app.kubernetes.io/component=operator"
    (pod,) = node_cluster.pods(RELEASE_NAMESPACE, selector)
    spec, status = pod["spec"], pod["status"]
    assert status["phase"] == "Running"
    assert any(x["type"] == "Ready" and x["status"] == "True" for x in status["conditions"])
    assert spec["serviceAccountName"] == RELEASE
    (container,) = spec["containers"]
    (container_status,) = status["containerStatuses"]
    assert container_status["image"].endswith("nlpmodel-operator:0.1.0")
    assert container_status["imageID"].startswith("sha256:")  # imported into containerd, never pulled
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # Its process really runs as the chart's user, not as the image's root default.
    ps = node_cluster.kubectl("exec", "-n", RELEASE_NAMESPACE, pod["metadata"]["name"], "--", "id", "-u")
    assert ps.strip() == "65532"
    # The metrics Service points at the pod, and Prometheus scrapes it there.
    endpoints = node_cluster.core.read_namespaced_endpoints(f"{RELEASE}-metrics", RELEASE_NAMESPACE)
    assert [a.ip for s in endpoints.subsets for a in s.addresses] == [status["podIP"]]
    wait_for(
        "Prometheus scrapes the operator's pod",
        lambda: node_cluster.prometheus.query('up{job="nlpmodel-operator"} == 1'),
        60,
    )


def test_a_model_serves_in_real_pods_through_its_service(
    node_cluster: NodeCluster, cleanup: list[str]
) -> None:
    cleanup.append("serve")
    body = ready_model(node_cluster, "serve", "small")
    rev = revision_of(body)
    (pod,) = node_cluster.pods(MODEL_NAMESPACE, f"{c.LABEL_REVISION}={rev}")
    assert pod["spec"]["containers"][0]["image"] == "ghcr.io/nlpmodel-operator/transformers-runtime:v0.1.0"
    client = load(node_cluster, "serve")
    url = client.url()
    assert url is not None
    answer = client.complete(url)
    assert answer["usage"]["completion_tokens"] == MAX_TOKENS
    # The PodMonitor's target is the pod's own IP, labelled with the revision.
    wait_for(
        "Prometheus has the runtime's request counter for the revision",
        lambda: requests_by_revision(node_cluster, "serve").get(rev, 0) >= 1,
        60,
    )
    targets = node_cluster.prometheus.query(f'up{{{TARGET_LABEL_REVISION}="{rev}"}}')
    assert [t["metric"]["instance"] for t in targets] == [f"{pod['status']['podIP']}:8080"]


def test_a_slower_canary_is_rolled_back_on_measured_latency_and_the_alert_fires(
    node_cluster: NodeCluster, cleanup: list[str]
) -> None:
    cleanup.append("slow")
    stable = ready_model(node_cluster, "slow", "small")
    canary = model("slow", "large")
    with load(node_cluster, "slow") as traffic:
        apply_model(node_cluster.custom, canary)
        waited = nlpctl(node_cluster, "wait", "slow", "--for", "rolledback", "--timeout", "8m")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    status = status_of(node_cluster, "slow")
    assert status["phase"] == "RolledBack"
    assert status["stableRevision"] == revision_of(stable)
    assert status.get("canaryRevision") in (None, "")
    rolled_back = next(x for x in status["conditions"] if x["type"] == "RolledBack")
    assert "latency" in rolled_back["message"].lower() or "p95" in rolled_back["message"].lower()
    shown = nlpctl(node_cluster, "status", "slow")
    assert "RolledBack" in shown.stdout
    # The canary got its share of the Service's traffic through kube-proxy (both revisions counted some).
    served = requests_by_revision(node_cluster, "slow")
    assert served.get(revision_of(canary), 0) >= 5
    assert served.get(revision_of(stable), 0) >= 5
    assert traffic.ok > 0
    wait_for(
        "the canary's Deployment is gone",
        lambda: model_deployments(node_cluster, "slow") == [f"slow-{revision_of(stable)[:8]}"],
        120,
    )
    # The chart's alert, evaluated by Prometheus from the operator's own metrics.
    wait_for(
        "NLPModelRolledBack fires for ml/slow",
        lambda: [
            a
            for a in node_cluster.prometheus.alerts()
            if a["labels"].get("alertname") == "NLPModelRolledBack"
            and a["labels"].get("model") == "slow"
            and a["state"] == "firing"
        ],
        120,
    )


def test_an_equivalent_canary_is_promoted_across_an_operator_pod_restart(
    node_cluster: NodeCluster, cleanup: list[str]
) -> None:
    cleanup.append("steady")
    stable = ready_model(node_cluster, "steady", "small")
    canary = model("steady", "small-v2")
    with load(node_cluster, "steady"):
        apply_model(node_cluster.custom, canary)
        wait_for(
            "the canary is in progress",
            lambda: status_of(node_cluster, "steady").get("canaryRevision") == revision_of(canary),
            240,
        )
        # Mid-canary, the operator's pod goes; its Deployment's replacement picks the rollout up.
        (old,) = node_cluster.pods(RELEASE_NAMESPACE, "app.kubernetes.io/component=operator")
        node_cluster.core.delete_namespaced_pod(old["metadata"]["name"], RELEASE_NAMESPACE)
        wait_for(
            "a new operator pod is Ready",
            lambda: [
                p
                for p in node_cluster.pods(RELEASE_NAMESPACE, "app.kubernetes.io/component=operator")
                if p["metadata"]["uid"] != old["metadata"]["uid"]
                and any(
                    x["type"] == "Ready" and x["status"] == "True"
                    for x in p["status"].get("conditions") or []
                )
            ],
            180,
        )
        waited = nlpctl(node_cluster, "wait", "steady", "--for", "promoted", "--timeout", "8m")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    status = status_of(node_cluster, "steady")
    assert status["phase"] == "Ready"
    assert status["stableRevision"] == revision_of(canary)
    promoted = [h for h in status["history"] if h["outcome"] == "Promoted"]
    assert [h["revision"] for h in promoted] == [revision_of(canary)]
    assert "RolledBack" not in {h["outcome"] for h in status["history"]}
    assert revision_of(stable) != revision_of(canary)
    wait_for(
        "only the promoted revision's Deployment is left (no stray revision)",
        lambda: model_deployments(node_cluster, "steady") == [f"steady-{revision_of(canary)[:8]}"],
        180,
    )
    shown = nlpctl(node_cluster, "status", "steady", "-o", "json")
    assert json.loads(shown.stdout)["stableRevision"] == revision_of(canary)
