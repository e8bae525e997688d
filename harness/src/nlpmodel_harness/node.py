"""A real node beside the local control plane: containerd + runc + CNI bridge, kubelet, kube-proxy.

`LocalPlane(node=True)` (CLI: ``nlpctl localplane up --node``) starts kube-scheduler and these
processes itself; this module holds what is particular to the node: the configuration files, the
command lines, the pause image, and the teardown of the host state a node leaves behind (mounts, the
cni0 bridge, iptables chains, cgroups, ip_forward), with :func:`leftovers` to prove it is all gone.

Measured recipe and pitfalls: ``../shared/notes/real-node.md``. The fixes it lists live here:
``restrict_oom_score_adj`` (root lacks CAP_SYS_RESOURCE in these VMs), a local pause image built from
a tiny static C program (no registry), and cgroupfs on the hybrid cgroup v1 hierarchy. Only one node
may run per machine: the bridge, iptables chains and cgroups are global.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from nlpmodel_harness.images import Image, Layer, normalized_name
from nlpmodel_harness.localplane_build import (
    NODE_BIN_NAMES,
    BinariesError,
    cache_root,
    ensure_apt_packages,
    log,
)

__all__ = [
    "APT_PACKAGES",
    "NODE_NAME",
    "POD_CIDR",
    "NodeError",
    "NodePaths",
    "ctr",
    "ensure_pause_image",
    "host_ip",
    "leftovers",
    "node_binaries",
    "teardown_host_state",
]

# containerd 1.6 (bookworm) still serves CRI v1alpha2, the only version kubelet 1.20 speaks: not 2.x.
APT_PACKAGES: Final = (
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "conntrack",
    "iproute2",  # `ip link delete cni0` on teardown
    "gcc",  # the pause image's static binary
    "libc6-dev",
)
CNI_BIN_DIR: Final = Path("/usr/lib/cni")
NODE_NAME: Final = "localplane-node"
POD_CIDR: Final = "10.88.0.0/16"
BRIDGE: Final = "cni0"
PAUSE_IMAGE: Final = "localhost/pause:local"
CONTAINERD_NAMESPACE: Final = "k8s.io"
CGROUP_ROOTS: Final = ("kubepods", "k8s.io")
CHAIN_PREFIXES: Final = ("KUBE-", "CNI-")
NETNS_DIR: Final = Path("/var/run/netns")
IP_FORWARD: Final = Path("/proc/sys/net/ipv4/ip_forward")
CGROUP_FS: Final = Path("/sys/fs/cgroup")

# pause(): the sandbox's PID 1 holds the pod's namespaces; SIGTERM ends it, SIGCHLD reaps orphans.
PAUSE_C: Final = r"""
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  signal(SIGINT, stop); signal(SIGTERM, stop); signal(SIGCHLD, reap);
  for (;;) pause();
}
"""


class NodeError(RuntimeError):
    """The node could not be started or torn down."""


@dataclass(frozen=True)
class NodePaths:
    """Where one node keeps its files: run_dir is scratch (removed by teardown), the image store is not."""

    run_dir: Path

    @property
    def containerd_state(self) -> Path:
        return self.run_dir / "containerd-state"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.run_dir / "containerd.toml"

    @property
    def kubelet_root(self) -> Path:
        return self.run_dir / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.run_dir / "kubelet.yaml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.run_dir / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.run_dir / "cni" / "ipam"

    @property
    def saved_sysctls(self) -> Path:
        return self.run_dir / "sysctls.json"


def image_store() -> Path:
    """containerd's root (content and unpacked snapshots): kept across runs, so images import once."""
    return cache_root().parent / "node" / "containerd-root"


def node_binaries(bin_dir: Path) -> dict[str, Path]:
    """kube-scheduler, kubelet and kube-proxy beside the control plane's binaries (the Debian build)."""
    found = {name: bin_dir / name for name in NODE_BIN_NAMES}
    missing = [name for name, path in found.items() if not os.access(path, os.X_OK)]
    if missing:
        # envtest ships neither kubelet nor kube-proxy: the node needs the Debian build's binaries.
        raise BinariesError(
            f"the node needs {', '.join(missing)} in {bin_dir}; envtest and most release bundles lack them: "
            "unset $NLPMODEL_LOCALPLANE_BIN_DIR (or point it at a directory with all of them) so the "
            "Debian source build makes them"
        )
    return found


def host_ip() -> str:
    """The address other hosts (and pods) reach this machine on: pods cannot reach a loopback API."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("10.255.255.255", 1))  # UDP connect sends nothing; it only picks the route
        address = str(sock.getsockname()[0])
    if address.startswith("127."):
        raise NodeError("no non-loopback IPv4 address: the node's pods could not reach the API server")
    return address


# --------------------------------------------------------------------------------------- configuration


def containerd_config(paths: NodePaths) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join(
        [
            "version = 2",
            f'root = "{image_store()}"',
            f'state = "{paths.containerd_state}"',
            "[grpc]",
            f'  address = "{paths.containerd_socket}"',
            f"[{cri}]",
            f'  sandbox_image = "{PAUSE_IMAGE}"',
            # These VMs deny root lowering oom_score_adj (no CAP_SYS_RESOURCE): runc would fail every pod.
            "  restrict_oom_score_adj = true",
            f"[{cri}.cni]",
            f'  bin_dir = "{CNI_BIN_DIR}"',
            f'  conf_dir = "{paths.cni_conf_dir}"',
            f"[{cri}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            "",
        ]
    )


def cni_conflist(paths: NodePaths) -> str:
    return json.dumps(
        {
            "cniVersion": "0.4.0",
            "name": "localplane",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(paths.cni_ipam_dir),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
        indent=2,
    )


def kubelet_config(port: int, healthz_port: int) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",  # no systemd here; the v1 hierarchy is mounted
        "failSwapOn": False,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        # The API server calls the kubelet for logs/exec with no client certificate of ours.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        # A shared development disk is often fuller than the defaults allow: never evict, never GC.
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "resolvConf": "/etc/resolv.conf",
        "maxPods": 60,
    }
    return yaml.safe_dump(config, sort_keys=False)


def write_configs(paths: NodePaths, kubelet_port: int, healthz_port: int) -> None:
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    paths.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    image_store().mkdir(parents=True, exist_ok=True)
    paths.containerd_config.write_text(containerd_config(paths))
    (paths.cni_conf_dir / "10-localplane.conflist").write_text(cni_conflist(paths))
    paths.kubelet_config.write_text(kubelet_config(kubelet_port, healthz_port))


def save_sysctls(paths: NodePaths) -> None:
    """Remember ip_forward before the bridge plugin turns it on, so teardown can put it back."""
    if not paths.saved_sysctls.exists():
        paths.saved_sysctls.write_text(json.dumps({str(IP_FORWARD): IP_FORWARD.read_text().strip()}))


def containerd_cmd(paths: NodePaths) -> list[str]:
    return [_which("containerd"), f"--config={paths.containerd_config}"]


def kubelet_cmd(binary: Path, paths: NodePaths, kubeconfig: Path, node_ip: str) -> list[str]:
    return [
        str(binary),
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={paths.kubelet_root}",
        "--container-runtime=remote",
        f"--container-runtime-endpoint=unix://{paths.containerd_socket}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={node_ip}",
        "--v=1",
    ]


def kube_proxy_cmd(binary: Path, kubeconfig: Path, metrics_port: int, healthz_port: int) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        "--proxy-mode=iptables",
        # 0: leave nf_conntrack_max alone (read-only in these VMs).
        "--conntrack-max-per-core=0",
        f"--hostname-override={NODE_NAME}",
        f"--cluster-cidr={POD_CIDR}",
        f"--metrics-bind-address=127.0.0.1:{metrics_port}",
        f"--healthz-bind-address=127.0.0.1:{healthz_port}",
    ]


def scheduler_cmd(binary: Path, kubeconfig: Path, port: int) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--port=0",
        f"--secure-port={port}",
        "--bind-address=127.0.0.1",
    ]


def _which(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    if path is None:
        raise NodeError(f"{name} not found after installing {' '.join(APT_PACKAGES)}")
    return path


def ensure_host_packages() -> None:
    if os.geteuid() != 0:
        raise NodeError("a node needs root (containerd, mounts, iptables, cgroups)")
    ensure_apt_packages(APT_PACKAGES)


# ------------------------------------------------------------------------------------------ containerd


def ctr(paths: NodePaths, *args: str, stdin: Path | None = None) -> str:
    """Run ctr against this node's containerd, in the CRI's namespace."""
    cmd = [
        _which("ctr"),
        f"--address={paths.containerd_socket}",
        f"--namespace={CONTAINERD_NAMESPACE}",
        *args,
    ]
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(stdin.open("rb")) if stdin is not None else subprocess.DEVNULL
        done = subprocess.run(cmd, stdin=source, capture_output=True, text=False, check=False)
    if done.returncode != 0:
        raise NodeError(f"`{' '.join(cmd)}` failed: {done.stderr.decode(errors='replace').strip()[-2000:]}")
    return done.stdout.decode(errors="replace")


def containerd_serving(paths: NodePaths) -> bool:
    if not paths.containerd_socket.exists():
        return False
    try:
        ctr(paths, "version")
    except NodeError:
        return False
    return True


def image_names(paths: NodePaths) -> set[str]:
    return {line.split()[0] for line in ctr(paths, "images", "ls", "-q").splitlines() if line.strip()}


def ensure_pause_image(paths: NodePaths) -> None:
    """The sandbox image, built here from :data:`PAUSE_C` (a static binary; no registry)."""
    if normalized_name(PAUSE_IMAGE) in image_names(paths):
        return

    with tempfile.TemporaryDirectory(prefix="nlpmodel-pause-") as tmp:
        work = Path(tmp)
        (work / "pause.c").write_text(PAUSE_C)
        root = work / "root"
        root.mkdir()
        subprocess.run(
            [_which("gcc"), "-Os", "-static", "-o", str(root / "pause"), str(work / "pause.c")],
            check=True,
            capture_output=True,
        )
        layer = Layer.from_directory(root, work / "layer.tar")
        import_image(paths, Image(PAUSE_IMAGE, (layer,), {"Entrypoint": ["/pause"]}))
    log(f"built and imported {PAUSE_IMAGE}")


IMAGE_KEY_LABEL: Final = "dev.nlpmodel.harness/key"


def _image_key(paths: NodePaths, name: str) -> str | None:
    """The build key an imported image was labelled with (None: not there)."""
    rows = ctr(paths, "images", "ls", f"name=={normalized_name(name)}").splitlines()[1:]
    for row in rows:
        labels = row.split()[-1]
        for label in labels.split(","):
            key, _, value = label.partition("=")
            if key == IMAGE_KEY_LABEL:
                return value
        return ""
    return None


def import_image(paths: NodePaths, image: Image) -> None:
    """Make image available to kubelet under its name, unless this exact build is there already.

    The tarball is streamed into `ctr images import -` (never written out: the runtime is >1 GB)."""
    key = hashlib.sha256(json.dumps([image.config, [x.diff_id for x in image.layers]]).encode()).hexdigest()[
        :16
    ]
    if _image_key(paths, image.name) == key:
        return
    started = time.monotonic()
    cmd = [_which("ctr"), f"--address={paths.containerd_socket}", f"--namespace={CONTAINERD_NAMESPACE}",
           "images", "import", "-"]  # fmt: skip
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        assert proc.stdin is not None
        try:
            image.write_archive(proc.stdin)
        finally:
            proc.stdin.close()
        if proc.wait() != 0:
            err.seek(0)
            raise NodeError(
                f"ctr images import of {image.name} failed: {err.read().decode(errors='replace')[-2000:]}"
            )
    ctr(paths, "images", "label", normalized_name(image.name), f"{IMAGE_KEY_LABEL}={key}")
    log(f"imported {image.name} into containerd in {time.monotonic() - started:.0f}s")


# -------------------------------------------------------------------------------------------- teardown


def _mounts() -> list[str]:
    """Mount points, most recent last (as /proc/self/mountinfo lists them)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        points.append(point.encode().decode("unicode_escape"))  # \040 for spaces
    return points


def _our_mounts(paths: NodePaths) -> list[str]:
    # /var/run is a link to /run: mountinfo shows the resolved path.
    prefixes = (str(paths.run_dir) + "/", str(image_store()) + "/", str(NETNS_DIR.resolve() / "cni-"))
    return [m for m in _mounts() if m.startswith(prefixes)]


def _cgroup_dirs() -> list[Path]:
    """Our cgroups in every v1 hierarchy, deepest first."""
    found: list[Path] = []
    if not CGROUP_FS.is_dir():
        return found
    for hierarchy in CGROUP_FS.iterdir():
        for root_name in CGROUP_ROOTS:
            top = hierarchy / root_name
            if top.is_dir():
                found.extend(p for p in top.rglob("*") if p.is_dir())
                found.append(top)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for cg in _cgroup_dirs():
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(x) for x in (cg / "cgroup.procs").read_text().split())
    return pids


def _shim_pids(paths: NodePaths) -> set[int]:
    """containerd's shims for our socket: they re-parent to init, so find them by their -address."""
    pids: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(b"containerd-shim-runc-v2")
            and str(paths.containerd_socket).encode() in argv
        ):
            pids.add(int(proc.name))
    return pids


def kill_workloads(paths: NodePaths) -> None:
    """SIGKILL every process in the pods' cgroups, then the shims (kubelet is already stopped)."""
    for _ in range(3):
        pids = _cgroup_pids() | _shim_pids(paths)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


def _iptables_rules(tool: str, table: str) -> list[str]:
    done = subprocess.run([tool + "-save", "-t", table], capture_output=True, text=True, check=False)
    return done.stdout.splitlines() if done.returncode == 0 else []


def _our_chains(lines: Sequence[str]) -> list[str]:
    return [
        line[1:].split()[0] for line in lines if line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES)
    ]


def _iptables_tools() -> list[str]:
    return [
        t for t in ("iptables", "ip6tables") if shutil.which(t) or shutil.which(t, path="/usr/sbin:/sbin")
    ]


def clean_iptables() -> None:
    """Delete the rules jumping to KUBE-*/CNI-* chains, then flush and delete those chains."""
    for tool in _iptables_tools():
        for table in ("nat", "filter", "mangle"):
            lines = _iptables_rules(tool, table)
            for line in lines:
                if not line.startswith("-A "):
                    continue
                chain = line.split()[1]
                jumps = re.search(r"-j (KUBE-|CNI-)", line)
                if jumps and not chain.startswith(CHAIN_PREFIXES):
                    spec = shlex.split(line)[2:]
                    subprocess.run([tool, "-t", table, "-D", chain, *spec], capture_output=True, check=False)
            chains = _our_chains(lines)
            for chain in chains:
                subprocess.run([tool, "-t", table, "-F", chain], capture_output=True, check=False)
            for chain in chains:
                subprocess.run([tool, "-t", table, "-X", chain], capture_output=True, check=False)


def teardown_host_state(paths: NodePaths) -> list[str]:
    """After the node's processes are gone: unmount, drop the bridge, chains and cgroups, restore
    ip_forward, remove the run directory. Returns what could not be undone (empty when clean)."""
    kill_workloads(paths)
    problems: list[str] = []
    for point in reversed(_our_mounts(paths)):
        done = subprocess.run(["umount", point], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    if NETNS_DIR.is_dir():
        for ns in NETNS_DIR.glob("cni-*"):
            with contextlib.suppress(OSError):
                ns.unlink()
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)
    clean_iptables()
    for cg in _cgroup_dirs():
        for _ in range(20):  # a cgroup whose last task just died may be busy for a moment
            try:
                cg.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads(paths.saved_sysctls.read_text())
        for key, value in saved.items():
            Path(key).write_text(f"{value}\n")
    shutil.rmtree(paths.run_dir, ignore_errors=True)
    problems.extend(leftovers(paths))
    return problems


def leftovers(paths: NodePaths, ip_forward: str | None = None) -> list[str]:
    """What a node left on this host: empty after a clean teardown (the integration test's check)."""
    found: list[str] = []
    found += [f"mount {m}" for m in _our_mounts(paths)]
    found += [f"process {pid} (pod or shim)" for pid in sorted(_cgroup_pids() | _shim_pids(paths))]
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        found.append(f"network link {BRIDGE}")
    if NETNS_DIR.is_dir():
        found += [f"network namespace {ns}" for ns in NETNS_DIR.glob("cni-*")]
    for tool in _iptables_tools():
        for table in ("nat", "filter", "mangle"):
            found += [f"{tool} -t {table} chain {c}" for c in _our_chains(_iptables_rules(tool, table))]
    found += [f"cgroup {cg}" for cg in _cgroup_dirs()]
    if ip_forward is not None and IP_FORWARD.read_text().strip() != ip_forward:
        found.append(f"ip_forward is {IP_FORWARD.read_text().strip()}, was {ip_forward}")
    if paths.run_dir.exists():
        found.append(f"directory {paths.run_dir}")
    return found
