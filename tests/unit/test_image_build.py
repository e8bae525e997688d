"""The registry-free image builder's pure parts, on our real Dockerfiles, and the PodMonitor → targets
translation for real pods. (Building and running the images is the e2e_node tier's job.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nlpmodel_harness.checkout import REPO
from nlpmodel_harness.images import (
    BASE_IMAGE,
    Builder,
    Image,
    Layer,
    expand,
    normalized_name,
    parse_dockerfile,
)
from nlpmodel_harness.podmonitors import pod_targets
from nlpmodel_operator.api import constants as c
from nlpmodel_operator.core.monitoring import render_pod_monitor

RUNTIME_DOCKERFILE = REPO / "runtimes" / "transformers" / "Dockerfile"


def builder(dockerfile: Path, tmp_path: Path) -> Builder:
    base = Image(BASE_IMAGE, (Layer(tmp_path / "none.tar", "0" * 64),), {})
    return Builder(dockerfile, REPO, tag="t:1", build_args={}, base=base, work=tmp_path)


def test_every_instruction_of_our_dockerfiles_is_one_the_builder_implements() -> None:
    supported = {
        "ARG",
        "FROM",
        "WORKDIR",
        "COPY",
        "RUN",
        "ENV",
        "USER",
        "EXPOSE",
        "ENTRYPOINT",
        "CMD",
        "LABEL",
    }
    for dockerfile in (REPO / "Dockerfile", RUNTIME_DOCKERFILE):
        keywords = {i.keyword for i in parse_dockerfile(dockerfile.read_text())}
        assert keywords <= supported, dockerfile
        assert "FROM" in keywords


def test_continuation_lines_join_into_one_run() -> None:
    (run,) = [
        i for i in parse_dockerfile(RUNTIME_DOCKERFILE.read_text()) if i.keyword == "RUN" and "venv" in i.rest
    ]
    assert "python -m venv /opt/runtime && /opt/runtime/bin/pip install" in run.rest


def test_both_dockerfiles_take_the_base_image_as_a_build_argument() -> None:
    for dockerfile in (REPO / "Dockerfile", RUNTIME_DOCKERFILE):
        froms = [i.rest for i in parse_dockerfile(dockerfile.read_text()) if i.keyword == "FROM"]
        assert all(f.startswith("${BASE_IMAGE}") for f in froms), dockerfile


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$PATH:/x", "/bin:/x"),
        ("/opt/runtime/bin:${PATH}", "/opt/runtime/bin:/bin"),
        ("${UNSET:-fallback}", "fallback"),
        ("${UNSET}", ""),
    ],
)
def test_variables_expand_as_in_dockerfiles(text: str, expected: str) -> None:
    assert expand(text, {"PATH": "/bin"}) == expected


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("nlpmodel-operator:0.1.0", "docker.io/library/nlpmodel-operator:0.1.0"),
        (
            "ghcr.io/nlpmodel-operator/transformers-runtime:v0.1.0",
            "ghcr.io/nlpmodel-operator/transformers-runtime:v0.1.0",
        ),
        ("localhost/pause:local", "localhost/pause:local"),
        ("team/app", "docker.io/team/app:latest"),
    ],
)
def test_image_names_are_stored_as_containerd_normalises_them(name: str, stored: str) -> None:
    assert normalized_name(name) == stored


def test_the_operator_image_context_is_the_operator_only(tmp_path: Path) -> None:
    files = {str(p.relative_to(REPO)) for p in builder(REPO / "Dockerfile", tmp_path).context_files()}
    assert {"pyproject.toml", "README.md", "operator/nlpmodel_operator/__init__.py"} <= files
    assert not [f for f in files if f.startswith(("harness/", "tests/", ".venv/", "runtimes/"))]
    assert not [f for f in files if "__pycache__" in f or ".egg-info" in f]


def test_the_runtime_image_context_is_the_runtime_and_the_metrics_contract(tmp_path: Path) -> None:
    files = {str(p.relative_to(REPO)) for p in builder(RUNTIME_DOCKERFILE, tmp_path).context_files()}
    assert "runtimes/transformers/src/nlpmodel_runtime/server.py" in files
    assert "runtimes/metrics/pyproject.toml" in files
    assert not [f for f in files if not f.startswith(("runtimes/transformers/", "runtimes/metrics/"))]
    assert not [f for f in files if f.startswith("runtimes/transformers/tests/")]


def _pod(name: str, revision: str | None, ip: str | None, ready: bool = True) -> dict[str, Any]:
    labels = {c.LABEL_MODEL: "chat"}
    if revision:
        labels[c.LABEL_REVISION] = revision
    return {
        "metadata": {"name": name, "namespace": "ml", "labels": labels},
        "spec": {"containers": [{"name": "server", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_ready_revision_pods_become_targets_at_their_pod_ips() -> None:
    monitor = render_pod_monitor("chat", "ml")
    pods = [
        _pod("a", "5ab1e000", "10.88.0.5"),
        _pod("b", "ca4a2700", "10.88.0.6"),
        _pod("starting", "ca4a2700", "10.88.0.7", ready=False),
        _pod("no-revision", None, "10.88.0.8"),
    ]
    targets = pod_targets([monitor], pods)
    assert [(t.address, t.labels["nlpmodel_revision"]) for t in targets] == [
        ("10.88.0.5:8080", "5ab1e000"),
        ("10.88.0.6:8080", "ca4a2700"),
    ]
