"""Pricing: the configuration the platform team owns, and the hourly cost of a replica (never guessed)."""

from __future__ import annotations

from typing import Any

import pytest

from nlpmodel_operator.controller.config import OperatorConfig, prices_from_env
from nlpmodel_operator.core.gpus import GPU_PRODUCTS
from nlpmodel_operator.core.pricing import Prices, PricingError, cpu_cores, parse_prices, replica_cost

PRICES = Prices(gpu_hour={"nvidia-h100-80gb": 4.5, "nvidia-l4": 0.8}, cpu_hour=0.04)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(None, Prices(), id="none"),
        pytest.param({}, Prices(), id="empty"),
        pytest.param({"gpuHour": {}, "cpuHour": None}, Prices(), id="chart-defaults"),
        pytest.param(
            {"gpuHour": {"nvidia-l4": 1}, "currency": "EUR"},
            Prices(gpu_hour={"nvidia-l4": 1.0}, currency="EUR"),
            id="gpu-only",
        ),
        pytest.param({"cpuHour": 0.05}, Prices(cpu_hour=0.05), id="cpu-only"),
        pytest.param(
            {"pricing": {"gpuHour": {"nvidia-h100-80gb": 4.5}}, "operator": {"podMonitors": True}},
            Prices(gpu_hour={"nvidia-h100-80gb": 4.5}),
            id="a-whole-values-file",
        ),
        pytest.param(
            {"gpuHour": {"nvidia-l4": 0}}, Prices(gpu_hour={"nvidia-l4": 0.0}), id="free-is-a-price"
        ),
        pytest.param(
            {"dailyBudgets": {"team-a": 250, "team-b": 0}},
            Prices(daily_budgets={"team-a": 250.0, "team-b": 0.0}),
            id="namespace-budgets",
        ),
    ],
)
def test_parse(raw: dict[str, Any] | None, expected: Prices) -> None:
    assert parse_prices(raw) == expected


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        pytest.param(
            {"gpuHour": {"nvidia-rtx-4090": 1}}, "unknown GPU product(s) nvidia-rtx-4090", id="product"
        ),
        pytest.param({"gpuHour": {"nvidia-l4": -1}}, "pricing.gpuHour.nvidia-l4", id="negative"),
        pytest.param({"gpuHour": {"nvidia-l4": "cheap"}}, "pricing.gpuHour.nvidia-l4", id="text"),
        pytest.param({"gpuHour": {"nvidia-l4": True}}, "pricing.gpuHour.nvidia-l4", id="bool"),
        pytest.param({"gpuHour": {"nvidia-l4": float("inf")}}, "pricing.gpuHour.nvidia-l4", id="infinite"),
        pytest.param({"cpuHour": -0.1}, "pricing.cpuHour", id="cpu-negative"),
        pytest.param({"gpuHour": [1, 2]}, "pricing.gpuHour must map", id="not-a-map"),
        pytest.param({"gpuHours": {}}, "unknown key(s) gpuHours", id="typo"),
        pytest.param({"currency": 3}, "pricing.currency", id="currency"),
        pytest.param({"dailyBudgets": {"team-a": -5}}, "pricing.dailyBudgets.team-a", id="budget-negative"),
        pytest.param({"dailyBudgets": {"team-a": "250"}}, "pricing.dailyBudgets.team-a", id="budget-text"),
        pytest.param({"dailyBudgets": [250]}, "pricing.dailyBudgets must map", id="budgets-not-a-map"),
    ],
)
def test_unusable_prices_are_refused_naming_the_key(raw: dict[str, Any], named: str) -> None:
    with pytest.raises(PricingError, match=named.replace("(", r"\(").replace(")", r"\)")):
        parse_prices(raw)


@pytest.mark.parametrize(
    ("product", "gpus", "cpu", "per_replica", "detail"),
    [
        pytest.param("nvidia-h100-80gb", 4, None, 18.0, "4 × nvidia-h100-80gb", id="gpus"),
        pytest.param("nvidia-l4", 1, "2", 0.88, "2 CPU core(s)", id="gpus-and-cpus"),
        pytest.param("nvidia-l4", 1, "500m", 0.82, "0.5 CPU core(s)", id="millicores"),
        pytest.param(None, 1, "2", None, "spec.resources.gpu.product is unset", id="any-card-never-guessed"),
        pytest.param(
            "nvidia-a10g", 1, "2", None, "no GPU-hour price configured for nvidia-a10g", id="unpriced"
        ),
        pytest.param(None, 0, "4", 0.16, "4 CPU core(s)", id="cpu-model"),
        pytest.param(None, 0, None, None, "nothing of this replica is priced", id="cpu-model-no-request"),
    ],
)
def test_replica_cost(
    product: str | None, gpus: int, cpu: str | None, per_replica: float | None, detail: str
) -> None:
    cost = replica_cost(PRICES, product, gpus, cpu)
    assert cost.per_replica == pytest.approx(per_replica)
    assert detail in cost.detail
    assert cost.at(3) == (None if per_replica is None else pytest.approx(3 * per_replica))


def test_no_cpu_price_leaves_cpus_uncosted() -> None:
    cost = replica_cost(Prices(gpu_hour={"nvidia-l4": 0.8}), "nvidia-l4", 2, "8")
    assert cost.per_replica == pytest.approx(1.6)
    assert "CPU" not in cost.detail


def test_cpu_cores() -> None:
    assert [cpu_cores(q) for q in ("2", "500m", "1.5", "x")] == [2.0, 0.5, 1.5, None]


def test_the_operator_reads_the_chart_pricing_from_its_environment() -> None:
    env = {"NLPMODEL_PRICING": '{"currency": "USD", "gpuHour": {"nvidia-l4": 0.8}, "cpuHour": null}'}
    assert OperatorConfig.from_env(env).prices == Prices(gpu_hour={"nvidia-l4": 0.8})
    assert OperatorConfig.from_env({}).prices == Prices()
    with pytest.raises(PricingError, match="NLPMODEL_PRICING is not JSON"):
        prices_from_env({"NLPMODEL_PRICING": "{gpuHour"})
    with pytest.raises(PricingError, match="unknown GPU product"):
        prices_from_env({"NLPMODEL_PRICING": '{"gpuHour": {"h100": 1}}'})


def test_every_gpu_product_can_be_priced() -> None:
    assert parse_prices({"gpuHour": dict.fromkeys(GPU_PRODUCTS, 1.0)}).gpu_hour.keys() == GPU_PRODUCTS.keys()
