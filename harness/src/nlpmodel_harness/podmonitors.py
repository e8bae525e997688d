"""prometheus-operator's part for real pods: PodMonitors (and the chart's ServiceMonitor) → scrape config.

No prometheus-operator runs here. On a node with real pods, this loop reads the PodMonitors the operator
renders and the pods they select (their pod IPs, the PodMonitor's port), translates each with
:meth:`ScrapeTarget.from_pod_monitor` (selector and relabeling as prometheus-operator applies them), and
reloads the Prometheus when the set changes. The operator's own metrics are scraped as the chart's
ServiceMonitor says (its metrics Service's endpoints, job ``nlpmodel-operator``, ``honor_labels``)::

    with PodMonitorScraper(admin, prometheus, ["team-a"], operator_service=("nlpmodel-system", "nlpm")):
        ...
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from nlpmodel_operator.core import monitoring

from nlpmodel_harness.prometheus import PrometheusError, PrometheusProcess, ScrapeTarget

__all__ = ["OPERATOR_JOB", "PodMonitorScraper", "pod_targets"]

OPERATOR_JOB: Final = "nlpmodel-operator"  # the chart's ServiceMonitor relabels the job to this
_GROUP, _VERSION = monitoring.API_VERSION.split("/")


def _ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []
    return bool(status.get("podIP")) and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def _port(pod: Mapping[str, Any], endpoint: Mapping[str, Any]) -> int | None:
    if "portNumber" in endpoint:
        return int(endpoint["portNumber"])
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == endpoint.get("port"):
                return int(port["containerPort"])
    return None


def pod_targets(
    monitors: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> list[ScrapeTarget]:
    """The targets prometheus-operator would derive: every ready pod a monitor selects, at its pod IP."""
    targets = []
    pods = list(pods)
    for monitor in monitors:
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        for pod in pods:
            if not _ready(pod):
                continue
            port = _port(pod, endpoint)
            meta = pod["metadata"]
            target = ScrapeTarget.from_pod_monitor(
                monitor, f"{pod['status']['podIP']}:{port}", meta["namespace"], meta.get("labels") or {}
            )
            if target is not None and port is not None:
                targets.append(target)
    return sorted(targets, key=lambda t: t.address)


class PodMonitorScraper:
    def __init__(
        self,
        admin: client.ApiClient,
        prometheus: PrometheusProcess,
        namespaces: Sequence[str],
        *,
        operator_service: tuple[str, str] | None = None,
        operator_port: str = "metrics",
        poll_s: float = 1.0,
    ) -> None:
        self.core = client.CoreV1Api(admin)
        self.custom = client.CustomObjectsApi(admin)
        self.prometheus = prometheus
        self.namespaces = list(namespaces)
        self.operator_service = operator_service
        self.operator_port = operator_port
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="podmonitor-scraper", daemon=True)
        self._last: tuple[list[ScrapeTarget], list[dict[str, Any]]] | None = None
        self.error: BaseException | None = None

    def __enter__(self) -> PodMonitorScraper:
        self.sync()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.sync()
            except (ApiException, PrometheusError, OSError) as exc:  # the next round tries again
                self.error = exc

    def sync(self) -> None:
        """One round: read monitors, pods and the operator's endpoints; reload Prometheus on a change."""
        targets: list[ScrapeTarget] = []
        for namespace in self.namespaces:
            monitors = self.custom.list_namespaced_custom_object(_GROUP, _VERSION, namespace, "podmonitors")[
                "items"
            ]
            pods = self.core.list_namespaced_pod(namespace, _preload_content=False)
            targets += pod_targets(monitors, _json(pods)["items"])
        jobs = self._operator_jobs()
        if self._last == (targets, jobs):
            return
        self.prometheus.set_targets(targets, extra_scrape_configs=jobs, wait_s=30)
        self._last = (targets, jobs)

    def _operator_jobs(self) -> list[dict[str, Any]]:
        if self.operator_service is None:
            return []
        namespace, name = self.operator_service
        try:
            endpoints = _json(self.core.read_namespaced_endpoints(name, namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise
        addresses = []
        for subset in endpoints.get("subsets") or []:
            ports = [p["port"] for p in subset.get("ports") or [] if p.get("name") == self.operator_port]
            addresses += [f"{a['ip']}:{port}" for a in subset.get("addresses") or [] for port in ports]
        if not addresses:
            return []
        return [
            {
                "job_name": OPERATOR_JOB,
                "honor_labels": True,  # the chart's ServiceMonitor: the metrics' own `namespace` wins
                "metrics_path": "/metrics",
                "static_configs": [{"targets": sorted(addresses), "labels": {"namespace": namespace}}],
            }
        ]


def _json(response: Any) -> dict[str, Any]:
    import json  # noqa: PLC0415

    data: dict[str, Any] = json.loads(response.data)
    return data
