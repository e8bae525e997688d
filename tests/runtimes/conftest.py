"""The runtime tiers run in the cached runtime venv: built here when missing (never skipped)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlpmodel_harness import runtime_venv


@pytest.fixture(scope="session")
def runtime_python() -> Path:
    """The runtime venv's python; builds the venv (minutes, once) when it is missing or stale."""
    return runtime_venv.ensure()
