"""The operator's own metrics count what a reconcile changed in status."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from nlpmodel_operator.controller.metrics import OperatorMetrics

BEFORE: dict[str, Any] = {
    "phase": "Progressing",
    "canaryWeight": 10,
    "history": [{"revision": "a", "outcome": "Promoted", "reason": "", "at": "t0"}],
    "analysis": {"lastCheckAt": "t1", "lastChecks": [{"verdict": "fail", "at": "t1", "summary": ""}]},
}
AFTER: dict[str, Any] = {
    "phase": "RolledBack",
    "history": [*BEFORE["history"], {"revision": "b", "outcome": "RolledBack", "reason": "ttft", "at": "t2"}],
    "analysis": {"lastCheckAt": "t2", "lastChecks": [{"verdict": "fail", "at": "t2", "summary": ""}]},
    "conditions": [{"type": "RolledBack", "status": "True", "reason": "AnalysisFailed"}],
}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"namespace": "ml", "model": "chat", **labels})


def test_a_rollback_counts_once() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.observe("ml", "chat", BEFORE, AFTER)
    metrics.observe("ml", "chat", AFTER, AFTER)  # the next reconcile changes nothing: counts nothing
    r = metrics.registry
    assert value(r, "nlpmodel_rollouts_total", outcome="RolledBack") == 1
    assert value(r, "nlpmodel_rollouts_total", outcome="Promoted") is None
    assert value(r, "nlpmodel_rollbacks_total", reason="AnalysisFailed") == 1
    assert value(r, "nlpmodel_analysis_checks_total", verdict="fail") == 1
    assert value(r, "nlpmodel_canary_weight_percent") == 0
    assert value(r, "nlpmodel_phase", phase="RolledBack") == 1
    assert value(r, "nlpmodel_phase", phase="Progressing") == 0


def test_bounded_history_still_counts_only_new_entries() -> None:
    full = [{"revision": str(i), "outcome": "Promoted", "reason": "", "at": str(i)} for i in range(10)]
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.observe(
        "ml", "chat", {"history": full}, {"history": [*full[1:], {**full[0], "revision": "x", "at": "x"}]}
    )
    assert value(metrics.registry, "nlpmodel_rollouts_total", outcome="Promoted") == 1


def test_forget_drops_the_gauges_of_a_deleted_model() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.observe("ml", "chat", {}, {"phase": "Ready"})
    metrics.forget("ml", "chat")
    assert value(metrics.registry, "nlpmodel_phase", phase="Ready") is None
