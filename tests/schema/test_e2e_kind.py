"""e2e/kind cannot run here (no Docker): everything in it that can be checked offline is checked.

- the scripts parse (`bash -n`) and are shellcheck clean (Debian's shellcheck, installed when missing);
- every file the runner names exists, and every version it installs is pinned;
- the scenario is one NLPModel in three revisions that `nlpctl validate` accepts and our CRD (with its
  CEL rules) admits; its slow revision really is a larger model (on the same CPU, slower), the others
  the same model; what the operator renders for it (InferenceService, HTTPRoute, PodMonitor) passes the
  pinned upstream schemas, and the HTTPRoute's parent is the Gateway the runner creates;
- the built-in objects pass kubernetes-validate for the kind node's Kubernetes; the chart values pass
  the chart's values.schema.json and render the e2e operator image with the in-cluster Prometheus.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from hack.chartsync import CHART
from nlpmodel_harness.k8stools import ensure_tools
from nlpmodel_harness.localplane_build import ensure_apt_packages
from nlpmodel_harness.schemacheck import check_builtin_object, check_custom_object, check_object
from nlpmodel_harness.upstream_crds import load_crd, upstream_crd_files
from nlpmodel_operator.api.crd import crd as nlpmodel_crd
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.reconcile import Monitoring, Observation, decide
from nlpmodel_operator.core.records import Apply, RevisionState
from nlpmodel_operator.core.revision import revision_hash
from nlpmodel_operator.core.validation import object_problems

REPO = Path(__file__).resolve().parents[2]
KIND = REPO / "e2e" / "kind"
RUNNER = KIND / "run.sh"
SCRIPTS = sorted(REPO.glob("e2e/**/*.sh"))
SCENARIO = sorted((KIND / "scenario").glob("*.yaml"))
KIND_KUBERNETES = "1.31.0"  # the kind node image run.sh pins (kindest/node:v1.31.x)


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def shellcheck() -> str:
    found = shutil.which("shellcheck")
    if found is None:
        ensure_apt_packages(["shellcheck"])
        found = shutil.which("shellcheck")
    assert found is not None, "shellcheck could not be installed"
    return found


@pytest.mark.parametrize("script", SCRIPTS, ids=[str(s.relative_to(REPO)) for s in SCRIPTS])
def test_scripts_parse_and_are_shellcheck_clean(script: Path) -> None:
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
    lint = subprocess.run(
        [shellcheck(), "--severity=style", "--external-sources", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_runner_names_only_files_that_exist_and_pins_every_version() -> None:
    text = RUNNER.read_text()
    named = set(re.findall(r"\$here/([\w./-]+)", text)) | set(re.findall(r"\$repo/([\w./-]+)", text))
    missing = [
        n
        for n in sorted(named)
        if not n.startswith((".venv", ".e2e")) and not ((KIND / n).exists() or (REPO / n).exists())
    ]
    assert missing == []
    versions = dict(re.findall(r'^([A-Z_]+_VERSION)="\$\{[A-Z_]+:-([^}]+)\}"', text, re.M))
    assert set(versions) >= {
        "CERT_MANAGER_VERSION",
        "GATEWAY_API_VERSION",
        "ENVOY_GATEWAY_VERSION",
        "KSERVE_VERSION",
        "KUBE_PROMETHEUS_STACK_VERSION",
    }
    assert all(re.fullmatch(r"v?\d+\.\d+\.\d+", v) for v in versions.values()), versions
    node = re.search(r'KIND_NODE_IMAGE="\$\{KIND_NODE_IMAGE:-kindest/node:v(\d+\.\d+)\.\d+\}"', text)
    assert node is not None
    assert node[1] == KIND_KUBERNETES.rsplit(".", 1)[0]
    assert "latest" not in text


def test_the_scenario_is_one_model_whose_slow_revision_is_a_larger_model() -> None:
    assert [p.name for p in SCENARIO] == ["1-stable.yaml", "2-slow.yaml", "3-healthy.yaml"]
    bodies = [yaml.safe_load(p.read_text()) for p in SCENARIO]
    crd = nlpmodel_crd()
    for path, body in zip(SCENARIO, bodies, strict=True):
        spec, problems = object_problems(body)
        assert spec is not None, (path.name, problems)
        assert check_custom_object(body, crd) == [], path.name
        assert spec.runtime.engine == "transformers"
        assert spec.resources.gpu.count == 0  # a CPU model: kind has no GPUs
    assert {(b["metadata"]["namespace"], b["metadata"]["name"]) for b in bodies} == {("nlpmodel-e2e", "chat")}
    first, slow, healthy = (NLPModelSpec.model_validate(b["spec"]) for b in bodies)
    assert len({revision_hash(first), revision_hash(slow), revision_hash(healthy)}) == 3
    assert first.model.uri == healthy.model.uri != slow.model.uri
    assert first.model.architecture is not None
    assert slow.model.architecture is not None
    assert slow.model.architecture.params > 2 * first.model.architecture.params
    assert first.rollout.analysis is not None
    assert first.rollout.slo is not None


def mid_canary(body: dict[str, Any]) -> list[dict[str, Any]]:
    """What the operator applies for the scenario's slow revision as a canary at its first step."""
    spec = NLPModelSpec.model_validate(body["spec"])
    status = {
        "stableRevision": "5ab1e000",
        "canaryRevision": revision_hash(spec),
        "currentStep": 0,
        "canaryWeight": 20,
        "stepStartedAt": "2026-11-26T10:00:00Z",
        "canaryStartedAt": "2026-11-26T10:00:00Z",
    }
    obs = Observation(
        body["metadata"]["name"],
        body["metadata"]["namespace"],
        1,
        body["spec"],
        status,
        # Both up: a canary gets traffic only while it can serve.
        {r: RevisionState(r, (), True) for r in ("5ab1e000", revision_hash(spec))},
        "2026-11-26T10:00:01Z",
        monitoring=Monitoring(scrape_interval_s=5),
    )
    return [a.obj for a in decide(obs).actions if isinstance(a, Apply)]


def test_what_the_operator_renders_for_the_scenario_passes_the_upstream_schemas() -> None:
    crds = [load_crd(name) for name in upstream_crd_files()]
    applied = mid_canary(yaml.safe_load((KIND / "scenario" / "2-slow.yaml").read_text()))
    kinds = {o["kind"] for o in applied}
    assert {"InferenceService", "HTTPRoute", "PodMonitor"} <= kinds, kinds
    for obj in applied:
        assert check_object(obj, crds, kubernetes_version=KIND_KUBERNETES) == [], obj["kind"]
    (route,) = [o for o in applied if o["kind"] == "HTTPRoute"]
    (gateway,) = [d for d in docs(KIND / "manifests" / "gateway.yaml") if d["kind"] == "Gateway"]
    (parent,) = route["spec"]["parentRefs"]
    assert parent["name"] == gateway["metadata"]["name"]
    assert route["metadata"]["namespace"] == gateway["metadata"]["namespace"]
    assert [r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]] == [80, 20]
    (isvc,) = [o for o in applied if o["kind"] == "InferenceService"]
    assert isvc["spec"]["predictor"]["model"]["runtime"] == "nlpmodel-transformers"


def test_the_gateway_and_the_load_reach_the_model() -> None:
    gateway_docs = docs(KIND / "manifests" / "gateway.yaml")
    (gateway_class,) = [d for d in gateway_docs if d["kind"] == "GatewayClass"]
    (gateway,) = [d for d in gateway_docs if d["kind"] == "Gateway"]
    # Neither kind is among the pinned upstream CRDs: check what the runner relies on.
    assert gateway_class["spec"]["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"
    assert gateway["spec"]["gatewayClassName"] == gateway_class["metadata"]["name"]
    assert [(x["protocol"], x["port"]) for x in gateway["spec"]["listeners"]] == [("HTTP", 80)]
    (loadgen,) = docs(KIND / "manifests" / "loadgen.yaml")
    script = loadgen["spec"]["template"]["spec"]["containers"][0]["args"][0]
    served = yaml.safe_load(SCENARIO[0].read_text())["spec"]["model"]["servedName"]
    assert f'"model": "{served}"' in script


@pytest.mark.parametrize("name", ["namespace.yaml", "loadgen.yaml"])
def test_built_in_objects_pass_kubernetes_validate(name: str) -> None:
    for obj in docs(KIND / "manifests" / name):
        assert check_builtin_object(obj, KIND_KUBERNETES) == [], name


def test_kind_and_prometheus_configs_are_what_the_runner_expects() -> None:
    (cluster,) = docs(KIND / "cluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("kind.x-k8s.io/v1alpha4", "Cluster")
    assert cluster["nodes"]
    spec = yaml.safe_load((KIND / "prometheus-values.yaml").read_text())["prometheus"]["prometheusSpec"]
    assert spec["podMonitorSelectorNilUsesHelmValues"] is False  # it scrapes the operator's PodMonitors
    assert spec["ruleSelectorNilUsesHelmValues"] is False  # and evaluates the chart's alerts


def test_the_chart_values_pass_the_schema_and_render_the_e2e_operator() -> None:
    values = yaml.safe_load((KIND / "values.yaml").read_text())
    jsonschema.validate(values, yaml.safe_load((CHART / "values.schema.json").read_text()))
    rendered = subprocess.run(
        [str(ensure_tools().helm), "template", "nlpmodel-operator", str(CHART), "-n", "nlpmodel-system",
         "-f", str(KIND / "values.yaml")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # fmt: skip
    objects = [d for d in yaml.safe_load_all(rendered) if isinstance(d, dict)]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nlpmodel-operator:e2e"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NLPMODEL_PROMETHEUS_URL"] == "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"
    assert {"ServiceMonitor", "PrometheusRule"} <= {o["kind"] for o in objects}
