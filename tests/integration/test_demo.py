"""`make demo` tells the whole story and leaves nothing behind.

The demo runs as `make demo` runs it, in its fast mode (shorter analysis interval and pauses) and
without a TTY (so one line per event): the slow canary must be rolled back with its reason, the healthy
one promoted, the exit code 0, and every process it started (control plane, Prometheus, operator,
model-server stand-ins) gone.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from nlpmodel_harness.localplane import pid_alive
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.revision import revision_hash

SCENARIO = Path(__file__).resolve().parents[2] / "manifests" / "demo"


def revision(name: str) -> str:
    body = yaml.safe_load((SCENARIO / name).read_text())
    return revision_hash(NLPModelSpec.model_validate(body["spec"]))


def test_the_demo_rolls_back_the_slow_canary_promotes_the_healthy_one_and_leaves_nothing_running() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nlpmodel_harness.demo", "--fast"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, (output + result.stderr)[-5000:]
    first, slow, healthy = (
        revision(n) for n in ("chat-v1.yaml", "chat-v2-slow.yaml", "chat-v3-healthy.yaml")
    )

    # The slow canary: failed checks with the TTFT of both revisions, then the rollback with its reason.
    assert re.search(r"check FAIL +ttft p95 stable \d+\.\d+s, canary", output), output
    rollback = re.search(
        rf"ROLLED BACK {slow} \(RolledBack\): traffic back to stable {first}\n\s+reason (.*)", output
    )
    assert rollback, output
    assert re.match(
        r"AnalysisFailed: .*ttft \d+% slower than stable .*p95 \d+\.\d+s vs \d+\.\d+s", rollback[1]
    )
    # The healthy canary, after that: promoted through its steps.
    promoted = output.index(f"PROMOTED {healthy}")
    assert promoted > rollback.start()
    assert re.search(rf"canary {healthy} weight 50% \(step 2\)", output)
    # The summary.
    summary = output.split("=== summary ===", 1)[1]
    assert re.search(rf"chat-v1.yaml\s+{first}\s+Ready", summary)
    assert re.search(rf"chat-v2-slow.yaml\s+{slow}\s+RolledBack\s+\d+s\s+AnalysisFailed", summary)
    assert re.search(rf"chat-v3-healthy.yaml\s+{healthy}\s+Promoted", summary)
    # Not a terminal: plain lines, no cursor movement.
    assert "\x1b[" not in output

    started = re.search(r"stopped everything it started \((\d+) processes\): (\{.*\})", output)
    assert started, output
    pids: dict[str, list[int]] = json.loads(started[2])
    assert {"etcd", "kube-apiserver", "kube-controller-manager", "prometheus", "operator"} <= set(pids)
    assert len(pids["model-servers"]) >= 3  # one per revision that ran
    assert [pid for group in pids.values() for pid in group if pid_alive(pid)] == []
