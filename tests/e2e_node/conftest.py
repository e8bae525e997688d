"""Real-pods tier: the operator, its chart and our transformers runtime on a real kubelet node.

One cluster for the tier's real-pods tests (a module fixture, :class:`nlpmodel_harness.nodestack.NodeStack`): the
local control plane with a node (kube-scheduler, containerd, kubelet, kube-proxy, CNI bridge), our two
images built from their Dockerfiles and imported into containerd (no registry), tiny models built from
configs on a hostPath volume claimed as `models`, the chart installed with `helm install` (the operator
runs in a pod under its ServiceAccount), and a real Prometheus fed by the PodMonitor stand-in.

Every test under tests/e2e_node is marked `e2e_node`. Needs root and Linux; the first run on a machine
builds the base root filesystem, the images and the models (e2e/README.md); all are cached per machine.
Only one node may run per machine (the bridge, iptables chains and cgroups are global).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nodecluster import MODEL_NAMESPACE, NodeCluster

from nlpmodel_harness.nodestack import NodeStack, prepare

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.e2e_node)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The slow, cached parts before any test runs, with their output shown live (a first run on a
    machine builds for minutes, which must not count against one test's timeout)."""
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


# Module scope: all tests on the shared cluster live in test_real_pods.py, and the node (its pods, its CPU)
# must be gone before the tiers that run after this one in the same `pytest tests` session.
@pytest.fixture(scope="module")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    with NodeStack(tmp_path_factory.mktemp("node-cluster"), [MODEL_NAMESPACE]) as stack:
        yield NodeCluster(stack)
