"""Prices the platform team configures (chart values `pricing`), and what a model costs per hour (pure).

A price is configuration, never a guess: a GPU product without a configured GPU-hour price, or a model
that names no GPU product (its pods may land on any card), has no cost. The same mapping reaches the
operator (NLPMODEL_PRICING, read once at start) and `nlpctl plan` (`--prices FILE` or the same
variable):

    currency: USD
    gpuHour: {nvidia-h100-80gb: 4.5, nvidia-l4: 0.8}   # per GPU and hour, by spec.resources.gpu.product
    cpuHour: 0.04                                    # optional: per CPU core and hour (the pods' requests)
    dailyBudgets: {team-a: 250}                      # optional: per namespace, per 24 h (core/spend.py)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nlpmodel_operator.core.gpus import GPU_PRODUCTS


class PricingError(ValueError):
    """Pricing configuration that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Prices:
    gpu_hour: Mapping[str, float] = field(default_factory=dict)
    cpu_hour: float | None = None
    currency: str = "USD"
    # Budget per 24 h of each model in a namespace (a model's annotation overrides it; core/spend.py).
    daily_budgets: Mapping[str, float] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.gpu_hour) or self.cpu_hour is not None

    def format(self, amount: float) -> str:
        return f"{amount:,.2f} {self.currency}"


def _price(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise PricingError(f"{key} must be a non-negative number, not {value!r}")
    return float(value)


def parse_prices(raw: Mapping[str, Any] | None) -> Prices:
    """Prices from the chart's `pricing` mapping (or a values file holding one under `pricing`)."""
    if not raw:
        return Prices()
    if "pricing" in raw and isinstance(raw["pricing"], Mapping):
        raw = raw["pricing"]
    unknown = sorted(set(raw) - {"currency", "gpuHour", "cpuHour", "dailyBudgets"})
    if unknown:
        raise PricingError(
            f"pricing: unknown key(s) {', '.join(unknown)}; known: currency, gpuHour, cpuHour, dailyBudgets"
        )
    gpu_hour = raw.get("gpuHour") or {}
    if not isinstance(gpu_hour, Mapping):
        raise PricingError("pricing.gpuHour must map GPU products to prices")
    products = sorted(set(gpu_hour) - set(GPU_PRODUCTS))
    if products:
        raise PricingError(
            f"pricing.gpuHour: unknown GPU product(s) {', '.join(map(str, products))}; "
            f"known: {', '.join(GPU_PRODUCTS)}"
        )
    budgets = raw.get("dailyBudgets") or {}
    if not isinstance(budgets, Mapping):
        raise PricingError("pricing.dailyBudgets must map namespaces to budgets per 24 h")
    cpu_hour = raw.get("cpuHour")
    currency = raw.get("currency") or "USD"
    if not isinstance(currency, str):
        raise PricingError(f"pricing.currency must be a string, not {currency!r}")
    return Prices(
        gpu_hour={name: _price(value, f"pricing.gpuHour.{name}") for name, value in gpu_hour.items()},
        cpu_hour=None if cpu_hour is None else _price(cpu_hour, "pricing.cpuHour"),
        currency=currency,
        daily_budgets={
            str(namespace): _price(value, f"pricing.dailyBudgets.{namespace}")
            for namespace, value in budgets.items()
        },
    )


def cpu_cores(quantity: str) -> float | None:
    """Cores of a CPU quantity ("2", "500m"); None for what it cannot read."""
    try:
        return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
    except ValueError:
        return None


@dataclass(frozen=True)
class HourlyCost:
    """What one replica costs per hour: GPUs, CPUs (when priced), and why there is no figure."""

    per_replica: float | None
    detail: str  # how it was computed, or why it was not

    def at(self, replicas: int) -> float | None:
        return None if self.per_replica is None else self.per_replica * replicas


def replica_cost(
    prices: Prices, gpu_product: str | None, gpu_count: int, cpu_request: str | None = None
) -> HourlyCost:
    """The hourly cost of one replica with `gpu_count` GPUs of `gpu_product` (None: any card, so no
    GPU price applies) and `cpu_request` cores (costed only with a CPU-hour price)."""
    parts: list[str] = []
    total = 0.0
    if gpu_count > 0:
        if gpu_product is None:
            return HourlyCost(
                None, "no cost: spec.resources.gpu.product is unset (the pods may run on any GPU)"
            )
        price = prices.gpu_hour.get(gpu_product)
        if price is None:
            return HourlyCost(None, f"no cost: no GPU-hour price configured for {gpu_product}")
        total += price * gpu_count
        parts.append(f"{gpu_count} × {gpu_product} at {prices.format(price)}/GPU-hour")
    cores = cpu_cores(cpu_request) if cpu_request else None
    if prices.cpu_hour is not None and cores is not None:
        total += prices.cpu_hour * cores
        parts.append(f"{cores:g} CPU core(s) at {prices.format(prices.cpu_hour)}/core-hour")
    if not parts:
        return HourlyCost(None, "no cost: nothing of this replica is priced")
    return HourlyCost(total, " + ".join(parts))
