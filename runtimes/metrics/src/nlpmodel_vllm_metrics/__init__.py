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
    "GENERATION_TOKENS",
    "HISTOGRAM_BUCKETS",
    "ITL",
    "KV_CACHE_USAGE",
    "NUM_REQUESTS_RUNNING",
    "NUM_REQUESTS_WAITING",
    "PREFIX_CACHE_HITS",
    "PREFIX_CACHE_QUERIES",
    "PROMPT_TOKENS",
    "REQUEST_GENERATION_TOKENS",
    "REQUEST_PROMPT_TOKENS",
    "REQUEST_SUCCESS",
    "SUCCESS_LABELS",
    "TTFT",
    "VLLM_FACTS_FILE",
    "VLLM_VERSION",
    "VllmMetrics",
    "token_buckets",
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
# Token counters (exposed with `_total`) and per-request token histograms (issue 19: cost per token).
PROMPT_TOKENS: Final = _name("vllm:prompt_tokens")
GENERATION_TOKENS: Final = _name("vllm:generation_tokens")
PREFIX_CACHE_HITS: Final = _name("vllm:prefix_cache_hits")  # prompt tokens served from the prefix cache
PREFIX_CACHE_QUERIES: Final = _name("vllm:prefix_cache_queries")  # prompt tokens looked up in it
REQUEST_PROMPT_TOKENS: Final = _name("vllm:request_prompt_tokens")
REQUEST_GENERATION_TOKENS: Final = _name("vllm:request_generation_tokens")
DEFAULT_MAX_MODEL_LEN: Final = 4096


def token_buckets(max_model_len: int) -> tuple[float, ...]:
    """vLLM's buckets of the per-request token histograms: ``build_1_2_5_buckets(max_model_len)``
    (vllm/v1/metrics/loggers.py; the facts JSON lists only the latency buckets, these depend on the
    model): 1, 2, 5, 10, 20, 50, ... up to max_model_len."""
    if max_model_len < 1:
        raise ValueError(f"max_model_len must be >= 1, not {max_model_len}")
    bounds: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_model_len:
                return tuple(bounds)
            bounds.append(float(value))
        exponent += 1


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

    def __init__(
        self, model_name: str, engine: str = ENGINE_INDEX, *, max_model_len: int = DEFAULT_MAX_MODEL_LEN
    ) -> None:
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

        def counter(name: str, doc: str) -> Any:
            return Counter(name, doc, DEFAULT_LABELS, registry=reg).labels(**labels)

        self.prompt_tokens = counter(PROMPT_TOKENS, "Number of prefill tokens processed.")
        self.generation_tokens = counter(GENERATION_TOKENS, "Number of generation tokens processed.")
        self.prefix_cache_queries = counter(
            PREFIX_CACHE_QUERIES, "Prefix cache queries, in terms of number of queried tokens."
        )
        self.prefix_cache_hits = counter(
            PREFIX_CACHE_HITS, "Prefix cache hits, in terms of number of cached tokens."
        )
        buckets = token_buckets(max_model_len)

        def token_histogram(name: str, doc: str) -> Any:
            return Histogram(name, doc, DEFAULT_LABELS, buckets=buckets, registry=reg).labels(**labels)

        self.request_prompt_tokens = token_histogram(
            REQUEST_PROMPT_TOKENS, "Number of prefill tokens processed."
        )
        self.request_generation_tokens = token_histogram(
            REQUEST_GENERATION_TOKENS, "Number of generation tokens processed."
        )

    def finished(
        self,
        reason: str,
        *,
        ttft_s: float | None = None,
        itls_s: tuple[float, ...] = (),
        e2e_s: float,
        prompt_tokens: int = 0,
        generation_tokens: int = 0,
        cached_tokens: int = 0,
    ) -> None:
        """Record one finished request as vLLM does: no TTFT/ITL/E2E for one that failed before a token.

        Tokens: ``prompt_tokens`` prefilled (of which ``cached_tokens`` came from the prefix cache, every
        prompt token being a cache query) and ``generation_tokens`` generated; vLLM counts them per step,
        here they are counted when the request finishes, which is the same over any scrape window that
        holds the request."""
        if not 0 <= cached_tokens <= prompt_tokens or generation_tokens < 0:
            raise ValueError(
                f"token counts out of range: prompt {prompt_tokens}, cached {cached_tokens}, "
                f"generation {generation_tokens}"
            )
        self.success[reason].inc()
        self.prompt_tokens.inc(prompt_tokens)
        self.generation_tokens.inc(generation_tokens)
        self.prefix_cache_queries.inc(prompt_tokens)
        self.prefix_cache_hits.inc(cached_tokens)
        self.request_prompt_tokens.observe(prompt_tokens)
        self.request_generation_tokens.observe(generation_tokens)
        if ttft_s is None:
            return
        self.ttft.observe(ttft_s)
        for itl in itls_s:
            self.itl.observe(itl)
        self.e2e.observe(e2e_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
