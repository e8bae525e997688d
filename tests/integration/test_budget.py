"""Spend and budget on the real local control plane: the operator, given the chart's prices and a
namespace budget, writes the model's cost per hour and budget into status and exports the same numbers
on /metrics; a malformed budget annotation is a condition the user can act on, never a stop; a deleted
model's series go."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from harness import Cluster, OperatorProcess, chat_model, operator_metrics, run_operator, status, wait_for
from nlpmodel_harness.childproc import free_ports
from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_operator.api import constants as c

METRICS_PORT = free_ports(1)[0]
BUDGETED = f"t-budget-{uuid.uuid4().hex[:6]}"  # the namespace the chart gives a budget
PRICING = {"currency": "EUR", "gpuHour": {"nvidia-l4": 0.8}, "dailyBudgets": {BUDGETED: 100}}


def gauges(namespace: str) -> dict[str, float]:
    """The operator's spend gauges of the model chat in `namespace`."""
    labels = (("model", "chat"), ("namespace", namespace))
    return {
        name: value
        for (name, sample_labels), value in operator_metrics(METRICS_PORT).items()
        if name in {"nlpmodel_model_cost_per_hour", "nlpmodel_model_daily_budget"} and sample_labels == labels
    }


@pytest.fixture(scope="module")
def operator(
    localplane: LocalPlane, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    env = {"NLPMODEL_PRICING": json.dumps(PRICING), "NLPMODEL_METRICS_PORT": str(METRICS_PORT)}
    yield from run_operator(localplane, tmp_path_factory, env)


@pytest.fixture
def budgeted(cluster: Cluster) -> Iterator[str]:
    cluster.create_namespace(BUDGETED)
    yield BUDGETED
    cluster.core.delete_namespace(BUDGETED)


def annotate(cluster: Cluster, namespace: str, budget: str | None) -> None:
    cluster.api.patch_namespaced_custom_object(
        c.GROUP,
        c.VERSION,
        namespace,
        c.PLURAL,
        "chat",
        {"metadata": {"annotations": {c.ANNOTATION_DAILY_BUDGET: budget}}},
    )


def spend_where(cluster: Cluster, namespace: str, **want: Any) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        spend: dict[str, Any] = status(cluster, namespace).get("spend") or {}
        return spend if all(spend.get(k) == v for k, v in want.items()) else None

    return wait_for(f"status.spend with {want}", probe, 60)


def test_cost_and_budget_reach_status_and_metrics_and_a_bad_annotation_is_a_condition(
    cluster: Cluster, operator: OperatorProcess, budgeted: str
) -> None:
    # Two replicas of one L4 each (KServe reports no replica count: the two the operator applies).
    cluster.apply_model(chat_model(budgeted, scaling={"replicas": 2}))
    spend = spend_where(cluster, budgeted, costPerHour=1.6, dailyBudget=100)
    assert spend["currency"] == "EUR"
    assert spend["budgetSource"] == f"pricing.dailyBudgets.{budgeted}"
    assert "2 × (1 × nvidia-l4 at 0.80 EUR/GPU-hour)" in spend["detail"]
    want = {"nlpmodel_model_cost_per_hour": 1.6, "nlpmodel_model_daily_budget": 100}
    wait_for("the gauges as status says", lambda: gauges(budgeted) == want, 30)

    # A budget that is not a number: a condition saying what to write; the namespace's budget applies.
    annotate(cluster, budgeted, "100 EUR")
    condition = wait_for("BudgetValid=False", lambda: cluster.condition(budgeted, "chat", "BudgetValid"), 60)
    assert (condition["status"], condition["reason"]) == ("False", "InvalidBudget")
    assert "write the budget per 24 h in EUR without the currency" in condition["message"]
    assert "the namespace's budget (100.00 EUR) applies" in condition["message"]
    assert (cluster.condition(budgeted, "chat", "SpecValid") or {}).get("status") == "True"
    assert operator.alive()

    # Fixed: the annotation's budget wins over the namespace's, in status and on /metrics alike.
    annotate(cluster, budgeted, "250")
    spend_where(cluster, budgeted, dailyBudget=250)
    assert (cluster.condition(budgeted, "chat", "BudgetValid") or {}).get("status") == "True"
    wait_for(
        "the budget gauge at 250", lambda: gauges(budgeted).get("nlpmodel_model_daily_budget") == 250, 30
    )

    cluster.delete_model(budgeted, "chat")
    wait_for("the model's series gone", lambda: gauges(budgeted) == {}, 60)


def test_a_model_without_a_price_for_its_gpus_has_no_cost_series(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    body = chat_model(namespace, resources={"gpu": {"count": 1, "product": "nvidia-h100-80gb"}})
    body["metadata"]["annotations"] = {c.ANNOTATION_DAILY_BUDGET: "50"}
    cluster.apply_model(body)
    spend = spend_where(cluster, namespace, dailyBudget=50)
    assert "costPerHour" not in spend
    assert "no GPU-hour price configured for nvidia-h100-80gb" in spend["detail"]
    # /metrics is updated right after the status write: polled, not read once.
    wait_for("the budget gauge", lambda: gauges(namespace) == {"nlpmodel_model_daily_budget": 50}, 30)
