"""Canary rollouts on the real local control plane, for each router: weights follow the steps (read back
from the API server), promotion keeps the canary's objects, abort leaves the stable alone with all the
traffic, and an operator killed at every step boundary resumes where it was."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from harness import Cluster, OperatorProcess, chat_model, revision, wait_for
from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_harness.standins import StandInControllers
from nlpmodel_operator.api import constants as c

PAUSE = "4s"


@dataclass(frozen=True)
class Setup:
    router: str
    platform: str


SETUPS = [
    Setup("gateway-api", "kserve"),
    Setup("replica-ratio", "raw"),
    Setup("kserve-canary", "kserve"),
    Setup("replica-ratio", "kserve"),
    Setup("inference-pool", "raw"),
    Setup("inference-pool", "kserve"),
]
# KServe's LLMInferenceService: each revision's object carries its weight in the model's routing group.
KSERVE_LLM = Setup("gateway-api", "kserve-llm")
# Stopped revisions are deleted after this (spec.rollout.stoppedRetention).
RETENTION = "3s"
ROUTE_ROUTERS = ("gateway-api", "inference-pool")  # the split is the HTTPRoute's weights
# The Gateway the stand-in Gateway implementation plays: it reports on the pools its routes reference.
GATEWAY = {"name": "inference-gateway"}


def model(namespace: str, setup: Setup, max_model_len: int = 8192, **rollout: Any) -> dict[str, Any]:
    if setup.platform == "kserve-llm":
        rollout.setdefault("stoppedRetention", RETENTION)
    return chat_model(
        namespace,
        max_model_len,
        serving={
            "platform": setup.platform,
            "router": setup.router,
            **({"gateway": GATEWAY} if setup.router == "inference-pool" else {}),
        },
        scaling={"minReplicas": 2, "maxReplicas": 2},
        rollout={
            "steps": [{"weight": 10, "pause": PAUSE}, {"weight": 50, "pause": PAUSE}],
            "progressDeadline": "60s",
            **rollout,
        },
    )


@pytest.fixture
def standins(localplane: LocalPlane, namespace: str) -> Iterator[StandInControllers]:
    admin = localplane.admin_client()
    with StandInControllers(admin, namespace, gateway=True) as controllers:
        yield controllers
    admin.close()


class View:
    """What the API server holds for the model: workloads per revision, and the traffic split."""

    def __init__(self, cluster: Cluster, namespace: str, setup: Setup) -> None:
        self.cluster, self.namespace, self.setup = cluster, namespace, setup

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = self.cluster.model(self.namespace, "chat").get("status") or {}
        return st

    def llm_inference_services(self) -> list[dict[str, Any]]:
        listed = self.cluster.api.list_namespaced_custom_object(
            "serving.kserve.io", "v1alpha2", self.namespace, "llminferenceservices"
        )
        items: list[dict[str, Any]] = listed["items"]
        return items

    def stopped(self) -> set[str]:
        """Revisions whose LLMInferenceService is annotated serving.kserve.io/stop."""
        return {
            o["metadata"]["labels"][c.LABEL_REVISION]
            for o in self.llm_inference_services()
            if (o["metadata"].get("annotations") or {}).get("serving.kserve.io/stop") == "true"
        }

    def workloads(self) -> dict[str, tuple[str, int]]:
        """revision → (uid, replicas) of its InferenceService, LLMInferenceService or Deployment."""
        out: dict[str, tuple[str, int]] = {}
        if self.setup.platform == "kserve-llm":
            for obj in self.llm_inference_services():
                rev = obj["metadata"]["labels"][c.LABEL_REVISION]
                out[rev] = (obj["metadata"]["uid"], obj["spec"].get("replicas", 0))
        elif self.setup.platform == "kserve":
            for isvc in self.cluster.inference_services(self.namespace):
                rev = isvc["metadata"]["labels"][c.LABEL_REVISION]
                out[rev] = (isvc["metadata"]["uid"], isvc["spec"]["predictor"]["maxReplicas"])
        else:
            for d in self.cluster.apps.list_namespaced_deployment(self.namespace).items:
                out[d.metadata.labels[c.LABEL_REVISION]] = (d.metadata.uid, d.spec.replicas)
        return out

    def route_weights(self) -> list[tuple[str, int]]:
        route = self.cluster.api.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", self.namespace, "httproutes", "chat"
        )
        return [(ref["name"], ref.get("weight", 1)) for ref in route["spec"]["rules"][0]["backendRefs"]]

    def pools(self) -> dict[str, dict[str, Any]]:
        """revision → its InferencePool."""
        found = self.cluster.api.list_namespaced_custom_object(
            "inference.networking.k8s.io", "v1", self.namespace, "inferencepools"
        )["items"]
        return {p["metadata"]["labels"][c.LABEL_REVISION]: p for p in found}

    def canary_share(self, stable: str, canary: str) -> int:
        """The canary's share of traffic as the cluster's objects define it."""
        if self.setup.platform == "kserve-llm":
            # KServe weighs the group's members that are not stopped, proportionally.
            weights = {
                o["metadata"]["labels"][c.LABEL_REVISION]: o["spec"]["router"]["route"]["weight"]
                for o in self.llm_inference_services()
                if (o["metadata"].get("annotations") or {}).get("serving.kserve.io/stop") != "true"
            }
            total = sum(weights.get(r, 0) for r in (stable, canary))
            return round(100 * weights.get(canary, 0) / total) if total else 0
        if self.setup.router in ROUTE_ROUTERS:
            weights = dict(self.route_weights())
            return next((w for name, w in weights.items() if f"-{canary}" in name), 0)
        if self.setup.router == "kserve-canary":
            isvc = self.cluster.inference_services(self.namespace)[0]
            if isvc["metadata"]["labels"][c.LABEL_REVISION] != canary:
                return 0
            percent: int = isvc["spec"]["predictor"].get("canaryTrafficPercent", 100)
            return percent
        workloads = self.workloads()
        canary_n = workloads.get(canary, ("", 0))[1]
        stable_n = workloads.get(stable, ("", 0))[1]
        return round(100 * canary_n / (canary_n + stable_n)) if canary_n + stable_n else 0

    def set_command(self, command: str) -> None:
        self.cluster.api.patch_namespaced_custom_object(
            c.GROUP,
            c.VERSION,
            self.namespace,
            c.PLURAL,
            "chat",
            {"metadata": {"annotations": {c.ANNOTATION_COMMAND: command}}},
        )


def serve_first_revision(cluster: Cluster, namespace: str, setup: Setup) -> tuple[View, dict[str, Any]]:
    """Apply the model's first revision and wait until it serves (no canary for a first revision)."""
    view = View(cluster, namespace, setup)
    v1 = model(namespace, setup)
    cluster.apply_model(v1)
    wait_ready_at(view, revision(v1))
    return view, v1


def wait_ready_at(view: View, rev: str, timeout_s: float = 90) -> None:
    wait_for(
        f"stable {rev} Ready",
        lambda: view.status().get("phase") == "Ready" and view.status().get("stableRevision") == rev,
        timeout_s,
    )


@pytest.mark.parametrize("setup", [*SETUPS, KSERVE_LLM], ids=lambda s: f"{s.router}-{s.platform}")
def test_canary_follows_the_steps_and_promotion_keeps_the_canary(
    cluster: Cluster, operator: OperatorProcess, namespace: str, standins: StandInControllers, setup: Setup
) -> None:
    view, v1 = serve_first_revision(cluster, namespace, setup)
    stable, canary = revision(v1), revision(v2 := model(namespace, setup, max_model_len=4096))
    stable_uid = view.workloads()[stable][0]
    cluster.apply_model(v2)
    canary_uid = wait_for("the canary's workload", lambda: view.workloads().get(canary))[0]
    seen_status: list[int] = []
    seen_objects: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        st = view.status()
        if st.get("stableRevision") == canary and st.get("phase") == "Ready":
            break
        if st.get("canaryRevision") == canary:
            seen_status.append(st.get("canaryWeight", 0))
            seen_objects.append(view.canary_share(stable, canary))
        time.sleep(0.2)
    else:
        raise AssertionError(f"not promoted: {view.status()}")
    assert {10, 50} <= set(seen_status) <= {0, 10, 50}
    # 100 % shows only at the very end: traffic moves to the canary (and the stable goes) before the
    # status names the canary stable (status is written after the objects).
    tail = seen_objects.index(100) if 100 in seen_objects else len(seen_objects)
    assert set(seen_objects[tail:]) <= {100}
    if setup.platform == "kserve-llm":
        # Two objects carry the split: between the canary's write and the stable's, the share lies
        # between the planned weights it moves between (the canary's is written first), never above.
        assert {10, 50} <= set(seen_objects[:tail])
        assert all(0 <= share <= 50 for share in seen_objects[:tail])
    elif setup.router in (*ROUTE_ROUTERS, "kserve-canary"):
        assert {10, 50} <= set(seen_objects[:tail]) <= {0, 10, 50}
    else:
        # 2 replicas: the canary runs 1 (10 % and 50 % both round up to one pod) beside the stable's 2,
        # then grows to 2 before the stable goes: 0 % (not created yet), 33 %, 50 %.
        assert 33 in seen_objects[:tail]
        assert set(seen_objects[:tail]) <= {0, 33, 50}
    if setup.platform == "kserve-llm":
        # Promotion stops the old version (out of the group, its object kept); its retention deletes it.
        assert stable in view.stopped() or stable not in view.workloads()
        wait_for("the stopped stable deleted after its retention", lambda: list(view.workloads()) == [canary])
        assert "stoppedRevisions" not in view.status()
        llmisvc = view.llm_inference_services()[0]
        assert llmisvc["spec"]["router"]["route"] == {"group": "chat", "weight": 100}
    workloads = view.workloads()
    assert list(workloads) == [canary]  # exactly one revision left
    assert workloads[canary][0] == canary_uid  # the canary's own object: no pod restart on promotion
    if setup.router == "kserve-canary":
        # One InferenceService throughout; KServe keeps the revisions. Promotion drops the percent.
        assert stable_uid == canary_uid
        assert "canaryTrafficPercent" not in cluster.inference_services(namespace)[0]["spec"]["predictor"]
    else:
        assert stable_uid != canary_uid
    history = view.status()["history"]
    assert history[-1]["revision"] == canary
    assert history[-1]["outcome"] == "Promoted"
    if setup.router == "gateway-api" and setup.platform != "kserve-llm":  # kserve-llm: KServe's routes
        assert view.route_weights() == [(f"chat-{canary}-predictor", 100)]
    if setup.router == "inference-pool":
        assert view.route_weights() == [(f"chat-{canary}", 100)]
        wait_for("only the canary's pool left", lambda: list(view.pools()) == [canary])
        # The stand-in Gateway accepted the promoted pool, as a real one would once the route names it.
        parents = view.pools()[canary]["status"]["parents"]
        assert parents[0]["parentRef"]["name"] == GATEWAY["name"]
        assert {x["type"]: x["status"] for x in parents[0]["conditions"]} == {
            "Accepted": "True",
            "ResolvedRefs": "True",
        }


@pytest.mark.parametrize(
    "setup", [*SETUPS[:3], KSERVE_LLM, SETUPS[4]], ids=lambda s: f"{s.router}-{s.platform}"
)
def test_abort_leaves_exactly_the_stable_with_all_traffic(
    cluster: Cluster, operator: OperatorProcess, namespace: str, standins: StandInControllers, setup: Setup
) -> None:
    view, v1 = serve_first_revision(cluster, namespace, setup)
    stable_uid = view.workloads()[revision(v1)][0]
    v2 = model(namespace, setup, max_model_len=4096, steps=[{"weight": 10, "pause": "10m"}])
    applied_spec = cluster.apply_model(v2)["spec"]
    wait_for("canary at 10 %", lambda: view.status().get("canaryWeight") == 10)
    view.set_command("abort")
    wait_for("RolledBack", lambda: view.status().get("phase") == "RolledBack")
    st = view.status()
    assert st["stableRevision"] == revision(v1)
    assert st["failedRevision"] == revision(v2)
    assert "canaryRevision" not in st
    rolled_back = next(x for x in st["conditions"] if x["type"] == "RolledBack")
    assert (rolled_back["status"], rolled_back["reason"]) == ("True", "Aborted")
    if setup.router == "kserve-canary":
        # KServe's rollback: the InferenceService keeps the failed template with 0 % of the traffic.
        isvc = wait_for(
            "canaryTrafficPercent 0",
            lambda: [
                i
                for i in cluster.inference_services(namespace)
                if i["spec"]["predictor"].get("canaryTrafficPercent") == 0
            ],
        )
        assert isvc[0]["metadata"]["uid"] == stable_uid
        assert isvc[0]["metadata"]["annotations"]["serving.nlpmodel.dev/stable-revision"] == revision(v1)
    elif setup.platform == "kserve-llm":
        # The canary is stopped at once (no traffic), and deleted after its retention.
        wait_for(
            "the canary stopped",
            lambda: revision(v2) in view.stopped() or revision(v2) not in view.workloads(),
        )
        assert view.canary_share(revision(v1), revision(v2)) == 0
        wait_for("only the stable left", lambda: list(view.workloads()) == [revision(v1)])
        assert view.workloads()[revision(v1)] == (stable_uid, 2)
        assert view.llm_inference_services()[0]["spec"]["router"]["route"]["weight"] == 100
    else:
        wait_for("only the stable left", lambda: list(view.workloads()) == [revision(v1)])
        assert view.workloads()[revision(v1)] == (stable_uid, 2)
    if setup.router == "gateway-api" and setup.platform != "kserve-llm":  # kserve-llm: KServe's routes
        assert view.route_weights() == [(f"chat-{revision(v1)}-predictor", 100)]
    if setup.router == "inference-pool":
        assert view.route_weights() == [(f"chat-{revision(v1)}", 100)]
        wait_for("only the stable's pool left", lambda: list(view.pools()) == [revision(v1)])
    # Consumed: cleared once the abort's actions are done (the canary's last child may go just before).
    wait_for(
        "the command consumed",
        lambda: (
            c.ANNOTATION_COMMAND
            not in (cluster.model(namespace, "chat")["metadata"].get("annotations") or {})
        ),
    )
    assert cluster.model(namespace, "chat")["spec"] == applied_spec  # the operator never edits the spec
    # The failed revision is not retried while the template stays the same.
    time.sleep(3)
    assert view.status()["phase"] == "RolledBack"
    assert view.canary_share(revision(v1), revision(v2)) == 0


def test_a_canary_that_never_becomes_ready_is_rolled_back(
    cluster: Cluster, operator: OperatorProcess, namespace: str, standins: StandInControllers
) -> None:
    setup = SETUPS[0]
    view, v1 = serve_first_revision(cluster, namespace, setup)
    v2 = model(namespace, setup, max_model_len=4096, progressDeadline="5s")
    standins.broken.add(revision(v2))
    cluster.apply_model(v2)
    wait_for("RolledBack", lambda: view.status().get("phase") == "RolledBack", 60)
    rolled_back = next(x for x in view.status()["conditions"] if x["type"] == "RolledBack")
    assert rolled_back["reason"] == "ProgressDeadlineExceeded"
    assert revision(v2) in rolled_back["message"]
    wait_for("only the stable left", lambda: list(view.workloads()) == [revision(v1)])


def test_a_canary_whose_pool_the_gateway_rejects_gets_no_traffic_and_is_rolled_back(
    cluster: Cluster, operator: OperatorProcess, namespace: str, standins: StandInControllers
) -> None:
    """Its pods are Ready, but the Gateway does not accept its InferencePool: it cannot serve."""
    setup = Setup("inference-pool", "raw")
    view, v1 = serve_first_revision(cluster, namespace, setup)
    v2 = model(namespace, setup, max_model_len=4096, progressDeadline="8s")
    standins.rejected_pools.add(revision(v2))
    cluster.apply_model(v2)
    shares: list[int] = []

    def rolled_back() -> bool:
        with contextlib.suppress(ApiException):
            shares.append(view.canary_share(revision(v1), revision(v2)))
        return view.status().get("phase") == "RolledBack"

    wait_for("RolledBack", rolled_back, 60)
    assert set(shares) == {0}
    condition = next(x for x in view.status()["conditions"] if x["type"] == "RolledBack")
    assert condition["reason"] == "ProgressDeadlineExceeded"
    wait_for("only the stable's pool left", lambda: list(view.pools()) == [revision(v1)])
    assert view.route_weights() == [(f"chat-{revision(v1)}", 100)]


@pytest.mark.parametrize(
    "setup", [SETUPS[0], KSERVE_LLM, SETUPS[5]], ids=lambda s: f"{s.router}-{s.platform}"
)
def test_operator_killed_at_every_step_boundary_resumes_without_duplicates(
    cluster: Cluster, operator: OperatorProcess, namespace: str, standins: StandInControllers, setup: Setup
) -> None:
    view, v1 = serve_first_revision(cluster, namespace, setup)
    v2 = model(namespace, setup, max_model_len=4096)
    cluster.apply_model(v2)
    stable, canary = revision(v1), revision(v2)
    boundaries: list[tuple[int | None, int | None]] = []
    planned = {0, 10, 50, 100}
    deadline = time.monotonic() + 180
    last: tuple[Any, Any] = (None, None)
    while time.monotonic() < deadline:
        st = view.status()
        if st.get("stableRevision") == canary and st.get("phase") == "Ready":
            break
        here = (st.get("currentStep"), st.get("canaryWeight"))
        if st.get("canaryRevision") == canary and here != last:
            # A step boundary: kill the operator right there, let the world sit, start it again.
            boundaries.append(here)
            operator.kill()
            before = view.workloads()
            time.sleep(1)
            assert view.workloads() == before
            operator.start()
            last = here
        st = view.status()
        if st.get("canaryRevision") == canary and last[0] is not None:
            assert st.get("currentStep", 0) >= last[0]  # resumed where it was, never back to step 1
        workloads = view.workloads()
        assert set(workloads) <= {stable, canary}  # never a duplicate or a stray revision
        with contextlib.suppress(ApiException):  # the route may be mid-replace
            share = view.canary_share(stable, canary)
            if setup.platform == "kserve-llm":
                # Between two planned weights while the two objects' writes land, never above the plan.
                assert 0 <= share <= 50 or share == 100
            else:
                assert share in planned
        time.sleep(0.2)
    else:
        raise AssertionError(f"not promoted after kills at {boundaries}: {view.status()}")
    assert (1, 50) in boundaries
    assert (0, 10) in boundaries
    if setup.platform == "kserve-llm":
        wait_for("the stopped stable deleted after its retention", lambda: list(view.workloads()) == [canary])
    assert list(view.workloads()) == [canary]
    assert operator.alive(), operator.log_tail()


def nlpctl(localplane: LocalPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("nlpctl")),
            *args,
            "--kubeconfig",
            str(localplane.admin_kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "setup", [SETUPS[0], KSERVE_LLM, SETUPS[4]], ids=lambda s: f"{s.router}-{s.platform}"
)
def test_manual_control_end_to_end(
    cluster: Cluster,
    operator: OperatorProcess,
    namespace: str,
    standins: StandInControllers,
    localplane: LocalPlane,
    setup: Setup,
) -> None:
    """pause → resume → promote a canary, then abort and retry the next one, all through nlpctl."""
    view, _ = serve_first_revision(cluster, namespace, setup)
    slow = [{"weight": 10, "pause": "10m"}, {"weight": 50, "pause": "10m"}]
    # kserve-llm: long enough a retention that the aborted canary is still there, stopped, at the retry.
    keep = {"stoppedRetention": "10m"} if setup.platform == "kserve-llm" else {}
    v2 = model(namespace, setup, max_model_len=4096, steps=slow, **keep)
    cluster.apply_model(v2)
    wait_for("canary at 10 %", lambda: view.status().get("canaryWeight") == 10)

    def no_pending_command() -> bool:
        return c.ANNOTATION_COMMAND not in (
            cluster.model(namespace, "chat")["metadata"].get("annotations") or {}
        )

    assert nlpctl(localplane, "pause", "chat", "-n", namespace).returncode == 0
    wait_for("paused", lambda: view.status().get("paused") is True and no_pending_command())
    again = nlpctl(localplane, "pause", "chat", "-n", namespace)
    assert again.returncode == 1  # already paused: does not apply
    assert nlpctl(localplane, "resume", "chat", "-n", namespace).returncode == 0
    wait_for("resumed", lambda: not view.status().get("paused") and no_pending_command())
    assert nlpctl(localplane, "promote", "chat", "-n", namespace).returncode == 0
    wait_ready_at(view, revision(v2))
    assert view.status()["history"][-1]["outcome"] == "Promoted"

    v3 = model(namespace, setup, max_model_len=2048, steps=slow, **keep)
    cluster.apply_model(v3)
    wait_for(
        "canary at 10 %",
        lambda: (
            view.status().get("canaryRevision") == revision(v3) and view.status().get("canaryWeight") == 10
        ),
    )
    v3_uid = view.workloads()[revision(v3)][0]
    assert nlpctl(localplane, "abort", "chat", "-n", namespace).returncode == 0
    wait_for("RolledBack", lambda: view.status().get("phase") == "RolledBack" and no_pending_command())
    if setup.platform == "kserve-llm":
        wait_for("the aborted canary stopped", lambda: revision(v3) in view.stopped())
    status_text = nlpctl(localplane, "status", "chat", "-n", namespace)
    assert status_text.returncode == 0
    assert "RolledBack" in status_text.stdout
    assert revision(v3) in status_text.stdout
    assert nlpctl(localplane, "retry", "chat", "-n", namespace).returncode == 0
    wait_for(
        "retried",
        lambda: view.status().get("canaryRevision") == revision(v3) and "failedRevision" not in view.status(),
    )
    if setup.platform == "kserve-llm":
        # The retry restarts the stopped object: the same one, its stop annotation removed.
        wait_for("the canary restarted", lambda: revision(v3) not in view.stopped())
        assert view.workloads()[revision(v3)][0] == v3_uid
    unknown = nlpctl(localplane, "promote", "nope", "-n", namespace)
    assert unknown.returncode == 4
    assert "not found" in unknown.stderr
