"""Test harness for the operator on the local control plane.

It plays the parts that are missing here: it runs the operator as a separate process under the
operator's own restricted identity, and it plays KServe by writing an InferenceService's status.
The admin identity is used only by the harness, never by the operator.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from nlpmodel_harness import standins
from nlpmodel_harness.childproc import pid_alive
from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_harness.operatorproc import OperatorProcess
from nlpmodel_harness.rbac import grant_operator_role
from nlpmodel_harness.stack import apply_model
from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.revision import revision_hash

__all__ = [
    "Cluster",
    "OperatorProcess",
    "grant_operator_role",
    "missing_fields",
    "revision",
    "run_operator",
    "status",
    "wait_for",
]


T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 60.0, every_s: float = 0.3) -> T:
    """Poll until `probe` returns something truthy; fail with `what` after a bounded time."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what} (last seen: {last!r})")


def missing_fields(want: Any, have: Any, path: str = "") -> list[str]:
    """Paths of `want` (what we rendered) absent or different in `have` (what the server stored)."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return [path or "."]
        return [p for k, v in want.items() for p in missing_fields(v, have.get(k), f"{path}.{k}")]
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            return [path]
        return [
            p
            for i, (w, h) in enumerate(zip(want, have, strict=True))
            for p in missing_fields(w, h, f"{path}[{i}]")
        ]
    return [] if want == have else [f"{path} ({want!r} != {have!r})"]


def run_operator(
    localplane: LocalPlane,
    tmp_path_factory: pytest.TempPathFactory,
    env: dict[str, str] | None = None,
    restarts_apiserver: bool = False,
) -> Iterator[OperatorProcess]:
    """The operator as the restricted user for a module; afterwards, none of its processes is left and
    its log shows no permission denial or crash. `restarts_apiserver`: the module restarts
    kube-apiserver, which denies every request until its RBAC cache is filled again (seconds): denials
    are expected then, crashes still are not."""
    proc = OperatorProcess(
        localplane.operator_kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log", env=env
    )
    proc.start()
    yield proc
    proc.stop()
    # The operator processes this module started are all gone (no leftovers after `make test`).
    assert not [pid for pid in proc.pids if pid_alive(pid)]
    # Least privilege must still be enough: any denied request or crash shows up in the log.
    log = proc.log_path.read_text(errors="replace")
    # RBAC denials read `... is forbidden: User "nlpmodel-operator" cannot ...` (other 403s, such as a
    # namespace being terminated, are not permission problems).
    pattern = r"Traceback" if restarts_apiserver else r"forbidden: User|Traceback"
    problems = [line for line in log.splitlines() if re.search(pattern, line)]
    assert problems == [], "\n".join(problems[:20])


def chat_model(namespace: str, max_model_len: int = 8192, **sections: Any) -> dict[str, Any]:
    """The NLPModel `chat` the rollout tests share (an 8B AWQ model on one L4); `sections` add or replace
    top-level spec sections (rollout, scaling, serving, resources). `max_model_len` is what tests change
    to make a new revision."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": "chat", "namespace": namespace},
        "spec": {
            "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "quantization": {"method": "awq"},
            "runtime": {"maxModelLen": max_model_len},
            "resources": {"gpu": {"count": 1, "product": "nvidia-l4"}},
            **sections,
        },
    }


MetricSamples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def operator_metrics(port: int) -> MetricSamples:
    """The operator's own /metrics on this port, as (name, sorted labels) → value."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def with_prometheus(url: str, **extra: str) -> dict[str, str]:
    """The operator's environment for a module with a real Prometheus (scraping every second)."""
    return {"NLPMODEL_PROMETHEUS_URL": url, "NLPMODEL_SCRAPE_INTERVAL_SECONDS": "1", **extra}


def revision(body: dict[str, Any]) -> str:
    """The revision hash of an NLPModel manifest (what the operator names its children by)."""
    return revision_hash(NLPModelSpec.model_validate(body["spec"]))


def status(cluster: Cluster, namespace: str, name: str = "chat") -> dict[str, Any]:
    """The model's status as the API server holds it ({} before the first write)."""
    found: dict[str, Any] = cluster.model(namespace, name).get("status") or {}
    return found


class Cluster:
    """Admin-side views and actions of the harness."""

    def __init__(self, admin: client.ApiClient) -> None:
        self.api = client.CustomObjectsApi(admin)
        self.core = client.CoreV1Api(admin)
        self.apps = client.AppsV1Api(admin)

    def create_namespace(self, name: str) -> None:
        self.core.create_namespace({"metadata": {"name": name}})

    def apply_model(self, body: dict[str, Any]) -> dict[str, Any]:
        return apply_model(self.api, body)

    def model(self, ns: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.api.get_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, name)
        return found

    def command(self, ns: str, name: str, command: str) -> None:
        """What `nlpctl promote|abort|pause|resume|retry` does: the command annotation."""
        self.api.patch_namespaced_custom_object(
            c.GROUP,
            c.VERSION,
            ns,
            c.PLURAL,
            name,
            {"metadata": {"annotations": {c.ANNOTATION_COMMAND: command}}},
        )

    def delete_model(self, ns: str, name: str) -> None:
        self.api.delete_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, name)

    def condition(self, ns: str, name: str, type_: str) -> dict[str, Any] | None:
        status = self.model(ns, name).get("status") or {}
        return next((x for x in status.get("conditions") or [] if x["type"] == type_), None)

    def inference_services(self, ns: str) -> list[dict[str, Any]]:
        listed = self.api.list_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", ns, "inferenceservices"
        )
        items: list[dict[str, Any]] = listed["items"]
        return items

    def set_inference_service_ready(self, ns: str, name: str, ready: bool) -> None:
        """Play KServe: write the Ready condition the KServe controller would write."""
        standins.set_inference_service_ready(self.api.api_client, ns, name, ready)
