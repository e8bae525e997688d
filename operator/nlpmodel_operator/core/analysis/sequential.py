"""The sequential SLO judge (pure): evidence that accumulates across checks, always-valid decisions.

The per-check judge (:mod:`judge`) tests each check alone and needs ``failureThreshold`` consecutive
fails; a regression that is clear over three checks together but not within each is never acted on,
and its false-rollback bound is per run of checks, so it grows with the length of the rollout. This
judge keeps, per objective, an **e-process**: a non-negative number that starts at 1, is multiplied
by one e-value per check, and under the objective's null hypothesis never grows in expectation. By
Ville's inequality the chance that it *ever* reaches ``1 / alpha`` is at most ``alpha``, whatever
the number of checks and whenever one looks; a rollback is taken at the first check where it does
(``alpha = 1 - Objectives.confidence``; the operator uses :data:`CONFIDENCE`, 0.95).
``1 / max(e-process so far)`` is an always-valid p-value (Lindon, Sanden & Shirikian, KDD 2022;
Ramdas et al., "Game-theoretic statistics and safe anytime-valid inference", 2023).

Null hypotheses (one per objective, each tested one-sided, "the canary is bad")
-------------------------------------------------------------------------------
* ``<metric> regression``: in every interval, the canary's latency is stochastically no slower than
  the stable's stretched by ``1 + maxRegression`` (the tolerance). Per check the statistic is the
  Simes combination (:func:`regression_z`) of three tests of that null: the Mann-Whitney U test of
  the per-check judge (binned, ties, null tie variance), the scale score test
  (:func:`~nlpmodel_operator.core.analysis.judge.scale_score`) and, where the histograms' ``_sum``
  series are known, the Welch test of the exact means. Both rank tests stretch the stable through a
  CDF interpolated by a monotone cubic in log(latency) (``Histogram.smooth_count_below``), not
  uniformly within buckets: on a bimodal TTFT, uniform spreading put the stretched stable's short
  mode partly in the next bucket and hid a +50 % regression in that blur (``bench/judge``, shape
  ``bimodal``: 59 % caught within three checks at a 50 % step; 99 % now). The z-score is capped at
  :data:`REGRESSION_Z_CAP` (a smaller z keeps every e-value valid): one interval never decides a
  regression against stable alone (a minute of load on the canary's pods, independent of the
  stable's, can look like one; ``bench/judge`` shape ``drift``); the absolute SLO and error tests
  are not capped, so a canary that breaks its SLO outright is rolled back at its first check.
* ``<metric> p95 slo``: in every interval at most 5 % of the canary's requests are slower than the
  SLO. Per check: the exact binomial p-value of the per-check judge, turned into ``z = Phi^-1(1 - p)``.
* ``error rate slo``: in every interval the canary's error rate is at most the SLO (exact binomial).
* ``error rate regression``: in every interval the canary's error rate is at most
  ``(1 + maxRegression)`` times the stable's (the exact conditional test of two Poisson rates).

Under each null (at its boundary, and a fortiori inside it), a check's z-score is stochastically no
larger than a standard normal, *conditionally on everything before the check*: the requests of an
interval are only compared with the other revision's requests of the same interval. Any e-value
that is an increasing function of z with expectation 1 under N(0, 1) therefore has expectation at
most 1 given the past, and the product over checks is a test supermartingale.

The e-process of one objective
------------------------------
``E_t = w * A_t + (1 - w) * B_t`` (w = 1/2), a mixture of two test supermartingales:

* ``B_t``, the betting part, for rollouts of any length: ``prod_s exp(lambda_s * z_s - lambda_s^2 / 2)``,
  a bet on each check's z whose size ``lambda_s`` is fixed before the check is seen (predictable):
  1 on the first check, then the mean of the last two z-scores, clipped to [0, 2] (a plug-in
  estimate of the drift, as in betting-based confidence sequences). A healthy canary's z-scores are
  negative, so it bets 0 and its evidence stays put instead of sinking: a regression that starts
  after thirty healthy checks (say at the 50 % step) is caught within a few checks, where a fixed
  mixture of bets (an mSPRT) would first have to climb out of thirty checks of evidence against it.
* ``A_t``, the fixed-horizon part, puts the other half of the budget on the first ``H = 3`` checks
  that carry evidence: the one-sided z-test of ``S_H = z_1 + ... + z_H >= c_H`` at level ``w * alpha``,
  written as the martingale ``A_t = P0(S_H >= c_H | S_t) / (w * alpha)`` (a Gaussian tail for
  ``t < H``, then frozen at 0 or ``1 / (w * alpha)``). It is what makes a clear regression stop
  within three checks: at t = H it alone rejects exactly when the pooled z-test would at ``w *
  alpha``, and no always-valid sequence of bets gets close to that with three looks.

Evidence per check, not pooled counts: each check's z is computed within its own interval, so load
that moves both revisions from window to window (independently) changes which intervals are
informative but never makes intervals look like one big i.i.d. sample (pooling counts across
intervals would, and its variance would be too small by the between-interval variance). A drift that
makes one interval's canary genuinely slower than the tolerance is, for that interval, a violation of
the null; bets bounded by 2 and sized on the previous checks keep a single such interval from
deciding alone unless it is far beyond the tolerance (``bench/judge`` measures it, shape ``drift``).

Where evidence starts afresh
----------------------------
* A new canary revision: its analysis status starts empty (the rollout does that).
* An objective whose limit changed (an edited SLO or ``maxRegression``): the old z-scores answered
  another question, so that objective's evidence is dropped.
* Not at a step change: each check's z is standardized within its interval, whatever the traffic
  split, so the statistics do not need it, and evidence gathered at 10 % is kept at 50 %.

Assumptions (in addition to the per-check judge's: requests independent within an interval, uniform
within a bucket, ITL counted once per request, Poisson errors): the normal approximation of U (and
of ``Phi^-1`` of an exact p-value, which is conservative for discrete tests); the decision to skip a
check (too few requests, no data) does not depend on the latencies of that check. The bound is per
objective: a canary at the boundary of k objectives at once is rolled back with probability at most
``k * alpha``; a healthy canary sits far inside each null and is rolled back far more rarely
(``bench/judge``).

State: :class:`ObjectiveEvidence` in ``status.analysis.evidence``, a dozen numbers per objective,
updated in the same status write as the check itself (so a restart neither loses nor repeats one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from statistics import NormalDist
from types import MappingProxyType
from typing import Final

from nlpmodel_operator.api.status import CheckVerdict, ObjectiveEvidence
from nlpmodel_operator.core.analysis.cost import (
    PER_MILLION,
    LogEstimate,
    RevisionPricing,
    TokenSample,
    absolute_cost,
    cost_ratio,
    counted,
    measure,
    price_ratio,
    prompt_ratio,
    z_score,
)
from nlpmodel_operator.core.analysis.judge import (
    METRICS,
    Histogram,
    Metric,
    Objectives,
    RevisionSample,
    _effective,
    _fmt_n,
    _fmt_pct,
    _fmt_seconds,
    _fmt_share,
    _mann_whitney,
    _quantile_label,
    binomial_sf,
    mean_excess,
    normal_sf,
    scale_score,
    verdict_summary,
)

__all__ = [
    "CONFIDENCE",
    "COST_TESTS",
    "HORIZON",
    "CostContext",
    "SequentialVerdict",
    "always_valid_p",
    "log_e_value",
    "next_bet",
    "regression_z",
    "sequential_judge",
    "simes_z",
    "update",
]

# The operator's confidence of a rollback: at the boundary of an objective (a canary exactly
# maxRegression slower, or exactly at the SLO) at most 5 % of rollouts are rolled back, however long.
CONFIDENCE: Final = 0.95
FIRST_BET: Final = 1.0
MAX_BET: Final = 2.0
BET_MEMORY: Final = 2  # z-scores that size the next bet (status.analysis.evidence[].recentZ)
HORIZON: Final = 3
HORIZON_WEIGHT: Final = 0.5
# Bounds for a z-score from a p-value of 0 or 1 (a discrete test): far beyond any decision.
_Z_CAP: Final = 40.0
_STANDARD: Final = NormalDist()
_EMPTY: Final[Mapping[str, float]] = MappingProxyType({})
# The cost objectives' tests: a rollback on these alone has reason CostRegression.
COST_REGRESSION_TEST: Final = "cost regression"
COST_SLO_TEST: Final = "cost slo"
PROMPT_REGRESSION_TEST: Final = "prompt tokens regression"
COST_TESTS: Final = frozenset({COST_REGRESSION_TEST, COST_SLO_TEST, PROMPT_REGRESSION_TEST})
# Range and precision of the Hodges-Lehmann ratio search (explanations only, never decisions).
_RATIO_RANGE: Final = (0.05, 20.0)
_RATIO_STEPS: Final = 18
# Below the z at which one fresh check alone reaches 1/alpha (about 3.45 at confidence 0.95).
REGRESSION_Z_CAP: Final = 2.5


def z_of_p(p: float) -> float:
    """The one-sided z-score of a p-value (P(Z >= z) = p), bounded for p of 0 or 1."""
    if p <= 0.0:
        return _Z_CAP
    if p >= 1.0:
        return -_Z_CAP
    return max(-_Z_CAP, min(_Z_CAP, -_STANDARD.inv_cdf(p)))


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


@lru_cache(maxsize=32)
def _horizon_threshold(alpha: float) -> float:
    return math.sqrt(HORIZON) * -_STANDARD.inv_cdf(HORIZON_WEIGHT * alpha)


def log_e_value(evidence: ObjectiveEvidence, alpha: float) -> float:
    """log of the objective's e-process after ``evidence.checks`` checks (0 before any)."""
    return _log_e(evidence.checks, evidence.log_bet, evidence.horizon_z_sum, alpha)


def _log_e(checks: int, log_bet: float, horizon_z_sum: float, alpha: float) -> float:
    parts = [math.log1p(-HORIZON_WEIGHT) + log_bet]
    # The fixed-horizon z-test over the first HORIZON checks, as a martingale.
    threshold = _horizon_threshold(alpha)
    seen = min(checks, HORIZON)
    if seen < HORIZON:
        tail = normal_sf((threshold - horizon_z_sum) / math.sqrt(HORIZON - seen))
    else:
        tail = 1.0 if horizon_z_sum >= threshold else 0.0
    if tail > 0:
        parts.append(math.log(HORIZON_WEIGHT) + math.log(tail) - math.log(HORIZON_WEIGHT * alpha))
    return _logsumexp(parts)


def next_bet(evidence: ObjectiveEvidence) -> float:
    """The bet on the next check's z, from the checks before it only (so the product stays valid)."""
    if not evidence.recent_z:
        return FIRST_BET
    drift = sum(evidence.recent_z) / len(evidence.recent_z)
    return max(0.0, min(MAX_BET, drift))


def always_valid_p(evidence: ObjectiveEvidence) -> float:
    """1 / the largest e-value so far (capped at 1): valid whenever it is looked at."""
    return min(1.0, math.exp(-max(0.0, evidence.max_log_e)))


def update(
    evidence: ObjectiveEvidence,
    z: float,
    alpha: float,
    *,
    n_canary: float = 0.0,
    n_stable: float = 0.0,
    k_canary: float = 0.0,
    k_stable: float = 0.0,
    log_ratio: float | None = None,
) -> ObjectiveEvidence:
    """The evidence after one more check with z-score ``z`` (and the counts it was computed from)."""
    z = max(-_Z_CAP, min(_Z_CAP, z))
    checks = evidence.checks + 1
    horizon_z = evidence.horizon_z_sum + (z if evidence.checks < HORIZON else 0.0)
    mean_ratio = evidence.log_ratio
    if log_ratio is not None:
        weight = n_canary
        before = evidence.n_canary if evidence.log_ratio is not None else 0.0
        total = before + weight
        mean_ratio = (
            log_ratio
            if evidence.log_ratio is None or total <= 0
            else (evidence.log_ratio * before + log_ratio * weight) / total
        )
    bet = next_bet(evidence)
    log_bet = evidence.log_bet + bet * z - bet * bet / 2.0
    return evidence.model_copy(
        update={
            "checks": checks,
            "log_bet": log_bet,
            "recent_z": [*evidence.recent_z, z][-BET_MEMORY:],
            "horizon_z_sum": horizon_z,
            "max_log_e": max(evidence.max_log_e, _log_e(checks, log_bet, horizon_z, alpha)),
            "n_canary": evidence.n_canary + n_canary,
            "n_stable": evidence.n_stable + n_stable,
            "k_canary": evidence.k_canary + k_canary,
            "k_stable": evidence.k_stable + k_stable,
            "log_ratio": mean_ratio,
        }
    )


# --------------------------------------------------------------------------------------------------
# The judge


@dataclass(frozen=True)
class SequentialVerdict:
    result: CheckVerdict
    failures: tuple[str, ...] = ()
    values: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    summary: str = ""
    evidence: tuple[ObjectiveEvidence, ...] = ()  # the state after this check, for the status
    failed_tests: tuple[str, ...] = ()  # the objectives that rejected (e.g. "ttft regression")

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))


@dataclass(frozen=True)
class CostContext:
    """What the cost objectives need beside the token counters: each revision's replica and its price
    (from the plans; ``stable`` None: unknown), the window the counters cover, the prices' currency."""

    canary: RevisionPricing
    stable: RevisionPricing | None
    window_s: float
    currency: str = "USD"


def _fmt_p(p: float) -> str:
    return "always-valid p<0.001" if p < 0.001 else f"always-valid p={p:.3f}"


def _over(checks: int) -> str:
    return f"over {checks} check" + ("" if checks == 1 else "s")


def _ratio_estimate(canary: Histogram, stable: Histogram) -> float | None:
    """Hodges-Lehmann-style ratio canary/stable: the stretch of stable at which U is balanced."""
    lo, hi = (math.log(x) for x in _RATIO_RANGE)
    if _mann_whitney(canary, stable, math.exp(lo), smooth=True)[0] <= 0:
        return None
    if _mann_whitney(canary, stable, math.exp(hi), smooth=True)[0] > 0:
        return None
    for _ in range(_RATIO_STEPS):
        mid = 0.5 * (lo + hi)
        if _mann_whitney(canary, stable, math.exp(mid), smooth=True)[0] > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass
class _Run:
    objectives: Objectives
    alpha: float
    previous: dict[str, ObjectiveEvidence]
    explain: bool
    evidence: dict[str, ObjectiveEvidence] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    failed_tests: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def fail(self, test: str, message: str) -> None:
        self.failed_tests.append(test)
        self.failures.append(message)

    def prior(self, test: str, limit: float) -> ObjectiveEvidence:
        old = self.previous.get(test)
        if old is not None and math.isclose(old.limit, limit, rel_tol=1e-9):
            return old
        return ObjectiveEvidence(test=test, limit=limit)

    def add(self, test: str, limit: float, z: float, **counts: float | None) -> ObjectiveEvidence:
        new = update(self.prior(test, limit), z, self.alpha, **counts)  # type: ignore[arg-type]
        self.evidence[test] = new
        key = test.replace(" ", "_")
        self.values[f"{key}_z"] = z
        self.values[f"{key}_p"] = always_valid_p(new)
        return new

    def rejects(self, evidence: ObjectiveEvidence) -> bool:
        return log_e_value(evidence, self.alpha) >= math.log(1.0 / self.alpha)


def sequential_judge(
    canary: RevisionSample,
    stable: RevisionSample | None,
    objectives: Objectives,
    evidence: Iterable[ObjectiveEvidence] = (),
    *,
    explain: bool = True,
    cost: CostContext | None = None,
) -> SequentialVerdict:
    """One check: fold it into the evidence so far and decide (see the module docstring).

    ``evidence`` is the state after the previous checks (``status.analysis.evidence``); the verdict
    carries the state after this one. ``explain=False`` skips the ratio estimates, which only feed
    the messages (the bench uses it: the decisions are the same).
    """
    obj = objectives
    previous = {e.test: e for e in evidence}
    if canary.total < obj.min_requests:
        values = {"n_canary": canary.total, "min_requests": float(obj.min_requests)}
        return SequentialVerdict(
            "inconclusive",
            values=values,
            summary=f"inconclusive: {_fmt_n(canary.total)} canary requests < minRequests {obj.min_requests}",
            evidence=tuple(previous.values()),
        )
    run = _Run(obj, 1.0 - obj.confidence, previous, explain)
    label = _quantile_label(obj.quantile)
    stretch = 1.0 + obj.max_regression
    n_c = canary.total
    stable_usable = stable is not None and stable.total >= obj.min_requests
    n_s = stable.total if stable is not None else None
    run.values.update({"n_canary": n_c, "alpha": run.alpha})
    if n_s is not None:
        run.values["n_stable"] = n_s
    parts: list[str] = []
    notes: list[str] = []
    if stable is not None and not stable_usable:
        notes.append(
            f"stable has {_fmt_n(stable.total)} requests < minRequests {obj.min_requests}: no regression tests"
        )
    for metric in METRICS:
        _judge_metric(run, metric, canary, stable if stable_usable else None, stable, label, stretch, parts)
    _judge_errors(run, canary, stable, stable_usable, stretch, parts)
    _judge_cost(run, canary, stable if stable_usable else None, cost, parts, notes)
    parts.append(f"n={_fmt_n(n_c)}" + (f"/{_fmt_n(n_s)}" if n_s is not None else ""))
    # Objectives not judged this check keep their evidence.
    state = {**previous, **run.evidence}
    strongest = min(state.values(), key=always_valid_p, default=None)
    if strongest is not None:
        parts.append(
            f"strongest evidence: {strongest.test} {_fmt_p(always_valid_p(strongest))} "
            f"{_over(strongest.checks)}"
        )
    result, summary = verdict_summary(run.failures, run.missing, parts, notes)
    return SequentialVerdict(
        result, tuple(run.failures), run.values, summary, tuple(state.values()), tuple(run.failed_tests)
    )


def _judge_metric(
    run: _Run,
    metric: Metric,
    canary: RevisionSample,
    stable: RevisionSample | None,
    stable_seen: RevisionSample | None,
    label: str,
    stretch: float,
    parts: list[str],
) -> None:
    obj = run.objectives
    slo = obj.slo(metric)
    raw = canary.histogram(metric)
    if raw is None or raw.total <= 0:
        if slo is not None:
            run.missing.append(metric)
        return
    ch = _effective(raw, canary.requests)
    p_c = raw.quantile(obj.quantile)
    run.values[f"{metric}_{label}_canary"] = p_c
    raw_s = stable_seen.histogram(metric) if stable_seen is not None else None
    p_s = math.nan
    if raw_s is not None and raw_s.total > 0:
        p_s = raw_s.quantile(obj.quantile)
        run.values[f"{metric}_{label}_stable"] = p_s
    parts.append(
        f"{metric} {label} {_fmt_seconds(p_c)}"
        + (f" (stable {_fmt_seconds(p_s)})" if not math.isnan(p_s) else "")
    )
    if slo is not None:
        share = 1.0 - obj.quantile
        above = ch.fraction_above(slo) * ch.total
        z = z_of_p(binomial_sf(above, ch.total, share))
        test = f"{metric} {label} slo"
        ev = run.add(test, slo, z, n_canary=ch.total, k_canary=above)
        if run.rejects(ev):
            stable_text = f"stable {_fmt_seconds(p_s)}, " if not math.isnan(p_s) else ""
            run.fail(
                test,
                f"{metric} {label} {_fmt_seconds(p_c)} > slo {_fmt_seconds(slo)} {_over(ev.checks)} "
                f"({_fmt_share(ev.k_canary / ev.n_canary)} of requests above it > {_fmt_pct(share)} "
                f"allowed, {_fmt_p(always_valid_p(ev))}; {stable_text}n={_fmt_n(ev.n_canary)})",
            )
    raw_stable = stable.histogram(metric) if stable is not None else None
    if stable is None or raw_stable is None or raw_stable.total <= 0:
        return
    sh = _effective(raw_stable, stable.requests)
    combined = regression_z(ch, sh, stretch)
    if combined is None:
        return
    log_ratio = _ratio_estimate(ch, sh) if run.explain else None
    test = f"{metric} regression"
    ev = run.add(
        test,
        stretch,
        min(combined, REGRESSION_Z_CAP),
        n_canary=ch.total,
        n_stable=sh.total,
        log_ratio=log_ratio,
    )
    if ev.log_ratio is not None:
        run.values[f"{metric}_ratio"] = math.exp(ev.log_ratio)
    if run.rejects(ev):
        how = (
            f"{_fmt_pct(math.exp(ev.log_ratio) - 1.0)} slower than stable"
            if ev.log_ratio is not None
            else "slower than stable"
        )
        # The exact means where the _sum series are known: a shift within wide buckets shows there.
        means = (
            f"mean {_fmt_seconds(ch.mean)} vs {_fmt_seconds(sh.mean)}, "
            if not (math.isnan(ch.mean) or math.isnan(sh.mean))
            else ""
        )
        run.fail(
            test,
            f"{metric} {how} {_over(ev.checks)} (> {_fmt_pct(obj.max_regression)} allowed, "
            f"{_fmt_p(always_valid_p(ev))}; {label} {_fmt_seconds(p_c)} vs {_fmt_seconds(p_s)}, "
            f"{means}n={_fmt_n(ev.n_canary)}/{_fmt_n(ev.n_stable)})",
        )


def regression_z(canary: Histogram, stable: Histogram, stretch: float) -> float | None:
    """One check's z-score for "the canary is slower than stable * stretch" (None: no test).

    Up to three tests of the same null, combined by Simes: the Mann-Whitney U test on the buckets
    (robust, monotone in every canary latency), the scale score test (:func:`scale_score`: the
    most powerful against a clear slowdown where a bimodal latency crosses few bucket bounds) and,
    where both histograms carry their exact sums, the Welch test on the means (which sees a shift
    that stays inside wide buckets). Simes' ``min_j k p_(j) / j`` is a valid p-value for positively
    dependent tests (all grow with a uniform slowdown of the canary; asymptotically jointly normal
    with positive correlations), so its z-score is stochastically no larger than N(0, 1) under the
    null and the e-process stays a supermartingale. Where one test alone would have sufficed the
    price is under half a z-score; a healthy canary's z is its weakest test's (a Bonferroni
    ``k * min p`` would send it to -inf and sink the bets).
    """
    excess, sd = _mann_whitney(canary, stable, stretch, smooth=True)
    if sd <= 0:
        return None
    zs = [excess / sd]
    score, score_sd = scale_score(canary, stable, stretch)
    if score_sd > 0:
        zs.append(score / score_sd)
    by_mean = mean_excess(canary, stable, stretch)
    if by_mean is not None:
        zs.append(by_mean[0] / by_mean[1])
    return simes_z(zs)


def simes_z(zs: Sequence[float]) -> float:
    """The z-score of Simes' combined p-value of one-sided tests with these z-scores.

    Computed from the z-scores, so a healthy canary's z far below 0 is not rounded to a p of 1.0.
    """
    ordered = sorted(zs, reverse=True)  # strongest first: p_(1) <= p_(2) <= ...
    k = len(ordered)
    weakest = ordered[-1]
    best = normal_sf(weakest)  # the j = k term, p_(k)
    found = False
    for j, z in enumerate(ordered[:-1], start=1):
        candidate = k / j * normal_sf(z)
        if candidate < best:
            best, found = candidate, True
    return z_of_p(best) if found else weakest


def _judge_errors(
    run: _Run,
    canary: RevisionSample,
    stable: RevisionSample | None,
    stable_usable: bool,
    stretch: float,
    parts: list[str],
) -> None:
    obj = run.objectives
    n_c, k_c = canary.total, canary.bad
    rate_c = canary.error_rate
    run.values["error_rate_canary"] = rate_c
    rate_s = math.nan
    if stable is not None and stable.total > 0:
        rate_s = stable.error_rate
        run.values["error_rate_stable"] = rate_s
    has_stable = not math.isnan(rate_s)
    parts.append(f"errors {_fmt_share(rate_c)}" + (f" (stable {_fmt_share(rate_s)})" if has_stable else ""))
    if obj.error_rate is not None:
        z = z_of_p(binomial_sf(k_c, n_c, obj.error_rate))
        ev = run.add("error rate slo", obj.error_rate, z, n_canary=n_c, k_canary=k_c)
        if run.rejects(ev):
            stable_text = f"stable {_fmt_share(rate_s)}, " if has_stable else ""
            run.fail(
                "error rate slo",
                f"error rate {_fmt_share(ev.k_canary / ev.n_canary)} > slo {_fmt_share(obj.error_rate)} "
                f"{_over(ev.checks)} ({_fmt_p(always_valid_p(ev))}; {stable_text}n={_fmt_n(ev.n_canary)})",
            )
    if stable is None or not stable_usable:
        return
    n_s, k_s = stable.total, stable.bad
    if k_c + k_s <= 0:
        return  # no errors on either side: nothing to compare this check
    share = stretch * n_c / (stretch * n_c + n_s)
    z = z_of_p(binomial_sf(k_c, k_c + k_s, share))
    ev = run.add("error rate regression", stretch, z, n_canary=n_c, n_stable=n_s, k_canary=k_c, k_stable=k_s)
    if run.rejects(ev):
        pooled_c = ev.k_canary / ev.n_canary
        pooled_s = ev.k_stable / ev.n_stable if ev.n_stable > 0 else math.nan
        if pooled_s > 0:
            how = f"is {_fmt_pct(pooled_c / pooled_s - 1.0)} worse than stable {_fmt_share(pooled_s)}"
        else:
            how = f"vs stable {_fmt_share(pooled_s)}"
        run.fail(
            "error rate regression",
            f"error rate {_fmt_share(pooled_c)} {how} {_over(ev.checks)} "
            f"(> {_fmt_pct(obj.max_regression)} allowed, {_fmt_p(always_valid_p(ev))}, "
            f"n={_fmt_n(ev.n_canary)}/{_fmt_n(ev.n_stable)})",
        )


def _money(amount: float, currency: str) -> str:
    return f"{amount:.3g} {currency}"


def _judge_cost(
    run: _Run,
    canary: RevisionSample,
    stable: RevisionSample | None,
    cost: CostContext | None,
    parts: list[str],
    notes: list[str],
) -> None:
    """The cost objectives (see :mod:`cost`): prompt tokens and cost per token against stable, and the
    absolute cost per million tokens. ``stable`` is None unless it is usable for regressions."""
    obj = run.objectives
    if not obj.judges_cost:
        return
    tokens_c = canary.tokens
    if tokens_c is None or tokens_c.requests <= 0:
        run.missing.append("tokens")
        return
    tokens_s = stable.tokens if stable is not None else None
    if tokens_s is not None and tokens_s.requests <= 0:
        tokens_s = None
    _judge_prompts(run, tokens_c, tokens_s, parts)
    if obj.max_cost_regression is None and obj.cost_per_million_tokens is None:
        return
    if cost is None:
        run.missing.append("cost (no plan of the canary)")
        return
    successes_c = max(0.0, canary.requests - canary.errors)
    usage_c = measure(tokens_c, successes_c, cost.window_s, counted(cost.canary, canary.servers))
    usage_s = None
    if tokens_s is not None and stable is not None and cost.stable is not None:
        successes_s = max(0.0, stable.requests - stable.errors)
        usage_s = measure(tokens_s, successes_s, cost.window_s, counted(cost.stable, stable.servers))
    ratio = None
    if tokens_s is not None and cost.stable is not None:
        ratio = cost_ratio(tokens_c, tokens_s, cost.canary, cost.stable)
    if ratio is not None:
        run.values["cost_ratio"] = ratio.value
        parts.append(f"cost per token x{ratio.value:.2f} stable's")
    if obj.max_cost_regression is not None and tokens_s is not None:
        prices = price_ratio(cost.canary, cost.stable) if cost.stable is not None else None
        if prices is None:
            notes.append("no cost regression test: the stable's price per replica-hour is unknown")
        elif ratio is None:
            run.missing.append("cost (token histograms)")
        else:
            per_million = usage_s.cost_per_million_tokens if usage_s else None
            _cost_regression(run, ratio, prices[1], per_million, cost, (tokens_c.requests, tokens_s.requests))
    if obj.cost_per_million_tokens is not None:
        found = absolute_cost(
            tokens_c,
            cost.canary,
            usage_c.cost,
            tokens_s,
            cost.stable,
            usage_s.cost if usage_s is not None else None,
        )
        if found is None:
            run.missing.append("cost per 1M tokens (no price for the canary's replicas, or no traffic)")
            return
        estimate, basis = found
        per_million = estimate.value * PER_MILLION
        run.values["cost_per_million_tokens_canary"] = per_million
        limit = obj.cost_per_million_tokens / PER_MILLION
        ev = run.add(COST_SLO_TEST, limit, z_score(estimate, limit), n_canary=tokens_c.requests)
        if run.rejects(ev):
            run.fail(
                COST_SLO_TEST,
                f"cost {_money(per_million, cost.currency)} per 1M tokens > slo "
                f"{_money(obj.cost_per_million_tokens, cost.currency)} {_over(ev.checks)} ({basis}, "
                f"{_fmt_p(always_valid_p(ev))}; n={_fmt_n(ev.n_canary)})",
            )


def _judge_prompts(run: _Run, canary: TokenSample, stable: TokenSample | None, parts: list[str]) -> None:
    obj = run.objectives
    mean_c = canary.prompt_tokens / canary.requests
    run.values["prompt_tokens_per_request_canary"] = mean_c
    text = f"prompt tokens/request {mean_c:.0f}"
    if stable is not None:
        mean_s = stable.prompt_tokens / stable.requests
        run.values["prompt_tokens_per_request_stable"] = mean_s
        text += f" (stable {mean_s:.0f})"
    parts.append(text)
    if obj.max_prompt_tokens_regression is None or stable is None:
        return
    estimate = prompt_ratio(canary, stable)
    if estimate is None:
        run.missing.append("prompt tokens")
        return
    limit = 1.0 + obj.max_prompt_tokens_regression
    ev = run.add(
        PROMPT_REGRESSION_TEST,
        limit,
        z_score(estimate, limit),
        n_canary=canary.requests,
        n_stable=stable.requests,
        log_ratio=estimate.log,
    )
    if run.rejects(ev):
        more = math.exp(ev.log_ratio if ev.log_ratio is not None else estimate.log) - 1.0
        run.fail(
            PROMPT_REGRESSION_TEST,
            f"prompt tokens per request {_fmt_pct(more)} more than stable {_over(ev.checks)} "
            f"(> {_fmt_pct(obj.max_prompt_tokens_regression)} allowed, {_fmt_p(always_valid_p(ev))}; "
            f"{mean_c:.0f} vs {stable.prompt_tokens / stable.requests:.0f}, "
            f"n={_fmt_n(ev.n_canary)}/{_fmt_n(ev.n_stable)})",
        )


def _cost_regression(
    run: _Run,
    ratio: LogEstimate,
    basis: str,
    stable_per_million: float | None,
    cost: CostContext,
    requests: tuple[float, float],
) -> None:
    obj = run.objectives
    assert obj.max_cost_regression is not None
    limit = 1.0 + obj.max_cost_regression
    n_c, n_s = requests
    ev = run.add(
        COST_REGRESSION_TEST, limit, z_score(ratio, limit), log_ratio=ratio.log, n_canary=n_c, n_stable=n_s
    )
    if not run.rejects(ev):
        return
    factor = math.exp(ev.log_ratio if ev.log_ratio is not None else ratio.log)
    if stable_per_million is not None:
        what = (
            f"cost {_money(stable_per_million * factor, cost.currency)} per 1M tokens vs stable "
            f"{_money(stable_per_million, cost.currency)}"
        )
    else:
        what = f"cost per token {factor:.2f}x stable's" + (
            "" if basis == "replica-hour prices" else " (no prices configured)"
        )
    run.fail(
        COST_REGRESSION_TEST,
        f"{what} {_over(ev.checks)} (> {_fmt_pct(obj.max_cost_regression)} more allowed, "
        f"{_fmt_p(always_valid_p(ev))}; price ratio by {basis}; "
        f"n={_fmt_n(ev.n_canary)}/{_fmt_n(ev.n_stable)})",
    )
