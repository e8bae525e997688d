"""Stand-ins for the controllers a local control plane lacks: KServe and the kubelet.

They write exactly what the real component would write (status through the status subresource), so
the operator under test sees the world it would see in a real cluster.
"""

from __future__ import annotations

from datetime import UTC, datetime

from kubernetes import client


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_inference_service_ready(admin: client.ApiClient, namespace: str, name: str, ready: bool) -> None:
    """What the KServe controller writes once the predictor is (or stops being) available."""
    status = "True" if ready else "False"
    condition = {
        "type": "Ready",
        "status": status,
        "reason": "StandIn",
        "message": f"stand-in KServe set Ready={status}",
        "lastTransitionTime": _now(),
    }
    client.CustomObjectsApi(admin).patch_namespaced_custom_object_status(
        "serving.kserve.io",
        "v1beta1",
        namespace,
        "inferenceservices",
        name,
        {"status": {"conditions": [condition]}},
    )


def run_pods(admin: client.ApiClient, namespace: str, label_selector: str) -> int:
    """What kubelets do: report the selected pods Running and Ready. Returns how many pods there are."""
    core = client.CoreV1Api(admin)
    pods = core.list_namespaced_pod(namespace, label_selector=label_selector).items
    now = _now()
    for pod in pods:
        if pod.status.phase == "Running":
            continue
        conditions = [
            {"type": t, "status": "True", "lastTransitionTime": now}
            for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ]
        core.patch_namespaced_pod_status(
            pod.metadata.name,
            namespace,
            {"status": {"phase": "Running", "conditions": conditions, "startTime": now}},
        )
    return len(pods)
