"""The real-pods tier's cluster: what its conftest sets up and its tests use (see conftest.py)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client

from nlpmodel_harness import images, tinymodels
from nlpmodel_harness.checkout import REPO
from nlpmodel_harness.k8stools import ensure_tools
from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_harness.localplane_build import ensure_binaries
from nlpmodel_harness.prometheus import PrometheusProcess

CHART = REPO / "charts" / "nlpmodel-operator"
ALERT_RULES = CHART / "files" / "alerts" / "nlpmodel-operator.rules.yaml"
RELEASE = "nlpmodel-operator"  # contains the chart's name: objects are called just that
RELEASE_NAMESPACE = "nlpmodel-system"
MODEL_NAMESPACE = "ml"
MODELS_CLAIM = "models"
RESYNC_S = 2

T = TypeVar("T")


def prepare() -> tuple[images.Image, images.Image]:
    """Everything slow and cached, before any test runs (its output shown live): binaries, images, models."""
    ensure_binaries()
    built = images.operator_image(), images.runtime_image()
    for model in (tinymodels.SMALL, tinymodels.SMALL_V2, tinymodels.LARGE):
        tinymodels.ensure(model)
    return built


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
    plane: LocalPlane
    prometheus: PrometheusProcess
    admin: client.ApiClient
    work: Path

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
        tools = ensure_tools()
        done = subprocess.run(
            [str(tools.kubectl), f"--kubeconfig={self.plane.admin_kubeconfig}", *args],
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


def _install_models_volume(admin: client.ApiClient) -> None:
    """The tiny models' directory as a read-only hostPath PersistentVolume, claimed in the model namespace
    (what an air-gapped cluster does with weights copied in: `pvc://models/<dir>`)."""
    core = client.CoreV1Api(admin)
    core.create_persistent_volume(
        {
            "metadata": {"name": "tiny-models"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadOnlyMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(tinymodels.models_root()), "type": "Directory"},
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        MODEL_NAMESPACE,
        {
            "metadata": {"name": MODELS_CLAIM},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "volumeName": "tiny-models",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )


def _helm_install(plane: LocalPlane, prometheus_url: str, work: Path) -> None:
    """`helm install` the chart. The NLPModel and kopf CRDs are the chart's own, installed by the plane's
    CRD installer (it drops the CEL rules a v1.20 server rejects); the release then skips them."""
    helm = str(ensure_tools().helm)
    kube = f"--kubeconfig={plane.admin_kubeconfig}"
    rendered = subprocess.run(
        [
            helm,
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            RELEASE_NAMESPACE,
            "--show-only",
            "templates/crds.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    crds = work / "chart-crds.yaml"
    crds.write_text(rendered)
    plane.install_crds([crds])
    values = {
        "crds": {"enabled": False},
        "operator": {
            "prometheusUrl": prometheus_url,
            "resyncSeconds": RESYNC_S,
            "scrapeIntervalSeconds": 1,
            "verbose": True,
        },
    }
    values_file = work / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    done = subprocess.run(
        [helm, kube, "install", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--create-namespace",
         "--values", str(values_file), "--wait", "--timeout", "5m"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"helm install failed: {done.stderr}\n{done.stdout}")


def install_models_volume(admin: client.ApiClient) -> None:
    """The tiny models' directory as a read-only hostPath PersistentVolume, claimed in the model namespace
    (what an air-gapped cluster does with weights copied in: `pvc://models/<dir>`)."""
    core = client.CoreV1Api(admin)
    core.create_persistent_volume(
        {
            "metadata": {"name": "tiny-models"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadOnlyMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(tinymodels.models_root()), "type": "Directory"},
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        MODEL_NAMESPACE,
        {
            "metadata": {"name": MODELS_CLAIM},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "volumeName": "tiny-models",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )


def helm_install(plane: LocalPlane, prometheus_url: str, work: Path) -> None:
    """`helm install` the chart. The NLPModel and kopf CRDs are the chart's own, installed by the plane's
    CRD installer (it drops the CEL rules a v1.20 server rejects); the release then skips them."""
    helm = str(ensure_tools().helm)
    kube = f"--kubeconfig={plane.admin_kubeconfig}"
    rendered = subprocess.run(
        [
            helm,
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            RELEASE_NAMESPACE,
            "--show-only",
            "templates/crds.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    crds = work / "chart-crds.yaml"
    crds.write_text(rendered)
    plane.install_crds([crds])
    values = {
        "crds": {"enabled": False},
        "operator": {
            "prometheusUrl": prometheus_url,
            "resyncSeconds": RESYNC_S,
            "scrapeIntervalSeconds": 1,
            "verbose": True,
        },
    }
    values_file = work / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    done = subprocess.run(
        [helm, kube, "install", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--create-namespace",
         "--values", str(values_file), "--wait", "--timeout", "5m"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"helm install failed: {done.stderr}\n{done.stdout}")
