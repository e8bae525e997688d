"""What each revision's replica costs and what it served (pure): `status.cost` (issue 19).

A revision's replica is priced from its plan (GPUs per replica x the GPU product's configured price,
plus CPU cores x the CPU-hour price) when it is the spec's revision; the entry stays in status while
the revision is stable or canary, so a rollout knows the stable's price after the spec moved on to the
canary. A stable that predates this entry has no known price: the cost regression is not judged
against it. The measured numbers come from the analysis checks (`core/analysis/cost.measure`), over
the check's window, for both revisions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.status import CostStatus, RevisionCost
from nlpmodel_operator.api.units import format_time
from nlpmodel_operator.core.analysis.checks import CheckData
from nlpmodel_operator.core.analysis.cost import RevisionPricing, Usage, counted, measure
from nlpmodel_operator.core.hostresources import host_requests
from nlpmodel_operator.core.planner import Plan
from nlpmodel_operator.core.pricing import Prices, replica_cost
from nlpmodel_operator.core.records import RevisionState

__all__ = ["cost_status", "plan_pricing", "pricing_by_revision", "round_measure", "wants_cost"]

SIGNIFICANT_DIGITS = 4


def round_measure(value: float | None) -> float | None:
    """A measured number as status keeps it: 4 significant digits; None for what is not a finite >= 0."""
    if value is None or not math.isfinite(value) or value < 0:
        return None
    if value == 0:
        return 0.0
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def plan_pricing(spec: NLPModelSpec, plan: Plan | None, prices: Prices) -> RevisionPricing:
    """One replica of the spec's revision: its GPUs (the plan's tensor parallel) and, with prices, its
    price per hour (None when anything of it is unpriced: never guessed)."""
    gpu = spec.resources.gpu
    gpus = (plan.tensor_parallel if plan is not None else gpu.count) if gpu.count else 0
    hourly = (
        replica_cost(prices, gpu.product, gpus, host_requests(spec, plan).cpu) if prices.configured else None
    )
    return RevisionPricing(
        gpus_per_replica=gpus,
        gpu_product=gpu.product,
        replica_hour_cost=hourly.per_replica if hourly is not None else None,
    )


def wants_cost(spec: NLPModelSpec, prices: Prices, old: CostStatus | None) -> bool:
    """Whether status reports cost: with prices, with a cost objective, or once it has."""
    slo = spec.rollout.slo
    objectives = slo is not None and any(
        v is not None
        for v in (slo.max_cost_regression, slo.cost_per_million_tokens, slo.max_prompt_tokens_regression)
    )
    return prices.configured or objectives or old is not None


def _replicas(state: RevisionState | None) -> int | None:
    return state.replicas if state is not None else None


def pricing_by_revision(
    desired: str,
    desired_pricing: RevisionPricing,
    old: CostStatus | None,
    revisions: Mapping[str, RevisionState],
) -> dict[str, RevisionPricing]:
    """Each known revision's replica and price: the spec's revision from its plan, the others from status."""
    found: dict[str, RevisionPricing] = {}
    for entry in old.revisions if old is not None else []:
        found[entry.revision] = RevisionPricing(
            entry.gpus_per_replica,
            entry.gpu_product,
            entry.replica_hour_cost,
            _replicas(revisions.get(entry.revision)),
        )
    found[desired] = RevisionPricing(
        desired_pricing.gpus_per_replica,
        desired_pricing.gpu_product,
        desired_pricing.replica_hour_cost,
        _replicas(revisions.get(desired)),
    )
    return found


def _entry(revision: str, pricing: RevisionPricing, previous: RevisionCost | None) -> RevisionCost:
    kept = previous.model_dump() if previous is not None and previous.revision == revision else {}
    kept.update(
        revision=revision,
        gpus_per_replica=pricing.gpus_per_replica,
        gpu_product=pricing.gpu_product,
        replica_hour_cost=round_measure(pricing.replica_hour_cost),
    )
    return RevisionCost(**kept)


def _measured(
    entry: RevisionCost, usage: Usage, replicas: int | None, window_s: float, now: datetime
) -> RevisionCost:
    return entry.model_copy(
        update={
            "replicas": replicas,
            "measured_at": format_time(now),
            "window_seconds": round_measure(window_s),
            "tokens_per_second": round_measure(usage.tokens_per_second),
            "prompt_tokens_per_request": round_measure(usage.prompt_tokens_per_request),
            "generation_tokens_per_request": round_measure(usage.generation_tokens_per_request),
            "prefix_cache_hit_ratio": round_measure(usage.prefix_cache_hit_ratio),
            "gpu_hours": round_measure(usage.gpu_hours),
            "cost_per_million_tokens": round_measure(usage.cost_per_million_tokens),
            "cost_per_request": round_measure(usage.cost_per_request),
        }
    )


def cost_status(
    old: CostStatus | None,
    pricing: Mapping[str, RevisionPricing],
    stable: str,
    canary: str | None,
    check: CheckData | None,
    now: datetime,
    currency: str | None,
    failed: str | None = None,
    checked: tuple[str | None, str | None] = (None, None),
) -> CostStatus:
    """`status.cost`: the stable's entry, then the canary's, or without a canary the revision last rolled
    back (it keeps the measurements that condemned it: the check that rolled it back was of it); a
    check's measurements folded in."""
    previous = {e.revision: e for e in old.revisions} if old is not None else {}
    entries: list[RevisionCost] = []
    # The check was of the revisions before this decision (a promotion in the same decision makes the
    # checked canary the stable): its samples go by revision, not by role.
    samples = {}
    if check is not None:
        samples = {r: s for r, s in zip(checked, (check.stable, check.canary), strict=True) if r is not None}
    wanted = (stable, canary if canary is not None else failed)
    for revision in wanted:
        sample = samples.get(revision) if revision is not None else None
        if revision is None or revision not in pricing or any(e.revision == revision for e in entries):
            continue
        entry = _entry(revision, pricing[revision], previous.get(revision))
        if check is not None and check.window_s is not None and sample is not None and check.problem is None:
            priced = counted(pricing[revision], sample.servers)
            usage = measure(sample.tokens, max(0.0, sample.requests - sample.errors), check.window_s, priced)
            entry = _measured(entry, usage, priced.replicas, check.window_s, now)
        entries.append(entry)
    return CostStatus(currency=currency, revisions=entries)
