"""Our transformers runtime serving tiny models on this machine's CPU, one process each (real inference,
nothing downloaded: the models are built from configs by :mod:`nlpmodel_harness.tinymodels`)::

    with RuntimeServers((tinymodels.SMALL, tinymodels.LARGE), logs, runtime_python) as urls:
        urls["small"]  # http://127.0.0.1:<port>
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Final

from nlpmodel_harness import tinymodels
from nlpmodel_harness.checkout import find_repo
from nlpmodel_harness.childproc import ChildProcess, free_ports

__all__ = ["RuntimeServers"]

# The first start on a machine compiles and loads torch: minutes on two shared cores.
HEALTHY_WITHIN_S: Final = 180.0


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


class RuntimeServers:
    """One runtime per tiny model (task ``generate``), served under the model's own name."""

    def __init__(
        self,
        models: Sequence[tinymodels.TinyModel],
        logs: Path,
        runtime_python: Path,
        max_model_len: int = 128,
    ) -> None:
        self.models, self.logs, self.python, self.max_model_len = models, logs, runtime_python, max_model_len
        self.children: list[ChildProcess] = []
        self.urls: dict[str, str] = {}

    def __enter__(self) -> dict[str, str]:
        repo = find_repo()
        pythonpath = os.pathsep.join(str(repo / "runtimes" / d / "src") for d in ("transformers", "metrics"))
        env = {**os.environ, "PYTHONPATH": pythonpath, "HF_HUB_OFFLINE": "1"}
        try:
            for model, port in zip(self.models, free_ports(len(self.models)), strict=True):
                directory = tinymodels.ensure(model)
                cmd = [str(self.python), "-m", "nlpmodel_runtime", "--model-name", model.name,
                       "--model-dir", str(directory), "--task", "generate",
                       "--max-model-len", str(self.max_model_len), "--device", "cpu",
                       "--http-port", str(port), "--host", "127.0.0.1"]  # fmt: skip
                child = ChildProcess(model.name, cmd, self.logs / f"{model.name}.log", env=env)
                child.start()
                self.children.append(child)
                self.urls[model.name] = f"http://127.0.0.1:{port}"
            for child, url in zip(self.children, self.urls.values(), strict=True):
                child.wait_until("healthy (/health)", partial(_healthy, url), HEALTHY_WITHIN_S)
        except BaseException:
            self._stop()
            raise
        return dict(self.urls)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        for child in self.children:
            child.stop()
