"""Custom checks (`spec.rollout.analysis.metrics[]`): templates, verdicts, and their part in a check."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from nlpmodel_operator.api.spec import Analysis, CustomMetric, NLPModelSpec
from nlpmodel_operator.api.status import to_json
from nlpmodel_operator.api.units import format_time
from nlpmodel_operator.core.analysis.checks import CheckData, check_request, record_check
from nlpmodel_operator.core.analysis.custom import CustomValue, CustomVerdict, combine, judge_custom
from nlpmodel_operator.core.analysis.judge import Histogram, RevisionSample
from nlpmodel_operator.core.analysis.queries import custom_query

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
QUALITY = CustomMetric.model_validate(
    {
        "name": "answer-quality",
        "query": 'avg(answer_quality{namespace="{{ namespace }}",rev="{{ revision }}"}[{{ interval }}])',
        "thresholdRange": {"min": 0.8},
    }
)
LATENCY = CustomMetric.model_validate(
    {"name": "judge-latency", "query": 'max(x{r="{{revision}}"})', "thresholdRange": {"min": 0, "max": 2.5}}
)


@pytest.mark.parametrize(
    ("metric", "gathered", "result", "message"),
    [
        (QUALITY, CustomValue("answer-quality", 0.91, 0.9), "pass", "answer-quality 0.91 (stable 0.9)"),
        (QUALITY, CustomValue("answer-quality", 0.8), "pass", "answer-quality 0.8"),
        (
            QUALITY,
            CustomValue("answer-quality", 0.62, 0.85),
            "fail",
            "answer-quality 0.62 < min 0.8 (stable 0.85)",
        ),
        (LATENCY, CustomValue("judge-latency", 3.125), "fail", "judge-latency 3.125 > max 2.5"),
        (LATENCY, CustomValue("judge-latency", -1.0), "fail", "judge-latency -1 < min 0"),
        (QUALITY, CustomValue("answer-quality", None, 0.9), "inconclusive", "answer-quality: no data"),
        (QUALITY, CustomValue("answer-quality", float("nan")), "inconclusive", "answer-quality: NaN"),
        (
            QUALITY,
            CustomValue("answer-quality", problem="query failed: 400 bad_data"),
            "error",
            "answer-quality: query failed: 400 bad_data",
        ),
        (QUALITY, None, "error", "answer-quality: not queried"),
    ],
)
def test_a_custom_check_passes_only_on_a_value_within_its_bounds(
    metric: CustomMetric, gathered: CustomValue | None, result: str, message: str
) -> None:
    verdict = judge_custom(metric, gathered)
    assert verdict.result == result
    assert verdict.message.startswith(message)


@pytest.mark.parametrize(
    ("slo", "customs", "expected"),
    [
        (("pass", "pass: ttft ok"), [("pass", "q 0.9")], ("pass", "pass: ttft ok; q 0.9")),
        (("pass", "pass: ttft ok"), [("fail", "q 0.1 < min 0.8")], ("fail", "q 0.1 < min 0.8")),
        (("fail", "ttft p95 2s > slo 1s"), [("fail", "q 0.1")], ("fail", "ttft p95 2s > slo 1s; q 0.1")),
        (("inconclusive", "too few"), [("fail", "q 0.1")], ("fail", "q 0.1")),
        (("pass", "pass: ok"), [("inconclusive", "q: no data")], ("inconclusive", "q: no data")),
        (("pass", "pass: ok"), [("inconclusive", "q: no data"), ("error", "r: 400")], ("error", "r: 400")),
        (("pass", "pass: ok"), [], ("pass", "pass: ok")),
    ],
)
def test_one_verdict_per_check_the_worst_part_wins(
    slo: tuple[str, str], customs: list[tuple[str, str]], expected: tuple[str, str]
) -> None:
    assert combine(*slo, [CustomVerdict("x", r, m) for r, m in customs]) == expected


def test_templates_are_filled_with_escaped_values_and_the_window() -> None:
    query = custom_query(QUALITY.query, 'we"ird', "chat", "ca4a2700", 75)
    assert query == 'avg(answer_quality{namespace="we\\"ird",rev="ca4a2700"}[75s])'
    assert custom_query(LATENCY.query, "ml", "chat", "ca4a2700", 0.5) == 'max(x{r="ca4a2700"})'


@pytest.mark.parametrize(
    ("metrics", "problem"),
    [
        (
            [{"name": "q", "query": 'x{r="{{ revison }}"}', "thresholdRange": {"min": 1}}],
            "unknown placeholder",
        ),
        ([{"name": "q", "query": "x", "thresholdRange": {"min": 1}}], "{{ revision }}"),
        (
            [
                {"name": "q", "query": 'x{r="{{ revision }}"}', "thresholdRange": {"min": 1}},
                {"name": "q", "query": 'y{r="{{ revision }}"}', "thresholdRange": {"max": 1}},
            ],
            "unique",
        ),
        ([{"name": "Q!", "query": 'x{r="{{ revision }}"}', "thresholdRange": {"min": 1}}], "pattern"),
    ],
)
def test_bad_custom_metrics_are_rejected_with_the_reason(metrics: list[dict[str, Any]], problem: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        Analysis.model_validate({"metrics": metrics})


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        (
            'sum(x{rev="{{ revision }}", w="{{ window }}"})',
            "httpErrorsQuery uses unknown placeholder(s) window",
        ),
        ("sum(x)", "httpErrorsQuery must select a revision with {{ revision }}"),
    ],
)
def test_a_bad_http_errors_query_is_rejected_with_the_reason(query: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        Analysis.model_validate({"httpErrorsQuery": query})


def spec(*metrics: CustomMetric) -> NLPModelSpec:
    return NLPModelSpec.model_validate(
        {
            "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "rollout": {
                "analysis": {
                    "interval": "30s",
                    "minRequests": 50,
                    "failureThreshold": 2,
                    "metrics": [m.model_dump(by_alias=True, exclude_none=True) for m in metrics],
                },
                "slo": {"ttftP95": "800ms"},
            },
        }
    )


FAST = RevisionSample(
    ttft=Histogram((0.25, 0.5, float("inf")), (300.0, 400.0, 400.0)),
    itl=None,
    e2e=None,
    requests=400,
    errors=0,
)


def test_the_check_asks_for_the_custom_queries_of_the_spec() -> None:
    status = {
        "stableRevision": "5ab1e000",
        "canaryRevision": "ca4a2700",
        "currentStep": 0,
        "stepStartedAt": format_time(T0),
    }
    request = check_request(spec(QUALITY, LATENCY), status, T0 + timedelta(seconds=30))
    assert request is not None
    assert [m.name for m in request.custom] == ["answer-quality", "judge-latency"]


def test_a_failing_custom_check_rolls_back_a_canary_that_meets_its_slos() -> None:
    data = CheckData(FAST, FAST, custom=(CustomValue("answer-quality", 0.62, 0.85),))
    first = record_check(spec(QUALITY), {}, data, T0, T0)
    assert (first.verdict, first.rollback) == ("fail", None)
    second = record_check(spec(QUALITY), first.analysis, data, T0 + timedelta(seconds=30), T0)
    assert second.rollback is not None
    reason, message = second.rollback
    assert reason == "AnalysisFailed"
    assert "answer-quality 0.62 < min 0.8 (stable 0.85)" in message


def test_a_custom_query_without_data_keeps_the_canary_from_passing() -> None:
    data = CheckData(FAST, FAST, custom=(CustomValue("answer-quality", None),))
    outcome = record_check(spec(QUALITY), {}, data, T0, T0)
    assert outcome.verdict == "inconclusive"
    assert to_json(outcome.analysis)["passedChecks"] == 0
    assert to_json(outcome.analysis)["failedChecks"] == 0
