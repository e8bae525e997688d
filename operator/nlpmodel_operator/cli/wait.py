"""`nlpctl wait NAME --for=promoted|ready|rolledback --timeout D`: the gate a pipeline runs before it
promotes the same revision to the next environment.

It polls the model's status until the outcome is reached (exit 0), can no longer come (exit 6: e.g. the
canary rolled back while waiting for promoted; the reason and message are printed), or the timeout
passes (exit 7). A status written for an older generation of the spec never counts.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from nlpmodel_operator.api.constants import ConditionType, Phase
from nlpmodel_operator.api.units import parse_duration
from nlpmodel_operator.cli.control import (
    EXIT_CLUSTER,
    CtlError,
    connect,
    get_model,
)
from nlpmodel_operator.cli.statusview import describe_state

__all__ = ["EXIT_NEVER", "EXIT_TIMEOUT", "OUTCOMES", "Verdict", "add_subcommand", "verdict", "wait_for"]

EXIT_NEVER: Final = 6
EXIT_TIMEOUT: Final = 7
OUTCOMES: Final = ("promoted", "ready", "rolledback")
POLL_INTERVAL_S: Final = 2.0

WAIT_EXIT_CODES_HELP: Final = """\
exit codes:
  0  the model reached the outcome
  1  invalid input (a bad name, a bad kubeconfig or context)
  2  usage error (unknown option, missing argument, bad --timeout)
  3  internal error (a bug: rerun with --debug and report it)
  4  model or namespace not found
  5  cluster unreachable, or permission denied (while waiting, retried until the timeout)
  6  the outcome can no longer come: rolled back or failed (waiting for promoted or ready), or
     promoted (waiting for rolledback); the reason is printed
  7  timed out"""

State = Literal["met", "never", "pending"]


@dataclass(frozen=True)
class Verdict:
    state: State
    message: str


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    found = next((x for x in status.get("conditions") or [] if x.get("type") == kind), None)
    return found if isinstance(found, Mapping) else {}


def _reason(condition: Mapping[str, Any]) -> str:
    reason, message = condition.get("reason") or "", condition.get("message") or ""
    return ": ".join(part for part in (reason, message) if part) or "no reason given"


def verdict(model: Mapping[str, Any], outcome: str) -> Verdict:
    """Whether `outcome` is reached, can no longer be reached, or may still come (a pure function)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r} (one of {', '.join(OUTCOMES)})")
    status: Mapping[str, Any] = model.get("status") or {}
    generation = (model.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and (observed is None or observed < generation):
        return Verdict("pending", f"waiting for the operator to observe generation {generation}")
    phase = status.get("phase")
    rolled_back = phase == Phase.ROLLED_BACK
    failed = phase == Phase.FAILED
    revision = status.get("failedRevision") or status.get("canaryRevision") or status.get("stableRevision")
    at = f" (revision {revision})" if revision else ""
    if outcome == "rolledback":
        if rolled_back:
            return Verdict(
                "met", f"rolled back{at}: {_reason(_condition(status, ConditionType.ROLLED_BACK))}"
            )
        if failed:
            return Verdict("never", f"failed{at}: {_reason(_condition(status, ConditionType.READY))}")
        if phase == Phase.READY and not status.get("canaryRevision"):
            return Verdict("never", f"promoted, not rolled back ({describe_state(status)})")
        return Verdict("pending", describe_state(status))
    if rolled_back:
        return Verdict("never", f"rolled back{at}: {_reason(_condition(status, ConditionType.ROLLED_BACK))}")
    if failed:
        return Verdict("never", f"failed{at}: {_reason(_condition(status, ConditionType.READY))}")
    if outcome == "ready":
        if _condition(status, ConditionType.READY).get("status") == "True":
            return Verdict("met", f"ready ({describe_state(status)})")
        return Verdict("pending", describe_state(status))
    if phase == Phase.READY and not status.get("canaryRevision"):
        return Verdict("met", f"promoted (stable {status.get('stableRevision') or 'unknown'})")
    return Verdict("pending", describe_state(status))


def wait_for(
    fetch: Callable[[], Mapping[str, Any]],
    outcome: str,
    timeout_s: float,
    *,
    interval_s: float = POLL_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Poll until the verdict is settled or the time is up; cluster blips are retried until then."""
    deadline = clock() + timeout_s
    last = Verdict("pending", "no answer from the cluster yet")
    while True:
        try:
            last = verdict(fetch(), outcome)
        except CtlError as exc:
            if exc.exit_code != EXIT_CLUSTER:
                raise
            last = Verdict("pending", f"{exc} (retrying)")
        if last.state != "pending":
            return last
        left = deadline - clock()
        if left <= 0:
            return last
        sleep(min(interval_s, left))


def _timeout(text: str) -> float:
    try:
        seconds = float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return seconds


def cmd_wait(args: argparse.Namespace) -> int:
    kube = connect(args.kubeconfig, args.context)
    try:
        namespace = args.namespace or kube.default_namespace
        get_model(kube, namespace, args.name)  # a missing model or namespace fails now (exit 4)
        result = wait_for(lambda: get_model(kube, namespace, args.name), args.outcome, args.timeout)
    finally:
        kube.close()
    where = f"{namespace}/{args.name}"
    if result.state == "met":
        print(f"{where}: {result.message}")
        return 0
    if result.state == "never":
        print(f"nlpctl: {where} will not be {args.outcome}: {result.message}", file=sys.stderr)
        return EXIT_NEVER
    print(f"nlpctl: timed out waiting for {where} to be {args.outcome}: {result.message}", file=sys.stderr)
    return EXIT_TIMEOUT


def add_subcommand(sub: Any) -> None:
    p = sub.add_parser(
        "wait",
        help="wait until a model is promoted, ready or rolled back (a pipeline's promotion gate)",
        description=textwrap.fill(
            "Wait until the NLPModel reaches an outcome for its current spec: promoted (the rollout of the "
            "current serving template finished, no canary left), ready (it serves: the Ready condition is "
            "True) or rolledback. Exits as soon as the outcome can no longer come (a rollback while "
            "waiting for promoted prints its reason).",
            width=88,
        ),
        epilog=WAIT_EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="the NLPModel")
    p.add_argument("--for", dest="outcome", required=True, choices=OUTCOMES, help="the outcome to wait for")
    p.add_argument(
        "--timeout",
        required=True,
        type=_timeout,
        metavar="D",
        help="how long at most: 30m, 90s, 1h30m, or seconds",
    )
    p.add_argument(
        "-n", "--namespace", help="its namespace (default: the kubeconfig context's, else default)"
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: the current context)")
    p.set_defaults(func=cmd_wait)
