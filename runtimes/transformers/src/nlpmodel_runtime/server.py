"""The HTTP server: vLLM's OpenAI-compatible routes for one model and task, and vLLM's /metrics.

Routes (as vLLM names them): GET /health, /v1/models, /version, /metrics; POST /v1/completions and
/v1/chat/completions (task generate, `stream` supported), /v1/embeddings (embed), /classify (classify),
/rerank and /v1/rerank (rerank). One model call runs at a time in a worker thread; the others wait
in order (vllm:num_requests_waiting).

Metrics follow vLLM's semantics: a request counts in vllm:request_success_total when the engine
finishes it (finished_reason stop, length, abort on client disconnect, error); requests refused before
the engine (4xx) are not counted. TTFT is from arrival to the first token (for pooling: to the
result), ITL between consecutive tokens, E2E from arrival to the end. Pooling requests count once per
input, as vLLM runs one engine request per input.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from nlpmodel_vllm_metrics import VllmMetrics
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from nlpmodel_runtime import __version__
from nlpmodel_runtime.engine import Engine, SamplingParams, Step
from nlpmodel_runtime.protocol import (
    ChatRequest,
    CompletionRequest,
    PoolingRequest,
    RequestError,
    bad,
    chat_request,
    classify_request,
    completion_request,
    context_error,
    embedding_request,
    parse_json,
    rerank_request,
)

log = logging.getLogger("nlpmodel_runtime.server")

MAX_BODY_BYTES: Final = 4 * 1024 * 1024
# Which POST routes each task serves (the others answer 404 with the route to use).
TASK_ROUTES: Final = {
    "generate": ("/v1/completions", "/v1/chat/completions"),
    "embed": ("/v1/embeddings",),
    "classify": ("/classify",),
    "rerank": ("/rerank", "/v1/rerank"),
}

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Runtime:
    """What every request shares: the engine, its metrics and the queue in front of it."""

    engine: Engine
    metrics: VllmMetrics
    max_waiting: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0
    running: int = 0

    @property
    def settings(self) -> Any:
        return self.engine.settings

    def _gauges(self) -> None:
        self.metrics.waiting.set(self.waiting)
        self.metrics.running.set(self.running)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Exclusive use of the model, in arrival order; 503 when the queue is full."""
        if self.waiting >= self.max_waiting:
            raise RequestError(503, f"server overloaded: {self.waiting} requests already waiting")
        self.waiting += 1
        self._gauges()
        try:
            await self.lock.acquire()
        finally:
            self.waiting -= 1
            self._gauges()
        self.running += 1
        self._gauges()
        try:
            yield
        finally:
            self.running -= 1
            self.metrics.kv_cache.set(0)
            self._gauges()
            self.lock.release()


@dataclass
class Clock:
    """Arrival, first-token and inter-token times of one request (monotonic seconds)."""

    arrival: float = field(default_factory=time.perf_counter)
    tokens: list[float] = field(default_factory=list)

    def token(self) -> None:
        self.tokens.append(time.perf_counter())

    def ttft(self) -> float | None:
        return self.tokens[0] - self.arrival if self.tokens else None

    def itls(self) -> tuple[float, ...]:
        return tuple(b - a for a, b in zip(self.tokens, self.tokens[1:], strict=False))

    def e2e(self) -> float:
        return time.perf_counter() - self.arrival


def _record(
    runtime: Runtime, clock: Clock, reason: str, prompt_tokens: int, generation_tokens: int | None = None
) -> None:
    """One finished request in vLLM's series; no prefix cache here, so no prompt token is a cache hit."""
    runtime.metrics.finished(
        reason,
        ttft_s=clock.ttft(),
        itls_s=clock.itls(),
        e2e_s=clock.e2e(),
        prompt_tokens=prompt_tokens,
        generation_tokens=len(clock.tokens) if generation_tokens is None else generation_tokens,
    )


def _error_response(error: RequestError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def _json_errors(handler: Handler) -> Handler:
    """Every failure becomes vLLM's JSON error body; tracebacks go to the log only."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except RequestError as exc:
            return _error_response(exc)
        except Exception:
            log.exception("unexpected error in %s %s", request.method, request.url.path)
            return _error_response(RequestError(500, "internal error in the model server (see its log)"))

    return wrapped


async def _body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise RequestError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise RequestError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
    return parse_json(raw)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    task = runtime.settings.task
    if request.url.path not in TASK_ROUTES[task]:
        routes = " and ".join(f"POST {r}" for r in TASK_ROUTES[task])
        raise RequestError(404, f"this server runs task {task}: use {routes}")
    return runtime


def _token_ids(runtime: Runtime, prompt: str | Sequence[int], param: str) -> list[int]:
    if isinstance(prompt, str):
        return runtime.engine.encode(prompt)
    vocab = runtime.engine.vocab_size()
    if any(not 0 <= t < vocab for t in prompt):
        raise bad(f"token ids in `{param}` must be within [0, {vocab})", param)
    return list(prompt)


# ------------------------------------------------------------------------------------------ generation


def _sampling_params(
    runtime: Runtime, req: CompletionRequest | ChatRequest, prompt_len: int
) -> SamplingParams:
    max_len = runtime.settings.max_model_len
    error = context_error(prompt_len, req.sampling.max_tokens, max_len)
    if error is not None:
        raise error
    return SamplingParams(
        max_tokens=req.sampling.max_tokens or max_len - prompt_len,
        temperature=req.sampling.temperature,
        top_p=req.sampling.top_p,
        stop=req.sampling.stop,
        seed=req.sampling.seed,
    )


async def _steps(
    runtime: Runtime, prompt: list[int], params: SamplingParams, clock: Clock
) -> AsyncIterator[Step]:
    """The engine's steps, each forward pass in a worker thread so the event loop keeps serving."""
    steps: Iterator[Step] = runtime.engine.generate(prompt, params)
    capacity = runtime.settings.max_model_len
    while True:
        forward = asyncio.ensure_future(asyncio.to_thread(next, steps, None))
        try:
            step = await asyncio.shield(forward)
        except asyncio.CancelledError:
            await asyncio.wait({forward})  # the model is handed on only once this pass has finished
            raise
        if step is None:
            return
        clock.token()
        runtime.metrics.kv_cache.set((len(prompt) + len(clock.tokens)) / capacity)
        yield step
        if step.finished_reason is not None:
            return


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _sse(payload: dict[str, Any] | str) -> bytes:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n".encode()


@_json_errors
async def completions(request: Request) -> Response:
    runtime = _runtime(request)
    clock = Clock()
    req = completion_request(await _body(request), runtime.settings.model_name)
    prompt = _token_ids(runtime, req.prompt, "prompt")
    params = _sampling_params(runtime, req, len(prompt))
    ident, created, model = f"cmpl-{uuid.uuid4().hex}", int(time.time()), runtime.settings.model_name

    def chunk(text: str, reason: str | None) -> dict[str, Any]:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        return {
            "id": ident,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [choice],
        }

    if req.stream:
        return _stream(runtime, prompt, params, clock, chunk, req.include_usage)
    text, reason = await _generate_all(runtime, prompt, params, clock)
    body = chunk(text, reason) | {"usage": _usage(len(prompt), len(clock.tokens))}
    return JSONResponse(body)


@_json_errors
async def chat_completions(request: Request) -> Response:
    runtime = _runtime(request)
    clock = Clock()
    req = chat_request(await _body(request), runtime.settings.model_name)
    try:
        prompt = runtime.engine.chat_prompt(req.messages)
    except Exception as exc:  # a template that cannot render these messages is the request's problem
        raise bad(f"cannot apply the model's chat template: {exc}", "messages") from exc
    params = _sampling_params(runtime, req, len(prompt))
    ident, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), runtime.settings.model_name

    def chunk(text: str, reason: str | None) -> dict[str, Any]:
        choice = {
            "index": 0,
            "delta": {"content": text} if text else {},
            "logprobs": None,
            "finish_reason": reason,
        }
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }

    if req.stream:
        opening = chunk("", None)
        opening["choices"][0]["delta"] = {"role": "assistant", "content": ""}
        return _stream(runtime, prompt, params, clock, chunk, req.include_usage, opening)
    text, reason = await _generate_all(runtime, prompt, params, clock)
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "logprobs": None,
        "finish_reason": reason,
    }
    body = {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": _usage(len(prompt), len(clock.tokens)),
    }
    return JSONResponse(body)


async def _generate_all(
    runtime: Runtime, prompt: list[int], params: SamplingParams, clock: Clock
) -> tuple[str, str]:
    parts: list[str] = []
    reason = "error"
    async with runtime.slot():  # a full queue refuses here, before the engine: nothing to record
        try:
            async for step in _steps(runtime, prompt, params, clock):
                parts.append(step.text)
                reason = step.finished_reason or reason
        except asyncio.CancelledError:
            _record(runtime, clock, "abort", len(prompt))
            raise
        except Exception as exc:
            log.exception("generation failed")
            _record(runtime, clock, "error", len(prompt))
            raise RequestError(
                500, f"generation failed: {type(exc).__name__} (see the model server's log)"
            ) from exc
    _record(runtime, clock, reason, len(prompt))
    return "".join(parts), reason


def _stream(
    runtime: Runtime,
    prompt: list[int],
    params: SamplingParams,
    clock: Clock,
    chunk: Callable[[str, str | None], dict[str, Any]],
    include_usage: bool,
    opening: dict[str, Any] | None = None,
) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        reason = "abort"  # a client that goes away mid-stream closes this generator at a yield
        try:
            async with runtime.slot():
                if opening is not None:
                    yield _sse(opening)
                async for step in _steps(runtime, prompt, params, clock):
                    if step.text:
                        yield _sse(chunk(step.text, None))
                    if step.finished_reason is not None:
                        reason = step.finished_reason
                        yield _sse(chunk("", reason))
        except RequestError as exc:  # queue full: the stream already started, so say it in-band
            reason = ""
            yield _sse(exc.body())
        except Exception:
            log.exception("generation failed mid-stream")
            reason = "error"
            yield _sse(RequestError(500, "generation failed (see the model server's log)").body())
        finally:
            if reason:
                _record(runtime, clock, reason, len(prompt))
        if include_usage:
            usage = chunk("", None) | {"choices": [], "usage": _usage(len(prompt), len(clock.tokens))}
            yield _sse(usage)
        yield _sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


# --------------------------------------------------------------------------------------------- pooling


async def _pooled(
    runtime: Runtime, req: PoolingRequest, run: Callable[[list[list[int]]], list[list[float]]]
) -> tuple[list[list[float]], int]:
    """Tokenize, check lengths, run one batch on the model; record one finished request per input."""
    clock = Clock()
    batch = [_token_ids(runtime, item, "input") for item in req.inputs]
    limit = runtime.settings.max_model_len
    for index, ids in enumerate(batch):
        if len(ids) > limit:
            raise bad(
                f"This model's maximum context length is {limit} tokens. However, input[{index}] has "
                f"{len(ids)} tokens. Please reduce the length of the input.",
                "input",
            )
    async with runtime.slot():  # a full queue refuses here, before the engine: nothing to record
        try:
            result = await asyncio.to_thread(run, batch)
        except Exception as exc:
            log.exception("pooling failed")
            for ids in batch:
                _record(runtime, clock, "error", len(ids), 0)
            raise RequestError(
                500, f"model call failed: {type(exc).__name__} (see the model server's log)"
            ) from exc
        clock.token()  # the whole result is the "first token" of a pooling request
    for ids in batch:
        _record(runtime, clock, "stop", len(ids), 0)
    return result, sum(len(ids) for ids in batch)


def _pooling_usage(tokens: int) -> dict[str, int]:
    return {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}


@_json_errors
async def embeddings(request: Request) -> Response:
    runtime = _runtime(request)
    req = embedding_request(await _body(request), runtime.settings.model_name)
    vectors, tokens = await _pooled(runtime, req, runtime.engine.embed)

    def encode(vector: list[float]) -> list[float] | str:
        if req.encoding_format == "base64":  # OpenAI's: little-endian float32, base64
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        return vector

    data = [{"index": i, "object": "embedding", "embedding": encode(v)} for i, v in enumerate(vectors)]
    return _pooling_list("embd", runtime.settings.model_name, data, tokens)


def _pooling_list(prefix: str, model: str, data: list[dict[str, Any]], tokens: int) -> JSONResponse:
    """The list response of a pooling endpoint (embeddings, classify), with its token usage."""
    body = {
        "id": f"{prefix}-{uuid.uuid4().hex}",
        "object": "list",
        "created": int(time.time()),
        "model": model,
        "data": data,
        "usage": _pooling_usage(tokens),
    }
    return JSONResponse(body)


@_json_errors
async def classify(request: Request) -> Response:
    runtime = _runtime(request)
    req = classify_request(await _body(request), runtime.settings.model_name)
    probs, tokens = await _pooled(runtime, req, runtime.engine.classify)
    labels = runtime.engine.labels()
    data = [
        {
            "index": i,
            "label": labels[max(range(len(p)), key=p.__getitem__)],
            "probs": p,
            "num_classes": len(p),
        }
        for i, p in enumerate(probs)
    ]
    return _pooling_list("classify", runtime.settings.model_name, data, tokens)


@_json_errors
async def rerank(request: Request) -> Response:
    runtime = _runtime(request)
    req = rerank_request(await _body(request), runtime.settings.model_name)
    pairs = PoolingRequest(
        req.model, tuple(tuple(runtime.engine.encode_pair(req.query, d)) for d in req.documents)
    )
    probs, tokens = await _pooled(runtime, pairs, runtime.engine.classify)
    # A cross-encoder has one logit (its sigmoid is the relevance); otherwise the last class is "relevant".
    scores = [p[-1] for p in probs]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[: req.top_n or len(scores)]
    results = [
        {"index": i, "document": {"text": req.documents[i]}, "relevance_score": scores[i]} for i in order
    ]
    body = {
        "id": f"rerank-{uuid.uuid4().hex}",
        "model": runtime.settings.model_name,
        "usage": {"total_tokens": tokens},
        "results": results,
    }
    return JSONResponse(body)


# ---------------------------------------------------------------------------------------------- common


async def health(request: Request) -> Response:
    return Response(status_code=200)


async def version(request: Request) -> Response:
    return JSONResponse({"version": __version__})


async def models(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    s = runtime.settings
    card = {
        "id": s.model_name,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "nlpmodel",
        "root": s.model_dir,
        "max_model_len": s.max_model_len,
    }
    return JSONResponse({"object": "list", "data": [card]})


async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return Response(runtime.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown route, wrong method) in vLLM's error shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    message = f"{detail}: {request.method} {request.url.path}" if status in (404, 405) else str(detail)
    return _error_response(RequestError(status, message))


def build_app(engine: Engine, *, max_waiting: int = 256) -> Starlette:
    """The ASGI application for one loaded engine (tests drive it in-process)."""
    runtime = Runtime(
        engine=engine,
        metrics=VllmMetrics(engine.settings.model_name, max_model_len=engine.settings.max_model_len),
        max_waiting=max_waiting,
    )
    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/classify", classify, methods=["POST"]),
        Route("/rerank", rerank, methods=["POST"]),
        Route("/v1/rerank", rerank, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.runtime = runtime
    return app
