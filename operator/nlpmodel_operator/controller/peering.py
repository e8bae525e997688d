"""kopf peering objects: an operator told to use `--peering NAME` creates its peering object if missing.

kopf pauses a mandatory peering operator until the object exists, and a Helm chart cannot ship an
object of a CRD it installs in the same release (the first install fails to map the kind), so the
operator creates it itself: a ClusterKopfPeering when it watches the whole cluster, else a
KopfPeering in each watched namespace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

PEERING_GROUP: Final = "kopf.dev"
PEERING_VERSION: Final = "v1"


def peering_objects(name: str, namespaces: Sequence[str]) -> list[dict[str, Any]]:
    """The peering objects an operator watching `namespaces` (empty: the cluster) coordinates through."""
    api_version = f"{PEERING_GROUP}/{PEERING_VERSION}"
    if not namespaces:
        return [{"apiVersion": api_version, "kind": "ClusterKopfPeering", "metadata": {"name": name}}]
    return [
        {"apiVersion": api_version, "kind": "KopfPeering", "metadata": {"name": name, "namespace": ns}}
        for ns in namespaces
    ]


def ensure_peering_objects(
    api_client: client.ApiClient, name: str, namespaces: Sequence[str], logger: kopf.Logger
) -> None:
    """Create the missing peering objects; problems are logged (kopf then waits, as without us)."""
    api = client.CustomObjectsApi(api_client)
    for body in peering_objects(name, namespaces):
        namespace = body["metadata"].get("namespace")
        try:
            if namespace:
                api.create_namespaced_custom_object(
                    PEERING_GROUP, PEERING_VERSION, namespace, "kopfpeerings", body
                )
            else:
                api.create_cluster_custom_object(PEERING_GROUP, PEERING_VERSION, "clusterkopfpeerings", body)
            logger.info("created %s %s", body["kind"], name + (f" in {namespace}" if namespace else ""))
        except ApiException as exc:
            if exc.status == 409:
                continue  # it exists: the usual case after the first start
            logger.warning(
                "cannot create %s %s (HTTP %s): %s; kopf waits until it exists (are kopf's peering CRDs "
                "installed? the chart installs them with crds.enabled)",
                body["kind"],
                name,
                exc.status,
                exc.reason,
            )
