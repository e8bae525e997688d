"""The real-pods tier's cluster (conftest.py starts one per session) and the helpers its tests share."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client

from nlpmodel_harness.k8stools import ensure_tools
from nlpmodel_harness.nodestack import NodeStack

MODEL_NAMESPACE = "ml"

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float, every_s: float = 1.0) -> T:
    """Poll until check() returns something truthy; fail with `what` (no timing is asserted)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f}s: {what}")
        time.sleep(every_s)


@dataclass
class NodeCluster:
    stack: NodeStack

    @property
    def admin(self) -> client.ApiClient:
        return self.stack.admin

    @property
    def prometheus(self) -> Any:
        return self.stack.prometheus

    @property
    def admin_kubeconfig(self) -> Path:
        return self.stack.plane.admin_kubeconfig

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.admin)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.admin)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.admin)

    def kubectl(self, *args: str) -> str:
        done = subprocess.run(
            [str(ensure_tools().kubectl), f"--kubeconfig={self.admin_kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = json.loads(
            self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False).data
        )["items"]
        return found
