"""The operator's RBAC for development clusters: the chart's ClusterRole rules bound to its user."""

from __future__ import annotations

from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from nlpmodel_harness.checkout import CHART

# One source: the Helm chart renders the same file into its ClusterRole.
RBAC_RULES = CHART / "files" / "clusterrole-rules.yaml"
OPERATOR_USER = "nlpmodel-operator"
ROLE_NAME = "nlpmodel-operator"


def operator_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = yaml.safe_load(RBAC_RULES.read_text())
    return rules


def grant_operator_role(
    admin: client.ApiClient, user: str = OPERATOR_USER, *, service_account: tuple[str, str] | None = None
) -> None:
    """Create (or replace) the ClusterRole and bind `user` to it, as the admin; or, given
    `service_account` (namespace, name), bind that ServiceAccount instead (as the chart does)."""
    subject: dict[str, str] = (
        {"kind": "ServiceAccount", "namespace": service_account[0], "name": service_account[1]}
        if service_account is not None
        else {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
    )
    rbac = client.RbacAuthorizationV1Api(admin)
    role: dict[str, Any] = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": ROLE_NAME},
        "rules": operator_rules(),
    }
    binding: dict[str, Any] = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": ROLE_NAME},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE_NAME},
        "subjects": [subject],
    }
    for create, replace, body in (
        (rbac.create_cluster_role, rbac.replace_cluster_role, role),
        (rbac.create_cluster_role_binding, rbac.replace_cluster_role_binding, binding),
    ):
        try:
            create(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            replace(body["metadata"]["name"], body)
