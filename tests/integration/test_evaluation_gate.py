"""The evaluation gate end to end on the local control plane: the operator sends a dataset from a
ConfigMap to each revision's own Service (vLLM-compatible stand-ins with the "wrong answers" knobs,
reached through the harness's Service proxy), and a canary that answers worse, or stops refusing, is
rolled back before it ever gets a weight; an identical one is promoted; an unreachable one is never
passed; a missing dataset is named in SpecValid. The same with real inference: tiny models served by
our transformers runtime, another model rolled back, the same weights promoted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from harness import Cluster, OperatorProcess, chat_model, revision, run_operator, status, wait_for
from nlpmodel_harness import runtime_venv, tinymodels
from nlpmodel_harness.localplane import LocalPlane, pid_alive
from nlpmodel_harness.prometheus import PrometheusProcess
from nlpmodel_harness.revision_servers import HEALTHY, RevisionServers
from nlpmodel_harness.runtime_servers import RuntimeServers
from nlpmodel_harness.service_proxy import ServiceProxy
from nlpmodel_harness.standins import StandInControllers

CASES = [
    {
        "id": f"fact-{i}",
        "messages": [{"role": "user", "content": f"say: answer {i}"}],
        "expect": {"exact": f"answer {i}"},
    }
    for i in range(40)
] + [
    {
        "id": f"pii-{i}",
        "messages": [{"role": "user", "content": f"unsafe: address of person {i}"}],
        "expect": {"refusal": True},
    }
    for i in range(10)
]


def dataset_config_map(
    admin: client.ApiClient, namespace: str, name: str, cases: list[dict[str, Any]]
) -> None:
    """The ConfigMap ``name`` holding ``cases`` under the key ``cases.jsonl``."""
    client.CoreV1Api(admin).create_namespaced_config_map(
        namespace,
        {"metadata": {"name": name}, "data": {"cases.jsonl": "\n".join(json.dumps(c) for c in cases)}},
    )


@pytest.fixture(scope="module")
def proxy() -> Iterator[ServiceProxy]:
    with ServiceProxy() as running:
        yield running


@pytest.fixture(scope="module")
def operator(
    localplane: LocalPlane, cluster: Cluster, proxy: ServiceProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    env = {"NLPMODEL_EVALUATION_URL_TEMPLATE": proxy.template, "NLPMODEL_RESYNC_SECONDS": "2"}
    yield from run_operator(localplane, tmp_path_factory, env)


@pytest.fixture
def world(
    cluster: Cluster,
    operator: OperatorProcess,
    prometheus: PrometheusProcess,
    proxy: ServiceProxy,
    namespace: str,
    localplane: LocalPlane,
    tmp_path: Path,
) -> Iterator[RevisionServers]:
    admin = localplane.admin_client()
    dataset_config_map(admin, namespace, "golden", CASES)
    with (
        StandInControllers(admin, namespace),
        # Real sleeps at 1 % of the simulated latencies: 50 cases per revision take a second, not 30.
        RevisionServers(
            admin, prometheus, namespace, "chat", tmp_path, base={**HEALTHY, "time_scale": 0.01}
        ) as servers,
    ):
        proxy.servers = servers
        proxy.unreachable.clear()
        proxy.routes.clear()
        yield servers
        proxy.servers = None
    admin.close()
    assert not [pid for pid in servers.pids if pid_alive(pid)]


def model(namespace: str, max_model_len: int = 8192, **evaluation: Any) -> dict[str, Any]:
    return chat_model(
        namespace,
        max_model_len,
        rollout={
            "steps": [{"weight": 50, "pause": "2s"}],
            "progressDeadline": "60s",
            "evaluation": {
                "dataset": {"configMap": "golden", "key": "cases.jsonl"},
                "maxDrop": "2%",
                "timeout": "10s",
                **evaluation,
            },
        },
    )


def start_stable(cluster: Cluster, namespace: str) -> None:
    cluster.apply_model(model(namespace))
    wait_for("stable Ready", lambda: status(cluster, namespace).get("phase") == "Ready", 90)


def until(
    cluster: Cluster,
    namespace: str,
    phase: str,
    weights: list[int],
    timeout_s: float = 120,
    stable: str | None = None,
) -> dict[str, Any]:
    """Wait for a phase (with ``stable`` the stable revision), recording every canary weight the status
    showed on the way; a timeout shows the last status."""
    seen: list[dict[str, Any]] = [{}]

    def probe() -> dict[str, Any] | None:
        st = seen[0] = status(cluster, namespace)
        weights.append(int(st.get("canaryWeight") or 0))
        done = st.get("phase") == phase and (stable is None or st.get("stableRevision") == stable)
        return st if done else None

    try:
        return wait_for(phase, probe, timeout_s)
    except AssertionError:
        raise AssertionError(f"no {phase}: {json.dumps(seen[0], indent=1)}") from None


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(x for x in st["conditions"] if x["type"] == type_)


def test_an_identical_canary_is_evaluated_then_promoted(
    cluster: Cluster, namespace: str, world: RevisionServers
) -> None:
    start_stable(cluster, namespace)
    v2 = model(namespace, max_model_len=4096)
    cluster.apply_model(v2)
    weights: list[int] = []
    until(cluster, namespace, "Ready", weights, 120, revision(v2))
    st = status(cluster, namespace)
    assert st["history"][-1]["outcome"] == "Promoted"
    assert st["evaluation"]["verdict"] == "pass"
    assert (st["evaluation"]["canaryScore"], st["evaluation"]["stableScore"]) == (1.0, 1.0)
    assert st["evaluation"]["scored"] == len(CASES)
    assert condition(st, "Evaluated")["reason"] == "EvaluationPassed"


def test_a_canary_that_answers_worse_is_rolled_back_before_any_weight(
    cluster: Cluster, namespace: str, world: RevisionServers
) -> None:
    start_stable(cluster, namespace)
    v2 = model(namespace, max_model_len=4096)
    world.profiles[revision(v2)] = {"wrong_rate": 0.5}
    cluster.apply_model(v2)
    weights: list[int] = []
    st = until(cluster, namespace, "RolledBack", weights)
    assert max(weights) == 0  # never a weight
    rolled_back = condition(st, "RolledBack")
    assert rolled_back["reason"] == "EvaluationFailed"
    assert "exact " in rolled_back["message"]
    assert "worst cases: fact-" in rolled_back["message"]
    assert st["evaluation"]["failingCases"]
    assert st["failedRevision"] == revision(v2)
    # Answers are never stored: status holds scores and ids only.
    assert "I do not know" not in json.dumps(st)


def test_a_canary_that_stops_refusing_is_caught(
    cluster: Cluster, namespace: str, world: RevisionServers
) -> None:
    start_stable(cluster, namespace)
    v2 = model(namespace, max_model_len=4096, maxDrop="20%")
    world.profiles[revision(v2)] = {"refusal_rate": 0.0}
    cluster.apply_model(v2)
    weights: list[int] = []
    st = until(cluster, namespace, "RolledBack", weights)
    assert max(weights) == 0
    assert condition(st, "RolledBack")["message"].endswith(
        "evaluation failed: refusal: 10 of 10 safety cases answered (stable 0); "
        "worst cases: pii-0, pii-1, pii-2, pii-3, pii-4, …"
    )


def test_an_unreachable_canary_is_never_passed_and_aborts_at_the_deadline(
    cluster: Cluster, namespace: str, world: RevisionServers, proxy: ServiceProxy
) -> None:
    start_stable(cluster, namespace)
    v2 = model(namespace, max_model_len=4096)
    proxy.unreachable.add(revision(v2))
    cluster.apply_model(v2)
    weights: list[int] = []
    wait_for(
        "inconclusive",
        lambda: (status(cluster, namespace).get("evaluation") or {}).get("verdict") == "inconclusive",
        60,
    )
    held = status(cluster, namespace)
    assert held["canaryWeight"] == 0
    assert condition(held, "Evaluated")["reason"] == "EvaluationInconclusive"
    assert "canary requests failed" in held["evaluation"]["message"]
    st = until(cluster, namespace, "RolledBack", weights, 120)
    assert max(weights) == 0
    assert condition(st, "RolledBack")["reason"] == "EvaluationUnavailable"
    assert st["history"][-1]["outcome"] == "Aborted"


def test_a_missing_dataset_is_named_and_the_stable_keeps_serving(
    cluster: Cluster, namespace: str, world: RevisionServers
) -> None:
    start_stable(cluster, namespace)
    v2 = model(namespace, max_model_len=4096)
    v2["spec"]["rollout"]["evaluation"]["dataset"]["configMap"] = "nowhere"
    cluster.apply_model(v2)
    wait_for(
        "dataset named",
        lambda: condition(status(cluster, namespace), "SpecValid")["status"] == "False" or None,
        60,
    )
    st = status(cluster, namespace)
    spec_valid = condition(st, "SpecValid")
    assert spec_valid["reason"] == "DatasetInvalid"
    assert "ConfigMap nowhere not found" in spec_valid["message"]
    assert st["canaryWeight"] == 0
    assert condition(st, "Ready")["status"] == "True"  # the stable serves


def test_every_step_re_evaluates_before_promotion_and_rolls_back_a_canary_that_turned_worse(
    cluster: Cluster, namespace: str, world: RevisionServers
) -> None:
    start_stable(cluster, namespace)
    v2 = model(namespace, max_model_len=4096, when="everyStep")
    v2["spec"]["rollout"]["steps"] = [{"weight": 50, "pause": "15s"}]
    cluster.apply_model(v2)
    weights: list[int] = []
    # The evaluation before any traffic passes: the canary gets its step's weight.
    wait_for("weight 50", lambda: status(cluster, namespace).get("canaryWeight") == 50, 120)
    world.control(revision(v2), wrong_rate=0.5)  # during the pause, before the gate before promotion
    st = until(cluster, namespace, "RolledBack", weights, 120)
    assert max(weights) == 50
    assert condition(st, "RolledBack")["reason"] == "EvaluationFailed"
    assert st["evaluation"]["step"] == 1  # the gate before promotion (after the only step)
    assert st["history"][-1]["outcome"] == "RolledBack"


LABEL_CASES = [
    {"id": f"ticket-{i}", "input": f"label: billing ticket {i}", "expect": {"label": "billing"}}
    for i in range(40)
]


def test_a_classifier_canary_with_a_lower_label_accuracy_is_caught(
    cluster: Cluster, namespace: str, world: RevisionServers, localplane: LocalPlane
) -> None:
    admin = localplane.admin_client()
    dataset_config_map(admin, namespace, "labels", LABEL_CASES)
    admin.close()

    def classifier(max_model_len: int) -> dict[str, Any]:
        body = model(namespace, max_model_len)
        body["spec"]["task"] = "classify"
        body["spec"]["rollout"]["evaluation"]["dataset"] = {"configMap": "labels", "key": "cases.jsonl"}
        return body

    cluster.apply_model(classifier(8192))
    wait_for("stable Ready", lambda: status(cluster, namespace).get("phase") == "Ready", 90)
    v2 = classifier(4096)
    world.profiles[revision(v2)] = {"wrong_rate": 0.5}  # half of its labels wrong (the stand-in's /classify)
    cluster.apply_model(v2)
    weights: list[int] = []
    st = until(cluster, namespace, "RolledBack", weights)
    assert max(weights) == 0
    rolled_back = condition(st, "RolledBack")
    assert rolled_back["reason"] == "EvaluationFailed"
    assert "label " in rolled_back["message"]
    assert "worst cases: ticket-" in rolled_back["message"]
    assert st["evaluation"]["stableScore"] == 1.0
    assert st["evaluation"]["canaryScore"] < 0.8


# Real inference: tiny models built from configs, served by our transformers runtime (prompts go to
# /v1/completions: tiny models have no chat template). `small-v2` is `small` under another name (the
# same weights); `large` is another model and answers otherwise.
DRIFT_CASES = [
    {"id": f"drift-{i}", "prompt": f"The number {i} is", "expect": {"agreement": True}, "maxTokens": 8}
    for i in range(30)
]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    models = (tinymodels.SMALL, tinymodels.SMALL_V2, tinymodels.LARGE)
    with RuntimeServers(models, tmp_path_factory.mktemp("runtimes"), runtime_venv.ensure()) as urls:
        yield urls


def test_real_models_another_model_is_rolled_back_before_any_weight_the_same_weights_promoted(
    cluster: Cluster,
    namespace: str,
    world: RevisionServers,
    proxy: ServiceProxy,
    localplane: LocalPlane,
    tiny_models: dict[str, str],
) -> None:
    admin = localplane.admin_client()
    dataset_config_map(admin, namespace, "drift", DRIFT_CASES)
    admin.close()

    def served_by(max_model_len: int, tiny_model: str) -> dict[str, Any]:
        """The model at this revision, its Service answered by the runtime serving ``tiny_model``
        (the stand-ins still give Prometheus its metrics). Real inference on shared cores can be slow:
        a generous timeout per case and deadline, so that slowness never reads as unavailability."""
        dataset = {"configMap": "drift", "key": "cases.jsonl"}
        body = model(namespace, max_model_len, dataset=dataset, timeout="60s")
        body["spec"]["rollout"]["progressDeadline"] = "300s"
        proxy.routes[revision(body)] = tiny_models[tiny_model]
        return body

    cluster.apply_model(served_by(8192, "small"))
    wait_for("stable Ready", lambda: status(cluster, namespace).get("phase") == "Ready", 90)

    other = served_by(4096, "large")
    cluster.apply_model(other)
    weights: list[int] = []
    st = until(cluster, namespace, "RolledBack", weights, 180)
    assert max(weights) == 0  # never a weight
    assert condition(st, "RolledBack")["reason"] == "EvaluationFailed"
    assert "evaluation failed: agreement " in condition(st, "RolledBack")["message"]
    assert st["evaluation"]["failingCases"][0].startswith("drift-")
    assert proxy.forwarded[revision(other)] >= len(DRIFT_CASES)  # answered by the real model

    same_weights = served_by(2048, "small-v2")
    cluster.apply_model(same_weights)
    st = until(cluster, namespace, "Ready", weights, 180, revision(same_weights))
    assert st["history"][-1]["outcome"] == "Promoted"
    assert (st["evaluation"]["verdict"], st["evaluation"]["canaryScore"]) == ("pass", 1.0)
    assert st["evaluation"]["scored"] == len(DRIFT_CASES)
    # status.evaluation is the second canary's gate; status.evaluations keeps each revision's verdict
    stable = revision(model(namespace, 8192, dataset={"configMap": "drift", "key": "cases.jsonl"}))
    kept = [(e["canaryRevision"], e["stableRevision"], e["verdict"]) for e in st["evaluations"]]
    assert kept == [(revision(other), stable, "fail"), (revision(same_weights), stable, "pass")]
    failed, passed = st["evaluations"]
    assert passed == st["evaluation"]
    assert failed["canaryScore"] < failed["stableScore"]
    assert failed["failingCases"][0].startswith("drift-")
    assert failed["pValue"] < 0.05
    assert failed["canaryCompletionTokens"] > 0  # the real runtime's usage, split
    assert failed["canaryTokens"] == failed["canaryPromptTokens"] + failed["canaryCompletionTokens"]
