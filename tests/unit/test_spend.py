"""What a model costs per hour and its daily budget (core/spend.py), and how decide() reports them."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from nlpmodel_operator.api.constants import ANNOTATION_DAILY_BUDGET
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.status import NLPModelStatus, RevisionShape, to_json
from nlpmodel_operator.cli.statusview import format_status, spend_rows
from nlpmodel_operator.controller.metrics import OperatorMetrics
from nlpmodel_operator.core.conditions import find
from nlpmodel_operator.core.pricing import Prices
from nlpmodel_operator.core.reconcile import ChildRef, Observation, RevisionState, decide
from nlpmodel_operator.core.revision import revision_hash
from nlpmodel_operator.core.spend import BudgetError, cost_per_hour, daily_budget, kept_shapes, parse_budget

PRICES = Prices(gpu_hour={"nvidia-h100-80gb": 4.5, "nvidia-l4": 0.8})
WITH_CPU = Prices(gpu_hour={"nvidia-l4": 0.8}, cpu_hour=0.05)

H100_TP1 = RevisionShape(revision="stable01", gpu_product="nvidia-h100-80gb", gpus=1)
H100_TP2 = RevisionShape(revision="canary02", gpu_product="nvidia-h100-80gb", gpus=2)


def running(revision: str, replicas: int | None) -> RevisionState:
    return RevisionState(revision, (), True, replicas=replicas, ready_replicas=replicas)


@pytest.mark.parametrize(
    ("prices", "revisions", "shapes", "expected", "detail"),
    [
        pytest.param(Prices(), [("stable01", 2)], [H100_TP1], None, "no prices configured", id="no-prices"),
        pytest.param(
            Prices(gpu_hour={"nvidia-l4": 0.8}),
            [("stable01", 2)],
            [H100_TP1],
            None,
            "no GPU-hour price configured for nvidia-h100-80gb",
            id="unpriced-product",
        ),
        pytest.param(
            PRICES,
            [("stable01", 1)],
            [RevisionShape(revision="stable01", gpu_product=None, gpus=1)],
            None,
            "spec.resources.gpu.product is unset",
            id="unknown-product",
        ),
        pytest.param(PRICES, [("stable01", 3)], [H100_TP1], 13.5, "3 × (1 × nvidia-h100-80gb", id="one"),
        pytest.param(PRICES, [("stable01", 0)], [H100_TP1], 0.0, "no replicas running", id="zero-replicas"),
        pytest.param(
            Prices(gpu_hour={"nvidia-l4": 0.8}),
            [("stable01", 0)],
            [H100_TP1],
            None,
            "no GPU-hour price configured for nvidia-h100-80gb",
            id="unpriced-at-zero-replicas",
        ),
        pytest.param(PRICES, [], [], 0.0, "no replicas running", id="no-revisions"),
        pytest.param(
            PRICES,
            [("stable01", None)],
            [H100_TP1],
            None,
            "revision stable01 reports no replica count and an autoscaler owns it",
            id="replicas-unknown",
        ),
        pytest.param(
            WITH_CPU,
            [("cpu00001", 2)],
            [RevisionShape(revision="cpu00001", gpus=0, cpu="4")],
            0.4,  # 2 replicas × 4 cores × 0.05
            "4 CPU core(s)",
            id="cpu-price",
        ),
        pytest.param(
            WITH_CPU,
            [("l4000001", 1)],
            [RevisionShape(revision="l4000001", gpu_product="nvidia-l4", gpus=1, cpu="8")],
            1.2,  # 0.8 + 8 × 0.05
            "1 × nvidia-l4",
            id="gpu-and-cpu",
        ),
        pytest.param(
            PRICES,
            [("stable01", 2), ("canary02", 1)],
            [H100_TP1, H100_TP2],
            18.0,  # stable 2 × 1 GPU + canary 1 × 2 GPUs = 4 H100s
            "canary02: 1 × (2 × nvidia-h100-80gb",
            id="canary-with-twice-the-gpus",
        ),
        pytest.param(
            PRICES,
            [("stable01", 2), ("canary02", 0)],
            [H100_TP1, H100_TP2],
            9.0,
            "stable01",
            id="canary-at-zero",
        ),
        pytest.param(
            PRICES,
            [("stable01", 2), ("canary02", 1)],
            [H100_TP2],
            None,
            "revision stable01 holds is unknown",
            id="stable-shape-unknown",
        ),
    ],
)
def test_cost_per_hour(
    prices: Prices,
    revisions: list[tuple[str, int | None]],
    shapes: list[RevisionShape],
    expected: float | None,
    detail: str,
) -> None:
    cost = cost_per_hour(prices, {r: running(r, n) for r, n in revisions}, shapes)
    assert cost.per_hour == (None if expected is None else pytest.approx(expected))
    assert detail in cost.detail


def test_a_platform_without_replica_counts_is_priced_at_the_count_the_operator_applies() -> None:
    """KServe's InferenceService reports no replicas: the fixed counts the operator applies stand in;
    a reported count wins, and a revision with neither (autoscaled) leaves the model unpriced."""
    revisions = {"stable01": running("stable01", None), "canary02": running("canary02", 1)}
    shapes = [H100_TP1, H100_TP2]
    assert cost_per_hour(PRICES, revisions, shapes, {"stable01": 3, "canary02": 5}).per_hour == 22.5
    assert cost_per_hour(PRICES, revisions, shapes, {"canary02": 1}).per_hour is None


@pytest.mark.parametrize(
    ("text", "amount"),
    [("250", 250.0), (" 99.5 ", 99.5), ("0", 0.0), ("1e3", 1000.0)],
)
def test_parse_budget(text: str, amount: float) -> None:
    assert parse_budget(text, "USD") == amount


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("250 USD", "is not a number: write the budget per 24 h in USD without the currency"),
        ("$250", "is not a number"),
        ("", "is not a number"),
        ("-1", "must be a finite amount of at least 0"),
        ("nan", "must be a finite amount"),
        ("inf", "must be a finite amount"),
    ],
)
def test_a_malformed_budget_says_what_to_write(text: str, fragment: str) -> None:
    with pytest.raises(BudgetError, match=r"serving\.nlpmodel\.dev/daily-budget") as caught:
        parse_budget(text, "USD")
    assert fragment in str(caught.value)
    assert '"250"' in str(caught.value)  # an example to copy


NAMESPACED = Prices(daily_budgets={"ml": 100.0})


@pytest.mark.parametrize(
    ("annotation", "namespace", "amount", "source", "problem"),
    [
        (None, "ml", 100.0, "pricing.dailyBudgets.ml", None),
        (None, "other", None, None, None),
        ("250", "ml", 250.0, "annotation serving.nlpmodel.dev/daily-budget", None),
        ("250", "other", 250.0, "annotation serving.nlpmodel.dev/daily-budget", None),
        ("lots", "ml", 100.0, "pricing.dailyBudgets.ml", "the namespace's budget (100.00 USD) applies"),
        ("lots", "other", None, None, "is not a number"),
    ],
)
def test_the_annotation_overrides_the_namespace_budget(
    annotation: str | None, namespace: str, amount: float | None, source: str | None, problem: str | None
) -> None:
    budget = daily_budget(annotation, namespace, NAMESPACED)
    assert (budget.amount, budget.source) == (amount, source)
    if problem is None:
        assert budget.problem is None
    else:
        assert budget.problem is not None
        assert problem in budget.problem


def test_shapes_kept_are_the_current_and_the_live_recorded_ones() -> None:
    gone = RevisionShape(revision="gone0001", gpus=1, gpu_product="nvidia-l4")
    kept = kept_shapes(
        H100_TP2, [H100_TP1, gone, H100_TP2.model_copy(update={"gpus": 8})], ["stable01", "canary02"]
    )
    assert kept == [H100_TP2, H100_TP1]  # the current template's shape wins over a recorded one


# ------------------------------------------------------------------------- through decide()

SPEC: dict[str, Any] = {
    "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
    "resources": {"gpu": {"count": 1, "product": "nvidia-h100-80gb"}, "cpu": "4"},
}
REV = revision_hash(NLPModelSpec.model_validate(SPEC))
OLD = "0ld0ld00"
T0 = "2026-11-26T10:00:00Z"


def workload(revision: str, replicas: int) -> RevisionState:
    ref = ChildRef("serving.kserve.io/v1beta1", "InferenceService", f"chat-{revision}")
    return RevisionState(revision, (ref,), True, replicas=replicas, ready_replicas=replicas)


def observe(
    status: dict[str, Any] | None = None,
    revisions: list[RevisionState] | None = None,
    prices: Prices = PRICES,
    annotation: str | None = None,
    spec: Any = None,
) -> Observation:
    return Observation(
        name="chat",
        namespace="ml",
        generation=1,
        spec=SPEC if spec is None else spec,
        status=status or {},
        revisions={r.revision: r for r in revisions or []},
        now=T0,
        prices=prices,
        daily_budget=annotation,
    )


def test_a_model_at_rest_costs_its_replicas_and_records_its_shape() -> None:
    d = decide(observe({"stableRevision": REV}, [workload(REV, 2)]))
    spend = to_json(d.status)["spend"]
    assert spend["costPerHour"] == 9.0
    assert spend["currency"] == "USD"
    assert spend["revisions"] == [{"revision": REV, "gpuProduct": "nvidia-h100-80gb", "gpus": 1, "cpu": "4"}]
    assert "dailyBudget" not in spend
    assert find(d.status.conditions, "BudgetValid") is None


def test_the_stable_of_an_earlier_template_is_priced_by_its_recorded_shape() -> None:
    """A canary of another template: the stable's GPUs come from status, not from the new spec."""
    recorded = {
        "currency": "USD",
        "revisions": [{"revision": OLD, "gpuProduct": "nvidia-h100-80gb", "gpus": 2}],
    }
    d = decide(observe({"stableRevision": OLD, "spend": recorded}, [workload(OLD, 2), workload(REV, 1)]))
    spend = to_json(d.status)["spend"]
    assert spend["costPerHour"] == 22.5  # 2 × 2 H100 + 1 × 1 H100 at 4.5
    assert {s["revision"] for s in spend["revisions"]} == {OLD, REV}


def inference_service(revision: str) -> RevisionState:
    """KServe reports readiness, not replicas."""
    ref = ChildRef("serving.kserve.io/v1beta1", "InferenceService", f"chat-{revision}")
    return RevisionState(revision, (ref,), True)


def test_kserve_fixed_replicas_are_priced_and_autoscaled_ones_are_not() -> None:
    fixed = {**SPEC, "scaling": {"replicas": 3}}
    rev = revision_hash(NLPModelSpec.model_validate(fixed))
    d = decide(observe({"stableRevision": rev}, [inference_service(rev)], spec=fixed))
    assert to_json(d.status)["spend"]["costPerHour"] == 13.5
    autoscaled = {**SPEC, "scaling": {"minReplicas": 1, "maxReplicas": 4}}
    rev = revision_hash(NLPModelSpec.model_validate(autoscaled))
    d = decide(observe({"stableRevision": rev}, [inference_service(rev)], spec=autoscaled))
    spend = to_json(d.status)["spend"]
    assert "costPerHour" not in spend
    assert "an autoscaler owns it" in spend["detail"]


def test_without_prices_or_budget_nothing_is_written() -> None:
    d = decide(observe({"stableRevision": REV}, [workload(REV, 2)], prices=Prices()))
    assert "spend" not in to_json(d.status)


def test_a_budget_without_prices_is_reported_without_a_cost() -> None:
    d = decide(observe({"stableRevision": REV}, [workload(REV, 2)], prices=Prices(), annotation="250"))
    spend = to_json(d.status)["spend"]
    assert spend["dailyBudget"] == 250.0
    assert "costPerHour" not in spend
    condition = find(d.status.conditions, "BudgetValid")
    assert condition is not None
    assert (condition.status, condition.reason) == ("True", "Valid")


def test_a_malformed_annotation_sets_budget_valid_false_and_the_model_keeps_serving() -> None:
    d = decide(observe({"stableRevision": REV}, [workload(REV, 2)], annotation="250 dollars"))
    condition = find(d.status.conditions, "BudgetValid")
    assert condition is not None
    assert (condition.status, condition.reason) == ("False", "InvalidBudget")
    assert "serving.nlpmodel.dev/daily-budget='250 dollars' is not a number" in condition.message
    assert to_json(d.status)["phase"] == "Ready"
    assert to_json(d.status)["spend"]["costPerHour"] == 9.0
    # Fixed: the condition says so; the annotation removed: the condition goes.
    fixed = decide(observe(to_json(d.status), [workload(REV, 2)], annotation="300"))
    assert to_json(fixed.status)["spend"]["dailyBudget"] == 300.0
    assert find(fixed.status.conditions, "BudgetValid").status == "True"  # type: ignore[union-attr]
    removed = decide(observe(to_json(fixed.status), [workload(REV, 2)]))
    assert find(removed.status.conditions, "BudgetValid") is None


def test_an_invalid_spec_still_prices_the_revision_that_keeps_serving() -> None:
    first = to_json(decide(observe({"stableRevision": REV}, [workload(REV, 1)])).status)
    bad = {**SPEC, "resources": {"gpu": {"count": -1}}}
    d = decide(observe(first, [workload(REV, 1)], spec=bad))
    assert find(d.status.conditions, "SpecValid").status == "False"  # type: ignore[union-attr]
    assert to_json(d.status)["spend"]["costPerHour"] == 4.5


# ------------------------------------------------------------------------- gauges


def test_the_gauges_follow_status_spend_and_go_with_the_model() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    r = metrics.registry
    labels = {"namespace": "ml", "model": "chat"}
    metrics.observe("ml", "chat", {}, {"spend": {"currency": "USD", "costPerHour": 9.0, "dailyBudget": 250}})
    assert r.get_sample_value("nlpmodel_model_cost_per_hour", labels) == 9.0
    assert r.get_sample_value("nlpmodel_model_daily_budget", labels) == 250
    # Prices gone (or a revision not priced): no series, never a 0 that looks like "free".
    metrics.observe("ml", "chat", {}, {"spend": {"currency": "USD", "dailyBudget": 250}})
    assert r.get_sample_value("nlpmodel_model_cost_per_hour", labels) is None
    metrics.forget("ml", "chat")
    assert r.get_sample_value("nlpmodel_model_daily_budget", labels) is None


def test_status_spend_round_trips() -> None:
    spend = {
        "currency": "EUR",
        "costPerHour": 1.25,
        "detail": "x",
        "revisions": [{"revision": "a", "gpus": 0}],
    }
    assert to_json(NLPModelStatus.model_validate({"spend": spend}))["spend"] == spend


# ------------------------------------------------------------------------- nlpctl status

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spend", "rows"),
    [
        pytest.param(None, [], id="not-configured"),
        pytest.param(
            {
                "currency": "USD",
                "costPerHour": 13.5,
                "detail": "a: 3 × (1 × nvidia-h100-80gb at 4.50 USD/GPU-hour)",
            },
            [("cost / hour", "13.50 USD (a: 3 × (1 × nvidia-h100-80gb at 4.50 USD/GPU-hour))")],
            id="cost",
        ),
        pytest.param(
            {
                "currency": "EUR",
                "costPerHour": 12,
                "detail": "x",
                "dailyBudget": 250,
                "budgetSource": "annotation serving.nlpmodel.dev/daily-budget",
            },
            [
                ("cost / hour", "12.00 EUR (x)"),
                (
                    "budget",
                    "250.00 EUR per 24 h (annotation serving.nlpmodel.dev/daily-budget); "
                    "at the current cost 288.00 EUR per 24 h",
                ),
            ],
            id="cost-and-budget",
        ),
        pytest.param(
            {
                "currency": "USD",
                "detail": "no cost: no prices configured (chart values pricing)",
                "dailyBudget": 1000,
                "budgetSource": "pricing.dailyBudgets.ml",
            },
            [
                ("cost / hour", "unknown: no cost: no prices configured (chart values pricing)"),
                ("budget", "1,000.00 USD per 24 h (pricing.dailyBudgets.ml)"),
            ],
            id="budget-without-prices",
        ),
        pytest.param({"currency": "USD", "costPerHour": "lots", "dailyBudget": True}, [], id="junk"),
    ],
)
def test_status_shows_cost_and_budget(spend: Any, rows: list[tuple[str, str]]) -> None:
    assert spend_rows(spend) == rows
    text = format_status({"phase": "Ready", "spend": spend}, {}, NOW)
    for key, value in rows:
        assert f"{key}" in text
        assert value in text


# ------------------------------------------------------------------------- nlpctl validate


@pytest.mark.parametrize(
    ("budget", "code", "expected"),
    [
        ("250", 0, "chat: valid"),
        (
            "250 EUR",
            1,
            "chat: metadata.annotations.serving.nlpmodel.dev/daily-budget: annotation "
            "serving.nlpmodel.dev/daily-budget='250 EUR' is not a number",
        ),
        ("-3", 1, "must be a finite amount of at least 0"),
    ],
)
def test_validate_reads_the_budget_annotation(tmp_path: Path, budget: str, code: int, expected: str) -> None:
    body = {
        "apiVersion": "serving.nlpmodel.dev/v1alpha1",
        "kind": "NLPModel",
        "metadata": {"name": "chat", "namespace": "ml", "annotations": {ANNOTATION_DAILY_BUDGET: budget}},
        "spec": SPEC,
    }
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(body))
    nlpctl = Path(sys.executable).with_name("nlpctl")
    result = subprocess.run(
        [str(nlpctl), "validate", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == code, result.stdout + result.stderr
    assert expected in result.stdout
