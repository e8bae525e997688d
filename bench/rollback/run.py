"""Time from the start of a regression to 0 % canary traffic, on the local control plane.

    python -m bench.rollback.run [--trials N] [--interval 4] [--out bench/results/rollback.json]

The whole loop runs for real (`nlpmodel_harness.stack.LocalStack`, shared with `make demo`):
a real kube-apiserver + etcd (the local plane), the operator under the chart's identity, a real
Prometheus scraping model-server stand-ins through the operator's PodMonitor
(one per revision, exporting vLLM's metrics), and stand-in KServe/kubelet controllers.

One trial: a stable revision is made Ready; an update starts a healthy canary; once the canary has
passed a check at the first step, its server turns bad (the *regression*: TTFT x1.8, or 5 % errors)
at time t0. The harness then watches the traffic object itself (the HTTPRoute's canary backend
weight) and records t1, the first moment it reads 0. The result is (t1 - t0) / interval.

What bounds it: `failureThreshold` consecutive failed checks are needed, one per interval; the first
check after t0 falls anywhere in (0, interval] after it and may already fail on its partly bad window
(interval + one scrape) when the regression is strong; the operator notices a due check within its
resync period (1 s here). So about failureThreshold - 1 to failureThreshold + 1 intervals.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from nlpmodel_harness.revision_servers import HEALTHY
from nlpmodel_harness.stack import LocalStack, apply_model
from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.revision import revision_hash

MODEL: Final = "chat"
FAILURE_THRESHOLD: Final = 2
REGRESSIONS: Final[dict[str, dict[str, float]]] = {
    "ttft+80%": {"ttft_median": HEALTHY["ttft_median"] * 1.8},
    "errors 5%": {"error_rate": 0.05},
}


def nlpmodel(namespace: str, interval_s: int, max_model_len: int) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": MODEL, "namespace": namespace},
        "spec": {
            "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "quantization": {"method": "awq"},
            "runtime": {"maxModelLen": max_model_len},
            "resources": {"gpu": {"count": 1, "product": "nvidia-l4"}},
            "rollout": {
                # A long first step: the regression starts there and must be caught there.
                "steps": [{"weight": 10, "pause": "10m"}, {"weight": 50, "pause": "10m"}],
                "analysis": {
                    "interval": f"{interval_s}s",
                    "minRequests": 40,
                    "failureThreshold": FAILURE_THRESHOLD,
                    "inconclusiveDeadline": "5m",
                },
                "slo": {"ttftP95": "3s", "errorRate": "2%", "maxRegression": "20%"},
            },
        },
    }


def wait_for(what: str, probe: Callable[[], bool], timeout_s: float, every_s: float = 0.05) -> float:
    """Poll until probe() holds; the monotonic time it was first seen to."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if probe():
                return time.monotonic()
        except ApiException:
            pass
        time.sleep(every_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


class Trial:
    def __init__(self, admin: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(admin)
        self.namespace = namespace

    def status(self) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace, c.PLURAL, MODEL)
        found: dict[str, Any] = obj.get("status") or {}
        return found

    def canary_route_weight(self, canary: str) -> int | None:
        route = self.custom.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", self.namespace, "httproutes", MODEL
        )
        for rule in route["spec"]["rules"]:
            for ref in rule.get("backendRefs") or []:
                if canary in ref["name"]:
                    return int(ref.get("weight", 1))
        return None  # the canary backend is gone from the route: no traffic either

    def apply(self, body: dict[str, Any]) -> None:
        apply_model(self.custom, body)


def run_trial(stack: LocalStack, regression: str, interval_s: int, index: int, work: Path) -> dict[str, Any]:
    namespace = f"bench-{index}"
    stack.create_namespace(namespace)
    trial = Trial(stack.admin, namespace)
    try:
        with stack.namespace_players(namespace, MODEL, work) as servers:
            trial.apply(nlpmodel(namespace, interval_s, 8192))
            wait_for("stable Ready", lambda: trial.status().get("phase") == "Ready", 120)
            update = nlpmodel(namespace, interval_s, 4096)
            canary = revision_hash(NLPModelSpec.model_validate(update["spec"]))
            trial.apply(update)
            wait_for(
                "a passed check at the first step",
                lambda: (
                    trial.status().get("canaryWeight") == 10
                    and int((trial.status().get("analysis") or {}).get("passedChecks") or 0) >= 1
                ),
                180,
            )
            servers.control(canary, **REGRESSIONS[regression])
            started = time.monotonic()
            zero = wait_for(
                "0 % canary weight", lambda: not trial.canary_route_weight(canary), 30 * interval_s
            )
            wait_for("RolledBack", lambda: trial.status().get("phase") == "RolledBack", 60)
            st = trial.status()
            rolled_back = next(x for x in st["conditions"] if x["type"] == "RolledBack")
            seconds = zero - started
            return {
                "regression": regression,
                "seconds": round(seconds, 2),
                "intervals": round(seconds / interval_s, 2),
                "reason": rolled_back["reason"],
                "message": rolled_back["message"],
            }
    finally:
        client.CoreV1Api(stack.admin).delete_namespace(namespace)


def summarize(trials: list[dict[str, Any]], interval_s: int) -> list[dict[str, Any]]:
    cells = []
    for regression in REGRESSIONS:
        xs = [t["intervals"] for t in trials if t["regression"] == regression]
        if not xs:
            continue
        cells.append(
            {
                "regression": regression,
                "trials": len(xs),
                "interval_s": interval_s,
                "failure_threshold": FAILURE_THRESHOLD,
                "mean_intervals": round(statistics.fmean(xs), 2),
                "min_intervals": min(xs),
                "max_intervals": max(xs),
            }
        )
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.rollback.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3, help="trials per regression (default 3)")
    parser.add_argument("--interval", type=int, default=4, help="analysis interval in seconds (default 4)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    trials: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nlpmodel-bench-rollback-") as tmp:
        work = Path(tmp)
        with LocalStack(work) as stack:
            op = stack.operator
            assert op is not None
            index = 0
            for _ in range(args.trials):
                for regression in REGRESSIONS:
                    result = run_trial(stack, regression, args.interval, index, work)
                    index += 1
                    trials.append(result)
                    print(
                        f"{regression:<10} {result['seconds']:6.1f} s = {result['intervals']:4.2f} intervals"
                        f"  {result['reason']}: {result['message'][:90]}",
                        flush=True,
                    )
                    if not op.alive():
                        raise RuntimeError(f"the operator exited:\n{op.log_tail()}")
    cells = summarize(trials, args.interval)
    print(
        f"\nregression to 0 % canary weight (interval {args.interval}s, failureThreshold {FAILURE_THRESHOLD}):"
    )
    print(f"{'regression':<12}{'trials':>7}{'mean':>8}{'min':>8}{'max':>8}  (in analysis intervals)")
    for cell in cells:
        print(
            f"{cell['regression']:<12}{cell['trials']:>7}{cell['mean_intervals']:>8.2f}"
            f"{cell['min_intervals']:>8.2f}{cell['max_intervals']:>8.2f}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"cells": cells, "trials": trials}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
