"""The operator's view of every model's children, kept by watches instead of read by LISTs.

What controller-runtime's informers give a Go operator, for the part we need: one LIST and then one
watch per child kind (the registries say which, `core.children`), an index of the objects by the model
they belong to, and the operator's own writes put into it as the API server answers them, so that a
reconcile reads its children from memory, never waits for the echo of its own apply, and only writes
reach the API server. kopf keeps the NLPModel handlers; it has no such cache for other kinds.

Correctness before speed:

* **Nothing is read from a kind before its first LIST is in** (`synced`); until then `Kube.children`
  LISTs that kind as before. The operator starts acting only once every served kind is synced.
* **A watch that expires (410 Gone) re-lists** and reconciles the models whose children changed in
  the gap, whatever changed (added, changed, gone).
* **A watch that goes silent is noticed**: every watch asks the server to end it after
  `WATCH_SECONDS`; one that neither delivers nor ends by then (plus a grace) is taken for dead and the
  kind is re-listed. Connection errors (an API server restart) resume the watch from the last
  resourceVersion, with backoff.
* **Stored compactly**: each object as its JSON bytes without `managedFields` entries other than the
  operator's own Apply (the one thing `core.observe` reads there) — what a model costs in memory must
  not be several copies of its InferenceService as Python dicts.
* **Older never overwrites newer**: an event or a listing that carries an object older than what the
  operator's own write left (a resourceVersion below it) is dropped for that object.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError, ReadTimeoutError

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.resync import fingerprint

LOG = logging.getLogger("nlpmodel.informer")

ObjectKey = tuple[str, str, str]  # (namespace, kind, name)
ModelKey = tuple[str, str]  # (namespace, model)
# Called (from an informer's thread) when a model's child was added, changed or went: the model, the
# kind, and whether what changed is more than its status (a changed status matters only for the kinds
# whose state the model reports, `ChildKind.watched`).
OnChange = Callable[[ModelKey, ChildKind, bool], None]

# How long the server keeps a watch open before it ends it (the client then resumes from the last
# resourceVersion, which costs no LIST); a watch silent for longer than this plus the grace is dead.
WATCH_SECONDS = 240
SILENCE_GRACE_SECONDS = 20
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0)


def _resource_version(obj: Mapping[str, Any]) -> int | None:
    """resourceVersion as a number where the server's is one (etcd's revisions are: every server we
    support); None where it is not, which disables the older-than check for that object."""
    value = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _model_owned(obj: Mapping[str, Any]) -> bool:
    """Whether an NLPModel owns `obj` (KServe's own Deployments carry the model label too, but they
    are the InferenceService's, not the model's children)."""
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(o.get("kind") == c.KIND and o.get("apiVersion") == c.API_VERSION for o in owners)


def _without_status(obj: Mapping[str, Any]) -> str:
    """A digest of everything but the status (and what every write changes)."""
    return fingerprint({k: v for k, v in obj.items() if k != "status"})


@dataclass
class _Entry:
    data: bytes  # the compact JSON of the object as stored
    resource_version: int | None
    spec_digest: str  # everything but the status, as a digest: tells a status-only change apart
    digest: str  # the whole object (see core.resync.fingerprint): tells an echo apart


@dataclass
class ChildCache:
    """Every model's children, indexed by model; thread-safe (informers and reconciles write it)."""

    field_manager: str
    # The namespaces watched ("" alone: the whole cluster); a kind is synced once each is listed.
    scopes: tuple[str, ...] = ("",)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _objects: dict[ObjectKey, _Entry] = field(default_factory=dict)
    _model_of: dict[ObjectKey, ModelKey] = field(default_factory=dict)
    _by_model: dict[ModelKey, set[ObjectKey]] = field(default_factory=dict)
    _synced: set[tuple[str, str]] = field(default_factory=set)  # (kind, scope) whose LIST is in

    # ----------------------------------------------------------------------------------- reading

    def synced(self, kind: str) -> bool:
        with self._lock:
            return all((kind, scope) in self._synced for scope in self.scopes)

    def children(self, namespace: str, model: str) -> list[dict[str, Any]]:
        """The model's stored children (of the synced kinds), decoded afresh (callers may change them)."""
        with self._lock:
            keys = list(self._by_model.get((namespace, model), ()))
            blobs = [self._objects[k].data for k in keys if k in self._objects]
        return [json.loads(blob) for blob in blobs]

    def get(self, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._objects.get((namespace, kind, name))
        return json.loads(entry.data) if entry is not None else None

    def spec_digest(self, namespace: str, kind: str, name: str) -> str | None:
        with self._lock:
            entry = self._objects.get((namespace, kind, name))
        return entry.spec_digest if entry is not None else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    # ----------------------------------------------------------------------------------- writing

    def _compact(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = dict(obj.get("metadata") or {})
        # managedFields are most of a small object's bytes; the operator reads only whether its own
        # Apply owns spec.replicas (core.observe.applies_replicas).
        ours = [
            e
            for e in meta.get("managedFields") or []
            if e.get("manager") == self.field_manager and e.get("operation") == "Apply"
        ]
        if ours:
            meta["managedFields"] = [{k: v for k, v in e.items() if k != "time"} for e in ours]
        else:
            meta.pop("managedFields", None)
        return {**obj, "metadata": meta}

    def put(self, obj: Mapping[str, Any]) -> tuple[ModelKey, bool] | None:
        """Store `obj` (from a watch, a listing, or the answer to our own write). Returns its model and
        whether more than its status changed, or None when nothing changed (or `obj` is older than
        what is stored, or belongs to no model)."""
        meta = obj.get("metadata") or {}
        model = (meta.get("labels") or {}).get(c.LABEL_MODEL)
        namespace, kind, name = meta.get("namespace") or "", obj.get("kind") or "", meta.get("name") or ""
        if not model or not kind or not _model_owned(obj):
            return None
        compact = self._compact(obj)
        entry = _Entry(
            json.dumps(compact, separators=(",", ":")).encode(),
            _resource_version(obj),
            _without_status(compact),
            fingerprint(compact),
        )
        key, owner = (namespace, kind, name), (namespace, model)
        with self._lock:
            before = self._objects.get(key)
            if before is not None:
                if (
                    before.resource_version is not None
                    and entry.resource_version is not None
                    and entry.resource_version < before.resource_version
                ):
                    return None  # older than what we hold (our own write got here first)
                if before.digest == entry.digest:
                    before.resource_version = entry.resource_version
                    return None  # an echo: nothing but the resourceVersion (or times) changed
            self._objects[key] = entry
            previous_owner = self._model_of.get(key)
            if previous_owner is not None and previous_owner != owner:
                self._by_model.get(previous_owner, set()).discard(key)
            self._model_of[key] = owner
            self._by_model.setdefault(owner, set()).add(key)
        return owner, before is None or before.spec_digest != entry.spec_digest

    def remove(self, namespace: str, kind: str, name: str) -> ModelKey | None:
        """Forget an object (deleted); returns its model, or None if it was not stored."""
        key = (namespace, kind, name)
        with self._lock:
            if self._objects.pop(key, None) is None:
                return None
            owner = self._model_of.pop(key)
            keys = self._by_model.get(owner)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_model[owner]
            return owner

    def replace_kind(
        self, kind: str, scope: str, objects: list[dict[str, Any]]
    ) -> list[tuple[ModelKey, bool]]:
        """A LIST of every object of `kind` in `scope` (a namespace, "" for all): store it as the truth
        (what is not in it is gone) and mark it synced. Returns each model whose children changed, and
        whether beyond their status."""
        changed: list[tuple[ModelKey, bool]] = []
        listed: set[ObjectKey] = set()
        for obj in objects:
            meta = obj.get("metadata") or {}
            listed.add((meta.get("namespace") or "", kind, meta.get("name") or ""))
            outcome = self.put(obj)
            if outcome is not None:
                changed.append(outcome)
        with self._lock:
            gone = [k for k in self._objects if k[1] == kind and scope in ("", k[0]) and k not in listed]
        for namespace, _, name in gone:
            owner = self.remove(namespace, kind, name)
            if owner is not None:
                changed.append((owner, True))
        with self._lock:
            self._synced.add((kind, scope))
        return changed

    def replace_model_kind(
        self, namespace: str, model: str, kind: str, objects: list[dict[str, Any]]
    ) -> None:
        """A fresh LIST of one model's objects of `kind`: the truth for those (a silent watch missed
        what differs)."""
        listed = {(namespace, kind, (o.get("metadata") or {}).get("name") or "") for o in objects}
        for obj in objects:
            self.put(obj)
        with self._lock:
            gone = [k for k in self._by_model.get((namespace, model), ()) if k[1] == kind and k not in listed]
        for key in gone:
            self.remove(*key)


class _SilentWatchError(Exception):
    """A watch neither delivered nor ended within its timeout and the grace."""


class _GoneError(Exception):
    """The resourceVersion to resume from has been compacted away (410 Gone)."""


class KindInformer:
    """LIST once, then watch, one kind in one namespace ("": all of them); in a thread of its own."""

    def __init__(
        self,
        api_client: client.ApiClient,
        kind: ChildKind,
        scope: str,
        cache: ChildCache,
        on_change: OnChange,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        self.api_client = api_client
        self.kind = kind
        self.scope = scope
        self.cache = cache
        self.on_change = on_change
        self.watch_seconds = watch_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"informer-{kind.kind}-{scope or 'all'}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    # --------------------------------------------------------------------------------------- I/O

    @property
    def path(self) -> str:
        k = self.kind
        base = f"/api/{k.version}" if not k.group else f"/apis/{k.group}/{k.version}"
        return f"{base}/namespaces/{self.scope}/{k.plural}" if self.scope else f"{base}/{k.plural}"

    def _request(self, path: str, query: list[tuple[str, str]], read_timeout_s: float) -> Any:
        method, url, headers, body, post = self.api_client.param_serialize(
            "GET",
            path,
            query_params=[("labelSelector", c.LABEL_MODEL), *query],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(
            method,
            url,
            header_params=headers,
            body=body,
            post_params=post,
            _request_timeout=(10, read_timeout_s),
        )
        raw = response.response
        if not 200 <= raw.status <= 299:
            data = raw.data
            raw.release_conn()
            reason = data.decode(errors="replace")[:500] if data else raw.reason
            raise ApiException(status=raw.status, reason=reason)
        return raw

    def _list(self) -> tuple[list[dict[str, Any]], str]:
        """Every object of the kind with the model label, from the API server's watch cache
        (resourceVersion 0), and the resourceVersion to watch from."""
        raw = self._request(self.path, [("resourceVersion", "0")], 60)
        try:
            listed = json.loads(raw.data)
        finally:
            raw.release_conn()
        objects = listed.get("items") or []
        for item in objects:
            item.setdefault("apiVersion", self.kind.api_version)
            item.setdefault("kind", self.kind.kind)
        return objects, str((listed.get("metadata") or {}).get("resourceVersion") or "0")

    def _events(self, resource_version: str) -> Iterator[dict[str, Any]]:
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(self.watch_seconds)),
        ]
        raw = self._request(self.path, query, self.watch_seconds + SILENCE_GRACE_SECONDS)
        try:
            buffer = b""
            for chunk in raw.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
                if self._stop.is_set():
                    return
        except ReadTimeoutError:
            raise _SilentWatchError from None
        finally:
            with contextlib.suppress(Exception):
                raw.release_conn()

    # ------------------------------------------------------------------------------------- loop

    def _notify(self, changes: list[tuple[ModelKey, bool]]) -> None:
        for model, beyond_status in changes:
            self.on_change(model, self.kind, beyond_status)

    def relist(self) -> str:
        objects, resource_version = self._list()
        self._notify(self.cache.replace_kind(self.kind.kind, self.scope, objects))
        return resource_version

    def _watch_once(self, resource_version: str) -> str:
        """Watch from `resource_version` until the server ends the watch; the last resourceVersion
        seen (to resume from)."""
        for event in self._events(resource_version):
            kind_, obj = event.get("type"), event.get("object") or {}
            if kind_ == "ERROR":
                if obj.get("code") == 410:
                    raise _GoneError
                raise ApiException(status=obj.get("code") or 500, reason=str(obj.get("message")))
            resource_version = str((obj.get("metadata") or {}).get("resourceVersion") or resource_version)
            if kind_ == "BOOKMARK":
                continue
            obj.setdefault("apiVersion", self.kind.api_version)
            obj.setdefault("kind", self.kind.kind)
            if kind_ == "DELETED":
                meta = obj.get("metadata") or {}
                owner = self.cache.remove(meta.get("namespace") or "", self.kind.kind, meta.get("name") or "")
                if owner is not None:
                    self._notify([(owner, True)])
                continue
            outcome = self.cache.put(obj)
            if outcome is not None:
                self._notify([outcome])
            elif not _model_owned(obj):
                # Not a child (KServe's Deployment of the model's InferenceService): its changes can
                # still be news for the model (the InferenceService's status follows them).
                model = ((obj.get("metadata") or {}).get("labels") or {}).get(c.LABEL_MODEL)
                namespace = (obj.get("metadata") or {}).get("namespace")
                if model and namespace:
                    self._notify([((namespace, model), False)])
        return resource_version

    def _run(self) -> None:
        version: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self.relist()
                version = self._watch_once(version)
                failures = 0
            except _GoneError:
                LOG.info("watch of %s expired (410 Gone): listing it again", self.kind.kind)
                version = None
            except _SilentWatchError:
                LOG.warning("watch of %s went silent: listing it again", self.kind.kind)
                version = None
            except (ApiException, HTTPError, OSError, ValueError) as exc:
                # The API server restarting or unreachable: resume from where the watch was.
                delay = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)]
                failures += 1
                LOG.warning("watch of %s failed (retrying in %.1fs): %s", self.kind.kind, delay, exc)
                if isinstance(exc, ApiException) and exc.status == 410:
                    version = None
                self._stop.wait(delay)
            except Exception:
                LOG.exception("watch of %s failed", self.kind.kind)
                version = None
                self._stop.wait(RETRY_DELAYS_S[-1])


class Informers:
    """One informer per served child kind; new kinds (a CRD installed later) are picked up by
    `refresh`."""

    def __init__(
        self,
        api_client: client.ApiClient,
        cache: ChildCache,
        on_change: OnChange,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        self.api_client = api_client
        self.cache = cache
        self.on_change = on_change
        self.watch_seconds = watch_seconds
        self._running: dict[str, list[KindInformer]] = {}

    def ensure(self, kinds: list[ChildKind]) -> None:
        """Start an informer for each of `kinds` not watched yet."""
        for kind in kinds:
            if kind.kind in self._running:
                continue
            started = [
                KindInformer(self.api_client, kind, scope, self.cache, self.on_change, self.watch_seconds)
                for scope in self.cache.scopes
            ]
            self._running[kind.kind] = started
            for informer in started:
                informer.start()

    def wait_synced(self, timeout_s: float) -> bool:
        """Block until every started kind is listed (an operator starting acts on a full cache)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.cache.synced(kind) for kind in self._running):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        for started in self._running.values():
            for informer in started:
                informer.stop()


class LatestModels:
    """Each model as last seen: its watch events (kopf's), the resync's listing and the answers to the
    operator's own writes, whichever is newest (by resourceVersion). A reconcile starts from here
    instead of a GET; compact JSON, decoded afresh for each reader. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: dict[ModelKey, tuple[int | None, str, bytes]] = {}  # version, uid, JSON

    def remember(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key, uid = (meta.get("namespace") or "", meta.get("name") or ""), str(meta.get("uid") or "")
        version = _resource_version(body)
        with self._lock:
            held = self._bodies.get(key)
            seen = held is not None and held[0] is not None and version is not None and version <= held[0]
            if seen and held is not None and held[1] == uid:
                return  # the same model as we hold (a resync listing), or seen before our last write
            self._bodies[key] = (version, uid, json.dumps(body, separators=(",", ":")).encode())

    def holds(self, meta: Mapping[str, Any]) -> bool:
        """Whether the model these metadata describe is held, as new as they say or newer."""
        key = (meta.get("namespace") or "", meta.get("name") or "")
        version = _resource_version({"metadata": meta})
        with self._lock:
            held = self._bodies.get(key)
        return (
            held is not None
            and held[1] == str(meta.get("uid") or "")
            and held[0] is not None
            and version is not None
            and held[0] >= version
        )

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            held = self._bodies.get((namespace, name))
        return json.loads(held[2]) if held is not None else None

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._bodies.pop((namespace, name), None)
