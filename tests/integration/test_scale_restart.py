"""1,000 models created at once, and kube-apiserver restarted while they are: every model ends Ready
with exactly its children, none twice and none missing.

The operator reads children from its own watches (`controller.informer`); a restart cuts every watch
and the models created meanwhile are only seen by the watches' resumption (or a re-listing). A
restart that lost an event would leave a model Pending forever; one that re-applied from a stale cache
could leave a duplicate or a stray child. This module runs its own local plane: a thousand models are
more than the shared one should carry for the modules after it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from harness import OperatorProcess, run_operator, wait_for
from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_harness.rbac import grant_operator_role
from nlpmodel_harness.stack import numbered_model
from nlpmodel_harness.standins import ReadyOnSight
from nlpmodel_operator.api import constants as c

MODELS = 1000
NAMESPACE = "thousand"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlane]:
    own = LocalPlane(tmp_path_factory.mktemp("thousand-plane"))
    own.start()
    try:
        admin = own.admin_client()
        grant_operator_role(admin)
        client.CoreV1Api(admin).create_namespace({"metadata": {"name": NAMESPACE}})
        yield own
    finally:
        own.stop()


@pytest.fixture(scope="module")
def operator(plane: LocalPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    # Stops it, then checks its log: no crash (denials are expected right after the restart).
    yield from run_operator(plane, tmp_path_factory, restarts_apiserver=True)


def nlpmodel(i: int) -> dict[str, Any]:
    return numbered_model(i, NAMESPACE)


def create_all(plane: LocalPlane, indices: range) -> None:
    """Create these models as the admin, riding out the API server's restart."""
    api = client.CustomObjectsApi(plane.admin_client())
    for i in indices:
        while True:
            try:
                api.create_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, c.PLURAL, nlpmodel(i))
                break
            except ApiException as exc:
                if exc.status == 409:
                    break  # created before the connection broke
                if exc.status not in (500, 503, 504):
                    raise
            except (HTTPError, OSError):
                pass
            time.sleep(0.2)


def listed(api: client.CustomObjectsApi, group: str, version: str, plural: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.list_namespaced_custom_object(group, version, NAMESPACE, plural)[
        "items"
    ]
    return items


def test_a_thousand_models_all_ready_through_an_apiserver_restart(
    plane: LocalPlane, operator: OperatorProcess
) -> None:
    admin = plane.admin_client()
    custom = client.CustomObjectsApi(admin)
    try:
        with ReadyOnSight(admin, NAMESPACE):
            creators = [
                threading.Thread(target=create_all, args=(plane, range(k, MODELS, 4)), daemon=True)
                for k in range(4)
            ]
            for thread in creators:
                thread.start()
            wait_for(
                "a third of the models created",
                lambda: len(listed(custom, c.GROUP, c.VERSION, c.PLURAL)) >= MODELS // 3,
                120,
            )
            plane.restart_apiserver(down_s=3)
            for thread in creators:
                thread.join(300)
            assert len(listed(custom, c.GROUP, c.VERSION, c.PLURAL)) == MODELS

            def ready() -> int:
                models = listed(custom, c.GROUP, c.VERSION, c.PLURAL)
                return sum(1 for m in models if (m.get("status") or {}).get("phase") == "Ready")

            # Generous: this machine's two cores carry the API server, etcd, the operator and the test.
            wait_for(f"all {MODELS} models Ready", lambda: ready() == MODELS, 600, every_s=2)
        # Exactly the children each model should have: one InferenceService of its revision, one route.
        isvcs = Counter(
            i["metadata"]["labels"][c.LABEL_MODEL]
            for i in listed(custom, "serving.kserve.io", "v1beta1", "inferenceservices")
        )
        routes = Counter(
            r["metadata"]["labels"][c.LABEL_MODEL]
            for r in listed(custom, "gateway.networking.k8s.io", "v1", "httproutes")
        )
        names = {f"m{i:04d}" for i in range(MODELS)}
        assert set(isvcs) == names
        assert set(isvcs.values()) == {1}
        assert set(routes) == names
        assert set(routes.values()) == {1}
        assert operator.alive(), operator.log_tail()
    finally:
        admin.close()
