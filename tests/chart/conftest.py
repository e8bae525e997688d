"""Chart and manifest tests with the real tools: helm 3.17 and kubectl 1.31 (fetched on first use into
~/.cache by nlpmodel_harness.k8stools), promtool (Debian's prometheus), Lua 5.1 (lupa)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chartlib import CHART, Render, helm_template

from nlpmodel_harness.k8stools import Tools, ensure_tools
from nlpmodel_harness.prometheus import ensure_prometheus


@pytest.fixture(scope="session")
def tools() -> Tools:
    return ensure_tools()


@pytest.fixture(scope="session")
def promtool() -> Path:
    return ensure_prometheus()[1]


@pytest.fixture(scope="session")
def render(tools: Tools) -> Render:
    """helm template with these arguments (e.g. -f FILE, --set k=v); fails the test on a helm error."""

    def _render(*args: str | Path, chart: Path = CHART) -> list[dict[str, Any]]:
        proc, docs = helm_template(tools.helm, *args, chart=chart)
        assert proc.returncode == 0, proc.stderr
        return docs

    return _render
