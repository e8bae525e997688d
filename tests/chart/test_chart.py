"""The Helm chart with real Helm: lint, every ci/ scenario renders into objects their real schemas accept,
values.schema.json rejects bad values, least-privilege RBAC from the one rules file, the restricted pod
profile, CRDs gated and kept, operator configuration reaching the operator, generated copies current."""

from __future__ import annotations

import json
import shutil
import string
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import NAMESPACE, SCENARIOS, Render, helm_template, of_kind, one, run

from hack.chartsync import (
    BASE,
    BASE_FILE,
    CHART,
    expected_chart_files,
    render_base,
    stale_runtime_copies,
)
from nlpmodel_harness.k8stools import Tools
from nlpmodel_harness.rbac import operator_rules
from nlpmodel_harness.schemacheck import check_object
from nlpmodel_harness.upstream_crds import load_crd, upstream_crd_files
from nlpmodel_operator.api.constants import CRD_NAME
from nlpmodel_operator.controller.config import OperatorConfig
from nlpmodel_operator.core.gpus import GPU_PRODUCTS
from nlpmodel_operator.core.pricing import Prices

REPO = CHART.parents[1]
SCENARIO_IDS = [p.name for p in SCENARIOS]


@pytest.fixture(scope="module")
def upstream_crds() -> list[dict[str, Any]]:
    return [load_crd(name) for name in upstream_crd_files()]


@pytest.fixture(scope="module", params=SCENARIOS, ids=SCENARIO_IDS)
def scenario(request: pytest.FixtureRequest, render: Render) -> list[dict[str, Any]]:
    return render("-f", request.param)


# ------------------------------------------------------------------------------------------ helm


@pytest.mark.parametrize("values", SCENARIOS, ids=SCENARIO_IDS)
def test_lint_passes_strictly(tools: Tools, values: Path) -> None:
    proc = run([tools.helm, "lint", "--strict", CHART, "-f", values])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_ci_scenarios_turn_every_part_on_and_off() -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    scenarios = [yaml.safe_load(p.read_text()) or {} for p in SCENARIOS]
    for part in (
        "serviceMonitor",
        "prometheusRule",
        "dashboards",
        "servingRuntimes",
        "crds",
        "peering",
        "rbac",
    ):
        seen = {s.get(part, {}).get("enabled", defaults[part].get("enabled")) for s in scenarios}
        if part == "rbac":
            seen = {s.get(part, {}).get("create", defaults[part]["create"]) for s in scenarios}
        assert seen == {True, False}, part
    assert any(s.get("operator", {}).get("watchNamespaces") for s in scenarios)


def test_every_rendered_object_passes_its_real_schema(
    scenario: list[dict[str, Any]], upstream_crds: list[dict[str, Any]]
) -> None:
    assert scenario
    for obj in scenario:
        problems = check_object(obj, upstream_crds, kubernetes_version="1.30.0")
        assert problems == [], f"{obj['kind']} {obj['metadata'].get('name')}: {problems}"


def test_every_object_carries_the_recommended_labels(scenario: list[dict[str, Any]]) -> None:
    for obj in scenario:
        labels = obj["metadata"].get("labels") or {}
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "helm.sh/chart"):
            assert key in labels, f"{obj['kind']} {obj['metadata']['name']} lacks {key}"


# -------------------------------------------------------------------------------- values schema

BAD_VALUES = [
    (["--set", "replicaCount=2"], "Additional property replicaCount is not allowed"),
    (["--set", "operator.prometheusURL=http://p"], "Additional property prometheusURL is not allowed"),
    (["--set", "serviceMonitor.enable=true"], "Additional property enable is not allowed"),
    (["--set", "metrics.port=http"], "metrics.port: Invalid type"),
    (["--set", "metrics.port=70000"], "metrics.port: Must be less than or equal to 65535"),
    (["--set-string", "crds.enabled=yes"], "crds.enabled: Invalid type"),
    (["--set", "operator.watchNamespaces=team-a"], "operator.watchNamespaces: Invalid type"),
    (["--set", "operator.watchNamespaces={Team_A}"], "operator.watchNamespaces.0: Does not match pattern"),
    (
        ["--set", "operator.defaultRouter=istio"],
        "operator.defaultRouter: operator.defaultRouter must be one of",
    ),
    (["--set", "operator.prometheusUrl=prometheus:9090"], "operator.prometheusUrl: Does not match pattern"),
    (["--set", "image.digest=latest"], "image.digest: Does not match pattern"),
    (["--set", "resources.cpu=1"], "Additional property cpu is not allowed"),
    (["--set", "pricing.gpuHour.nvidia-rtx-4090=1"], "Additional property nvidia-rtx-4090 is not allowed"),
    (
        ["--set", "pricing.gpuHour.nvidia-l4=-1"],
        "pricing.gpuHour.nvidia-l4: Must be greater than or equal to 0",
    ),
    (["--set", "pricing.cpuHour=-1"], "pricing.cpuHour: Must be greater than or equal to 0"),
    (
        ["--set", "pricing.dailyBudgets.team-a=-1"],
        "pricing.dailyBudgets.team-a: Must be greater than or equal to 0",
    ),
    (["--set-string", "pricing.dailyBudgets.team-a=250"], "pricing.dailyBudgets.team-a: Invalid type"),
    (["--set", "pricing.dailyBudgets.Team_A=1"], "pricing.dailyBudgets: Does not match pattern"),
]


@pytest.mark.parametrize(("args", "message"), BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_schema_rejects_bad_values(tools: Tools, args: list[str], message: str) -> None:
    proc, _ = helm_template(tools.helm, *args)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_every_gpu_product_the_planner_knows_can_be_priced_and_no_other() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    priced = schema["properties"]["pricing"]["properties"]["gpuHour"]["properties"]
    assert set(priced) == set(GPU_PRODUCTS)


def test_without_prices_the_operator_prices_nothing(render: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    container = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for env in container["env"]:
        if "value" in env:
            monkeypatch.setenv(env["name"], env["value"])
    assert OperatorConfig.from_env().prices == Prices()


def test_namespace_budgets_reach_the_operator(render: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    """pricing.dailyBudgets travels in NLPMODEL_PRICING with the prices (one currency for both)."""
    docs = render("--set", "pricing.dailyBudgets.team-a=250", "--set", "pricing.currency=EUR")
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for env in container["env"]:
        if "value" in env:
            monkeypatch.setenv(env["name"], env["value"])
    assert OperatorConfig.from_env().prices == Prices(currency="EUR", daily_budgets={"team-a": 250.0})


def test_defaults_and_ci_values_satisfy_the_schema_that_rejects_the_rest(render: Render) -> None:
    # The positive twin of the rejections above: the same keys with good values render.
    render("--set", "metrics.port=9100", "--set", "operator.defaultRouter=replica-ratio")


# ---------------------------------------------------------------------------------------- RBAC


def rbac_rules(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for role in of_kind(docs, "ClusterRole") + of_kind(docs, "Role"):
        for rule in role.get("rules") or []:
            yield f"{role['kind']} {role['metadata']['name']}", rule


def test_rbac_has_no_wildcards_and_no_secret_access(scenario: list[dict[str, Any]]) -> None:
    for where, rule in rbac_rules(scenario):
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert "*" not in (rule.get(field) or []), f"{where}: wildcard in {field}"
        assert not {"secrets", "secrets/*"} & set(rule.get("resources") or []), f"{where}: {rule}"


def test_rbac_check_catches_what_it_forbids() -> None:
    # The check above can fail: a Secret rule or a wildcard is found.
    bad = [{"kind": "ClusterRole", "metadata": {"name": "x"}, "rules": [{"resources": ["secrets"]}]}]
    assert [rule for _, rule in rbac_rules(bad) if "secrets" in rule["resources"]]


def test_operator_cluster_role_is_the_rules_file_the_integration_tests_bind(render: Render) -> None:
    docs = render()
    (role,) = [r for r in of_kind(docs, "ClusterRole") if not r["metadata"]["name"].endswith("-peering")]
    assert role["rules"] == operator_rules()
    (binding,) = [
        b for b in of_kind(docs, "ClusterRoleBinding") if b["roleRef"]["name"] == role["metadata"]["name"]
    ]
    sa = one(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


def test_peering_is_cluster_wide_or_per_watched_namespace(render: Render) -> None:
    cluster = render()
    (peering_role,) = [
        r for r in of_kind(cluster, "ClusterRole") if r["metadata"]["name"].endswith("-peering")
    ]
    assert {r for rule in peering_role["rules"] for r in rule["resources"]} == {"clusterkopfpeerings"}
    args = one(cluster, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["--peering=nlpm-nlpmodel-operator"]

    teams = render("--set", "operator.watchNamespaces={team-a,team-b}", "--set", "peering.name=teams")
    roles = of_kind(teams, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(rule["resources"] == ["kopfpeerings"] for r in roles for rule in r["rules"])
    assert sorted(b["metadata"]["namespace"] for b in of_kind(teams, "RoleBinding")) == ["team-a", "team-b"]
    args = one(teams, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["--peering=teams", "--namespace=team-a", "--namespace=team-b"]

    standalone = render("--set", "peering.enabled=false")
    assert not [r for r in of_kind(standalone, "ClusterRole") if r["metadata"]["name"].endswith("-peering")]
    assert one(standalone, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "--standalone"
    ]


# ------------------------------------------------------------------------- restricted pod profile


def restricted_violations(pod_spec: Mapping[str, Any]) -> list[str]:
    """What the restricted Pod Security Standard forbids or requires, checked on one pod spec."""
    problems = []
    pod_ctx = pod_spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(flag):
            problems.append(f"{flag} is set")
    for volume in pod_spec.get("volumes") or []:
        if "hostPath" in volume:
            problems.append(f"volume {volume['name']} is a hostPath")
    containers = (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or [])
    for c in containers:
        ctx = c.get("securityContext") or {}
        name = c["name"]
        if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
            problems.append(f"{name}: runs as uid 0")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if ctx.get("privileged"):
            problems.append(f"{name}: privileged")
        caps = ctx.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{name}: capabilities not dropped (drop: [ALL])")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {caps['add']}")
        seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{name}: seccompProfile is {seccomp}")
        if ctx.get("readOnlyRootFilesystem") is not True:  # beyond restricted: the issue asks for it
            problems.append(f"{name}: root filesystem is writable")
    return problems


def test_the_operator_pod_meets_the_restricted_profile(scenario: list[dict[str, Any]]) -> None:
    pod = one(scenario, "Deployment")["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []


def test_the_restricted_check_finds_each_violation() -> None:
    bad = {
        "hostNetwork": True,
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        "containers": [
            {"name": "c", "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}}
        ],
    }
    assert len(restricted_violations(bad)) == 9


def test_probes_hit_healthz_on_the_metrics_port_and_resources_are_left_to_the_user(render: Render) -> None:
    container = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert "resources" not in container
    sized = render("--set", "resources.requests.cpu=100m")
    assert one(sized, "Deployment")["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "100m"}
    }


def test_a_single_replica(scenario: list[dict[str, Any]]) -> None:
    assert one(scenario, "Deployment")["spec"]["replicas"] == 1


# ------------------------------------------------------------------------- operator configuration


def test_values_reach_the_operator_configuration(render: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(
        "--set",
        "operator.prometheusUrl=http://prom.monitoring:9090",
        "--set",
        "operator.resyncSeconds=30",
        "--set",
        "operator.scrapeIntervalSeconds=10",
        "--set",
        "metrics.port=9100",
        "--set",
        "operator.podMonitors=false",
        "--set-json",  # --set reads 4.5 as a string
        'pricing={"gpuHour": {"nvidia-h100-80gb": 4.5, "nvidia-l4": 0.8}, "cpuHour": 0.04}',
        "--set",
        "operator.modelNetworkPolicy.enabled=true",
        "--set",
        "operator.modelNetworkPolicy.prometheusNamespace=prom",
    )
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for env in container["env"]:
        if "value" in env:
            monkeypatch.setenv(env["name"], env["value"])
    config = OperatorConfig.from_env()
    assert config.prometheus_url == "http://prom.monitoring:9090"
    assert config.resync_seconds == 30
    assert config.scrape_interval_seconds == 10
    assert config.metrics_port == 9100
    assert config.pod_monitors is False
    assert config.prices == Prices(gpu_hour={"nvidia-h100-80gb": 4.5, "nvidia-l4": 0.8}, cpu_hour=0.04)
    assert (config.network_policies, config.network_policy_prometheus_namespace) == (True, "prom")
    assert one(docs, "Service")["spec"]["ports"][0]["port"] == 9100


def test_an_empty_prometheus_url_means_no_analysis(render: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    container = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for env in container["env"]:
        if "value" in env:
            monkeypatch.setenv(env["name"], env["value"])
    assert OperatorConfig.from_env().prometheus_url is None


# ------------------------------------------------------------------------------------------ CRDs


def nlpmodel_crd(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (crd,) = [d for d in of_kind(docs, "CustomResourceDefinition") if d["metadata"]["name"] == CRD_NAME]
    return crd


def router_default(crd: Mapping[str, Any]) -> str:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return str(schema["properties"]["spec"]["properties"]["serving"]["properties"]["router"]["default"])


def test_the_chart_crd_is_the_generated_one_with_chart_metadata(render: Render) -> None:
    source = yaml.safe_load((REPO / "crds" / f"{CRD_NAME}.yaml").read_text())
    rendered = nlpmodel_crd(render())
    assert rendered["spec"] == source["spec"]
    assert rendered["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert source["metadata"]["labels"].items() <= rendered["metadata"]["labels"].items()


def test_default_router_becomes_the_crd_default(render: Render) -> None:
    assert router_default(nlpmodel_crd(render())) == "gateway-api"
    assert (
        router_default(nlpmodel_crd(render("--set", "operator.defaultRouter=replica-ratio")))
        == "replica-ratio"
    )


def test_crds_are_gated_and_kept(render: Render) -> None:
    assert not of_kind(render("--set", "crds.enabled=false"), "CustomResourceDefinition")
    unkept = of_kind(render("--set", "crds.keep=false"), "CustomResourceDefinition")
    assert {c["metadata"]["name"] for c in unkept} == {
        CRD_NAME,
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }
    assert all("annotations" not in c["metadata"] for c in unkept)


# ------------------------------------------------------------------------------------- monitoring


def test_monitoring_objects_only_when_asked(render: Render) -> None:
    kinds = {d["kind"] for d in render()}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ConfigMap"}
    docs = render("-f", CHART / "ci" / "monitoring-values.yaml")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # The operator's `namespace` label is the model's, not the scrape target's.
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    rule = one(docs, "PrometheusRule")
    rules_file = (CHART / "files/alerts/nlpmodel-operator.rules.yaml").read_text()
    assert rule["spec"] == yaml.safe_load(rules_file.replace("RUNBOOKS_URL", "docs/runbooks.md"))
    dashboard = one(docs, "ConfigMap")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["nlpmodel-operator.json"] == (
        CHART / "files/dashboards/nlpmodel-operator.json"
    ).read_text().rstrip("\n")


def test_the_alerts_link_their_runbooks_where_they_are_served(render: Render) -> None:
    url = "https://docs.example.com/nlpmodel/runbooks.html"
    docs = render("--set", "prometheusRule.enabled=true", "--set", f"prometheusRule.runbooksUrl={url}")
    rules = [r for g in one(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    links = {r["alert"]: r["annotations"]["runbook_url"] for r in rules if "runbook_url" in r["annotations"]}
    assert links["NLPModelOverBudget"] == f"{url}#nlpmodeloverbudget"
    assert links["NLPModelBudgetForecast"] == f"{url}#nlpmodelbudgetforecast"


# --------------------------------------------------------------------------- runtimes and copies


RUNTIME = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ClusterServingRuntime",
    "metadata": {"name": "nlpmodel-vllm"},
    "spec": {
        "supportedModelFormats": [{"name": "vllm", "version": "1", "autoSelect": False}],
        "protocolVersions": ["v2"],
        "containers": [
            {"name": "kserve-container", "image": "vllm/vllm-openai:v0.33.0", "args": ["--port=8080"]}
        ],
    },
}


def test_runtimes_in_files_become_cluster_serving_runtimes(
    render: Render, tmp_path: Path, upstream_crds: list[dict[str, Any]]
) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    for shipped in (chart / "files/runtimes").glob("*.yaml"):  # only the runtime under test
        shipped.unlink()
    (chart / "files/runtimes/vllm-runtime.yaml").write_text("# a comment first\n" + yaml.safe_dump(RUNTIME))
    docs = render(chart=chart)
    runtime = one(docs, "ClusterServingRuntime")
    assert runtime["spec"] == RUNTIME["spec"]
    assert runtime["metadata"]["labels"]["app.kubernetes.io/component"] == "runtime"
    assert check_object(runtime, upstream_crds) == []
    assert not of_kind(render("--set", "servingRuntimes.enabled=false", chart=chart), "ClusterServingRuntime")


def test_the_chart_copies_are_current() -> None:
    """`make chart-sync` writes them: the CRD from crds/, runtimes/, the dashboard."""
    for relative, content in expected_chart_files().items():
        assert (CHART / relative).read_text() == content, f"{relative} is stale: run `make chart-sync`"
    assert stale_runtime_copies() == [], "copies of removed runtimes: run `make chart-sync`"


def test_the_kustomize_base_is_the_chart_with_its_defaults(tools: Tools) -> None:
    assert (BASE / BASE_FILE).read_text() == render_base(tools.helm), "run `make manifests-base`"


def rendered_notes(render: Render, tmp_path: Path, *args: str) -> str:
    """NOTES.txt as Helm renders it (`helm template` leaves notes out, `install --dry-run` needs a
    cluster): a copy of the chart renders it through `tpl` into a ConfigMap."""
    chart = tmp_path / "chart"
    if not chart.exists():
        shutil.copytree(CHART, chart)
        shutil.move(chart / "templates/NOTES.txt", chart / "files/NOTES.txt")
        (chart / "templates/notes.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
            'data: {notes: {{ tpl (.Files.Get "files/NOTES.txt") . | quote }}}\n'
        )
    (notes,) = [d for d in render(*args, chart=chart) if d["metadata"]["name"] == "notes"]
    return str(notes["data"]["notes"])


def test_notes_tell_how_to_check_and_use_it(render: Render, tmp_path: Path) -> None:
    notes = rendered_notes(render, tmp_path, "--set", "operator.watchNamespaces={ml,search}")
    assert "It watches the namespaces ml, search." in notes
    assert f"kubectl -n {NAMESPACE} rollout status deployment/nlpm-nlpmodel-operator" in notes
    assert "No operator.prometheusUrl" in notes
    analysed = rendered_notes(render, tmp_path, "--set", "operator.prometheusUrl=http://p:9090")
    assert "No operator.prometheusUrl" not in analysed
    assert "It watches every namespace." in analysed


def test_the_image_runs_as_the_user_the_chart_requires(render: Render) -> None:
    dockerfile = (REPO / "Dockerfile").read_text().splitlines()
    (user,) = [line.split()[1] for line in dockerfile if line.startswith("USER ")]
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    assert user == f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    installs = [line for line in dockerfile if "pip install" in line]
    assert installs
    assert all("[dev]" not in line for line in installs)  # runtime dependencies only
    # The base is a build argument (the node tier builds on a local base); its default is what ships.
    defaults = dict(
        line.split()[1].split("=", 1) for line in dockerfile if line.startswith("ARG ") and "=" in line
    )
    bases = [line.split()[1] for line in dockerfile if line.startswith("FROM ") and " AS " not in line]
    assert bases
    assert all(string.Template(base).substitute(defaults).endswith("-slim") for base in bases)
