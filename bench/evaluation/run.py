"""Seeded simulation of the evaluation gate: its false-fail rate and power beside a naive rule.

    python -m bench.evaluation.run [--trials N] [--seed S] [--out bench/results/evaluation.json]

One trial is one evaluation: ``n`` cases (100, 200, 400), each answered once by the stable and once
by the canary, through the operator's own verdict (``core.evaluation.gate.evaluate``, ``exact``
cases). The stable passes each case with probability 0.8. The canary answers like the stable except:

* ``churn``: on 5 % of the cases the canary's outcome is drawn afresh (answers at temperature 0 still
  differ across batch sizes and GPUs): about 0.8 % of cases discordant each way, no drop on average;
  for every scenario, A/A included;
* ``drop d``: each case the stable passed is broken with probability ``d / 0.8`` (an expected drop of
  ``d`` points of score).

Scenarios: ``A/A`` (no drop: any fail is a false one), ``drop 2%`` (exactly at ``maxDrop`` 2 %: the
gate at 2 % may fail at most alpha = 5 % of these), ``drop 5%``, ``drop 10%``. Rules, on the same data:
the gate at ``maxDrop`` 0 % and 2 % (confidence 0.95, the SLO judge's) and the naive rule
"fail when the canary's score is below the stable's".
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from nlpmodel_operator.core.evaluation.dataset import Case, parse_dataset
from nlpmodel_operator.core.evaluation.gate import Thresholds, evaluate
from nlpmodel_operator.core.evaluation.scorers import Answer

STABLE_ACCURACY: Final = 0.8
CHURN: Final = 0.05
SIZES: Final = (100, 200, 400)
DROPS: Final = {"A/A": 0.0, "drop 2%": 0.02, "drop 5%": 0.05, "drop 10%": 0.10}
MARGINS: Final = (0.0, 0.02)
PASS, FAIL = Answer(text="yes"), Answer(text="no")


def _cases(n: int) -> tuple[Case, ...]:
    lines = (json.dumps({"id": f"c{i}", "prompt": "q", "expect": {"exact": "yes"}}) for i in range(n))
    return parse_dataset("\n".join(lines))


def _trial(
    rng: random.Random, cases: Sequence[Case], drop: float, churn: float
) -> tuple[dict[str, Answer | None], dict[str, Answer | None], bool]:
    stable: dict[str, Answer | None] = {}
    canary: dict[str, Answer | None] = {}
    for case in cases:
        ok = rng.random() < STABLE_ACCURACY
        canary_ok = ok
        if ok and rng.random() < drop / STABLE_ACCURACY:
            canary_ok = False
        if rng.random() < churn:
            canary_ok = rng.random() < STABLE_ACCURACY
        stable[case.id] = PASS if ok else FAIL
        canary[case.id] = PASS if canary_ok else FAIL
    naive_fail = sum(a is PASS for a in canary.values()) < sum(a is PASS for a in stable.values())
    return stable, canary, naive_fail


def run(trials: int, seed: int, churn: float = CHURN) -> list[dict[str, object]]:
    cells: list[dict[str, object]] = []
    for n in SIZES:
        cases = _cases(n)
        for scenario, drop in DROPS.items():
            rng = random.Random(f"{seed}-{n}-{scenario}")
            fails = dict.fromkeys(MARGINS, 0)
            naive = 0
            for _ in range(trials):
                stable, canary, naive_fail = _trial(rng, cases, drop, churn)
                naive += naive_fail
                for margin in MARGINS:
                    verdict = evaluate(cases, canary, stable, Thresholds(max_drop=margin))
                    fails[margin] += verdict.result == "fail"
            for margin in MARGINS:
                cells.append(_cell(n, scenario, f"gate maxDrop {margin:.0%}", fails[margin], trials))
            cells.append(_cell(n, scenario, "naive canary<stable", naive, trials))
    return cells


def _cell(n: int, scenario: str, rule: str, fails: int, trials: int) -> dict[str, object]:
    return {"cases": n, "scenario": scenario, "rule": rule, "fail_rate": fails / trials, "trials": trials}


def table(cells: Sequence[dict[str, object]]) -> str:
    rules = list(dict.fromkeys(str(c["rule"]) for c in cells))
    rows = [f"{'cases':>5}  {'scenario':<9}" + "".join(f"{r:>22}" for r in rules)]
    keys = list(dict.fromkeys((c["cases"], c["scenario"]) for c in cells))
    for n, scenario in keys:
        rates = {c["rule"]: c["fail_rate"] for c in cells if (c["cases"], c["scenario"]) == (n, scenario)}
        rows.append(f"{n:>5}  {scenario!s:<9}" + "".join(f"{float(rates[r]):>22.1%}" for r in rules))  # type: ignore[arg-type]
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.evaluation.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--churn", type=float, default=CHURN, help="share of cases answered afresh")
    parser.add_argument("--out", type=Path, default=None, help="write the cells as JSON here")
    args = parser.parse_args(argv)
    cells = run(args.trials, args.seed, args.churn)
    print(
        f"share of evaluations that fail the canary (A/A: false fails; drops: power), churn {args.churn:.0%}"
    )
    print(table(cells))
    if args.out is not None:
        args.out.write_text(json.dumps(cells, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
