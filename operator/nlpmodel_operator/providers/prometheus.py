"""Prometheus as a :class:`~nlpmodel_operator.providers.base.MetricProvider` (HTTP API, instant queries).

Failure handling, in one place:

* connection errors, timeouts, HTTP 5xx and 429 are *transient*: retried up to ``retries`` times with
  exponential backoff, then reported as ``QueryError(transient=True)``;
* HTTP 4xx (bad PromQL is 400 ``bad_data``, 422 ``execution``) and answers we cannot use (malformed
  JSON, a range or string result) are *permanent*: no retry, ``QueryError(transient=False)`` carrying
  Prometheus's own message;
* an overall deadline of ``timeout_s * (retries + 1)`` bounds one ``query()`` including its backoff
  pauses, so a Prometheus that hangs (accepts connections, never answers) costs at most that long.

One provider serves one event loop (its aiohttp session belongs to the loop it was created in).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

import aiohttp

from nlpmodel_operator.providers.base import NoData, QueryError, QueryResult, Sample, Value

__all__ = ["PrometheusProvider"]

QUERY_PATH: Final = "/api/v1/query"
_SNIPPET: Final = 300  # characters of a non-JSON body worth quoting in an error


def _unix(at: datetime) -> float:
    """Seconds since the epoch; a naive datetime is taken as UTC (never as the host's local time)."""
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


def _transient_status(status: int) -> bool:
    return status >= 500 or status == 429


class PrometheusProvider:
    """Instant queries against Prometheus's HTTP API with timeouts and bounded retries."""

    kind: ClassVar[str] = "prometheus"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        session: aiohttp.ClientSession | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Prometheus URL must be http(s)://…, not {url!r}")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if backoff_s < 0:
            raise ValueError("backoff_s must be >= 0")
        self.url = url.rstrip("/")
        self.timeout_s = float(timeout_s)
        self.retries = retries
        self.backoff_s = float(backoff_s)
        self._headers = dict(headers or {})
        self._session = session
        self._owns_session = session is None  # a caller's session is the caller's to close

    @property
    def deadline_s(self) -> float:
        """The most one query() may take, retries and backoff included."""
        return self.timeout_s * (self.retries + 1)

    async def __aenter__(self) -> PrometheusProvider:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        if self._owns_session:
            self._session = None

    async def query(self, promql: str, at: datetime | None = None) -> QueryResult:
        try:
            return await self._query(promql, at)
        except Exception as exc:  # the contract: never raise for a backend failure (cancellation still does)
            return QueryError(promql, f"unexpected {type(exc).__name__}: {exc}", transient=False)

    # -- internals -------------------------------------------------------------------------------------

    async def _query(self, promql: str, at: datetime | None) -> QueryResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.deadline_s
        form = {"query": promql, "timeout": f"{self.timeout_s:g}"}  # server-side evaluation limit too
        if at is not None:
            form["time"] = f"{_unix(at):.3f}"
        last: QueryError | None = None
        attempts = 0
        for attempt in range(self.retries + 1):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            attempts += 1
            result = await self._attempt(promql, form, min(self.timeout_s, remaining))
            if not (isinstance(result, QueryError) and result.transient):
                return result
            last = result
            if attempt < self.retries:
                pause = min(self.backoff_s * 2**attempt, deadline - loop.time())
                if pause > 0:
                    await asyncio.sleep(pause)
        message = last.message if last is not None else "no attempt fit the deadline"
        elapsed = loop.time() - started
        return QueryError(
            promql, f"{message} (gave up after {attempts} attempt(s), {elapsed:.1f}s)", transient=True
        )

    async def _attempt(self, promql: str, form: Mapping[str, str], timeout_s: float) -> QueryResult:
        session = self._session_for_loop()
        try:
            async with asyncio.timeout(timeout_s):
                async with session.post(
                    self.url + QUERY_PATH, data=dict(form), headers=self._headers
                ) as resp:
                    status = resp.status
                    body = await resp.read()
        except TimeoutError:
            return QueryError(
                promql, f"Prometheus at {self.url} did not answer within {timeout_s:.1f}s", True
            )
        except aiohttp.ClientError as exc:
            return QueryError(
                promql, f"cannot reach Prometheus at {self.url}: {type(exc).__name__}: {exc}", True
            )
        return _interpret(promql, status, body)

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise RuntimeError("the session passed to PrometheusProvider is closed")
            # Per-attempt limits come from asyncio.timeout; the session itself must not add its own.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        return self._session


def _interpret(promql: str, status: int, body: bytes) -> QueryResult:
    """Turn one HTTP answer into a result (see the module docstring for the rules)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        snippet = body[:_SNIPPET].decode(errors="replace")
        if _transient_status(status):
            return QueryError(promql, f"HTTP {status}: {snippet}", transient=True)
        return QueryError(promql, f"HTTP {status}, not a Prometheus API answer: {snippet}", transient=False)
    if not isinstance(payload, dict):
        return QueryError(
            promql, f"HTTP {status}, not a Prometheus API answer: {payload!r:.{_SNIPPET}}", False
        )
    if payload.get("status") != "success" or not 200 <= status < 300:
        error_type = payload.get("errorType", "unknown")
        error = payload.get("error", "no message")
        return QueryError(promql, f"HTTP {status} {error_type}: {error}", transient=_transient_status(status))
    try:
        return _result(promql, payload["data"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        return QueryError(
            promql, f"malformed Prometheus answer ({type(exc).__name__}: {exc})", transient=False
        )


def _result(promql: str, data: Any) -> QueryResult:
    result_type = data["resultType"]
    if result_type == "vector":
        samples = tuple(
            Sample({str(k): str(v) for k, v in item["metric"].items()}, float(item["value"][1]))
            for item in data["result"]
        )
        return Value(samples) if samples else NoData(promql)
    if result_type == "scalar":
        return Value((Sample({}, float(data["result"][1])),))
    # A range selector (matrix) or a string literal is a mistake in the query, not missing data.
    return QueryError(
        promql, f"unsupported result type {result_type!r}: use an instant vector", transient=False
    )
