"""The chart on the local control plane, and `nlpctl wait` against it.

1. The chart's objects (helm template, default values) install on the real kube-apiserver, and its
   Deployment's ReplicaSet creates a pod the API accepts (ServiceAccount, restricted securityContext).
2. The operator runs as the chart's ServiceAccount (a TokenRequest token), with kopf peering as the
   chart starts it: it creates its ClusterKopfPeering, reconciles a model with no permission denied,
   and answers /healthz and /metrics on its port.
3. `nlpctl wait` for each outcome, the harness writing the status subresource as admin (no operator).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from hack.chartsync import CHART
from harness import Cluster, OperatorProcess, wait_for
from nlpmodel_harness.childproc import free_ports
from nlpmodel_harness.k8stools import ensure_tools
from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.constants import ConditionType, Phase, Reason
from nlpmodel_operator.cli.wait import EXIT_NEVER, EXIT_TIMEOUT

REPO = Path(__file__).resolve().parents[2]
RELEASE = "nlpm"
NLPCTL = Path(sys.executable).with_name("nlpctl")
EXAMPLE = REPO / "manifests" / "examples" / "bert-classifier-cpu.yaml"


def rendered_chart(namespace: str) -> list[dict[str, Any]]:
    helm = ensure_tools().helm
    proc = subprocess.run(
        [str(helm), "template", RELEASE, str(CHART), "--namespace", namespace],
        capture_output=True,
        text=True,
        check=True,
    )
    return [d for d in yaml.safe_load_all(proc.stdout) if isinstance(d, dict)]


def example_model(namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"] = {"name": name, "namespace": namespace}
    return body


class ChartOperator(OperatorProcess):
    """The operator as the chart's Deployment starts it (--peering, not --standalone)."""

    def __init__(self, kubeconfig: Path, log_path: Path, args: list[str], env: dict[str, str]) -> None:
        super().__init__(kubeconfig, log_path, env=env)
        self.args = args

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "NLPMODEL_RESYNC_SECONDS": str(self.resync_seconds),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nlpmodel_operator", *self.args, "--verbose"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pids.append(self.proc.pid)


@pytest.fixture
def installed(
    localplane: LocalPlane, cluster: Cluster, namespace: str, tmp_path: Path
) -> Iterator[list[dict[str, Any]]]:
    """The chart's objects, installed in `namespace` as admin; cluster-scoped ones removed afterwards."""
    objects = rendered_chart(namespace)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    crd_file = tmp_path / "crds.yaml"
    crd_file.write_text(yaml.safe_dump_all(crds))
    localplane.install_crds([crd_file])  # adapted to v1.20 as every CRD here (no CEL rules)
    dyn = dynamic.DynamicClient(localplane.admin_client())
    created: list[tuple[Any, dict[str, Any]]] = []
    for obj in objects:
        if obj["kind"] == "CustomResourceDefinition":
            continue
        api = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        api.create(body=obj, namespace=obj["metadata"].get("namespace"))
        created.append((api, obj))
    yield objects
    for api, obj in created:
        if not api.namespaced:
            api.delete(name=obj["metadata"]["name"])
    ext = client.ApiextensionsV1Api(localplane.admin_client())
    for crd in crds:
        if crd["metadata"]["name"] != c.CRD_NAME:  # ours stays: the session's other tests use it
            ext.delete_custom_resource_definition(crd["metadata"]["name"])


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def test_the_chart_installs_and_its_operator_runs_with_the_service_accounts_permissions(
    localplane: LocalPlane, cluster: Cluster, namespace: str, installed: list[dict[str, Any]], tmp_path: Path
) -> None:
    deployment = of_kind(installed, "Deployment")
    sa_name = of_kind(installed, "ServiceAccount")["metadata"]["name"]

    # The pod template passes the API server's validation and admission (its ServiceAccount exists).
    pods = wait_for(
        "the chart's Deployment to create its pod",
        lambda: (
            cluster.core.list_namespaced_pod(
                namespace, label_selector="app.kubernetes.io/component=operator"
            ).items
        ),
    )
    assert pods[0].spec.service_account_name == sa_name
    assert pods[0].spec.security_context.run_as_non_root is True

    # The operator, as the chart's ServiceAccount, started with the chart's arguments.
    token = cluster.core.create_namespaced_service_account_token(
        sa_name, namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    kubeconfig = yaml.safe_load(localplane.admin_kubeconfig.read_text())
    kubeconfig["users"][0]["user"] = {"token": token}
    sa_kubeconfig = tmp_path / "sa.kubeconfig"
    sa_kubeconfig.write_text(yaml.safe_dump(kubeconfig))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    (port,) = free_ports(1)
    env |= {"NLPMODEL_METRICS_PORT": str(port), "POD_ID": "chart-operator-0"}
    operator = ChartOperator(sa_kubeconfig, tmp_path / "operator.log", container["args"], env)
    operator.start()
    try:
        peering = container["args"][0].removeprefix("--peering=")
        custom = client.CustomObjectsApi(localplane.admin_client())

        def peering_status() -> dict[str, Any] | None:
            try:
                found = custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", peering)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            return found.get("status")

        status = wait_for("the operator to create and join its ClusterKopfPeering", peering_status, 90)
        assert "chart-operator-0" in status

        cluster.apply_model(example_model(namespace, "chat"))
        reconciled = wait_for(
            "the operator to reconcile the model",
            lambda: (cluster.model(namespace, "chat").get("status") or {}).get("observedGeneration"),
            90,
        )
        assert reconciled == 1
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        phase = cluster.model(namespace, "chat")["status"]["phase"]
        assert f'nlpmodel_phase{{model="chat",namespace="{namespace}",phase="{phase}"}} 1.0' in text
    finally:
        operator.stop()
    log = (tmp_path / "operator.log").read_text(errors="replace")
    problems = [line for line in log.splitlines() if "forbidden: User" in line or "Traceback" in line]
    assert problems == [], "\n".join(problems[:20])
    assert operator.proc is not None
    assert operator.proc.returncode in (0, -signal.SIGTERM)


# -------------------------------------------------------------------------------------- nlpctl wait


def write_status(cluster: Cluster, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Play the operator: write the status subresource as admin."""
    generation = cluster.model(namespace, name)["metadata"]["generation"]
    cluster.api.patch_namespaced_custom_object_status(
        c.GROUP,
        c.VERSION,
        namespace,
        c.PLURAL,
        name,
        {"status": {"observedGeneration": generation, **status}},
    )


def condition(type_: str, status: str, reason: str, message: str = "as the operator says") -> dict[str, str]:
    # Non-empty: the v1.20 apiserver here reads an empty string in a custom resource as null.
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


CANARY = {
    "phase": Phase.PROGRESSING,
    "stableRevision": "1a2b3c4d",
    "canaryRevision": "4d2e8b10",
    "canaryWeight": 10,
    "conditions": [condition(ConditionType.READY, "True", Reason.CHILDREN_READY)],
}
PROMOTED = {
    "phase": Phase.READY,
    "stableRevision": "4d2e8b10",
    "canaryRevision": None,  # a merge patch: null removes it, as the operator's promotion does
    "canaryWeight": None,
    "conditions": [condition(ConditionType.READY, "True", Reason.CHILDREN_READY)],
}
ROLLED_BACK = {
    "phase": Phase.ROLLED_BACK,
    "stableRevision": "1a2b3c4d",
    "canaryRevision": None,
    "canaryWeight": None,
    "failedRevision": "4d2e8b10",
    "conditions": [
        condition(ConditionType.READY, "True", Reason.CHILDREN_READY),
        condition(
            ConditionType.ROLLED_BACK, "True", Reason.ANALYSIS_FAILED, "ttftP95 1.9s > 800ms in 2 checks"
        ),
    ],
}
PENDING = {
    "phase": Phase.PENDING,
    "conditions": [condition(ConditionType.READY, "False", Reason.CHILDREN_NOT_READY, "predictor not ready")],
}


def nlpctl_wait(localplane: LocalPlane, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(NLPCTL),
            "wait",
            "chat",
            "-n",
            namespace,
            "--kubeconfig",
            str(localplane.admin_kubeconfig),
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def later(then: dict[str, Any], cluster: Cluster, namespace: str, first: dict[str, Any]) -> threading.Thread:
    """Write `first` now and `then` after nlpctl has seen it (a few polls later)."""
    write_status(cluster, namespace, "chat", first)

    def run() -> None:
        time.sleep(3)
        write_status(cluster, namespace, "chat", then)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("outcome", "first", "then", "code", "says"),
    [
        ("promoted", CANARY, PROMOTED, 0, "promoted (stable 4d2e8b10)"),
        ("promoted", CANARY, ROLLED_BACK, EXIT_NEVER, "AnalysisFailed: ttftP95 1.9s > 800ms in 2 checks"),
        ("ready", PENDING, PROMOTED, 0, ": ready (phase Ready"),
        ("rolledback", CANARY, ROLLED_BACK, 0, "rolled back (revision 4d2e8b10): AnalysisFailed"),
        ("rolledback", CANARY, PROMOTED, EXIT_NEVER, "promoted, not rolled back"),
    ],
    ids=[
        "promoted",
        "rolled-back-while-waiting-for-promoted",
        "ready",
        "rolledback",
        "promoted-not-rolled-back",
    ],
)
def test_nlpctl_wait_reports_each_outcome(
    localplane: LocalPlane,
    cluster: Cluster,
    namespace: str,
    outcome: str,
    first: dict[str, Any],
    then: dict[str, Any],
    code: int,
    says: str,
) -> None:
    cluster.apply_model(example_model(namespace, "chat"))
    thread = later(then, cluster, namespace, first)
    try:
        proc = nlpctl_wait(localplane, namespace, f"--for={outcome}", "--timeout", "90s")
    finally:
        thread.join()
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert says in (proc.stdout if code == 0 else proc.stderr)


def test_nlpctl_wait_times_out_where_the_model_still_is(
    localplane: LocalPlane, cluster: Cluster, namespace: str
) -> None:
    cluster.apply_model(example_model(namespace, "chat"))
    write_status(cluster, namespace, "chat", CANARY)
    proc = nlpctl_wait(localplane, namespace, "--for=promoted", "--timeout", "3s")
    assert proc.returncode == EXIT_TIMEOUT, proc.stdout + proc.stderr
    assert "timed out waiting for" in proc.stderr
    assert "canary 4d2e8b10 at 10%" in proc.stderr


def test_nlpctl_wait_for_a_missing_model(localplane: LocalPlane, namespace: str) -> None:
    proc = nlpctl_wait(localplane, namespace, "--for=ready", "--timeout", "10s")
    assert proc.returncode == 4, proc.stderr
    assert f"nlpmodel chat not found in namespace {namespace}" in proc.stderr
