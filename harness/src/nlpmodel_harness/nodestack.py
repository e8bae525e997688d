"""Everything real on one machine: the local control plane with a node, our images, the chart, Prometheus.

Shared by the real-pods test tier (tests/e2e_node) and ``nlpctl demo --node``::

    with NodeStack(work_dir) as stack:       # root, Linux; ~12 min the first time on a machine
        stack.admin, stack.prometheus.url, stack.plane.admin_kubeconfig

:func:`prepare` makes sure of the slow, cached parts (Kubernetes binaries, the base root filesystem, the
operator and runtime images built from their Dockerfiles, the tiny models). Then :class:`NodeStack`
starts `LocalPlane(node=True)`, imports both images into containerd (no registry), offers the models
directory as a hostPath PersistentVolume claimed as ``models`` in the model namespace (so an NLPModel
says ``pvc://models/<dir>``), starts a real Prometheus on the machine's address with the chart's alert
rules, ``helm install``s the chart (the operator runs in a pod, as its ServiceAccount) and keeps the
Prometheus's targets in line with the operator's PodMonitors (:class:`PodMonitorScraper`).
"""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from nlpmodel_harness import images, tinymodels
from nlpmodel_harness.checkout import CHART
from nlpmodel_harness.k8stools import ensure_tools
from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_harness.localplane_build import ensure_binaries, log
from nlpmodel_harness.node import host_ip
from nlpmodel_harness.podmonitors import PodMonitorScraper
from nlpmodel_harness.prometheus import PrometheusProcess

__all__ = ["MODELS_CLAIM", "RELEASE", "RELEASE_NAMESPACE", "NodeStack", "ServiceLoad", "prepare"]

ALERT_RULES: Final = CHART / "files" / "alerts" / "nlpmodel-operator.rules.yaml"
RELEASE: Final = "nlpmodel-operator"  # contains the chart's name: its objects are called just that
RELEASE_NAMESPACE: Final = "nlpmodel-system"
MODELS_CLAIM: Final = "models"
MODELS_VOLUME: Final = "tiny-models"


def prepare() -> tuple[images.Image, images.Image]:
    """The slow parts, each cached per machine: binaries, the images, the tiny models."""
    ensure_binaries()
    built = images.operator_image(), images.runtime_image()
    for model in (tinymodels.SMALL, tinymodels.SMALL_V2, tinymodels.LARGE):
        tinymodels.ensure(model)
    return built


class NodeStack:
    def __init__(self, work: Path, model_namespaces: list[str], *, resync_s: float = 2.0) -> None:
        self.work = work
        self.model_namespaces = model_namespaces
        self.resync_s = resync_s
        self.plane = LocalPlane(work / "plane", node=True)
        self._admin: client.ApiClient | None = None
        self._prometheus: PrometheusProcess | None = None
        self._scraper: PodMonitorScraper | None = None

    @property
    def admin(self) -> client.ApiClient:
        if self._admin is None:
            raise RuntimeError("not started")
        return self._admin

    @property
    def prometheus(self) -> PrometheusProcess:
        if self._prometheus is None:
            raise RuntimeError("not started")
        return self._prometheus

    def __enter__(self) -> NodeStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> NodeStack:
        operator_image, runtime_image = prepare()
        self.plane.start()
        try:
            for image in (operator_image, runtime_image):
                self.plane.import_image(image)
            self._admin = self.plane.admin_client()
            core = client.CoreV1Api(self._admin)
            for namespace in self.model_namespaces:
                core.create_namespace({"metadata": {"name": namespace}})
            self._install_models_volume()
            # The operator's pod reaches Prometheus on the machine's address, not on loopback.
            self._prometheus = PrometheusProcess(
                work_dir=self.work / "prometheus", listen_host=host_ip(), rule_files=[ALERT_RULES]
            )
            self._prometheus.start()
            self._helm_install()
            self._scraper = PodMonitorScraper(
                self._admin,
                self._prometheus,
                self.model_namespaces,
                operator_service=(RELEASE_NAMESPACE, f"{RELEASE}-metrics"),
            )
            self._scraper.__enter__()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._scraper is not None:
            self._scraper.__exit__(None, None, None)
            self._scraper = None
        if self._prometheus is not None:
            self._prometheus.stop()
            self._prometheus = None
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        self.plane.stop()

    def _install_models_volume(self) -> None:
        """The tiny models' directory as a read-only hostPath volume, claimed as `models` in each model
        namespace: what an air-gapped cluster does with weights copied in (`pvc://models/<dir>`)."""
        core = client.CoreV1Api(self.admin)
        for index, namespace in enumerate(self.model_namespaces):
            volume = f"{MODELS_VOLUME}-{index}"
            core.create_persistent_volume(
                {
                    "metadata": {"name": volume},
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
                namespace,
                {
                    "metadata": {"name": MODELS_CLAIM},
                    "spec": {
                        "accessModes": ["ReadOnlyMany"],
                        "storageClassName": "",
                        "volumeName": volume,
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                },
            )

    def _helm_install(self) -> None:
        """`helm install` the chart. Its CRDs (NLPModel, kopf's peerings) go in through the plane's CRD
        installer, which drops what a v1.20 server rejects (CEL rules); the release then skips them."""
        helm = str(ensure_tools().helm)
        rendered = subprocess.run(
            [helm, "template", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE,
             "--show-only", "templates/crds.yaml"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        crds = self.work / "chart-crds.yaml"
        crds.write_text(rendered)
        self.plane.install_crds([crds])
        values = {
            "crds": {"enabled": False},
            "operator": {
                "prometheusUrl": self.prometheus.url,
                "resyncSeconds": self.resync_s,
                "scrapeIntervalSeconds": 1,
                "verbose": True,
            },
        }
        values_file = self.work / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        log(f"helm install {RELEASE} charts/nlpmodel-operator -n {RELEASE_NAMESPACE}")
        done = subprocess.run(
            [helm, f"--kubeconfig={self.plane.admin_kubeconfig}", "install", RELEASE, str(CHART),
             "--namespace", RELEASE_NAMESPACE, "--create-namespace", "--values", str(values_file),
             "--wait", "--timeout", "5m"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"helm install failed: {done.stderr}\n{done.stdout}\n{self._operator_log()}")

    def _operator_log(self) -> str:
        core = client.CoreV1Api(self.admin)
        try:
            pods = core.list_namespaced_pod(RELEASE_NAMESPACE).items
            return "\n".join(
                str(core.read_namespaced_pod_log(p.metadata.name, RELEASE_NAMESPACE, tail_lines=40))
                for p in pods
            )
        except ApiException as exc:
            return f"(no operator log: {exc.status})"


class ServiceLoad:
    """Closed-loop clients posting completions to a model's Service until stopped: each request opens a
    new connection, so kube-proxy picks a pod (of any revision the Service selects) every time::

        with ServiceLoad(admin, "ml", "chat", served_name="chat") as load:
            ...
        load.ok, load.failed
    """

    def __init__(
        self,
        admin: client.ApiClient,
        namespace: str,
        service: str,
        *,
        served_name: str,
        clients: int = 3,
        max_tokens: int = 12,
        prompt: str = "the support team answers",
    ) -> None:
        self.core = client.CoreV1Api(admin)
        self.namespace, self.service = namespace, service
        self.body = json.dumps({"model": served_name, "prompt": prompt, "max_tokens": max_tokens}).encode()
        self.ok = 0
        self.failed = 0  # refused or cut off: a pod going away mid-request (rollback, promotion)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> ServiceLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)

    def url(self) -> str | None:
        """The Service's completions URL (None until the operator has created the Service)."""
        try:
            spec = self.core.read_namespaced_service(self.service, self.namespace).spec
        except ApiException:
            return None
        return f"http://{spec.cluster_ip}:{spec.ports[0].port}/v1/completions"

    def complete(self, url: str) -> dict[str, Any]:
        req = urllib.request.Request(url, data=self.body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
        return answer

    def _run(self) -> None:
        url = None
        while not self._stop.is_set():
            url = url or self.url()
            if url is None:
                self._stop.wait(1.0)
                continue
            try:
                self.complete(url)
                with self._lock:
                    self.ok += 1
            except (OSError, ValueError):
                with self._lock:
                    self.failed += 1
                self._stop.wait(0.2)
