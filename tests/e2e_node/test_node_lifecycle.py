"""`nlpctl localplane up --node` runs real pods; `down` leaves nothing behind on the host.

Runs before test_real_pods.py (file order) with its own short-lived node: only one node fits a machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from kubernetes import client
from nodecluster import wait_for

from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_harness.node import IP_FORWARD, NodePaths, leftovers

NLPCTL = Path(sys.executable).with_name("nlpctl")
# A pod that serves HTTP from the base image's python (the pause image alone would serve nothing).
WEB_POD = {
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "web",
                "image": "nlpmodel-operator:0.1.0",
                "command": ["python", "-m", "http.server", "8000"],
                "ports": [{"containerPort": 8000, "name": "http"}],
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
            }
        ],
    },
}


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except OSError:
        return None


def _nlpctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(NLPCTL), "localplane", *args], capture_output=True, text=True, check=False)


def test_a_node_runs_pods_behind_a_service_and_down_removes_every_trace(tmp_path: Path) -> None:
    state = tmp_path / "plane"
    ip_forward_before = IP_FORWARD.read_text().strip()
    up = _nlpctl("up", "--node", "--no-upstream-crds", "--state-dir", str(state))
    try:
        assert up.returncode == 0, up.stderr
        plane = LocalPlane.attach(state)
        assert {"kube-scheduler", "containerd", "kubelet", "kube-proxy"} <= set(plane.pids)
        status = _nlpctl("status", "--state-dir", str(state))
        assert status.returncode == 0, status.stdout
        assert "localplane-node" in status.stdout

        from nlpmodel_harness import images  # noqa: PLC0415 - the image only this test needs

        plane.import_image(images.operator_image())
        admin = plane.admin_client()
        core = client.CoreV1Api(admin)
        core.create_namespaced_pod("default", WEB_POD)
        core.create_namespaced_service(
            "default",
            {
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
            },
        )

        def ready_ip() -> str | None:
            pod = json.loads(core.read_namespaced_pod("web", "default", _preload_content=False).data)
            conditions = pod["status"].get("conditions") or []
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            return str(pod["status"]["podIP"]) if ready else None

        pod_ip = wait_for("the web pod is Ready", ready_ip, 120)
        cluster_ip = core.read_namespaced_service("web", "default").spec.cluster_ip
        # The pod answers on its own IP (CNI bridge) and through the Service's ClusterIP once kube-proxy
        # has its endpoints (a moment after the pod is Ready).
        for url in (f"http://{pod_ip}:8000/", f"http://{cluster_ip}/"):
            assert wait_for(f"{url} answers", lambda u=url: _get(u), 60) == 200
        admin.close()
        paths = plane.node_paths
        assert paths is not None
        assert leftovers(paths), "a running node shows mounts, chains, cgroups: the check sees them"
    finally:
        down = _nlpctl("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert leftovers(NodePaths(state / "node"), ip_forward=ip_forward_before) == []


def test_a_node_refuses_binaries_without_kubelet(tmp_path: Path) -> None:
    """envtest's bundle has no kubelet or kube-proxy: `up --node` says so and starts nothing."""
    bins = tmp_path / "envtest-like"
    bins.mkdir()
    for name in ("kube-apiserver", "kube-controller-manager", "etcd"):
        (bins / name).write_text("#!/bin/sh\necho v1.34.1\n")
        (bins / name).chmod(0o755)
    done = subprocess.run(
        [str(NLPCTL), "localplane", "up", "--node", "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        check=False,
        env={"NLPMODEL_LOCALPLANE_BIN_DIR": str(bins), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert done.returncode == 1
    assert "kubelet" in done.stderr
    assert "Debian source build" in done.stderr
