"""Find, download or build the binaries of the local control plane.

Discovery order (first hit wins):

1. ``$NLPMODEL_LOCALPLANE_BIN_DIR`` holding ``kube-apiserver``, ``kube-controller-manager`` and ``etcd``;
2. the official envtest release (controller-tools) for :data:`ENVTEST_K8S_VERSION` plus the matching
   ``kube-controller-manager`` from dl.k8s.io (envtest ships no controller-manager), cached;
3. kube-apiserver and kube-controller-manager built once from Debian's ``kubernetes`` source package
   (v1.20.2) with Debian's etcd. See ``../shared/notes/local-control-plane.md`` for why each step exists.

Everything is cached under ``$XDG_CACHE_HOME/nlpmodel-operator/localplane`` (default ``~/.cache``).
A cache entry is a directory that appears by an atomic rename, so an interrupted build or download
never leaves a half-filled entry behind; a file lock keeps concurrent callers from building twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nlpmodel_harness.childproc import tail

ENV_BIN_DIR = "NLPMODEL_LOCALPLANE_BIN_DIR"
ENV_NO_DOWNLOAD = "NLPMODEL_LOCALPLANE_NO_DOWNLOAD"

# Pinned current release; the index carries the sha512 of every tarball.
ENVTEST_K8S_VERSION = "1.34.1"
ENVTEST_INDEX_URL = (
    "https://raw.githubusercontent.com/kubernetes-sigs/controller-tools/main/envtest-releases.yaml"
)
K8S_RELEASE_URL = "https://dl.k8s.io/release/v{version}/bin/linux/{arch}/{name}"
CONNECT_TIMEOUT_S = 4.0
# After a failed download, later runs skip it for a while (no connect timeout per test session).
DOWNLOAD_RETRY_AFTER_S = 6 * 3600
DOWNLOAD_TIMEOUT_S = 60.0

BIN_NAMES = ("kube-apiserver", "kube-controller-manager", "etcd")
# The node's binaries (`localplane up --node`): built in the same `make` (about a minute more than two).
NODE_BIN_NAMES = ("kube-scheduler", "kubelet", "kube-proxy")
# What one Debian build produces, all from the same source tree.
DEBIAN_BUILT = (*BIN_NAMES[:2], *NODE_BIN_NAMES)
DEBIAN_CACHE_NAME = "debian-kubernetes"
# Debian's reflect2 1.0.2: the vendored 1.0.1 crashes (SIGSEGV in map iteration) when built with Go 1.19.
REFLECT2_SRC = Path("/usr/share/gocode/src/github.com/modern-go/reflect2")
# rsync must be present before the first `make`, or a 0-byte generator binary poisons _output/.
BUILD_APT_PACKAGES = (
    "golang-go",
    "rsync",
    "jq",
    "make",
    "etcd-server",
    "golang-github-modern-go-reflect2-dev",
)
PROGRESS_INTERVAL_S = 30.0


class BinariesError(RuntimeError):
    """No usable binaries could be found, downloaded or built."""


class DownloadError(RuntimeError):
    """The envtest download is unavailable (network refused, bad checksum, unknown version)."""


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kube_controller_manager: Path
    etcd: Path
    source: str  # human-readable: where they came from

    def as_dict(self) -> dict[str, str]:
        return {
            "kube-apiserver": str(self.kube_apiserver),
            "kube-controller-manager": str(self.kube_controller_manager),
            "etcd": str(self.etcd),
            "source": self.source,
        }


def log(message: str) -> None:
    """Progress goes to stderr so that stdout stays machine-readable for the CLI."""
    print(f"[localplane] {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nlpmodel-operator" / "localplane"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock; says so when it has to wait for another process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another process holding {path} (a build or download in progress)")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _complete(bin_dir: Path, names: Sequence[str]) -> bool:
    return all((bin_dir / n).is_file() and os.access(bin_dir / n, os.X_OK) for n in names)


def _read_manifest(entry: Path) -> dict[str, Any]:
    try:
        data = json.loads((entry / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def ensure_binaries(*, allow_download: bool | None = None, retry_download: bool = False) -> Binaries:
    """Return usable binaries, downloading or building them into the cache when missing.

    allow_download: None follows $NLPMODEL_LOCALPLANE_NO_DOWNLOAD. retry_download: try the envtest
    download even if it failed within DOWNLOAD_RETRY_AFTER_S.
    """
    env_dir = os.environ.get(ENV_BIN_DIR)
    if env_dir:
        bin_dir = Path(env_dir).expanduser()
        if not _complete(bin_dir, BIN_NAMES):
            # An explicit setting that does not work is a mistake to report, not to paper over.
            raise BinariesError(f"${ENV_BIN_DIR}={bin_dir} must contain executable {', '.join(BIN_NAMES)}")
        return _binaries_in(bin_dir, bin_dir / "etcd", f"${ENV_BIN_DIR} ({bin_dir})")

    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    envtest = root / f"envtest-{ENVTEST_K8S_VERSION}"
    if _complete(envtest / "bin", BIN_NAMES):
        return _binaries_in(envtest / "bin", envtest / "bin" / "etcd", _envtest_source(envtest, cached=True))

    if allow_download is None:
        allow_download = os.environ.get(ENV_NO_DOWNLOAD, "") in ("", "0")
    failed_marker = root / f"envtest-{ENVTEST_K8S_VERSION}.unavailable"
    if allow_download and not retry_download:
        failure = _recent_failure(failed_marker)
        if failure:
            log(f"envtest v{ENVTEST_K8S_VERSION} skipped: {failure}")
            allow_download = False
    if allow_download:
        try:
            with file_lock(root / "envtest.lock"):
                if not _complete(envtest / "bin", BIN_NAMES):
                    _download_envtest(envtest)
            failed_marker.unlink(missing_ok=True)
            return _binaries_in(
                envtest / "bin", envtest / "bin" / "etcd", _envtest_source(envtest, cached=False)
            )
        except DownloadError as exc:
            failed_marker.write_text(f"{exc}\n")
            log(f"envtest v{ENVTEST_K8S_VERSION} not available ({exc}); using Debian's kubernetes source")

    debian = root / DEBIAN_CACHE_NAME
    if not _complete(debian / "bin", DEBIAN_BUILT):
        with file_lock(root / "debian-build.lock"):
            if not _complete(debian / "bin", DEBIAN_BUILT):
                build_debian(debian)
    etcd = _ensure_debian_etcd()
    manifest = _read_manifest(debian)
    source = f"Debian source package kubernetes {manifest.get('source_version', '?')} (built {debian})"
    return _binaries_in(debian / "bin", etcd, source)


def _recent_failure(marker: Path) -> str | None:
    try:
        failed_at = marker.stat().st_mtime
        reason = marker.read_text().strip()
    except OSError:
        return None
    retry_at = failed_at + DOWNLOAD_RETRY_AFTER_S
    if time.time() >= retry_at:
        return None
    when = time.strftime("%H:%M", time.localtime(failed_at))
    again = time.strftime("%H:%M", time.localtime(retry_at))
    return f"download failed at {when} ({reason[:120]}); next try after {again} or with `localplane build`"


def _binaries_in(bin_dir: Path, etcd: Path, source: str) -> Binaries:
    return Binaries(
        kube_apiserver=bin_dir / "kube-apiserver",
        kube_controller_manager=bin_dir / "kube-controller-manager",
        etcd=etcd,
        source=source,
    )


def _envtest_source(entry: Path, *, cached: bool) -> str:
    how = "cached" if cached else "downloaded"
    return f"envtest release v{ENVTEST_K8S_VERSION} ({how}, {entry})"


# --------------------------------------------------------------------------------------------- download


def _go_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def _fetch(url: str, dest: Path | None = None, *, timeout: float) -> bytes:
    """GET url into memory, or stream it into dest (returns b"" then)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            if dest is None:
                return bytes(resp.read())
            with dest.open("wb") as out:
                shutil.copyfileobj(resp, out, length=1 << 20)
            return b""
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DownloadError(f"{url}: {exc}") from exc


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download_envtest(dest: Path) -> None:
    version, arch = ENVTEST_K8S_VERSION, _go_arch()
    log(f"trying envtest v{version} ({ENVTEST_INDEX_URL}, connect timeout {CONNECT_TIMEOUT_S:.0f}s)")
    index = yaml.safe_load(_fetch(ENVTEST_INDEX_URL, timeout=CONNECT_TIMEOUT_S))
    name = f"envtest-v{version}-linux-{arch}.tar.gz"
    try:
        entry = index["releases"][f"v{version}"][name]
        url, sha512 = str(entry["selfLink"]), str(entry["hash"])
    except (KeyError, TypeError) as exc:
        raise DownloadError(f"{name} not listed in the envtest index") from exc

    _remove_stale(dest.parent, ".staging-envtest-")
    staging = Path(tempfile.mkdtemp(prefix=".staging-envtest-", dir=dest.parent))
    try:
        bin_dir = staging / "bin"
        bin_dir.mkdir()
        tarball = staging / name
        log(f"downloading {url}")
        _fetch(url, tarball, timeout=DOWNLOAD_TIMEOUT_S)
        if _digest(tarball, "sha512") != sha512:
            raise DownloadError(f"{name}: sha512 mismatch")
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                base = Path(member.name).name
                if member.isfile() and base in ("kube-apiserver", "etcd"):
                    src = tar.extractfile(member)
                    if src is None:
                        continue
                    with src, (bin_dir / base).open("wb") as out:
                        shutil.copyfileobj(src, out)
        tarball.unlink()

        kcm_url = K8S_RELEASE_URL.format(version=version, arch=arch, name="kube-controller-manager")
        log(f"downloading {kcm_url}")
        kcm = bin_dir / "kube-controller-manager"
        _fetch(kcm_url, kcm, timeout=DOWNLOAD_TIMEOUT_S)
        want = _fetch(kcm_url + ".sha256", timeout=DOWNLOAD_TIMEOUT_S).decode().split()[0]
        if _digest(kcm, "sha256") != want:
            raise DownloadError("kube-controller-manager: sha256 mismatch")
        for n in BIN_NAMES:
            (bin_dir / n).chmod(0o755)
        if not _complete(bin_dir, BIN_NAMES):
            raise DownloadError(f"{name} lacks kube-apiserver or etcd")
        _write_manifest(staging, {"source": "envtest", "kubernetes_version": version})
        _install_entry(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------------------ debian build


def _privileged(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return cmd
    if shutil.which("sudo"):
        return ["sudo", "-n", *cmd]
    raise BinariesError(f"need root (or passwordless sudo) to run: {' '.join(cmd)}")


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise BinariesError(f"`{' '.join(cmd)}` failed with exit code {proc.returncode}:\n{tail}")
    return proc.stdout


def _dpkg_installed(package: str) -> bool:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return proc.returncode == 0 and proc.stdout.strip().endswith("ok installed")


def ensure_apt_packages(packages: Sequence[str]) -> None:
    """Install missing Debian packages (CI starts from a fresh machine)."""
    if shutil.which("dpkg-query") is None or shutil.which("apt-get") is None:
        raise BinariesError(f"apt is not available: install {' '.join(packages)} or set ${ENV_BIN_DIR}")
    missing = [p for p in packages if not _dpkg_installed(p)]
    if not missing:
        return
    log(f"apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(_privileged(["apt-get", "update", "-q"]), env=env)
    _run(_privileged(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]), env=env)


def _ensure_deb_src() -> None:
    """Add deb-src twins of the configured apt sources when `apt-get source` cannot see kubernetes."""
    if "Package: kubernetes" in _showsrc():
        return
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    legacy = Path("/etc/apt/sources.list")
    if deb822.is_file():
        text = re.sub(r"(?m)^Types:.*$", "Types: deb-src", deb822.read_text())
        target = Path("/etc/apt/sources.list.d/nlpmodel-operator-deb-src.sources")
    elif legacy.is_file():
        lines = [ln.replace("deb ", "deb-src ", 1) for ln in legacy.read_text().splitlines()]
        text = "\n".join(ln for ln in lines if ln.startswith("deb-src ")) + "\n"
        target = Path("/etc/apt/sources.list.d/nlpmodel-operator-deb-src.list")
    else:
        raise BinariesError("no apt sources found to derive deb-src entries from")
    log(f"adding deb-src entries in {target}")
    if os.geteuid() == 0:
        target.write_text(text)
    else:
        subprocess.run(
            _privileged(["tee", str(target)]), input=text, text=True, check=True, capture_output=True
        )
    _run(_privileged(["apt-get", "update", "-q"]))
    if "Package: kubernetes" not in _showsrc():
        raise BinariesError("apt has no source package `kubernetes` even with deb-src entries")


def _showsrc() -> str:
    proc = subprocess.run(["apt-cache", "showsrc", "kubernetes"], capture_output=True, text=True, check=False)
    return proc.stdout


def _ensure_debian_etcd() -> Path:
    etcd = shutil.which("etcd") or "/usr/bin/etcd"
    if not Path(etcd).is_file():
        ensure_apt_packages(["etcd-server"])
        etcd = shutil.which("etcd") or "/usr/bin/etcd"
    return Path(etcd)


def _remove_stale(parent: Path, prefix: str) -> None:
    """Leftovers of an interrupted build or download; callers hold the matching lock."""
    for p in parent.glob(f"{prefix}*"):
        log(f"removing leftover {p}")
        shutil.rmtree(p, ignore_errors=True)


def _write_manifest(entry: Path, data: dict[str, Any]) -> None:
    data = {**data, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (entry / "manifest.json").write_text(json.dumps(data, indent=2) + "\n")


def _install_entry(staging: Path, dest: Path) -> None:
    staging.chmod(0o755)  # mkdtemp made it private; the binaries are not secret
    if dest.exists():  # incomplete entry made by hand; the lock keeps real builds out
        shutil.rmtree(dest)
    os.rename(staging, dest)  # atomic: readers see nothing or a complete entry


def build_debian(dest: Path) -> None:
    """Build kube-apiserver and kube-controller-manager from Debian's `kubernetes` source package."""
    started = time.monotonic()
    root = dest.parent
    log(f"building {', '.join(DEBIAN_BUILT)} from Debian's `kubernetes` source package")
    log("this happens once per machine and takes about 6-15 minutes on 2 cores; later runs use the cache")
    log("phase 1/6: apt dependencies")
    ensure_apt_packages(BUILD_APT_PACKAGES)
    _ensure_deb_src()

    _remove_stale(root, "build-debian-")
    _remove_stale(root, ".staging-debian-")
    work = Path(tempfile.mkdtemp(prefix="build-debian-", dir=root))
    staging = Path(tempfile.mkdtemp(prefix=".staging-debian-", dir=root))
    try:
        log(f"phase 2/6: apt-get source --download-only kubernetes (in {work})")
        _run(["apt-get", "source", "--download-only", "kubernetes"], cwd=work)
        origs = sorted(work.glob("kubernetes_*.orig.tar.gz"))
        if not origs:
            raise BinariesError(f"apt-get source left no kubernetes_*.orig.tar.gz in {work}")
        source_version = origs[0].name.removeprefix("kubernetes_").removesuffix(".orig.tar.gz")

        log(f"phase 3/6: unpacking {origs[0].name}")
        _run(["tar", "xzf", origs[0].name], cwd=work)
        trees = [p for p in work.iterdir() if p.is_dir() and p.name.startswith("kubernetes-")]
        if len(trees) != 1:
            raise BinariesError(f"expected one kubernetes-* tree in {work}, found {trees}")
        tree = trees[0]

        log("phase 4/6: replacing vendor/github.com/modern-go/reflect2 with Debian's reflect2 1.0.2")
        _replace_reflect2(tree)

        log(f"phase 5/6: make WHAT='{' '.join(DEBIAN_BUILT)}' (the long part)")
        _make(tree, work)

        log("phase 6/6: installing into the cache")
        bin_dir = staging / "bin"
        bin_dir.mkdir()
        for name in DEBIAN_BUILT:
            built = tree / "_output" / "bin" / name
            if not built.is_file() or built.stat().st_size < 1_000_000:
                raise BinariesError(f"make succeeded but {built} is missing or truncated")
            shutil.copy2(built, bin_dir / name)
            (bin_dir / name).chmod(0o755)
        version = _run([str(bin_dir / "kube-apiserver"), "--version"]).strip()
        elapsed = time.monotonic() - started
        _write_manifest(
            staging,
            {
                "source": "debian-source-package",
                "source_version": source_version,
                "binary_version": version,
                "build_seconds": round(elapsed, 1),
            },
        )
        _install_entry(staging, dest)
        log(f"built {version} in {elapsed / 60:.1f} min -> {dest}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)


def _replace_reflect2(tree: Path) -> None:
    if not (REFLECT2_SRC / "reflect2.go").is_file():
        raise BinariesError(f"{REFLECT2_SRC} missing: install golang-github-modern-go-reflect2-dev")
    vendored = tree / "vendor" / "github.com" / "modern-go" / "reflect2"
    shutil.rmtree(vendored)
    # Vendored packages must not carry go.mod; tests are not needed.
    shutil.copytree(REFLECT2_SRC, vendored, ignore=shutil.ignore_patterns("go.mod", "go.sum", "*_test.go"))


def _make(tree: Path, work: Path) -> None:
    # As debian/rules does: GOPATH with the tree linked at k8s.io/kubernetes, no cgo.
    gopath = tree / ".go"
    (gopath / "src" / "k8s.io").mkdir(parents=True, exist_ok=True)
    link = gopath / "src" / "k8s.io" / "kubernetes"
    if not link.is_symlink():
        link.symlink_to("../../..")
    home = work / "home"
    home.mkdir(exist_ok=True)
    # hack/lib/golang.sh points GOCACHE here itself; we only watch it to show progress.
    gocache = tree / "_output" / "local" / "go" / "cache"
    env = {
        **os.environ,
        "GOPATH": str(gopath),
        "CGO_ENABLED": "0",
        "HOME": str(home),  # keeps go's other caches inside the temp dir
        "PATH": "/usr/lib/go/bin:" + os.environ.get("PATH", "/usr/bin:/bin"),
    }
    cmd = ["make", "WHAT=" + " ".join(f"cmd/{name}" for name in DEBIAN_BUILT)]
    built = [tree / "_output" / "bin" / name for name in DEBIAN_BUILT]
    log_path = work / "make.log"
    for attempt in (1, 2):
        rc = _run_with_progress(cmd, cwd=tree, env=env, log_path=log_path, gocache=gocache, products=built)
        if rc == 0:
            return
        last_lines = tail(log_path, 40)
        if attempt == 1 and "Permission denied" in last_lines:
            # A 0-byte generator left in _output/ (see notes): start _output afresh once.
            log("make failed with 'Permission denied'; removing _output and retrying once")
            shutil.rmtree(tree / "_output", ignore_errors=True)
            continue
        raise BinariesError(f"make failed with exit code {rc}; last lines of {log_path}:\n{last_lines}")


def _count_entries(path: Path) -> int:
    try:
        return sum(len(os.listdir(d)) for d in path.iterdir() if d.is_dir())
    except OSError:
        return 0


def _run_with_progress(
    cmd: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    gocache: Path,
    products: Sequence[Path],
) -> int:
    """Run cmd with output in log_path; echo make's own `+++` lines and a heartbeat every few seconds."""
    started = time.monotonic()
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        seen = 0
        try:
            while True:
                try:
                    return proc.wait(timeout=PROGRESS_INTERVAL_S)
                except subprocess.TimeoutExpired:
                    pass
                finally:
                    seen = _echo_new_lines(log_path, seen)
                elapsed = int(time.monotonic() - started)
                done = [p.name for p in products if p.is_file()] or ["-"]
                last = tail(log_path, 1).strip()[:100]
                log(
                    f"  make running {elapsed // 60}m{elapsed % 60:02d}s: {_count_entries(gocache)} "
                    f"go build cache entries, done: {', '.join(done)}; last output: {last or '-'}"
                )
        except BaseException:
            # Ctrl-C or any error: no orphaned compilers left behind.
            _kill_group(proc)
            raise


_TARGET_LINE = re.compile(r"^\s+(\./)?(cmd|vendor|staging)/\S+$")


def _echo_new_lines(log_path: Path, seen: int) -> int:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return seen
    for line in lines[seen:]:
        # make's own phase lines, the targets listed under them, and anything that looks wrong
        if line.startswith("+++") or _TARGET_LINE.match(line) or "error" in line.lower():
            log(f"  | {line.rstrip()[:200]}")
    return len(lines)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)


if __name__ == "__main__":  # pragma: no cover - convenience; the CLI lives in localplane.py
    print(json.dumps(ensure_binaries().as_dict(), indent=2))
