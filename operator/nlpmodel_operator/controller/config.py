"""Operator configuration from the environment (the Helm chart sets these)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class OperatorConfig:
    # How often models are re-read for what time moves on (pauses, analysis intervals, deadlines);
    # models at rest only every `settled_resync_seconds` (children's changes come as events).
    resync_seconds: float = 15.0
    settled_resync_seconds: float = 600.0
    field_manager: str = "nlpmodel-operator"
    prometheus_url: str | None = None
    prometheus_timeout_seconds: float = 5.0  # per query attempt (2 retries: a query ends within 3×)
    namespaces: tuple[str, ...] = ()  # empty: the whole cluster
    scrape_interval_seconds: float = 15.0  # how often Prometheus scrapes the model servers
    metrics_port: int = 8080  # the operator's own /metrics (0: not served)
    # A PodMonitor per model where the cluster serves the kind; off for platforms scraping otherwise.
    pod_monitors: bool = True

    @classmethod
    def from_env(cls) -> OperatorConfig:
        return cls(
            resync_seconds=float(os.environ.get("NLPMODEL_RESYNC_SECONDS", cls.resync_seconds)),
            settled_resync_seconds=float(
                os.environ.get("NLPMODEL_SETTLED_RESYNC_SECONDS", cls.settled_resync_seconds)
            ),
            prometheus_url=os.environ.get("NLPMODEL_PROMETHEUS_URL") or None,
            prometheus_timeout_seconds=float(
                os.environ.get("NLPMODEL_PROMETHEUS_TIMEOUT_SECONDS", cls.prometheus_timeout_seconds)
            ),
            namespaces=tuple(n for n in os.environ.get("NLPMODEL_WATCH_NAMESPACES", "").split(",") if n),
            metrics_port=int(os.environ.get("NLPMODEL_METRICS_PORT", cls.metrics_port)),
            pod_monitors=os.environ.get("NLPMODEL_POD_MONITORS", "true").lower() not in {"false", "0", "no"},
            scrape_interval_seconds=float(
                os.environ.get("NLPMODEL_SCRAPE_INTERVAL_SECONDS", cls.scrape_interval_seconds)
            ),
        )
