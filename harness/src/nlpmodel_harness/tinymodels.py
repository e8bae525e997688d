"""Tiny generative models built from configs, for real runtime pods (nothing downloaded).

    models_root()                        # /var/cache/nlpmodel-operator/models: a pod's model volume
    ensure(TinyModel("small", 2, 64))    # → models_root()/small, built once per machine

Each model is a GPT-2 of the given depth and width with random weights and a tokenizer trained on a few
sentences (:mod:`nlpmodel_harness.tinymodel_build`, run in the runtime venv). The set below gives a
real difference to roll out: ``large`` costs several times ``small`` per token on a CPU, ``small-v2``
is ``small`` again under another name (an equivalent new version).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from nlpmodel_harness import runtime_venv
from nlpmodel_harness.localplane_build import file_lock, log

__all__ = ["LARGE", "SMALL", "SMALL_V2", "TinyModel", "ensure", "models_root"]

BUILD_SCRIPT: Final = Path(__file__).with_name("tinymodel_build.py")


@dataclass(frozen=True)
class TinyModel:
    name: str
    layers: int
    hidden: int
    heads: int = 4


SMALL: Final = TinyModel("small", layers=2, hidden=64)
SMALL_V2: Final = TinyModel("small-v2", layers=2, hidden=64)
LARGE: Final = TinyModel("large", layers=12, hidden=512, heads=8)


ENV_MODELS_DIR: Final = "NLPMODEL_MODELS_DIR"
# Outside /root (mode 0700): the runtime's pods read it as UID 1000 through a hostPath volume.
DEFAULT_MODELS_DIR: Final = Path("/var/cache/nlpmodel-operator/models")


def models_root() -> Path:
    return Path(os.environ.get(ENV_MODELS_DIR) or DEFAULT_MODELS_DIR)


def _key(model: TinyModel) -> str:
    recipe = {"model": asdict(model), "script": BUILD_SCRIPT.read_text()}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def ensure(model: TinyModel) -> Path:
    """models_root()/<name>, (re)built when missing or built from another recipe."""
    root = models_root()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    directory = root / model.name
    stamp = root / f".{model.name}.key"
    with file_lock(root / ".build.lock"):
        if directory.is_dir() and stamp.is_file() and stamp.read_text() == _key(model):
            return directory
        python = runtime_venv.ensure()
        staging = root / f".{model.name}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [str(python), str(BUILD_SCRIPT), "--out", str(staging), "--layers", str(model.layers),
               "--hidden", str(model.hidden), "--heads", str(model.heads)]  # fmt: skip
        done = subprocess.run(
            cmd, capture_output=True, text=True, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"}
        )
        if done.returncode != 0:
            raise RuntimeError(f"building tiny model {model.name} failed:\n{done.stderr[-3000:]}")
        # Read by the runtime's unprivileged user (safetensors writes its file 0600).
        for path in (staging, *staging.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
        stamp.write_text(_key(model))
        log(f"tiny model {model.name}: {done.stdout.strip()}")
        return directory
