"""Stand-ins for the controllers a local control plane lacks: KServe (InferenceService and, see
`llmisvc_standin`, LLMInferenceService) and the kubelet.

They write exactly what the real component would write (status through the status subresource), so
the operator under test sees the world it would see in a real cluster.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from nlpmodel_operator.api.constants import LABEL_REVISION
from nlpmodel_operator.api.units import format_time
from urllib3.exceptions import HTTPError

from nlpmodel_harness import llmisvc_standin


def _now() -> str:
    return format_time(datetime.now(UTC))


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
    api = client.CustomObjectsApi(admin)
    isvc = api.get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", namespace, "inferenceservices", name
    )
    # KServe reports the generation it has acted on; a canary is only up once that is the latest.
    observed = isvc["metadata"].get("generation")
    api.patch_namespaced_custom_object_status(
        "serving.kserve.io",
        "v1beta1",
        namespace,
        "inferenceservices",
        name,
        {"status": {"conditions": [condition], "observedGeneration": observed}},
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


def play_llm_inference_services(admin: client.ApiClient, namespace: str, broken: set[str]) -> None:
    """One round of KServe's LLMInferenceService controller over a namespace (see `llmisvc_standin`)."""
    api = client.CustomObjectsApi(admin)
    s = llmisvc_standin
    items = api.list_namespaced_custom_object(s.GROUP, s.VERSION, namespace, s.PLURAL)["items"]
    for obj in items:
        revision = (obj["metadata"].get("labels") or {}).get(LABEL_REVISION, "")
        current = obj.get("status") or {}
        wanted = s.desired_status(obj, items, broken, revision)
        if s.needs_write(wanted, current):
            body = {"status": s.with_times(wanted, current, _now())}
            api.patch_namespaced_custom_object_status(
                s.GROUP, s.VERSION, namespace, s.PLURAL, obj["metadata"]["name"], body
            )


class StandInControllers:
    """KServe and the kubelet, played continuously in one namespace from a background thread.

    Every InferenceService, LLMInferenceService and pod of the namespace becomes Ready shortly after
    it appears (an LLMInferenceService annotated stop: stopped, as KServe reports it), except
    those of the revisions in `broken` (a canary that never comes up).
    """

    def __init__(self, admin: client.ApiClient, namespace: str, every_s: float = 0.3) -> None:
        self.admin, self.namespace, self.every_s = admin, namespace, every_s
        self.broken: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"standins-{namespace}", daemon=True)

    def __enter__(self) -> StandInControllers:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        custom = client.CustomObjectsApi(self.admin)
        while not self._stop.wait(self.every_s):
            try:
                items = custom.list_namespaced_custom_object(
                    "serving.kserve.io", "v1beta1", self.namespace, "inferenceservices"
                )["items"]
                for isvc in items:
                    revision = (isvc["metadata"].get("labels") or {}).get(LABEL_REVISION)
                    ready = revision not in self.broken
                    status = isvc.get("status") or {}
                    current = next(
                        (x["status"] for x in status.get("conditions") or [] if x["type"] == "Ready"), None
                    )
                    behind = status.get("observedGeneration") != isvc["metadata"].get("generation")
                    if behind or current != ("True" if ready else "False"):
                        set_inference_service_ready(
                            self.admin, self.namespace, isvc["metadata"]["name"], ready
                        )
                selector = ",".join(f"{LABEL_REVISION}!={r}" for r in sorted(self.broken))
                run_pods(self.admin, self.namespace, selector)
            except (ApiException, HTTPError):
                continue  # a namespace being deleted, an object gone, the API server restarting: next round
            try:
                play_llm_inference_services(self.admin, self.namespace, self.broken)
            except (ApiException, HTTPError):
                continue  # as above, or a plane without the LLMInferenceService CRD
