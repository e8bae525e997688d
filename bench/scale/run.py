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
Targets (issue 8): 1,000 models Ready within 30 s on 2 cores; at most 100 KiB RSS per model; no
request storm at rest. Printed, and written as JSON; never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from kubernetes import client

from nlpmodel_harness.localplane import OPERATOR_USER, LocalPlane
from nlpmodel_harness.operatorproc import OperatorProcess
from nlpmodel_harness.rbac import grant_operator_role
from nlpmodel_harness.standins import set_inference_service_ready
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
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": f"m{i:04d}", "namespace": NAMESPACE},
        "spec": {
            "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "quantization": {"method": "awq"},
            "resources": {"gpu": {"count": 1, "product": "nvidia-l4"}},
        },
    }


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class KServeStandIn:
    """Marks each new InferenceService Ready (what KServe would do), watching them all in the namespace."""

    def __init__(self, admin: client.ApiClient) -> None:
        self.admin = admin
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        api = client.CustomObjectsApi(self.admin)
        done: set[str] = set()
        while not self.stop.wait(0.5):
            items = api.list_namespaced_custom_object(
                "serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices"
            )
            for isvc in items["items"]:
                name = isvc["metadata"]["name"]
                if name not in done:
                    set_inference_service_ready(self.admin, NAMESPACE, name, True)
                    done.add(name)


def operator_requests(plane: LocalPlane, since: datetime, until: datetime | None = None) -> Counter[str]:
    verbs: Counter[str] = Counter()
    for event in plane.audit_events():
        if event.get("stage") != "ResponseComplete":
            continue
        at = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if at >= since and (until is None or at < until):
            verbs[event["verb"]] += 1
    return verbs


def run_one(n: int, rest_s: float, workdir: Path) -> dict[str, Any]:
    plane = LocalPlane(workdir / f"plane-{n}", audit_policy=OPERATOR_REQUESTS)
    plane.start()
    try:
        admin = plane.admin_client()
        grant_operator_role(admin)
        client.CoreV1Api(admin).create_namespace({"metadata": {"name": NAMESPACE}})
        operator = OperatorProcess(
            plane.operator_kubeconfig,
            workdir / f"operator-{n}.log",
            resync_seconds=RESYNC_S,
            env={"NLPMODEL_SETTLED_RESYNC_SECONDS": str(SETTLED_RESYNC_S)},
        )
        operator.start()
        assert operator.proc is not None
        pid = operator.proc.pid
        time.sleep(10)  # started, listed (nothing), settled
        rss_before = proc_kib(pid, "VmRSS")
        standin = KServeStandIn(admin)
        standin.thread.start()
        custom = client.CustomObjectsApi(admin)
        started = datetime.now().astimezone()
        t0 = time.monotonic()

        def create(part: range) -> None:
            api = client.CustomObjectsApi(plane.admin_client())
            for i in part:
                api.create_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, c.PLURAL, nlpmodel(i))

        threads = [threading.Thread(target=create, args=(range(k, n, 4),)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        created_s = time.monotonic() - t0
        ready_s, ready = None, 0
        while time.monotonic() - t0 < 600:
            items = custom.list_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, c.PLURAL)["items"]
            ready = sum(1 for m in items if (m.get("status") or {}).get("phase") == "Ready")
            if ready == n:
                ready_s = time.monotonic() - t0
                break
            time.sleep(0.5)
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
        standin.stop.set()
        operator.stop()
        rest_requests = sum(at_rest.values())
        return {
            "models": n,
            "created_s": round(created_s, 1),
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
        }
    finally:
        plane.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.scale.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", type=int, nargs="+", default=[100, 1000], help="model counts (default 100 1000)"
    )
    parser.add_argument("--rest", type=float, default=60.0, help="seconds measured at rest (default 60)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    results = []
    tmp = tempfile.mkdtemp(prefix="nlpmodel-bench-scale-")  # kept: the operator's logs
    for n in args.models:
        print(f"[scale] {n} models ...", file=sys.stderr, flush=True)
        results.append(run_one(n, args.rest, Path(tmp)))
        print(f"[scale] {json.dumps(results[-1])}", file=sys.stderr, flush=True)
    header = ("models", "all Ready", "peak RSS", "RSS/model", "req/model", "CPU rest", "req/s rest")
    widths = (7, 11, 10, 11, 11, 10, 12)
    print("".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for r in results:
        print(
            f"{r['models']:>7}{r['all_ready_s'] or float('nan'):>10.1f}s{r['peak_rss_mib']:>8.1f}Mi"
            f"{r['rss_per_model_kib']:>9.1f}Ki{r['requests_per_model_to_ready']:>11.1f}"
            f"{r['cpu_at_rest_percent']:>9.1f}%{r['requests_per_s_at_rest']:>12.1f}"
        )
    print(
        f"targets: all Ready <= {TARGET_READY_S:.0f} s for 1,000 models on 2 cores; "
        f"<= {TARGET_RSS_PER_MODEL_KIB:.0f} KiB RSS per model; no request storm at rest "
        "(requests/model/resync period shows what the resync costs)"
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
