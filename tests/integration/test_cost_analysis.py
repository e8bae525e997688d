"""Cost as an SLO end to end (issue 19): the operator, with GPU-hour prices configured, judges canaries on
the token series a real Prometheus scrapes from vLLM-compatible model-server stand-ins, and reports each
revision's tokens and cost in status and its own /metrics."""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
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
from nlpmodel_harness.revision_servers import RevisionServers
from nlpmodel_harness.standins import StandInControllers
from nlpmodel_operator.api.units import parse_time
from nlpmodel_operator.core.analysis import queries as q

METRICS_PORT = free_ports(1)[0]
L4_PRICE = 0.8  # per GPU-hour
PRICING = {"currency": "USD", "gpuHour": {"nvidia-l4": L4_PRICE}}


@pytest.fixture(scope="module")
def operator(
    localplane: LocalPlane,
    cluster: Cluster,
    prometheus: PrometheusProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    env = with_prometheus(
        prometheus.url, NLPMODEL_METRICS_PORT=str(METRICS_PORT), NLPMODEL_PRICING=json.dumps(PRICING)
    )
    yield from run_operator(localplane, tmp_path_factory, env)


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


def model(namespace: str, max_model_len: int = 8192, gpus: int = 1) -> dict[str, Any]:
    return chat_model(
        namespace,
        max_model_len,
        resources={"gpu": {"count": gpus, "product": "nvidia-l4"}},
        rollout={
            "steps": [{"weight": 10, "pause": "3s"}, {"weight": 50, "pause": "3s"}],
            "analysis": {"interval": "4s", "minRequests": 40, "inconclusiveDeadline": "40s"},
            "slo": {
                "ttftP95": "3s",
                "errorRate": "2%",
                "maxRegression": "20%",
                "maxCostRegression": "20%",
                "maxPromptTokensRegression": "20%",
            },
        },
    )


def start_stable(cluster: Cluster, namespace: str) -> dict[str, Any]:
    v1 = model(namespace)
    cluster.apply_model(v1)
    wait_for("stable Ready", lambda: status(cluster, namespace).get("phase") == "Ready", 90)
    return v1


def instant_query(prometheus: PrometheusProcess, promql: str, at: float) -> float:
    url = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
    body = json.loads(urllib.request.urlopen(url, timeout=5).read())
    (result,) = body["data"]["result"]
    return float(result["value"][1])


def test_a_canary_with_twice_the_gpus_per_replica_is_rolled_back_for_cost(
    cluster: Cluster, namespace: str, world: RevisionServers
) -> None:
    """The same tokens at the same speed (the stand-in does not care) with tensor parallel 2: twice the
    price of a replica-hour, so twice the cost per token, whatever the canary's share."""
    start_stable(cluster, namespace)
    v2 = model(namespace, max_model_len=4096, gpus=2)
    cluster.apply_model(v2)
    wait_for("rolled back", lambda: status(cluster, namespace).get("phase") == "RolledBack", 150)
    st = status(cluster, namespace)
    rolled_back = next(x for x in st["conditions"] if x["type"] == "RolledBack")
    assert rolled_back["reason"] == "CostRegression"
    # e.g. "cost 0.0139 USD per 1M tokens vs stable 0.00694 over 1 check (> 20% more allowed, ...)"
    assert "USD per 1M tokens vs stable" in rolled_back["message"]
    assert "always-valid p" in rolled_back["message"]
    assert st["failedRevision"] == revision(v2)
    assert st["stableRevision"] != revision(v2)
    canary = next(e for e in st["cost"]["revisions"] if e["revision"] == revision(v2))
    assert canary["gpusPerReplica"] == 2
    assert canary["replicaHourCost"] == pytest.approx(2 * L4_PRICE)
    who = (("model", "chat"), ("namespace", namespace))
    reason = ("nlpmodel_rollbacks_total", (*who, ("reason", "CostRegression")))
    wait_for("rollback counted", lambda: operator_metrics(METRICS_PORT).get(reason, 0) >= 1, 10)


@pytest.mark.parametrize(
    ("stable_profile", "canary_profile", "says"),
    [
        # 80 % of the prompt from the prefix cache, then 40 %: x1.57 the computed tokens per served one
        pytest.param(
            {"cache_hit_ratio": 0.8},
            {"cache_hit_ratio": 0.4},
            "USD per 1M tokens vs stable",
            id="halved-cache-hits",
        ),
        # a template that doubles every prompt: the same cost per token, twice the tokens per request
        pytest.param({}, {"prompt_token_scale": 2.0}, "prompt tokens per request", id="doubled-prompts"),
    ],
)
def test_fewer_cache_hits_or_longer_prompts_are_rolled_back_for_cost(
    cluster: Cluster,
    namespace: str,
    world: RevisionServers,
    stable_profile: dict[str, float],
    canary_profile: dict[str, float],
    says: str,
) -> None:
    world.profiles[revision(model(namespace))] = stable_profile
    start_stable(cluster, namespace)
    v2 = model(namespace, max_model_len=4096)
    world.profiles[revision(v2)] = canary_profile
    cluster.apply_model(v2)
    wait_for("rolled back", lambda: status(cluster, namespace).get("phase") == "RolledBack", 150)
    rolled_back = next(x for x in status(cluster, namespace)["conditions"] if x["type"] == "RolledBack")
    assert rolled_back["reason"] == "CostRegression", rolled_back["message"]
    assert says in rolled_back["message"]


def test_an_equal_cost_canary_is_promoted_and_its_cost_is_what_prometheus_says(
    cluster: Cluster, namespace: str, world: RevisionServers, prometheus: PrometheusProcess
) -> None:
    start_stable(cluster, namespace)
    v2 = model(namespace, max_model_len=4096)
    world.profiles[revision(v2)] = {"cache_hit_ratio": 0.25}  # cheaper, if anything: a quarter cached
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
    (entry,) = st["cost"]["revisions"]  # the old stable's entry went with it
    assert entry["revision"] == revision(v2)
    assert st["cost"]["currency"] == "USD"
    for field in ("tokensPerSecond", "costPerMillionTokens", "costPerRequest", "prefixCacheHitRatio"):
        assert entry[field] > 0, field
    # status = the operator's gauge, exactly; = a PromQL query over the same window at the same time,
    # within the rounding to 4 digits and the few milliseconds between the operator's query and `now`.
    label = (("model", "chat"), ("namespace", namespace), ("revision", revision(v2)))
    wait_for(
        "gauge shows status",
        lambda: (
            operator_metrics(METRICS_PORT).get(("nlpmodel_revision_cost_per_million_tokens", label))
            == entry["costPerMillionTokens"]
        ),
        10,
    )
    seen = operator_metrics(METRICS_PORT)
    assert seen[("nlpmodel_revision_tokens_per_second", label)] == entry["tokensPerSecond"]
    assert seen[("nlpmodel_revision_prefix_cache_hit_ratio", label)] == entry["prefixCacheHitRatio"]
    at = parse_time(entry["measuredAt"])
    assert at is not None
    window = entry["windowSeconds"]
    promql = q.cost_per_million_tokens(namespace, "chat", revision(v2), window, L4_PRICE, entry["replicas"])
    assert instant_query(prometheus, promql, at.timestamp()) == pytest.approx(
        entry["costPerMillionTokens"], rel=0.05
    )
    hits = q.counter_increase(q.PREFIX_CACHE_HITS_TOTAL, namespace, "chat", revision(v2), window)
    queries = q.counter_increase(q.PREFIX_CACHE_QUERIES_TOTAL, namespace, "chat", revision(v2), window)
    ratio = instant_query(prometheus, f"{hits} / {queries}", at.timestamp())
    assert math.isclose(ratio, entry["prefixCacheHitRatio"], rel_tol=0.02)
    assert ratio == pytest.approx(0.25, rel=0.05)
