"""The Argo CD health check of NLPModel (manifests/argocd/health/nlpmodel.lua) under Lua 5.1, as Argo CD
runs it (gopher-lua implements Lua 5.1): every phase maps to its health with the condition's message."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import run
from lupa import lua51

from nlpmodel_harness.k8stools import Tools
from nlpmodel_operator.api.constants import ConditionType, Phase, Reason

ARGOCD = Path(__file__).resolve().parents[2] / "manifests" / "argocd"
SCRIPT = (ARGOCD / "health" / "nlpmodel.lua").read_text()
CM_KEY = "resource.customizations.health.serving.nlpmodel.dev_NLPModel"


def to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([to_lua(runtime, v) for v in value])
    return value


def health(obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    assert runtime.lua_version == (5, 1)
    runtime.globals().obj = to_lua(runtime, obj)
    result = runtime.execute(SCRIPT)
    return str(result["status"]), str(result["message"])


def model(status: dict[str, Any] | None, generation: int = 2) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "chat", "namespace": "ml", "generation": generation}}
    if status is not None:
        body["status"] = {"observedGeneration": generation, **status}
    return body


def cond(type_: str, status: str, reason: str, message: str) -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


READY = cond(ConditionType.READY, "True", Reason.CHILDREN_READY, "1/1 replicas ready")
VALID = cond(ConditionType.SPEC_VALID, "True", Reason.VALID, "")

CASES = [
    (
        "ready",
        {"phase": Phase.READY, "conditions": [VALID, READY]},
        ("Healthy", "ChildrenReady: 1/1 replicas ready"),
    ),
    (
        "progressing",
        {
            "phase": Phase.PROGRESSING,
            "canaryWeight": 10,
            "conditions": [
                READY,
                cond(
                    ConditionType.PROGRESSING,
                    "True",
                    Reason.CANARY_PROGRESSING,
                    "canary 4d2e8b10 at 10%, step 1/2",
                ),
            ],
        },
        ("Progressing", "CanaryProgressing: canary 4d2e8b10 at 10%, step 1/2"),
    ),
    (
        "paused",
        {"phase": Phase.PROGRESSING, "paused": True, "canaryWeight": 50, "conditions": [READY]},
        ("Suspended", "Rollout paused at 50% (nlpctl resume)"),
    ),
    (
        "pending",
        {
            "phase": Phase.PENDING,
            "conditions": [
                cond(ConditionType.READY, "False", Reason.CHILDREN_NOT_READY, "predictor not ready")
            ],
        },
        ("Progressing", "ChildrenNotReady: predictor not ready"),
    ),
    (
        "rolled back",
        {
            "phase": Phase.ROLLED_BACK,
            "conditions": [
                READY,
                cond(
                    ConditionType.ROLLED_BACK,
                    "True",
                    Reason.ANALYSIS_FAILED,
                    "ttftP95 1.9s > 800ms in 2 consecutive checks",
                ),
            ],
        },
        ("Degraded", "AnalysisFailed: ttftP95 1.9s > 800ms in 2 consecutive checks"),
    ),
    (
        "failed",
        {
            "phase": Phase.FAILED,
            "conditions": [cond(ConditionType.READY, "False", Reason.DOES_NOT_FIT, "needs 2 × nvidia-l4")],
        },
        ("Degraded", "DoesNotFit: needs 2 × nvidia-l4"),
    ),
    (
        "invalid update while serving",
        {
            "phase": Phase.READY,
            "conditions": [
                READY,
                cond(
                    ConditionType.SPEC_VALID,
                    "False",
                    Reason.INVALID_SPEC,
                    "spec.rollout.steps: weights must ascend",
                ),
            ],
        },
        ("Degraded", "InvalidSpec: spec.rollout.steps: weights must ascend"),
    ),
    (
        "no status yet",
        None,
        ("Progressing", "Waiting for the operator to reconcile the model"),
    ),
    (
        "condition without message",
        {
            "phase": Phase.ROLLED_BACK,
            "conditions": [{"type": "RolledBack", "status": "True", "reason": "Aborted"}],
        },
        ("Degraded", "Aborted"),
    ),
]


@pytest.mark.parametrize(("status", "expected"), [(s, e) for _, s, e in CASES], ids=[c[0] for c in CASES])
def test_phase_maps_to_health_with_the_condition_message(
    status: dict[str, Any] | None, expected: tuple[str, str]
) -> None:
    assert health(model(status)) == expected


def test_every_phase_is_covered() -> None:
    assert {s["phase"] for _, s, _ in CASES if s} == set(Phase.ALL)


def test_a_status_of_an_older_generation_is_progressing() -> None:
    stale = model({"phase": Phase.READY, "conditions": [READY]}, generation=3)
    stale["status"]["observedGeneration"] = 2
    assert health(stale) == ("Progressing", "Waiting for the operator to observe generation 3")


def test_the_component_puts_the_script_into_argocd_cm(tools: Tools, tmp_path: Path) -> None:
    (tmp_path / "argocd-cm.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "argocd-cm", "namespace": "argocd"},
                "data": {"url": "https://argocd.example.com"},
            }
        )
    )
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": ["argocd-cm.yaml"], "components": [os.path.relpath(ARGOCD, tmp_path)]})
    )
    proc = run([tools.kubectl, "kustomize", "--load-restrictor=LoadRestrictionsNone", tmp_path])
    assert proc.returncode == 0, proc.stderr
    (cm,) = list(yaml.safe_load_all(proc.stdout))
    assert cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"] == {"url": "https://argocd.example.com", CM_KEY: SCRIPT}
