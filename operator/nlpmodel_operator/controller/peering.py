"""kopf peering objects: an operator told to use `--peering NAME` creates its peering object if missing.

kopf pauses a mandatory peering operator until the object exists, and a Helm chart cannot ship an
object of a CRD it installs in the same release (the first install fails to map the kind), so the
operator creates it itself: a ClusterKopfPeering when it watches the whole cluster, else a
KopfPeering in each watched namespace.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from nlpmodel_operator.api.units import parse_time

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


# -- one active replica -------------------------------------------------------------------------------
#
# kopf pauses the watches of an operator that sees a live peer of higher priority, and pauses *all*
# operators of the same priority. Two replicas of the same chart would therefore both pause (same
# default priority), and the resync loop, which is ours and not kopf's, would keep running in both.
# So: every replica gets its own priority, older replicas higher (an upgrading pod waits for the old
# one to go instead of taking over while it still acts), and the resync loop applies kopf's own rule
# to the peering objects before each round.


def default_priority(started_at: float) -> int:
    """Older wins: the replica that started first has the highest priority (ms resolution)."""
    return -int(started_at * 1000)


def operator_identity() -> str:
    """kopf's peering identity: the pod's name (POD_ID) in a cluster, else user@host/pid."""
    pod = os.environ.get("POD_ID")
    return pod if pod else f"{getpass.getuser()}@{socket.gethostname()}/{os.getpid()}"


def _alive(info: Mapping[str, Any], now: datetime) -> bool:
    seen = parse_time(info.get("lastseen"))
    if seen is None:
        return False
    return seen + timedelta(seconds=int(info.get("lifetime", 60))) > now


def leads(peers: Mapping[str, Any], identity: str, priority: int, now: datetime) -> bool:
    """kopf's rule, as kopf applies it to a peering object's status (peer id → priority, lastseen,
    lifetime): act only when our own entry is alive and no other live peer has the same or a higher
    priority."""
    ours = peers.get(identity)
    if not isinstance(ours, Mapping) or not _alive(ours, now):
        return False  # not joined yet (kopf keeps a new operator paused until it has seen the peers)
    return not any(
        isinstance(info, Mapping) and _alive(info, now) and int(info.get("priority", 0)) >= priority
        for peer, info in peers.items()
        if peer != identity
    )


class PeeringGate:
    """Whether this replica is the one that acts, read from its peering objects."""

    def __init__(
        self,
        api_client: client.ApiClient,
        name: str,
        namespaces: Sequence[str],
        identity: str,
        priority: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = client.CustomObjectsApi(api_client)
        self.name, self.namespaces, self.identity, self.priority = name, tuple(namespaces), identity, priority
        self.clock = clock

    def leading(self) -> bool:
        """True only if it leads in every peering object it joined; any doubt (an API error) is a no."""
        try:
            if not self.namespaces:
                objects = [
                    self.api.get_cluster_custom_object(
                        PEERING_GROUP, PEERING_VERSION, "clusterkopfpeerings", self.name
                    )
                ]
            else:
                objects = [
                    self.api.get_namespaced_custom_object(
                        PEERING_GROUP, PEERING_VERSION, ns, "kopfpeerings", self.name
                    )
                    for ns in self.namespaces
                ]
        except (ApiException, HTTPError):
            return False
        now = self.clock()
        return all(leads(obj.get("status") or {}, self.identity, self.priority, now) for obj in objects)
