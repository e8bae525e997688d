"""SLO analysis of a canary: the pure judges (histograms and counters in, a verdict out)."""

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
from nlpmodel_operator.core.analysis.sequential import SequentialVerdict, sequential_judge

__all__ = [
    "METRICS",
    "Evidence",
    "Histogram",
    "Objectives",
    "RevisionSample",
    "SequentialVerdict",
    "Verdict",
    "judge",
    "naive_judge",
    "sequential_judge",
]
