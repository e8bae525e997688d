"""vLLM 0.33's Prometheus metric contract: names, label sets, finished reasons and bucket bounds.

One definition shared by everything that must look like vLLM to the SLO analysis: our transformers
runtime (runtimes/transformers) and the operator's model-server stand-in (the harness's modelserver). The
values are read at import from this package's copy of the vLLM 0.33.0 facts
(``data/vllm-0.33.0-cli.json``, identical to ``../shared/vllm``; `make vllm-table` refreshes both copies),
so they cannot drift from vLLM's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = [
    "DEFAULT_LABELS",
    "E2E",
    "ENGINE_INDEX",
    "FINISHED_REASONS",
    "HISTOGRAM_BUCKETS",
    "ITL",
    "KV_CACHE_USAGE",
    "NUM_REQUESTS_RUNNING",
    "NUM_REQUESTS_WAITING",
    "REQUEST_SUCCESS",
    "SUCCESS_LABELS",
    "TTFT",
    "VLLM_FACTS_FILE",
    "VLLM_VERSION",
    "VllmMetrics",
    "vllm_facts",
]

VLLM_FACTS_FILE: Final = "vllm-0.33.0-cli.json"
VLLM_VERSION: Final = "0.33.0"
ENGINE_INDEX: Final = "0"  # vLLM's `engine` label: the engine core's index (one engine per server here)


def vllm_facts() -> dict[str, Any]:
    """The vLLM 0.33.0 facts shipped as package data (identical to ../shared/vllm/)."""
    text = (resources.files("nlpmodel_vllm_metrics") / "data" / VLLM_FACTS_FILE).read_text()
    facts: dict[str, Any] = json.loads(text)
    return facts


_FACTS: Final = vllm_facts()
_KNOWN_NAMES: Final = frozenset(_FACTS["metrics"])

# vLLM's v1 loggers.py defines vllm:e2e_request_latency_seconds (buckets: REQUEST_LATENCY_BUCKETS), but
# the static extraction behind the JSON did not list its name; every other name below must be listed.
_NOT_LISTED_IN_FACTS: Final = frozenset({"vllm:e2e_request_latency_seconds"})


def _name(name: str) -> str:
    """A metric name as vLLM defines it; refuses (at import) a name the vLLM facts do not know."""
    if name not in _KNOWN_NAMES and name not in _NOT_LISTED_IN_FACTS:
        raise RuntimeError(f"{name} is not a vLLM {VLLM_VERSION} metric according to {VLLM_FACTS_FILE}")
    return name


TTFT: Final = _name("vllm:time_to_first_token_seconds")
ITL: Final = _name("vllm:inter_token_latency_seconds")
E2E: Final = _name("vllm:e2e_request_latency_seconds")
REQUEST_SUCCESS: Final = _name("vllm:request_success")  # a Counter: exposed as vllm:request_success_total
NUM_REQUESTS_RUNNING: Final = _name("vllm:num_requests_running")
NUM_REQUESTS_WAITING: Final = _name("vllm:num_requests_waiting")
KV_CACHE_USAGE: Final = _name("vllm:kv_cache_usage_perc")

HISTOGRAM_BUCKETS: Final[Mapping[str, tuple[float, ...]]] = {
    name: tuple(float(b) for b in _FACTS["histogram_buckets"][key])
    for name, key in (
        (TTFT, "TIME_TO_FIRST_TOKEN_BUCKETS"),
        (ITL, "INTER_TOKEN_LATENCY_BUCKETS"),
        (E2E, "REQUEST_LATENCY_BUCKETS"),
    )
}
DEFAULT_LABELS: Final[tuple[str, ...]] = tuple(_FACTS["metric_labels"]["default"])
SUCCESS_LABELS: Final[tuple[str, ...]] = tuple(_FACTS["metric_labels"][REQUEST_SUCCESS])
FINISHED_REASONS: Final[tuple[str, ...]] = tuple(_FACTS["metric_labels"]["finished_reason_values"])
if set(DEFAULT_LABELS) != {"model_name", "engine"} or set(SUCCESS_LABELS) != {
    *DEFAULT_LABELS,
    "finished_reason",
}:
    raise RuntimeError(f"unexpected vLLM label sets in {VLLM_FACTS_FILE}: {DEFAULT_LABELS}, {SUCCESS_LABELS}")


class VllmMetrics:
    """vLLM's metric families in their own registry, labelled as a one-engine vLLM server labels them."""

    def __init__(self, model_name: str, engine: str = ENGINE_INDEX) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"model_name": model_name, "engine": engine}
        reg = self.registry

        def histogram(name: str, doc: str) -> Any:
            h = Histogram(name, doc, DEFAULT_LABELS, buckets=HISTOGRAM_BUCKETS[name], registry=reg)
            return h.labels(**labels)

        self.ttft = histogram(TTFT, "Histogram of time to first token in seconds.")
        self.itl = histogram(ITL, "Histogram of inter-token latency in seconds.")
        self.e2e = histogram(E2E, "Histogram of e2e request latency in seconds.")
        success = Counter(
            REQUEST_SUCCESS, "Count of successfully processed requests.", SUCCESS_LABELS, registry=reg
        )
        # Like vLLM, every finished_reason series exists from the start (at 0), so increase() sees it.
        self.success = {r: success.labels(**labels, finished_reason=r) for r in FINISHED_REASONS}
        self.running = Gauge(
            NUM_REQUESTS_RUNNING,
            "Number of requests in model execution batches.",
            DEFAULT_LABELS,
            registry=reg,
        ).labels(**labels)
        self.waiting = Gauge(
            NUM_REQUESTS_WAITING, "Number of requests waiting to be processed.", DEFAULT_LABELS, registry=reg
        ).labels(**labels)
        self.kv_cache = Gauge(
            KV_CACHE_USAGE, "KV-cache usage. 1 means 100 percent usage.", DEFAULT_LABELS, registry=reg
        ).labels(**labels)

    def finished(
        self, reason: str, *, ttft_s: float | None = None, itls_s: tuple[float, ...] = (), e2e_s: float
    ) -> None:
        """Record one finished request as vLLM does: no TTFT/ITL/E2E for one that failed before a token."""
        self.success[reason].inc()
        if ttft_s is None:
            return
        self.ttft.observe(ttft_s)
        for itl in itls_s:
            self.itl.observe(itl)
        self.e2e.observe(e2e_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
