"""Test harness for the operator on the local control plane.

It plays the parts that are missing here: it runs the operator as a separate process under the
operator's own restricted identity, and it plays KServe by writing an InferenceService's status.
The admin identity is used only by the harness, never by the operator.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.devtools import standins
from nlpmodel_operator.devtools.rbac import grant_operator_role

__all__ = ["Cluster", "OperatorProcess", "grant_operator_role", "wait_for"]


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


class OperatorProcess:
    """`python -m nlpmodel_operator` as the restricted user; its log is kept for failing tests."""

    def __init__(
        self, kubeconfig: Path, log_path: Path, resync_seconds: float = 1.0, env: dict[str, str] | None = None
    ) -> None:
        self.extra_env = env or {}
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.resync_seconds = resync_seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "NLPMODEL_RESYNC_SECONDS": str(self.resync_seconds),
            "PYTHONUNBUFFERED": "1",
            "NLPMODEL_METRICS_PORT": "0",  # several operators may run on this machine over a session
            **self.extra_env,
        }
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nlpmodel_operator", "--standalone", "--verbose"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.pids.append(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to clean up (what a node failure does)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Cluster:
    """Admin-side views and actions of the harness."""

    def __init__(self, admin: client.ApiClient) -> None:
        self.api = client.CustomObjectsApi(admin)
        self.core = client.CoreV1Api(admin)
        self.apps = client.AppsV1Api(admin)

    def create_namespace(self, name: str) -> None:
        self.core.create_namespace({"metadata": {"name": name}})

    def apply_model(self, body: dict[str, Any]) -> dict[str, Any]:
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            current = self.api.get_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            created: dict[str, Any] = self.api.create_namespaced_custom_object(
                c.GROUP, c.VERSION, ns, c.PLURAL, body
            )
            return created
        body = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
        }
        replaced: dict[str, Any] = self.api.replace_namespaced_custom_object(
            c.GROUP, c.VERSION, ns, c.PLURAL, name, body
        )
        return replaced

    def model(self, ns: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.api.get_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, name)
        return found

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
