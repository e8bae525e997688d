"""Seeded simulation of the evaluation gate: its false-fail rate and power beside a naive rule, the
test it replaced, and the bound no test can beat.

    python -m bench.evaluation.run [--trials N] [--seed S] [--churn 0.02 0.05] [--out FILE]

One trial is one evaluation: ``n`` cases (100, 200, 400), each answered once by the stable and once
by the canary, through the operator's own verdict (``core.evaluation.gate.evaluate``, ``exact``
cases). The stable passes each case with probability 0.8. The canary answers like the stable except:

* ``churn``: on a share of the cases (2 % and 5 % by default) the canary's outcome is drawn afresh
  (answers at temperature 0 still differ across batch sizes and GPUs): discordant cases both ways,
  no drop on average; for every scenario, A/A included;
* ``drop d``: each case the stable passed is broken with probability ``d / 0.8`` (an expected drop of
  ``d`` points of score, ``(1 - churn) * d`` beyond the churn).

Scenarios: ``A/A`` (no drop: any fail is a false one), ``drop 2%`` (at ``maxDrop`` 2 %: the gate at 2 %
may fail at most alpha = 5 % of these), ``drop 5%``, ``drop 10%``. Rules, on the same data:

* the gate at ``maxDrop`` 0 % and 2 % (confidence 0.95, the SLO judge's);
* ``plug-in 2%``: the gate's first test at 2 % (conditional binomial with the discordance rate taken
  as observed), which this one replaced;
* ``naive``: "fail when the canary's score is below the stable's";
* ``bound 2%`` / ``bound 0%``: the power of the most powerful test (Neyman-Pearson, randomised) that
  knows the true rates of both the scenario and the boundary point with the same churn: an upper
  bound on the power of any test with a false-fail rate of at most 5 % at the margin. Computed
  exactly, not simulated.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from nlpmodel_operator.core.analysis.judge import binomial_sf
from nlpmodel_operator.core.analysis.sequential import CONFIDENCE
from nlpmodel_operator.core.evaluation.dataset import Case, parse_dataset
from nlpmodel_operator.core.evaluation.gate import Thresholds, evaluate
from nlpmodel_operator.core.evaluation.scorers import Answer
from nlpmodel_operator.core.evaluation.stats import log_trinomial

STABLE_ACCURACY: Final = 0.8
CHURNS: Final = (0.02, 0.05)
SIZES: Final = (100, 200, 400)
DROPS: Final = {"A/A": 0.0, "drop 2%": 0.02, "drop 5%": 0.05, "drop 10%": 0.10}
MARGINS: Final = (0.0, 0.02)
ALPHA: Final = 1.0 - CONFIDENCE
PASS, FAIL = Answer(text="yes"), Answer(text="no")

Outcomes = tuple[dict[str, Answer | None], dict[str, Answer | None], int, int]


def _cases(n: int) -> tuple[Case, ...]:
    lines = (json.dumps({"id": f"c{i}", "prompt": "q", "expect": {"exact": "yes"}}) for i in range(n))
    return parse_dataset("\n".join(lines))


def rates(drop: float, churn: float) -> tuple[float, float]:
    """P(worse), P(better) of one case in the simulation."""
    kept = 1.0 - churn
    redrawn_fail = churn * (1.0 - STABLE_ACCURACY)
    return kept * drop + STABLE_ACCURACY * redrawn_fail, (1.0 - STABLE_ACCURACY) * churn * STABLE_ACCURACY


def _trial(rng: random.Random, cases: Sequence[Case], drop: float, churn: float) -> Outcomes:
    stable: dict[str, Answer | None] = {}
    canary: dict[str, Answer | None] = {}
    worse = better = 0
    for case in cases:
        ok = rng.random() < STABLE_ACCURACY
        canary_ok = ok
        if ok and rng.random() < drop / STABLE_ACCURACY:
            canary_ok = False
        if rng.random() < churn:
            canary_ok = rng.random() < STABLE_ACCURACY
        stable[case.id] = PASS if ok else FAIL
        canary[case.id] = PASS if canary_ok else FAIL
        worse += ok and not canary_ok
        better += canary_ok and not ok
    return stable, canary, worse, better


def plug_in_p_value(worse: int, better: int, n: int, margin: float) -> float:
    """The gate's first test: conditional binomial, the discordance rate taken as observed."""
    if worse + better == 0:
        return 1.0
    theta0 = 0.5 + margin * n / (2.0 * (worse + better))
    return 1.0 if theta0 >= 1.0 else binomial_sf(worse, worse + better, theta0)


def power_bound(n: int, null: tuple[float, float], alternative: tuple[float, float]) -> float:
    """The power of the randomised Neyman-Pearson test of ``null`` against ``alternative`` (each
    (P(worse), P(better))) at level ALPHA, summed over the tables that carry probability."""
    reach = min(n, math.ceil(n * max(null + alternative) + 10 * math.sqrt(n) + 10))
    tables = []
    for w in range(reach + 1):
        for b in range(min(reach, n - w) + 1):
            p0 = math.exp(log_trinomial(n, w, b, *null))
            p1 = math.exp(log_trinomial(n, w, b, *alternative))
            if p1 > 0.0:
                tables.append((p1 / p0 if p0 > 0.0 else math.inf, p0, p1))
    tables.sort(key=lambda t: t[0], reverse=True)
    size = power = 0.0
    for _, p0, p1 in tables:
        if size + p0 <= ALPHA:
            size, power = size + p0, power + p1
        else:
            return power + p1 * (ALPHA - size) / p0
    return power


def run(trials: int, seed: int, churn: float) -> list[dict[str, object]]:
    cells: list[dict[str, object]] = []
    for n in SIZES:
        cases = _cases(n)
        for scenario, drop in DROPS.items():
            rng = random.Random(f"{seed}-{n}-{scenario}-{churn}")
            fails: dict[str, int] = {}
            for _ in range(trials):
                stable, canary, worse, better = _trial(rng, cases, drop, churn)
                outcomes = {
                    f"gate {m:.0%}": evaluate(cases, canary, stable, Thresholds(max_drop=m)).result == "fail"
                    for m in MARGINS
                }
                outcomes["plug-in 2%"] = plug_in_p_value(worse, better, n, 0.02) < ALPHA
                outcomes["naive"] = worse > better
                for rule, failed in outcomes.items():
                    fails[rule] = fails.get(rule, 0) + failed
            truth = rates(drop, churn)
            for rule, count in fails.items():
                cells.append(_cell(n, churn, scenario, rule, count / trials, trials))
            for margin in MARGINS:
                boundary = (truth[1] + margin, truth[1])
                bound = power_bound(n, boundary, truth) if truth[0] - truth[1] > margin else None
                cells.append(_cell(n, churn, scenario, f"bound {margin:.0%}", bound, 0))
    return cells


def _cell(
    n: int, churn: float, scenario: str, rule: str, rate: float | None, trials: int
) -> dict[str, object]:
    return {
        "cases": n,
        "churn": churn,
        "scenario": scenario,
        "rule": rule,
        "fail_rate": rate,
        "trials": trials,
    }


def _rate(rate: object) -> str:
    return "-" if not isinstance(rate, float) else f"{rate:.1%}"


def table(cells: Sequence[dict[str, object]]) -> str:
    rules = list(dict.fromkeys(str(c["rule"]) for c in cells))
    rows = [f"{'cases':>5}  {'scenario':<9}" + "".join(f"{r:>12}" for r in rules)]
    keys = list(dict.fromkeys((c["cases"], c["scenario"]) for c in cells))
    for n, scenario in keys:
        got = {c["rule"]: c["fail_rate"] for c in cells if (c["cases"], c["scenario"]) == (n, scenario)}
        rows.append(f"{n:>5}  {scenario!s:<9}" + "".join(f"{_rate(got.get(r)):>12}" for r in rules))
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.evaluation.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--churn", type=float, nargs="+", default=list(CHURNS), help="shares of cases answered afresh"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the cells as JSON here")
    args = parser.parse_args(argv)
    results: list[dict[str, object]] = []
    for churn in args.churn:
        cells = run(args.trials, args.seed, churn)
        print(
            f"\nchurn {churn:.0%}: share of evaluations that fail the canary "
            "(A/A: false fails; drops: power; bound: the most any test can catch)"
        )
        print(table(cells))
        results += cells
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
