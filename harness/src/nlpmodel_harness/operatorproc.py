"""The operator as a separate process (`python -m nlpmodel_operator`), for tests, the demo and benchmarks.

It runs under the identity of the kubeconfig it is given (the local plane's restricted operator user),
in its own session so that it and anything it starts can be signalled as a group; its output goes
to a log file that is kept for a failing test to show.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["OperatorProcess"]


class OperatorProcess:
    """`python -m nlpmodel_operator` as the restricted user; its log is kept for failing tests."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        resync_seconds: float = 1.0,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        verbose: bool = True,
    ) -> None:
        self.extra_env = env or {}
        self.args = args if args is not None else ["--standalone"]  # e.g. ["--peering=NAME"]
        self.verbose = verbose  # tests read its debug log; the scale bench runs it as the chart does
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.resync_seconds = resync_seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "NLPMODEL_RESYNC_SECONDS": str(self.resync_seconds),
            # Models at rest are re-read less often; short here, so that tests see that path too.
            "NLPMODEL_SETTLED_RESYNC_SECONDS": str(10 * self.resync_seconds),
            "PYTHONUNBUFFERED": "1",
            "NLPMODEL_METRICS_PORT": "0",  # several operators may run on this machine over a session
            **self.extra_env,
        }
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nlpmodel_operator", *self.args, *(["--verbose"] if self.verbose else [])],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.pids.append(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to clean up (what a node failure does)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def __enter__(self) -> OperatorProcess:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
