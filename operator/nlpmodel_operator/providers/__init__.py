"""Metric providers: where the SLO analysis gets its numbers (Prometheus first)."""

from nlpmodel_operator.providers.base import MetricProvider, NoData, QueryError, QueryResult, Sample, Value
from nlpmodel_operator.providers.factory import KNOWN_KINDS, provider_for
from nlpmodel_operator.providers.prometheus import PrometheusProvider

__all__ = [
    "KNOWN_KINDS",
    "MetricProvider",
    "NoData",
    "PrometheusProvider",
    "QueryError",
    "QueryResult",
    "Sample",
    "Value",
    "provider_for",
]
