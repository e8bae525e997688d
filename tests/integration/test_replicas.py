"""Two operator replicas with kopf peering, as the chart runs them (--peering, the chart's RBAC), each
as its own ServiceAccount so that the API server's audit log tells their writes apart: exactly one
acts, the other takes over when it dies (SIGKILL), and never do both write."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from hack.chartsync import CHART
from harness import Cluster, OperatorProcess, chat_model, operator_metrics, wait_for
from nlpmodel_harness.childproc import free_ports
from nlpmodel_harness.k8stools import ensure_tools
from nlpmodel_harness.localplane import LocalPlane, pid_alive
from nlpmodel_harness.rbac import ROLE_NAME
from nlpmodel_harness.standins import StandInControllers
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.revision import revision_hash

PEERING = "replicas-test"
LIFETIME_S = 6  # a dead replica's peering entry expires after this: the takeover time


def chart_objects(*args: str) -> list[dict[str, Any]]:
    helm = ensure_tools().helm
    out = subprocess.run(
        [str(helm), "template", "nlpm", str(CHART), "--set", f"peering.name={PEERING}", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if isinstance(d, dict)]


@pytest.fixture
def peering_rbac(
    localplane: LocalPlane, cluster: Cluster, namespace: str, tmp_path: Path
) -> Iterator[list[str]]:
    """kopf's peering CRDs and the chart's peering ClusterRole; two ServiceAccounts bound to it and to
    the operator's ClusterRole. Yields the two users' names."""
    objects = chart_objects()
    crds = [
        o for o in objects if o["kind"] == "CustomResourceDefinition" and o["spec"]["group"] == "kopf.dev"
    ]
    crd_file = tmp_path / "peering-crds.yaml"
    crd_file.write_text(yaml.safe_dump_all(crds))
    localplane.install_crds([crd_file])
    (role,) = [
        o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-peering")
    ]
    role["metadata"] = {"name": f"{PEERING}-peering"}
    rbac = client.RbacAuthorizationV1Api(cluster.api.api_client)
    rbac.create_cluster_role(role)
    users, bindings = [], []
    for sa in ("replica-a", "replica-b"):
        cluster.core.create_namespaced_service_account(namespace, {"metadata": {"name": sa}})
        for role_name in (ROLE_NAME, role["metadata"]["name"]):
            binding = f"{namespace}-{sa}-{role_name}"
            rbac.create_cluster_role_binding(
                {
                    "metadata": {"name": binding},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": role_name,
                    },
                    "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
                }
            )
            bindings.append(binding)
        users.append(f"system:serviceaccount:{namespace}:{sa}")
    yield users
    for binding in bindings:
        rbac.delete_cluster_role_binding(binding)
    rbac.delete_cluster_role(role["metadata"]["name"])
    ext = client.ApiextensionsV1Api(cluster.api.api_client)
    for crd in crds:
        ext.delete_custom_resource_definition(crd["metadata"]["name"])


def replica(
    localplane: LocalPlane,
    cluster: Cluster,
    namespace: str,
    sa: str,
    tmp_path: Path,
    metrics_port: int | None = None,
) -> OperatorProcess:
    token = cluster.core.create_namespaced_service_account_token(
        sa, namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    kubeconfig = yaml.safe_load(localplane.admin_kubeconfig.read_text())
    kubeconfig["users"][0]["user"] = {"token": token}
    path = tmp_path / f"{sa}.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    return OperatorProcess(
        path,
        tmp_path / f"{sa}.log",
        env={
            "POD_ID": sa,
            "NLPMODEL_PEERING_LIFETIME_SECONDS": str(LIFETIME_S),
            "NLPMODEL_METRICS_PORT": str(metrics_port or 0),
        },
        args=[f"--peering={PEERING}"],
    )


def start_in_order(cluster: Cluster, *replicas: OperatorProcess) -> None:
    """Start the replicas one after the other, each once the one before has joined the peering (the
    first started has the highest priority)."""
    for proc in replicas:
        proc.start()
        name = proc.extra_env["POD_ID"]
        wait_for(f"{name} joined", lambda name=name: name in peers(cluster), 60)


def model(namespace: str, hostnames: list[str], max_model_len: int = 8192) -> dict[str, Any]:
    return chat_model(
        namespace,
        max_model_len,
        serving={"hostnames": hostnames},  # a routing field: no new revision
        rollout={"strategy": "direct"},
    )


def route_hostnames(cluster: Cluster, namespace: str) -> list[str]:
    try:
        route = cluster.api.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "httproutes", "chat"
        )
    except ApiException as exc:
        if exc.status == 404:
            return []  # not routed yet
        raise
    return list(route["spec"].get("hostnames") or [])


def peers(cluster: Cluster) -> dict[str, Any]:
    try:
        found = cluster.api.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", PEERING)
    except ApiException as exc:
        if exc.status == 404:
            return {}
        raise
    status: dict[str, Any] = found.get("status") or {}
    return status


def writes(localplane: LocalPlane, users: list[str], namespace: str) -> list[tuple[datetime, str, str]]:
    """(when, who, what) of every write either replica made in the test's namespace (its own peering
    keep-alives are not writes to the world)."""
    out = []
    for event in localplane.audit_events():
        user = event.get("user", {}).get("username")
        ref = event.get("objectRef") or {}
        if user in users and ref.get("namespace") == namespace and event.get("stage") == "ResponseComplete":
            when = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
            what = (
                f"{event['verb']} {ref.get('resource')}/{ref.get('subresource') or ''}{ref.get('name', '')}"
            )
            out.append((when, user, what))
    return sorted(out)


def test_two_replicas_one_acts_the_other_takes_over_never_both(
    localplane: LocalPlane, cluster: Cluster, namespace: str, peering_rbac: list[str], tmp_path: Path
) -> None:
    user_a, user_b = peering_rbac
    a = replica(localplane, cluster, namespace, "replica-a", tmp_path)
    b = replica(localplane, cluster, namespace, "replica-b", tmp_path)
    admin = localplane.admin_client()
    try:
        with StandInControllers(admin, namespace):
            start_in_order(cluster, a, b)
            # Both run; a (older, higher priority) acts: the model is served, then routed by a new hostname.
            v1 = model(namespace, [])
            cluster.apply_model(v1)
            wait_for(
                "served",
                lambda: (cluster.model(namespace, "chat").get("status") or {}).get("phase") == "Ready",
                60,
            )
            cluster.apply_model(model(namespace, ["chat.example.com"]))
            wait_for(
                "the new hostname routed",
                lambda: route_hostnames(cluster, namespace) == ["chat.example.com"],
                60,
            )
            time.sleep(3)  # several resync periods of both replicas
            before_kill = writes(localplane, [user_a, user_b], namespace)
            a.kill()
            killed_at = datetime.now().astimezone()
            # The other takes over once a's peering entry expires: a new revision is rolled out.
            v2 = model(namespace, ["chat.example.com"], max_model_len=4096)
            cluster.apply_model(v2)
            wait_for(
                "the new revision served by the survivor",
                lambda: (
                    (cluster.model(namespace, "chat").get("status") or {}).get("stableRevision")
                    == revision_hash(NLPModelSpec.model_validate(v2["spec"]))
                    and (cluster.model(namespace, "chat").get("status") or {}).get("phase") == "Ready"
                ),
                60 + LIFETIME_S,
            )
            takeover = datetime.now().astimezone()
            after = writes(localplane, [user_a, user_b], namespace)
    finally:
        for proc in (a, b):
            proc.stop()
        admin.close()
    assert not [pid for pid in a.pids + b.pids if pid_alive(pid)]
    # Exactly one acted while both ran: every write was a's.
    assert before_kill, "replica a wrote nothing"
    assert {who for _, who, _ in before_kill} == {user_a}
    # Never two writers: a's writes all come before b's first; b wrote only after a was killed.
    order = [who for _, who, _ in after]
    first_b = order.index(user_b)
    assert set(order[:first_b]) == {user_a}
    assert set(order[first_b:]) == {user_b}
    assert after[first_b][0] >= killed_at.replace(microsecond=0)
    print(
        f"\nwrites: a {order.count(user_a)}, b {order.count(user_b)}; "
        f"takeover {(after[first_b][0] - killed_at).total_seconds():.1f}s after the kill "
        f"(peering lifetime {LIFETIME_S}s), served {(takeover - killed_at).total_seconds():.1f}s after it"
    )
    for proc in (a, b):
        log = proc.log_path.read_text(errors="replace")
        assert "forbidden: User" not in log
        assert "Traceback" not in log


def exports_model_gauges(port: int) -> bool:
    """Whether the replica serving /metrics on ``port`` exports the model's phase."""
    return any(
        name == "nlpmodel_phase" and ("model", "chat") in labels for name, labels in operator_metrics(port)
    )


def test_a_replica_that_loses_the_lead_stops_exporting_the_models_gauges(
    localplane: LocalPlane, cluster: Cluster, namespace: str, peering_rbac: list[str], tmp_path: Path
) -> None:
    """A partition: the leader stops answering (SIGSTOP) long enough for the other to take over, then
    comes back and leads again (older, higher priority). The replica that stopped acting must not
    keep exporting the model's gauges beside the leader's: stale, they would hold alerts up."""
    port_a, port_b = free_ports(2)
    a = replica(localplane, cluster, namespace, "replica-a", tmp_path, port_a)
    b = replica(localplane, cluster, namespace, "replica-b", tmp_path, port_b)
    admin = localplane.admin_client()
    try:
        with StandInControllers(admin, namespace):
            start_in_order(cluster, a, b)
            cluster.apply_model(model(namespace, ["a.example.com"]))
            wait_for("a routes", lambda: route_hostnames(cluster, namespace) == ["a.example.com"], 60)
            wait_for("a exports the model's gauges", lambda: exports_model_gauges(port_a), 60)
            assert not exports_model_gauges(port_b)
            assert a.proc is not None
            os.killpg(a.proc.pid, signal.SIGSTOP)
            try:
                cluster.apply_model(model(namespace, ["b.example.com"]))
                wait_for(
                    "b acts",
                    lambda: route_hostnames(cluster, namespace) == ["b.example.com"],
                    60 + LIFETIME_S,
                )
                wait_for("b exports the model's gauges", lambda: exports_model_gauges(port_b), 30)
            finally:
                os.killpg(a.proc.pid, signal.SIGCONT)
            wait_for("b no longer exports them", lambda: not exports_model_gauges(port_b), 60)
            cluster.apply_model(model(namespace, ["a2.example.com"]))
            wait_for("a acts again", lambda: route_hostnames(cluster, namespace) == ["a2.example.com"], 60)
            assert exports_model_gauges(port_a)
            assert not exports_model_gauges(port_b)
    finally:
        for proc in (a, b):
            proc.stop()
        admin.close()
    assert not [pid for pid in a.pids + b.pids if pid_alive(pid)]
