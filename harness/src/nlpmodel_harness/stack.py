"""The whole local stack in one context manager, for the demo and the benchmarks.

A real kube-apiserver + etcd + kube-controller-manager (the local plane), a real Prometheus, and the
operator as a separate process under the chart's identity: the ServiceAccount
``nlpmodel-system/nlpmodel-operator`` bound to the chart's ClusterRole rules
(``charts/nlpmodel-operator/files/clusterrole-rules.yaml``), authenticated with a TokenRequest token.
What a laptop lacks (KServe, the kubelet, the model servers) is played per namespace by
:class:`~nlpmodel_harness.standins.StandInControllers` and
:class:`~nlpmodel_harness.revision_servers.RevisionServers`::

    with LocalStack(work_dir) as stack:
        stack.apply_model(body)                      # create or replace, as admin
        with stack.namespace_players("team-a", "chat") as servers:
            servers.control(canary_revision, ttft_median=0.54)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from nlpmodel_operator.api import constants as c

from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_harness.operatorproc import OperatorProcess
from nlpmodel_harness.prometheus import PrometheusProcess
from nlpmodel_harness.rbac import grant_operator_role
from nlpmodel_harness.revision_servers import RevisionServers
from nlpmodel_harness.standins import StandInControllers

__all__ = ["OPERATOR_NAMESPACE", "OPERATOR_SERVICE_ACCOUNT", "LocalStack", "apply_model"]

# What `helm install nlpmodel-operator charts/nlpmodel-operator -n nlpmodel-system` names them.
OPERATOR_NAMESPACE: Final = "nlpmodel-system"
OPERATOR_SERVICE_ACCOUNT: Final = "nlpmodel-operator"
TOKEN_SECONDS: Final = 3 * 3600


# A replace that loses the race with a status write is retried this often (kubectl apply retries too).
APPLY_ATTEMPTS: Final = 5


def numbered_model(i: int, namespace: str) -> dict[str, Any]:
    """The `i`-th of many small NLPModels (an 8B AWQ model on one L4, the defaults otherwise): what
    the scale benchmark and the scale fault test create by the thousand."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": f"m{i:04d}", "namespace": namespace},
        "spec": {
            "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "quantization": {"method": "awq"},
            "resources": {"gpu": {"count": 1, "product": "nvidia-l4"}},
        },
    }


def apply_model(custom: client.CustomObjectsApi, body: dict[str, Any]) -> dict[str, Any]:
    """Create the NLPModel, or replace its spec (what `kubectl apply` does for a whole object).

    The replace is conditional on the resourceVersion just read; the operator's status writes move it
    too, so a conflict is read again and retried, as kubectl does."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    for attempt in range(APPLY_ATTEMPTS):
        try:
            current = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            created: dict[str, Any] = custom.create_namespaced_custom_object(
                c.GROUP, c.VERSION, ns, c.PLURAL, body
            )
            return created
        versioned = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
        }
        try:
            replaced: dict[str, Any] = custom.replace_namespaced_custom_object(
                c.GROUP, c.VERSION, ns, c.PLURAL, name, versioned
            )
            return replaced
        except ApiException as exc:
            if exc.status != 409 or attempt == APPLY_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def service_account_kubeconfig(
    admin: client.ApiClient, admin_kubeconfig: Path, namespace: str, name: str, dest: Path
) -> Path:
    """A kubeconfig for the ServiceAccount (a TokenRequest token), as a pod of it would authenticate."""
    core = client.CoreV1Api(admin)
    token = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": TOKEN_SECONDS}}
    ).status.token
    config = yaml.safe_load(admin_kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    dest.write_text(yaml.safe_dump(config))
    dest.chmod(0o600)
    return dest


class LocalStack:
    """Local plane + Prometheus + the operator (chart identity); stop() stops all of it, in order."""

    def __init__(
        self, work_dir: Path, *, operator_env: dict[str, str] | None = None, resync_seconds: float = 1.0
    ) -> None:
        self.work_dir = work_dir
        self.plane = LocalPlane(work_dir / "localplane")
        self.prometheus = PrometheusProcess(work_dir=work_dir / "prometheus")
        self._operator_env = operator_env or {}
        self._resync = resync_seconds
        self.operator: OperatorProcess | None = None
        self._admin: client.ApiClient | None = None
        self._stack = contextlib.ExitStack()
        self.server_pids: list[int] = []  # model-server stand-ins started by namespace_players
        self._plane_pids: dict[str, int] = {}

    @property
    def admin(self) -> client.ApiClient:
        if self._admin is None:
            raise RuntimeError("the stack is not started")
        return self._admin

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.admin)

    def start(self) -> LocalStack:
        try:
            self._stack.enter_context(self.plane)
            self._plane_pids = dict(self.plane.pids)
            self._stack.enter_context(self.prometheus)
            self._admin = self._stack.enter_context(contextlib.closing(self.plane.admin_client()))
            core = client.CoreV1Api(self._admin)
            self.create_namespace(OPERATOR_NAMESPACE)
            with contextlib.suppress(ApiException):  # 409: already there
                core.create_namespaced_service_account(
                    OPERATOR_NAMESPACE, {"metadata": {"name": OPERATOR_SERVICE_ACCOUNT}}
                )
            grant_operator_role(self._admin, service_account=(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT))
            kubeconfig = service_account_kubeconfig(
                self._admin,
                self.plane.admin_kubeconfig,
                OPERATOR_NAMESPACE,
                OPERATOR_SERVICE_ACCOUNT,
                self.work_dir / "operator-sa.kubeconfig",
            )
            env = {
                "NLPMODEL_PROMETHEUS_URL": self.prometheus.url,
                "NLPMODEL_SCRAPE_INTERVAL_SECONDS": "1",
                **self._operator_env,
            }
            self.operator = OperatorProcess(
                kubeconfig, self.work_dir / "operator.log", resync_seconds=self._resync, env=env
            )
            self._stack.enter_context(self.operator)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._stack.close()
        self._admin = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def create_namespace(self, name: str) -> None:
        with contextlib.suppress(ApiException):  # 409: already there
            client.CoreV1Api(self.admin).create_namespace({"metadata": {"name": name}})

    def apply_model(self, body: dict[str, Any]) -> dict[str, Any]:
        return apply_model(self.custom, body)

    @contextlib.contextmanager
    def namespace_players(
        self, namespace: str, model: str, log_dir: Path | None = None
    ) -> Iterator[RevisionServers]:
        """KServe and the kubelet for the namespace, and a model server per running revision of `model`."""
        servers = RevisionServers(self.admin, self.prometheus, namespace, model, log_dir or self.work_dir)
        try:
            with StandInControllers(self.admin, namespace), servers:
                yield servers
        finally:
            self.server_pids.extend(servers.pids)

    def pids(self) -> dict[str, list[int]]:
        """Every process the stack started (for a check that none is left)."""
        return {
            **{name: [pid] for name, pid in self._plane_pids.items()},
            "prometheus": list(self.prometheus.pids),
            "operator": list(self.operator.pids if self.operator else []),
            "model-servers": list(self.server_pids),
        }
