"""The evaluation gate's tests (pure): paired, exact, one-sided, at the SLO judge's confidence.

Stable and canary answer the same cases, so each case gives a pair (stable passed?, canary passed?).
Only the discordant pairs carry information about the difference of the two scores:
``worse`` cases the stable passed and the canary failed, ``better`` the reverse, ``m = worse + better``.

Drop beyond the margin (McNemar against ``maxDrop``)
----------------------------------------------------
The null hypothesis is "the canary's score is at most ``margin`` below the stable's":
``P(worse) - P(better) <= margin``; a fail needs evidence against it (as the SLO judge does for
latency: missing evidence is never a fail, and the false-fail rate at the boundary is ``alpha``).
Given ``m``, ``worse ~ Binomial(m, theta)`` with ``theta = P(worse) / P(discordant)``; at the boundary
``theta0 = 1/2 + margin / (2 * P(discordant))``. The discordance rate is estimated from the same
cases (``m / n``), which makes ``theta0 = 1/2 + margin * n / (2 * m)``: with ``margin = 0`` this is the
exact McNemar test. When ``theta0 >= 1`` even every discordant case going the canary's way against
it could not show a drop beyond the margin, so the p-value is 1. ``bench/evaluation`` measures the
false-fail rate at the boundary and the power by simulation.

Floor (``minScore``)
--------------------
The exact one-sided binomial test of "the canary's score is at least ``floor``": the p-value is
``P(X <= passed)`` for ``X ~ Binomial(n, floor)``.
"""

from __future__ import annotations

from nlpmodel_operator.core.analysis.judge import binomial_sf


def drop_p_value(worse: int, better: int, n: int, margin: float) -> float:
    """One-sided p-value against "the canary is at most ``margin`` (a fraction) below the stable"."""
    discordant = worse + better
    if discordant == 0 or n <= 0:
        return 1.0
    theta0 = 0.5 + margin * n / (2.0 * discordant)
    if theta0 >= 1.0:
        return 1.0
    return binomial_sf(worse, discordant, theta0)


def floor_p_value(passed: int, n: int, floor: float) -> float:
    """One-sided p-value against "the canary's score is at least ``floor``" (a fraction)."""
    if n <= 0 or floor <= 0.0:
        return 1.0
    if floor >= 1.0:
        return 0.0 if passed < n else 1.0
    return 1.0 - binomial_sf(passed + 1, n, floor)
