"""Child processes for test harnesses: free loopback ports, spawn with a log, stop exactly that PID.

The same rules as :mod:`nlpmodel_harness.localplane` (which keeps its own copy because it
also re-attaches to processes across CLI runs), in a module light enough to import from a process
that must start fast (the model-server stand-in imports nothing heavy).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["ChildError", "ChildProcess", "free_ports", "pid_alive", "tail"]

STOP_GRACE_S = 10.0


class ChildError(RuntimeError):
    """A child process did not start, get ready or stop."""


def free_ports(count: int = 1) -> list[int]:
    """Distinct free loopback ports (all held open while choosing, so no duplicates)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ...": comm may contain spaces and parentheses.
    return raw[raw.rindex(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie (a zombie is dead, merely not reaped yet)."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _starttime(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return int(stat[19]) if stat is not None else None  # field 22 of /proc/<pid>/stat


_PR_SET_PDEATHSIG = 1
_libc_name = ctypes.util.find_library("c")
_LIBC = ctypes.CDLL(_libc_name, use_errno=True) if _libc_name else None


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if the thread that started it dies (even by SIGKILL)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 32 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class ChildProcess:
    """One spawned command: own session, output to log_path, stopped by its PID only.

    tie_to_parent: the child gets SIGTERM when the starting thread dies, so a killed test run leaves
    nothing behind (only possible from the main thread: PDEATHSIG follows the thread, not the process).
    """

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        tie_to_parent: bool = True,
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log_path = log_path
        self._env = env
        self._tie = tie_to_parent
        self._popen: subprocess.Popen[bytes] | None = None
        self._starttime: int | None = None
        self.stopped_signal = False  # SIGSTOPped by us: SIGTERM alone would stay pending

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise ChildError(f"{self.name} not started")
        return self._popen.pid

    @property
    def started(self) -> bool:
        return self._popen is not None

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None and self._is_ours()

    def start(self) -> None:
        if self.running():
            raise ChildError(f"{self.name} already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        tie = self._tie and threading.current_thread() is threading.main_thread()
        with self.log_path.open("ab") as out:
            self._popen = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,  # own process group: Ctrl-C in a terminal does not reach it
                preexec_fn=_die_with_parent if tie else None,  # noqa: PLW1509 - only calls prctl
            )
        self._starttime = _starttime(self._popen.pid)
        self.stopped_signal = False

    def signal(self, sig: signal.Signals) -> None:
        """Send sig to exactly this child (no-op once it is gone)."""
        if self._popen is None or self._popen.poll() is not None or not self._is_ours():
            return
        os.kill(self._popen.pid, sig)
        if sig == signal.SIGSTOP:
            self.stopped_signal = True
        elif sig == signal.SIGCONT:
            self.stopped_signal = False

    def fail(self, what: str) -> ChildError:
        rc = self._popen.poll() if self._popen else None
        status = f"exited with code {rc}" if rc is not None else "still running"
        return ChildError(
            f"{self.name} {what} ({status}); last lines of {self.log_path}:\n{tail(self.log_path)}"
        )

    def wait_until(self, what: str, check: Callable[[], bool], timeout_s: float) -> None:
        """Poll check() until true; fail early when the child dies, with its log tail."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._popen is None or self._popen.poll() is not None:
                raise self.fail(f"died before it was {what}")
            with contextlib.suppress(OSError, ValueError):
                if check():
                    return
            if time.monotonic() > deadline:
                raise self.fail(f"was not {what} within {timeout_s:.0f}s")
            time.sleep(0.05)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM, then SIGKILL, to this child's PID (and its own process group); reap it."""
        popen = self._popen
        if popen is None:
            return
        if popen.poll() is not None:
            return
        if not self._is_ours():
            # Never signal a PID that now belongs to someone else.
            raise ChildError(f"pid {popen.pid} no longer runs the {self.name} we started")
        for sig, grace in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, sig)  # start_new_session made it a group leader
                if self.stopped_signal:
                    os.killpg(
                        popen.pid, signal.SIGCONT
                    )  # a stopped process only acts on SIGTERM once continued
            try:
                popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            self.stopped_signal = False
            return
        raise ChildError(f"{self.name} (pid {popen.pid}) survived SIGKILL")

    def _is_ours(self) -> bool:
        """The PID is still the process we started (guards against PID reuse)."""
        if self._popen is None:
            return False
        return self._starttime is None or _starttime(self._popen.pid) == self._starttime
