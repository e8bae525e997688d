"""Stand-ins for the controllers a local control plane lacks: KServe (InferenceService and, see
`llmisvc_standin`, LLMInferenceService), the kubelet and a Gateway implementation of the Gateway API
Inference Extension.

They write exactly what the real component would write (status through the status subresource), so
the operator under test sees the world it would see in a real cluster.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from nlpmodel_operator.api.constants import LABEL_REVISION
from nlpmodel_operator.api.units import format_time
from urllib3.exceptions import HTTPError

from nlpmodel_harness import llmisvc_standin


def _now() -> str:
    return format_time(datetime.now(UTC))


def set_inference_service_ready(
    admin: client.ApiClient, namespace: str, name: str, ready: bool, generation: int | None = None
) -> None:
    """What the KServe controller writes once the predictor is (or stops being) available. `generation`:
    the one it has acted on, where the caller knows it (from a watch event, as KServe's controller knows
    it from its informer cache); else read from the API server."""
    status = "True" if ready else "False"
    condition = {
        "type": "Ready",
        "status": status,
        "reason": "StandIn",
        "message": f"stand-in KServe set Ready={status}",
        "lastTransitionTime": _now(),
    }
    api = client.CustomObjectsApi(admin)
    if generation is None:
        isvc = api.get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", namespace, "inferenceservices", name
        )
        generation = isvc["metadata"].get("generation")
    # KServe reports the generation it has acted on; a canary is only up once that is the latest.
    api.patch_namespaced_custom_object_status(
        "serving.kserve.io",
        "v1beta1",
        namespace,
        "inferenceservices",
        name,
        {"status": {"conditions": [condition], "observedGeneration": generation}},
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


POOL_GROUP, POOL_VERSION, POOL_PLURAL = "inference.networking.k8s.io", "v1", "inferencepools"
GATEWAY_GROUP = "gateway.networking.k8s.io"
STAND_IN_GATEWAY_CONTROLLER = "nlpmodel.dev/stand-in-gateway"


def _pool_condition(type_: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, object]:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": _now(),
    }


def gateway_pool_parents(
    routes: list[dict[str, Any]],
    pool: dict[str, Any],
    services: set[str],
    rejected: bool = False,
) -> list[dict[str, Any]]:
    """What a conformant Gateway implementation writes on an InferencePool (`status.parents`): one entry
    per Gateway that an HTTPRoute referencing the pool is attached to, with Accepted (the Gateway
    routes to the pool; `NotSupportedByParent` when it will not) and ResolvedRefs (its endpoint picker's
    Service exists; `InvalidExtensionRef` otherwise). A pool no attached route references has none."""
    name, namespace = pool["metadata"]["name"], pool["metadata"]["namespace"]
    generation = pool["metadata"].get("generation", 1)
    gateways: dict[tuple[str, str], None] = {}
    for route in routes:
        refs = [b for rule in route["spec"].get("rules") or [] for b in rule.get("backendRefs") or []]
        if not any(b.get("kind") == "InferencePool" and b.get("name") == name for b in refs):
            continue
        for parent in route["spec"].get("parentRefs") or []:
            if (parent.get("group") or GATEWAY_GROUP, parent.get("kind") or "Gateway") == (
                GATEWAY_GROUP,
                "Gateway",
            ):
                gateways[(parent.get("namespace") or namespace, parent["name"])] = None
    picker = pool["spec"].get("endpointPickerRef")
    resolved = picker is None or picker["name"] in services
    parents: list[dict[str, Any]] = []
    for gateway_namespace, gateway in gateways:
        accepted = _pool_condition(
            "Accepted",
            not rejected,
            "NotSupportedByParent" if rejected else "Accepted",
            "stand-in Gateway rejects the pool" if rejected else "stand-in Gateway routes to the pool",
            generation,
        )
        resolved_refs = _pool_condition(
            "ResolvedRefs",
            resolved,
            "ResolvedRefs" if resolved else "InvalidExtensionRef",
            "all references resolved"
            if resolved
            else f"endpoint picker Service {picker and picker['name']} not found",
            generation,
        )
        parents.append(
            {
                "parentRef": {
                    "group": GATEWAY_GROUP,
                    "kind": "Gateway",
                    "name": gateway,
                    "namespace": gateway_namespace,
                },
                "controllerName": STAND_IN_GATEWAY_CONTROLLER,
                "conditions": [accepted, resolved_refs],
            }
        )
    return parents


def _same_parents(have: list[dict[str, Any]], want: list[dict[str, Any]]) -> bool:
    """Equal but for the transition times (rewritten only when something else changed)."""

    def key(parents: list[dict[str, Any]]) -> list[Any]:
        return [
            (
                p["parentRef"],
                [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in p["conditions"]],
            )
            for p in parents
        ]

    return key(have) == key(want)


def play_gateway(admin: client.ApiClient, namespace: str, rejected: Collection[str] = ()) -> None:
    """One round of a Gateway implementation: write every InferencePool's `status.parents` from the
    HTTPRoutes that reference it. `rejected`: revisions whose pool the Gateway does not accept."""
    custom = client.CustomObjectsApi(admin)
    routes = custom.list_namespaced_custom_object(GATEWAY_GROUP, "v1", namespace, "httproutes")["items"]
    pools = custom.list_namespaced_custom_object(POOL_GROUP, POOL_VERSION, namespace, POOL_PLURAL)["items"]
    if not pools:
        return
    services = {svc.metadata.name for svc in client.CoreV1Api(admin).list_namespaced_service(namespace).items}
    for pool in pools:
        revision = (pool["metadata"].get("labels") or {}).get(LABEL_REVISION)
        want = gateway_pool_parents(routes, pool, services, rejected=revision in rejected)
        if _same_parents((pool.get("status") or {}).get("parents") or [], want):
            continue
        custom.patch_namespaced_custom_object_status(
            POOL_GROUP,
            POOL_VERSION,
            namespace,
            POOL_PLURAL,
            pool["metadata"]["name"],
            {"status": {"parents": want}},
        )


class StandInControllers:
    """KServe and the kubelet, played continuously in one namespace from a background thread.

    Every InferenceService, LLMInferenceService and pod of the namespace becomes Ready shortly after
    it appears (an LLMInferenceService annotated stop: stopped, as KServe reports it), except
    those of the revisions in `broken` (a canary that never comes up). With `gateway`, a Gateway
    implementation reports on every InferencePool an attached HTTPRoute references, rejecting those of
    the revisions in `rejected_pools`.
    """

    def __init__(
        self, admin: client.ApiClient, namespace: str, every_s: float = 0.3, gateway: bool = False
    ) -> None:
        self.admin, self.namespace, self.every_s, self.gateway = admin, namespace, every_s, gateway
        self.broken: set[str] = set()
        self.rejected_pools: set[str] = set()
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
                if self.gateway:
                    play_gateway(self.admin, self.namespace, set(self.rejected_pools))
            except (ApiException, HTTPError):
                continue  # a namespace being deleted, an object gone, the API server restarting: next round
            try:
                play_llm_inference_services(self.admin, self.namespace, self.broken)
            except (ApiException, HTTPError):
                continue  # as above, or a plane without the LLMInferenceService CRD


class ReadyOnSight:
    """KServe for many models: every InferenceService of a namespace is marked Ready as it appears, from
    a watch (listing hundreds every fraction of a second would keep the API server busy itself). Rides
    out an API server restart (the watch is opened again; those it missed are found by its listing; a
    failed mark is tried again).

    Like KServe's controller, it reads what it acts on (the generation) from its watch, not by a GET,
    and marks several at once (`workers`): one at a time, with a GET each, this stand-in was the slowest
    writer of the 1,000-model scale bench — the bench measured it, not the operator."""

    def __init__(self, admin: client.ApiClient, namespace: str, workers: int = 4) -> None:
        self.admin, self.namespace = admin, namespace
        self.marked: set[str] = set()
        self._queued: set[str] = set()  # seen, not marked yet (marked or queued: not queued again)
        self._lock = threading.Lock()
        self._todo: queue.Queue[tuple[str, int | None]] = queue.Queue()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, name=f"ready-on-sight-{namespace}", daemon=True),
            *(
                threading.Thread(target=self._mark, name=f"ready-on-sight-{namespace}-{k}", daemon=True)
                for k in range(workers)
            ),
        ]

    def __enter__(self) -> ReadyOnSight:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=35)

    def _loop(self) -> None:
        api = client.CustomObjectsApi(self.admin)
        while not self._stop.is_set():
            try:
                stream = watch.Watch().stream(
                    api.list_namespaced_custom_object,
                    "serving.kserve.io",
                    "v1beta1",
                    self.namespace,
                    "inferenceservices",
                    timeout_seconds=30,
                )
                for event in stream:
                    meta = event["object"]["metadata"]
                    name = meta["name"]
                    if event["type"] == "ADDED":
                        with self._lock:
                            new = name not in self.marked and name not in self._queued
                            if new:
                                self._queued.add(name)
                        if new:
                            self._todo.put((name, meta.get("generation")))
                    if self._stop.is_set():
                        return
            except (ApiException, HTTPError, OSError):
                self._stop.wait(0.5)  # the API server restarting: watch again

    def _mark(self) -> None:
        while not self._stop.is_set():
            try:
                name, generation = self._todo.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                set_inference_service_ready(self.admin, self.namespace, name, True, generation)
            except ApiException as exc:
                if exc.status == 404:  # gone meanwhile: nothing to mark
                    with self._lock:
                        self._queued.discard(name)
                    continue
                self._stop.wait(0.5)  # the API server restarting, throttling: again
                self._todo.put((name, generation))
                continue
            except (HTTPError, OSError):
                self._stop.wait(0.5)
                self._todo.put((name, generation))
                continue
            with self._lock:
                self._queued.discard(name)
                self.marked.add(name)
