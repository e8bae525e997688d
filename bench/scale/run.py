"""Scale: N NLPModels created at once on the local control plane, with the operator as it runs in a
cluster (its own restricted user, the default resync period).

    python -m bench.scale.run [--models 100 1000] [--rest 60] [--out bench/results/scale.json]

For each N, on a fresh local plane (kube-apiserver with an audit log of the operator's requests):
all N models are created as fast as the admin client can (stand-in KServe marks every InferenceService
Ready as it appears), then measured:
- time from the first creation until every model's status says Ready;
- the operator's peak RSS (VmHWM) and the growth of its RSS per model (RSS when all are Ready minus
  RSS before the first creation, over N);
- the operator's API requests (from the audit log) per model until all are Ready, by verb;
- the requests in the resync period after that (the last reconciles, answering the operator's own
  last writes);
- at rest (the `--rest` seconds after that, nothing changing): the operator's CPU use and its API
  requests per second and per model and resync period. Models at rest are re-read once per settled
  period (600 s by default), longer than the window: that safety net costs one reconcile per model
  per settled period.
- for `--reactions` counts (100 by default), per model at 10 changes a second: the time from a spec
  change (a routing field) until its HTTPRoute shows it, and from its InferenceService turning Ready
  until the model's status says Ready (both seen by watches of the admin's).
Targets (issues 8 and 20): 1,000 models Ready within 30 s on 2 cores with at most 10 operator requests
each; at most 100 KiB RSS per model; at rest at most 1 % of a core; 100 models: p99 <= 1 s for both
reaction times. Each figure is printed beside the time the admin client alone needed to create the
models in the same run, before the operator starts (in a namespace of their own, deleted again: the
floor the API server sets on this machine), and beside its time to create them in the run itself,
with the operator's and the stand-in's writes beside its own. Printed, and written as JSON; never
asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from kubernetes import client, watch

from nlpmodel_harness.localplane import OPERATOR_USER, LocalPlane
from nlpmodel_harness.operatorproc import OperatorProcess
from nlpmodel_harness.rbac import grant_operator_role
from nlpmodel_harness.stack import numbered_model
from nlpmodel_harness.standins import ReadyOnSight, set_inference_service_ready
from nlpmodel_operator.api import constants as c
from nlpmodel_operator.controller.config import OperatorConfig

NAMESPACE: Final = "scale"
RESYNC_S: Final = OperatorConfig.resync_seconds  # the operator's defaults
SETTLED_RESYNC_S: Final = OperatorConfig.settled_resync_seconds
TARGET_READY_S: Final = 30.0
TARGET_RSS_PER_MODEL_KIB: Final = 100.0
# Every request of the operator's user, without bodies: who asked what, when.
OPERATOR_REQUESTS: Final = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
}


def nlpmodel(i: int) -> dict[str, Any]:
    return numbered_model(i, NAMESPACE)


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Seen:
    """When each object of a kind first met a condition, from a watch of the admin's (the operator's
    work as the cluster shows it, not as its log says)."""

    def __init__(
        self,
        admin: client.ApiClient,
        group: str,
        version: str,
        plural: str,
        met: Callable[[dict[str, Any]], bool],
    ) -> None:
        self.admin, self.args, self.met = admin, (group, version, NAMESPACE, plural), met
        self.at: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        api = client.CustomObjectsApi(self.admin)
        while not self.stop.is_set():
            for event in watch.Watch().stream(
                api.list_namespaced_custom_object, *self.args, timeout_seconds=10
            ):
                obj = event["object"]
                name = obj["metadata"]["name"]
                if name not in self.at and self.met(obj):
                    self.at[name] = time.monotonic()
                if self.stop.is_set():
                    break


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, math.ceil(q * len(ranked)) - 1)]


def latencies(
    admin: client.ApiClient, n: int, rate_per_s: float, act: Callable[[str], None], seen: Seen
) -> dict[str, Any]:
    """`act` on each model in turn at `rate_per_s`; how long until `seen` saw its effect."""
    asked: dict[str, float] = {}
    for i in range(n):
        name = f"m{i:04d}"
        asked[name] = time.monotonic()
        act(name)
        time.sleep(1 / rate_per_s)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(name in seen.at for name in asked):
        time.sleep(0.2)
    seen.stop.set()
    delays = [seen.at[name] - at for name, at in asked.items() if name in seen.at]
    return {
        "n": n,
        "rate_per_s": rate_per_s,
        "seen": len(delays),
        "p50_s": round(percentile(delays, 0.5) or float("nan"), 3),
        "p99_s": round(percentile(delays, 0.99) or float("nan"), 3),
        "max_s": round(max(delays, default=float("nan")), 3),
    }


def model_ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(x.get("type") == "Ready" and x.get("status") == "True" for x in conditions)


def route_renamed(obj: dict[str, Any]) -> bool:
    name = obj["metadata"]["name"]
    return (obj.get("spec") or {}).get("hostnames") == [f"{name}.changed.example.com"]


def reaction_times(admin: client.ApiClient, n: int) -> dict[str, Any]:
    """The 100-model goals of issue 20: a spec change to its children applied, and a child turning
    Ready to the model's status saying so, each per model, at 10 changes a second."""
    custom = client.CustomObjectsApi(admin)
    routes = Seen(admin, "gateway.networking.k8s.io", "v1", "httproutes", route_renamed)

    def rename(name: str) -> None:
        # A routing field: the route changes, no new revision.
        patch = {"spec": {"serving": {"hostnames": [f"{name}.changed.example.com"]}}}
        custom.patch_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, c.PLURAL, name, patch)

    spec_to_children = latencies(admin, n, 10.0, rename, routes)
    isvcs = {
        m["metadata"]["labels"][c.LABEL_MODEL]: m["metadata"]["name"]
        for m in custom.list_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices"
        )["items"]
    }
    for isvc in isvcs.values():
        set_inference_service_ready(admin, NAMESPACE, isvc, False)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        items = custom.list_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, c.PLURAL)["items"]
        if not any(model_ready(m) for m in items):
            break
        time.sleep(0.5)
    ready = Seen(admin, c.GROUP, c.VERSION, c.PLURAL, model_ready)
    time.sleep(1)  # the watch's initial listing: none is Ready
    child_to_status = latencies(
        admin, n, 10.0, lambda name: set_inference_service_ready(admin, NAMESPACE, isvcs[name], True), ready
    )
    return {"spec_change_to_children_applied": spec_to_children, "child_ready_to_status": child_to_status}


def wait_all_ready(admin: client.ApiClient, n: int, t0: float, limit_s: float) -> tuple[float | None, int]:
    """Seconds from `t0` until all `n` models' status said Ready (None after `limit_s`), and how many
    did. From a watch, opened afresh every 10 s (its first events list every model: a missed event
    cannot stall the count). A LIST of all the models every half second, as this bench used to poll, is
    a load of its own on the API server that grows with N: 1,000 statuses encoded twice a second."""
    api = client.CustomObjectsApi(admin)
    ready: set[str] = set()
    while time.monotonic() - t0 < limit_s:
        for event in watch.Watch().stream(
            api.list_namespaced_custom_object, c.GROUP, c.VERSION, NAMESPACE, c.PLURAL, timeout_seconds=10
        ):
            obj = event["object"]
            if event["type"] != "ERROR" and (obj.get("status") or {}).get("phase") == "Ready":
                ready.add(obj["metadata"]["name"])
            if len(ready) == n:
                return time.monotonic() - t0, n
            if time.monotonic() - t0 >= limit_s:
                break
    return None, len(ready)


def operator_requests(plane: LocalPlane, since: datetime, until: datetime | None = None) -> Counter[str]:
    verbs: Counter[str] = Counter()
    for event in plane.audit_events():
        if event.get("stage") != "ResponseComplete":
            continue
        at = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if at >= since and (until is None or at < until):
            verbs[event["verb"]] += 1
    return verbs


def create_models(plane: LocalPlane, namespace: str, n: int) -> None:
    """N models as fast as the admin client can (4 threads)."""

    def create(part: range) -> None:
        api = client.CustomObjectsApi(plane.admin_client())
        for i in part:
            body = nlpmodel(i)
            body["metadata"]["namespace"] = namespace
            api.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, body)

    threads = [threading.Thread(target=create, args=(range(k, n, 4),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def creation_alone(plane: LocalPlane, admin: client.ApiClient, n: int) -> float:
    """The API server's floor: the time the admin client alone (no operator, no stand-in) needs to
    create the N models, in a namespace of their own, deleted again before the operator starts."""
    namespace = f"{NAMESPACE}-alone"
    client.CoreV1Api(admin).create_namespace({"metadata": {"name": namespace}})
    t0 = time.monotonic()
    create_models(plane, namespace, n)
    alone_s = time.monotonic() - t0
    api = client.CustomObjectsApi(admin)
    api.delete_collection_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL)
    deadline = time.monotonic() + 120
    while api.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL)["items"]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {n} models created alone were not deleted within 120 s")
        time.sleep(0.5)
    return alone_s


def run_one(n: int, rest_s: float, workdir: Path, reactions: bool) -> dict[str, Any]:
    plane = LocalPlane(workdir / f"plane-{n}", audit_policy=OPERATOR_REQUESTS)
    plane.start()
    operator: OperatorProcess | None = None
    try:
        admin = plane.admin_client()
        grant_operator_role(admin)
        client.CoreV1Api(admin).create_namespace({"metadata": {"name": NAMESPACE}})
        created_alone_s = creation_alone(plane, admin, n)
        operator = OperatorProcess(
            plane.operator_kubeconfig,
            workdir / f"operator-{n}.log",
            resync_seconds=RESYNC_S,
            env={"NLPMODEL_SETTLED_RESYNC_SECONDS": str(SETTLED_RESYNC_S)},
            verbose=False,  # as the chart runs it (operator.verbose: false)
        )
        operator.start()
        assert operator.proc is not None
        pid = operator.proc.pid
        time.sleep(10)  # started, listed (nothing), settled
        rss_before = proc_kib(pid, "VmRSS")
        standin = ReadyOnSight(admin, NAMESPACE).__enter__()
        started = datetime.now().astimezone()
        t0 = time.monotonic()

        create_models(plane, NAMESPACE, n)
        created_s = time.monotonic() - t0
        ready_s, ready = wait_all_ready(admin, n, t0, 600)
        all_ready = datetime.now().astimezone()
        rss_ready = proc_kib(pid, "VmRSS")
        to_ready = operator_requests(plane, started, all_ready)
        # The last reconciles after the last model turned Ready (the echoes of its own writes) end
        # within a resync period; then nothing changes: at rest.
        time.sleep(RESYNC_S)
        settling = operator_requests(plane, all_ready, datetime.now().astimezone())
        cpu0, rest_start, r0 = cpu_seconds(pid), datetime.now().astimezone(), time.monotonic()
        time.sleep(rest_s)
        cpu1, rest_end, elapsed = cpu_seconds(pid), datetime.now().astimezone(), time.monotonic() - r0
        at_rest = operator_requests(plane, rest_start, rest_end)
        peak = proc_kib(pid, "VmHWM")
        rss_rest = proc_kib(pid, "VmRSS")
        standin.__exit__()
        rest_requests = sum(at_rest.values())
        reacted = reaction_times(admin, n) if reactions else None
        rss_end = proc_kib(pid, "VmRSS")
        return {
            "models": n,
            "created_s": round(created_s, 1),
            "created_alone_s": round(created_alone_s, 1),
            "all_ready_s": round(ready_s, 1) if ready_s is not None else None,
            "ready_when_measured": ready,  # all of them, unless 600 s passed first
            "operator_log": str(operator.log_path),
            "rss_before_mib": round(rss_before / 1024, 1),
            "rss_all_ready_mib": round(rss_ready / 1024, 1),
            "rss_at_rest_mib": round(rss_rest / 1024, 1),
            "peak_rss_mib": round(peak / 1024, 1),
            "rss_per_model_kib": round((rss_ready - rss_before) / n, 1),
            "requests_to_ready": sum(to_ready.values()),
            "requests_per_model_to_ready": round(sum(to_ready.values()) / n, 1),
            "requests_to_ready_by_verb": dict(to_ready),
            "requests_in_the_resync_period_after_ready": sum(settling.values()),
            "rest_s": round(elapsed, 1),
            "cpu_at_rest_percent": round(100 * (cpu1 - cpu0) / elapsed, 1),
            "requests_per_s_at_rest": round(rest_requests / elapsed, 1),
            "requests_per_model_per_resync_at_rest": round(rest_requests / elapsed * RESYNC_S / n, 2),
            "requests_at_rest_by_verb": dict(at_rest),
            "reaction_times": reacted,
            "rss_end_mib": round(rss_end / 1024, 1),
            "ready_over_created": round(ready_s / created_s, 1) if ready_s is not None else None,
            "ready_over_created_alone": round(ready_s / created_alone_s, 1) if ready_s is not None else None,
        }
    finally:
        if operator is not None:
            operator.stop()
        plane.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.scale.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", type=int, nargs="+", default=[100, 1000], help="model counts (default 100 1000)"
    )
    parser.add_argument("--rest", type=float, default=60.0, help="seconds measured at rest (default 60)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--reactions",
        type=int,
        nargs="*",
        default=[100],
        help="model counts whose per-model reaction times are measured too (default 100)",
    )
    args = parser.parse_args(argv)
    results = []
    tmp = tempfile.mkdtemp(prefix="nlpmodel-bench-scale-")  # kept: the operator's logs
    for n in args.models:
        print(f"[scale] {n} models ...", file=sys.stderr, flush=True)
        results.append(run_one(n, args.rest, Path(tmp), n in args.reactions))
        print(f"[scale] {json.dumps(results[-1])}", file=sys.stderr, flush=True)
    header = (
        "models",
        "alone",
        "created",
        "all Ready",
        "(x alone)",
        "(x created)",
        "peak RSS",
        "RSS/model",
        "req/model",
        "CPU rest",
        "req/s rest",
    )
    widths = (7, 8, 9, 11, 10, 12, 10, 11, 11, 10, 12)
    print("".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for r in results:
        print(
            f"{r['models']:>7}{r['created_alone_s']:>7.1f}s{r['created_s']:>8.1f}s"
            f"{r['all_ready_s'] or float('nan'):>10.1f}s{r['ready_over_created_alone'] or float('nan'):>9.1f}x"
            f"{r['ready_over_created'] or float('nan'):>11.1f}x{r['peak_rss_mib']:>8.1f}Mi"
            f"{r['rss_per_model_kib']:>9.1f}Ki{r['requests_per_model_to_ready']:>11.1f}"
            f"{r['cpu_at_rest_percent']:>9.1f}%{r['requests_per_s_at_rest']:>12.1f}"
        )
    for r in results:
        for what, m in (r["reaction_times"] or {}).items():
            print(
                f"{r['models']:>7} models, {what}: p50 {m['p50_s']:.3f} s, p99 {m['p99_s']:.3f} s, "
                f"max {m['max_s']:.3f} s ({m['seen']}/{m['n']} seen, {m['rate_per_s']:.0f} changes/s); "
                f"creating the models took the admin {r['created_s']:.1f} s"
            )
    print(
        f"targets: all Ready <= {TARGET_READY_S:.0f} s for 1,000 models on 2 cores; <= 10 requests per "
        f"model to Ready; <= {TARGET_RSS_PER_MODEL_KIB:.0f} KiB RSS per model; at rest <= 1 % of a core; "
        "100 models: p99 <= 1 s from a spec change to its children and from a child Ready to the status. "
        "'alone' is how long the admin client took to create the models with nothing else writing (the "
        "API server's floor), 'created' how long it took in the run itself, beside the operator's writes"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "cores": os.cpu_count(),
            "resync_seconds": RESYNC_S,
            "settled_resync_seconds": SETTLED_RESYNC_S,
            "note": "2 cores shared with other work",
        }
        args.out.write_text(json.dumps({"environment": meta, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
