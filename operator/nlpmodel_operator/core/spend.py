"""What a model's pods cost per hour now, and its budget per 24 h (pure).

The cost is the sum over its live revisions of observed replicas x what one replica costs
(`pricing.replica_cost`: GPUs per replica x the GPU-hour price of their product, plus CPU-hours when
priced). One replica of each revision is described by a `RevisionShape`, taken from the spec while the
revision is the current template and kept in `status.spend.revisions`, so that the stable is still
priced by its own GPUs while a canary of another template rolls out (the operator keeps no older spec).
A revision whose shape or replica count is unknown, or whose GPUs have no price, leaves the model
without a cost: a partial sum would be a guess.

The budget is the model's `serving.nlpmodel.dev/daily-budget` annotation, else the chart's
`pricing.dailyBudgets.<namespace>`. An annotation that is not a number sets `BudgetValid=False` with
what to write instead, and the namespace's budget (if any) applies meanwhile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.status import NLPModelStatus, RevisionShape, SpendStatus
from nlpmodel_operator.core import planner
from nlpmodel_operator.core.hostresources import host_requests
from nlpmodel_operator.core.pricing import Prices, replica_cost
from nlpmodel_operator.core.problems import Problem
from nlpmodel_operator.core.records import RevisionState

# Shapes kept in status: the live revisions (stable, canary) and a few that are being retired.
MAX_SHAPES = 4
COST_DIGITS = 4  # the cost per hour as written to status (and exported)


class BudgetError(ValueError):
    """A daily-budget annotation that is not a usable amount; the message says what to write."""


def parse_budget(text: str, currency: str) -> float:
    """A daily budget as the annotation gives it: a non-negative number in the pricing currency."""
    example = f'e.g. {c.ANNOTATION_DAILY_BUDGET}: "250"'
    try:
        amount = float(text.strip())
    except ValueError:
        raise BudgetError(
            f"annotation {c.ANNOTATION_DAILY_BUDGET}={text!r} is not a number: write the budget per 24 h "
            f"in {currency} without the currency, {example}"
        ) from None
    if not math.isfinite(amount) or amount < 0:
        raise BudgetError(
            f"annotation {c.ANNOTATION_DAILY_BUDGET}={text!r} must be a finite amount of at least 0 "
            f"({currency} per 24 h), {example}"
        )
    return amount


def annotation_problems(body: object) -> list[Problem]:
    """A daily-budget annotation the operator could not read, as `nlpctl validate` reports it (the
    operator itself carries on: BudgetValid=False)."""
    metadata = body.get("metadata") if isinstance(body, Mapping) else None
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    text = annotations.get(c.ANNOTATION_DAILY_BUDGET) if isinstance(annotations, Mapping) else None
    if text is None:
        return []
    try:
        parse_budget(str(text), "the pricing currency")
    except BudgetError as exc:
        return [Problem(f"metadata.annotations.{c.ANNOTATION_DAILY_BUDGET}", str(exc))]
    return []


@dataclass(frozen=True)
class Budget:
    amount: float | None  # per 24 h; None: no budget applies
    source: str | None  # where it comes from, for status and `nlpctl status`
    problem: str | None = None  # why the annotation was not used (BudgetValid=False)


def daily_budget(annotation: str | None, namespace: str, prices: Prices) -> Budget:
    """The model's budget: its annotation, else its namespace's (`pricing.dailyBudgets`)."""
    problem = None
    if annotation is not None:
        try:
            return Budget(
                parse_budget(annotation, prices.currency), f"annotation {c.ANNOTATION_DAILY_BUDGET}"
            )
        except BudgetError as exc:
            problem = str(exc)
    amount = prices.daily_budgets.get(namespace)
    if amount is None:
        return Budget(None, None, problem)
    if problem is not None:
        problem += f"; meanwhile the namespace's budget ({prices.format(amount)}) applies"
    return Budget(amount, f"pricing.dailyBudgets.{namespace}", problem)


def current_shape(revision: str, spec: NLPModelSpec, plan: planner.Plan | None) -> RevisionShape:
    """One replica of the current template, as its pods request it (`platforms.common`)."""
    gpus = spec.resources.gpu
    return RevisionShape(
        revision=revision,
        gpu_product=gpus.product if gpus.count else None,
        gpus=gpus.count,
        cpu=host_requests(spec, plan).cpu,
    )


@dataclass(frozen=True)
class Cost:
    per_hour: float | None  # None: not priced (the detail says why)
    detail: str


def cost_per_hour(
    prices: Prices,
    revisions: Mapping[str, RevisionState],
    shapes: Sequence[RevisionShape],
    applied: Mapping[str, int] | None = None,
) -> Cost:
    """What every revision's observed replicas cost per hour together, priced by each one's shape.

    applied: the counts the operator applies itself, for a revision whose platform reports none (an
    autoscaled one has none: its count is unknown then)."""
    if not prices.configured:
        return Cost(None, "no cost: no prices configured (chart values pricing)")
    by_revision = {s.revision: s for s in shapes}
    for known in shapes:  # even at zero replicas: a model whose GPUs have no price costs nothing known
        unpriced = replica_cost(prices, known.gpu_product, known.gpus, known.cpu)
        if unpriced.per_replica is None:
            return Cost(None, f"revision {known.revision}: {unpriced.detail}")
    total, parts = 0.0, []
    for name, state in sorted(revisions.items()):
        replicas = state.replicas if state.replicas is not None else (applied or {}).get(name)
        if replicas == 0 or state.stopped:
            continue  # scaled to zero (or stopped): nothing runs, whatever it would cost
        if replicas is None:
            return Cost(None, f"no cost: revision {name} reports no replica count and an autoscaler owns it")
        shape = by_revision.get(name)
        if shape is None:
            return Cost(
                None,
                f"no cost: what one replica of revision {name} holds is unknown (it was deployed before "
                "prices or a budget were configured, or by an older operator); the model is priced "
                "again once that revision is gone",
            )
        replica = replica_cost(prices, shape.gpu_product, shape.gpus, shape.cpu)
        if replica.per_replica is None:
            return Cost(None, f"revision {name}: {replica.detail}")
        total += replica.per_replica * replicas
        parts.append(f"{name}: {replicas} × ({replica.detail})")
    if not parts:
        return Cost(0.0, "no replicas running")
    return Cost(total, "; ".join(parts))


def kept_shapes(
    current: RevisionShape | None, recorded: Sequence[RevisionShape], live: Sequence[str]
) -> list[RevisionShape]:
    """The shapes to keep in status: the current template's, and the recorded ones of revisions that
    still have children (bounded)."""
    out = [current] if current is not None else []
    out += [s for s in recorded if s.revision in live and (current is None or s.revision != current.revision)]
    return out[:MAX_SHAPES]


@dataclass(frozen=True)
class SpendInput:
    namespace: str
    prices: Prices
    annotation: str | None  # the model's daily-budget annotation, if set
    revisions: Mapping[str, RevisionState]
    old: NLPModelStatus
    current: RevisionShape | None  # None: the spec cannot be resolved now
    applied: Mapping[str, int] = field(default_factory=dict)  # replica counts the operator applies


@dataclass(frozen=True)
class Spend:
    status: SpendStatus | None  # None: neither prices nor a budget apply (nothing is written)
    budget_problem: str | None  # set BudgetValid=False with it
    annotated: bool  # whether the model carries the annotation (BudgetValid is shown only then)


def spend(given: SpendInput) -> Spend:
    """The model's `status.spend` and what to say about its budget annotation."""
    budget = daily_budget(given.annotation, given.namespace, given.prices)
    annotated = given.annotation is not None
    if not given.prices.configured and budget.amount is None:
        return Spend(None, budget.problem, annotated)
    recorded = given.old.spend.revisions if given.old.spend is not None else []
    shapes = kept_shapes(given.current, recorded, sorted(given.revisions))
    cost = cost_per_hour(given.prices, given.revisions, shapes, given.applied)
    status = SpendStatus(
        currency=given.prices.currency,
        cost_per_hour=None if cost.per_hour is None else round(cost.per_hour, COST_DIGITS),
        detail=cost.detail[:1024],
        daily_budget=budget.amount,
        budget_source=budget.source,
        revisions=shapes,
    )
    return Spend(status, budget.problem, annotated)
