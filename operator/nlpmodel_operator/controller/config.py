"""Operator configuration: read from the environment (the Helm chart sets it) once, when the operator
starts (`controller.run`), and passed to the handlers from there."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from nlpmodel_operator.core.networkpolicy import DEFAULT_PROMETHEUS_NAMESPACE
from nlpmodel_operator.core.pricing import Prices, PricingError, parse_prices

PEERING_PRIORITY_ENV: Final = "NLPMODEL_PEERING_PRIORITY"
PEERING_LIFETIME_ENV: Final = "NLPMODEL_PEERING_LIFETIME_SECONDS"
# The chart's `pricing` values as JSON (core/pricing.py); unset or empty: nothing is priced.
PRICING_ENV: Final = "NLPMODEL_PRICING"


def prices_from_env(environ: Mapping[str, str] = os.environ) -> Prices:
    """The prices NLPMODEL_PRICING holds; PricingError naming the problem when it is unusable."""
    text = environ.get(PRICING_ENV, "").strip()
    if not text:
        return Prices()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PricingError(f"{PRICING_ENV} is not JSON: {exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise PricingError(f"{PRICING_ENV} must be a JSON object, not {type(raw).__name__}")
    return parse_prices(raw)


@dataclass(frozen=True)
class OperatorConfig:
    # How often models are re-read for what time moves on (pauses, analysis intervals, deadlines);
    # models at rest only every `settled_resync_seconds` (children's changes come as events).
    resync_seconds: float = 15.0
    settled_resync_seconds: float = 600.0
    # How many reconciles may wait on the API server at once (the threads the blocking client runs in,
    # and as many connections). Python's default, 4 + CPUs, left the operator waiting on its own threads
    # with 1,000 models created at once while the API server had CPU to spare (docs/reliability.md).
    reconcile_threads: int = 16
    field_manager: str = "nlpmodel-operator"
    prometheus_url: str | None = None
    prometheus_timeout_seconds: float = 5.0  # per query attempt (2 retries: a query ends within 3×)
    namespaces: tuple[str, ...] = ()  # empty: the whole cluster
    scrape_interval_seconds: float = 15.0  # how often Prometheus scrapes the model servers
    metrics_port: int = 8080  # the operator's own /metrics (0: not served)
    # A PodMonitor per model where the cluster serves the kind; off for platforms scraping otherwise.
    pod_monitors: bool = True
    # A NetworkPolicy per model for models that leave spec.serving.networkPolicy.enabled out; the
    # namespace of the Prometheus that scrapes the model servers, allowed through it ("": none).
    network_policies: bool = False
    network_policy_prometheus_namespace: str = DEFAULT_PROMETHEUS_NAMESPACE
    # The operator's own namespace (the chart passes it): models it evaluates let it through.
    operator_namespace: str = ""
    # Where the evaluation gate reaches a revision's Service ({service}, {namespace}): in the cluster its
    # DNS name; an operator run outside the cluster (development, the integration tests) is given another.
    evaluation_url_template: str = "http://{service}.{namespace}.svc.cluster.local"
    # With --peering: this replica's priority (None: by start time, see controller/peering.py), and how
    # soon a replica that died is taken over (None: kopf's default).
    peering_priority: int | None = None
    peering_lifetime_seconds: int | None = None
    # GPU-hour (and CPU-hour) prices the platform team configured; empty: no cost anywhere.
    prices: Prices = field(default_factory=Prices)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> OperatorConfig:
        """The configuration the environment gives (the watched namespaces come from the command line)."""
        priority = environ.get(PEERING_PRIORITY_ENV)
        lifetime = environ.get(PEERING_LIFETIME_ENV)
        return cls(
            resync_seconds=float(environ.get("NLPMODEL_RESYNC_SECONDS", cls.resync_seconds)),
            settled_resync_seconds=float(
                environ.get("NLPMODEL_SETTLED_RESYNC_SECONDS", cls.settled_resync_seconds)
            ),
            reconcile_threads=max(1, int(environ.get("NLPMODEL_RECONCILE_THREADS", cls.reconcile_threads))),
            prometheus_url=environ.get("NLPMODEL_PROMETHEUS_URL") or None,
            prometheus_timeout_seconds=float(
                environ.get("NLPMODEL_PROMETHEUS_TIMEOUT_SECONDS", cls.prometheus_timeout_seconds)
            ),
            metrics_port=int(environ.get("NLPMODEL_METRICS_PORT", cls.metrics_port)),
            pod_monitors=environ.get("NLPMODEL_POD_MONITORS", "true").lower() not in {"false", "0", "no"},
            network_policies=environ.get("NLPMODEL_NETWORK_POLICIES", "false").lower()
            in {"true", "1", "yes"},
            network_policy_prometheus_namespace=environ.get(
                "NLPMODEL_NETWORK_POLICY_PROMETHEUS_NAMESPACE", cls.network_policy_prometheus_namespace
            ),
            operator_namespace=environ.get("NLPMODEL_OPERATOR_NAMESPACE", ""),
            evaluation_url_template=environ.get(
                "NLPMODEL_EVALUATION_URL_TEMPLATE", cls.evaluation_url_template
            ),
            scrape_interval_seconds=float(
                environ.get("NLPMODEL_SCRAPE_INTERVAL_SECONDS", cls.scrape_interval_seconds)
            ),
            peering_priority=int(priority) if priority else None,
            peering_lifetime_seconds=int(lifetime) if lifetime else None,
            prices=prices_from_env(environ),
        )
