"""PromQL for the SLO analysis: pure builders, data in, query text out (no I/O).

Label contract: the operator's PodMonitor relabels every revision pod's series with the target labels
below, next to vLLM's own ``model_name`` and ``engine`` (and ``finished_reason`` on
``vllm:request_success_total``). Every query selects exactly one revision of one model in one
namespace with all three, so two revisions (stable and canary) never mix, and summing over pods gives
the revision's total.
"""

from __future__ import annotations

import math
import re
from typing import Final

from nlpmodel_operator.api.spec import QUERY_PLACEHOLDER

__all__ = [
    "E2E_SECONDS",
    "ERROR_REASONS",
    "GENERATION_TOKENS_TOTAL",
    "ITL_SECONDS",
    "KV_CACHE_USAGE",
    "NUM_REQUESTS_RUNNING",
    "NUM_REQUESTS_WAITING",
    "PREFIX_CACHE_HITS_TOTAL",
    "PREFIX_CACHE_QUERIES_TOTAL",
    "PROMPT_TOKENS_TOTAL",
    "REQUEST_GENERATION_TOKENS",
    "REQUEST_PROMPT_TOKENS",
    "REQUEST_SUCCESS_TOTAL",
    "TARGET_LABEL_MODEL",
    "TARGET_LABEL_NAMESPACE",
    "TARGET_LABEL_REVISION",
    "TTFT_SECONDS",
    "cost_per_million_tokens",
    "counter_increase",
    "custom_query",
    "errors_increase",
    "escape_label_value",
    "histogram_increase",
    "histogram_quantile",
    "histogram_sum_increase",
    "kv_cache_usage",
    "queue_depth",
    "requests_increase",
    "revision_selector",
    "servers",
]

# Target labels (the PodMonitor's relabeling writes them; the harness's scrape config too).
TARGET_LABEL_NAMESPACE: Final = "namespace"
TARGET_LABEL_MODEL: Final = "nlpmodel_model"  # the NLPModel's name
TARGET_LABEL_REVISION: Final = "nlpmodel_revision"  # the 8-hex revision hash

# vLLM 0.33 metric names (tests check them against the vLLM facts JSON).
TTFT_SECONDS: Final = "vllm:time_to_first_token_seconds"
ITL_SECONDS: Final = "vllm:inter_token_latency_seconds"
E2E_SECONDS: Final = "vllm:e2e_request_latency_seconds"
REQUEST_SUCCESS_TOTAL: Final = "vllm:request_success_total"
NUM_REQUESTS_RUNNING: Final = "vllm:num_requests_running"
NUM_REQUESTS_WAITING: Final = "vllm:num_requests_waiting"
KV_CACHE_USAGE: Final = "vllm:kv_cache_usage_perc"
# Token counters and per-request token histograms (the cost SLOs, issue 19).
PROMPT_TOKENS_TOTAL: Final = "vllm:prompt_tokens_total"
GENERATION_TOKENS_TOTAL: Final = "vllm:generation_tokens_total"
PREFIX_CACHE_HITS_TOTAL: Final = "vllm:prefix_cache_hits_total"
PREFIX_CACHE_QUERIES_TOTAL: Final = "vllm:prefix_cache_queries_total"
REQUEST_PROMPT_TOKENS: Final = "vllm:request_prompt_tokens"
REQUEST_GENERATION_TOKENS: Final = "vllm:request_generation_tokens"
# finished_reason values that count against the error-rate SLO (a client abort is a failed request too).
ERROR_REASONS: Final = ("error", "abort")

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SIMPLE_ESCAPES: Final = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_label_value(value: str) -> str:
    """The body of a double-quoted PromQL string literal for value (Go escaping rules)."""
    out = []
    for ch in value:
        if ch in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _metric(name: str) -> str:
    if not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"not a Prometheus metric name: {name!r}")
    return name


def _range(window_s: float) -> str:
    """A PromQL range: whole seconds as `60s`, anything finer in milliseconds."""
    if isinstance(window_s, bool) or not isinstance(window_s, int | float) or not math.isfinite(window_s):
        raise ValueError(f"window must be a finite number of seconds, not {window_s!r}")
    millis = round(window_s * 1000)
    if millis < 1:
        raise ValueError(f"window must be at least 1ms, not {window_s!r}s")
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def revision_selector(namespace: str, model: str, revision: str, *extra: str) -> str:
    """`{namespace="…",nlpmodel_model="…",nlpmodel_revision="…"}`, plus ready-made extra matchers."""
    for what, value in (("namespace", namespace), ("model", model), ("revision", revision)):
        if not value:
            raise ValueError(f"{what} must not be empty (an empty matcher would select series without it)")
    matchers = [
        f'{TARGET_LABEL_NAMESPACE}="{escape_label_value(namespace)}"',
        f'{TARGET_LABEL_MODEL}="{escape_label_value(model)}"',
        f'{TARGET_LABEL_REVISION}="{escape_label_value(revision)}"',
        *extra,
    ]
    return "{" + ",".join(matchers) + "}"


def histogram_increase(metric: str, namespace: str, model: str, revision: str, window_s: float) -> str:
    """Per-bucket increase of a histogram over the window, summed over the revision's pods, by `le`.

    metric is the family name (`vllm:time_to_first_token_seconds`); a trailing `_bucket` is accepted.
    """
    family = _metric(metric.removesuffix("_bucket"))
    selector = revision_selector(namespace, model, revision)
    return f"sum by (le) (increase({family}_bucket{selector}[{_range(window_s)}]))"


def histogram_sum_increase(metric: str, namespace: str, model: str, revision: str, window_s: float) -> str:
    """Increase of the histogram's ``_sum`` over the window (the exact total of the observed values),
    summed over the revision's pods."""
    family = _metric(metric.removesuffix("_bucket"))
    selector = revision_selector(namespace, model, revision)
    return f"sum(increase({family}_sum{selector}[{_range(window_s)}]))"


def histogram_quantile(
    quantile: float, metric: str, namespace: str, model: str, revision: str, window_s: float
) -> str:
    """The q-quantile estimated from the window's bucket increases (NaN when nothing was observed)."""
    if not 0 <= quantile <= 1:
        raise ValueError(f"quantile must be within [0, 1], not {quantile!r}")
    return f"histogram_quantile({quantile!r}, {histogram_increase(metric, namespace, model, revision, window_s)})"


def requests_increase(namespace: str, model: str, revision: str, window_s: float) -> str:
    """Finished requests (every finished_reason) in the window."""
    selector = revision_selector(namespace, model, revision)
    return f"sum(increase({REQUEST_SUCCESS_TOTAL}{selector}[{_range(window_s)}]))"


def errors_increase(namespace: str, model: str, revision: str, window_s: float) -> str:
    """Requests that finished in error or were aborted, in the window."""
    reasons = "|".join(ERROR_REASONS)
    selector = revision_selector(namespace, model, revision, f'finished_reason=~"{reasons}"')
    return f"sum(increase({REQUEST_SUCCESS_TOTAL}{selector}[{_range(window_s)}]))"


def queue_depth(namespace: str, model: str, revision: str) -> str:
    """Requests waiting right now, summed over the revision's pods."""
    return f"sum({NUM_REQUESTS_WAITING}{revision_selector(namespace, model, revision)})"


def kv_cache_usage(namespace: str, model: str, revision: str) -> str:
    """The fullest KV cache among the revision's pods (0..1)."""
    return f"max({KV_CACHE_USAGE}{revision_selector(namespace, model, revision)})"


def custom_query(template: str, namespace: str, model: str, revision: str, window_s: float) -> str:
    """A custom metric's PromQL template for one revision: label values escaped for string literals,
    `{{ interval }}` as a PromQL range (the spec's validation already rejected unknown placeholders)."""
    values = {
        "namespace": escape_label_value(namespace),
        "model": escape_label_value(model),
        "revision": escape_label_value(revision),
        "interval": _range(window_s),
    }
    return QUERY_PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def counter_increase(counter: str, namespace: str, model: str, revision: str, window_s: float) -> str:
    """A counter's increase over the window (resets handled by `increase`), summed over the pods."""
    selector = revision_selector(namespace, model, revision)
    return f"sum(increase({_metric(counter)}{selector}[{_range(window_s)}]))"


def cost_per_million_tokens(
    namespace: str, model: str, revision: str, window_s: float, replica_hour_cost: float, replicas: int
) -> str:
    """The accounting cost per million served tokens over the window, as status reports it: the
    replicas' price over the window divided by the prompt and generated tokens (empty: no tokens)."""
    if not (math.isfinite(replica_hour_cost) and replica_hour_cost >= 0) or replicas < 0:
        raise ValueError("replica_hour_cost and replicas must be finite and >= 0")
    cost = replica_hour_cost * replicas * window_s / 3600.0
    served = " + ".join(
        counter_increase(c, namespace, model, revision, window_s)
        for c in (PROMPT_TOKENS_TOTAL, GENERATION_TOKENS_TOTAL)
    )
    return f"{cost!r} * 1e6 / (({served}) > 0)"


def servers(namespace: str, model: str, revision: str) -> str:
    """The revision's model servers Prometheus scrapes now (one vllm:num_requests_running series each)."""
    return f"count({NUM_REQUESTS_RUNNING}{revision_selector(namespace, model, revision)})"
