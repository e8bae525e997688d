"""Analysis checks in the rollout (pure): when one is due, and what its verdict does.

The shell asks `check_request(spec, status, now)`; when a check is due it queries the metrics of the
canary and the stable revision over the interval and hands back a `CheckData`. `record_check` turns
that into a verdict (the sequential judge) and updates the analysis state kept in `status.analysis`:

- the SLO judge's evidence accumulates across checks (`status.analysis.evidence`, written in the same
  status update as the check, so a restart neither loses nor repeats one); the check at which it
  rejects an objective rolls back at once (reason AnalysisFailed, with the metric, the estimate and
  the always-valid p-value): its false-rollback bound already holds over the whole rollout, so a
  repetition would only delay a clear regression;
- `failureThreshold` consecutive failed checks → rollback: what still fails check by check are the
  custom checks (a threshold on one value);
- a pass resets the failed count and counts towards the step (a step advances only once its pause has
  elapsed and it has a passed check and no pending fail); it never resets the evidence;
- inconclusive checks (too few requests) and errors (no data, Prometheus unreachable) are neither: they
  never pass or fail anything, and when no check has been conclusive for `inconclusiveDeadline` the
  rollout is aborted with reason AnalysisUnavailable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nlpmodel_operator.api.constants import Reason
from nlpmodel_operator.api.spec import CustomMetric, NLPModelSpec
from nlpmodel_operator.api.status import (
    AnalysisStatus,
    CheckRecord,
    CheckVerdict,
    NLPModelStatus,
    read_status,
)
from nlpmodel_operator.api.units import format_time, parse_duration, parse_time
from nlpmodel_operator.core.analysis.custom import CustomValue, combine, judge_custom
from nlpmodel_operator.core.analysis.judge import Objectives, RevisionSample
from nlpmodel_operator.core.analysis.sequential import CONFIDENCE, COST_TESTS, CostContext, sequential_judge
from nlpmodel_operator.core.conditions import MAX_EVENT_MESSAGE, clip

LAST_CHECKS = 5


@dataclass(frozen=True)
class CheckRequest:
    """A check the shell should gather data for: both revisions over the last `window_s`."""

    stable: str
    canary: str
    window_s: float
    custom: tuple[CustomMetric, ...] = ()  # the spec's custom checks, queried for both revisions
    http_errors_query: str | None = None  # template counting a revision's HTTP 5xx, if configured


@dataclass(frozen=True)
class CheckData:
    """What the shell gathered: a sample per revision, or why there is none (never a verdict)."""

    canary: RevisionSample | None
    stable: RevisionSample | None
    problem: str | None = None
    custom: tuple[CustomValue, ...] = ()
    window_s: float | None = None  # the window the increases cover (the check interval + a scrape)


@dataclass(frozen=True)
class CheckOutcome:
    analysis: AnalysisStatus  # the new status.analysis
    verdict: CheckVerdict
    message: str
    rollback: tuple[str, str] | None = None  # (reason, message) when the analysis ends the rollout


def objectives(spec: NLPModelSpec) -> Objectives | None:
    analysis, slo = spec.rollout.analysis, spec.rollout.slo
    if analysis is None or slo is None:
        return None
    return Objectives.from_spec(
        slo.model_dump(by_alias=True), analysis.model_dump(by_alias=True), confidence=CONFIDENCE
    )


def check_request(
    spec: NLPModelSpec, status: NLPModelStatus | Mapping[str, Any], now: datetime
) -> CheckRequest | None:
    """A check is due while a canary takes traffic at a step and the interval since the last passed."""
    analysis = spec.rollout.analysis
    observed = read_status(status)
    stable, canary = observed.stable_revision, observed.canary_revision
    if analysis is None or spec.rollout.strategy != "canary" or not stable or not canary:
        return None
    if observed.step_started_at is None:
        return None  # the canary takes no traffic yet
    if observed.rollout_stage(len(spec.rollout.steps)) != "Progressing":
        return None  # paused, or being promoted: no step to check
    interval = parse_duration(analysis.interval)
    last = parse_time(observed.analysis.last_check_at if observed.analysis else None)
    started = parse_time(observed.step_started_at)
    reference = last or started
    if reference is not None and (now - reference).total_seconds() < interval:
        return None
    return CheckRequest(stable, canary, interval, tuple(analysis.metrics), analysis.http_errors_query)


def record_check(
    spec: NLPModelSpec,
    analysis: AnalysisStatus | None,
    data: CheckData,
    now: datetime,
    traffic_since: datetime,
    cost: CostContext | None = None,
) -> CheckOutcome:
    """Judge one check and fold it into the analysis state (``cost``: the revisions' replicas and
    prices, for the cost objectives; the window is the check's)."""
    goals = objectives(spec)
    settings = spec.rollout.analysis
    assert goals is not None
    assert settings is not None
    previous = analysis or AnalysisStatus()
    failed, inconclusive, passed = previous.failed_checks, previous.inconclusive, previous.passed_checks
    last_conclusive = previous.last_conclusive_at
    evidence = previous.evidence
    slo_failures: tuple[str, ...] = ()
    failed_tests: tuple[str, ...] = ()
    verdict: CheckVerdict
    if data.problem is not None or data.canary is None:
        verdict, message = "error", data.problem or "no metrics for the canary"
    else:
        if cost is not None and data.window_s is not None:
            cost = CostContext(cost.canary, cost.stable, data.window_s, cost.currency)
        result = sequential_judge(data.canary, data.stable, goals, previous.evidence, cost=cost)
        evidence = list(result.evidence)
        slo_failures = result.failures
        failed_tests = result.failed_tests
        gathered = {value.name: value for value in data.custom}
        verdict, message = combine(
            result.result,
            "; ".join(result.failures) if result.failures else result.summary,
            (judge_custom(metric, gathered.get(metric.name)) for metric in settings.metrics),
        )
    if verdict == "fail":
        failed += 1
        last_conclusive = format_time(now)
    elif verdict == "pass":
        failed, inconclusive, passed = 0, 0, passed + 1
        last_conclusive = format_time(now)
    else:
        inconclusive += 1
    record = CheckRecord(at=format_time(now), verdict=verdict, summary=clip(message, MAX_EVENT_MESSAGE))
    state = AnalysisStatus(
        failed_checks=failed,
        inconclusive=inconclusive,
        passed_checks=passed,
        last_check_at=format_time(now),
        last_checks=[*previous.last_checks, record][-LAST_CHECKS:],
        last_conclusive_at=last_conclusive or None,
        evidence=evidence,
    )
    rollback = None
    if slo_failures:
        # Only cost objectives failed: a canary that is as good but dearer, said so by its reason.
        only_cost = bool(failed_tests) and all(test in COST_TESTS for test in failed_tests)
        rollback = (Reason.COST_REGRESSION if only_cost else Reason.ANALYSIS_FAILED, message)
    elif failed >= settings.failure_threshold:
        rollback = (Reason.ANALYSIS_FAILED, f"{failed} consecutive failed checks: {message}")
    else:
        since = parse_time(last_conclusive) or traffic_since
        if (now - since).total_seconds() > parse_duration(settings.inconclusive_deadline):
            rollback = (
                Reason.ANALYSIS_UNAVAILABLE,
                f"no conclusive check for {settings.inconclusive_deadline} (last: {verdict}: {message})",
            )
    return CheckOutcome(state, verdict, message, rollback)


def step_may_advance(spec: NLPModelSpec, analysis: AnalysisStatus | None) -> bool:
    """Without analysis a step advances by time alone; with it, it also needs a pass and no pending fail."""
    if spec.rollout.analysis is None:
        return True
    return analysis is not None and analysis.passed_checks >= 1 and analysis.failed_checks == 0
