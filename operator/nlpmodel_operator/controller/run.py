"""Start the operator (kopf) with our handlers: used by `nlpctl run` and `python -m nlpmodel_operator`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from dataclasses import replace

import kopf

from nlpmodel_operator.controller.config import OperatorConfig
from nlpmodel_operator.core.pricing import PricingError


def run(
    namespaces: list[str], standalone: bool, peering: str | None, liveness: str | None, verbose: bool
) -> int:
    import nlpmodel_operator.controller.handlers  # noqa: F401, PLC0415 (registers the handlers)
    from nlpmodel_operator.controller import peering as peers  # noqa: PLC0415

    # Read once, here; the handlers get it from kopf's memo.
    try:
        config = replace(OperatorConfig.from_env(), namespaces=tuple(namespaces))
    except PricingError as exc:  # the chart's `pricing` values: refuse to start rather than misprice
        print(f"nlpmodel-operator: {exc}", file=sys.stderr)
        return 2
    identity = peers.operator_identity()
    priority = None
    if peering is not None and not standalone:
        # Each replica its own priority, the oldest highest (see controller/peering.py).
        priority = config.peering_priority
        if priority is None:
            priority = peers.default_priority(time.time())

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=standalone,
            peering_name=peering,
            liveness_endpoint=liveness,
            identity=identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str
            priority=priority,
            memo=kopf.Memo(identity=identity, config=config),
        )
    )
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch only these (repeatable)"
    )
    parser.add_argument("--standalone", action="store_true", help="no peering (a single operator replica)")
    parser.add_argument("--peering", default=None, help="peering object name (for several replicas)")
    parser.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("-v", "--verbose", action="store_true")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nlpmodel-operator")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args.namespace, args.standalone, args.peering, args.liveness, args.verbose)
