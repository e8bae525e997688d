"""Gathering the metrics of a due analysis check (the I/O half of SLO analysis; the judging is pure).

Errors and missing data are passed on as a `CheckData.problem`: the core records them as `error`
checks, which never pass or fail a canary.
"""

from __future__ import annotations

import asyncio
import math

from nlpmodel_operator.api.spec import CustomMetric
from nlpmodel_operator.core.analysis import queries as q
from nlpmodel_operator.core.analysis.checks import CheckData, CheckRequest
from nlpmodel_operator.core.analysis.cost import TokenSample
from nlpmodel_operator.core.analysis.custom import CustomValue
from nlpmodel_operator.core.analysis.judge import Histogram, RevisionSample
from nlpmodel_operator.providers.base import MetricProvider, NoData, QueryError, QueryResult, Value

NO_PROVIDER = (
    "no metrics provider: set the operator's Prometheus URL (Helm value prometheus.url, "
    "environment NLPMODEL_PROMETHEUS_URL)"
)


def _histogram(result: QueryResult, total: QueryResult | None = None) -> Histogram | None:
    """The buckets, with the increase of the `_sum` series where it was asked for and Prometheus has
    it (a finite value)."""
    if not isinstance(result, Value):
        return None
    observed = None if total is None else _total(total)
    if observed is not None and not math.isfinite(observed):
        observed = None
    return Histogram.from_prometheus({s.labels.get("le", ""): s.value for s in result.samples}, observed)


def _one_value(result: QueryResult) -> float | None:
    """A custom query's value (None: it matched nothing); ValueError unless it is a single series."""
    if not isinstance(result, Value):
        return None
    if len(result.samples) != 1:
        raise ValueError(
            f"the query returned {len(result.samples)} series; aggregate it to one (e.g. avg(...) or sum(...))"
        )
    return result.samples[0].value


def _total(result: QueryResult) -> float | None:
    if not isinstance(result, Value):
        return None
    return sum(s.value for s in result.samples)


_TOKEN_COUNTERS = {
    "prompt tokens": q.PROMPT_TOKENS_TOTAL,
    "generation tokens": q.GENERATION_TOKENS_TOTAL,
    "cache hits": q.PREFIX_CACHE_HITS_TOTAL,
    "cache queries": q.PREFIX_CACHE_QUERIES_TOTAL,
}


def _tokens(results: dict[str, QueryResult]) -> TokenSample | None:
    """The token counters (None: the server exports none, e.g. an engine older than the contract)."""
    prompt = _total(results["prompt tokens"])
    if prompt is None:
        return None
    return TokenSample(
        prompt_tokens=max(prompt, 0.0),  # float noise of extrapolation can dip below 0
        generation_tokens=max(_total(results["generation tokens"]) or 0.0, 0.0),
        cache_hits=max(_total(results["cache hits"]) or 0.0, 0.0),
        cache_queries=max(_total(results["cache queries"]) or 0.0, 0.0),
        prompt_histogram=_histogram(results["prompt histogram"]),
        generation_histogram=_histogram(results["generation histogram"]),
    )


class Analyzer:
    def __init__(self, provider: MetricProvider | None, scrape_interval_s: float = 15.0) -> None:
        self.provider = provider
        # increase(x[w]) only sees requests scraped within w: a window of one check interval misses
        # about one scrape's worth of them (bench/judge measured the loss of power). One extra scrape
        # interval counts every request once.
        self.scrape_interval_s = scrape_interval_s

    async def gather(self, namespace: str, model: str, request: CheckRequest) -> CheckData:
        if self.provider is None:
            return CheckData(None, None, NO_PROVIDER)
        window = request.window_s + self.scrape_interval_s
        canary, problem = await self._sample(
            namespace, model, request.canary, window, request.http_errors_query
        )
        if canary is None:
            return CheckData(None, None, f"canary {request.canary}: {problem}")
        # Without stable data the absolute SLOs are still judged; regressions need both.
        (stable, _), custom = await asyncio.gather(
            self._sample(namespace, model, request.stable, window, request.http_errors_query),
            asyncio.gather(
                *(self._custom(namespace, model, request, metric, window) for metric in request.custom)
            ),
        )
        return CheckData(canary, stable, custom=tuple(custom), window_s=window)

    async def _custom(
        self, namespace: str, model: str, request: CheckRequest, metric: CustomMetric, window_s: float
    ) -> CustomValue:
        assert self.provider is not None
        canary, stable = await asyncio.gather(
            *(
                self.provider.query(q.custom_query(metric.query, namespace, model, revision, window_s))
                for revision in (request.canary, request.stable)
            )
        )
        if isinstance(canary, QueryError):
            return CustomValue(metric.name, problem=f"query failed: {canary.message}")
        try:
            canary_value = _one_value(canary)
            stable_value = _one_value(stable) if not isinstance(stable, QueryError) else None
        except ValueError as exc:
            return CustomValue(metric.name, problem=str(exc))
        return CustomValue(metric.name, canary_value, stable_value)

    async def _sample(
        self, namespace: str, model: str, revision: str, window_s: float, http_errors_query: str | None
    ) -> tuple[RevisionSample | None, str]:
        assert self.provider is not None
        wanted = {
            "ttft": q.histogram_increase(q.TTFT_SECONDS, namespace, model, revision, window_s),
            "itl": q.histogram_increase(q.ITL_SECONDS, namespace, model, revision, window_s),
            "e2e": q.histogram_increase(q.E2E_SECONDS, namespace, model, revision, window_s),
            "ttft sum": q.histogram_sum_increase(q.TTFT_SECONDS, namespace, model, revision, window_s),
            "itl sum": q.histogram_sum_increase(q.ITL_SECONDS, namespace, model, revision, window_s),
            "e2e sum": q.histogram_sum_increase(q.E2E_SECONDS, namespace, model, revision, window_s),
            "requests": q.requests_increase(namespace, model, revision, window_s),
            "errors": q.errors_increase(namespace, model, revision, window_s),
            **{
                name: q.counter_increase(counter, namespace, model, revision, window_s)
                for name, counter in _TOKEN_COUNTERS.items()
            },
            "prompt histogram": q.histogram_increase(
                q.REQUEST_PROMPT_TOKENS, namespace, model, revision, window_s
            ),
            "servers": q.servers(namespace, model, revision),
            "generation histogram": q.histogram_increase(
                q.REQUEST_GENERATION_TOKENS, namespace, model, revision, window_s
            ),
        }
        if http_errors_query is not None:
            wanted["http 5xx"] = q.custom_query(http_errors_query, namespace, model, revision, window_s)
        answers = await asyncio.gather(*(self.provider.query(promql) for promql in wanted.values()))
        results = dict(zip(wanted, answers, strict=True))
        errors = [f"{name}: {r.message}" for name, r in results.items() if isinstance(r, QueryError)]
        if errors:
            return None, "metrics query failed: " + "; ".join(errors)
        requests = _total(results["requests"])
        if requests is None or isinstance(results["requests"], NoData):
            return None, "no metrics (is the revision's PodMonitor scraped by Prometheus?)"
        return (
            RevisionSample(
                ttft=_histogram(results["ttft"], results["ttft sum"]),
                itl=_histogram(results["itl"], results["itl sum"]),
                e2e=_histogram(results["e2e"], results["e2e sum"]),
                requests=max(requests, 0.0),
                errors=max(_total(results["errors"]) or 0.0, 0.0),
                # A 5xx filter that matches nothing means no 5xx: counters appear with the first one.
                http_5xx=None if http_errors_query is None else max(_total(results["http 5xx"]) or 0.0, 0.0),
                tokens=_tokens(results),
                servers=None if (found := _total(results["servers"])) is None else round(found),
            ),
            "",
        )
