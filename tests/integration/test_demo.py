"""`make demo` ends by itself, shows both models Ready, and leaves no process behind."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

from nlpmodel_operator.devtools.localplane import pid_alive


def test_demo_runs_to_the_end_and_leaves_nothing_running() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nlpmodel_operator.cli.demo"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    final = output.split("=== kubectl get nlpm -A ===", 1)[1]
    assert re.search(r"support-assistant\s+generate\s+Ready\s+[0-9a-f]{8}", final), final
    assert re.search(r"bge-embed\s+embed\s+Ready\s+[0-9a-f]{8}", final), final
    assert "InferenceService  ml/support-assistant-" in output
    assert "Deployment        search/bge-embed-" in output
    pids = ast.literal_eval(re.search(r"pids (\{[^}]*\})", output).group(1))  # type: ignore[union-attr]
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    pids["operator"] = int(re.search(r"operator pid (\d+)", output).group(1))  # type: ignore[union-attr]
    assert not [name for name, pid in pids.items() if pid_alive(pid)]
