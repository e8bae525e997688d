"""`make demo` tells the whole story and leaves nothing behind.

The demo runs as `make demo` runs it, in its fast mode (shorter analysis interval and pauses) and
without a TTY (so one line per event): the slow canary must be rolled back with its reason, the healthy
one promoted, the canary that answers worse stopped by its evaluation at 0 % with its failing case ids,
the exit code 0, and every process it started (control plane, Prometheus, operator, model-server
stand-ins) gone.
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
    """And stops the canary that answers worse by its evaluation, before any traffic."""
    result = subprocess.run(
        [sys.executable, "-m", "nlpmodel_harness.demo", "--fast"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, (output + result.stderr)[-5000:]
    first, slow, healthy, worse = (
        revision(n)
        for n in (
            "chat-v1.yaml",
            "chat-v2-slow.yaml",
            "chat-v3-healthy.yaml",
            "evaluation/chat-v4-worse.yaml",
        )
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
    # The canary that answers worse, after that: its evaluation fails with the case ids, it never gets a
    # weight, and it is rolled back with the reason EvaluationFailed.
    assert "=== 4/4 " in output, output
    fourth = output.split("=== 4/4 ", 1)[1].split("=== summary ===", 1)[0]
    assert re.search(
        rf"evaluation FAIL +canary {worse} \d+% vs stable 100% on 40 cases .*; failing: order-\d+", fourth
    ), fourth
    gated = re.search(
        rf"ROLLED BACK {worse} \(RolledBack\): traffic back to stable {healthy}\n\s+reason (.*)", fourth
    )
    assert gated, fourth
    assert re.match(r"EvaluationFailed: .*exact .*worst cases: order-\d+", gated[1]), gated[1]
    assert not re.search(rf"canary {worse} weight [1-9]", fourth)
    assert f"canary {worse} weight never left 0%" in fourth
    # The summary.
    summary = output.split("=== summary ===", 1)[1]
    assert re.search(rf"chat-v1.yaml\s+{first}\s+Ready", summary)
    assert re.search(rf"chat-v2-slow.yaml\s+{slow}\s+RolledBack\s+\d+s\s+AnalysisFailed", summary)
    assert re.search(rf"chat-v3-healthy.yaml\s+{healthy}\s+Promoted", summary)
    assert re.search(rf"chat-v4-worse.yaml\s+{worse}\s+RolledBack\s+\d+s\s+EvaluationFailed", summary)
    # Not a terminal: plain lines, no cursor movement.
    assert "\x1b[" not in output

    started = re.search(r"stopped everything it started \((\d+) processes\): (\{.*\})", output)
    assert started, output
    pids: dict[str, list[int]] = json.loads(started[2])
    assert {"etcd", "kube-apiserver", "kube-controller-manager", "prometheus", "operator"} <= set(pids)
    assert len(pids["model-servers"]) >= 3  # one per revision that ran
    assert [pid for group in pids.values() for pid in group if pid_alive(pid)] == []
