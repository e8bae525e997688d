"""manifests/: the kustomize base is the chart, the environment overlays build with kubectl kustomize into
NLPModels that `nlpctl validate` accepts, and the Argo CD examples point at what exists."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import Render, one, run

from hack.chartsync import BASE_NAMESPACE, BASE_RELEASE
from nlpmodel_harness.k8stools import Tools
from nlpmodel_operator.api.constants import KIND

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
ENVIRONMENTS = ("dev", "staging", "prod")
NLPCTL = Path(sys.executable).with_name("nlpctl")


def kustomize(tools: Tools, path: Path) -> list[dict[str, Any]]:
    proc = run([tools.kubectl, "kustomize", path])
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if isinstance(d, dict)]


def by_key(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_the_base_builds_into_the_chart_defaults_and_its_namespace(tools: Tools, render: Render) -> None:
    built = by_key(kustomize(tools, MANIFESTS / "base"))
    namespace = built.pop(("Namespace", BASE_NAMESPACE))
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    proc = run(
        [tools.helm, "template", BASE_RELEASE, REPO / "charts/nlpmodel-operator", "-n", BASE_NAMESPACE]
    )
    assert proc.returncode == 0, proc.stderr
    assert built == by_key([d for d in yaml.safe_load_all(proc.stdout) if isinstance(d, dict)])


@pytest.fixture(scope="module")
def environments(tools: Tools) -> dict[str, list[dict[str, Any]]]:
    return {env: kustomize(tools, MANIFESTS / "environments" / env) for env in ENVIRONMENTS}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_environment_builds_models_nlpctl_validates(
    environments: dict[str, list[dict[str, Any]]], env: str
) -> None:
    docs = environments[env]
    models = [d for d in docs if d["kind"] == KIND]
    assert models, f"{env} produces no NLPModel"
    assert {m["metadata"]["namespace"] for m in models} == {f"ml-{env}"}
    proc = subprocess.run(
        [NLPCTL, "validate", "-"], input=yaml.safe_dump_all(docs), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": valid (revision ") == len(models)


def test_environments_differ_in_replicas_steps_and_slos_but_serve_the_same_revision(
    environments: dict[str, list[dict[str, Any]]],
) -> None:
    specs = {env: one(docs, KIND)["spec"] for env, docs in environments.items()}
    for field in ("scaling", "rollout"):
        assert len({yaml.safe_dump(s[field]) for s in specs.values()}) == 3, field
    assert [len(specs[e]["rollout"]["steps"]) for e in ENVIRONMENTS] == [1, 2, 3]
    assert [specs[e]["scaling"]["maxReplicas"] for e in ENVIRONMENTS] == [1, 3, 8]
    revisions = set()
    for docs in environments.values():
        proc = subprocess.run(
            [NLPCTL, "validate", "-"],
            input=yaml.safe_dump_all(docs),
            capture_output=True,
            text=True,
            check=True,
        )
        revisions.add(proc.stdout.split("revision ")[1].split(",")[0])
    # What is promoted from dev to prod is one serving template: the same revision everywhere.
    assert len(revisions) == 1


def test_the_applicationset_has_one_application_per_overlay() -> None:
    appset = yaml.safe_load((MANIFESTS / "environments" / "applicationset.yaml").read_text())
    envs = [e["env"] for e in appset["spec"]["generators"][0]["list"]["elements"]]
    assert envs == list(ENVIRONMENTS)
    template = appset["spec"]["template"]["spec"]
    for env in envs:
        path = template["source"]["path"].replace("{{ .env }}", env)
        assert (REPO / path / "kustomization.yaml").is_file(), path
        assert template["destination"]["namespace"].replace("{{ .env }}", env) == f"ml-{env}"


def test_the_operator_application_uses_the_chart_with_valid_values(tools: Tools, tmp_path: Path) -> None:
    app = yaml.safe_load((MANIFESTS / "argocd" / "application.yaml").read_text())
    source = app["spec"]["source"]
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(source["helm"]["valuesObject"]))
    proc = run([tools.helm, "template", source["helm"]["releaseName"], REPO / source["path"], "-f", values])
    assert proc.returncode == 0, proc.stderr
    assert "kind: PrometheusRule" in proc.stdout


def test_the_config_management_plugin_renders_a_model_directory(tools: Tools, tmp_path: Path) -> None:
    """The plugin's own discover and generate commands, run as the CMP server would in a checkout."""
    plugin = yaml.safe_load((MANIFESTS / "argocd" / "cmp" / "plugin.yaml").read_text())["spec"]
    app = yaml.safe_load((MANIFESTS / "argocd" / "cmp" / "application.yaml").read_text())
    checkout = REPO / app["spec"]["source"]["path"]
    env = {
        **os.environ,
        "ARGOCD_APP_NAMESPACE": "ml",
        "PATH": f"{NLPCTL.parent}{os.pathsep}{os.environ['PATH']}",
    }
    found = subprocess.run(
        plugin["discover"]["find"]["command"],
        check=False,
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
    )
    assert found.stdout.strip(), "the plugin does not discover the application's directory"
    generate = plugin["generate"]["command"]
    proc = subprocess.run(generate, cwd=checkout, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{shlex.join(generate)}: {proc.stderr}"
    children = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert children
    assert all(c["metadata"]["namespace"] == "ml" for c in children)
    component = kustomize_component(tools, tmp_path, MANIFESTS / "argocd" / "cmp")
    assert (
        component["ConfigMap"]["data"]["plugin.yaml"]
        == (MANIFESTS / "argocd" / "cmp" / "plugin.yaml").read_text()
    )
    sidecar = component["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert sorted(c["name"] for c in sidecar) == ["argocd-repo-server", "nlpctl-render"]


def kustomize_component(tools: Tools, tmp_path: Path, component: Path) -> dict[str, dict[str, Any]]:
    """Build a component on a stand-in argocd-repo-server, as an Argo CD installation would use it."""
    repo_server = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "argocd-repo-server", "namespace": "argocd"},
        "spec": {
            "selector": {"matchLabels": {"app": "repo"}},
            "template": {
                "metadata": {"labels": {"app": "repo"}},
                "spec": {"containers": [{"name": "argocd-repo-server", "image": "argocd"}]},
            },
        },
    }
    (tmp_path / "repo-server.yaml").write_text(yaml.safe_dump(repo_server))
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {"resources": ["repo-server.yaml"], "components": [os.path.relpath(component, tmp_path)]}
        )
    )
    docs = kustomize(tools, tmp_path)
    return {d["kind"]: d for d in docs}
