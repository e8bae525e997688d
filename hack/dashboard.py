"""The Grafana dashboard the chart ships (files/dashboards/nlpmodel-operator.json), built from the same
metric and label names the operator and the analysis use; `make chart-sync` writes it, a test checks it
is current and that every query parses and joins as intended.

Per model: phase, canary weight, TTFT and ITL p95 and error ratio of the stable vs the canary revision
(the model servers' metrics joined with `nlpmodel_revision_info` for the role), rollouts and rollbacks,
analysis verdicts; token economics by revision (cost per 1M tokens, tokens per request, prefix cache hit
rate), the model's cost per hour and its spend against its daily budget; and the operator's own
reconcile health.
"""

from __future__ import annotations

import json
from typing import Any, Final

from nlpmodel_operator.core.analysis.queries import (
    ERROR_REASONS,
    ITL_SECONDS,
    REQUEST_SUCCESS_TOTAL,
    TARGET_LABEL_MODEL,
    TARGET_LABEL_NAMESPACE,
    TARGET_LABEL_REVISION,
    TTFT_SECONDS,
)

__all__ = ["RANGE", "RATE_INTERVAL", "REVISION_ECONOMICS", "dashboard", "queries", "role_join", "spend_24h"]

UID: Final = "nlpmodel-operator"
RATE_INTERVAL: Final = "$__rate_interval"
RANGE: Final = "$__range"
DATASOURCE: Final = {"type": "prometheus", "uid": "${datasource}"}

_OPERATOR = 'namespace=~"$namespace", model=~"$model"'
_SERVERS = f'{TARGET_LABEL_NAMESPACE}=~"$namespace", {TARGET_LABEL_MODEL}=~"$model"'
_BY_REVISION = f"{TARGET_LABEL_NAMESPACE}, {TARGET_LABEL_MODEL}, {TARGET_LABEL_REVISION}"

# The operator's per-revision token economics (issue 19: measured over the analysis window), labels
# namespace, model, revision. Kept here, in one place: tests/chart checks that the operator exports
# exactly these names with exactly those labels once it exports any of them.
COST_PER_MILLION_TOKENS: Final = "nlpmodel_revision_cost_per_million_tokens"
PROMPT_TOKENS_PER_REQUEST: Final = "nlpmodel_revision_prompt_tokens_per_request"
GENERATION_TOKENS_PER_REQUEST: Final = "nlpmodel_revision_generation_tokens_per_request"
PREFIX_CACHE_HIT_RATIO: Final = "nlpmodel_revision_prefix_cache_hit_ratio"
REVISION_ECONOMICS: Final = (
    "nlpmodel_revision_tokens_per_second",
    PROMPT_TOKENS_PER_REQUEST,
    GENERATION_TOKENS_PER_REQUEST,
    PREFIX_CACHE_HIT_RATIO,
    COST_PER_MILLION_TOKENS,
    "nlpmodel_revision_cost_per_request",
)
COST_PER_HOUR: Final = "nlpmodel_model_cost_per_hour"
DAILY_BUDGET: Final = "nlpmodel_model_daily_budget"


def role_join(expr: str) -> str:
    """`expr` (by namespace, nlpmodel_model, nlpmodel_revision) with each revision's role (stable or
    canary) from the operator's `nlpmodel_revision_info`, whose labels are named model and revision."""
    roles = (
        f"label_replace(label_replace(max by (namespace, model, revision, role) "
        f'(nlpmodel_revision_info{{{_OPERATOR}}}), "{TARGET_LABEL_MODEL}", "$1", "model", "(.*)"), '
        f'"{TARGET_LABEL_REVISION}", "$1", "revision", "(.*)")'
    )
    return f"({expr}) * on ({_BY_REVISION}) group_left (role) ({roles})"


def _with_role(expr: str) -> str:
    """An operator gauge by namespace, model and revision, with each revision's role."""
    return (
        f"({expr}) * on (namespace, model, revision) group_left (role) "
        f"(max by (namespace, model, revision, role) (nlpmodel_revision_info{{{_OPERATOR}}}))"
    )


def _by_revision(gauge: str) -> str:
    return _with_role(f"max by (namespace, model, revision) ({gauge}{{{_OPERATOR}}})")


def spend_24h(selector: str = "") -> str:
    """A model's spend over the last 24 h: its cost per hour integrated on a 5-minute grid (each point
    counts 1/12 h). The NLPModelOverBudget alert uses the same expression (a test holds them equal)."""
    gauge = f"{COST_PER_HOUR}{{{selector}}}" if selector else COST_PER_HOUR
    return f"sum_over_time((max by (namespace, model) ({gauge}))[24h:5m]) / 12"


def _tokens_per_request() -> str:
    prompt = f'label_replace({_by_revision(PROMPT_TOKENS_PER_REQUEST)}, "tokens", "prompt", "", "")'
    generation = (
        f'label_replace({_by_revision(GENERATION_TOKENS_PER_REQUEST)}, "tokens", "generation", "", "")'
    )
    return f"{prompt} or {generation}"


def _spend_vs_budget() -> str:
    spend = f'label_replace({spend_24h(_OPERATOR)}, "series", "spend (24 h)", "", "")'
    budget = f'label_replace(max by (namespace, model) ({DAILY_BUDGET}{{{_OPERATOR}}}), "series", "budget", "", "")'
    return f"{spend} or {budget}"


def _p95(family: str) -> str:
    return role_join(
        f"histogram_quantile(0.95, sum by (le, {_BY_REVISION}) "
        f"(rate({family}_bucket{{{_SERVERS}}}[{RATE_INTERVAL}])))"
    )


def _error_ratio() -> str:
    errors = "|".join(ERROR_REASONS)
    return role_join(
        f"sum by ({_BY_REVISION}) (rate({REQUEST_SUCCESS_TOTAL}{{{_SERVERS}, "
        f'finished_reason=~"{errors}"}}[{RATE_INTERVAL}])) / sum by ({_BY_REVISION}) '
        f"(rate({REQUEST_SUCCESS_TOTAL}{{{_SERVERS}}}[{RATE_INTERVAL}]))"
    )


def queries() -> dict[str, str]:
    """Panel title → PromQL (with Grafana's variables)."""
    return {
        "Phase": f"max by (namespace, model, phase) (nlpmodel_phase{{{_OPERATOR}}}) == 1",
        "Canary weight": f"max by (namespace, model) (nlpmodel_canary_weight_percent{{{_OPERATOR}}})",
        "TTFT p95: stable vs canary": _p95(TTFT_SECONDS),
        "ITL p95: stable vs canary": _p95(ITL_SECONDS),
        "Error ratio: stable vs canary": _error_ratio(),
        "Rollbacks by reason": (
            f"sum by (namespace, model, reason) (increase(nlpmodel_rollbacks_total{{{_OPERATOR}}}[{RANGE}])) > 0"
        ),
        "Rollouts by outcome": (
            f"sum by (namespace, model, outcome) (increase(nlpmodel_rollouts_total{{{_OPERATOR}}}[{RANGE}])) > 0"
        ),
        "Analysis checks by verdict": (
            f"sum by (namespace, model, verdict) "
            f"(increase(nlpmodel_analysis_checks_total{{{_OPERATOR}}}[{RATE_INTERVAL}]))"
        ),
        "Cost per 1M tokens by revision": _by_revision(COST_PER_MILLION_TOKENS),
        "Tokens per request by revision": _tokens_per_request(),
        "Prefix cache hit rate by revision": _by_revision(PREFIX_CACHE_HIT_RATIO),
        "Model cost per hour": f"max by (namespace, model) ({COST_PER_HOUR}{{{_OPERATOR}}})",
        "Spend (24 h) vs daily budget": _spend_vs_budget(),
        "Evaluation score: stable vs canary": (
            f"max by (namespace, model, role) (nlpmodel_evaluation_score{{{_OPERATOR}}})"
        ),
        "Operator reconcile p95": (
            f"histogram_quantile(0.95, sum by (le) (rate(nlpmodel_reconcile_duration_seconds_bucket[{RATE_INTERVAL}])))"
        ),
        "Operator reconcile errors": f"sum by (reason) (rate(nlpmodel_reconcile_errors_total[{RATE_INTERVAL}]))",
    }


_LEGENDS: Final = {
    "Canary weight": "{{namespace}}/{{model}}",
    "TTFT p95: stable vs canary": "{{nlpmodel_model}} {{role}} {{nlpmodel_revision}}",
    "ITL p95: stable vs canary": "{{nlpmodel_model}} {{role}} {{nlpmodel_revision}}",
    "Error ratio: stable vs canary": "{{nlpmodel_model}} {{role}} {{nlpmodel_revision}}",
    "Analysis checks by verdict": "{{model}} {{verdict}}",
    "Evaluation score: stable vs canary": "{{model}} {{role}}",
    "Operator reconcile p95": "p95",
    "Operator reconcile errors": "{{reason}}",
    "Cost per 1M tokens by revision": "{{model}} {{role}} {{revision}}",
    "Tokens per request by revision": "{{model}} {{role}} {{revision}} {{tokens}}",
    "Prefix cache hit rate by revision": "{{model}} {{role}} {{revision}}",
    "Model cost per hour": "{{namespace}}/{{model}}",
    "Spend (24 h) vs daily budget": "{{namespace}}/{{model}} {{series}}",
}
_UNITS: Final = {
    "Canary weight": "percent",
    "TTFT p95: stable vs canary": "s",
    "ITL p95: stable vs canary": "s",
    "Error ratio: stable vs canary": "percentunit",
    "Evaluation score: stable vs canary": "percentunit",
    "Operator reconcile p95": "s",
    "Operator reconcile errors": "ops",
    "Prefix cache hit rate by revision": "percentunit",
}
_TABLES: Final = ("Phase", "Rollbacks by reason", "Rollouts by outcome")


def _panel(panel_id: int, title: str, expr: str, grid: dict[str, int]) -> dict[str, Any]:
    table = title in _TABLES
    target: dict[str, Any] = {"refId": "A", "datasource": DATASOURCE, "expr": expr}
    if table:
        target |= {"instant": True, "range": False, "format": "table"}
    else:
        target |= {"legendFormat": _LEGENDS.get(title, "__auto")}
    return {
        "id": panel_id,
        "type": "table" if table else "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "fieldConfig": {"defaults": {"unit": _UNITS.get(title, "short")}, "overrides": []},
        "targets": [target],
    }


def _variable(name: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-var"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "current": {},
        "sort": 1,
    }


def dashboard() -> dict[str, Any]:
    tables = [(t, e) for t, e in queries().items() if t in _TABLES]
    series = [(t, e) for t, e in queries().items() if t not in _TABLES]
    # One row of three tables, then the time series two per row.
    grids = [{"h": 8, "w": 8, "x": 8 * i, "y": 0} for i in range(len(tables))] + [
        {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 + 8 * (i // 2)} for i in range(len(series))
    ]
    panels = [
        _panel(i + 1, title, expr, grid)
        for i, ((title, expr), grid) in enumerate(zip(tables + series, grids, strict=True))
    ]
    return {
        "uid": UID,
        "title": "NLPModel rollouts",
        "description": (
            "Per model: phase, canary weight, stable vs canary latency and errors, rollbacks; cost per 1M "
            "tokens, tokens per request and cache hit rate by revision; cost per hour and spend vs budget."
        ),
        "tags": ["nlpmodel", "llm", "vllm"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                _variable("namespace", "label_values(nlpmodel_phase, namespace)"),
                _variable("model", 'label_values(nlpmodel_phase{namespace=~"$namespace"}, model)'),
            ]
        },
        "panels": panels,
    }


def main() -> int:
    print(json.dumps(dashboard(), indent=2, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
