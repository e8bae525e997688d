"""`make demo`: the operator at work on a real local control plane, start to finish, in one command.

It validates and plans the shipped examples (no cluster needed), then starts a real kube-apiserver +
etcd + kube-controller-manager, runs the operator under its own least-privilege identity, applies two
examples, plays the parts a laptop lacks (KServe marking the InferenceService Ready, the kubelet
marking pods Ready), prints the children and the `kubectl get nlpm` view as it changes, and stops
everything it started.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.cli.main import main as nlpctl
from nlpmodel_operator.devtools import standins

EXAMPLES = Path(__file__).resolve().parents[3] / "manifests" / "examples"
APPLIED = ("llama-8b-awq-kserve.yaml", "bge-embeddings-raw.yaml")


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def offline_part() -> None:
    files = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    banner("nlpctl validate manifests/examples   (one example is meant not to fit its GPU)")
    nlpctl(["validate", *files])
    banner("nlpctl plan llama-8b-awq-kserve.yaml")
    nlpctl(["plan", str(EXAMPLES / "llama-8b-awq-kserve.yaml")])


def age(created: str | None) -> str:
    if not created:
        return "-"
    seconds = int(
        (datetime.now(UTC) - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()
    )
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"


def table(models: list[dict[str, Any]]) -> str:
    """The `kubectl get nlpm -A` view (the CRD's printer columns)."""
    rows = [("NAMESPACE", "NAME", "TASK", "PHASE", "STABLE", "CANARY", "WEIGHT", "READY", "AGE")]
    for m in models:
        st = m.get("status") or {}
        ready = next((x["status"] for x in st.get("conditions") or [] if x["type"] == "Ready"), "")
        rows.append(
            (
                m["metadata"]["namespace"],
                m["metadata"]["name"],
                m["spec"].get("task", "generate"),
                st.get("phase", ""),
                st.get("stableRevision", ""),
                st.get("canaryRevision", ""),
                str(st.get("canaryWeight", "")),
                ready,
                age(m["metadata"].get("creationTimestamp")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


class Demo:
    def __init__(self, admin: client.ApiClient) -> None:
        self.admin = admin
        self.custom = client.CustomObjectsApi(admin)
        self.core = client.CoreV1Api(admin)
        self.apps = client.AppsV1Api(admin)
        self.last_view = ""

    def models(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.PLURAL)[
            "items"
        ]
        return sorted(items, key=lambda m: (m["metadata"]["namespace"], m["metadata"]["name"]))

    def show(self) -> None:
        """Print the table when something in it (other than the age) changed."""
        view = table(self.models())
        key = "\n".join(line.rsplit("   ", 1)[0] for line in view.splitlines())
        if key != self.last_view:
            print(view, flush=True)
            print(flush=True)
            self.last_view = key

    def watch_until(self, what: str, done: Callable[[], bool], timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.show()
            if done():
                return
            time.sleep(0.5)
        raise TimeoutError(f"gave up waiting for {what}")

    def apply(self, path: Path) -> dict[str, Any]:
        body: dict[str, Any] = yaml.safe_load(path.read_text())
        ns = body["metadata"]["namespace"]
        with contextlib.suppress(ApiException):
            self.core.create_namespace({"metadata": {"name": ns}})
        print(f"$ kubectl apply -f manifests/examples/{path.name}", flush=True)
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, ns, c.PLURAL, body
        )
        return created

    def phase(self, ns: str, name: str) -> str | None:
        st = (
            self.custom.get_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, name).get("status")
            or {}
        )
        phase: str | None = st.get("phase")
        return phase

    def children(self, ns: str, name: str) -> list[tuple[str, str]]:
        selector = f"{c.LABEL_MODEL}={name}"
        found = [
            ("InferenceService", i["metadata"]["name"])
            for i in self.custom.list_namespaced_custom_object(
                "serving.kserve.io", "v1beta1", ns, "inferenceservices", label_selector=selector
            )["items"]
        ]
        found += [
            ("Deployment", d.metadata.name)
            for d in self.apps.list_namespaced_deployment(ns, label_selector=selector).items
        ]
        found += [
            ("Service", s.metadata.name)
            for s in self.core.list_namespaced_service(ns, label_selector=selector).items
        ]
        return found

    def has_children(self, ns: str, name: str) -> bool:
        return bool(self.children(ns, name))

    def play_kserve(self, ns: str, name: str) -> None:
        print(f"[stand-in for KServe] InferenceService {ns}/{name} becomes Ready", flush=True)
        standins.set_inference_service_ready(self.admin, ns, name, ready=True)

    def play_kubelet(self, ns: str, model: str) -> int:
        return standins.run_pods(self.admin, ns, f"{c.LABEL_MODEL}={model}")


def cluster_part(workdir: Path) -> None:
    from nlpmodel_operator.devtools.localplane import LocalPlane  # noqa: PLC0415 (dev-only)
    from nlpmodel_operator.devtools.operatorproc import OperatorProcess  # noqa: PLC0415
    from nlpmodel_operator.devtools.rbac import grant_operator_role  # noqa: PLC0415

    banner(
        "local control plane: real etcd + kube-apiserver + kube-controller-manager (first run builds them)"
    )
    with LocalPlane(workdir / "localplane") as plane:
        major, minor = plane.server_version
        print(f"API server {plane.git_version} (v{major}.{minor}) at {plane.api_url}", flush=True)
        admin = plane.admin_client()
        grant_operator_role(admin)
        print("operator identity: user nlpmodel-operator, bound only to charts/.../clusterrole-rules.yaml")
        demo = Demo(admin)
        banner("operator: python -m nlpmodel_operator --standalone (kopf)")
        with OperatorProcess(plane.operator_kubeconfig, workdir / "operator.log") as op:
            print(f"operator pid {op.pids[-1]}", flush=True)
            for name in APPLIED:
                demo.apply(EXAMPLES / name)
            demo.watch_until(
                "children",
                lambda: all(
                    demo.phase(ns, n) for ns, n in (("ml", "support-assistant"), ("search", "bge-embed"))
                ),
            )
            banner("children (owned by their NLPModel, named <model>-<revision>)")
            for ns, model in (("ml", "support-assistant"), ("search", "bge-embed")):
                demo.watch_until("children", partial(demo.has_children, ns, model))
                for kind, child in demo.children(ns, model):
                    print(f"  {kind:<17} {ns}/{child}")
            banner("the harness plays KServe and the kubelet; status follows the children")
            isvc = demo.children("ml", "support-assistant")[0][1]
            demo.play_kserve("ml", isvc)
            demo.watch_until("pods", lambda: demo.play_kubelet("search", "bge-embed") >= 2)
            demo.watch_until(
                "both Ready",
                lambda: (
                    demo.phase("ml", "support-assistant") == "Ready"
                    and demo.phase("search", "bge-embed") == "Ready"
                ),
            )
            banner("kubectl get nlpm -A")
            print(table(demo.models()))
            if not op.alive():
                raise RuntimeError(f"the operator exited: see {workdir / 'operator.log'}")
        admin.close()
    banner("stopped the operator, kube-controller-manager, kube-apiserver and etcd")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nlpctl demo", description=__doc__)
    parser.add_argument("--offline", action="store_true", help="only validate/plan (no control plane)")
    args = parser.parse_args(argv)
    offline_part()
    if args.offline:
        return 0
    with tempfile.TemporaryDirectory(prefix="nlpmodel-demo-") as tmp:
        try:
            cluster_part(Path(tmp))
        except Exception as exc:
            log = Path(tmp) / "operator.log"
            if log.exists():
                print(log.read_text()[-3000:], file=sys.stderr)
            print(f"demo failed: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
