"""SLO analysis end to end: the operator judges canaries on metrics a real Prometheus scrapes from
vLLM-compatible model-server stand-ins (one per revision, labelled as the PodMonitor labels them)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import (
    Cluster,
    OperatorProcess,
    chat_model,
    operator_metrics,
    revision,
    run_operator,
    status,
    wait_for,
    with_prometheus,
)
from nlpmodel_harness.childproc import free_ports
from nlpmodel_harness.localplane import LocalPlane, pid_alive
from nlpmodel_harness.prometheus import PrometheusProcess
from nlpmodel_harness.revision_servers import HEALTHY, RevisionServers
from nlpmodel_harness.standins import StandInControllers

METRICS_PORT = free_ports(1)[0]


@pytest.fixture(scope="module")
def operator(
    localplane: LocalPlane,
    cluster: Cluster,
    prometheus: PrometheusProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    env = with_prometheus(prometheus.url, NLPMODEL_METRICS_PORT=str(METRICS_PORT))
    yield from run_operator(localplane, tmp_path_factory, env)


def model(namespace: str, max_model_len: int = 8192, **analysis: Any) -> dict[str, Any]:
    return chat_model(
        namespace,
        max_model_len,
        rollout={
            "steps": [{"weight": 10, "pause": "3s"}, {"weight": 50, "pause": "3s"}],
            "analysis": {
                "interval": "4s",
                "minRequests": 40,
                "failureThreshold": 2,
                "inconclusiveDeadline": "40s",
                **analysis,
            },
            "slo": {"ttftP95": "3s", "errorRate": "2%", "maxRegression": "20%"},
        },
    )


@pytest.fixture
def world(
    cluster: Cluster,
    operator: OperatorProcess,
    prometheus: PrometheusProcess,
    namespace: str,
    localplane: LocalPlane,
    tmp_path: Path,
) -> Iterator[RevisionServers]:
    admin = localplane.admin_client()
    with (
        StandInControllers(admin, namespace),
        RevisionServers(admin, prometheus, namespace, "chat", tmp_path) as servers,
    ):
        yield servers
    admin.close()
    assert not [pid for pid in servers.pids if pid_alive(pid)]


def start_stable(cluster: Cluster, namespace: str) -> dict[str, Any]:
    v1 = model(namespace)
    cluster.apply_model(v1)
    wait_for("stable Ready", lambda: status(cluster, namespace).get("phase") == "Ready", 90)
    return v1


def test_a_healthy_canary_is_promoted_through_all_steps_on_passed_checks(
    cluster: Cluster, namespace: str, world: RevisionServers
) -> None:
    start_stable(cluster, namespace)
    v2 = model(namespace, max_model_len=4096)
    cluster.apply_model(v2)
    wait_for(
        "promoted",
        lambda: (
            status(cluster, namespace).get("stableRevision") == revision(v2)
            and status(cluster, namespace).get("phase") == "Ready"
        ),
        150,
    )
    st = status(cluster, namespace)
    assert st["history"][-1]["outcome"] == "Promoted"
    assert "failedRevision" not in st
    # The metrics came through the operator's PodMonitor: Prometheus scrapes what it selects, labelled
    # as it relabels (the stand-in prometheus-operator found no target without it); the old stable's
    # pods went with its workload.
    wait_for(
        "only the new stable scraped",
        lambda: {dict(t.labels)["nlpmodel_revision"] for t in world.scraped()} == {revision(v2)},
        10,
    )


def test_a_slow_canary_is_rolled_back_with_the_values(
    cluster: Cluster, namespace: str, world: RevisionServers
) -> None:
    start_stable(cluster, namespace)
    v2 = model(namespace, max_model_len=4096)
    world.profiles[revision(v2)] = {"ttft_median": HEALTHY["ttft_median"] * 1.5}  # +50 % time to first token
    cluster.apply_model(v2)
    wait_for("rolled back", lambda: status(cluster, namespace).get("phase") == "RolledBack", 150)
    st = status(cluster, namespace)
    rolled_back = next(x for x in st["conditions"] if x["type"] == "RolledBack")
    assert rolled_back["reason"] == "AnalysisFailed"
    # The failing SLO with the canary's and the stable's values, e.g.
    # "ttft 55% slower than stable over 2 checks (> 20% allowed, always-valid p=0.011; p95 0.83s vs
    # 0.63s, mean 0.48s vs 0.31s, n=304/398)".
    assert re.search(
        r"ttft .*stable.*p95 \d+\.\d+s vs \d+\.\d+s, mean \d+\.\d+s vs \d+\.\d+s, n=\d+/\d+",
        rolled_back["message"],
    )
    assert st["failedRevision"] == revision(v2)
    assert st["stableRevision"] != revision(v2)
    # The sequential judge rolls back at its first rejection, within three conclusive checks (checks
    # before the canary's first scrapes are errors: no data, neither pass nor fail; a check before the
    # evidence is clear passes).
    verdicts = [c["verdict"] for c in st["analysis"]["lastChecks"]]
    conclusive = [v for v in verdicts if v in {"pass", "fail"}]
    assert conclusive[-1] == "fail"
    assert conclusive.count("fail") == 1
    assert len(conclusive) <= 3
    assert "always-valid p" in rolled_back["message"]
    # The operator's own metrics count what happened. A scrape races the operator's write of status
    # (the operator counts right after the API server answered), so the scrape is retried until the
    # rollback shows; then every figure must agree with it.
    who = (("model", "chat"), ("namespace", namespace))
    rolled_back_total = ("nlpmodel_rollouts_total", (*who, ("outcome", "RolledBack")))
    wait_for("rollback counted", lambda: operator_metrics(METRICS_PORT).get(rolled_back_total, 0) >= 1, 10)
    seen = operator_metrics(METRICS_PORT)
    assert seen[rolled_back_total] == 1
    assert seen[("nlpmodel_rollbacks_total", (*who, ("reason", "AnalysisFailed")))] == 1
    assert seen[("nlpmodel_analysis_checks_total", (*who, ("verdict", "fail")))] == 1
    assert seen[("nlpmodel_phase", (*who, ("phase", "RolledBack")))] == 1
    assert seen[("nlpmodel_canary_weight_percent", who)] == 0


def test_missing_metrics_never_promote_and_abort_at_the_deadline(
    cluster: Cluster, namespace: str, world: RevisionServers, prometheus: PrometheusProcess
) -> None:
    start_stable(cluster, namespace)
    v2 = model(namespace, max_model_len=4096, inconclusiveDeadline="15s")
    world.profiles[revision(v2)] = {"synthetic_rps": 0.0}  # a canary that gets no traffic
    cluster.apply_model(v2)
    wait_for("aborted", lambda: status(cluster, namespace).get("phase") == "RolledBack", 120)
    st = status(cluster, namespace)
    rolled_back = next(x for x in st["conditions"] if x["type"] == "RolledBack")
    assert rolled_back["reason"] == "AnalysisUnavailable"
    assert st["history"][-1]["outcome"] == "Aborted"
    assert st["stableRevision"] != revision(v2)  # never promoted


def test_a_canary_with_errors_is_rolled_back(
    cluster: Cluster, namespace: str, world: RevisionServers
) -> None:
    start_stable(cluster, namespace)
    v2 = model(namespace, max_model_len=4096)
    world.profiles[revision(v2)] = {"error_rate": 0.05}  # 5 % of requests finish with an error
    cluster.apply_model(v2)
    wait_for("rolled back", lambda: status(cluster, namespace).get("phase") == "RolledBack", 150)
    rolled_back = next(x for x in status(cluster, namespace)["conditions"] if x["type"] == "RolledBack")
    assert rolled_back["reason"] == "AnalysisFailed"
    assert "error rate" in rolled_back["message"]


def test_prometheus_stopped_mid_analysis_neither_promotes_nor_rolls_back_before_the_deadline(
    cluster: Cluster, namespace: str, world: RevisionServers, prometheus: PrometheusProcess
) -> None:
    start_stable(cluster, namespace)
    v2 = model(namespace, max_model_len=4096, inconclusiveDeadline="30s")
    cluster.apply_model(v2)
    wait_for("canary at 10 %", lambda: status(cluster, namespace).get("canaryWeight") == 10, 90)
    prometheus.pause()  # SIGSTOP: queries hang until the provider's deadline
    try:
        seen: list[tuple[Any, Any]] = []

        def aborted() -> bool:
            st = status(cluster, namespace)
            seen.append((st.get("phase"), st.get("currentStep")))
            return st.get("phase") == "RolledBack"

        wait_for("AnalysisUnavailable", aborted, 150)
    finally:
        prometheus.resume()
    st = status(cluster, namespace)
    rolled_back = next(x for x in st["conditions"] if x["type"] == "RolledBack")
    assert rolled_back["reason"] == "AnalysisUnavailable"
    assert st["stableRevision"] != revision(v2)  # no false promotion
    # Until the abort the canary stayed where it was: no step advanced on missing evidence.
    assert {phase for phase, _ in seen[:-1]} <= {"Progressing"}
    assert {step for _, step in seen[:-1]} <= {0, 1}
    last_checks = st.get("analysis", {}).get("lastChecks") or []
    assert all(c["verdict"] != "fail" for c in last_checks)


REQUEST_RATE = (
    "sum(rate(vllm:request_success_total{"
    'namespace="{{ namespace }}",nlpmodel_model="{{ model }}",nlpmodel_revision="{{ revision }}"'
    "}[{{ interval }}]))"
)


def test_a_custom_check_fails_a_canary_that_meets_its_slos(
    cluster: Cluster, namespace: str, world: RevisionServers
) -> None:
    start_stable(cluster, namespace)
    # A team's own signal: here the request rate, bounded far below what the stand-ins serve (40/s).
    custom = [{"name": "request-rate", "query": REQUEST_RATE, "thresholdRange": {"max": 5}}]
    v2 = model(namespace, max_model_len=4096, metrics=custom)
    cluster.apply_model(v2)
    wait_for("rolled back", lambda: status(cluster, namespace).get("phase") == "RolledBack", 150)
    rolled_back = next(x for x in status(cluster, namespace)["conditions"] if x["type"] == "RolledBack")
    assert rolled_back["reason"] == "AnalysisFailed"
    # The values come from the real series of both revisions: "request-rate 40.1 > max 5 (stable 39.8)".
    assert re.search(r"request-rate \d+(\.\d+)? > max 5 \(stable \d+(\.\d+)?\)", rolled_back["message"])
