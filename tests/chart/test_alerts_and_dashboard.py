"""The PrometheusRule alerts and the Grafana dashboard's queries, checked by a real promtool."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from chartlib import run
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from hack.chartsync import CHART
from hack.dashboard import RANGE, RATE_INTERVAL, REVISION_ECONOMICS, dashboard, queries, spend_24h
from nlpmodel_operator.controller.metrics import OperatorMetrics
from nlpmodel_operator.core.analysis.queries import TARGET_LABEL_MODEL, TARGET_LABEL_REVISION

RULES = CHART / "files" / "alerts" / "nlpmodel-operator.rules.yaml"
ALERT_TESTS = Path(__file__).with_name("alerts.test.yaml")


def alert_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_the_rules_are_clean(promtool: Path) -> None:
    proc = run([promtool, "check", "rules", RULES])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in proc.stdout


def test_every_alert_fires_and_stays_silent_as_its_unit_tests_say(promtool: Path) -> None:
    proc = run([promtool, "test", "rules", ALERT_TESTS])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    cases = [
        case for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"] for case in test["alert_rule_test"]
    ]
    fired = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert alert_names() == {
        "NLPModelRolledBack",
        "NLPModelAnalysisUnavailable",
        "NLPModelOperatorReconcileErrors",
        "NLPModelOperatorDown",
        "NLPModelOverBudget",
        "NLPModelBudgetForecast",
    }
    assert fired == alert_names()
    assert silent == alert_names()


# ------------------------------------------------------------------------------------ dashboard


def as_prometheus(expr: str) -> str:
    """A panel's query as Grafana sends it with every namespace and model selected."""
    return (
        expr.replace("$namespace", ".*")
        .replace("$model", ".*")
        .replace(RATE_INTERVAL, "5m")
        .replace(RANGE, "1h")
    )


def test_every_panel_query_parses(promtool: Path, tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"panel:{i}", "expr": as_prometheus(expr)}
                    for i, expr in enumerate(queries().values())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    proc = run([promtool, "check", "rules", path])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_panel_shows_one_of_the_queries() -> None:
    board: dict[str, Any] = dashboard()
    shown = {p["title"]: p["targets"][0]["expr"] for p in board["panels"]}
    assert shown == queries()
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    json.dumps(board)  # serialisable as the ConfigMap holds it


def assert_promql(promtool: Path, tmp_path: Path, series: list[Any], expr_tests: list[Any]) -> None:
    """promtool evaluates each expression over the input series (1-minute steps) and compares samples."""
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": expr_tests}],
    }
    path = tmp_path / "promql.test.yaml"
    path.write_text(yaml.safe_dump(tests))
    proc = run([promtool, "test", "rules", path])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_latency_is_split_into_stable_and_canary(promtool: Path, tmp_path: Path) -> None:
    """The role join: the model servers' p95 per revision gets the operator's stable/canary role."""
    bucket = "vllm:time_to_first_token_seconds_bucket"
    revision = 'namespace="ml", nlpmodel_model="chat", nlpmodel_revision'
    series = []
    # Stable: all requests under 0.5 s; canary: all between 1 and 2 s (10 requests per minute each).
    # p95 interpolates within the bucket: 0.475 and 1.95 (promtool compares the exact floats).
    for rev, counts in (
        ("aaaa1111", {"0.5": 10, "1": 10, "2": 10, "+Inf": 10}),
        ("bbbb2222", {"0.5": 0, "1": 0, "2": 10, "+Inf": 10}),
    ):
        for le, per_minute in counts.items():
            series.append(
                {"series": f'{bucket}{{{revision}="{rev}", le="{le}"}}', "values": f"0+{per_minute}x10"}
            )
    for rev, role in (("aaaa1111", "stable"), ("bbbb2222", "canary")):
        series.append(
            {
                "series": f'nlpmodel_revision_info{{namespace="ml", model="chat", revision="{rev}", role="{role}"}}',
                "values": "1x10",
            }
        )
    expr = as_prometheus(queries()["TTFT p95: stable vs canary"])
    assert_promql(
        promtool,
        tmp_path,
        series,
        [
            {
                "expr": expr,
                "eval_time": "10m",
                "exp_samples": [
                    {
                        "labels": f'{{{revision}="aaaa1111", role="stable"}}',
                        "value": 0.47500000000000003,
                    },
                    {
                        "labels": f'{{{revision}="bbbb2222", role="canary"}}',
                        "value": 1.9500000000000002,
                    },
                ],
            }
        ],
    )


# ------------------------------------------------------------------------- names the panels use


def operator_metrics() -> dict[str, tuple[str, ...]]:
    """Every series name the operator exports (counters with _total, histograms with their parts) →
    its label names."""
    exported: dict[str, tuple[str, ...]] = {}
    for metric in vars(OperatorMetrics(CollectorRegistry())).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        name, labels = metric._name, tuple(metric._labelnames)  # no public accessor
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(
            metric._type, ("",)
        )
        exported |= {name + suffix: labels for suffix in suffixes}
    return exported


def test_every_operator_metric_a_panel_or_an_alert_names_is_exported() -> None:
    """A renamed or misspelt gauge would leave a panel empty without any error. The per-revision token
    economics (REVISION_ECONOMICS) are exported by the cost measurement of issue 19; until that lands
    they are the only names allowed to be missing."""
    alerts = yaml.safe_load(RULES.read_text())["groups"]
    exprs = [*queries().values(), *(r["expr"] for g in alerts for r in g["rules"])]
    labels = {TARGET_LABEL_MODEL, TARGET_LABEL_REVISION}  # the model servers' target labels, not metrics
    named = {m for expr in exprs for m in re.findall(r"\bnlpmodel_[a-z_]+", expr)} - labels
    missing = named - set(operator_metrics())
    assert missing <= set(REVISION_ECONOMICS), sorted(missing)


def test_the_revision_economics_are_exported_all_together_by_revision() -> None:
    """Once the operator exports any of them, it exports all, with the labels the panels join on."""
    exported = operator_metrics()
    present = {name: exported[name] for name in REVISION_ECONOMICS if name in exported}
    if present:
        assert set(present) == set(REVISION_ECONOMICS)
        assert {set(labels) == {"namespace", "model", "revision"} for labels in present.values()} == {True}


def test_the_budget_alert_and_the_dashboard_count_spend_alike() -> None:
    over_budget = next(
        r
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
        if r.get("alert") == "NLPModelOverBudget"
    )
    assert over_budget["expr"].startswith(spend_24h() + " > on (namespace, model)")


def test_cost_panels_join_the_operator_gauges_with_the_role(promtool: Path, tmp_path: Path) -> None:
    """The per-revision gauges get each revision's role; spend and budget come out side by side."""
    operator = 'namespace="ml", model="chat"'
    series = [
        {
            "series": f'nlpmodel_revision_cost_per_million_tokens{{{operator}, revision="aaaa1111"}}',
            "values": "2x30",
        },
        {
            "series": f'nlpmodel_revision_cost_per_million_tokens{{{operator}, revision="bbbb2222"}}',
            "values": "4x30",
        },
        {
            "series": f'nlpmodel_revision_info{{{operator}, revision="aaaa1111", role="stable"}}',
            "values": "1x30",
        },
        {
            "series": f'nlpmodel_revision_info{{{operator}, revision="bbbb2222", role="canary"}}',
            "values": "1x30",
        },
        {"series": f"nlpmodel_model_cost_per_hour{{{operator}}}", "values": "12x30"},
        {"series": f"nlpmodel_model_daily_budget{{{operator}}}", "values": "250x30"},
    ]
    cost = as_prometheus(queries()["Cost per 1M tokens by revision"])
    spend = as_prometheus(queries()["Spend (24 h) vs daily budget"])
    assert_promql(
        promtool,
        tmp_path,
        series,
        [
            {
                "expr": cost,
                "eval_time": "30m",
                "exp_samples": [
                    {"labels": f'{{{operator}, revision="aaaa1111", role="stable"}}', "value": 2},
                    {"labels": f'{{{operator}, revision="bbbb2222", role="canary"}}', "value": 4},
                ],
            },
            {
                # 7 points of the 5-minute grid (0 to 30 minutes) at 12 per hour: 7.
                "expr": spend,
                "eval_time": "30m",
                "exp_samples": [
                    {"labels": f'{{{operator}, series="spend (24 h)"}}', "value": 7},
                    {"labels": f'{{{operator}, series="budget"}}', "value": 250},
                ],
            },
        ],
    )
