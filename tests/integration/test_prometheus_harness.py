"""SLO metrics end to end with real components: model-server stand-ins -> real Prometheus -> provider.

Two stand-ins play one model's stable and canary revisions (vLLM 0.33's exact metrics, synthetic
traffic). Prometheus (Debian's package) scrapes them with the target labels the operator's PodMonitor
writes, derived from the revision pods' labels as the PodMonitor selects them; PrometheusProvider
queries it with the PromQL the analysis uses. Prometheus is then paused, stopped and restarted under
the provider. Every process started here is stopped by its PID at the end (asserted).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from harness import wait_for
from nlpmodel_harness.childproc import pid_alive
from nlpmodel_harness.modelserver import FINISHED_REASONS, HISTOGRAM_BUCKETS, ModelServerProcess
from nlpmodel_harness.prometheus import PrometheusProcess, ScrapeTarget
from nlpmodel_operator.api.constants import LABEL_MANAGED_BY, LABEL_MODEL, LABEL_REVISION, MANAGED_BY
from nlpmodel_operator.api.spec import CustomMetric
from nlpmodel_operator.controller.analysis import Analyzer
from nlpmodel_operator.core.analysis import queries as q
from nlpmodel_operator.core.analysis.checks import CheckData, CheckRequest
from nlpmodel_operator.core.analysis.judge import Histogram
from nlpmodel_operator.providers import NoData, PrometheusProvider, QueryError, QueryResult, Value

NS, MODEL = "team-a", "chat"
STABLE, CANARY = "5ab1e000", "ca4a2700"
SERVED = "llama-3.1-8b"
WINDOW_S = 5  # seconds of 1 s scrapes: enough samples for increase(), short enough to react quickly


@dataclass
class Stack:
    stable: ModelServerProcess
    canary: ModelServerProcess
    prometheus: PrometheusProcess


def pod_labels(revision: str) -> dict[str, str]:
    """The labels the operator puts on a revision's pods (what the PodMonitor selects and relabels)."""
    return {LABEL_MODEL: MODEL, LABEL_REVISION: revision, LABEL_MANAGED_BY: MANAGED_BY}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    started = time.monotonic()
    servers = {
        rev: ModelServerProcess(model_name=SERVED, synthetic_rps=50.0, time_scale=0.01, seed=seed)
        for rev, seed in ((STABLE, 1), (CANARY, 2))
    }
    prometheus: PrometheusProcess | None = None
    pids: list[int] = []
    try:
        for server in servers.values():
            server.start()
            pids.append(server.pid)
        targets = {rev: ScrapeTarget.from_pod(s.address, NS, pod_labels(rev)) for rev, s in servers.items()}
        # The stable revision exists first; the canary's pods appear later and are added by a reload.
        prometheus = PrometheusProcess([targets[STABLE]])
        prometheus.start()
        prometheus.set_targets(list(targets.values()))
        prometheus.wait_for_targets_up()
        # Window queries are only meaningful once a whole window of scrapes exists for both revisions.
        full = f'min(count_over_time(up{{namespace="{NS}"}}[{WINDOW_S}s])) >= {WINDOW_S}'
        wait_for("a full window of scrapes", lambda: isinstance(query_url(prometheus.url, full), Value), 30)
        print(f"\nstack up in {time.monotonic() - started:.1f}s")
        yield Stack(servers[STABLE], servers[CANARY], prometheus)
    finally:
        for server in servers.values():
            server.stop()
        if prometheus is not None:
            prometheus.close()
            pids.extend(prometheus.pids)
    assert pids
    assert [pid for pid in pids if pid_alive(pid)] == []


def query_url(url: str, promql: str, at: datetime | None = None, **options: Any) -> QueryResult:
    async def run() -> QueryResult:
        async with PrometheusProvider(url, **options) as provider:
            return await provider.query(promql, at)

    return asyncio.run(run())


def query(stack: Stack, promql: str, at: datetime | None = None, **options: Any) -> QueryResult:
    return query_url(stack.prometheus.url, promql, at, **options)


def value_of(stack: Stack, promql: str) -> Value:
    """The query's Value once Prometheus has one (scrapes arrive every second)."""

    def probe() -> Value | None:
        result = query(stack, promql)
        assert not isinstance(result, QueryError), result
        return result if isinstance(result, Value) else None

    return wait_for(promql, probe, timeout_s=20)


def test_generated_config_is_valid_and_carries_the_label_contract(stack: Stack) -> None:
    assert "SUCCESS" in stack.prometheus.check_config()
    config = yaml.safe_load(stack.prometheus.config_path.read_text())
    assert config["global"] == {"scrape_interval": "1s", "evaluation_interval": "1s"}
    groups = config["scrape_configs"][0]["static_configs"]
    assert [g["labels"] for g in groups] == [
        {"namespace": NS, "nlpmodel_model": MODEL, "nlpmodel_revision": STABLE},
        {"namespace": NS, "nlpmodel_model": MODEL, "nlpmodel_revision": CANARY},
    ]
    with pytest.raises(ValueError, match="no PodMonitor selects it"):
        ScrapeTarget.from_pod("127.0.0.1:1", NS, {LABEL_MODEL: MODEL})


def test_every_series_carries_target_and_vllm_labels(stack: Stack) -> None:
    labels = ("namespace", "nlpmodel_model", "nlpmodel_revision", "model_name", "engine")
    result = value_of(stack, f"count by ({', '.join(labels)}) (vllm:num_requests_running)")
    assert sorted(tuple(s.labels[k] for k in labels) for s in result.samples) == [
        (NS, MODEL, STABLE, SERVED, "0"),
        (NS, MODEL, CANARY, SERVED, "0"),
    ]
    reasons = value_of(stack, "count by (finished_reason) (vllm:request_success_total)")
    assert reasons.by_label("finished_reason") == dict.fromkeys(FINISHED_REASONS, 2.0)


@pytest.mark.parametrize("metric", [q.TTFT_SECONDS, q.ITL_SECONDS, q.E2E_SECONDS])
def test_histogram_increase_has_exactly_vllms_buckets(stack: Stack, metric: str) -> None:
    result = value_of(stack, q.histogram_increase(metric, NS, MODEL, STABLE, WINDOW_S))
    bounds = sorted(float(le) for le in result.by_label("le"))
    assert bounds == [*HISTOGRAM_BUCKETS[metric], math.inf]
    counts = result.by_label("le")
    assert counts["+Inf"] > 0  # synthetic traffic was observed within the window
    # The _sum series over the same window: the judge's exact mean lies inside the observed buckets.
    total = value_of(stack, q.histogram_sum_increase(metric, NS, MODEL, STABLE, WINDOW_S)).single()
    histogram = Histogram.from_prometheus(counts, total)
    first = next(i for i, c in enumerate(histogram.counts) if c > 0)
    last = next(i for i, c in enumerate(histogram.counts) if c >= histogram.total)
    lower = histogram.bounds[first - 1] if first > 0 else 0.0
    assert lower <= histogram.mean <= histogram.bounds[last]
    assert histogram.binned_variance() is not None


def test_request_counts_grow(stack: Stack) -> None:
    total = f"sum(vllm:request_success_total{q.revision_selector(NS, MODEL, CANARY)})"
    first = value_of(stack, total).single()
    second = wait_for("the counter to grow", lambda: (v := value_of(stack, total).single()) > first and v)
    assert second > first
    recent = value_of(stack, q.requests_increase(NS, MODEL, CANARY, WINDOW_S)).single()
    assert 50 * WINDOW_S * 0.5 <= recent <= 50 * WINDOW_S * 1.5  # ~50 requests/s
    assert value_of(stack, q.errors_increase(NS, MODEL, CANARY, WINDOW_S)).single() == 0
    assert value_of(stack, q.queue_depth(NS, MODEL, CANARY)).single() == 0


def test_a_slow_canary_has_a_higher_p95(stack: Stack) -> None:
    def p95(revision: str) -> float:
        return value_of(
            stack, q.histogram_quantile(0.95, q.TTFT_SECONDS, NS, MODEL, revision, WINDOW_S)
        ).single()

    # Same distribution (median 0.3 s, sigma 0.5): p95 about 0.3 * e^(1.645 * 0.5) = 0.68 s for both.
    assert 0.4 < p95(STABLE) < 1.2
    assert 0.4 < p95(CANARY) < 1.2
    stack.canary.control(ttft_median=2.0)
    try:
        slow = wait_for("the canary's p95 to rise", lambda: (v := p95(CANARY)) > 3.0 and v, timeout_s=30)
        assert slow > 2 * p95(STABLE)
    finally:
        stack.canary.control(ttft_median=0.3)


def test_unknown_revision_is_no_data(stack: Stack) -> None:
    value_of(stack, q.requests_increase(NS, MODEL, STABLE, WINDOW_S))  # the known one has data
    for promql in (
        q.histogram_increase(q.TTFT_SECONDS, NS, MODEL, "deadbeef", WINDOW_S),
        q.requests_increase(NS, MODEL, "deadbeef", WINDOW_S),
        q.requests_increase("other-ns", MODEL, STABLE, WINDOW_S),
        q.queue_depth(NS, "other-model", STABLE),
    ):
        assert query(stack, promql) == NoData(promql)


def test_malformed_queries_are_permanent_errors(stack: Stack) -> None:
    for promql in ("sum(rate(vllm:request_success_total[1m]", "vllm:num_requests_running[1m]"):
        started = time.monotonic()
        result = query(stack, promql, timeout_s=2.0, retries=2, backoff_s=0.5)
        assert isinstance(result, QueryError), result
        assert not result.transient
        assert time.monotonic() - started < 1.0  # not retried
    result = query(stack, "sum(rate(vllm:request_success_total[1m]")
    assert isinstance(result, QueryError)
    assert "parse error" in result.message  # Prometheus's own message


def test_paused_prometheus_is_a_transient_error_within_the_deadline(stack: Stack) -> None:
    promql = q.requests_increase(NS, MODEL, STABLE, WINDOW_S)
    value_of(stack, promql)
    stack.prometheus.pause()
    try:
        started = time.monotonic()
        result = query(stack, promql, timeout_s=1.0, retries=1, backoff_s=0.2)
        elapsed = time.monotonic() - started
    finally:
        stack.prometheus.resume()
    assert isinstance(result, QueryError), result
    assert result.transient
    assert "did not answer" in result.message
    assert elapsed <= 1.0 * 2 + 0.5  # timeout_s * (retries + 1), plus scheduling slack
    value_of(stack, promql)  # answers again once continued


def test_stopped_prometheus_is_a_transient_error_and_a_restart_keeps_the_data(stack: Stack) -> None:
    stop_reason = 'finished_reason="stop"'
    series = f"vllm:request_success_total{q.revision_selector(NS, MODEL, STABLE, stop_reason)}"
    promql = f"sum({series})"
    value_of(stack, promql)
    before_stop = datetime.now(UTC)
    old_pid = stack.prometheus.pid
    stack.prometheus.stop()
    assert not pid_alive(old_pid)
    started = time.monotonic()
    result = query(stack, promql, timeout_s=1.0, retries=2, backoff_s=0.1)
    assert isinstance(result, QueryError), result
    assert result.transient
    assert "cannot reach" in result.message
    assert time.monotonic() - started < 3.0

    stack.prometheus.start()  # same port, same TSDB
    assert stack.prometheus.pid != old_pid
    # Samples scraped before the stop are still there. A range function, not the instant value: a
    # scrape that timed out across the earlier pause may leave a staleness marker as the latest sample.
    kept = query(stack, f"count_over_time({series}[1m])", at=before_stop)
    assert isinstance(kept, Value), kept
    assert kept.single() >= WINDOW_S
    value_of(stack, q.requests_increase(NS, MODEL, STABLE, WINDOW_S))  # and scraping goes on


def test_the_analyzer_gathers_custom_checks_and_http_errors_from_real_series(stack: Stack) -> None:
    """The templates are filled per revision and answered by the real Prometheus: one value each for
    canary and stable; a query giving several series is an error naming the count; a configured
    5xx query adds to the sample's failures (here the `stop` finishes stand in for a gateway's 5xx)."""
    selector = 'namespace="{{ namespace }}",nlpmodel_model="{{ model }}",nlpmodel_revision="{{ revision }}"'
    rate = CustomMetric.model_validate(
        {
            "name": "request-rate",
            "query": f"sum(rate(vllm:request_success_total{{{selector}}}[{{{{ interval }}}}]))",
            "thresholdRange": {"max": 1000},
        }
    )
    per_reason = CustomMetric.model_validate(
        {
            "name": "per-reason",
            "query": f"sum by (finished_reason) (vllm:request_success_total{{{selector}}})",
            "thresholdRange": {"min": 0},
        }
    )
    stops = (
        f'sum(increase(vllm:request_success_total{{{selector},finished_reason="stop"}}[{{{{ interval }}}}]))'
    )
    request = CheckRequest(STABLE, CANARY, WINDOW_S, (rate, per_reason), stops)

    async def gather() -> CheckData:
        async with PrometheusProvider(stack.prometheus.url) as provider:
            return await Analyzer(provider, scrape_interval_s=1).gather(NS, MODEL, request)

    data = wait_for("samples for both revisions", lambda: (d := asyncio.run(gather())).stable and d, 20)
    assert data.problem is None
    assert data.canary is not None
    assert data.stable is not None
    # vLLM's token series come along (the cost SLOs), with one model server scraped per revision.
    for sample in (data.canary, data.stable):
        assert sample.servers == 1
        assert sample.tokens is not None
        assert sample.tokens.prompt_tokens > 0
        assert sample.tokens.generation_tokens > 0
        assert sample.tokens.requests > 0
    assert data.window_s == WINDOW_S + 1
    by_name = {value.name: value for value in data.custom}
    assert by_name["request-rate"].problem is None
    assert (by_name["request-rate"].canary or 0) > 0
    assert (by_name["request-rate"].stable or 0) > 0
    assert f"returned {len(FINISHED_REASONS)} series" in (by_name["per-reason"].problem or "")
    # Most synthetic requests finish with `stop`: counted as 5xx, they are most of the failures.
    assert (data.canary.http_5xx or 0) > data.canary.requests / 2
    assert data.canary.bad > data.canary.errors
