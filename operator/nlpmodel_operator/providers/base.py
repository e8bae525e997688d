"""The metric provider interface: one query in, a value, no data or an error out.

Analysis keeps the three apart (Argo Rollouts' Successful/Failed vs Error vs Inconclusive): only a
:class:`Value` can ever become a pass or a fail. :class:`NoData` (the query matched nothing) and
:class:`QueryError` (the provider could not answer) are reported as such, never as a verdict.

``query()`` never raises for anything that can go wrong talking to the backend; it returns a
:class:`QueryError` instead (cancellation still propagates, as it must in asyncio).

NaN and ±Inf sample values are kept as they come (``float("nan")``, ``float("inf")``): Prometheus
answers NaN for, e.g., ``histogram_quantile`` over buckets that did not increase, or a ratio 0/0. The
caller decides what a NaN means; it is a :class:`Value`, not :class:`NoData`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Protocol, runtime_checkable

__all__ = ["MetricProvider", "NoData", "QueryError", "QueryResult", "Sample", "Value"]


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector (or the scalar, with no labels) and its value."""

    labels: Mapping[str, str]
    value: float

    def __post_init__(self) -> None:
        # Read-only, so a frozen result really cannot change under its holder.
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))


@dataclass(frozen=True)
class Value:
    """A query that matched something: at least one sample."""

    samples: tuple[Sample, ...]

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError("a Value has at least one sample; an empty result is NoData")

    def by_label(self, label: str) -> dict[str, float]:
        """label value -> sample value, e.g. `le` -> bucket count (a sample without the label is skipped)."""
        return {s.labels[label]: s.value for s in self.samples if label in s.labels}

    def single(self) -> float:
        """The value of a query that yields one series (`sum(...)`); ValueError otherwise."""
        if len(self.samples) != 1:
            raise ValueError(f"expected one sample, got {len(self.samples)}")
        return self.samples[0].value


@dataclass(frozen=True)
class NoData:
    """The query ran and matched no series (e.g. a revision that has not been scraped yet)."""

    query: str


@dataclass(frozen=True)
class QueryError:
    """The provider could not answer.

    transient: worth asking again later (unreachable, timed out, 5xx); False when the query itself is
    wrong (4xx: bad PromQL, unsupported result type) and retrying cannot help.
    """

    query: str
    message: str
    transient: bool


QueryResult = Value | NoData | QueryError


@runtime_checkable
class MetricProvider(Protocol):
    """What the analysis needs from a metrics backend."""

    async def query(self, promql: str, at: datetime | None = None) -> QueryResult:
        """Evaluate an instant query now (or at `at`); never raises for backend failures."""
        ...

    async def close(self) -> None:
        """Release connections (idempotent)."""
        ...
