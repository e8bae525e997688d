"""SLO analysis of a canary: the pure judge (histograms and counters in, a verdict out)."""

from nlpmodel_operator.core.analysis.judge import (
    METRICS,
    Evidence,
    Histogram,
    Objectives,
    RevisionSample,
    Verdict,
    judge,
    naive_judge,
)

__all__ = [
    "METRICS",
    "Evidence",
    "Histogram",
    "Objectives",
    "RevisionSample",
    "Verdict",
    "judge",
    "naive_judge",
]
