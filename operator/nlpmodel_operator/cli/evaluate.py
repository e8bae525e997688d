"""`nlpctl eval FILE --endpoint URL [--baseline URL]`: an evaluation dataset against any
OpenAI-compatible endpoint, from a laptop, through the operator's own code path and scores.

With ``--baseline`` (say the stable revision, or the model in production) the verdict is the gate's:
paired tests against ``--max-drop``, refusals, ``--min-score``. Without it only the absolute checks
apply (``--min-score``, refusals); ``agreement`` and ``similarity`` cases need a baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from nlpmodel_operator.api.spec import MIN_EVALUATION_SAMPLES
from nlpmodel_operator.api.units import parse_duration, parse_percent
from nlpmodel_operator.cli.control import EXIT_INVALID, EXIT_OK
from nlpmodel_operator.controller.evaluation import Endpoint, run_evaluation
from nlpmodel_operator.core.evaluation.dataset import DatasetError, choose, parse_dataset
from nlpmodel_operator.core.evaluation.gate import EvaluationVerdict, Thresholds, pct

__all__ = ["EXIT_EVAL_FAILED", "EXIT_EVAL_INCONCLUSIVE", "add_subcommand", "cmd_eval"]

EXIT_EVAL_FAILED: Final = 8
EXIT_EVAL_INCONCLUSIVE: Final = 9

EVAL_EXIT_CODES_HELP: Final = """\
exit codes:
  0  pass
  1  invalid input (an unreadable or malformed dataset, a bad option value)
  2  usage error
  8  fail: the endpoint answers worse than the baseline (or below --min-score, or stops refusing)
  9  inconclusive: too many requests failed, or too few cases could be scored
"""


class _UsageError(ValueError):
    pass


def _fraction(text: str, what: str) -> float:
    try:
        value = parse_percent(text)
    except ValueError as exc:
        raise _UsageError(f"{what}: {exc}") from None
    if not 0.0 <= value <= 1.0:
        raise _UsageError(f"{what}: must be a percentage from 0% to 100%")
    return value


def _options(args: argparse.Namespace) -> tuple[Thresholds, float]:
    """The thresholds and per-case timeout from the options; raises ValueError naming the option."""
    max_drop = _fraction(args.max_drop, "--max-drop")
    min_score = None if args.min_score is None else _fraction(args.min_score, "--min-score")
    try:
        timeout_s = parse_duration(args.timeout)
    except ValueError as exc:
        raise _UsageError(f"--timeout: {exc}") from None
    if args.samples is not None and args.samples < MIN_EVALUATION_SAMPLES:
        raise _UsageError(f"--samples: at least {MIN_EVALUATION_SAMPLES}")
    if args.concurrency < 1:
        raise _UsageError("--concurrency: at least 1")
    return Thresholds(max_drop=max_drop, min_score=min_score), timeout_s


def cmd_eval(args: argparse.Namespace) -> int:
    try:
        thresholds, timeout_s = _options(args)
    except _UsageError as exc:
        print(f"nlpctl eval: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        cases = choose(parse_dataset(text), args.samples)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"nlpctl eval: {args.file}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except DatasetError as exc:
        print(f"nlpctl eval: {args.file}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    canary = Endpoint(args.endpoint, args.model)
    baseline = Endpoint(args.baseline, args.baseline_model or args.model) if args.baseline else None
    verdict, failures = asyncio.run(
        run_evaluation(
            cases,
            canary,
            baseline,
            thresholds,
            concurrency=args.concurrency,
            timeout_s=timeout_s,
        )
    )
    if args.output == "json":
        print(json.dumps(verdict_json(verdict, failures), indent=2))
    else:
        print(format_verdict(verdict, failures, baseline is not None))
    return {"pass": EXIT_OK, "fail": EXIT_EVAL_FAILED, "inconclusive": EXIT_EVAL_INCONCLUSIVE}[verdict.result]


def verdict_json(verdict: EvaluationVerdict, failures: Mapping[str, int] | None = None) -> dict[str, object]:
    """Scores, counts and case ids only: never an answer."""
    return {
        "verdict": verdict.result,
        "message": verdict.message,
        "cases": verdict.requests.cases,
        "scored": verdict.scored,
        "stableScore": verdict.stable_score,
        "canaryScore": verdict.canary_score,
        "pValue": verdict.p_value,
        "failingCases": list(verdict.failing_cases),
        "failedRequests": {
            "endpoint": verdict.requests.canary_failed,
            "baseline": verdict.requests.stable_failed,
        },
        "failures": dict(failures or {}),
        "tokens": {
            "endpoint": dict(zip(("prompt", "completion"), verdict.requests.canary_tokens, strict=True)),
            "baseline": dict(zip(("prompt", "completion"), verdict.requests.stable_tokens, strict=True)),
        },
        "scorers": [
            {
                "scorer": s.scorer,
                "cases": s.n,
                "baselinePassed": s.stable_passed,
                "endpointPassed": s.canary_passed,
                "worse": s.worse,
                "better": s.better,
                "pValue": s.p_value,
                "failed": s.failed,
            }
            for s in verdict.scorers
        ],
    }


def format_verdict(verdict: EvaluationVerdict, failures: Mapping[str, int], paired: bool) -> str:
    lines = [f"{verdict.result.upper()}: {verdict.message}"]
    if verdict.scorers:
        lines.append(f"{'SCORER':<12}{'CASES':>7}{'ENDPOINT':>10}{'BASELINE':>10}{'WORSE':>7}{'BETTER':>8}")
        for s in verdict.scorers:
            baseline = pct(s.stable_passed / s.n) if s.stable_passed is not None else "-"
            worse, better = (str(s.worse), str(s.better)) if paired else ("-", "-")
            lines.append(
                f"{s.scorer:<12}{s.n:>7}{pct(s.canary_passed / s.n):>10}{baseline:>10}{worse:>7}{better:>8}"
            )
    prompt, completion = verdict.requests.canary_tokens
    lines.append(
        f"requests: {verdict.requests.cases} cases, tokens {prompt} prompt + {completion} completion"
    )
    if failures:
        lines.append("failed: " + ", ".join(f"{count} {kind}" for kind, count in sorted(failures.items())))
    return "\n".join(lines)


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "eval",
        help="run an evaluation dataset against an OpenAI-compatible endpoint (the evaluation gate's scores)",
        description=__doc__,
        epilog=EVAL_EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="the dataset: JSON Lines, one case a line (- for stdin)")
    p.add_argument("--endpoint", required=True, metavar="URL", help="base URL of the endpoint judged")
    p.add_argument("--baseline", metavar="URL", help="base URL of the endpoint it is compared with")
    p.add_argument("--model", help="model name to send (default: the server's)")
    p.add_argument("--baseline-model", help="model name for the baseline (default: --model)")
    p.add_argument("--max-drop", default="2%", help="allowed drop below the baseline (default: %(default)s)")
    p.add_argument("--min-score", help="absolute floor, e.g. 85%%")
    p.add_argument("--samples", type=int, help="cases to send (default: all); the same ones each time")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight per endpoint")
    p.add_argument("--timeout", default="60s", help="per case (default: %(default)s)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_eval)
