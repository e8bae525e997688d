"""Pick a metric provider by kind (the NLPModel's analysis names one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from nlpmodel_operator.providers.base import MetricProvider
from nlpmodel_operator.providers.prometheus import PrometheusProvider

__all__ = ["KNOWN_KINDS", "provider_for"]

_PROVIDERS: Final[dict[str, Callable[..., MetricProvider]]] = {
    PrometheusProvider.kind: PrometheusProvider,
}
KNOWN_KINDS: Final = tuple(sorted(_PROVIDERS))


def provider_for(kind: str, url: str, **options: Any) -> MetricProvider:
    """A provider of the given kind for url; options go to its constructor (timeout_s, retries, ...)."""
    try:
        make = _PROVIDERS[kind]
    except KeyError:
        raise ValueError(
            f"unknown metric provider kind {kind!r}; known kinds: {', '.join(KNOWN_KINDS)}"
        ) from None
    return make(url, **options)
