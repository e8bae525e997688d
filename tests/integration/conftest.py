"""Integration tier: tests against the local control plane (real etcd + kube-apiserver + controllers).

Every test under tests/integration is marked `integration` (deselect with `-m "not integration"`).
The binaries are made sure of once, before any test runs, with output shown live: the first run on a
machine may build them (~6 minutes), which must not count against a single test's timeout.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Cluster, OperatorProcess, grant_operator_role, run_operator
from nlpmodel_harness.localplane import LocalPlane, pid_alive
from nlpmodel_harness.localplane_build import ensure_binaries
from nlpmodel_harness.prometheus import PrometheusProcess

_HERE = Path(__file__).resolve().parent

# The API server's audit log records who wrote what when it was a ServiceAccount (the operator as the
# chart runs it): the replica tests tell two operators apart by it. Nothing else is logged.
SERVICE_ACCOUNT_WRITES = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "userGroups": ["system:serviceaccounts"],
            "verbs": ["create", "update", "patch", "delete", "deletecollection"],
        },
        {"level": "None"},
    ],
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Hooks in a conftest see the whole session's items: mark only the ones below this directory.
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if not any(item.get_closest_marker("integration") for item in session.items):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        ensure_binaries()
        return
    with capture.global_and_fixture_disabled():
        ensure_binaries()


@pytest.fixture(scope="session")
def localplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlane]:
    """A started local control plane with our CRDs and the upstream CRDs installed.

    Shared by the whole session: tests work in their own namespaces and remove the cluster-scoped
    objects they create. Logs stay in the session's tmp dir (`<tmp>/localplane0/logs/`).
    """
    plane = LocalPlane(tmp_path_factory.mktemp("localplane"), audit_policy=SERVICE_ACCOUNT_WRITES)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


# -- the operator under test ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(localplane: LocalPlane) -> Iterator[Cluster]:
    admin = localplane.admin_client()
    grant_operator_role(admin)
    yield Cluster(admin)
    admin.close()


@pytest.fixture(scope="module")
def operator(
    localplane: LocalPlane, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    yield from run_operator(localplane, tmp_path_factory)


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusProcess]:
    """A real Prometheus for the module (scraping 1 s); modules point their operator at it."""
    with PrometheusProcess() as prom:
        yield prom
    assert not [pid for pid in prom.pids if pid_alive(pid)]


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards so later tests' operators do not work on it."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(name)
    yield name
    cluster.core.delete_namespace(name)
