"""Kubernetes I/O for the operator: server-side apply, listing a model's children, deleting them.

Synchronous (the official client); the handlers call it through `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError, UnprocessibleEntityError

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.core import autoscaling, monitoring
from nlpmodel_operator.core.children import child_kinds
from nlpmodel_operator.core.conditions import MAX_EVENT_MESSAGE, clip
from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.reconcile import ChildRef
from nlpmodel_operator.core.resync import fingerprint

if TYPE_CHECKING:
    from nlpmodel_operator.controller.informer import ChildCache

# HorizontalPodAutoscalers are listed (and created) in one version only, the newest the server offers:
# a server offering two shows every HPA in both.
HPA_VERSIONS: tuple[str, ...] = ("autoscaling/v2", "autoscaling/v2beta2")


def api_message(exc: client.ApiException) -> str:
    """The API server's own message (from its Status body), else the HTTP reason."""
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or exc.reason or f"HTTP {exc.status}").strip()


# The server answers a listing with the objects' metadata only (meta.k8s.io/v1, Kubernetes 1.15+).
METADATA_LIST: Final = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


class MissingAPIError(Exception):
    """The cluster does not serve a kind we need (e.g. KServe is not installed)."""


def load_client(max_connections: int | None = None) -> client.ApiClient:
    """A client of the cluster the operator runs in (else of the kubeconfig's), keeping up to
    `max_connections` connections open (None: the client's default, 5 per CPU): one per request in
    flight, or each request beyond them opens a TLS connection of its own and throws it away."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    if max_connections is not None:
        configuration.connection_pool_maxsize = max_connections
    return client.ApiClient(configuration)


def informer_client(api_client: client.ApiClient, max_connections: int = 64) -> client.ApiClient:
    """A client of its own for the watches: each holds a connection for minutes, and in the shared
    pool they would leave the reconciles none."""
    configuration = copy.copy(api_client.configuration)
    configuration.connection_pool_maxsize = max_connections
    return client.ApiClient(configuration)


class Kube:
    # The client re-reads all of discovery on every lookup of a kind the server lacks; with optional
    # kinds (HTTPRoute, PodMonitor) asked for on each reconcile, that is several requests per model per
    # resync. A miss is remembered this long instead: a CRD installed later is seen within it.
    MISSING_KIND_TTL_S = 60.0

    def __init__(
        self,
        api_client: client.ApiClient,
        field_manager: str,
        clock: Callable[[], float] = time.monotonic,
        cache: ChildCache | None = None,
    ) -> None:
        self.dynamic = DynamicClient(api_client)
        self.field_manager = field_manager
        self._clock = clock
        # The children as the watches show them (controller.informer); None: LIST them every time.
        self.cache = cache
        # Per child the operator applied: (what it applied, the object's digest without its status
        # right after). An apply of the same again, to an object nobody changed since, is skipped:
        # it would change nothing, and 1,000 models must not cost 1,000 applies per reconcile round.
        self._applied: dict[tuple[str, str, str], tuple[str, str | None]] = {}
        self._applied_lock = threading.Lock()
        self._missing_until: dict[tuple[str, str], float] = {}
        # Reconciles run in threads, and the client's discovery cache is not thread-safe: a lookup that
        # misses re-reads discovery in place, and another thread reading meanwhile fails (KeyError).
        self._discovery = threading.Lock()

    def _resource(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        with self._discovery:
            if self._missing_until.get(key, 0.0) > self._clock():
                raise MissingAPIError(f"the cluster does not serve {kind} ({api_version})")
            try:
                resource = self.dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                self._missing_until[key] = self._clock() + self.MISSING_KIND_TTL_S
                raise MissingAPIError(f"the cluster does not serve {kind} ({api_version})") from None
            self._missing_until.pop(key, None)
        return resource

    def serves(self, api_version: str, kind: str) -> bool:
        try:
            self._resource(api_version, kind)
        except MissingAPIError:
            return False
        return True

    def serves_pod_monitors(self) -> bool:
        return self.serves(monitoring.API_VERSION, monitoring.KIND)

    def hpa_api_version(self) -> str:
        """The newest HorizontalPodAutoscaler version the server offers (v2 from Kubernetes 1.23)."""
        return next((v for v in HPA_VERSIONS if self.serves(v, autoscaling.HPA_KIND)), HPA_VERSIONS[0])

    def served_child_kinds(self) -> list[ChildKind]:
        """The child kinds the registries declare that this cluster serves (the HPA in the one version
        it is listed in here)."""
        served = []
        for declared in child_kinds():
            kind = declared
            if kind.kind == autoscaling.HPA_KIND:
                kind = ChildKind(self.hpa_api_version(), kind.kind, kind.plural, kind.watched)
            if self.serves(kind.api_version, kind.kind):
                served.append(kind)
        return served

    def scaling_support(self, prometheus_url: str | None) -> autoscaling.ScalingSupport:
        return autoscaling.ScalingSupport(
            hpa_api_version=self.hpa_api_version(),
            keda=self.serves(autoscaling.KEDA_API_VERSION, autoscaling.KEDA_KIND),
            prometheus_url=prometheus_url,
        )

    def apply(self, obj: Mapping[str, Any], owner: Mapping[str, Any]) -> dict[str, Any] | None:
        """Server-side apply with an owner reference to the NLPModel (cascading deletion). Returns the
        object as the server answered, or None when the apply was skipped (see `_applied`)."""
        body = copy.deepcopy(dict(obj))
        meta = owner["metadata"]
        body["metadata"]["ownerReferences"] = [
            {
                "apiVersion": c.API_VERSION,
                "kind": c.KIND,
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        namespace = body["metadata"].get("namespace") or ""
        key = (namespace, body["kind"], body["metadata"]["name"])
        wanted = fingerprint(body)
        if self.cache is not None:
            current = self.cache.spec_digest(*key)
            with self._applied_lock:
                done = self._applied.get(key)
            if current is not None and done == (wanted, current):
                return None  # applied before, and nobody changed it since
        resource = self._resource(body["apiVersion"], body["kind"])
        result = resource.server_side_apply(
            body=body,
            namespace=body["metadata"].get("namespace"),
            field_manager=self.field_manager,
            force_conflicts=True,
            serialize=False,
        )
        applied: dict[str, Any] = json.loads(result.data)
        if self.cache is not None:
            self.cache.put(applied)  # written through: the next reconcile need not wait for the event
            with self._applied_lock:
                self._applied[key] = (wanted, self.cache.spec_digest(*key))
        return applied

    def _written(self, response: Any) -> None:
        """Put the answer to a write (a patch, a hand-over) into the cache."""
        if self.cache is not None:
            with contextlib.suppress(ValueError, AttributeError):
                self.cache.put(json.loads(response.data))

    def _list_children(
        self, kind: ChildKind, api_version: str, namespace: str, model: str, fresh: bool
    ) -> list[dict[str, Any]]:
        # resourceVersion "0": served from the API server's watch cache rather than a quorum read of
        # every object of the kind in the namespace from etcd (O(models) per list). It may lag our own
        # last write by the cache's delay; every decision is idempotent and waits for what it has not
        # seen yet, and the event of that write reconciles the model again. A `fresh` read (a rollout
        # in flight, re-read by the resync: the safety net under a silent watch) asks etcd.
        resource = self._resource(api_version, kind.kind)
        selector = f"{c.LABEL_MODEL}={model}"
        version = None if fresh else "0"
        if version is None:
            response = resource.get(namespace=namespace, label_selector=selector, serialize=False)
        else:
            response = resource.get(
                namespace=namespace, label_selector=selector, resource_version=version, serialize=False
            )
        items: list[dict[str, Any]] = json.loads(response.data).get("items") or []
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind.kind)
        return items

    def children(
        self, namespace: str, model: str, owner_uid: str, fresh: bool = False
    ) -> list[dict[str, Any]]:
        """Objects labelled as this model's and owned by it (never someone else's look-alikes): from
        the cache for every kind it holds (unless `fresh`), listed for the others."""
        found: list[dict[str, Any]] = []
        cached = self.cache.children(namespace, model) if self.cache is not None and not fresh else []
        # Every kind the registries declare (to find leftovers of old revisions too); the HPA in the
        # one version it is served in here.
        for child in child_kinds():
            kind = child.kind
            api_version = self.hpa_api_version() if kind == autoscaling.HPA_KIND else child.api_version
            if not self.serves(api_version, kind):
                continue
            if self.cache is not None and not fresh and self.cache.synced(kind):
                items = [o for o in cached if o.get("kind") == kind]
            else:
                items = self._list_children(child, api_version, namespace, model, fresh)
                if self.cache is not None and fresh:
                    self.cache.replace_model_kind(namespace, model, kind, items)
            for item in items:
                owners = item.get("metadata", {}).get("ownerReferences") or []
                if any(o.get("uid") == owner_uid for o in owners):
                    found.append(item)
        return found

    def hand_over_replicas(self, ref: ChildRef, namespace: str, replicas: int) -> None:
        """Apply only spec.replicas as `<manager>-handover` (see core.records.HandOver)."""
        body = {
            "apiVersion": ref.api_version,
            "kind": ref.kind,
            "metadata": {"name": ref.name, "namespace": namespace},
            "spec": {"replicas": replicas},
        }
        response = self._resource(ref.api_version, ref.kind).server_side_apply(
            body=body,
            namespace=namespace,
            field_manager=f"{self.field_manager}-handover",
            force_conflicts=True,
            serialize=False,
        )
        self._written(response)

    def patch(self, ref: ChildRef, namespace: str, body: Mapping[str, Any]) -> None:
        response = self._resource(ref.api_version, ref.kind).patch(
            body=dict(body),
            name=ref.name,
            namespace=namespace,
            content_type="application/merge-patch+json",
            field_manager=self.field_manager,
            serialize=False,
        )
        self._written(response)

    def clear_command(self, model: Mapping[str, Any], command: str) -> dict[str, Any] | None:
        """Remove the command annotation, but only if it still says `command` (a newer one stays).
        The model as the server answered (None: another command was set meanwhile)."""
        key = c.ANNOTATION_COMMAND.replace("~", "~0").replace("/", "~1")
        patch = [
            {"op": "test", "path": f"/metadata/annotations/{key}", "value": command},
            {"op": "remove", "path": f"/metadata/annotations/{key}"},
        ]
        meta = model["metadata"]
        # A failed test (422): someone set another command meanwhile; it is handled next time.
        try:
            response = self._resource(c.API_VERSION, c.KIND).patch(
                body=patch,
                name=meta["name"],
                namespace=meta["namespace"],
                content_type="application/json-patch+json",
                serialize=False,
            )
        except UnprocessibleEntityError:
            return None
        cleared: dict[str, Any] = json.loads(response.data)
        return cleared

    def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the model's status; the model as the server answered."""
        resource = self._resource(c.API_VERSION, c.KIND)
        response = resource.status.patch(
            body={"status": dict(patch)},
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
            serialize=False,
        )
        written: dict[str, Any] = json.loads(response.data)
        return written

    def read_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's data (an evaluation dataset); None when there is no such ConfigMap."""
        try:
            response = self._resource("v1", "ConfigMap").get(name=name, namespace=namespace, serialize=False)
        except NotFoundError:
            return None
        found: dict[str, Any] = json.loads(response.data)
        return {str(k): str(v) for k, v in (found.get("data") or {}).items()}

    def get_model(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            response = self._resource(c.API_VERSION, c.KIND).get(
                name=name, namespace=namespace, serialize=False
            )
        except NotFoundError:
            return None
        found: dict[str, Any] = json.loads(response.data)
        return found

    def list_models(self, namespaces: tuple[str, ...], metadata_only: bool = False) -> list[dict[str, Any]]:
        """The models, decoded as plain JSON (the dynamic client's objects cost a 1,000-model listing
        seconds of CPU). ``metadata_only``: each model's metadata alone (a PartialObjectMetadataList),
        enough for a resync round to tell which models changed at a fraction of the full listing's
        size; decoding the full listing every round was most of an idle operator's CPU."""
        resource = self._resource(c.API_VERSION, c.KIND)
        scopes: tuple[str | None, ...] = namespaces or (None,)
        headers = {"Accept": METADATA_LIST} if metadata_only else {}
        items: list[dict[str, Any]] = []
        for namespace in scopes:
            response = resource.get(namespace=namespace, serialize=False, header_params=headers)
            listed = json.loads(response.data).get("items") or []
            items.extend([item["metadata"] for item in listed] if metadata_only else listed)
        return items

    def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str, now: str) -> None:
        meta = obj["metadata"]
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", c.API_VERSION),
                "kind": obj.get("kind", c.KIND),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": type_,
            "reason": reason,
            "message": clip(message, MAX_EVENT_MESSAGE),
            "source": {"component": self.field_manager},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self.field_manager,
        }
        self._resource("v1", "Event").create(body=event, namespace=meta["namespace"])

    def delete(self, ref: ChildRef, namespace: str) -> None:
        with contextlib.suppress(NotFoundError):  # already gone: the goal is reached
            self._resource(ref.api_version, ref.kind).delete(
                name=ref.name, namespace=namespace, body={"propagationPolicy": "Background"}
            )
        if self.cache is not None:
            self.cache.remove(namespace, ref.kind, ref.name)
        with self._applied_lock:
            self._applied.pop((namespace, ref.kind, ref.name), None)
