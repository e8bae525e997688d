"""PrometheusProvider's retry/timeout/no-data policy, and the result types and factory.

The policy needs answers a healthy Prometheus never gives on demand (a 503 then a 200, a 429, a
non-JSON body), so these tests talk to a scripted loopback HTTP server. The same provider against a
real Prometheus (bad query, paused, stopped, restarted) is tests/integration/test_prometheus_harness.py.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from nlpmodel_operator.providers import (
    KNOWN_KINDS,
    MetricProvider,
    NoData,
    PrometheusProvider,
    QueryError,
    QueryResult,
    Sample,
    Value,
    provider_for,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def vector(*samples: tuple[dict[str, str], str]) -> dict[str, Any]:
    result = [{"metric": labels, "value": [1764150000.0, value]} for labels, value in samples]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


class Script:
    """Answers requests from a list (the last entry repeats) and records what was asked."""

    def __init__(self, *answers: tuple[int, Any] | str) -> None:
        self.answers = list(answers)
        self.forms: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.forms.append({k: str(v) for k, v in (await request.post()).items()})
        answer = self.answers[min(len(self.forms), len(self.answers)) - 1]
        if answer == "hang":
            await asyncio.sleep(3600)
        assert not isinstance(answer, str)
        status, body = answer
        if isinstance(body, bytes):
            return web.Response(status=status, body=body, content_type="text/html")
        return web.json_response(body, status=status)


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/api/v1/query", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def ask(
    script: Script, promql: str = "up", at: datetime | None = None, **options: Any
) -> tuple[QueryResult, float]:
    async def run() -> tuple[QueryResult, float]:
        async with serving(script.handle) as url, PrometheusProvider(url, **options) as provider:
            started = time.monotonic()
            result = await provider.query(promql, at)
            return result, time.monotonic() - started

    return asyncio.run(run())


FAST = {"timeout_s": 1.0, "retries": 2, "backoff_s": 0.01}


def test_vector_becomes_a_value_with_every_sample() -> None:
    script = Script((200, vector(({"le": "0.5"}, "3"), ({"le": "+Inf"}, "7"))))
    result, _ = ask(script, **FAST)
    assert isinstance(result, Value)
    assert result.by_label("le") == {"0.5": 3.0, "+Inf": 7.0}
    assert len(script.forms) == 1
    assert script.forms[0] == {"query": "up", "timeout": "1"}


def test_empty_vector_is_no_data() -> None:
    result, _ = ask(Script((200, vector())), "sum(x)", **FAST)
    assert result == NoData("sum(x)")


def test_scalar_nan_and_inf_are_kept_as_values() -> None:
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "NaN"]}}
    result, _ = ask(Script((200, scalar)), **FAST)
    assert isinstance(result, Value)
    assert result.samples[0].labels == {}
    assert math.isnan(result.single())
    result, _ = ask(Script((200, vector(({}, "+Inf"), ({"a": "b"}, "-Inf")))), **FAST)
    assert isinstance(result, Value)
    assert [s.value for s in result.samples] == [math.inf, -math.inf]


def test_time_parameter_when_asked_at_a_moment() -> None:
    script = Script((200, vector(({}, "1"))))
    ask(script, at=datetime(2026, 11, 26, 10, 0, tzinfo=UTC), **FAST)
    ask(script, at=datetime(2026, 11, 26, 10, 0), **FAST)  # naive: taken as UTC
    assert [f["time"] for f in script.forms] == ["1795687200.000", "1795687200.000"]


def test_transient_5xx_and_429_are_retried_until_an_answer() -> None:
    script = Script((503, {"status": "error", "errorType": "unavailable", "error": "busy"}), (429, b"slow down"),
                    (200, vector(({}, "1"))))  # fmt: skip
    result, _ = ask(script, **FAST)
    assert isinstance(result, Value)
    assert len(script.forms) == 3


def test_retries_are_bounded_and_end_in_a_transient_error() -> None:
    script = Script((502, b"<html>bad gateway</html>"))
    result, _ = ask(script, **FAST)
    assert isinstance(result, QueryError)
    assert result.transient
    assert "HTTP 502" in result.message
    assert "3 attempt(s)" in result.message
    assert len(script.forms) == 3


def test_bad_query_is_permanent_and_not_retried() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": 'invalid parameter "query": parse error'}
    script = Script((400, body))
    result, _ = ask(script, "sum(", **FAST)
    assert result == QueryError("sum(", 'HTTP 400 bad_data: invalid parameter "query": parse error', False)
    assert len(script.forms) == 1


@pytest.mark.parametrize(
    "answer",
    [
        (200, b"<html>a proxy's login page</html>"),
        (200, {"status": "success", "data": {"resultType": "matrix", "result": []}}),
        (200, {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}}),
        (200, ["not", "an", "object"]),
        (422, {"status": "error", "errorType": "execution", "error": "many-to-many matching"}),
    ],
    ids=["not-json", "matrix", "malformed-sample", "not-an-object", "422"],
)
def test_unusable_answers_are_permanent_errors(answer: tuple[int, Any]) -> None:
    script = Script(answer)
    result, _ = ask(script, **FAST)
    assert isinstance(result, QueryError)
    assert not result.transient
    assert len(script.forms) == 1


def test_a_hanging_server_costs_at_most_the_deadline() -> None:
    script = Script("hang")
    result, elapsed = ask(script, timeout_s=0.3, retries=2, backoff_s=0.05)
    assert isinstance(result, QueryError)
    assert result.transient
    assert "did not answer" in result.message
    assert 0.85 <= elapsed <= 0.9 + 0.3  # timeout_s * (retries + 1), backoff pauses included
    assert len(script.forms) == 3


def test_unreachable_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there

    async def run() -> QueryResult:
        async with PrometheusProvider(f"http://127.0.0.1:{port}", **FAST) as provider:
            return await provider.query("up")

    result = asyncio.run(run())
    assert isinstance(result, QueryError)
    assert result.transient
    assert "cannot reach" in result.message


def test_a_callers_session_is_used_and_left_open() -> None:
    script = Script((200, vector(({}, "1"))))

    async def run() -> tuple[QueryResult, bool]:
        async with serving(script.handle) as url, aiohttp.ClientSession() as session:
            provider = PrometheusProvider(url, session=session)
            result = await provider.query("up")
            await provider.close()
            await provider.close()  # idempotent
            return result, session.closed

    result, closed = asyncio.run(run())
    assert isinstance(result, Value)
    assert not closed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "127.0.0.1:9090"}, "http"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"retries": -1}, "retries"),
        ({"backoff_s": -0.1}, "backoff_s"),
    ],
)
def test_constructor_rejects(kwargs: dict[str, Any], message: str) -> None:
    url = kwargs.pop("url", "http://127.0.0.1:9090")
    with pytest.raises(ValueError, match=message):
        PrometheusProvider(url, **kwargs)


def test_factory() -> None:
    provider = provider_for("prometheus", "http://prom:9090/", timeout_s=2.0, retries=1)
    assert isinstance(provider, PrometheusProvider)
    assert isinstance(provider, MetricProvider)
    assert provider.url == "http://prom:9090"
    assert provider.deadline_s == 4.0
    assert KNOWN_KINDS == ("prometheus",)
    with pytest.raises(ValueError, match="known kinds: prometheus"):
        provider_for("datadog", "http://x")


def test_result_types() -> None:
    with pytest.raises(ValueError, match="NoData"):
        Value(())
    labels = {"le": "1"}
    sample = Sample(labels, 2.0)
    labels["le"] = "changed"  # the sample keeps its own read-only copy
    assert sample.labels == {"le": "1"}
    with pytest.raises(TypeError):
        sample.labels["le"] = "x"  # type: ignore[index]
    with pytest.raises(ValueError, match="one sample"):
        Value((sample, sample)).single()
