"""The operator SIGKILLed at every phase of a canary with SLO analysis (real Prometheus, model-server
stand-ins found through the PodMonitor), over and over: a healthy canary is promoted and a slow one is
rolled back exactly as without the kills.

Every version of the route, the InferenceServices and the model's status is recorded (`Timeline`) and
checked afterwards: no unplanned traffic change, no weight to a revision that is not Ready, no
deletion before traffic left, no duplicate or re-created child, no lost rollout state. The time each
restarted operator takes to write again is printed (not asserted: speed belongs in bench/)."""

from __future__ import annotations

import random
import statistics
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
from nlpmodel_operator.api import constants as c

PLAN = [10, 50]
MIN_KILLS = 20


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
        env=with_prometheus(prometheus.url),
    )


def model(namespace: str, max_model_len: int, router: str = "gateway-api") -> dict[str, Any]:
    # inference-pool: the stand-in Gateway reports on the pools of the route attached to it.
    gateway = {"gateway": {"name": "inference-gateway"}} if router == "inference-pool" else {}
    return chat_model(
        namespace,
        max_model_len,
        serving={"router": router, **gateway},
        scaling={"minReplicas": 2, "maxReplicas": 2},  # the canary grows 1 → 2 when promoted
        rollout={
            "steps": [{"weight": w, "pause": "6s"} for w in PLAN],
            "progressDeadline": "90s",
            "analysis": {
                "interval": "3s",
                "minRequests": 40,
                "failureThreshold": 2,
                "inconclusiveDeadline": "90s",
            },
            "slo": {"ttftP95": "3s", "errorRate": "2%", "maxRegression": "20%"},
        },
    )


def phase_of(st: dict[str, Any]) -> tuple[Any, ...]:
    """What distinguishes one phase of a rollout with analysis from the next."""
    analysis = st.get("analysis") or {}
    return (
        st.get("phase"),
        st.get("canaryRevision"),
        st.get("currentStep"),
        st.get("canaryWeight"),
        min(int(analysis.get("passedChecks") or 0), 1),
        int(analysis.get("failedChecks") or 0),
        evidence_checks(st),
    )


def evidence_checks(st: dict[str, Any]) -> int:
    """Checks folded into the sequential judge's evidence (the most of any objective)."""
    return max((int(e["checks"]) for e in (st.get("analysis") or {}).get("evidence") or []), default=0)


class Killer:
    """Kills the operator at each new phase it sees, and in between so that no phase goes unhit."""

    def __init__(self, operator: OperatorProcess, cluster: Cluster, namespace: str) -> None:
        self.operator, self.cluster, self.namespace = operator, cluster, namespace
        self.kills: list[tuple[Any, ...]] = []
        self.resume_s: list[float] = []
        self.rng = random.Random(8)

    def restart(self, at: tuple[Any, ...]) -> None:
        self.operator.kill()
        self.kills.append(at)
        before = self.cluster.model(self.namespace, "chat")["metadata"]["resourceVersion"]
        time.sleep(self.rng.uniform(0.0, 1.0))  # the world goes on without it for a moment
        started = time.monotonic()
        self.operator.start()
        # Resumed: the new process wrote the model's status (every reconcile of a running canary does:
        # its progress message counts down). At rest nothing is written: no time is taken.
        deadline = started + (20 if at[1] is not None else 2)
        while time.monotonic() < deadline:
            if self.cluster.model(self.namespace, "chat")["metadata"]["resourceVersion"] != before:
                self.resume_s.append(time.monotonic() - started)
                break
            time.sleep(0.05)

    def drive(self, done: Any, timeout_s: float, every_s: float = 0.5) -> dict[str, Any]:
        """Kill at each new phase and every `every_s` until `done(status)`; returns the final status."""
        deadline = time.monotonic() + timeout_s
        last_phase: tuple[Any, ...] | None = None
        last_kill = time.monotonic()
        while time.monotonic() < deadline:
            st = status(self.cluster, self.namespace)
            if done(st):
                return st
            here = phase_of(st)
            if here != last_phase or time.monotonic() - last_kill > every_s:
                self.restart(here)
                last_phase, last_kill = here, time.monotonic()
            time.sleep(0.05)
        raise AssertionError(
            f"not done after {len(self.kills)} kills: {status(self.cluster, self.namespace)}"
        )


@pytest.mark.parametrize("router", ["gateway-api", "inference-pool"])
def test_sigkill_at_every_phase_of_canaries_with_analysis(
    router: str,
    cluster: Cluster,
    operator: OperatorProcess,
    prometheus: PrometheusProcess,
    namespace: str,
    localplane: LocalPlane,
    tmp_path: Path,
) -> None:
    admin = localplane.admin_client()
    v1, v2, v3 = (model(namespace, n, router) for n in (8192, 4096, 2048))
    with (
        StandInControllers(admin, namespace, gateway=True),
        RevisionServers(admin, prometheus, namespace, "chat", tmp_path) as servers,
        Timeline(localplane.etcd_url, namespace) as timeline,
    ):
        servers.profiles[revision(v3)] = {"ttft_median": HEALTHY["ttft_median"] * 1.6}  # a slow canary
        cluster.apply_model(v1)
        wait_for("stable Ready", lambda: status(cluster, namespace).get("phase") == "Ready", 90)
        killer = Killer(operator, cluster, namespace)

        cluster.apply_model(v2)
        promoted = killer.drive(
            lambda st: st.get("stableRevision") == revision(v2) and st.get("phase") == "Ready", 300
        )
        assert promoted["history"][-1]["outcome"] == "Promoted"
        killer.restart(phase_of(promoted))  # at rest after a promotion, too

        cluster.apply_model(v3)
        rolled_back = killer.drive(lambda st: st.get("phase") == "RolledBack", 300)
        killer.restart(phase_of(rolled_back))  # at rest after a rollback
        while len(killer.kills) < MIN_KILLS:  # more at rest, should the rollouts have been quick
            killer.restart(phase_of(rolled_back))
        timeline.wait_quiet(2)
        final = status(cluster, namespace)
        route = timeline.route_history()[-1]
        violations = timeline.violations(PLAN)
    admin.close()

    kills = killer.kills
    times = killer.resume_s
    print(
        f"\n{len(kills)} SIGKILLs; resume (restart → first write) "
        f"min {min(times):.1f}s median {statistics.median(times):.1f}s max {max(times):.1f}s "
        f"over {len(times)} restarts; phases hit: {sorted({k[:4] for k in kills}, key=str)}"
    )
    assert violations == []
    assert len(kills) >= MIN_KILLS
    # Every phase was hit: the canary before it was ready or at its first step, each step with and
    # without a passed check, with evidence accumulated over several checks, promoted and rolled back.
    # (Timeline.violations also holds every status write to: the evidence neither lost nor counted
    # twice across the restarts.)
    hit = {(k[1], k[2], k[3]) for k in kills}
    for canary in (revision(v2), revision(v3)):
        assert (canary, 0, 10) in hit or (canary, 0, 0) in hit
    assert (revision(v2), 1, 50) in hit
    assert any(k[1] == revision(v2) and k[6] >= 2 for k in kills)  # killed with evidence in status
    assert {k[0] for k in kills} >= {"Progressing", "Ready", "RolledBack"}
    # The outcomes are those without kills: v2 promoted, v3 rolled back on its latency, v2 serving alone.
    assert final["stableRevision"] == revision(v2)
    assert final["failedRevision"] == revision(v3)
    rolled = next(x for x in final["conditions"] if x["type"] == "RolledBack")
    assert rolled["reason"] == "AnalysisFailed"
    assert "slower than stable over" in rolled["message"]
    assert "always-valid p" in rolled["message"]
    # The evidence that decided stays in status, one count per check that was judged.
    evidence = {e["test"]: e["checks"] for e in final["analysis"]["evidence"]}
    checks = final["analysis"]["lastChecks"]
    conclusive = sum(c["verdict"] in ("pass", "fail") for c in checks)
    assert evidence["ttft p95 slo"] >= max(conclusive, 1)
    if len(checks) < 5:  # every check of this canary is listed: exactly one count per judged check
        assert evidence["ttft p95 slo"] == conclusive
    assert [h["outcome"] for h in final["history"]] == ["Promoted", "RolledBack"]
    assert route == {revision(v2): 100}
    splits = timeline.route_history()
    r1, r2, r3 = revision(v1), revision(v2), revision(v3)
    assert [{r1: 90, r2: 10}, {r1: 50, r2: 50}, {r2: 100}, {r2: 90, r3: 10}] == [
        s for s in splits if s in ({r1: 90, r2: 10}, {r1: 50, r2: 50}, {r2: 100}, {r2: 90, r3: 10})
    ][:4]
    assert {i["metadata"]["labels"][c.LABEL_REVISION] for i in cluster.inference_services(namespace)} == {
        revision(v2)
    }
    assert timeline.isvc_creations() == {revision(v1): 1, revision(v2): 1, revision(v3): 1}


def test_sigkill_at_every_phase_of_kserve_llm_canaries_with_analysis(
    cluster: Cluster,
    operator: OperatorProcess,
    prometheus: PrometheusProcess,
    namespace: str,
    localplane: LocalPlane,
    tmp_path: Path,
) -> None:
    """The same on platform kserve-llm: each revision's LLMInferenceService carries its weight, the old
    version is stopped at promotion and the slow canary at rollback, both deleted after a retention."""
    admin = localplane.admin_client()

    def llm(max_model_len: int) -> dict[str, Any]:
        body = model(namespace, max_model_len)
        body["spec"]["serving"] = {"platform": "kserve-llm"}
        body["spec"]["rollout"]["stoppedRetention"] = "2s"
        return body

    v1, v2, v3 = llm(8192), llm(4096), llm(2048)
    with (
        StandInControllers(admin, namespace),
        RevisionServers(admin, prometheus, namespace, "chat", tmp_path) as servers,
        Timeline(localplane.etcd_url, namespace) as timeline,
    ):
        servers.profiles[revision(v3)] = {"ttft_median": HEALTHY["ttft_median"] * 1.6}  # a slow canary
        cluster.apply_model(v1)
        wait_for("stable Ready", lambda: status(cluster, namespace).get("phase") == "Ready", 90)
        killer = Killer(operator, cluster, namespace)

        cluster.apply_model(v2)
        # The kills start once the canary is in the status: a restart is killed again after 2 s while
        # there is none, which an operator slow to start on a busy machine never gets past.
        wait_for("canary", lambda: status(cluster, namespace).get("canaryRevision") == revision(v2), 120)
        promoted = killer.drive(
            lambda st: st.get("stableRevision") == revision(v2) and st.get("phase") == "Ready", 300
        )
        assert promoted["history"][-1]["outcome"] == "Promoted"
        killer.restart(phase_of(promoted))

        cluster.apply_model(v3)
        wait_for("canary", lambda: status(cluster, namespace).get("canaryRevision") == revision(v3), 120)
        rolled_back = killer.drive(lambda st: st.get("phase") == "RolledBack", 300)
        killer.restart(phase_of(rolled_back))
        wait_for(
            "the stopped revisions deleted", lambda: "stoppedRevisions" not in status(cluster, namespace), 60
        )
        timeline.wait_quiet(2)
        final = status(cluster, namespace)
        splits = timeline.group_history()
        violations = timeline.group_violations(PLAN)
        creations = timeline.llm_creations()
    admin.close()

    print(f"\n{len(killer.kills)} SIGKILLs; group splits {splits}")
    assert violations == []
    r1, r2, r3 = revision(v1), revision(v2), revision(v3)
    assert final["stableRevision"] == r2
    assert final["failedRevision"] == r3
    rolled = next(x for x in final["conditions"] if x["type"] == "RolledBack")
    assert rolled["reason"] == "AnalysisFailed"
    assert [h["outcome"] for h in final["history"]] == ["Promoted", "RolledBack"]
    # The planned splits, in order (a split while a step's two writes land sits between two of them).
    planned = [{r1: 90, r2: 10}, {r2: 100}, {r2: 90, r3: 10}]
    assert [s for s in splits if s in planned][:3] == planned, splits
    assert splits[-1] == {r2: 100}
    assert creations == {r1: 1, r2: 1, r3: 1}
