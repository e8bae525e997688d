"""Seeded simulation of canary rollouts judged by the SLO judge and by a naive baseline.

    python -m bench.judge.run [--trials N] [--seed S] [--out bench/results/judge.json]

What one trial is: a canary rollout of up to ``--checks`` analysis checks, one per ``--interval``
seconds. Each check, both revisions are observed the way Prometheus reports ``increase(x[window])``
with scrapes every ``--scrape-interval`` seconds (a fixed random phase per revision): only the
requests between the first and the last scrape inside the window are counted, and the counts are
extrapolated to the whole window (floats). The default window is the interval plus one scrape
interval (75 s), which counts exactly the interval's requests (x1.25); ``--window 60`` is the plain
``increase(x[60s])``, which counts 45 s of requests per 60 s check (x1.33) and never sees the rest.
Requests arrive as a Poisson process at ``rps`` per
second at the CANARY; the stable is simulated at the same rate (and is always healthy). A rollout is
rolled back after ``failure_threshold`` (2) consecutive failed checks; an inconclusive check neither
counts as a fail nor resets the run, only a pass does. Both judges see exactly the same data.

Requests (healthy): TTFT is a mixture of a lognormal body (median 0.28 s, sigma 0.45) and an 8 %
heavy tail (lognormal, median 0.9 s, sigma 0.6), so the median is ~0.31 s and p95 ~0.87 s; the
number of generated tokens is lognormal (median 180, sigma 0.7, 2..2048); each request has its own
inter-token latency (lognormal, median 30 ms, sigma 0.25) and records one ITL observation per token
after the first at that value; e2e = TTFT + (tokens - 1) * ITL. 0.1 % of requests end in error or
abort. Observations are binned into vLLM 0.33's bucket bounds.

Regressions (canary only): ``ttft+X%`` multiplies every TTFT by 1 + X (so p95 and median grow by X);
``errors X%`` sets the error+abort share to X. The SLOs are twice the healthy p95s (rounded) and a
2 % error rate, so ``ttft+150%`` and ``errors 5%`` also breach an absolute SLO; the others can only
be caught as regressions against stable (max_regression 20 %).

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
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from nlpmodel_operator.core.analysis.judge import (
    Histogram,
    Objectives,
    RevisionSample,
    Verdict,
    judge,
    naive_judge,
)

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

RPS: Final = (0.5, 2.0, 10.0)
HEALTHY_ERRORS: Final = 0.001
SLO_ERRORS: Final = 0.02
POOL_SIZE: Final = 60_000
POOL_SEED: Final = 20261126


@dataclass(frozen=True)
class Regression:
    name: str
    ttft_factor: float = 1.0
    error_rate: float = HEALTHY_ERRORS
    breaches_slo: bool = False


REGRESSIONS: Final = (
    Regression("none"),
    Regression("ttft+20%", ttft_factor=1.2),
    Regression("ttft+25%", ttft_factor=1.25),
    Regression("ttft+50%", ttft_factor=1.5),
    Regression("ttft+100%", ttft_factor=2.0),
    Regression("ttft+150%", ttft_factor=2.5, breaches_slo=True),
    Regression("errors 1%", error_rate=0.01),
    Regression("errors 5%", error_rate=0.05, breaches_slo=True),
)

JUDGES: Final[dict[str, Callable[[RevisionSample, RevisionSample | None, Objectives], Verdict]]] = {
    "statistical": judge,
    "naive": naive_judge,
}


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


def _sample_request(rng: random.Random, ttft_factor: float) -> tuple[float, float, float, int]:
    tail = rng.random() < 0.08
    ttft = rng.lognormvariate(math.log(0.9 if tail else 0.28), 0.6 if tail else 0.45) * ttft_factor
    tokens = min(2048, max(2, round(rng.lognormvariate(math.log(180), 0.7))))
    itl = rng.lognormvariate(math.log(0.030), 0.25)
    return ttft, itl, ttft + (tokens - 1) * itl, tokens


def build_pool(ttft_factor: float, size: int = POOL_SIZE) -> Pool:
    rng = random.Random(f"{POOL_SEED}:{ttft_factor}")
    keys: list[int] = []
    tokens_by_key: dict[int, float] = {}
    count_by_key: Counter[int] = Counter()
    for _ in range(size):
        ttft, itl, e2e, tokens = _sample_request(rng, ttft_factor)
        key = _bucket(TTFT_BUCKETS, ttft) + 64 * (_bucket(ITL_BUCKETS, itl) + 64 * _bucket(E2E_BUCKETS, e2e))
        keys.append(key)
        count_by_key[key] += 1
        tokens_by_key[key] = tokens_by_key.get(key, 0.0) + (tokens - 1)
    return Pool(keys, {key: tokens_by_key[key] / count_by_key[key] for key in count_by_key})


def healthy_slos(size: int = 200_000) -> Objectives:
    """SLOs at twice the healthy p95s (TTFT, ITL per token, e2e), rounded to 2 significant digits."""
    rng = random.Random(f"{POOL_SEED}:slo")
    ttfts, e2es = [], []
    itl_weighted: list[tuple[float, int]] = []
    for _ in range(size):
        ttft, itl, e2e, tokens = _sample_request(rng, 1.0)
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
        ttft_p95=twice(p95(ttfts)),
        itl_p95=twice(itl_p95),
        e2e_p95=twice(p95(e2es)),
        error_rate=SLO_ERRORS,
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
    keys = rng.choices(pool.keys, k=n) if n else []
    ttft = [0.0] * len(TTFT_BUCKETS)
    itl = [0.0] * len(ITL_BUCKETS)
    e2e = [0.0] * len(E2E_BUCKETS)
    per_request_itl = pool.itl_observations
    for key, count in Counter(keys).items():
        ttft[key % 64] += count
        itl[(key // 64) % 64] += count * per_request_itl[key]
        e2e[key // 4096] += count

    def histogram(bounds: tuple[float, ...], per_bucket: list[float]) -> Histogram:
        cumulative, running = [], 0.0
        for value in per_bucket:
            running += value * factor
            cumulative.append(running)
        return Histogram(bounds, tuple(cumulative))

    return RevisionSample(
        ttft=histogram(TTFT_BUCKETS, ttft),
        itl=histogram(ITL_BUCKETS, itl),
        e2e=histogram(E2E_BUCKETS, e2e),
        requests=n * factor,
        errors=errors * factor,
    )


# ------------------------------------------------------------------------------------------------
# Rollouts


_POOLS: dict[float, Pool] = {}


def _pool(ttft_factor: float) -> Pool:
    if ttft_factor not in _POOLS:
        _POOLS[ttft_factor] = build_pool(ttft_factor)
    return _POOLS[ttft_factor]


def run_cell(
    settings: Settings, objectives: Objectives, rps: float, regression: Regression
) -> list[dict[str, Any]]:
    """All trials of one (rps, regression) cell, for both judges on the same data."""
    rng = random.Random(f"{settings.seed}:{rps}:{regression.name}")
    stable_pool, canary_pool = _pool(1.0), _pool(regression.ttft_factor)
    rolled_back_at: dict[str, list[int | None]] = {name: [] for name in JUDGES}
    fails: dict[str, int] = dict.fromkeys(JUDGES, 0)
    judged: dict[str, int] = dict.fromkeys(JUDGES, 0)
    inconclusive: dict[str, int] = dict.fromkeys(JUDGES, 0)
    for _ in range(settings.trials):
        spans = [
            window_coverage(
                settings.window, settings.scrape_interval, settings.scrape_interval * (1 - rng.random())
            )
            for _ in range(2)
        ]
        streak = dict.fromkeys(JUDGES, 0)
        done: dict[str, int | None] = dict.fromkeys(JUDGES)
        for check in range(1, settings.checks + 1):
            if all(at is not None for at in done.values()):
                break
            canary = observe(rng, canary_pool, regression.error_rate, rps, *spans[0])
            stable = observe(rng, stable_pool, HEALTHY_ERRORS, rps, *spans[1])
            for name, judge_fn in JUDGES.items():
                if done[name] is not None:
                    continue
                result = judge_fn(canary, stable, objectives).result
                judged[name] += 1
                if result == "fail":
                    fails[name] += 1
                    streak[name] += 1
                    if streak[name] >= settings.failure_threshold:
                        done[name] = check
                elif result == "pass":
                    streak[name] = 0
                else:
                    inconclusive[name] += 1
        for name in JUDGES:
            rolled_back_at[name].append(done[name])
    cells = []
    for name in JUDGES:
        at = [a for a in rolled_back_at[name] if a is not None]
        cells.append(
            {
                "judge": name,
                "rps": rps,
                "regression": regression.name,
                "breaches_slo": regression.breaches_slo,
                "trials": settings.trials,
                "rollback_rate": len(at) / settings.trials,
                "mean_checks_to_rollback": (sum(at) / len(at)) if at else None,
                "rollback_within_3_checks": sum(1 for a in at if a <= 3) / settings.trials,
                "fail_rate_per_check": fails[name] / judged[name] if judged[name] else 0.0,
                "inconclusive_rate_per_check": inconclusive[name] / judged[name] if judged[name] else 0.0,
            }
        )
    return cells


def _cell_job(args: tuple[Settings, Objectives, float, Regression]) -> list[dict[str, Any]]:
    return run_cell(*args)


# ------------------------------------------------------------------------------------------------
# Output


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def format_table(cells: list[dict[str, Any]]) -> str:
    header = ("judge", "rps", "regression", "trials", "rollback", "<=3 checks", "mean checks", "fail/check")
    rows = [header]
    for c in cells:
        mean = c["mean_checks_to_rollback"]
        rows.append(
            (
                c["judge"],
                f"{c['rps']:g}",
                c["regression"] + (" (slo)" if c["breaches_slo"] else ""),
                str(c["trials"]),
                _pct(c["rollback_rate"]),
                _pct(c["rollback_within_3_checks"]),
                "-" if mean is None else f"{mean:.2f}",
                _pct(c["fail_rate_per_check"]),
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
    """The issue's targets, checked for each judge (when the cells they need were run)."""
    out = []
    for name in JUDGES:
        mine = [c for c in cells if c["judge"] == name]
        parts = []
        aa = [c["rollback_rate"] for c in mine if c["regression"] == "none"]
        if aa:
            parts.append(
                f"worst A/A false rollback {_pct(max(aa))} ({'met' if max(aa) <= 0.01 else 'MISSED'}: <= 1%)"
            )
        detect = [c for c in mine if c["regression"] == "ttft+50%" and c["rps"] == 2.0]
        if detect:
            within = detect[0]["rollback_within_3_checks"]
            parts.append(
                f"ttft+50% at 2 rps rolled back within 3 checks {_pct(within)} "
                f"({'met' if within >= 0.95 else 'MISSED'}: >= 95%)"
            )
        if parts:
            out.append(f"{name}: " + "; ".join(parts))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.judge.run", description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=1000, help="rollouts per cell (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--checks", type=int, default=10, help="analysis checks per rollout (default 10)")
    parser.add_argument(
        "--interval", type=float, default=60.0, help="analysis interval = increase() window, s"
    )
    parser.add_argument(
        "--scrape-interval", type=float, default=15.0, help="Prometheus scrape interval, s (0: exact)"
    )
    parser.add_argument("--failure-threshold", type=int, default=2, help="consecutive fails to roll back")
    parser.add_argument(
        "--confidence", type=float, default=Objectives.confidence, help="Objectives.confidence"
    )
    parser.add_argument(
        "--window",
        type=float,
        default=None,
        help="increase() window, s (default: interval + scrape interval)",
    )
    parser.add_argument("--rps", type=float, nargs="*", default=list(RPS), help="canary request rates")
    parser.add_argument("--regressions", nargs="*", default=None, help="only these regressions (names)")
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
    slo = healthy_slos()
    objectives = Objectives(
        ttft_p95=slo.ttft_p95,
        itl_p95=slo.itl_p95,
        e2e_p95=slo.e2e_p95,
        error_rate=slo.error_rate,
        failure_threshold=args.failure_threshold,
        confidence=args.confidence,
    )
    regressions = [r for r in REGRESSIONS if args.regressions is None or r.name in args.regressions]
    jobs = [(settings, objectives, rps, regression) for rps in args.rps for regression in regressions]
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as executor:
            results = list(executor.map(_cell_job, jobs))
    else:
        results = [_cell_job(job) for job in jobs]
    by_judge = {name: [c for cell in results for c in cell if c["judge"] == name] for name in JUDGES}
    cells = [c for name in JUDGES for c in by_judge[name]]
    elapsed = time.monotonic() - started

    print(
        f"SLOs: ttft p95 {objectives.ttft_p95}s, itl p95 {objectives.itl_p95}s, e2e p95 {objectives.e2e_p95}s, "
        f"errors {objectives.error_rate:.0%}; maxRegression {objectives.max_regression:.0%}, "
        f"minRequests {objectives.min_requests}, failureThreshold {objectives.failure_threshold}, "
        f"confidence {objectives.confidence} (alpha {objectives.alpha:.3f} per check)"
    )
    print(
        f"{args.trials} rollouts per cell, up to {args.checks} checks of {args.interval:g}s; "
        f"increase(x[{window:g}s]) counts {span:g}s of requests x{factor:.3g} "
        f"(scrapes every {args.scrape_interval:g}s); "
        f"rps = requests/s reaching the canary (stable: the same)"
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
