"""The operator's own metrics count what a reconcile changed in status."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from nlpmodel_harness.childproc import free_ports
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
    assert value(r, "nlpmodel_rollouts_total", outcome="Promoted") == 0
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


def test_a_replica_that_stops_acting_drops_every_models_gauges_and_keeps_its_counters() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.observe("ml", "chat", BEFORE, AFTER)
    metrics.forget_all()
    r = metrics.registry
    assert value(r, "nlpmodel_phase", phase="RolledBack") is None
    assert value(r, "nlpmodel_canary_weight_percent") is None
    assert value(r, "nlpmodel_rollbacks_total", reason="AnalysisFailed") == 1
    metrics.observe("ml", "chat", AFTER, AFTER)  # acting again: exported again
    assert value(r, "nlpmodel_phase", phase="RolledBack") == 1


def test_counters_start_at_zero_so_the_first_rollback_is_an_increase() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.observe("ml", "chat", {}, {"phase": "Pending"})
    r = metrics.registry
    assert value(r, "nlpmodel_rollbacks_total", reason="AnalysisFailed") == 0
    assert value(r, "nlpmodel_rollouts_total", outcome="RolledBack") == 0
    assert value(r, "nlpmodel_analysis_checks_total", verdict="error") == 0


def test_revision_info_follows_stable_and_canary() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    r = metrics.registry
    metrics.observe("ml", "chat", {}, {"stableRevision": "aaaa1111", "canaryRevision": "bbbb2222"})
    assert value(r, "nlpmodel_revision_info", revision="aaaa1111", role="stable") == 1
    assert value(r, "nlpmodel_revision_info", revision="bbbb2222", role="canary") == 1
    metrics.observe("ml", "chat", {}, {"stableRevision": "bbbb2222"})  # promoted
    assert value(r, "nlpmodel_revision_info", revision="bbbb2222", role="stable") == 1
    assert value(r, "nlpmodel_revision_info", revision="bbbb2222", role="canary") is None
    assert value(r, "nlpmodel_revision_info", revision="aaaa1111", role="stable") is None
    metrics.forget("ml", "chat")
    assert value(r, "nlpmodel_revision_info", revision="bbbb2222", role="stable") is None


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_revision_cost_gauges_follow_status_cost() -> None:
    """One series per revision and measure status reports; unknown (absent) ones have none, and a
    revision's series go with it."""
    metrics = OperatorMetrics(CollectorRegistry())
    both = {
        "stableRevision": "a",
        "canaryRevision": "b",
        "cost": {
            "currency": "USD",
            "revisions": [
                {
                    "revision": "a",
                    "tokensPerSecond": 900.0,
                    "costPerMillionTokens": 1.11,
                    "costPerRequest": 0.0005,
                },
                {"revision": "b", "tokensPerSecond": 100.0, "promptTokensPerRequest": 400.0},
            ],
        },
    }
    metrics.observe("ml", "chat", {}, both)
    r = metrics.registry
    assert value(r, "nlpmodel_revision_cost_per_million_tokens", revision="a") == 1.11
    assert value(r, "nlpmodel_revision_tokens_per_second", revision="b") == 100.0
    assert value(r, "nlpmodel_revision_prompt_tokens_per_request", revision="b") == 400.0
    assert value(r, "nlpmodel_revision_cost_per_million_tokens", revision="b") is None  # unknown: no series
    promoted = {"stableRevision": "b", "cost": {"revisions": [both["cost"]["revisions"][1]]}}
    metrics.observe("ml", "chat", both, promoted)
    assert value(r, "nlpmodel_revision_cost_per_million_tokens", revision="a") is None
    assert value(r, "nlpmodel_revision_tokens_per_second", revision="a") is None
    assert value(r, "nlpmodel_revision_tokens_per_second", revision="b") == 100.0
    metrics.forget("ml", "chat")
    assert value(r, "nlpmodel_revision_tokens_per_second", revision="b") is None


@pytest.mark.parametrize(("healthy", "expected"), [(True, 200), (False, 503)])
def test_one_port_serves_metrics_and_healthz(healthy: bool, expected: int) -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.observe("ml", "chat", {}, {"phase": "Ready"})
    (port,) = free_ports(1)

    async def scenario() -> tuple[tuple[int, str], tuple[int, str]]:
        runner = await metrics.serve(port, healthy=lambda: healthy)
        try:
            base = f"http://127.0.0.1:{port}"
            return (
                await asyncio.to_thread(_get, f"{base}/healthz"),
                await asyncio.to_thread(_get, f"{base}/metrics"),
            )
        finally:
            await runner.cleanup()

    (health_code, _), (metrics_code, text) = asyncio.run(scenario())
    assert health_code == expected
    assert metrics_code == 200
    assert 'nlpmodel_phase{model="chat",namespace="ml",phase="Ready"} 1.0' in text


def test_an_evaluation_verdict_counts_once_with_its_scores() -> None:
    pending = {"evaluation": {"verdict": "pending", "requestedAt": "t0"}}
    failed = {
        "evaluation": {
            "verdict": "fail",
            "requestedAt": "t0",
            "at": "t1",
            "canaryScore": 0.8,
            "stableScore": 0.9,
        }
    }
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.observe("ml", "chat", {}, pending)
    metrics.observe("ml", "chat", pending, failed)
    metrics.observe("ml", "chat", failed, failed)  # the same verdict, read again: not counted again
    r = metrics.registry
    assert value(r, "nlpmodel_evaluations_total", verdict="fail") == 1
    assert value(r, "nlpmodel_evaluations_total", verdict="pass") == 0
    assert value(r, "nlpmodel_evaluation_score", role="canary") == 0.8
    assert value(r, "nlpmodel_evaluation_score", role="stable") == 0.9
    metrics.forget("ml", "chat")
    assert value(r, "nlpmodel_evaluation_score", role="canary") is None
