"""The model's PodMonitor (prometheus-operator): how Prometheus finds every revision's pods and labels
their series for the analysis queries (pure).

One PodMonitor per NLPModel selects the pods of all its revisions by the model label, and relabels
each target with the label contract of :mod:`nlpmodel_operator.core.analysis.queries`:
``nlpmodel_model`` and ``nlpmodel_revision`` from the pod labels, ``namespace`` as prometheus-operator
always sets it. A revision's pods keep their revision label for life, so stable and canary series never
mix, whatever the platform (KServe Standard or Knative pods, a raw Deployment).

The endpoint is chosen by ``portNumber`` (prometheus-operator >= 0.80), not by port name: Knative
renames the serving port of the user container, raw Deployments and KServe Standard do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.core.analysis.queries import TARGET_LABEL_MODEL, TARGET_LABEL_REVISION
from nlpmodel_operator.core.engines import SERVING_PORT
from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.routers.base import model_metadata

API_VERSION: Final = "monitoring.coreos.com/v1"
KIND: Final = "PodMonitor"
# It only carries what the operator wrote: not watched.
POD_MONITOR: Final = ChildKind(API_VERSION, KIND, "podmonitors", watched=False)
METRICS_PATH: Final = "/metrics"


@dataclass(frozen=True)
class Monitoring:
    """How Prometheus scrapes the model's pods (the operator's configuration)."""

    scrape_interval_s: float


def meta_label(pod_label: str) -> str:
    """The service-discovery meta label under which Prometheus exposes a pod label."""
    sanitized = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in pod_label)
    return f"__meta_kubernetes_pod_label_{sanitized}"


def _copy_label(pod_label: str, target_label: str) -> dict[str, Any]:
    return {"action": "replace", "sourceLabels": [meta_label(pod_label)], "targetLabel": target_label}


def render_pod_monitor(
    name: str,
    namespace: str,
    scrape_interval_s: float | None = None,
    port: int = SERVING_PORT,
    tls: bool = False,
) -> dict[str, Any]:
    """The PodMonitor of model `name`: every revision's pods, labelled by model and revision, scraped
    on the port the platform's pods serve on (`tls`: over HTTPS, as KServe's LLM template serves)."""
    endpoint: dict[str, Any] = {
        "portNumber": port,
        "path": METRICS_PATH,
        "relabelings": [
            _copy_label(c.LABEL_MODEL, TARGET_LABEL_MODEL),
            _copy_label(c.LABEL_REVISION, TARGET_LABEL_REVISION),
        ],
    }
    if scrape_interval_s is not None:
        endpoint["interval"] = f"{max(1, round(scrape_interval_s))}s"
    if tls:
        # The pods' certificate is their own (KServe's template mounts a self-signed one per workload):
        # Prometheus inside the cluster scrapes it without verifying, as KServe's own monitors do.
        endpoint["scheme"] = "https"
        endpoint["tlsConfig"] = {"insecureSkipVerify": True}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": model_metadata(name, namespace, component="monitoring"),
        "spec": {
            "selector": {
                "matchLabels": {c.LABEL_MODEL: name},
                # Only a revision's pods: the label the queries select a revision by must be there.
                "matchExpressions": [{"key": c.LABEL_REVISION, "operator": "Exists"}],
            },
            "podMetricsEndpoints": [endpoint],
        },
    }


def pod_monitors(
    name: str, namespace: str, monitoring: Monitoring | None, port: int = SERVING_PORT, tls: bool = False
) -> list[dict[str, Any]]:
    """The model's PodMonitor, where the operator renders one (None: the cluster serves no PodMonitor,
    or the operator is configured not to render one)."""
    if monitoring is None:
        return []
    return [render_pod_monitor(name, namespace, monitoring.scrape_interval_s, port, tls)]
