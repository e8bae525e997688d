"""The metrics side of a model's pods, for tests, the demo and benchmarks (no kubelet runs here).

For every revision the operator runs (its InferenceServices and Deployments, read from the API server),
a model-server stand-in plays the revision's pods; Prometheus scrapes it exactly as the operator's
PodMonitor for the model says (selector and relabeling applied by `ScrapeTarget.from_pod_monitor`), so
an operator that rendered no PodMonitor, or a wrong one, gets no metrics. A revision whose workload is
gone loses its server::

    with RevisionServers(admin, prometheus, "team-a", "chat", log_dir) as servers:
        servers.profiles[canary_revision] = {"ttft_median": 0.54}   # before it appears, or
        servers.control(canary_revision, ttft_median=0.54)          # live, once it runs
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Final

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from nlpmodel_operator.api import constants as c
from nlpmodel_operator.core import monitoring

from nlpmodel_harness.modelserver import ModelServerProcess
from nlpmodel_harness.prometheus import PrometheusError, PrometheusProcess, ScrapeTarget

__all__ = ["HEALTHY", "RevisionServers", "revision_pods"]

# A healthy latency profile (seconds) and enough synthetic traffic for a check every few seconds.
HEALTHY: Final[Mapping[str, float]] = MappingProxyType(
    {"ttft_median": 0.3, "ttft_sigma": 0.4, "synthetic_rps": 40.0}
)
_MONITOR_GROUP, _MONITOR_VERSION = monitoring.API_VERSION.split("/")


def revision_pods(workloads: list[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """revision → the labels its pods carry: KServe copies an InferenceService's predictor labels and
    an LLMInferenceService's `labels` onto them (a stopped one has no pods), a Deployment its
    template's."""
    pods: dict[str, dict[str, str]] = {}
    for obj in workloads:
        spec = obj.get("spec") or {}
        if obj.get("kind") == "LLMInferenceService":
            annotations = (obj.get("metadata") or {}).get("annotations") or {}
            labels = {} if annotations.get("serving.kserve.io/stop") == "true" else spec.get("labels") or {}
        elif obj.get("kind") == "InferenceService":
            labels = (spec.get("predictor") or {}).get("labels") or {}
        else:
            labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        revision = labels.get(c.LABEL_REVISION)
        if revision:
            pods[revision] = dict(labels)
    return pods


class RevisionServers:
    def __init__(
        self,
        admin: client.ApiClient,
        prometheus: PrometheusProcess,
        namespace: str,
        model: str,
        log_dir: Path,
        *,
        served_name: str | None = None,
        base: Mapping[str, float] = HEALTHY,
        poll_s: float = 0.5,
    ) -> None:
        self.custom = client.CustomObjectsApi(admin)
        self.apps = client.AppsV1Api(admin)
        self.prometheus, self.namespace, self.model, self.log_dir = prometheus, namespace, model, log_dir
        self.served_name = served_name or model
        self.base = dict(base)
        self.profiles: dict[str, dict[str, float]] = {}  # revision → params over `base`, set before it runs
        self.hidden: set[str] = set()  # revisions Prometheus is not told about (their series go stale)
        self.servers: dict[str, ModelServerProcess] = {}
        self.pids: list[int] = []  # every server started (for leak checks)
        self._scraped: list[ScrapeTarget] | None = None
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"revision-servers-{model}", daemon=True)

    def __enter__(self) -> RevisionServers:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        with self._lock:
            for server in self.servers.values():
                server.stop()
            self.servers.clear()
        self.prometheus.set_targets([])

    def control(self, revision: str, **params: float) -> None:
        """Change a running revision's distributions now (e.g. the canary turns slow)."""
        with self._lock:
            self.profiles[revision] = {**self.profiles.get(revision, {}), **params}
            self.servers[revision].control(**params)

    def running(self) -> dict[str, ModelServerProcess]:
        """revision → the stand-in that plays its pods now."""
        with self._lock:
            return dict(self.servers)

    def scraped(self) -> list[ScrapeTarget]:
        """The targets Prometheus was last configured with."""
        return list(self._scraped or [])

    # -- the loop ----------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.sync()
            except ApiException:
                pass  # the API server restarting, or the namespace going away: next round
            except PrometheusError:
                pass  # a slow reload (busy machine, or Prometheus paused by a test): next round

    def _workloads(self) -> Iterator[dict[str, Any]]:
        selector = f"{c.LABEL_MODEL}={self.model}"
        isvcs = self.custom.list_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", self.namespace, "inferenceservices", label_selector=selector
        )
        for item in isvcs["items"]:
            yield {**item, "kind": "InferenceService"}
        try:
            llmisvcs = self.custom.list_namespaced_custom_object(
                "serving.kserve.io",
                "v1alpha2",
                self.namespace,
                "llminferenceservices",
                label_selector=selector,
            )
        except ApiException as exc:
            if exc.status != 404:  # a plane without the LLMInferenceService CRD
                raise
            llmisvcs = {"items": []}
        for item in llmisvcs["items"]:
            yield {**item, "kind": "LLMInferenceService"}
        for deployment in self.apps.list_namespaced_deployment(self.namespace, label_selector=selector).items:
            yield {"kind": "Deployment", **self.apps.api_client.sanitize_for_serialization(deployment)}

    def _pod_monitor(self) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                _MONITOR_GROUP, _MONITOR_VERSION, self.namespace, "podmonitors", self.model
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def sync(self) -> None:
        """One round: servers for the revisions that run, none for those gone, Prometheus told."""
        pods = revision_pods(list(self._workloads()))
        monitor = self._pod_monitor()
        with self._lock:
            for revision in sorted(set(self.servers) - set(pods)):
                self.servers.pop(revision).stop()
            for revision in sorted(set(pods) - set(self.servers)):
                params = {**self.base, **self.profiles.get(revision, {})}
                server = ModelServerProcess(
                    None,
                    tie_to_parent=True,
                    model_name=self.served_name,
                    seed=len(self.pids),
                    log_path=self.log_dir / f"server-{revision}.log",
                    **params,
                )
                server.start()
                self.pids.append(server.pid)
                self.servers[revision] = server
            targets = [
                target
                for revision, server in sorted(self.servers.items())
                if monitor is not None
                and revision not in self.hidden
                and (
                    target := ScrapeTarget.from_pod_monitor(
                        monitor, server.address, self.namespace, pods[revision]
                    )
                )
                is not None
            ]
        if targets != self._scraped:
            self.prometheus.set_targets(targets)
            self._scraped = targets
