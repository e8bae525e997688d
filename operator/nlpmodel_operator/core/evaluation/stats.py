"""The evaluation gate's tests (pure): paired, one-sided, at the SLO judge's confidence.

Stable and canary answer the same cases, so each case gives a pair (stable passed?, canary passed?).
Only the discordant pairs carry information about the difference of the two scores:
``worse`` cases the stable passed and the canary failed, ``better`` the reverse, ``m = worse + better``.

Drop beyond the margin ``maxDrop`` (``delta``)
----------------------------------------------
The null hypothesis is "the canary's score is at most ``delta`` below the stable's":
``P(worse) - P(better) <= delta``; a fail needs evidence against it (as the SLO judge does for
latency: missing evidence is never a fail, and the false-fail rate at the margin is at most ``alpha``).

* ``delta = 0``: the exact McNemar test. Given ``m``, ``worse ~ Binomial(m, 1/2)`` at the boundary
  whatever the discordance rate, so the test is exact.
* ``delta > 0``: given ``m``, ``worse ~ Binomial(m, theta0)`` with
  ``theta0 = 1/2 + delta / (2 * P(discordant))`` depends on the unknown discordance rate, so no
  conditional test is exact. The statistic is Tango's score (Tango 1998, the standard one for paired
  non-inferiority): ``Z = (worse - better - n*delta) / sqrt(n * (2*q + delta*(1 - delta)))`` with
  ``q`` the maximum-likelihood ``P(better)`` under the boundary ``P(worse) = P(better) + delta``.
  Its p-value is computed exactly, not from the normal curve: the probability, under the trinomial
  at that restricted estimate, of every table whose ``Z`` is at least the one observed (the
  "estimated exact" p-value of Storer and Kim, Lloyd's E-test). At 100-400 cases the normal curve
  of ``Z`` fails 6-7 % of canaries at the margin where 5 % are allowed; plugging the observed
  discordance ``m/n`` into ``theta0`` (this gate's first test) fails only about 1.5 %, and so misses
  real drops. Summed exactly over every table, the estimated exact p-value's false fails at the
  margin stay at alpha within a few hundredths of it (``tests/unit/test_evaluation_verdict.py``), and
  ``bench/evaluation`` measures its power beside the others'. Beyond :data:`MAX_EXACT_TABLES` tables
  (thousands of cases, many discordant) the counts are large and the normal curve is used.

What an evaluation could have caught
------------------------------------
A pass is not a proof of equality. :func:`detectable_drop` is the drop the same test, on as many
cases, would catch 9 times in 10, computed exactly over the test's own rejection region: the
revisions keep disagreeing both ways as often as the canary did better (``better / n``, the churn of
answers at temperature 0), and the drop adds cases the canary gets wrong on top.

Floor (``minScore``)
--------------------
The exact one-sided binomial test of "the canary's score is at least ``floor``": the p-value is
``P(X <= passed)`` for ``X ~ Binomial(n, floor)``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Final

from nlpmodel_operator.core.analysis.judge import binomial_sf, normal_sf

# Tables farther than this many standard deviations from the restricted estimate carry less than
# 1e-14 of probability together; leaving them out bounds the work at any n.
_TAIL_SD: Final = 8.0
# Beyond this many tables (thousands of cases, many of them discordant) the counts are large enough
# for the normal curve of Z, which is then used: it bounds the work to well under a second.
MAX_EXACT_TABLES: Final = 40_000


def restricted_better_rate(worse: int, better: int, n: int, margin: float) -> float:
    """The maximum-likelihood ``P(better)`` of the trinomial (worse, better, the rest) under the
    boundary ``P(worse) = P(better) + margin`` (the positive root of Tango's quadratic)."""
    a = 2.0 * n
    b = -worse - better + (2.0 * n - worse + better) * margin
    c = -better * margin * (1.0 - margin)
    return max(0.0, (math.sqrt(max(0.0, b * b - 4.0 * a * c)) - b) / (2.0 * a))


def score_z(worse: int, better: int, n: int, margin: float) -> float:
    """Tango's score statistic for a drop beyond ``margin``: large when the canary is worse."""
    q = restricted_better_rate(worse, better, n, margin)
    variance = n * (2.0 * q + margin * (1.0 - margin))
    if variance <= 0.0:
        return 0.0
    return (worse - better - n * margin) / math.sqrt(variance)


def drop_p_value(worse: int, better: int, n: int, margin: float) -> float:
    """One-sided p-value against "the canary is at most ``margin`` (a fraction) below the stable"."""
    discordant = worse + better
    if discordant == 0 or n <= 0 or margin >= 1.0:
        return 1.0
    if margin <= 0.0:
        return binomial_sf(worse, discordant, 0.5)
    observed = score_z(worse, better, n, margin)
    q = restricted_better_rate(worse, better, n, margin)
    p_worse = q + margin
    if (_reach(n, p_worse) + 1) * (_reach(n, q) + 1) > MAX_EXACT_TABLES:
        return normal_sf(observed)
    return min(1.0, _upper_tail(observed, n, margin, p_worse, q))


def _upper_tail(observed: float, n: int, margin: float, p_worse: float, p_better: float) -> float:
    """P(Z >= observed) over the trinomial tables of ``n`` cases with these rates."""
    total = 0.0
    for w in range(_reach(n, p_worse) + 1):
        for b in range(min(n - w, _reach(n, p_better)) + 1):
            if score_z(w, b, n, margin) >= observed - 1e-9:
                total += math.exp(log_trinomial(n, w, b, p_worse, p_better))
    return total


def log_trinomial(n: int, worse: int, better: int, p_worse: float, p_better: float) -> float:
    """log P(worse, better, the rest) of ``n`` cases at these rates (-inf where impossible)."""
    rest, p_rest = n - worse - better, 1.0 - p_worse - p_better
    log_p = math.lgamma(n + 1.0) - math.lgamma(worse + 1.0) - math.lgamma(better + 1.0)
    log_p -= math.lgamma(rest + 1.0)
    for count, p in ((worse, p_worse), (better, p_better), (rest, p_rest)):
        if count:
            if p <= 0.0:
                return -math.inf
            log_p += count * math.log(p)
    return log_p


def _reach(n: int, p: float) -> int:
    """The largest count of ``n`` draws at rate ``p`` that carries non-negligible probability."""
    if p <= 0.0:
        return 0
    return min(n, math.ceil(n * p + _TAIL_SD * math.sqrt(n * p * (1.0 - p)) + _TAIL_SD))


DETECTION_POWER: Final = 0.9
EXACT_POWER_CASES: Final = 400


@lru_cache(maxsize=1024)  # pure; evaluations of one dataset ask again with the same few counts
def detectable_drop(
    n: int, better_rate: float, margin: float, alpha: float, power: float = DETECTION_POWER
) -> float | None:
    """The smallest drop in score (a fraction) that :func:`drop_p_value` below ``alpha`` catches with
    probability ``power`` in ``n`` cases, when the canary does better on a share ``better_rate`` of
    them and worse on that share plus the drop. None: not even the largest drop would be caught."""
    if n <= 0 or not 0.0 <= better_rate < 0.5:
        return None
    critical = _critical_worse(n, _reach(n, better_rate), margin, alpha)

    def caught(drop: float) -> float:
        p_worse = better_rate + drop
        total = 0.0
        for b, worse in enumerate(critical):
            if worse is not None:
                given_b = min(1.0, p_worse / (1.0 - better_rate))
                total += _binomial_pmf(b, n, better_rate) * binomial_sf(worse, n - b, given_b)
        return total

    low, high = margin, 1.0 - 2.0 * better_rate
    if caught(high) < power:
        return None
    for _ in range(40):
        middle = (low + high) / 2.0
        low, high = (low, middle) if caught(middle) >= power else (middle, high)
    return high


def _critical_worse(n: int, most_better: int, margin: float, alpha: float) -> list[int | None]:
    """For each count of ``better`` cases up to ``most_better``, the fewest ``worse`` cases that
    reject (None: none do). The p-value falls as ``worse`` grows and rises with ``better``, so each
    search starts where the previous one ended. Beyond :data:`EXACT_POWER_CASES` cases the score's
    normal curve stands in for the exact p-value (counts are large there; it bounds the work)."""

    def p_value(worse: int, better: int) -> float:
        if margin <= 0.0 or n <= EXACT_POWER_CASES:
            return drop_p_value(worse, better, n, margin)
        return normal_sf(score_z(worse, better, n, margin))

    found: list[int | None] = []
    worse = 0
    for better in range(most_better + 1):
        while worse <= n - better and p_value(worse, better) >= alpha:
            worse += 1
        if worse > n - better:
            found.extend([None] * (most_better + 1 - better))
            break
        found.append(worse)
    return found


def _binomial_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 1.0 if k == 0 else 0.0
    if p >= 1.0:
        return 1.0 if k == n else 0.0
    log_p = math.lgamma(n + 1.0) - math.lgamma(k + 1.0) - math.lgamma(n - k + 1.0)
    return math.exp(log_p + k * math.log(p) + (n - k) * math.log(1.0 - p))


def floor_p_value(passed: int, n: int, floor: float) -> float:
    """One-sided p-value against "the canary's score is at least ``floor``" (a fraction)."""
    if n <= 0 or floor <= 0.0:
        return 1.0
    if floor >= 1.0:
        return 0.0 if passed < n else 1.0
    return 1.0 - binomial_sf(passed + 1, n, floor)
