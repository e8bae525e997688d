"""The operator's own metrics (prometheus-client), derived from what each reconcile changed in status.

Counting from status transitions rather than from code paths keeps them true to what users see: a
rollout outcome is counted when a history entry appears, a check when `analysis.lastCheckAt` moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from nlpmodel_operator.api.constants import Phase


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconcile_seconds = Histogram(
            "nlpmodel_reconcile_duration_seconds",
            "Time of one reconcile of one NLPModel.",
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.reconcile_errors = Counter(
            "nlpmodel_reconcile_errors_total",
            "Reconciles that failed (and were retried later).",
            ["reason"],
            registry=r,
        )
        self.rollouts = Counter(
            "nlpmodel_rollouts_total",
            "Finished rollouts by outcome.",
            ["namespace", "model", "outcome"],
            registry=r,
        )
        self.rollbacks = Counter(
            "nlpmodel_rollbacks_total",
            "Rollbacks and aborts by reason.",
            ["namespace", "model", "reason"],
            registry=r,
        )
        self.checks = Counter(
            "nlpmodel_analysis_checks_total",
            "Analysis checks by verdict.",
            ["namespace", "model", "verdict"],
            registry=r,
        )
        self.canary_weight = Gauge(
            "nlpmodel_canary_weight_percent",
            "Share of traffic the plan gives the canary.",
            ["namespace", "model"],
            registry=r,
        )
        self.phase = Gauge(
            "nlpmodel_phase",
            "1 for the model's current phase, 0 for the others.",
            ["namespace", "model", "phase"],
            registry=r,
        )

    def serve(self, port: int) -> None:
        """Expose /metrics on all interfaces of `port` (a daemon thread)."""
        start_http_server(port, registry=self.registry)

    def observe(self, namespace: str, model: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        """Count what changed between the status before and after one reconcile."""
        old_history = list(old.get("history") or [])
        new_history = list(new.get("history") or [])
        # History is bounded: the entries after the last one we had are the new ones.
        known = old_history[-1] if old_history else None
        fresh = new_history[new_history.index(known) + 1 :] if known in new_history else new_history
        for entry in fresh:
            self.rollouts.labels(namespace, model, entry["outcome"]).inc()
        rolled_back = next((c for c in new.get("conditions") or [] if c.get("type") == "RolledBack"), None)
        if (
            fresh
            and rolled_back is not None
            and rolled_back.get("status") == "True"
            and fresh[-1]["outcome"] != "Promoted"
        ):
            self.rollbacks.labels(namespace, model, rolled_back.get("reason", "")).inc()
        old_check = (old.get("analysis") or {}).get("lastCheckAt")
        analysis = new.get("analysis") or {}
        if (
            analysis.get("lastCheckAt")
            and analysis.get("lastCheckAt") != old_check
            and analysis.get("lastChecks")
        ):
            self.checks.labels(namespace, model, analysis["lastChecks"][-1]["verdict"]).inc()
        self.canary_weight.labels(namespace, model).set(new.get("canaryWeight") or 0)
        current = new.get("phase")
        for phase in Phase.ALL:
            self.phase.labels(namespace, model, phase).set(1 if phase == current else 0)

    def forget(self, namespace: str, model: str) -> None:
        """Drop the per-model gauges of a deleted model."""
        for gauge, extra in ((self.canary_weight, ()), *((self.phase, (p,)) for p in Phase.ALL)):
            try:
                gauge.remove(namespace, model, *extra)
            except KeyError:
                continue
