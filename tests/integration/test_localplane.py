"""The local control plane behaves like a real cluster where our tests rely on it."""

from __future__ import annotations

import hashlib
import http.server
import json
import secrets
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from nlpmodel_harness import localplane_build
from nlpmodel_harness.localplane import (
    OPERATOR_USER,
    LocalPlane,
    adapt_crd_for_server,
    default_crd_files,
    pid_alive,
    upstream_crd_files,
)

T = TypeVar("T")
DEADLINE_S = 60.0


def eventually(probe: Callable[[], T | None], what: str, timeout_s: float = DEADLINE_S) -> T:
    """Poll until probe returns something other than None; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.25)


def crd_names(files: list[Path]) -> set[str]:
    names = set()
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                names.add(doc["metadata"]["name"])
    return names


@pytest.fixture(scope="module")
def admin(localplane: LocalPlane) -> Iterator[ApiClient]:
    with localplane.admin_client() as api_client:
        yield api_client


@pytest.fixture
def namespace(admin: ApiClient) -> Iterator[str]:
    name = f"lp-{secrets.token_hex(4)}"
    core = client.CoreV1Api(admin)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def inference_service(name: str, predictor_extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "predictor": {
                "model": {"modelFormat": {"name": "huggingface"}, "storageUri": "hf://org/model"},
                **predictor_extra,
            }
        },
    }


# ------------------------------------------------------------------------------------------- server


def test_server_version_is_what_the_server_reports(localplane: LocalPlane, admin: ApiClient) -> None:
    info = client.VersionApi(admin).get_code()
    assert (int(info.major), int("".join(c for c in info.minor if c.isdigit()))) == localplane.server_version
    assert localplane.git_version == info.git_version
    assert localplane.binaries is not None
    assert localplane.binaries.source
    assert localplane.api_url.startswith("https://127.0.0.1:")


def test_kubeconfigs_use_bearer_tokens(localplane: LocalPlane) -> None:
    for path in (localplane.admin_kubeconfig, localplane.operator_kubeconfig):
        config = yaml.safe_load(path.read_text())
        assert config["clusters"][0]["cluster"]["server"] == localplane.api_url
        assert config["users"][0]["user"]["token"]
        assert path.stat().st_mode & 0o077 == 0  # credentials: owner only


# --------------------------------------------------------------------------------------------- CRDs


def test_our_and_upstream_crds_are_established(localplane: LocalPlane, admin: ApiClient) -> None:
    expected = crd_names(default_crd_files()) | crd_names(list(upstream_crd_files().values()))
    assert "inferenceservices.serving.kserve.io" in expected
    assert expected <= set(localplane.installed_crds)
    ext = client.ApiextensionsV1Api(admin)
    for name in expected:
        crd = json.loads(ext.read_custom_resource_definition(name, _preload_content=False).data)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", (name, conditions)


def test_inferenceservice_with_wrong_type_is_rejected_with_field_path(
    admin: ApiClient, namespace: str
) -> None:
    objects = client.CustomObjectsApi(admin)
    body = inference_service("wrong-type", {"minReplicas": "two"})
    with pytest.raises(ApiException) as caught:
        objects.create_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", namespace, "inferenceservices", body
        )
    assert caught.value.status == 422
    assert "spec.predictor.minReplicas" in json.loads(caught.value.body)["message"]


def test_unknown_inferenceservice_field_is_pruned(admin: ApiClient, namespace: str) -> None:
    objects = client.CustomObjectsApi(admin)
    body = inference_service("pruned", {"minReplicas": 1, "notAField": "dropped"})
    objects.create_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", namespace, "inferenceservices", body
    )
    stored = objects.get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", namespace, "inferenceservices", "pruned"
    )
    predictor = stored["spec"]["predictor"]
    assert "notAField" not in predictor
    assert predictor["minReplicas"] == 1
    assert predictor["model"]["storageUri"] == "hf://org/model"


# --------------------------------------------------------------------------------------------- RBAC


def test_operator_user_is_denied_until_bound(
    localplane: LocalPlane, admin: ApiClient, namespace: str
) -> None:
    rbac = client.RbacAuthorizationV1Api(admin)
    suffix = secrets.token_hex(4)
    role, binding = f"lp-test-configmaps-{suffix}", f"lp-test-operator-{suffix}"
    with localplane.operator_client() as operator_client:
        as_operator = client.CoreV1Api(operator_client)
        with pytest.raises(ApiException) as caught:
            as_operator.list_namespaced_config_map(namespace)
        assert caught.value.status == 403

        rbac.create_cluster_role(
            {
                "metadata": {"name": role},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
            }
        )
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": binding},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": OPERATOR_USER}
                ],
            }
        )
        try:

            def allowed() -> bool | None:
                try:
                    as_operator.list_namespaced_config_map(namespace)
                except ApiException as exc:
                    if exc.status != 403:
                        raise
                    return None
                return True

            eventually(allowed, "the ClusterRoleBinding to take effect")
            # Only what the role grants: Secrets stay forbidden.
            with pytest.raises(ApiException) as caught:
                as_operator.list_namespaced_secret(namespace)
            assert caught.value.status == 403
        finally:
            rbac.delete_cluster_role_binding(binding)
            rbac.delete_cluster_role(role)


# -------------------------------------------------------------------------------------- controllers


def test_deployment_owned_by_configmap_is_garbage_collected(admin: ApiClient, namespace: str) -> None:
    core, apps = client.CoreV1Api(admin), client.AppsV1Api(admin)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}, "data": {"k": "v"}})
    labels = {"app": "owned"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {
                "name": "owned",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
                ],
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "registry.invalid/none:0"}]},
                },
            },
        },
    )
    # The deployment controller runs: a ReplicaSet appears.
    eventually(lambda: apps.list_namespaced_replica_set(namespace).items or None, "a ReplicaSet")

    core.delete_namespaced_config_map("owner", namespace)

    def deployment_gone() -> bool | None:
        try:
            apps.read_namespaced_deployment("owned", namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return None

    eventually(deployment_gone, "the garbage collector to delete the owned Deployment")
    eventually(
        lambda: True if not apps.list_namespaced_replica_set(namespace).items else None,
        "the Deployment's ReplicaSets to be collected",
    )


# -------------------------------------------------------------------------------------- lifecycle


def test_stop_leaves_no_process_and_no_data(tmp_path: Path) -> None:
    plane = LocalPlane(tmp_path / "state", crd_files=[], upstream_crds=False)
    with plane:
        pids = plane.pids
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
        assert all(pid_alive(pid) for pid in pids.values())
        data_dir = Path(json.loads((tmp_path / "state" / "state.json").read_text())["data_dir"])
        assert data_dir.is_dir()
    assert not [name for name, pid in pids.items() if pid_alive(pid)]
    assert not data_dir.exists()
    assert not (tmp_path / "state" / "state.json").exists()
    assert (tmp_path / "state" / "logs" / "kube-apiserver.log").is_file()  # kept for post-mortems


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nlpmodel_harness.localplane", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cli_up_then_down_leaves_nothing_behind(tmp_path: Path) -> None:
    state = tmp_path / "run"
    up = run_cli("up", "--state-dir", str(state), "--no-upstream-crds")
    assert up.returncode == 0, up.stderr
    kubeconfig = Path(up.stdout.strip().splitlines()[-1])
    pids = {p["name"]: p["pid"] for p in json.loads((state / "state.json").read_text())["processes"]}
    try:
        assert kubeconfig == state / "admin.kubeconfig"
        # Detached: still serving after `up` returned.
        assert all(pid_alive(pid) for pid in pids.values())
        with config.new_client_from_config(config_file=str(kubeconfig)) as api_client:
            assert client.VersionApi(api_client).get_code().major == "1"
        status = run_cli("status", "--state-dir", str(state))
        assert status.returncode == 0, status.stdout + status.stderr
        again = run_cli("up", "--state-dir", str(state))  # idempotent
        assert again.returncode == 0
        assert again.stdout.strip().splitlines()[-1] == str(kubeconfig)
    finally:
        down = run_cli("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert not [name for name, pid in pids.items() if pid_alive(pid)]
    assert run_cli("status", "--state-dir", str(state)).returncode == 1


def test_down_refuses_pids_that_are_not_what_up_started(tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        state = {
            "processes": [
                {
                    "name": "etcd",
                    "pid": stranger.pid,
                    "cmdline": ["/usr/bin/etcd", "--name=localplane"],
                    "starttime": None,
                    "log": str(tmp_path / "etcd.log"),
                }
            ]
        }
        (tmp_path / "state.json").write_text(json.dumps(state))
        down = run_cli("down", "--state-dir", str(tmp_path))
        assert down.returncode == 0
        assert "not stopping" in down.stderr
        assert stranger.poll() is None
    finally:
        stranger.send_signal(signal.SIGKILL)
        stranger.wait()


# --------------------------------------------------------------------------------------- CRD edits


def test_crd_edits_apply_only_to_servers_that_need_them() -> None:
    crd = {
        "kind": "CustomResourceDefinition",
        "spec": {
            "versions": [
                {
                    "name": "v1",
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-validations": [{"rule": "true"}],
                            "properties": {
                                "s": {"type": "string", "default": ""},
                                "t": {"type": "string", "default": "x"},
                                "n": {"type": "integer", "default": 0},
                            },
                        }
                    },
                }
            ]
        },
    }
    old = adapt_crd_for_server(crd, (1, 20))["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert "x-kubernetes-validations" not in old
    assert "default" not in old["properties"]["s"]
    assert old["properties"]["t"]["default"] == "x"
    assert old["properties"]["n"]["default"] == 0
    assert adapt_crd_for_server(crd, (1, 34)) == crd
    # The input is not mutated.
    assert "x-kubernetes-validations" in crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_pid_alive_is_false_for_a_zombie() -> None:
    child = subprocess.Popen(["true"])
    eventually(lambda: True if not pid_alive(child.pid) else None, "the child to exit", 10)
    assert Path(f"/proc/{child.pid}").exists()  # not reaped yet: a zombie
    child.wait()


# ------------------------------------------------------------------------------- binary discovery


def _executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def release_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local stand-in for GitHub + dl.k8s.io serving a (fake) envtest release, with real checksums."""
    root = tmp_path / "www"
    version = localplane_build.ENVTEST_K8S_VERSION
    arch = localplane_build._go_arch()
    name = f"envtest-v{version}-linux-{arch}.tar.gz"
    payload = tmp_path / "payload" / "controller-tools" / "envtest"
    for binary in ("kube-apiserver", "etcd", "kubectl"):
        _executable(payload / binary, f"#!/bin/sh\necho {binary}\n")
    (root / "rel").mkdir(parents=True)
    with tarfile.open(root / "rel" / name, "w:gz") as tar:
        tar.add(tmp_path / "payload" / "controller-tools", arcname="controller-tools")
    kcm = _executable(root / "rel" / "kube-controller-manager", "#!/bin/sh\necho kcm\n")
    (root / "rel" / "kube-controller-manager.sha256").write_text(
        hashlib.sha256(kcm.read_bytes()).hexdigest() + "\n"
    )

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    index = {
        "releases": {
            f"v{version}": {
                name: {
                    "hash": hashlib.sha512((root / "rel" / name).read_bytes()).hexdigest(),
                    "selfLink": f"{base}/rel/{name}",
                }
            }
        }
    }
    (root / "envtest-releases.yaml").write_text(yaml.safe_dump(index))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base, root
    finally:
        server.shutdown()
        server.server_close()


def test_binary_discovery_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, release_server: tuple[str, Path]
) -> None:
    base, _root = release_server
    monkeypatch.delenv(localplane_build.ENV_NO_DOWNLOAD, raising=False)
    monkeypatch.delenv(localplane_build.ENV_BIN_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache = localplane_build.cache_root()
    # A finished Debian build in the cache (fake binaries: nothing is run here).
    for binary in localplane_build.DEBIAN_BUILT:
        _executable(cache / localplane_build.DEBIAN_CACHE_NAME / "bin" / binary)
    monkeypatch.setattr(localplane_build, "_ensure_debian_etcd", lambda: Path("/usr/bin/etcd"))

    # (b) unreachable -> (c), and the failure is remembered so later runs do not wait on the network.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    monkeypatch.setattr(localplane_build, "ENVTEST_INDEX_URL", f"{dead}/envtest-releases.yaml")
    assert localplane_build.ensure_binaries().source.startswith("Debian source package")
    monkeypatch.setattr(localplane_build, "ENVTEST_INDEX_URL", f"{base}/envtest-releases.yaml")
    monkeypatch.setattr(localplane_build, "K8S_RELEASE_URL", base + "/rel/{name}")
    assert localplane_build.ensure_binaries().source.startswith("Debian source package")

    # (b) on an explicit retry: downloaded, checksums verified, cached; then used from the cache.
    found = localplane_build.ensure_binaries(retry_download=True)
    assert found.source.startswith(f"envtest release v{localplane_build.ENVTEST_K8S_VERSION} (downloaded")
    for binary, says in ((found.kube_apiserver, "kube-apiserver"), (found.kube_controller_manager, "kcm")):
        assert subprocess.run([binary], capture_output=True, text=True, check=True).stdout == says + "\n"
    assert "(cached" in localplane_build.ensure_binaries().source
    assert not list(cache.glob(".staging-*"))

    # (a) wins over everything, and a wrong setting is an error, not a silent fallback.
    bin_dir = tmp_path / "mine"
    for binary in ("kube-apiserver", "kube-controller-manager", "etcd"):
        _executable(bin_dir / binary)
    monkeypatch.setenv(localplane_build.ENV_BIN_DIR, str(bin_dir))
    assert localplane_build.ensure_binaries().kube_apiserver == bin_dir / "kube-apiserver"
    monkeypatch.setenv(localplane_build.ENV_BIN_DIR, str(tmp_path / "missing"))
    with pytest.raises(localplane_build.BinariesError):
        localplane_build.ensure_binaries()


def test_envtest_download_rejects_a_bad_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, release_server: tuple[str, Path]
) -> None:
    base, root = release_server
    (root / "rel" / "kube-controller-manager.sha256").write_text("0" * 64 + "\n")
    monkeypatch.setattr(localplane_build, "ENVTEST_INDEX_URL", f"{base}/envtest-releases.yaml")
    monkeypatch.setattr(localplane_build, "K8S_RELEASE_URL", base + "/rel/{name}")
    dest = tmp_path / "envtest"
    with pytest.raises(localplane_build.DownloadError, match="sha256 mismatch"):
        localplane_build._download_envtest(dest)
    assert not dest.exists()
    assert not list(tmp_path.glob(".staging-*"))
