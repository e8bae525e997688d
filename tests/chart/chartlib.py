"""Helpers of the chart and manifest tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from hack.chartsync import CHART

RELEASE = "nlpm"
NAMESPACE = "nlpmodel-system"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))

Render = Callable[..., list[dict[str, Any]]]


def run(cmd: Sequence[str | Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False)


def helm_template(
    helm: Path, *args: str | Path, chart: Path = CHART
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    proc = run([helm, "template", RELEASE, chart, "--namespace", NAMESPACE, *args])
    docs = [d for d in yaml.safe_load_all(proc.stdout) if isinstance(d, dict)] if proc.returncode == 0 else []
    return proc, docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = of_kind(docs, kind)
    return found
