"""The per-check canary judge (pure): one analysis check's histograms and counters in, a verdict out.

Since issue 18 the operator decides with the sequential judge (:mod:`sequential`), which takes each
check's z-scores from the tests below and accumulates them across checks into always-valid evidence.
This module keeps the per-check tests (the building blocks), :func:`judge` (the per-check decision the
operator used before, now the baseline in ``bench/judge``) and :func:`naive_judge`.

Input, per revision (canary and stable), is what Prometheus reports as ``increase()`` over the
check's interval: the cumulative ``le`` bucket counts of vLLM's TTFT, inter-token-latency and
end-to-end histograms, the finished requests and the error+abort finishes of
``vllm:request_success_total`` (plus HTTP 5xx where the gateway reports them). Output is a
:class:`Verdict`: ``inconclusive`` below ``min_requests`` canary requests (or without the canary data
an objective needs), ``fail`` when a test below rejects, else ``pass``; with the values, the p-values
and one message per failure.

Statistical design
------------------
Every test is one-sided ("the canary is bad") at level ``alpha`` per check, and no test compares two
point estimates:

* **Absolute latency SLO** (``ttft_p95 = 0.8s``): ``p95 <= T`` is the same statement as "at most 5 %
  of requests are slower than T". The share of canary requests above T is read off the buckets with
  the interpolation ``histogram_quantile`` uses (so the test and the p95 shown agree), and an exact
  one-sided binomial test asks whether that share is significantly above 5 %.
* **Regression against stable** (``max_regression = 20%``): a one-sided Mann-Whitney U test on the
  binned distributions, ties handled, with a tolerance (Kayenta's approach): the stable's buckets are
  stretched by ``1 + max_regression`` (every stable request made 20 % slower) and the test asks whether
  the canary is still stochastically slower than that. A canary exactly 20 % slower than stable is the
  boundary of the null hypothesis; a healthy canary (as fast as stable) sits far inside it, which is
  what keeps false rollbacks of healthy canaries rare. The message reports the Hodges-Lehmann
  estimate of how much slower the canary is (the stretch at which U is balanced) next to both p95s.
  Testing the whole distribution rather than two binned p95 estimates is what gives the power to
  act within a few checks at low traffic: with 150 requests a side (2 requests/s over 75 s), the
  binned p95 of one of two identical revisions exceeds the other's by more than 20 % in a quarter
  of the checks (bench simulation), so comparing p95 point estimates rolls healthy canaries back. The variance of
  U uses the tie groups expected under the null (the stretched stable's bucket shares), which keeps
  it independent of where the canary's requests fall: the verdict is monotone in the canary's
  latencies.
* **Error rate SLO**: exact one-sided binomial test of ``errors / requests <= error_rate``.
* **Error-rate regression**: the exact conditional test for a ratio of two Poisson rates: given the
  ``k`` errors of both revisions together, the canary's share of them is Binomial(k, pi0) at the
  boundary ``rate_canary = (1 + max_regression) * rate_stable``, with
  ``pi0 = (1 + r) n_c / ((1 + r) n_c + n_s)``.

``alpha`` follows from the decision a rollback stands for: a rollback needs ``failure_threshold``
consecutive failed checks, each over its own interval, so at the boundary of a hypothesis the chance
that one run of ``failure_threshold`` checks fails throughout is ``alpha ** failure_threshold``.
``Objectives.confidence`` is the confidence of that decision (default 0.98), and
``alpha = (1 - confidence) ** (1 / failure_threshold)`` (0.14 per check for the default two checks).
That is the worst case, for a canary sitting exactly at a limit (exactly 20 % slower than stable, or
exactly at the SLO). A healthy canary sits far inside every null hypothesis, and its per-check
false-fail rate is orders of magnitude below ``alpha``; ``bench/judge`` measures both.

Assumptions
-----------
* Requests are independent within an interval and intervals are disjoint, so consecutive checks are
  independent tests. (Requests of one interval share load and so are not perfectly independent; for
  a healthy canary the tolerance band leaves ample room for that extra variance.)
* Within a bucket, observations are spread uniformly (``histogram_quantile``'s own assumption); the
  lowest bucket starts at 0. Mass in the ``+Inf`` bucket counts as above every finite threshold.
* Inter-token latency is observed once per generated token; tokens of one request are strongly
  correlated, so its sample size is taken as the number of finished requests (the histogram's counts
  are scaled down to it), which is conservative. TTFT and e2e are observed once per request.
* ``increase()`` extrapolates to the window's edges, so counts are floats and exceed what was really
  observed by window / (window - scrape interval); the tests take the counts as given, which makes
  them somewhat less conservative than nominal (the bench simulates exactly that). A window of one
  interval loses the requests between the last scrape of one window and the first of the next
  (a quarter of them with 60 s and 15 s scrapes); a window of interval + scrape interval counts every
  request exactly once, which is what the bench assumes by default.
* HTTP 5xx (``RevisionSample.http_5xx``) are requests that failed before or around the engine and
  that ``vllm:request_success_total`` did not count: they add to both the errors and the requests.
* The error-rate regression uses the rare-event (Poisson) approximation of proportions.
* The stable revision is judged healthy; a stable with fewer than ``min_requests`` requests (or no
  stable) skips the regression tests, the absolute SLOs still apply.

What the rollout does with verdicts is the state machine's business; the bench (``bench/judge``)
rolls back after ``failure_threshold`` consecutive fails, where an inconclusive check neither counts
as a fail nor resets the run (only a pass resets it).
"""

from __future__ import annotations

import math
import operator
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal

from nlpmodel_operator.api.status import CheckVerdict
from nlpmodel_operator.api.units import parse_duration, parse_percent

if TYPE_CHECKING:
    from nlpmodel_operator.core.analysis.cost import TokenSample

__all__ = [
    "METRICS",
    "Evidence",
    "Histogram",
    "Objectives",
    "RevisionSample",
    "Verdict",
    "judge",
    "mean_excess",
    "naive_judge",
    "scale_score",
]

Metric = Literal["ttft", "itl", "e2e"]
METRICS: Final[tuple[Metric, ...]] = ("ttft", "itl", "e2e")

_EMPTY: Final[Mapping[str, float]] = MappingProxyType({})
# How far the Hodges-Lehmann search stretches the stable distribution, and how precisely.
_SHIFT_MAX: Final = 1e4
_SHIFT_STEPS: Final = 24


# --------------------------------------------------------------------------------------------------
# Histograms


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts (Prometheus ``le`` semantics) of one histogram over one interval.

    ``bounds`` are the buckets' upper bounds, strictly ascending (the last is normally ``math.inf``);
    ``counts[i]`` is the number of observations ``<= bounds[i]``, non-decreasing. Counts are floats:
    ``increase()`` extrapolates. ``sum`` is the increase of the histogram's ``_sum`` series (the exact
    total of the observed values, finer than any bucket), None where it was not queried.
    """

    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    sum: float | None = None

    def __post_init__(self) -> None:
        bounds = tuple(float(b) for b in self.bounds)
        counts = tuple(float(c) for c in self.counts)
        if not bounds:
            raise ValueError("a histogram needs at least one bucket")
        if len(bounds) != len(counts):
            raise ValueError(f"{len(bounds)} bounds but {len(counts)} counts")
        if not all(map(operator.lt, bounds, bounds[1:])) or math.isnan(bounds[0]):
            raise ValueError(f"bucket bounds must be strictly ascending: {bounds}")
        if not (counts[0] >= 0 and math.isfinite(counts[-1])):
            raise ValueError(f"bucket counts must be finite and >= 0: {counts}")
        if not all(map(operator.le, counts, counts[1:])):
            raise ValueError(f"cumulative bucket counts must not decrease: {counts}")
        if self.sum is not None and not math.isfinite(self.sum):
            raise ValueError(f"the sum of the observations must be finite, not {self.sum!r}")
        object.__setattr__(self, "bounds", bounds)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "sum", None if self.sum is None else float(self.sum))

    @classmethod
    def from_prometheus(cls, bucket_rows: Mapping[str, float], total: float | None = None) -> Histogram:
        """From ``le`` label value -> count (``sum by (le) (increase(x_bucket[...]))``), and the
        increase of ``x_sum`` when known.

        Like ``histogram_quantile``: rows with the same bound are added up, and counts that decrease
        towards higher bounds (float noise of per-series extrapolation) are raised to the envelope.
        """
        merged: dict[float, float] = {}
        for le, value in bucket_rows.items():
            try:
                bound = float(le)
            except ValueError:
                raise ValueError(f"not a bucket bound: le={le!r}") from None
            count = float(value)
            if math.isnan(bound) or math.isnan(count) or math.isinf(count) or count < 0:
                raise ValueError(f"bucket le={le!r} has an unusable count {value!r}")
            merged[bound] = merged.get(bound, 0.0) + count
        if not merged:
            raise ValueError("no buckets")
        bounds = tuple(sorted(merged))
        counts: list[float] = []
        for bound in bounds:
            counts.append(max(merged[bound], counts[-1]) if counts else merged[bound])
        return cls(bounds, tuple(counts), total)

    @property
    def total(self) -> float:
        """Number of observations (the ``+Inf`` bucket)."""
        return self.counts[-1]

    @property
    def mean(self) -> float:
        """The exact mean of the observations (NaN without the sum or without observations)."""
        if self.sum is None or self.counts[-1] <= 0:
            return math.nan
        return self.sum / self.counts[-1]

    def binned_variance(self) -> float | None:
        """The observations' variance, from the buckets and the exact mean (None if unknowable).

        Where in its bucket an observation lies is unknown; the exact sum says where on average:
        every bucket's observations are placed at the same relative position ``tau`` (0 = its lower
        bound, 1 = its upper) that reproduces the sum, with the spread ``tau (1 - tau) / 3`` of the
        bucket width squared around it (1/12 at the middle, the uniform spread). On the bench's
        shapes this overstates the true variance by 5-50 % (conservative), where midpoints would
        double it. None without the sum, with fewer than two observations or with any in ``+Inf``
        (no bound on their spread).
        """
        mean, bounds, counts = self.mean, self.bounds, self.counts
        total = counts[-1]
        if math.isnan(mean) or total < 2 or len(bounds) < 2 or bounds[-1] != math.inf or total > counts[-2]:
            return None
        rows: list[tuple[float, float, float]] = []  # (count, lower bound, width) of non-empty buckets
        below, lower = 0.0, 0.0
        for upper, cumulative in zip(bounds[:-1], counts[:-1], strict=True):
            if cumulative > below:
                rows.append((cumulative - below, lower, upper - lower))
            below, lower = cumulative, upper
        at_lower = sum(c * a for c, a, _ in rows)
        spread = sum(c * w for c, _, w in rows)
        tau = min(1.0, max(0.0, (mean * total - at_lower) / spread)) if spread > 0 else 0.5
        within = tau * (1.0 - tau) / 3.0
        second_moment = sum(c * ((a + tau * w) ** 2 + w * w * within) for c, a, w in rows) / total
        return max(second_moment - mean * mean, 0.0)

    def quantile(self, q: float) -> float:
        """The q-quantile exactly as PromQL's ``histogram_quantile`` computes it for classic buckets.

        Linear interpolation within the bucket, the lowest bucket starting at 0 (or its upper bound
        if that is <= 0); the upper bound of the highest finite bucket if the rank falls into
        ``+Inf``; NaN without observations, without a ``+Inf`` bucket or with fewer than two buckets;
        -Inf / +Inf for q < 0 / q > 1.
        """
        if math.isnan(q):
            return math.nan
        if q < 0:
            return -math.inf
        if q > 1:
            return math.inf
        bounds, counts = self.bounds, self.counts
        if bounds[-1] != math.inf or len(bounds) < 2 or counts[-1] <= 0:
            return math.nan
        rank = q * counts[-1]
        last = len(bounds) - 1
        b = bisect_left(counts, rank, 0, last)  # first bucket whose count >= rank
        if b == last:
            return bounds[-2]
        if b == 0 and bounds[0] <= 0:
            return bounds[0]
        start, below = (bounds[b - 1], counts[b - 1]) if b > 0 else (0.0, 0.0)
        inside = counts[b] - below
        if inside <= 0:
            return math.nan  # q == 0 over an empty lowest bucket: 0/0, as in Prometheus
        return start + (bounds[b] - start) * ((rank - below) / inside)

    def count_below(self, x: float) -> float:
        """Observations <= x, interpolated within buckets like ``histogram_quantile``.

        The inverse of :meth:`quantile`: ``count_below(quantile(q)) == q * total`` whenever the
        quantile falls inside a finite bucket. Nothing of the ``+Inf`` bucket is below a finite x.
        """
        bounds, counts = self.bounds, self.counts
        i = bisect_left(bounds, x)  # bounds[i-1] < x <= bounds[i]
        if i == len(bounds):
            return counts[-1]
        upper = bounds[i]
        if upper == x:
            return counts[i]
        if upper == math.inf:
            return counts[i - 1] if i > 0 else 0.0
        if i == 0:
            if upper <= 0:
                return 0.0
            return counts[0] * max(x, 0.0) / upper
        lower = bounds[i - 1]
        return counts[i - 1] + (counts[i] - counts[i - 1]) * (x - lower) / (upper - lower)

    @cached_property
    def _log_cdf_spline(self) -> tuple[list[float], list[float], list[float]]:
        """Knots (log bound, cumulative count) of the finite positive bounds and their slopes."""
        knots = [(math.log(b), c) for b, c in zip(self.bounds, self.counts, strict=True) if 0 < b < math.inf]
        xs, ys = [k[0] for k in knots], [k[1] for k in knots]
        secants = [(ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i]) for i in range(len(xs) - 1)]
        slopes = [0.0] * len(xs)
        if secants:
            slopes[0], slopes[-1] = secants[0], secants[-1]
        for i in range(1, len(xs) - 1):
            left, right = secants[i - 1], secants[i]
            if left > 0 and right > 0:  # Fritsch-Carlson weighted harmonic mean: stays monotone
                h_left, h_right = xs[i] - xs[i - 1], xs[i + 1] - xs[i]
                w1, w2 = 2 * h_right + h_left, h_right + 2 * h_left
                slopes[i] = (w1 + w2) / (w1 / left + w2 / right)
        return xs, ys, slopes

    def smooth_count_below(self, x: float) -> float:
        """Observations <= x, the CDF interpolated by a monotone cubic in log(x) through the bounds.

        Within a wide bucket the density is rarely flat: where it falls (the right flank of a mode)
        the uniform spread of :meth:`count_below` puts too much of the bucket near its upper bound,
        and stretching the stable by the tolerance then pushes that mass into the next bucket: the
        null hypothesis the regression tests compare against is blurred, and a real shift hides in
        it. The spline takes the slope from the neighbouring buckets (exact at every bound, monotone,
        log-scale like latencies). Below the lowest positive bound and at ``+Inf`` it is
        :meth:`count_below`.
        """
        xs, ys, slopes = self._log_cdf_spline
        if len(xs) < 2 or x <= 0 or math.isnan(x) or x <= math.exp(xs[0]) or x >= math.exp(xs[-1]):
            return self.count_below(x)
        lx = math.log(x)
        i = min(max(bisect_left(xs, lx) - 1, 0), len(xs) - 2)
        h = xs[i + 1] - xs[i]
        t = (lx - xs[i]) / h
        t2, t3 = t * t, t * t * t
        value = (
            (2 * t3 - 3 * t2 + 1) * ys[i]
            + (t3 - 2 * t2 + t) * h * slopes[i]
            + (-2 * t3 + 3 * t2) * ys[i + 1]
            + (t3 - t2) * h * slopes[i + 1]
        )
        return min(max(value, ys[i]), ys[i + 1])

    def fraction_above(self, x: float) -> float:
        """Share of observations > x (NaN without observations); see :meth:`count_below`."""
        total = self.counts[-1]
        if total <= 0:
            return math.nan
        return max(0.0, 1.0 - self.count_below(x) / total)

    def scaled_to(self, total: float) -> Histogram:
        """The same shape with ``total`` observations (the effective sample size of a test)."""
        if self.counts[-1] <= 0:
            return self
        factor = total / self.counts[-1]
        scaled_sum = None if self.sum is None else self.sum * factor
        return Histogram(self.bounds, tuple(c * factor for c in self.counts), scaled_sum)


# --------------------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass(frozen=True)
class RevisionSample:
    """One revision's increases over one interval. A histogram is None when there was no data."""

    ttft: Histogram | None
    itl: Histogram | None
    e2e: Histogram | None
    requests: float  # finished requests, every finished_reason
    errors: float  # finished with finished_reason error or abort
    http_5xx: float | None = None  # failed at the HTTP layer, not counted by vLLM (if configured)
    tokens: TokenSample | None = None  # vLLM's token counters and histograms (the cost SLOs)
    servers: int | None = None  # model servers scraped at the window's end (replicas, when not known)

    def __post_init__(self) -> None:
        for name in ("requests", "errors", "http_5xx"):
            value = getattr(self, name)
            if value is not None and (math.isnan(value) or math.isinf(value) or value < 0):
                raise ValueError(f"{name} must be a finite count >= 0, not {value!r}")

    @property
    def total(self) -> float:
        """Requests that count towards the sample size: finished ones plus HTTP 5xx."""
        return self.requests + (self.http_5xx or 0.0)

    @property
    def bad(self) -> float:
        """Failed requests: error and abort finishes plus HTTP 5xx (never more than total)."""
        return min(self.errors + (self.http_5xx or 0.0), self.total)

    @property
    def error_rate(self) -> float:
        total = self.total
        return self.bad / total if total > 0 else math.nan

    def histogram(self, metric: Metric) -> Histogram | None:
        histogram: Histogram | None = getattr(self, metric)
        return histogram


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what}: expected a number or a string, not {value!r}")
    return float(value)


def _seconds(value: object, what: str) -> float:
    """A duration: "800ms" / "1.5s" or a number of seconds."""
    return parse_duration(value) if isinstance(value, str) else _number(value, what)


def _fraction(value: object, what: str) -> float:
    """A share: "1%" or a fraction (0.01)."""
    return parse_percent(value) if isinstance(value, str) else _number(value, what)


def _count(value: object, what: str) -> int:
    number = _number(value, what)
    if not number.is_integer():
        raise ValueError(f"{what}: expected a whole number, not {value!r}")
    return int(number)


def _pick(spec: Mapping[str, object] | None, *names: str) -> object:
    if not spec:
        return None
    for name in names:
        if spec.get(name) is not None:
            return spec[name]
    return None


@dataclass(frozen=True)
class Objectives:
    """What a check judges: absolute SLOs (None = not checked) and the allowed regression vs stable.

    ``confidence`` is the confidence of a rollback, which needs ``failure_threshold`` consecutive
    fails; each check tests at ``alpha = (1 - confidence) ** (1 / failure_threshold)``.
    """

    ttft_p95: float | None = None  # seconds
    itl_p95: float | None = None  # seconds
    e2e_p95: float | None = None  # seconds
    error_rate: float | None = None  # fraction of requests, 0.01 = 1 %
    max_regression: float = 0.2  # fraction; the canary may be this much worse than stable
    min_requests: int = 50
    failure_threshold: int = 2
    confidence: float = 0.98
    quantile: float = 0.95
    # Cost SLOs (sequential judge only): fractions, and an absolute price per million served tokens.
    max_cost_regression: float | None = None
    cost_per_million_tokens: float | None = None
    max_prompt_tokens_regression: float | None = None

    def __post_init__(self) -> None:
        for name in ("ttft_p95", "itl_p95", "e2e_p95"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.error_rate is not None and not 0 <= self.error_rate <= 1:
            raise ValueError(f"error_rate must be within [0, 1], not {self.error_rate!r}")
        if not (math.isfinite(self.max_regression) and self.max_regression >= 0):
            raise ValueError(f"max_regression must be >= 0, not {self.max_regression!r}")
        if self.min_requests < 1:
            raise ValueError(f"min_requests must be >= 1, not {self.min_requests!r}")
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, not {self.failure_threshold!r}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be within (0, 1), not {self.confidence!r}")
        if not 0 < self.quantile < 1:
            raise ValueError(f"quantile must be within (0, 1), not {self.quantile!r}")
        for name in ("max_cost_regression", "max_prompt_tokens_regression"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0, not {value!r}")
        cost = self.cost_per_million_tokens
        if cost is not None and not (math.isfinite(cost) and cost > 0):
            raise ValueError(f"cost_per_million_tokens must be a positive price, not {cost!r}")

    @property
    def judges_cost(self) -> bool:
        return any(
            v is not None
            for v in (
                self.max_cost_regression,
                self.cost_per_million_tokens,
                self.max_prompt_tokens_regression,
            )
        )

    @property
    def alpha(self) -> float:
        """Per-check, per-test significance level."""
        return float((1.0 - self.confidence) ** (1.0 / self.failure_threshold))

    def slo(self, metric: Metric) -> float | None:
        value: float | None = getattr(self, f"{metric}_p95")
        return value

    @classmethod
    def from_spec(
        cls,
        slo: Mapping[str, object] | None,
        analysis: Mapping[str, object] | None = None,
        *,
        confidence: float = 0.98,
    ) -> Objectives:
        """From the spec's plain values (``spec.rollout.slo`` and ``spec.rollout.analysis``).

        Keys in camelCase (``ttftP95``, ``errorRate``, ``maxRegression``, ``minRequests``,
        ``failureThreshold``) or snake_case; durations as "800ms" or seconds, shares as "1%" or a
        fraction. Missing keys keep the defaults.
        """
        defaults = cls()

        def seconds(*names: str) -> float | None:
            value = _pick(slo, *names)
            return None if value is None else _seconds(value, names[0])

        error_rate = _pick(slo, "errorRate", "error_rate")
        max_regression = _pick(slo, "maxRegression", "max_regression")
        min_requests = _pick(analysis, "minRequests", "min_requests")
        failure_threshold = _pick(analysis, "failureThreshold", "failure_threshold")

        def share(*names: str) -> float | None:
            value = _pick(slo, *names)
            return None if value is None else _fraction(value, names[0])

        cost = _pick(slo, "costPerMillionTokens", "cost_per_million_tokens")
        return cls(
            ttft_p95=seconds("ttftP95", "ttft_p95"),
            itl_p95=seconds("itlP95", "itl_p95"),
            e2e_p95=seconds("e2eP95", "e2e_p95"),
            error_rate=None if error_rate is None else _fraction(error_rate, "errorRate"),
            max_regression=(
                defaults.max_regression
                if max_regression is None
                else _fraction(max_regression, "maxRegression")
            ),
            min_requests=defaults.min_requests
            if min_requests is None
            else _count(min_requests, "minRequests"),
            failure_threshold=(
                defaults.failure_threshold
                if failure_threshold is None
                else _count(failure_threshold, "failureThreshold")
            ),
            confidence=confidence,
            max_cost_regression=share("maxCostRegression", "max_cost_regression"),
            cost_per_million_tokens=None if cost is None else _number(cost, "costPerMillionTokens"),
            max_prompt_tokens_regression=share("maxPromptTokensRegression", "max_prompt_tokens_regression"),
        )


@dataclass(frozen=True)
class Evidence:
    """One test of one check: what was compared, the point estimates, the p-value, the outcome."""

    test: str  # e.g. "ttft p95 slo", "ttft regression", "error rate slo", "error rate regression"
    canary: float  # point estimate: p95 (s), error rate, or for regressions the canary's p95 / rate
    stable: float | None
    limit: float  # the SLO, or 1 + max_regression for regressions
    p_value: float
    n_canary: float
    n_stable: float | None
    failed: bool


@dataclass(frozen=True)
class Verdict:
    result: CheckVerdict
    failures: tuple[str, ...] = ()
    values: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    summary: str = ""
    evidence: tuple[Evidence, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))


# --------------------------------------------------------------------------------------------------
# Formatting


def _fmt_seconds(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value >= 100:
        return f"{value:.0f}s"
    if value >= 0.1:
        return f"{value:.2f}s"
    return f"{value * 1000:.3g}ms"


def _fmt_share(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value * 100:.2f}%" if value < 0.01 else f"{value * 100:.1f}%"


def _fmt_p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _fmt_n(n: float) -> str:
    return f"{n:.0f}"


def _fmt_pct(fraction: float) -> str:
    return f"{fraction * 100:.0f}%"


def _quantile_label(q: float) -> str:
    return f"p{q * 100:g}"


# --------------------------------------------------------------------------------------------------
# Statistics (pure Python: the operator stays free of numpy/scipy)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def binomial_sf(k: float, n: float, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), continuous in k and n (exact for integers): I_p(k, n-k+1)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    return min(1.0, max(0.0, _betainc(k, n - k + 1.0, p)))


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _paired_bins(
    canary: Histogram, stable: Histogram, stretch: float, smooth: bool = False
) -> list[tuple[float, float]]:
    """Per-bin counts of the canary and of the stable stretched by ``stretch``, on merged bounds.

    The merged bounds are the canary's finite bounds and the stretched stable's finite bounds up to
    the canary's highest finite bound; the last bin holds everything above it for both (ties).
    Counts between bounds are interpolated uniformly, or by :meth:`Histogram.smooth_count_below`.
    """
    c_bounds = [b for b in canary.bounds if b != math.inf]
    top = c_bounds[-1] if c_bounds else math.inf
    points = set(c_bounds)
    points.update(b * stretch for b in stable.bounds if b != math.inf and b * stretch < top)
    pairs: list[tuple[float, float]] = []
    prev_c = prev_s = 0.0
    for x in sorted(points):
        cum_c = canary.smooth_count_below(x) if smooth else canary.count_below(x)
        cum_s = stable.smooth_count_below(x / stretch) if smooth else stable.count_below(x / stretch)
        pairs.append((cum_c - prev_c, cum_s - prev_s))
        prev_c, prev_s = cum_c, cum_s
    pairs.append((canary.total - prev_c, stable.total - prev_s))
    return pairs


def mean_excess(canary: Histogram, stable: Histogram, stretch: float) -> tuple[float, float] | None:
    """(mean_c - stretch * mean_s, its standard error) for "the canary's mean is above the stretched
    stable's", a Welch z-test on the exact means (the ``_sum`` series) with binned variances.

    Under the regression null (the canary stochastically no slower than stable * stretch) the
    canary's mean is at most stretch times the stable's, so this tests a consequence of the same
    null. It sees what the buckets hide: a +50 % shift that stays inside wide buckets (a mode at
    1.1 s moving to 1.65 s, both within vLLM's 1-2.5 s TTFT bucket) moves the means by 50 %.
    None when either side lacks its sum or a usable variance.
    """
    var_c, var_s = canary.binned_variance(), stable.binned_variance()
    if var_c is None or var_s is None:
        return None
    se2 = var_c / canary.total + stretch * stretch * var_s / stable.total
    if se2 <= 0:
        return None
    return canary.mean - stretch * stable.mean, math.sqrt(se2)


# The scale score test's alternative: the canary this much slower than the stretched stable (a +50 %
# regression against a 20 % tolerance), where its weights are the log-likelihood ratio.
SCORE_ALTERNATIVE: Final = 1.25
_SCORE_WEIGHT_CAP: Final = 3.0


@lru_cache(maxsize=16)
def scale_score(canary: Histogram, stable: Histogram, stretch: float) -> tuple[float, float]:
    """(T - E[T], sd(T)) of a weighted linear rank test for "canary > stable * stretch".

    T adds, over the canary's buckets, its requests times a weight: the log-likelihood ratio, per
    bucket, of the pooled distribution (canary and stretched stable, CDFs by
    :meth:`Histogram.smooth_count_below`) stretched once more by :data:`SCORE_ALTERNATIVE` against
    as it is. Mann-Whitney weighs every bucket by its rank; these weights put the evidence where a
    slowdown moves requests across bounds relative to how many sit there (a mode crossing
    0.25 s, or 2.5 s, weighs more than the bulk of a wide bucket), which is the most powerful test
    against that alternative. The weights are a function of the pooled requests only, so under the
    null (both samples from one distribution, the stretched stable) T has the permutation mean
    ``n_c * mean(w)`` and variance ``n_c n_s / (N (N - 1)) * sum m (w - mean(w))^2``; weights are capped
    at +-3 so that no single bucket decides. Unlike U, the weights need not grow with latency, so a
    canary slower in one place and faster in another can look better; U stays beside it.
    """
    n_c, n_s = canary.total, stable.total
    n = n_c + n_s
    if n_c <= 0 or n_s <= 0 or n < 2:
        return 0.0, 0.0

    def pooled_below(x: float) -> float:
        if x == math.inf:
            return n
        return canary.smooth_count_below(x) + stable.smooth_count_below(x / stretch)

    rows: list[tuple[float, float, float]] = []  # (canary count, pooled count, weight) per bucket
    lower, below_c = 0.0, 0.0
    for upper, cumulative in zip(canary.bounds, canary.counts, strict=True):
        pooled = pooled_below(upper) - pooled_below(lower)
        if pooled > 0:
            moved = pooled_below(upper / SCORE_ALTERNATIVE) - pooled_below(lower / SCORE_ALTERNATIVE)
            weight = math.log((moved + 0.5) / (pooled + 0.5))
            rows.append(
                (cumulative - below_c, pooled, max(-_SCORE_WEIGHT_CAP, min(_SCORE_WEIGHT_CAP, weight)))
            )
        lower, below_c = upper, cumulative
    mass = sum(m for _, m, _ in rows)
    if mass <= 0:
        return 0.0, 0.0
    mean_weight = sum(m * w for _, m, w in rows) / mass
    t = sum(c * w for c, _, w in rows)
    variance = n_c * n_s / (n * (n - 1.0)) * sum(m * (w - mean_weight) ** 2 for _, m, w in rows)
    return t - n_c * mean_weight, math.sqrt(variance) if variance > 0 else 0.0


@lru_cache(maxsize=16)  # the same test is asked for by both judges and the ratio search
def _mann_whitney(
    canary: Histogram, stable: Histogram, stretch: float, smooth: bool = False
) -> tuple[float, float]:
    """(U - E[U], sd(U)) for "canary > stable * stretch", ties within merged bins counted as 1/2.

    The tie correction of the variance uses the tie groups expected under the null hypothesis (all
    N requests distributed like the stretched stable), not the observed pooled groups: the test stays
    calibrated, and sd no longer depends on where the canary's requests fall, so moving canary
    requests to slower buckets can only raise z (the verdict is monotone).
    """
    n_c, n_s = canary.total, stable.total
    n = n_c + n_s
    if n_c <= 0 or n_s <= 0 or n < 2:
        return 0.0, 0.0
    u = below = ties = 0.0
    for c, s in _paired_bins(canary, stable, stretch, smooth):
        u += c * (below + 0.5 * s)
        below += s
        t = n * s / n_s
        if t > 1:
            ties += t * t * t - t
    variance = n_c * n_s / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)))
    return u - n_c * n_s / 2.0, math.sqrt(variance) if variance > 0 else 0.0


def _regression_p(canary: Histogram, stable: Histogram, stretch: float) -> float:
    excess, sd = _mann_whitney(canary, stable, stretch)
    if sd <= 0:
        return 1.0
    return normal_sf(excess / sd)


def _shift_estimate(canary: Histogram, stable: Histogram, start: float) -> float:
    """Hodges-Lehmann-style ratio: the stretch of stable at which U is balanced (>= start)."""
    lo, hi = math.log(start), math.log(start)
    while _mann_whitney(canary, stable, math.exp(hi))[0] > 0:
        lo, hi = hi, hi + 1.0
        if hi > math.log(_SHIFT_MAX):
            return _SHIFT_MAX
    for _ in range(_SHIFT_STEPS):
        mid = 0.5 * (lo + hi)
        if _mann_whitney(canary, stable, math.exp(mid))[0] > 0:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def _effective(histogram: Histogram, requests: float) -> Histogram:
    """The histogram with at most one observation per finished request (see Assumptions)."""
    if requests > 0 and histogram.total > requests:
        return histogram.scaled_to(requests)
    return histogram


# --------------------------------------------------------------------------------------------------
# The judges


@dataclass
class _Check:
    objectives: Objectives
    canary: RevisionSample
    stable: RevisionSample | None
    values: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def stable_usable(self) -> bool:
        return self.stable is not None and self.stable.total >= self.objectives.min_requests

    def record(self, evidence: Evidence, message: str) -> None:
        self.evidence.append(evidence)
        if evidence.failed:
            self.failures.append(message)


def _inconclusive_low_traffic(
    canary: RevisionSample, stable: RevisionSample | None, obj: Objectives
) -> Verdict:
    values = {"n_canary": canary.total, "min_requests": float(obj.min_requests)}
    if stable is not None:
        values["n_stable"] = stable.total
    return Verdict(
        "inconclusive",
        values=values,
        summary=(f"inconclusive: {_fmt_n(canary.total)} canary requests < minRequests {obj.min_requests}"),
    )


def verdict_summary(
    failures: Sequence[str], missing: Sequence[str], passed: Iterable[str], notes: Sequence[str]
) -> tuple[CheckVerdict, str]:
    """A check's verdict and its one-line summary: fail on any failure, inconclusive where an
    objective lacked canary data, else pass (with what passed); notes in parentheses."""
    if failures:
        result: CheckVerdict = "fail"
        summary = "fail: " + "; ".join(failures)
    elif missing:
        result = "inconclusive"
        summary = "inconclusive: no canary data for " + ", ".join(missing)
    else:
        result = "pass"
        summary = "pass: " + ", ".join(passed)
    if notes:
        summary += " (" + "; ".join(notes) + ")"
    return result, summary


def _finish(check: _Check, summary_parts: Iterable[str]) -> Verdict:
    result, summary = verdict_summary(check.failures, check.missing, summary_parts, check.notes)
    return Verdict(result, tuple(check.failures), check.values, summary, tuple(check.evidence))


def judge(canary: RevisionSample, stable: RevisionSample | None, objectives: Objectives) -> Verdict:
    """One check's verdict for the canary (see the module docstring for the tests)."""
    obj = objectives
    if canary.total < obj.min_requests:
        return _inconclusive_low_traffic(canary, stable, obj)
    check = _Check(obj, canary, stable)
    alpha = obj.alpha
    stretch = 1.0 + obj.max_regression
    label = _quantile_label(obj.quantile)
    n_c = canary.total
    n_s = stable.total if stable is not None else None
    values = check.values
    values.update({"n_canary": n_c, "alpha": alpha})
    if n_s is not None:
        values["n_stable"] = n_s
    if stable is not None and not check.stable_usable:
        check.notes.append(
            f"stable has {_fmt_n(stable.total)} requests < minRequests {obj.min_requests}: no regression tests"
        )
    parts: list[str] = []

    for metric in METRICS:
        slo = obj.slo(metric)
        raw = canary.histogram(metric)
        if raw is None or raw.total <= 0:
            if slo is not None:
                check.missing.append(metric)
            continue
        ch = _effective(raw, canary.requests)
        p_c = raw.quantile(obj.quantile)
        values[f"{metric}_{label}_canary"] = p_c
        raw_s = stable.histogram(metric) if stable is not None else None
        sh = None
        p_s = math.nan
        if raw_s is not None and raw_s.total > 0 and stable is not None:
            sh = _effective(raw_s, stable.requests)
            p_s = raw_s.quantile(obj.quantile)
            values[f"{metric}_{label}_stable"] = p_s
        stable_text = f"stable {_fmt_seconds(p_s)}, " if sh is not None else ""
        parts.append(
            f"{metric} {label} {_fmt_seconds(p_c)}"
            + (f" (stable {_fmt_seconds(p_s)})" if sh is not None else "")
        )

        if slo is not None:
            above = ch.fraction_above(slo) * ch.total
            p = binomial_sf(above, ch.total, 1.0 - obj.quantile)
            values[f"{metric}_slo_p"] = p
            check.record(
                Evidence(
                    f"{metric} {label} slo", p_c, p_s if sh is not None else None, slo, p, n_c, n_s, p < alpha
                ),
                f"{metric} {label} {_fmt_seconds(p_c)} > slo {_fmt_seconds(slo)} ({stable_text}n={_fmt_n(n_c)})",
            )

        if sh is not None and check.stable_usable and n_s is not None:
            p = _regression_p(ch, sh, stretch)
            values[f"{metric}_regression_p"] = p
            failed = p < alpha
            message = ""
            if failed:
                shift = _shift_estimate(ch, sh, stretch)
                values[f"{metric}_shift"] = shift
                message = (
                    f"{metric} is {_fmt_pct(shift - 1.0)} slower than stable "
                    f"(> {_fmt_pct(obj.max_regression)} allowed, {_fmt_p(p)}; "
                    f"{label} {_fmt_seconds(p_c)} vs {_fmt_seconds(p_s)}, n={_fmt_n(n_c)}/{_fmt_n(n_s)})"
                )
            check.record(Evidence(f"{metric} regression", p_c, p_s, stretch, p, n_c, n_s, failed), message)

    _judge_errors(check, stretch, alpha, parts)
    parts.append(f"n={_fmt_n(n_c)}" + (f"/{_fmt_n(n_s)}" if n_s is not None else ""))
    return _finish(check, parts)


def _judge_errors(check: _Check, stretch: float, alpha: float, parts: list[str]) -> None:
    obj, canary, stable, values = check.objectives, check.canary, check.stable, check.values
    n_c, k_c = canary.total, canary.bad
    rate_c = canary.error_rate
    values["error_rate_canary"] = rate_c
    rate_s = math.nan
    if stable is not None and stable.total > 0:
        rate_s = stable.error_rate
        values["error_rate_stable"] = rate_s
    has_stable = not math.isnan(rate_s)
    parts.append(f"errors {_fmt_share(rate_c)}" + (f" (stable {_fmt_share(rate_s)})" if has_stable else ""))
    stable_text = f"stable {_fmt_share(rate_s)}, " if has_stable else ""

    if obj.error_rate is not None:
        p = binomial_sf(k_c, n_c, obj.error_rate)
        values["error_slo_p"] = p
        check.record(
            Evidence(
                "error rate slo",
                rate_c,
                rate_s if has_stable else None,
                obj.error_rate,
                p,
                n_c,
                stable.total if stable is not None else None,
                p < alpha,
            ),
            f"error rate {_fmt_share(rate_c)} > slo {_fmt_share(obj.error_rate)} ({stable_text}n={_fmt_n(n_c)})",
        )

    if stable is not None and check.stable_usable:
        n_s, k_s = stable.total, stable.bad
        k = k_c + k_s
        if k <= 0:
            return
        share = stretch * n_c / (stretch * n_c + n_s)
        p = binomial_sf(k_c, k, share)
        values["error_regression_p"] = p
        failed = p < alpha
        if rate_s > 0:
            how = f"is {_fmt_pct(rate_c / rate_s - 1.0)} worse than stable {_fmt_share(rate_s)}"
        else:
            how = f"vs stable {_fmt_share(rate_s)}"
        check.record(
            Evidence("error rate regression", rate_c, rate_s, stretch, p, n_c, n_s, failed),
            f"error rate {_fmt_share(rate_c)} {how} "
            f"(> {_fmt_pct(obj.max_regression)} allowed, {_fmt_p(p)}, n={_fmt_n(n_c)}/{_fmt_n(n_s)})",
        )


def naive_judge(canary: RevisionSample, stable: RevisionSample | None, objectives: Objectives) -> Verdict:
    """The baseline the bench compares against: point estimates against thresholds, no statistics.

    Fails when a canary p95 (``histogram_quantile``) exceeds its SLO or stable's p95 times
    ``1 + max_regression``, or when the canary's error rate exceeds the SLO or stable's rate times
    ``1 + max_regression``. Same ``min_requests`` gate as :func:`judge`.
    """
    obj = objectives
    if canary.total < obj.min_requests:
        return _inconclusive_low_traffic(canary, stable, obj)
    check = _Check(obj, canary, stable)
    stretch = 1.0 + obj.max_regression
    label = _quantile_label(obj.quantile)
    n_c = canary.total
    check.values["n_canary"] = n_c
    parts: list[str] = []
    for metric in METRICS:
        slo = obj.slo(metric)
        raw = canary.histogram(metric)
        if raw is None or raw.total <= 0:
            if slo is not None:
                check.missing.append(metric)
            continue
        p_c = raw.quantile(obj.quantile)
        check.values[f"{metric}_{label}_canary"] = p_c
        raw_s = stable.histogram(metric) if stable is not None else None
        p_s = raw_s.quantile(obj.quantile) if raw_s is not None and raw_s.total > 0 else math.nan
        parts.append(f"{metric} {label} {_fmt_seconds(p_c)}")
        if slo is not None and p_c > slo:
            check.failures.append(f"{metric} {label} {_fmt_seconds(p_c)} > slo {_fmt_seconds(slo)}")
        if check.stable_usable and not math.isnan(p_s) and p_c > p_s * stretch:
            check.failures.append(
                f"{metric} {label} {_fmt_seconds(p_c)} > {_fmt_seconds(p_s)} * {stretch:g} (stable)"
            )
    rate_c = canary.error_rate
    parts.append(f"errors {_fmt_share(rate_c)}")
    if obj.error_rate is not None and rate_c > obj.error_rate:
        check.failures.append(f"error rate {_fmt_share(rate_c)} > slo {_fmt_share(obj.error_rate)}")
    if stable is not None and check.stable_usable:
        rate_s = stable.error_rate
        if rate_c > rate_s * stretch:
            check.failures.append(
                f"error rate {_fmt_share(rate_c)} > {_fmt_share(rate_s)} * {stretch:g} (stable)"
            )
    return _finish(check, parts)
