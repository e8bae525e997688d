"""Real-pods tier: the operator, its chart and our transformers runtime on a real kubelet node.

One cluster for the whole tier (a session fixture): the local control plane with a node
(`LocalPlane(node=True)`: kube-scheduler, containerd, kubelet, kube-proxy, CNI bridge), our two images
built from their Dockerfiles and imported into containerd (no registry), tiny models built from configs
on a hostPath volume bound to a PersistentVolumeClaim, the chart installed with `helm install` (the
operator runs in a pod under its ServiceAccount), and a real Prometheus fed by the PodMonitor stand-in.

Every test under tests/e2e_node is marked `e2e_node`. Needs root and Linux; the first run on a machine
builds the Kubernetes binaries, the base root filesystem, the images and the models (see e2e/README.md);
all are cached per machine. Only one node may run per machine (the bridge, iptables and cgroups are global).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from nodecluster import (
    ALERT_RULES,
    MODEL_NAMESPACE,
    RELEASE,
    RELEASE_NAMESPACE,
    NodeCluster,
    helm_install,
    install_models_volume,
    prepare,
)

from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_harness.node import host_ip
from nlpmodel_harness.podmonitors import PodMonitorScraper
from nlpmodel_harness.prometheus import PrometheusProcess

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.e2e_node)


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if not any(item.get_closest_marker("e2e_node") for item in session.items):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        prepare()
        return
    with capture.global_and_fixture_disabled():
        prepare()


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    operator_image, runtime_image = prepare()
    work = tmp_path_factory.mktemp("node-cluster")
    plane = LocalPlane(work / "plane", node=True)
    plane.start()
    try:
        for image in (operator_image, runtime_image):
            plane.import_image(image)
        admin = plane.admin_client()
        client.CoreV1Api(admin).create_namespace({"metadata": {"name": MODEL_NAMESPACE}})
        install_models_volume(admin)
        address = host_ip()  # the operator's pod reaches Prometheus on the host
        with PrometheusProcess(
            work_dir=work / "prometheus", listen_host=address, rule_files=[ALERT_RULES]
        ) as prometheus:
            helm_install(plane, prometheus.url, work)
            scraper = PodMonitorScraper(
                admin,
                prometheus,
                [MODEL_NAMESPACE],
                operator_service=(RELEASE_NAMESPACE, f"{RELEASE}-metrics"),
            )
            with scraper:
                yield NodeCluster(plane, prometheus, admin, work)
        admin.close()
    finally:
        plane.stop()
