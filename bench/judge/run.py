"""Seeded simulation of canary rollouts: the sequential judge beside the per-check judge, per latency shape.

    python -m bench.judge.run [--trials N] [--seed S] [--out bench/results/judge.json]

What one trial is: a canary rollout of up to ``--checks`` (30) analysis checks, one per ``--interval``
seconds. Each check, both revisions are observed the way Prometheus reports ``increase(x[window])``
with scrapes every ``--scrape-interval`` seconds (a fixed random phase per revision): only the
requests between the first and the last scrape inside the window are counted, and the counts are
extrapolated to the whole window (floats). The default window is the interval plus one scrape
interval (75 s), which counts exactly the interval's requests (x1.25). Each histogram comes with its
``_sum`` series (the exact total of the sampled requests' values, extrapolated alike), which the
sequential judge's mean test reads.

Traffic: 2 requests/s reach the canary (Poisson); the stable gets the rest of a canary share of 10 %
(18 requests/s) or 50 % (2 requests/s). Both judges see exactly the same data each check:

* ``per-check`` (``judge``, the operator's judge before issue 18): rolled back after
  ``failure_threshold`` (2) consecutive failed checks; an inconclusive check neither counts as a fail
  nor resets the run, only a pass does;
* ``sequential`` (``sequential_judge``, the operator's judge now): rolled back at the first check
  whose accumulated evidence rejects (the verdict ``fail``).

Latency shapes (the healthy stable; SLOs are twice its p95s, so only regressions against stable or
``errors 5%`` can fail):

* ``lognormal``: TTFT a lognormal body (median 0.28 s, sigma 0.45) with an 8 % tail (median 0.9 s,
  sigma 0.6); tokens lognormal (median 180, sigma 0.7, 2..2048); per-request ITL lognormal (median
  30 ms, sigma 0.25), one ITL observation per token after the first; e2e = TTFT + (tokens-1) x ITL.
* ``bimodal``: short and long prompts, TTFT 60 % lognormal (median 0.12 s, sigma 0.4) and 40 %
  lognormal (median 1.1 s, sigma 0.35); the rest as ``lognormal``.
* ``drift``: ``lognormal``, and in every interval each revision's TTFT and ITL are multiplied by its
  own load factor exp(N(0, 0.05^2)) (independent per revision and per interval, on a grid of 0.01).
* ``pareto``: heavy-tailed TTFT, 0.15 s x Pareto(shape 2.2) (median 0.21 s, p95 0.58 s, p99 1.2 s).

Scenarios (canary only): ``A/A`` (none); ``ttft+10%`` (every TTFT x 1.1, inside the 20 % tolerance);
``ttft+50%``; ``errors 5%`` (error+abort share 5 %; healthy is 0.1 %, the SLO 2 %). The first two run
all checks (a rollback is a false one); the last two count a rollback within 3 checks.

Cost cells (issue 19; shape ``tokens``, the sequential judge alone with ``maxCostRegression 20%``, both
revisions one GPU per replica at the same price, so the statistics are all in the tokens): per request
prompt tokens lognormal (median 350, sigma 0.6), generated lognormal (median 150, sigma 0.7), both within
1..4096, and a share of the prompt from the prefix cache drawn from Beta(4m, 4(1-m)) with the stable's
mean m = 60 %. ``cost A/A`` (the same), ``cost+10%`` (fewer cache hits: the computed share of served tokens
x1.1, inside the tolerance) and ``cost+50%`` (x1.5, caught within 3 checks). The counters and the token
histograms are observed like the latency ones (the same window, extrapolation and Poisson arrivals).

Pure Python (no numpy): each latency variant is pre-sampled into a pool of requests reduced to
their buckets, and checks resample it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from nlpmodel_operator.api.status import ObjectiveEvidence
from nlpmodel_operator.core.analysis.cost import RevisionPricing, TokenSample
from nlpmodel_operator.core.analysis.judge import Histogram, Objectives, RevisionSample, judge
from nlpmodel_operator.core.analysis.sequential import CONFIDENCE, CostContext, sequential_judge

# vLLM 0.33.0 vllm/v1/metrics/buckets.py (see ../shared/vllm/vllm-0.33.0-cli.json), plus +Inf.
TTFT_BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0, 160.0, 640.0, 2560.0, math.inf,
)  # fmt: skip
ITL_BUCKETS: Final = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
    80.0, math.inf,
)  # fmt: skip
E2E_BUCKETS: Final = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0, math.inf,
)  # fmt: skip

CANARY_RPS: Final = 2.0
SHARES: Final = (0.1, 0.5)
SHAPES: Final = ("lognormal", "bimodal", "drift", "pareto")
HEALTHY_ERRORS: Final = 0.001
POOL_SIZE: Final = 60_000
DRIFT_POOL_SIZE: Final = 20_000
DRIFT_SIGMA: Final = 0.05
DRIFT_STEP: Final = 0.01  # load factors are exp(k * DRIFT_STEP), k within +-4 sigma
POOL_SEED: Final = 20261126


@dataclass(frozen=True)
class Scenario:
    name: str
    ttft_factor: float = 1.0
    error_rate: float = HEALTHY_ERRORS
    healthy: bool = False  # any rollback is a false one (run every check)
    cost_factor: float | None = None  # a cost cell: the canary's cost per token / the stable's


SCENARIOS: Final = (
    Scenario("A/A", healthy=True),
    Scenario("ttft+10%", ttft_factor=1.1, healthy=True),
    Scenario("ttft+50%", ttft_factor=1.5),
    Scenario("errors 5%", error_rate=0.05),
    Scenario("cost A/A", healthy=True, cost_factor=1.0),
    Scenario("cost+10%", healthy=True, cost_factor=1.1),
    Scenario("cost+50%", cost_factor=1.5),
)
COST_SHAPE: Final = "tokens"
TOKEN_BUCKETS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, math.inf)  # vLLM's 1-2-5 up to 4096
STABLE_CACHE_SHARE: Final = 0.6
CACHE_CONCENTRATION: Final = 4.0
COST_MAX_REGRESSION: Final = 0.2
ONE_GPU: Final = RevisionPricing(
    gpus_per_replica=1, gpu_product="nvidia-h100-80gb", replica_hour_cost=4.0, replicas=1
)

DETECT_WITHIN: Final = 3

JUDGES: Final = ("per-check", "sequential")
PER_CHECK_CONFIDENCE: Final = 0.98


@dataclass(frozen=True)
class Settings:
    trials: int
    seed: int
    checks: int
    interval: float
    window: float
    scrape_interval: float
    failure_threshold: int


# ------------------------------------------------------------------------------------------------
# Request pools


def _bucket(bounds: Sequence[float], value: float) -> int:
    """Index of the first bucket whose upper bound is >= value (Prometheus `le`)."""
    lo, hi = 0, len(bounds) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if value <= bounds[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass(frozen=True)
class Pool:
    """A latency variant, pre-sampled: one bucket key per request, and the ITL observations per key."""

    keys: list[int]  # per pooled request: ttft bucket + 64 * (itl bucket + 64 * e2e bucket)
    itl_observations: dict[int, float]  # per key: mean ITL observations (tokens - 1) per request
    # per pooled request, what it adds to the histograms' _sum series: TTFT, ITL x (tokens - 1), e2e
    sums: list[tuple[float, float, float]]


def _ttft(rng: random.Random, shape: str) -> float:
    if shape == "bimodal":
        long_prompt = rng.random() < 0.4
        return rng.lognormvariate(math.log(1.1 if long_prompt else 0.12), 0.35 if long_prompt else 0.4)
    if shape == "pareto":
        return float(0.15 * (1.0 - rng.random()) ** (-1.0 / 2.2))
    tail = rng.random() < 0.08
    return rng.lognormvariate(math.log(0.9 if tail else 0.28), 0.6 if tail else 0.45)


def _sample_request(
    rng: random.Random, shape: str, ttft_factor: float, load: float
) -> tuple[float, float, float, int]:
    ttft = _ttft(rng, shape) * ttft_factor * load
    tokens = min(2048, max(2, round(rng.lognormvariate(math.log(180), 0.7))))
    itl = rng.lognormvariate(math.log(0.030), 0.25) * load
    return ttft, itl, ttft + (tokens - 1) * itl, tokens


def build_pool(shape: str, ttft_factor: float, load_step: int = 0) -> Pool:
    base = "lognormal" if shape == "drift" else shape
    size = DRIFT_POOL_SIZE if shape == "drift" else POOL_SIZE
    load = math.exp(load_step * DRIFT_STEP)
    rng = random.Random(f"{POOL_SEED}:{base}:{ttft_factor}:{load_step}")
    keys: list[int] = []
    sums: list[tuple[float, float, float]] = []
    tokens_by_key: dict[int, float] = {}
    count_by_key: Counter[int] = Counter()
    for _ in range(size):
        ttft, itl, e2e, tokens = _sample_request(rng, base, ttft_factor, load)
        key = _bucket(TTFT_BUCKETS, ttft) + 64 * (_bucket(ITL_BUCKETS, itl) + 64 * _bucket(E2E_BUCKETS, e2e))
        keys.append(key)
        sums.append((ttft, itl * (tokens - 1), e2e))
        count_by_key[key] += 1
        tokens_by_key[key] = tokens_by_key.get(key, 0.0) + (tokens - 1)
    return Pool(keys, {key: tokens_by_key[key] / count_by_key[key] for key in count_by_key}, sums)


def healthy_slos(shape: str, size: int = 200_000) -> Objectives:
    """SLOs at twice the healthy p95s (TTFT, ITL per token, e2e) of a shape, 2 significant digits."""
    base = "lognormal" if shape == "drift" else shape
    rng = random.Random(f"{POOL_SEED}:slo:{base}")
    ttfts, e2es = [], []
    itl_weighted: list[tuple[float, int]] = []
    for _ in range(size):
        ttft, itl, e2e, tokens = _sample_request(rng, base, 1.0, 1.0)
        ttfts.append(ttft)
        e2es.append(e2e)
        itl_weighted.append((itl, tokens - 1))

    def p95(values: list[float]) -> float:
        return sorted(values)[int(0.95 * len(values))]

    itl_weighted.sort()
    total = sum(w for _, w in itl_weighted)
    seen = 0.0
    itl_p95 = itl_weighted[-1][0]
    for value, weight in itl_weighted:
        seen += weight
        if seen >= 0.95 * total:
            itl_p95 = value
            break

    def twice(value: float) -> float:
        return float(f"{2 * value:.2g}")

    return Objectives(
        ttft_p95=twice(p95(ttfts)), itl_p95=twice(itl_p95), e2e_p95=twice(p95(e2es)), error_rate=0.02
    )


# ------------------------------------------------------------------------------------------------
# Observation, as Prometheus reports increase() over the window


def _poisson(rng: random.Random, mean: float) -> int:
    """Poisson variate: inversion for small means, Hormann's PTRS (transformed rejection) above 10."""
    if mean < 10:
        n, p = 0, math.exp(-mean)
        cumulative, u = p, rng.random()
        while u > cumulative and p > 0:
            n += 1
            p *= mean / n
            cumulative += p
        return n
    slam, loglam = math.sqrt(mean), math.log(mean)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        k = math.floor((2 * a / us + b) * u + mean + 0.43)
        if us >= 0.07 and v <= v_r:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        if math.log(v) + math.log(inv_alpha) - math.log(
            a / (us * us) + b
        ) <= -mean + k * loglam - math.lgamma(k + 1):
            return k


def _binomial(rng: random.Random, n: int, p: float) -> int:
    """Binomial variate by geometric skips (cheap for small p)."""
    if p <= 0 or n <= 0:
        return 0
    log_q = math.log1p(-p)
    k, i = 0, -1
    while True:
        i += math.floor(math.log(1.0 - rng.random()) / log_q) + 1
        if i >= n:
            return k
        k += 1


def window_coverage(window: float, scrape: float, phase: float) -> tuple[float, float]:
    """(seconds of requests counted, extrapolation factor) of increase(x[window]) with these scrapes.

    phase in (0, scrape]: how long after the window opens the first scrape in it happens. Follows
    Prometheus' extrapolatedRate: extrapolate to an edge if the gap is < 1.1 x the average sample
    spacing, else by half a spacing.
    """
    if scrape <= 0:
        return window, 1.0
    samples = math.floor((window - phase) / scrape) + 1
    if samples < 2:
        return 0.0, 0.0
    span = (samples - 1) * scrape
    to_end = window - phase - span
    threshold = 1.1 * scrape
    start = phase if phase < threshold else scrape / 2
    end = to_end if to_end < threshold else scrape / 2
    return span, (span + start + end) / span


def observe(
    rng: random.Random, pool: Pool, error_rate: float, rps: float, span: float, factor: float
) -> RevisionSample:
    n = _poisson(rng, rps * span)
    errors = _binomial(rng, n, error_rate)
    # Indices rather than keys: the same draws as choosing keys, and each request's exact values.
    chosen = rng.choices(range(len(pool.keys)), k=n) if n else []
    ttft = [0.0] * len(TTFT_BUCKETS)
    itl = [0.0] * len(ITL_BUCKETS)
    e2e = [0.0] * len(E2E_BUCKETS)
    per_request_itl = pool.itl_observations
    for key, count in Counter(pool.keys[i] for i in chosen).items():
        ttft[key % 64] += count
        itl[(key // 64) % 64] += count * per_request_itl[key]
        e2e[key // 4096] += count
    # The _sum series; their ITL observations per request are the pool's per-key mean, as in the buckets.
    ttft_sum = sum(pool.sums[i][0] for i in chosen)
    itl_sum = sum(pool.sums[i][1] for i in chosen)
    e2e_sum = sum(pool.sums[i][2] for i in chosen)

    def histogram(bounds: tuple[float, ...], per_bucket: list[float], total: float) -> Histogram:
        cumulative, running = [], 0.0
        for value in per_bucket:
            running += value * factor
            cumulative.append(running)
        return Histogram(bounds, tuple(cumulative), total * factor)

    return RevisionSample(
        ttft=histogram(TTFT_BUCKETS, ttft, ttft_sum),
        itl=histogram(ITL_BUCKETS, itl, itl_sum),
        e2e=histogram(E2E_BUCKETS, e2e, e2e_sum),
        requests=n * factor,
        errors=errors * factor,
    )


@dataclass(frozen=True)
class TokenPool:
    """Pre-sampled requests of a cost cell: (prompt tokens, generated tokens, cached prompt tokens)."""

    requests: list[tuple[int, int, int]]


def _token_draws(rng: random.Random) -> list[tuple[int, int]]:
    out = []
    for _ in range(POOL_SIZE):
        prompt = min(4096, max(1, round(rng.lognormvariate(math.log(350), 0.6))))
        generated = min(4096, max(1, round(rng.lognormvariate(math.log(150), 0.7))))
        out.append((prompt, generated))
    return out


def build_token_pool(cost_factor: float) -> TokenPool:
    """Requests whose computed share of served tokens is ``cost_factor`` times the stable's."""
    draws = _token_draws(random.Random(f"{POOL_SEED}:tokens"))
    prompt = sum(p for p, _ in draws)
    served = sum(p + g for p, g in draws)
    stable_computed = 1.0 - STABLE_CACHE_SHARE * prompt / served
    mean = (1.0 - cost_factor * stable_computed) * served / prompt  # the cached share of the prompt
    if not 0.0 < mean < 1.0:
        raise ValueError(f"a cost factor of {cost_factor} is out of reach of the cache alone")
    rng = random.Random(f"{POOL_SEED}:cache:{cost_factor}")
    a, b = CACHE_CONCENTRATION * mean, CACHE_CONCENTRATION * (1.0 - mean)
    return TokenPool([(p, g, round(p * rng.betavariate(a, b))) for p, g in draws])


def observe_tokens(
    rng: random.Random, pool: TokenPool, error_rate: float, rps: float, span: float, factor: float
) -> RevisionSample:
    n = _poisson(rng, rps * span)
    errors = _binomial(rng, n, error_rate)
    chosen = rng.choices(pool.requests, k=n) if n else []
    prompt_buckets = [0.0] * len(TOKEN_BUCKETS)
    generated_buckets = [0.0] * len(TOKEN_BUCKETS)
    for p, g, _ in chosen:
        prompt_buckets[_bucket(TOKEN_BUCKETS, p)] += 1
        generated_buckets[_bucket(TOKEN_BUCKETS, g)] += 1

    def histogram(per_bucket: list[float]) -> Histogram:
        cumulative, running = [], 0.0
        for value in per_bucket:
            running += value * factor
            cumulative.append(running)
        return Histogram(TOKEN_BUCKETS, tuple(cumulative))

    prompt = sum(p for p, _, _ in chosen) * factor
    tokens = TokenSample(
        prompt_tokens=prompt,
        generation_tokens=sum(g for _, g, _ in chosen) * factor,
        cache_hits=sum(c for _, _, c in chosen) * factor,
        cache_queries=prompt,
        prompt_histogram=histogram(prompt_buckets),
        generation_histogram=histogram(generated_buckets),
    )
    return RevisionSample(None, None, None, requests=n * factor, errors=errors * factor, tokens=tokens)


_TOKEN_POOLS: dict[float, TokenPool] = {}


def _token_pool(cost_factor: float) -> TokenPool:
    if cost_factor not in _TOKEN_POOLS:
        _TOKEN_POOLS[cost_factor] = build_token_pool(cost_factor)
    return _TOKEN_POOLS[cost_factor]


def run_cost_block(
    settings: Settings, confidence: float, share: float, scenario: Scenario, block: int
) -> dict[str, tuple[list[int | None], int, int]]:
    """One block of a cost cell: the sequential judge alone (the per-check judge has no cost test)."""
    assert scenario.cost_factor is not None
    rng = random.Random(f"{settings.seed}:{COST_SHAPE}:{share}:{scenario.name}:{block}")
    goals = Objectives(max_cost_regression=COST_MAX_REGRESSION, confidence=confidence)
    context = CostContext(ONE_GPU, ONE_GPU, settings.window)
    stable_rps = CANARY_RPS * (1.0 - share) / share
    checks = settings.checks if scenario.healthy else DETECT_WITHIN
    canary_pool, stable_pool = _token_pool(scenario.cost_factor), _token_pool(1.0)
    outcomes: list[int | None] = []
    fails = judged = 0
    for _ in range(min(BLOCK, settings.trials - block * BLOCK)):
        spans = [
            window_coverage(
                settings.window, settings.scrape_interval, settings.scrape_interval * (1 - rng.random())
            )
            for _ in range(2)
        ]
        run = _Rollout()
        for check in range(1, checks + 1):
            canary = observe_tokens(rng, canary_pool, HEALTHY_ERRORS, CANARY_RPS, *spans[0])
            stable = observe_tokens(rng, stable_pool, HEALTHY_ERRORS, stable_rps, *spans[1])
            verdict = sequential_judge(canary, stable, goals, run.evidence, explain=False, cost=context)
            run.evidence = verdict.evidence
            run.judged += 1
            if verdict.result == "fail":
                run.fails += 1
                run.rolled_back_at = check
                break
        outcomes.append(run.rolled_back_at)
        fails += run.fails
        judged += run.judged
    return {"sequential": (outcomes, fails, judged)}


# ------------------------------------------------------------------------------------------------
# Rollouts


_POOLS: dict[tuple[str, float, int], Pool] = {}


def _pool(shape: str, ttft_factor: float, load_step: int = 0) -> Pool:
    key = (shape, ttft_factor, load_step)
    if key not in _POOLS:
        _POOLS[key] = build_pool(shape, ttft_factor, load_step)
    return _POOLS[key]


def _load_step(rng: random.Random, shape: str) -> int:
    """This interval's load factor of one revision, as a step on the pools' grid."""
    if shape != "drift":
        return 0
    limit = round(4 * DRIFT_SIGMA / DRIFT_STEP)
    return max(-limit, min(limit, round(rng.gauss(0.0, DRIFT_SIGMA) / DRIFT_STEP)))


@dataclass
class _Rollout:
    """One judge's progress through one trial."""

    streak: int = 0
    evidence: tuple[ObjectiveEvidence, ...] = ()
    rolled_back_at: int | None = None
    fails: int = 0
    judged: int = 0


BLOCK: Final = 50  # trials per job; each block has its own seed, so results do not depend on --jobs


def run_block(
    settings: Settings, objectives: Objectives, shape: str, share: float, scenario: Scenario, block: int
) -> dict[str, tuple[list[int | None], int, int]]:
    """One block of trials of a (shape, share, scenario) cell, for both judges on the same data:
    per judge, (the check of each trial's rollback or None, failed checks, judged checks)."""
    rng = random.Random(f"{settings.seed}:{shape}:{share}:{scenario.name}:{block}")
    # The per-check judge as the operator ran it: its rollback confidence over two checks is 0.98.
    baseline = replace(objectives, confidence=PER_CHECK_CONFIDENCE)
    stable_rps = CANARY_RPS * (1.0 - share) / share
    checks = settings.checks if scenario.healthy else DETECT_WITHIN
    outcomes: dict[str, list[int | None]] = {name: [] for name in JUDGES}
    fails = dict.fromkeys(JUDGES, 0)
    judged = dict.fromkeys(JUDGES, 0)
    for _ in range(min(BLOCK, settings.trials - block * BLOCK)):
        spans = [
            window_coverage(
                settings.window, settings.scrape_interval, settings.scrape_interval * (1 - rng.random())
            )
            for _ in range(2)
        ]
        state = {name: _Rollout() for name in JUDGES}
        for check in range(1, checks + 1):
            if all(s.rolled_back_at is not None for s in state.values()):
                break
            canary_pool = _pool(shape, scenario.ttft_factor, _load_step(rng, shape))
            stable_pool = _pool(shape, 1.0, _load_step(rng, shape))
            canary = observe(rng, canary_pool, scenario.error_rate, CANARY_RPS, *spans[0])
            stable = observe(rng, stable_pool, HEALTHY_ERRORS, stable_rps, *spans[1])
            old = state["per-check"]
            if old.rolled_back_at is None:
                result = judge(canary, stable, baseline).result
                old.judged += 1
                if result == "fail":
                    old.fails += 1
                    old.streak += 1
                    if old.streak >= settings.failure_threshold:
                        old.rolled_back_at = check
                elif result == "pass":
                    old.streak = 0
            new = state["sequential"]
            if new.rolled_back_at is None:
                verdict = sequential_judge(canary, stable, objectives, new.evidence, explain=False)
                new.evidence = verdict.evidence
                new.judged += 1
                if verdict.result == "fail":
                    new.fails += 1
                    new.rolled_back_at = check
        for name in JUDGES:
            outcomes[name].append(state[name].rolled_back_at)
            fails[name] += state[name].fails
            judged[name] += state[name].judged
    return {name: (outcomes[name], fails[name], judged[name]) for name in JUDGES}


def cell_results(
    settings: Settings,
    shape: str,
    share: float,
    scenario: Scenario,
    blocks: list[dict[str, tuple[list[int | None], int, int]]],
) -> list[dict[str, Any]]:
    """The cell's rows (one per judge) from its blocks."""
    checks = settings.checks if scenario.healthy else DETECT_WITHIN
    cells = []
    for name in JUDGES:
        if name not in blocks[0]:
            continue  # a cost cell: the sequential judge alone
        outcomes = [a for block in blocks for a in block[name][0]]
        fails = sum(block[name][1] for block in blocks)
        judged = sum(block[name][2] for block in blocks)
        at = [a for a in outcomes if a is not None]
        cells.append(
            {
                "judge": name,
                "shape": shape,
                "share": share,
                "canary_rps": CANARY_RPS,
                "stable_rps": CANARY_RPS * (1.0 - share) / share,
                "scenario": scenario.name,
                "healthy": scenario.healthy,
                "checks": checks,
                "trials": len(outcomes),
                "rollback_rate": len(at) / len(outcomes),
                "rollback_within_3_checks": sum(1 for a in at if a <= DETECT_WITHIN) / len(outcomes),
                "mean_checks_to_rollback": (sum(at) / len(at)) if at else None,
                "fail_rate_per_check": fails / judged if judged else 0.0,
            }
        )
    return cells


def _block_job(
    args: tuple[Settings, Objectives, str, float, Scenario, int],
) -> dict[str, tuple[list[int | None], int, int]]:
    settings, objectives, _shape, share, scenario, block = args
    if scenario.cost_factor is not None:
        return run_cost_block(settings, objectives.confidence, share, scenario, block)
    return run_block(*args)


# ------------------------------------------------------------------------------------------------
# Output


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _goal(cell: dict[str, Any]) -> tuple[str, float, bool]:
    """(what, measured, met) for the issue's goal of a cell."""
    if cell["healthy"]:
        rate = cell["rollback_rate"]
        return f"false rollback over {cell['checks']} checks <= 1%", rate, rate <= 0.01
    within = cell["rollback_within_3_checks"]
    return "rolled back within 3 checks >= 95%", within, within >= 0.95


def format_table(cells: list[dict[str, Any]]) -> str:
    """One row per (shape, share, scenario): the per-check judge beside the sequential one."""
    header = ("shape", "share", "scenario", "goal", "per-check", "sequential", "seq. mean checks")
    rows = [header]
    keyed = {(c["judge"], c["shape"], c["share"], c["scenario"]): c for c in cells}
    for c in cells:
        if c["judge"] != "sequential":
            continue
        old = keyed.get(("per-check", c["shape"], c["share"], c["scenario"]))
        what, value, met = _goal(c)
        mean = c["mean_checks_to_rollback"]
        rows.append(
            (
                c["shape"],
                f"{c['share'] * 100:.0f}%",
                c["scenario"],
                what,
                "-" if old is None else _pct(_goal(old)[1]),
                _pct(value) + ("" if met else " MISSED"),
                "-" if mean is None else f"{mean:.2f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for i, row in enumerate(rows):
        lines.append("| " + " | ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)) + " |")
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def targets(cells: list[dict[str, Any]]) -> list[str]:
    """How many of the issue's goals each judge met."""
    out = []
    for name in JUDGES:
        mine = [c for c in cells if c["judge"] == name]
        if not mine:
            continue
        missed = [c for c in mine if not _goal(c)[2]]
        line = f"{name}: {len(mine) - len(missed)}/{len(mine)} goals met"
        if missed:
            line += "; missed: " + ", ".join(
                f"{c['shape']} {c['share'] * 100:.0f}% {c['scenario']} {_pct(_goal(c)[1])}" for c in missed
            )
        out.append(line)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.judge.run", description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=1000, help="rollouts per cell (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--checks", type=int, default=30, help="checks per healthy rollout (default 30)")
    parser.add_argument(
        "--interval", type=float, default=60.0, help="analysis interval = increase() window, s"
    )
    parser.add_argument(
        "--scrape-interval", type=float, default=15.0, help="Prometheus scrape interval, s (0: exact)"
    )
    parser.add_argument("--failure-threshold", type=int, default=2, help="per-check judge: consecutive fails")
    parser.add_argument(
        "--confidence", type=float, default=CONFIDENCE, help="the sequential judge's confidence"
    )
    parser.add_argument(
        "--window",
        type=float,
        default=None,
        help="increase() window, s (default: interval + scrape interval)",
    )
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=SHAPES, help="latency shapes")
    parser.add_argument("--shares", type=float, nargs="*", default=list(SHARES), help="canary traffic shares")
    parser.add_argument("--scenarios", nargs="*", default=None, help="only these scenarios (names)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--out", type=Path, default=None, help="write the cells as JSON here")
    args = parser.parse_args(argv)

    started = time.monotonic()
    window = args.interval + args.scrape_interval if args.window is None else args.window
    span, factor = window_coverage(window, args.scrape_interval, args.scrape_interval or 1.0)
    if not 0 < span <= args.interval:
        parser.error("the window must hold two scrapes and count at most one interval of requests")
    settings = Settings(
        args.trials,
        args.seed,
        args.checks,
        args.interval,
        window,
        args.scrape_interval,
        args.failure_threshold,
    )
    objectives: dict[str, Objectives] = {}
    for shape in args.shapes:
        slo = healthy_slos(shape)
        objectives[shape] = Objectives(
            ttft_p95=slo.ttft_p95,
            itl_p95=slo.itl_p95,
            e2e_p95=slo.e2e_p95,
            error_rate=slo.error_rate,
            failure_threshold=args.failure_threshold,
            confidence=args.confidence,
        )
    scenarios = [s for s in SCENARIOS if args.scenarios is None or s.name in args.scenarios]
    cell_keys = [
        (shape, share, scenario)
        for shape in args.shapes
        for share in args.shares
        for scenario in scenarios
        if scenario.cost_factor is None
    ]
    # The cost cells do not depend on the latency shape: once per share.
    cell_keys += [
        (COST_SHAPE, share, s) for share in args.shares for s in scenarios if s.cost_factor is not None
    ]
    objectives[COST_SHAPE] = Objectives(confidence=args.confidence)
    blocks = math.ceil(settings.trials / BLOCK)
    jobs = [
        (settings, objectives[shape], shape, share, scenario, block)
        for shape, share, scenario in cell_keys
        for block in range(blocks)
    ]
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as executor:
            results = list(executor.map(_block_job, jobs))
    else:
        results = [_block_job(job) for job in jobs]
    cells = []
    for i, (shape, share, scenario) in enumerate(cell_keys):
        cells.extend(cell_results(settings, shape, share, scenario, results[i * blocks : (i + 1) * blocks]))
    elapsed = time.monotonic() - started

    any_objectives = next(iter(objectives.values()))
    print(
        f"maxRegression {any_objectives.max_regression:.0%}, minRequests {any_objectives.min_requests}, "
        f"sequential: confidence {any_objectives.confidence} (alpha {1 - any_objectives.confidence:.3f} "
        f"for any number of checks); per-check: confidence {PER_CHECK_CONFIDENCE} "
        f"(alpha {replace(any_objectives, confidence=PER_CHECK_CONFIDENCE).alpha:.3f} per check, "
        f"{args.failure_threshold} consecutive fails)"
    )
    for shape, slo in objectives.items():
        if shape == COST_SHAPE:
            print(f"  {shape}: maxCostRegression {COST_MAX_REGRESSION:.0%} (the sequential judge alone)")
            continue
        print(
            f"  {shape}: SLOs ttft p95 {slo.ttft_p95}s, itl p95 {slo.itl_p95}s, e2e p95 {slo.e2e_p95}s, errors 2%"
        )
    print(
        f"{args.trials} rollouts per cell; healthy scenarios run {args.checks} checks of {args.interval:g}s; "
        f"increase(x[{window:g}s]) counts {span:g}s of requests x{factor:.3g} "
        f"(scrapes every {args.scrape_interval:g}s); {CANARY_RPS:g} requests/s reach the canary"
    )
    print()
    print(format_table(cells))
    print()
    for line in targets(cells):
        print(line)
    print(f"runtime {elapsed:.0f}s with {args.jobs} worker(s)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(cells, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
