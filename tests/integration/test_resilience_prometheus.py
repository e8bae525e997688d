"""Prometheus faults during SLO analysis (a real Prometheus scraping model-server stand-ins): down for
one interval, down for three, hanging past the query timeout, answering with no data for the canary,
and down for longer than `inconclusiveDeadline`. Missing evidence is never a verdict: 0 false
promotions (a step advances only on a passed check), 0 false rollbacks (no failed check for a
healthy canary), and past the deadline the canary is aborted as AnalysisUnavailable."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from timeline import Timeline

from harness import (
    Cluster,
    OperatorProcess,
    chat_model,
    revision,
    run_operator,
    status,
    wait_for,
    with_prometheus,
)
from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_harness.prometheus import PrometheusProcess
from nlpmodel_harness.revision_servers import HEALTHY, RevisionServers
from nlpmodel_harness.standins import StandInControllers

INTERVAL_S = 3.0
QUERY_TIMEOUT_S = 1.0  # per attempt; a hanging query is given up after 3 attempts


@pytest.fixture(scope="module")
def operator(
    localplane: LocalPlane,
    cluster: Cluster,
    prometheus: PrometheusProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    yield from run_operator(
        localplane,
        tmp_path_factory,
        env=with_prometheus(prometheus.url, NLPMODEL_PROMETHEUS_TIMEOUT_SECONDS=str(QUERY_TIMEOUT_S)),
    )


def model(namespace: str, max_model_len: int, weights: list[int], deadline: str) -> dict[str, Any]:
    return chat_model(
        namespace,
        max_model_len,
        rollout={
            # Pauses shorter than an interval: only the analysis holds a step.
            "steps": [{"weight": w, "pause": "1s"} for w in weights],
            "progressDeadline": "120s",
            "analysis": {
                "interval": f"{INTERVAL_S:g}s",
                "minRequests": 40,
                "failureThreshold": 2,
                "inconclusiveDeadline": deadline,
            },
            "slo": {"ttftP95": "3s", "errorRate": "2%", "maxRegression": "20%"},
        },
    )


@pytest.fixture
def world(
    localplane: LocalPlane,
    operator: OperatorProcess,
    prometheus: PrometheusProcess,
    namespace: str,
    tmp_path: Path,
) -> Iterator[tuple[RevisionServers, Timeline]]:
    admin = localplane.admin_client()
    try:
        with (
            StandInControllers(admin, namespace),
            RevisionServers(admin, prometheus, namespace, "chat", tmp_path) as servers,
            Timeline(localplane.etcd_url, namespace) as timeline,
        ):
            yield servers, timeline
    finally:
        prometheus.resume()
        if not prometheus.running():
            prometheus.start()
        admin.close()


def checks_seen(timeline: Timeline, canary: str) -> dict[str, dict[str, Any]]:
    """Every check recorded for the canary over the whole history (by time)."""
    seen: dict[str, dict[str, Any]] = {}
    for _, st in timeline.statuses():
        if st.get("canaryRevision") == canary or st.get("failedRevision") == canary:
            for check in (st.get("analysis") or {}).get("lastChecks") or []:
                seen[check["at"]] = check
    return seen


def advances_without_a_pass(timeline: Timeline, canary: str) -> list[str]:
    """Step advances (and promotion) written in a status whose latest check is not a pass."""
    found, step = [], None
    for e, st in timeline.statuses():
        now = st.get("currentStep") if st.get("canaryRevision") == canary else None
        if now is not None and step is not None and now > step:
            last = ((st.get("analysis") or {}).get("lastChecks") or [{}])[-1]
            if last.get("verdict") != "pass":
                found.append(f"rv {e.rv}: step {step} → {now} after a check {last}")
        step = now if now is not None else step
    return found


def test_short_prometheus_faults_neither_promote_nor_roll_back(
    cluster: Cluster, namespace: str, prometheus: PrometheusProcess, world: tuple[RevisionServers, Timeline]
) -> None:
    servers, timeline = world
    v1 = model(namespace, 8192, [10, 20, 30, 40, 50], "30s")
    v2 = model(namespace, 4096, [10, 20, 30, 40, 50], "30s")
    canary = revision(v2)
    servers.hidden.add(canary)  # Prometheus is not told about it: no series at all
    cluster.apply_model(v1)
    wait_for("stable Ready", lambda: status(cluster, namespace).get("phase") == "Ready", 90)
    cluster.apply_model(v2)

    def at_step(step: int) -> None:
        wait_for(
            f"step {step} started",
            lambda: (
                status(cluster, namespace).get("currentStep") == step
                and status(cluster, namespace).get("stepStartedAt")
            ),
            90,
        )

    def held(step: int, fault_s: float) -> None:
        """The fault lasts `fault_s`; meanwhile the canary stays at its step."""
        until = time.monotonic() + fault_s
        while time.monotonic() < until:
            st = status(cluster, namespace)
            assert st.get("canaryRevision") == canary
            assert st.get("currentStep") == step, f"advanced during a fault: {st.get('analysis')}"
            time.sleep(0.2)

    at_step(0)  # the canary has never been scraped: every query comes back empty
    held(0, 3 * INTERVAL_S)
    servers.hidden.discard(canary)

    at_step(1)
    prometheus.stop()  # down for one interval
    held(1, INTERVAL_S)
    prometheus.start()

    at_step(2)
    prometheus.stop()  # down for three intervals
    held(2, 3 * INTERVAL_S)
    prometheus.start()

    at_step(3)
    prometheus.pause()  # hangs: every query runs into its timeout (3 attempts)
    held(3, 2 * 3 * QUERY_TIMEOUT_S + INTERVAL_S)
    prometheus.resume()

    wait_for(
        "promoted once the evidence is back",
        lambda: (
            status(cluster, namespace).get("stableRevision") == canary
            and status(cluster, namespace).get("phase") == "Ready"
        ),
        90,
    )
    timeline.wait_quiet()
    checks = checks_seen(timeline, canary)
    verdicts = [x["verdict"] for x in checks.values()]
    summaries = " | ".join(x["summary"] for x in checks.values() if x["verdict"] == "error")
    print(f"\nchecks of the healthy canary: {', '.join(verdicts)}")
    assert "fail" not in verdicts  # 0 false rollbacks: missing data never failed it
    assert advances_without_a_pass(timeline, canary) == []  # 0 false promotions
    assert timeline.violations([10, 20, 30, 40, 50]) == [], timeline.describe()
    # Each fault was seen for what it is, an error (not a verdict).
    assert "Cannot connect" in summaries or "refused" in summaries
    assert "did not answer within" in summaries
    assert "no metrics" in summaries
    assert status(cluster, namespace)["history"][-1]["outcome"] == "Promoted"


def test_prometheus_down_past_the_deadline_aborts_a_slow_canary_as_unavailable(
    cluster: Cluster, namespace: str, prometheus: PrometheusProcess, world: tuple[RevisionServers, Timeline]
) -> None:
    servers, timeline = world
    v1, v2 = model(namespace, 8192, [10, 50], "10s"), model(namespace, 4096, [10, 50], "10s")
    canary = revision(v2)
    servers.profiles[canary] = {"ttft_median": HEALTHY["ttft_median"] * 1.6}  # a bad canary
    cluster.apply_model(v1)
    wait_for("stable Ready", lambda: status(cluster, namespace).get("phase") == "Ready", 90)
    cluster.apply_model(v2)
    wait_for("canary at 10 %", lambda: status(cluster, namespace).get("canaryWeight") == 10, 90)
    prometheus.stop()
    try:
        wait_for("aborted", lambda: status(cluster, namespace).get("phase") == "RolledBack", 90)
    finally:
        prometheus.start()
    st = status(cluster, namespace)
    rolled_back = next(x for x in st["conditions"] if x["type"] == "RolledBack")
    assert rolled_back["reason"] == "AnalysisUnavailable"  # not AnalysisFailed: no data, no verdict
    assert st["history"][-1]["outcome"] == "Aborted"
    assert st["stableRevision"] == revision(v1)  # never promoted
    timeline.wait_quiet()
    assert "pass" not in [x["verdict"] for x in checks_seen(timeline, canary).values()]
    assert advances_without_a_pass(timeline, canary) == []
    assert timeline.violations([10, 50]) == [], timeline.describe()
