"""Token economics of a revision (pure): what it served, what that cost, and the statistics of the cost
SLOs (issue 19). See docs/analysis.md, "Cost".

Inputs, per revision and analysis window, are vLLM's token counters as ``increase()`` reports them
(``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``, ``vllm:prefix_cache_hits_total`` and
``_queries_total``), its per-request token histograms (``vllm:request_prompt_tokens``,
``vllm:request_generation_tokens``), and what the plan says a replica costs (:class:`RevisionPricing`).

Two kinds of numbers come out:

* **Accounting** (:func:`measure`, reported in status and the operator's metrics): tokens per second,
  tokens per request, the prefix cache hit ratio, GPU-hours (replicas x GPUs per replica x window) and,
  with prices, cost per million tokens (served: prompt + generated) and per successful request. Nothing
  is guessed: no traffic, no replicas or no price is ``None`` ("unknown"), never 0 or infinity.
* **The cost test's estimate** (:func:`cost_ratio`), which must not depend on the traffic share: a
  canary at 10 % of the traffic pays for replicas that mostly idle, so its accounting cost per token is
  many times stable's whatever its efficiency. The ratio canary/stable of the cost per served token is
  estimated as ``price ratio x computed-share ratio``:

  - the **price ratio** of a replica-hour, exact, from the two plans (GPUs x GPU-hour price + CPU
    cores x CPU-hour price; without prices, the ratio of GPUs per replica when both run the same GPU
    product);
  - the **computed share** ``f = (prompt - prefix-cache hits + generated) / (prompt + generated)``: the
    part of the served tokens the engine had to compute, from the counters.

  Assumption: a replica's throughput of computed tokens is the same for both revisions (tensor parallel
  2 where 1 sufficed counts as twice the cost; a faster engine that needs fewer replicas at full load is
  not credited). Latency regressions are the latency SLOs' business.

Variances (delta method, per check, each revision's requests independent):

* ``Var(f^) ≈ k r (1 - r) / n``: ``r = 1 - f`` the cached share, ``n`` the requests, ``k = E[s^2] / E[s]^2``
  of the served tokens ``s`` per request (from the histograms, uniform within a bucket; ``E[s^2]`` bounded
  by Cauchy-Schwarz from the prompt and generation moments). ``r (1 - r)`` bounds the variance of a
  per-request share within [0, 1] with mean r (Bhatia-Davis), taken as independent of the request's size.
  No cache hits at all (r = 0) makes ``f = 1`` exact.
* Served tokens over a window (compound Poisson): ``Var(log S) ≈ k / n``.
* Mean prompt tokens per request: ``Var(log m^) ≈ (E[p^2] / E[p]^2 - 1) / n``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from nlpmodel_operator.core.analysis.judge import Histogram

__all__ = [
    "LogEstimate",
    "RevisionPricing",
    "TokenSample",
    "Usage",
    "absolute_cost",
    "cost_ratio",
    "counted",
    "measure",
    "price_ratio",
    "prompt_ratio",
    "relative_second_moment",
    "z_score",
]

SECONDS_PER_HOUR: Final = 3600.0
PER_MILLION: Final = 1e6
# Bounds of a z-score where the estimate is exact (no variance): far beyond any decision.
Z_CAP: Final = 40.0


def _finite_count(value: float, what: str) -> float:
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"{what} must be a finite count >= 0, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class TokenSample:
    """One revision's token counters and per-request token histograms over one window.

    Counts are ``increase()`` values (floats, counter resets already handled by Prometheus); the
    shell clamps the small negatives float noise can produce to 0. Prefix-cache hits can exceed the
    prompt tokens when the two counters' scrapes straddle a reset: the cached share is clamped to [0, 1].
    """

    prompt_tokens: float
    generation_tokens: float
    cache_hits: float = 0.0
    cache_queries: float = 0.0
    prompt_histogram: Histogram | None = None  # vllm:request_prompt_tokens (one observation per request)
    generation_histogram: Histogram | None = None

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "generation_tokens", "cache_hits", "cache_queries"):
            object.__setattr__(self, name, _finite_count(getattr(self, name), name))

    @property
    def served(self) -> float:
        return self.prompt_tokens + self.generation_tokens

    @property
    def cached(self) -> float:
        """Prompt tokens served from the prefix cache (never more than the prompt tokens)."""
        return min(self.cache_hits, self.prompt_tokens)

    @property
    def requests(self) -> float:
        """Requests with token observations (the prompt histogram's count; 0 without it)."""
        return self.prompt_histogram.total if self.prompt_histogram is not None else 0.0

    @property
    def hit_ratio(self) -> float | None:
        if self.cache_queries <= 0:
            return None
        return max(0.0, min(1.0, self.cache_hits / self.cache_queries))


@dataclass(frozen=True)
class RevisionPricing:
    """What one replica of a revision is, from its plan, and what it costs per hour (None: not priced)."""

    gpus_per_replica: int
    gpu_product: str | None = None
    replica_hour_cost: float | None = None
    replicas: int | None = None  # observed now (None: unknown)


def counted(pricing: RevisionPricing, servers: int | None) -> RevisionPricing:
    """The pricing with its replicas counted from the scraped model servers where the workload does
    not report them (a KServe InferenceService without a replica count)."""
    if pricing.replicas is not None or servers is None:
        return pricing
    return RevisionPricing(pricing.gpus_per_replica, pricing.gpu_product, pricing.replica_hour_cost, servers)


@dataclass(frozen=True)
class Usage:
    """A revision's accounting over one window; None is "unknown" (no traffic, no replicas, no price)."""

    tokens_per_second: float | None = None
    prompt_tokens_per_request: float | None = None
    generation_tokens_per_request: float | None = None
    prefix_cache_hit_ratio: float | None = None
    gpu_hours: float | None = None
    cost: float | None = None  # of the window
    cost_per_million_tokens: float | None = None
    cost_per_request: float | None = None


def measure(
    tokens: TokenSample | None, successes: float, window_s: float, pricing: RevisionPricing | None
) -> Usage:
    """The accounting of one revision over ``window_s`` seconds (``successes``: successful requests)."""
    if not (math.isfinite(window_s) and window_s > 0):
        return Usage()
    hours = window_s / SECONDS_PER_HOUR
    replicas = pricing.replicas if pricing is not None else None
    gpu_hours = (
        replicas * pricing.gpus_per_replica * hours if pricing is not None and replicas is not None else None
    )
    cost = None
    if (
        pricing is not None
        and pricing.replica_hour_cost is not None
        and replicas is not None
        and replicas > 0
    ):
        cost = pricing.replica_hour_cost * replicas * hours
    if tokens is None:
        return Usage(gpu_hours=gpu_hours, cost=cost)
    n = tokens.requests
    served = tokens.served
    return Usage(
        tokens_per_second=served / window_s,
        prompt_tokens_per_request=tokens.prompt_tokens / n if n > 0 else None,
        generation_tokens_per_request=tokens.generation_tokens / n if n > 0 else None,
        prefix_cache_hit_ratio=tokens.hit_ratio,
        gpu_hours=gpu_hours,
        cost=cost,
        cost_per_million_tokens=cost * PER_MILLION / served if cost is not None and served > 0 else None,
        cost_per_request=cost / successes if cost is not None and successes > 0 else None,
    )


# --------------------------------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True)
class LogEstimate:
    """An estimate as its logarithm and the variance of that logarithm."""

    log: float
    variance: float

    @property
    def value(self) -> float:
        return math.exp(self.log)

    def __mul__(self, other: LogEstimate) -> LogEstimate:
        return LogEstimate(self.log + other.log, self.variance + other.variance)

    def __truediv__(self, other: LogEstimate) -> LogEstimate:
        return LogEstimate(self.log - other.log, self.variance + other.variance)


def relative_second_moment(histogram: Histogram) -> float | None:
    """``E[x^2] / E[x]^2`` of a histogram's observations, uniform within each bucket (the lowest from 0;
    the ``+Inf`` bucket at the highest finite bound, as ``histogram_quantile`` does); None when empty."""
    total = histogram.total
    if total <= 0:
        return None
    first = second = 0.0
    below, start = 0.0, 0.0
    finite = [b for b in histogram.bounds if b != math.inf]
    top = finite[-1] if finite else 0.0
    for bound, cumulative in zip(histogram.bounds, histogram.counts, strict=True):
        count = cumulative - below
        below = cumulative
        if bound == math.inf:
            first += count * top
            second += count * top * top
            continue
        lo, hi = max(0.0, start), max(0.0, bound)
        first += count * (lo + hi) / 2.0
        second += count * (lo * lo + lo * hi + hi * hi) / 3.0
        start = bound
    if first <= 0:
        return None
    return second * total / (first * first)


def _served_moment(tokens: TokenSample) -> float | None:
    """``k = E[s^2] / E[s]^2`` of the served tokens per request (Cauchy-Schwarz bound; None: no data)."""
    n = tokens.requests
    if n <= 0 or tokens.served <= 0 or tokens.prompt_histogram is None:
        return None
    rho_p = relative_second_moment(tokens.prompt_histogram) if tokens.prompt_tokens > 0 else 1.0
    rho_g: float | None = 1.0
    if tokens.generation_tokens > 0:
        if tokens.generation_histogram is None:
            return None
        rho_g = relative_second_moment(tokens.generation_histogram)
    if rho_p is None or rho_g is None:
        return None
    mean_p, mean_g = tokens.prompt_tokens / n, tokens.generation_tokens / n
    root = (mean_p * math.sqrt(rho_p) + mean_g * math.sqrt(rho_g)) / (mean_p + mean_g)
    return root * root


def computed_share(tokens: TokenSample) -> LogEstimate | None:
    """log of the share of served tokens the engine computed (not from the prefix cache)."""
    kappa = _served_moment(tokens)
    if kappa is None:
        return None
    cached = tokens.cached / tokens.served
    share = 1.0 - cached
    if share <= 0:
        return None  # everything from the cache: no computed work to compare
    return LogEstimate(math.log(share), kappa * cached * (1.0 - cached) / (tokens.requests * share * share))


def price_ratio(canary: RevisionPricing, stable: RevisionPricing) -> tuple[float, str] | None:
    """Canary/stable price of a replica-hour, exact from the plans, and what it rests on (None: unknown)."""
    c, s = canary.replica_hour_cost, stable.replica_hour_cost
    if c is not None and s is not None and c > 0 and s > 0:
        return c / s, "replica-hour prices"
    same_card = canary.gpu_product == stable.gpu_product
    if same_card and canary.gpus_per_replica > 0 and stable.gpus_per_replica > 0:
        return canary.gpus_per_replica / stable.gpus_per_replica, "GPUs per replica"
    return None


def cost_ratio(
    canary: TokenSample, stable: TokenSample, canary_pricing: RevisionPricing, stable_pricing: RevisionPricing
) -> LogEstimate | None:
    """Canary/stable cost per served token, share-independent (see the module docstring); None: unknown."""
    prices = price_ratio(canary_pricing, stable_pricing)
    share_c, share_s = computed_share(canary), computed_share(stable)
    if prices is None or share_c is None or share_s is None:
        return None
    return LogEstimate(math.log(prices[0]), 0.0) * share_c / share_s


def accounting_cost_per_token(tokens: TokenSample, cost: float | None) -> LogEstimate | None:
    """A revision's own cost per served token over the window, with the variance of its token count."""
    kappa = _served_moment(tokens)
    if cost is None or cost <= 0 or kappa is None:
        return None
    return LogEstimate(math.log(cost / tokens.served), kappa / tokens.requests)


def absolute_cost(
    canary: TokenSample,
    canary_pricing: RevisionPricing,
    canary_cost: float | None,
    stable: TokenSample | None = None,
    stable_pricing: RevisionPricing | None = None,
    stable_cost: float | None = None,
) -> tuple[LogEstimate, str] | None:
    """The canary's cost per served token: stable's accounting cost x the cost ratio (independent of
    the canary's share), or without a usable stable the canary's own accounting cost."""
    if stable is not None and stable_pricing is not None:
        ratio = cost_ratio(canary, stable, canary_pricing, stable_pricing)
        base = accounting_cost_per_token(stable, stable_cost)
        if ratio is not None and base is not None:
            return base * ratio, "stable's cost x the cost ratio"
    own = accounting_cost_per_token(canary, canary_cost)
    if own is None:
        return None
    return own, "the canary's own cost"


def prompt_ratio(canary: TokenSample, stable: TokenSample) -> LogEstimate | None:
    """Canary/stable mean prompt tokens per request (None: no prompts or no histograms)."""
    parts = []
    for tokens in (canary, stable):
        n = tokens.requests
        rho = relative_second_moment(tokens.prompt_histogram) if tokens.prompt_histogram is not None else None
        if n <= 0 or tokens.prompt_tokens <= 0 or rho is None:
            return None
        parts.append(LogEstimate(math.log(tokens.prompt_tokens / n), max(0.0, rho - 1.0) / n))
    return parts[0] / parts[1]


def z_score(estimate: LogEstimate, limit: float) -> float:
    """z of "the estimate exceeds ``limit``" (an exact estimate: +-Z_CAP, or 0 exactly at the limit)."""
    excess = estimate.log - math.log(limit)
    if estimate.variance <= 0:
        return 0.0 if excess == 0 else math.copysign(Z_CAP, excess)
    return max(-Z_CAP, min(Z_CAP, excess / math.sqrt(estimate.variance)))
