"""Local control plane ("our envtest"): real etcd + kube-apiserver + kube-controller-manager on loopback.

Library use (tests)::

    with LocalPlane() as plane:
        api = kubernetes.client.CoreV1Api(plane.admin_client())

CLI (``nlpctl localplane`` delegates to :func:`main`)::

    python -m nlpmodel_harness.localplane up      # detached; last stdout line: admin kubeconfig
    python -m nlpmodel_harness.localplane status
    python -m nlpmodel_harness.localplane down
    python -m nlpmodel_harness.localplane build   # only make sure the binaries exist

By default there is no scheduler and no kubelet: pods are created but never run. The controller-manager
runs the controllers that make ownership, Deployments and namespaces behave (see :data:`CONTROLLERS`).

With ``node=True`` (``up --node``; root, Linux) pods run for real: kube-scheduler, containerd, kubelet
and kube-proxy join (:mod:`nlpmodel_harness.node`), the API server listens on the machine's address so
pods reach it, and ``stop``/``down`` also undo the host state the node leaves (mounts, bridge, iptables
chains, cgroups, ip_forward).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import copy
import importlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import yaml
from kubernetes import config as k8s_config
from kubernetes.client import ApiClient, ApiextensionsV1Api
from kubernetes.client.exceptions import ApiException
from nlpmodel_operator.controller.kube import api_message

from nlpmodel_harness import node as nodes
from nlpmodel_harness.checkout import REPO, SHARED
from nlpmodel_harness.childproc import _die_with_parent, _starttime, free_ports, pid_alive, tail
from nlpmodel_harness.images import Image
from nlpmodel_harness.localplane_build import (
    Binaries,
    BinariesError,
    cache_root,
    ensure_apt_packages,
    ensure_binaries,
    log,
)

__all__ = [
    "ADMIN_USER",
    "OPERATOR_USER",
    "LocalPlane",
    "LocalPlaneError",
    "adapt_crd_for_server",
    "default_crd_files",
    "default_state_dir",
    "install_crds",
    "main",
    "pid_alive",
    "upstream_crd_files",
]

ENV_STATE = "NLPMODEL_LOCALPLANE_STATE"
ADMIN_USER = "localplane-admin"  # group system:masters
OPERATOR_USER = "nlpmodel-operator"  # no group: gets only what RoleBindings grant
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Cheap controllers that make the API behave like a cluster minus pods actually running.
CONTROLLERS = (
    "garbagecollector",  # owner-reference cascade deletion
    "deployment",
    "replicaset",
    "namespace",  # namespace deletion finishes
    "serviceaccount",  # default ServiceAccount per namespace, so ReplicaSets can create pods
    "serviceaccount-token",
    "clusterrole-aggregation",  # aggregate-to-* labels, as a chart's ClusterRoles may use
)
# With a node: its not-ready taint is lifted once Ready, Services get endpoints (kube-proxy 1.20 reads
# EndpointSlices), claims bind to volumes.
NODE_CONTROLLERS = ("nodelifecycle", "endpoint", "endpointslice", "persistentvolume-binder", "podgc")
NODE_READY_TIMEOUT_S = 120.0
CEL_VALIDATIONS_SINCE = (1, 25)  # x-kubernetes-validations
# Verified rejected on 1.20 ("null"); the first accepting release is not pinned down, so treat every
# release before CEL like 1.20. install_crds also retries with the edits if a server says 422.
EMPTY_STRING_DEFAULT_SINCE = (1, 25)
STOP_GRACE_S = 10.0
STATE_FILE = "state.json"
SHARED_UPSTREAM_CRDS = SHARED / "upstream-crds"
UPSTREAM_CRDS_MODULE = "nlpmodel_harness.upstream_crds"


class LocalPlaneError(RuntimeError):
    """The local control plane could not be started, reached or stopped."""


def default_state_dir() -> Path:
    return Path(os.environ.get(ENV_STATE) or cache_root() / "run")


def default_crd_files() -> list[Path]:
    """Our own CRDs: every *.yaml in the repository's crds/ directory."""
    return sorted((REPO / "crds").glob("*.yaml"))


def upstream_crd_files() -> dict[str, Path]:
    """KServe, Gateway API, KEDA and prometheus-operator CRDs (file name -> path)."""
    try:
        module = importlib.import_module(UPSTREAM_CRDS_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != UPSTREAM_CRDS_MODULE:
            raise  # the module exists but is broken: do not hide that
        return {p.name: p for p in sorted(SHARED_UPSTREAM_CRDS.glob("*.yaml"))}
    files: dict[str, Path] = module.upstream_crd_files()
    return dict(files)


# ------------------------------------------------------------------------------------------------ CRDs


def _drop_keys(node: Any, predicate: Callable[[dict[str, Any], str], bool]) -> int:
    """Delete, recursively, every dict entry for which predicate(dict, key) holds; return how many."""
    dropped = 0
    if isinstance(node, dict):
        for key in list(node):
            if predicate(node, key):
                del node[key]
                dropped += 1
            else:
                dropped += _drop_keys(node[key], predicate)
    elif isinstance(node, list):
        for item in node:
            dropped += _drop_keys(item, predicate)
    return dropped


def adapt_crd_for_server(crd: dict[str, Any], server_version: tuple[int, int]) -> dict[str, Any]:
    """Return a copy of crd without the schema features the server predates (no-op on new servers)."""
    crd = copy.deepcopy(crd)
    for version in crd.get("spec", {}).get("versions", []) or []:
        schema = version.get("schema")
        if schema is None:
            continue
        if server_version < CEL_VALIDATIONS_SINCE:
            _drop_keys(schema, lambda _d, k: k == "x-kubernetes-validations")
        if server_version < EMPTY_STRING_DEFAULT_SINCE:
            _require_defaulted_list_map_keys(schema)
            _drop_keys(schema, lambda d, k: k == "default" and d[k] == "" and d.get("type") == "string")
    return crd


def _require_defaulted_list_map_keys(node: Any) -> None:
    """A list-map key must have a default or be required: where its default is the '' the server
    rejects, it becomes required instead (e.g. imagePullSecrets[].name in LLMInferenceService)."""
    if isinstance(node, dict):
        items = node.get("items")
        if isinstance(items, dict):
            properties = items.get("properties") or {}
            for key in node.get("x-kubernetes-list-map-keys") or []:
                prop = properties.get(key) or {}
                if prop.get("default") == "" and key not in (items.get("required") or []):
                    items["required"] = [*(items.get("required") or []), key]
        for value in node.values():
            _require_defaulted_list_map_keys(value)
    elif isinstance(node, list):
        for item in node:
            _require_defaulted_list_map_keys(item)


def serve_without_conversion_webhook(crd: dict[str, Any]) -> dict[str, Any]:
    """A copy of `crd` that needs no conversion webhook: the local plane runs none, and without one
    the server would hand out a stored object under another version's name unconverted. A CRD with
    several versions and no webhook configured (KServe's LLMInferenceService: v1alpha1 and v1alpha2,
    converted by KServe's webhook, configured by a kustomize patch the file lacks) serves and stores
    only its storage version; the other versions stay in the CRD, not served."""
    crd = copy.deepcopy(crd)
    spec = crd.get("spec") or {}
    versions = spec.get("versions") or []
    strategy = (spec.get("conversion") or {}).get("strategy", "None")
    if len(versions) > 1 and strategy != "Webhook":
        for version in versions:
            version["served"] = bool(version.get("storage"))
    return crd


def _load_crds(files: Iterable[Path]) -> list[dict[str, Any]]:
    crds: list[dict[str, Any]] = []
    for path in files:
        with path.open() as fh:
            for doc in yaml.safe_load_all(fh):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    crds.append(doc)
    return crds


def install_crds(
    client: ApiClient,
    files: Iterable[Path],
    server_version: tuple[int, int],
    *,
    timeout_s: float = 60.0,
) -> list[str]:
    """Create (or replace) the CRDs in files and wait until each is Established; return their names."""
    api = ApiextensionsV1Api(client)
    names: list[str] = []
    for loaded in _load_crds(files):
        name = loaded["metadata"]["name"]
        original = serve_without_conversion_webhook(loaded)
        body = adapt_crd_for_server(original, server_version)
        for attempt in ("as adapted", "with all edits"):
            try:
                _create_or_replace_crd(api, name, body)
                break
            except ApiException as exc:
                fully_adapted = adapt_crd_for_server(original, (1, 0))
                if exc.status != 422 or attempt != "as adapted" or body == fully_adapted:
                    raise LocalPlaneError(f"CRD {name} rejected: {exc.status} {api_message(exc)}") from exc
                log(f"CRD {name} rejected ({api_message(exc)}); retrying without CEL rules and '' defaults")
                body = fully_adapted
        names.append(name)

    deadline = time.monotonic() + timeout_s
    for name in names:
        _wait_established(api, name, deadline)
    return names


CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def _send_compact(api: Any, method: str, path: str, body: dict[str, Any]) -> None:
    """Send `body` as compact JSON, labelled YAML (which JSON is, so the client passes the text as it
    is): the client's own encoding adds a space after every separator, and LLMInferenceService's CRD
    (0.8 MB compact) must stay well inside the API server's request and etcd's value limits."""
    client = api.api_client
    params = client.param_serialize(
        method,
        path,
        header_params={"Content-Type": "application/yaml", "Accept": "application/json"},
        body=json.dumps(body, separators=(",", ":")),
        auth_settings=["BearerToken"],
    )
    response = client.call_api(*params)
    response.read()
    if not 200 <= response.status < 300:
        raise ApiException(http_resp=response)


def _create_or_replace_crd(api: Any, name: str, body: dict[str, Any]) -> None:
    try:
        _send_compact(api, "POST", CRD_PATH, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = json.loads(api.read_custom_resource_definition(name, _preload_content=False).data)
        body = copy.deepcopy(body)
        body.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
        _send_compact(api, "PUT", f"{CRD_PATH}/{name}", body)


def _wait_established(api: Any, name: str, deadline: float) -> None:
    conditions: dict[str, dict[str, Any]] = {}
    while True:
        crd = json.loads(api.read_custom_resource_definition(name, _preload_content=False).data)
        conditions = {c["type"]: c for c in (crd.get("status") or {}).get("conditions") or []}
        if conditions.get("Established", {}).get("status") == "True":
            return
        names_accepted = conditions.get("NamesAccepted", {})
        if names_accepted.get("status") == "False":
            raise LocalPlaneError(f"CRD {name}: names not accepted: {names_accepted.get('message')}")
        if time.monotonic() > deadline:
            raise LocalPlaneError(f"CRD {name} not Established in time; conditions: {conditions}")
        time.sleep(0.2)


# ------------------------------------------------------------------------------------------- processes


@dataclass
class _Proc:
    name: str
    pid: int
    cmdline: list[str]
    starttime: int | None
    log_path: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)  # None when attached


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def _is_ours(proc: _Proc) -> bool:
    """The pid still runs the exact command line we started (guards against pid reuse)."""
    if _cmdline(proc.pid) != proc.cmdline:
        return False
    return proc.starttime is None or _starttime(proc.pid) == proc.starttime


def _write_private(path: Path, text: str) -> None:
    """Write a credentials file that is never readable by others, not even briefly."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    path.chmod(0o600)  # O_CREAT's mode does not apply to an existing file


def _binary_version(binary: Path) -> tuple[int, int]:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"v(\d+)\.(\d+)", out)
    if match is None:
        raise LocalPlaneError(f"cannot tell the version of {binary}: {out!r}")
    return int(match[1]), int(match[2])


# ------------------------------------------------------------------------------------------ LocalPlane


class LocalPlane:
    """etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, with CRDs installed.

    state_dir holds logs, kubeconfigs, keys and the state file; without one a temp dir is used and
    removed on stop(). Data (etcd) always lives in a temp dir removed on stop().
    tie_to_parent: servers get SIGTERM when the starting thread dies, so a killed test run leaves
    nothing behind (off for the detached CLI `up`, and when started from a non-main thread).
    """

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        crd_files: Iterable[Path] | None = None,
        upstream_crds: bool = True,
        binaries: Binaries | None = None,
        startup_timeout_s: float = 120.0,
        tie_to_parent: bool = True,
        audit_policy: Mapping[str, Any] | None = None,
        node: bool = False,
    ) -> None:
        self._owns_state_dir = state_dir is None
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._crd_files = list(crd_files) if crd_files is not None else None
        self._upstream_crds = upstream_crds
        self._binaries = binaries
        self._timeout = startup_timeout_s
        self._tie_to_parent = tie_to_parent
        # An audit policy (audit.k8s.io/v1 Policy) turns the API server's audit log on: which requests
        # were made, by whom (the reliability tests tell writers apart, the scale bench counts requests).
        self._audit_policy = dict(audit_policy) if audit_policy is not None else None
        self._node = node
        self._node_paths: nodes.NodePaths | None = None
        self._procs: list[_Proc] = []
        self._data_dir: Path | None = None
        self._api_url = ""
        self._version: dict[str, str] = {}
        self._admin_token = ""
        self._ca_file: Path | None = None
        self._installed_crds: list[str] = []
        self._atexit_registered = False

    # -- public properties ---------------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        if self._state_dir is None:
            raise LocalPlaneError("not started")
        return self._state_dir

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        return self.state_dir / "operator.kubeconfig"

    @property
    def api_url(self) -> str:
        return self._api_url

    @property
    def server_version(self) -> tuple[int, int]:
        """(major, minor) as the running server reports on /version."""
        return int(self._version["major"]), int(re.sub(r"\D", "", self._version["minor"]))

    @property
    def git_version(self) -> str:
        return self._version.get("gitVersion", "")

    @property
    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in self._procs}

    @property
    def node_paths(self) -> nodes.NodePaths | None:
        """The node's directories (containerd's socket, kubelet's root), when started with node=True."""
        return self._node_paths

    @property
    def binaries(self) -> Binaries | None:
        return self._binaries

    @property
    def installed_crds(self) -> list[str]:
        return list(self._installed_crds)

    def log_path(self, component: str) -> Path:
        return self.state_dir / "logs" / f"{component}.log"

    @property
    def etcd_url(self) -> str:
        """etcd's client URL (tests read the store's history from it; the operator never talks to it)."""
        proc = next(p for p in self._procs if p.name == "etcd")
        flag = next(a for a in proc.cmdline if a.startswith("--listen-client-urls="))
        return flag.split("=", 1)[1]

    @property
    def audit_log(self) -> Path | None:
        """The API server's audit log (JSON lines), when started with an audit policy."""
        return self.state_dir / "logs" / "audit.jsonl" if self._audit_policy is not None else None

    def audit_events(self) -> list[dict[str, Any]]:
        """The audit log's events so far (the last line may still be being written: skipped)."""
        path = self.audit_log
        if path is None:
            raise LocalPlaneError("started without an audit policy")
        events = []
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
        return events

    def restart_apiserver(self, down_s: float = 0.0) -> None:
        """Stop kube-apiserver (SIGTERM), leave it down `down_s` seconds, start it again on the same port
        with the same flags and serving certificate; returns once it is ready. etcd keeps the data."""
        index, proc = next((i, p) for i, p in enumerate(self._procs) if p.name == "kube-apiserver")
        self._terminate(proc)
        time.sleep(down_s)
        self._procs.pop(index)
        restarted = self._spawn("kube-apiserver", proc.cmdline, append_log=True)
        self._procs.remove(restarted)
        self._procs.insert(index, restarted)  # stop() still stops the controllers first, etcd last
        self._save_state()
        self._wait_for(
            restarted,
            "ready again (/readyz)",
            lambda: self._request("/readyz", verify=False)[0] == 200,
            self._timeout,
        )

    def admin_client(self) -> ApiClient:
        """A kubernetes ApiClient as the admin (system:masters); does not touch the global config."""
        return _client_from(self.admin_kubeconfig)

    def operator_client(self) -> ApiClient:
        """A kubernetes ApiClient as the operator's user, which has no rights until bound."""
        return _client_from(self.operator_kubeconfig)

    def install_crds(self, files: Iterable[Path]) -> list[str]:
        with contextlib.closing(self.admin_client()) as client:
            names = install_crds(client, files, self.server_version)
        self._installed_crds.extend(n for n in names if n not in self._installed_crds)
        self._save_state()
        return names

    def process_states(self) -> dict[str, tuple[int, bool]]:
        """name -> (pid, whether that pid still runs the process this plane started)."""
        return {p.name: (p.pid, pid_alive(p.pid) and _is_ours(p)) for p in self._procs}

    def running(self) -> bool:
        states = self.process_states()
        return bool(states) and all(alive for _pid, alive in states.values())

    # -- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> LocalPlane:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> LocalPlane:
        if self._procs:
            raise LocalPlaneError("already started")
        if self._binaries is None:
            self._binaries = ensure_binaries()
        log(f"binaries: {self._binaries.source}")
        if shutil.which("openssl") is None:
            ensure_apt_packages(["openssl"])
        if self._state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="nlpmodel-localplane-"))
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "pki").mkdir(exist_ok=True)
        (self.state_dir / "pki").chmod(0o700)  # service-account signing key
        self._data_dir = Path(tempfile.mkdtemp(prefix="nlpmodel-localplane-data-"))
        atexit.register(self._atexit_stop)
        self._atexit_registered = True
        try:
            self._start_all()
        except BaseException:
            # Whatever went wrong (Ctrl-C included): leave nothing running.
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop exactly the processes this plane started; remove data and secrets."""
        failures: list[str] = []
        for proc in reversed(self._procs):  # controllers first, etcd last
            try:
                self._terminate(proc)
            except (LocalPlaneError, OSError) as exc:  # keep stopping the others
                failures.append(f"{proc.name} (pid {proc.pid}): {exc}")
        self._procs.clear()
        if self._node_paths is not None:
            # The processes are gone; what they set up on the host is not (pods, mounts, chains, ...).
            failures.extend(nodes.teardown_host_state(self._node_paths))
            self._node_paths = None
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
        if self._state_dir is not None:
            if self._owns_state_dir:
                shutil.rmtree(self._state_dir, ignore_errors=True)
            else:  # keep logs/ for post-mortems; drop credentials and state
                for name in (STATE_FILE, "admin.kubeconfig", "operator.kubeconfig", "tokens.csv"):
                    (self._state_dir / name).unlink(missing_ok=True)
                shutil.rmtree(self._state_dir / "pki", ignore_errors=True)
        if self._atexit_registered:
            atexit.unregister(self._atexit_stop)
            self._atexit_registered = False
        if failures:
            raise LocalPlaneError("could not stop: " + "; ".join(failures))

    def detach(self) -> None:
        """Leave the processes running after this Python process exits (the CLI `up`)."""
        if self._atexit_registered:
            atexit.unregister(self._atexit_stop)
            self._atexit_registered = False

    @classmethod
    def attach(cls, state_dir: Path | str) -> LocalPlane:
        """A handle on a plane started elsewhere (by `up`), read from its state file."""
        state_dir = Path(state_dir)
        try:
            state = json.loads((state_dir / STATE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise LocalPlaneError(f"no local plane state in {state_dir}: {exc}") from exc
        plane = cls(state_dir)
        plane._procs = [
            _Proc(p["name"], int(p["pid"]), list(p["cmdline"]), p.get("starttime"), Path(p["log"]))
            for p in state.get("processes", [])
        ]
        plane._data_dir = Path(state["data_dir"]) if state.get("data_dir") else None
        if state.get("node_dir"):
            plane._node = True
            plane._node_paths = nodes.NodePaths(Path(state["node_dir"]))
        plane._api_url = state.get("api_url", "")
        plane._version = dict(state.get("version") or {})
        plane._installed_crds = list(state.get("crds") or [])
        plane._admin_token = state.get("admin_token", "")
        ca = state.get("ca_file")
        plane._ca_file = Path(ca) if ca else None
        source = state.get("binaries") or {}
        if source:
            plane._binaries = Binaries(
                Path(source["kube-apiserver"]),
                Path(source["kube-controller-manager"]),
                Path(source["etcd"]),
                source["source"],
            )
        return plane

    # -- internals ------------------------------------------------------------------------------------

    def _atexit_stop(self) -> None:
        if self._procs:
            log("interpreter exiting: stopping the local control plane")
            self.stop()

    def _save_state(self) -> None:
        state = {
            "processes": [
                {
                    "name": p.name,
                    "pid": p.pid,
                    "cmdline": p.cmdline,
                    "starttime": p.starttime,
                    "log": str(p.log_path),
                }
                for p in self._procs
            ],
            "data_dir": str(self._data_dir) if self._data_dir else None,
            "node_dir": str(self._node_paths.run_dir) if self._node_paths else None,
            "api_url": self._api_url,
            "version": self._version,
            "crds": self._installed_crds,
            "admin_token": self._admin_token,
            "ca_file": str(self._ca_file) if self._ca_file else None,
            "admin_kubeconfig": str(self.admin_kubeconfig),
            "operator_kubeconfig": str(self.operator_kubeconfig),
            "binaries": self._binaries.as_dict() if self._binaries else None,
        }
        tmp = self.state_dir / f".{STATE_FILE}.tmp"
        _write_private(tmp, json.dumps(state, indent=2) + "\n")  # holds the admin token
        tmp.replace(self.state_dir / STATE_FILE)

    def _spawn(self, name: str, cmd: list[str], *, append_log: bool = False) -> _Proc:
        log_path = self.log_path(name)
        tie = self._tie_to_parent and threading.current_thread() is threading.main_thread()
        with log_path.open("ab" if append_log else "wb") as out:
            popen = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: Ctrl-C in a terminal does not reach it
                preexec_fn=_die_with_parent if tie else None,  # noqa: PLW1509 - only calls prctl
            )
        # Popen returns after the exec: /proc already shows cmd, which `down` later checks.
        proc = _Proc(name, popen.pid, cmd, _starttime(popen.pid), log_path, popen)
        self._procs.append(proc)
        self._save_state()
        return proc

    def _fail(self, proc: _Proc, what: str) -> LocalPlaneError:
        rc = proc.popen.poll() if proc.popen else None
        status = f"exited with code {rc}" if rc is not None else "still running"
        return LocalPlaneError(
            f"{proc.name} {what} ({status}); last lines of {proc.log_path}:\n{tail(proc.log_path)}"
        )

    def _wait_for(self, proc: _Proc, what: str, check: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.popen is not None and proc.popen.poll() is not None:
                raise self._fail(proc, f"died before it was {what}")
            with contextlib.suppress(OSError, ValueError, ssl.SSLError):
                if check():
                    return
            if time.monotonic() > deadline:
                raise self._fail(proc, f"was not {what} within {timeout_s:.0f}s")
            time.sleep(0.2)

    def _request(self, path: str, *, verify: bool = True) -> tuple[int, bytes]:
        ctx = ssl.create_default_context(cafile=str(self._ca_file)) if verify and self._ca_file else None
        if ctx is None:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # our own server on loopback, before its cert is known
        req = urllib.request.Request(
            self._api_url + path, headers={"Authorization": f"Bearer {self._admin_token}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def _start_all(self) -> None:
        assert self._binaries is not None
        assert self._data_dir is not None
        b = self._binaries
        pki = self.state_dir / "pki"
        binary_version = _binary_version(b.kube_apiserver)
        node_bins: dict[str, Path] = {}
        if self._node:
            node_bins = nodes.node_binaries(b.kube_apiserver.parent)
            nodes.ensure_host_packages()
            self._node_paths = nodes.NodePaths(self.state_dir / "node")
            # An earlier node killed without `down` left host state behind: clear it before starting.
            nodes.teardown_host_state(self._node_paths)
        # Pods reach the API server through the kubernetes Service, which may not point at loopback.
        advertise = nodes.host_ip() if self._node else "127.0.0.1"

        # Credentials: static tokens (admin in system:masters, operator in no group), SA signing key.
        self._admin_token = secrets.token_hex(16)
        operator_token = secrets.token_hex(16)
        tokens = self.state_dir / "tokens.csv"
        _write_private(
            tokens,
            f'{self._admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
            f"{operator_token},{OPERATOR_USER},{OPERATOR_USER}\n",
        )
        sa_key, sa_pub = pki / "sa.key", pki / "sa.pub"
        for cmd in (
            ["openssl", "genrsa", "-out", str(sa_key), "2048"],
            ["openssl", "rsa", "-in", str(sa_key), "-pubout", "-out", str(sa_pub)],
        ):
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise LocalPlaneError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")

        # etcd
        client_port, peer_port, api_port = free_ports(3)
        etcd_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        etcd = self._spawn(
            "etcd",
            [
                str(b.etcd),
                "--name=localplane",
                f"--data-dir={self._data_dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=localplane={peer_url}",
            ],
        )
        self._wait_for(etcd, "healthy", lambda: _etcd_healthy(etcd_url), self._timeout)

        # kube-apiserver, serving a self-signed cert it generates in --cert-dir
        # The self-signed serving cert names the advertised address (and the Service IP), not loopback.
        self._api_url = f"https://{advertise}:{api_port}"
        serving = pki / "serving"
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(b.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={serving}",
                f"--secure-port={api_port}",
                f"--bind-address={'0.0.0.0' if self._node else '127.0.0.1'}",
                f"--advertise-address={advertise}",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                "--authorization-mode=RBAC",
                f"--token-auth-file={tokens}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                "--profiling=false",
                # logs/exec: reach the kubelet at the node's address (its name is in no DNS).
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                *self._audit_flags(),
            ],
        )
        self._wait_for(
            apiserver,
            "ready (/readyz)",
            lambda: self._request("/readyz", verify=False)[0] == 200,
            self._timeout,
        )
        status, body = self._request("/version", verify=False)
        if status != 200:
            raise self._fail(apiserver, f"answered /version with {status}")
        self._version = {k: str(v) for k, v in json.loads(body).items()}
        self._ca_file = self._verifiable_ca(serving / "apiserver.crt")
        self._write_kubeconfig(self.admin_kubeconfig, ADMIN_USER, self._admin_token)
        self._write_kubeconfig(self.operator_kubeconfig, OPERATOR_USER, operator_token)
        self._save_state()
        log(f"kube-apiserver {self.git_version} ready at {self._api_url}")

        # kube-controller-manager, as admin; no serving ports at all
        kcm_cmd = [
            str(b.kube_controller_manager),
            f"--kubeconfig={self.admin_kubeconfig}",
            f"--controllers={','.join(CONTROLLERS + (NODE_CONTROLLERS if self._node else ()))}",
            f"--service-account-private-key-file={sa_key}",
            "--leader-elect=false",
            "--secure-port=0",
            "--profiling=false",
        ]
        if self._ca_file is not None:
            kcm_cmd.append(f"--root-ca-file={self._ca_file}")
        if binary_version < (1, 24):  # the insecure port (default 10252) went away in 1.24
            kcm_cmd.append("--port=0")
        kcm = self._spawn("kube-controller-manager", kcm_cmd)
        # The serviceaccount controller creating default/default shows the controllers are running.
        self._wait_for(
            kcm,
            "running its controllers",
            lambda: self._request("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
            self._timeout,
        )

        if self._node:
            self._start_node(node_bins, advertise)

        crd_files = self._crd_files if self._crd_files is not None else default_crd_files()
        if self._upstream_crds:
            crd_files = [*crd_files, *upstream_crd_files().values()]
        if crd_files:
            log(f"installing {len(crd_files)} CRD file(s)")
            self.install_crds(crd_files)
        log(f"local control plane up: {self._api_url} (Kubernetes {self.git_version}), pids {self.pids}")

    def _start_node(self, bins: Mapping[str, Path], address: str) -> None:
        """kube-scheduler, containerd (+ the pause image), kubelet, kube-proxy; returns when the node is Ready."""
        paths = self._node_paths
        assert paths is not None
        kubelet_port, kubelet_healthz, proxy_metrics, proxy_healthz, scheduler_port = free_ports(5)
        nodes.write_configs(paths, kubelet_port, kubelet_healthz)
        nodes.save_sysctls(paths)
        kubeconfig = self.admin_kubeconfig
        self._spawn("kube-scheduler", nodes.scheduler_cmd(bins["kube-scheduler"], kubeconfig, scheduler_port))
        containerd = self._spawn("containerd", nodes.containerd_cmd(paths))
        self._wait_for(
            containerd,
            "serving (ctr version)",
            lambda: nodes.containerd_serving(paths),
            self._timeout,
        )
        nodes.ensure_pause_image(paths)
        kubelet = self._spawn("kubelet", nodes.kubelet_cmd(bins["kubelet"], paths, kubeconfig, address))
        self._spawn(
            "kube-proxy", nodes.kube_proxy_cmd(bins["kube-proxy"], kubeconfig, proxy_metrics, proxy_healthz)
        )
        self._wait_for(kubelet, f"Ready (node {nodes.NODE_NAME})", self._node_ready, NODE_READY_TIMEOUT_S)
        log(f"node {nodes.NODE_NAME} Ready (containerd {paths.containerd_socket}, pods in {nodes.POD_CIDR})")

    def _node_ready(self) -> bool:
        status, body = self._request(f"/api/v1/nodes/{nodes.NODE_NAME}")
        if status != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def import_image(self, image: Image) -> None:
        """Make a built image available to the node's kubelet under its name (no registry)."""
        if self._node_paths is None:
            raise LocalPlaneError("started without a node")
        nodes.import_image(self._node_paths, image)

    def _audit_flags(self) -> list[str]:
        if self._audit_policy is None or self.audit_log is None:
            return []
        policy = self.state_dir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(self._audit_policy))
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",  # written before the response: a test reads it right after
            "--audit-log-maxsize=0",  # never rotated: counts cover the whole run
        ]

    def _verifiable_ca(self, cert: Path) -> Path | None:
        """Use the generated cert as CA when it verifies our URL; else kubeconfigs skip verification."""
        ctx = ssl.create_default_context(cafile=str(cert))
        host, port = self._api_url.removeprefix("https://").rsplit(":", 1)
        try:
            with (
                socket.create_connection((host, int(port)), timeout=5) as sock,
                ctx.wrap_socket(sock, server_hostname=host),
            ):
                return cert
        except (OSError, ssl.SSLError) as exc:
            log(f"serving cert does not verify ({exc}); kubeconfigs use insecure-skip-tls-verify")
            return None

    def _write_kubeconfig(self, path: Path, user: str, token: str) -> None:
        cluster: dict[str, Any] = {"server": self._api_url}
        if self._ca_file is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self._ca_file.read_bytes()).decode()
        else:
            cluster["insecure-skip-tls-verify"] = True
        context = f"localplane-{user}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "localplane", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": "localplane", "user": user}}],
            "current-context": context,
        }
        _write_private(path, yaml.safe_dump(config, sort_keys=False))

    def _terminate(self, proc: _Proc) -> None:
        if not pid_alive(proc.pid):
            if proc.popen is not None:
                proc.popen.wait()  # reap
            return
        if not _is_ours(proc):
            log(f"not stopping pid {proc.pid}: it no longer runs the {proc.name} we started")
            return
        group = os.getpgid(proc.pid) == proc.pid  # start_new_session made it a group leader
        for sig, grace in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(proc.pid, sig)
                else:
                    os.kill(proc.pid, sig)
            if _wait_gone(proc, grace):
                return
        raise LocalPlaneError("survived SIGKILL")


def _wait_gone(proc: _Proc, timeout_s: float) -> bool:
    if proc.popen is not None:
        try:
            proc.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout_s
    while pid_alive(proc.pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _client_from(kubeconfig: Path) -> ApiClient:
    loader: Callable[..., ApiClient] = k8s_config.new_client_from_config
    return loader(config_file=str(kubeconfig))


def _etcd_healthy(url: str) -> bool:
    with urllib.request.urlopen(url + "/health", timeout=2) as resp:
        return bool(json.loads(resp.read()).get("health") == "true")


# ------------------------------------------------------------------------------------------------- CLI


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so the except/atexit paths stop what was started.

    Signals already ignored (nohup) stay ignored. Only in the main thread (signal's own rule).
    """

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is signal.SIG_DFL:
                previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _attach_if_present(state_dir: Path) -> LocalPlane | None:
    if not (state_dir / STATE_FILE).is_file():
        return None
    return LocalPlane.attach(state_dir)


def _cmd_up(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir or default_state_dir()
    existing = _attach_if_present(state_dir)
    if existing is not None:
        if existing.running():
            log(f"already running ({existing.api_url}, pids {existing.pids})")
            print(existing.admin_kubeconfig)
            return 0
        log("cleaning up the remains of an earlier run")
        existing.stop()
    plane = LocalPlane(
        state_dir,
        crd_files=args.crd,
        upstream_crds=not args.no_upstream_crds,
        startup_timeout_s=args.timeout,
        tie_to_parent=False,
        node=args.node,
    )
    plane.start()
    plane.detach()
    log(f"operator kubeconfig: {plane.operator_kubeconfig}")
    log(f"stop with: python -m nlpmodel_harness.localplane down --state-dir {state_dir}")
    print(plane.admin_kubeconfig)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir or default_state_dir()
    plane = _attach_if_present(state_dir)
    if plane is None:
        log(f"nothing to stop (no {STATE_FILE} in {state_dir})")
        return 0
    pids = plane.pids
    plane.stop()
    log(f"stopped {pids}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir or default_state_dir()
    plane = _attach_if_present(state_dir)
    if plane is None:
        print(f"not running (no {STATE_FILE} in {state_dir})")
        return 1
    for name, (pid, alive) in plane.process_states().items():
        print(f"{name:<24} pid {pid:<8} {'running' if alive else 'NOT running'}")
    print(f"api:       {plane.api_url} (Kubernetes {plane.git_version})")
    if plane.binaries is not None:
        print(f"binaries:  {plane.binaries.source}")
    print(f"crds:      {len(plane.installed_crds)} installed")
    if plane.node_paths is not None:
        print(f"node:      {nodes.NODE_NAME} (containerd {plane.node_paths.containerd_socket})")
    print(f"operator:  {plane.operator_kubeconfig}")
    print(f"admin:     {plane.admin_kubeconfig}")
    return 0 if plane.running() else 1


def _cmd_build(_args: argparse.Namespace) -> int:
    binaries = ensure_binaries(retry_download=True)
    log(f"binaries: {binaries.source}")
    for name, path in binaries.as_dict().items():
        if name != "source":
            print(f"{name}: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="localplane", description="Local control plane: etcd + kube-apiserver + kube-controller-manager."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    state_help = f"state directory (default: ${ENV_STATE} or {cache_root() / 'run'})"

    up = sub.add_parser("up", help="start detached; print the admin kubeconfig path last")
    up.add_argument("--state-dir", type=Path, default=None, help=state_help)
    up.add_argument(
        "--crd",
        type=Path,
        action="append",
        default=None,
        help="our CRD file (repeatable; default crds/*.yaml)",
    )
    up.add_argument(
        "--no-upstream-crds", action="store_true", help="skip KServe/Gateway/KEDA/Prometheus CRDs"
    )
    up.add_argument("--timeout", type=float, default=120.0, help="seconds each component may take to start")
    up.add_argument(
        "--node",
        action="store_true",
        help="also run pods: kube-scheduler, containerd, kubelet, kube-proxy (root, Linux; see node.py)",
    )
    up.set_defaults(func=_cmd_up)

    down = sub.add_parser("down", help="stop what `up` started")
    down.add_argument("--state-dir", type=Path, default=None, help=state_help)
    down.set_defaults(func=_cmd_down)

    status = sub.add_parser("status", help="show the processes and endpoints (exit 1 if not running)")
    status.add_argument("--state-dir", type=Path, default=None, help=state_help)
    status.set_defaults(func=_cmd_status)

    build = sub.add_parser("build", help="only make sure the binaries exist (download or build)")
    build.set_defaults(func=_cmd_build)

    args = parser.parse_args(list(argv) if argv is not None else None)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        with _signals_raise():
            return func(args)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except (LocalPlaneError, BinariesError, nodes.NodeError) as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
