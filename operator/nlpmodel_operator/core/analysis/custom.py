"""Custom checks (`spec.rollout.analysis.metrics[]`): a team's own PromQL signal and its bounds (pure).

Same rules as the SLO judge: only a value can pass or fail; a query that matched nothing, returned
NaN, or could not be answered is inconclusive or an error, never a verdict on the canary. The stable's
value, when there is one, is shown beside the canary's so a reader can tell a bad canary from a bad
signal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from nlpmodel_operator.api.spec import CustomMetric
from nlpmodel_operator.api.status import CheckVerdict

__all__ = ["SEVERITY", "CustomValue", "CustomVerdict", "combine", "judge_custom"]

# How much each result weighs when several checks make one verdict: any fail fails the check, else any
# error or inconclusive part keeps it from passing.
SEVERITY: Final[Mapping[CheckVerdict, int]] = {"pass": 0, "inconclusive": 1, "error": 2, "fail": 3}


@dataclass(frozen=True)
class CustomValue:
    """What the shell gathered for one custom metric: the revisions' values, or why there is none."""

    name: str
    canary: float | None = None  # None: the query matched nothing
    stable: float | None = None
    problem: str | None = None  # the provider could not answer, or the answer was not one value


@dataclass(frozen=True)
class CustomVerdict:
    name: str
    result: CheckVerdict
    message: str


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def judge_custom(metric: CustomMetric, gathered: CustomValue | None) -> CustomVerdict:
    name, bounds = metric.name, metric.threshold_range
    if gathered is None or gathered.problem is not None:
        why = gathered.problem if gathered is not None else "not queried"
        return CustomVerdict(name, "error", f"{name}: {why}")
    value = gathered.canary
    if value is None:
        return CustomVerdict(name, "inconclusive", f"{name}: no data for the canary")
    if math.isnan(value):
        return CustomVerdict(name, "inconclusive", f"{name}: NaN for the canary (nothing in the window?)")
    stable = "" if gathered.stable is None else f" (stable {_fmt(gathered.stable)})"
    if bounds.min is not None and value < bounds.min:
        return CustomVerdict(name, "fail", f"{name} {_fmt(value)} < min {_fmt(bounds.min)}{stable}")
    if bounds.max is not None and value > bounds.max:
        return CustomVerdict(name, "fail", f"{name} {_fmt(value)} > max {_fmt(bounds.max)}{stable}")
    return CustomVerdict(name, "pass", f"{name} {_fmt(value)}{stable}")


def combine(
    slo_result: CheckVerdict, slo_message: str, customs: Iterable[CustomVerdict]
) -> tuple[CheckVerdict, str]:
    """One check's verdict from the SLO judge's and the custom checks': the worst result, with the
    messages of the parts that gave it (for a pass, every part)."""
    parts = [(slo_result, slo_message), *((c.result, c.message) for c in customs)]
    worst = max((result for result, _ in parts), key=SEVERITY.__getitem__)
    messages = [message for result, message in parts if result == worst]
    return worst, "; ".join(m for m in messages if m)
