"""PromQL builders for the SLO analysis: exact query text, label escaping, the vLLM metric names."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from nlpmodel_operator.core.analysis import queries as q

NS, MODEL, REV = "team-a", "chat", "1a2b3c4d"
SEL = '{namespace="team-a",nlpmodel_model="chat",nlpmodel_revision="1a2b3c4d"}'
FACTS = json.loads(
    (Path(__file__).resolve().parents[2] / "operator/nlpmodel_operator/data/vllm-0.33.0-cli.json").read_text()
)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (
            lambda: q.histogram_increase(q.TTFT_SECONDS, NS, MODEL, REV, 60),
            f"sum by (le) (increase(vllm:time_to_first_token_seconds_bucket{SEL}[60s]))",
        ),
        (
            lambda: q.histogram_increase("vllm:inter_token_latency_seconds_bucket", NS, MODEL, REV, 300),
            f"sum by (le) (increase(vllm:inter_token_latency_seconds_bucket{SEL}[300s]))",
        ),
        (
            lambda: q.histogram_increase(q.E2E_SECONDS, NS, MODEL, REV, 1.5),
            f"sum by (le) (increase(vllm:e2e_request_latency_seconds_bucket{SEL}[1500ms]))",
        ),
        (
            lambda: q.histogram_increase(q.TTFT_SECONDS, NS, MODEL, REV, 120.0),
            f"sum by (le) (increase(vllm:time_to_first_token_seconds_bucket{SEL}[120s]))",
        ),
        (
            lambda: q.histogram_sum_increase(q.TTFT_SECONDS, NS, MODEL, REV, 75),
            f"sum(increase(vllm:time_to_first_token_seconds_sum{SEL}[75s]))",
        ),
        (
            lambda: q.histogram_quantile(0.95, q.TTFT_SECONDS, NS, MODEL, REV, 60),
            f"histogram_quantile(0.95, sum by (le) (increase(vllm:time_to_first_token_seconds_bucket{SEL}[60s])))",
        ),
        (
            lambda: q.requests_increase(NS, MODEL, REV, 60),
            f"sum(increase(vllm:request_success_total{SEL}[60s]))",
        ),
        (
            lambda: q.errors_increase(NS, MODEL, REV, 60),
            'sum(increase(vllm:request_success_total{namespace="team-a",nlpmodel_model="chat",'
            'nlpmodel_revision="1a2b3c4d",finished_reason=~"error|abort"}[60s]))',
        ),
        (lambda: q.queue_depth(NS, MODEL, REV), f"sum(vllm:num_requests_waiting{SEL})"),
        (lambda: q.kv_cache_usage(NS, MODEL, REV), f"max(vllm:kv_cache_usage_perc{SEL})"),
    ],
    ids=[
        "ttft-increase",
        "bucket-suffix-accepted",
        "sub-second-window",
        "float-whole-seconds",
        "sum-increase",
        "quantile",
        "requests",
        "errors",
        "queue",
        "kv-cache",
    ],
)
def test_query_text(build: Callable[[], str], expected: str) -> None:
    assert build() == expected


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("plain", "plain"),
        ('say "hi"', 'say \\"hi\\"'),
        ("back\\slash", "back\\\\slash"),
        ("new\nline\ttab\rcr", "new\\nline\\ttab\\rcr"),
        ("bell\x07del\x7f", "bell\\x07del\\x7f"),
        ("ünïcode-✓", "ünïcode-✓"),
        ('"}[5m])) or vector(1) #', '\\"}[5m])) or vector(1) #'),
    ],
)
def test_escape_label_value(value: str, escaped: str) -> None:
    assert q.escape_label_value(value) == escaped
    # The escaped value sits inside a selector without ending the string literal early.
    query = q.queue_depth(value, MODEL, REV)
    assert (
        query
        == f'sum(vllm:num_requests_waiting{{namespace="{escaped}",nlpmodel_model="chat",nlpmodel_revision="1a2b3c4d"}})'
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: q.histogram_increase("vllm:ttft seconds", NS, MODEL, REV, 60), "metric name"),
        (lambda: q.histogram_increase(q.TTFT_SECONDS, NS, MODEL, REV, 0), "at least 1ms"),
        (lambda: q.histogram_increase(q.TTFT_SECONDS, NS, MODEL, REV, -5), "at least 1ms"),
        (lambda: q.histogram_increase(q.TTFT_SECONDS, NS, MODEL, REV, float("inf")), "finite"),
        (lambda: q.requests_increase(NS, MODEL, REV, True), "finite"),
        (lambda: q.requests_increase("", MODEL, REV, 60), "namespace must not be empty"),
        (lambda: q.requests_increase(NS, MODEL, "", 60), "revision must not be empty"),
        (lambda: q.histogram_quantile(1.5, q.TTFT_SECONDS, NS, MODEL, REV, 60), "quantile"),
    ],
)
def test_rejects(build: Callable[[], str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_metric_names_are_vllm_0_33s() -> None:
    listed = set(FACTS["metrics"])
    for name in (
        q.TTFT_SECONDS,
        q.ITL_SECONDS,
        q.NUM_REQUESTS_RUNNING,
        q.NUM_REQUESTS_WAITING,
        q.KV_CACHE_USAGE,
    ):
        assert name in listed
    # Counters are listed without the _total suffix they are exposed with.
    assert q.REQUEST_SUCCESS_TOTAL.removesuffix("_total") in listed
    assert set(q.ERROR_REASONS) <= set(FACTS["metric_labels"]["finished_reason_values"])


def test_target_labels_do_not_clash_with_vllms_labels() -> None:
    vllm_labels = set(FACTS["metric_labels"]["vllm:request_success"]) | {"le"}
    target = {q.TARGET_LABEL_NAMESPACE, q.TARGET_LABEL_MODEL, q.TARGET_LABEL_REVISION}
    assert not target & vllm_labels
