"""`nlpctl render` is what the operator applies: each example (those valid and fitting, and the in-place
Knative canary) goes through the operator on the local control plane, and its live children are
exactly the objects `nlpctl render` prints, every rendered field equal on the live object (server
defaults and the owner reference aside)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import Cluster, OperatorProcess, missing_fields, run_operator, wait_for
from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_operator.controller.kube import Kube
from nlpmodel_operator.core.validation import object_problems

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
NLPCTL = str(Path(sys.executable).with_name("nlpctl"))
PROMETHEUS_URL = "http://prometheus.invalid:9090"  # never queried: autoscalers are rendered with it


def fitting() -> list[str]:
    """The examples that are valid and fit their GPUs (the others get no children)."""
    out = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        spec, problems = object_problems(yaml.safe_load(path.read_text()))
        if spec is not None and not problems and "does-not-fit" not in path.name:
            out.append(path.name)
    return out


@pytest.fixture(scope="module")
def operator(
    localplane: LocalPlane, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    yield from run_operator(localplane, tmp_path_factory, {"NLPMODEL_PROMETHEUS_URL": PROMETHEUS_URL})


def render(body: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    """`nlpctl render` as the Argo CD plugin runs it, told the operator's Prometheus."""
    manifest = tmp_path / "model.yaml"
    manifest.write_text(yaml.safe_dump(body))
    proc = subprocess.run(
        [NLPCTL, "render", str(manifest), "--prometheus-url", PROMETHEUS_URL],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [o for o in yaml.safe_load_all(proc.stdout) if o]


def identity(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


@pytest.mark.parametrize(
    ("file", "router"),
    [*((name, None) for name in fitting()), ("mistral-7b-nf4-transformers.yaml", "kserve-canary")],
)
def test_live_children_are_what_nlpctl_render_prints(
    cluster: Cluster,
    operator: OperatorProcess,
    localplane: LocalPlane,
    namespace: str,
    tmp_path: Path,
    file: str,
    router: str | None,
) -> None:
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / file).read_text())
    body["metadata"]["namespace"] = namespace
    if router is not None:
        body["spec"].setdefault("serving", {})["router"] = router
    rendered = render(body, tmp_path)
    assert all(o["metadata"]["namespace"] == namespace for o in rendered)
    model = cluster.apply_model(body)
    name, uid = model["metadata"]["name"], model["metadata"]["uid"]
    kube = Kube(localplane.admin_client(), "render-test")
    wanted = {identity(o) for o in rendered}

    def first_round() -> dict[tuple[str, str], dict[str, Any]] | None:
        """The live children once the operator has acted (it writes status after its actions)."""
        if not (cluster.model(namespace, name).get("status") or {}).get("observedGeneration"):
            return None
        found = {identity(o): o for o in kube.children(namespace, name, uid)}
        return found if wanted <= set(found) else None

    children = wait_for(f"{sorted(wanted)} and the model's status", first_round, 60)
    assert sorted(children) == sorted(wanted)  # nothing applied that nlpctl render leaves out
    for want in rendered:
        assert missing_fields(want, children[identity(want)]) == [], identity(want)
