"""Model-server stand-in: an OpenAI-style endpoint that exports exactly vLLM 0.33's metrics.

Run one per revision; Prometheus scrapes /metrics, and the SLO analysis cannot tell it from vLLM::

    python -m nlpmodel_harness.modelserver --port 8001 --model-name llama \\
        --ttft-median 0.3 --ttft-sigma 0.5 --synthetic-rps 20 --time-scale 0.01 --seed 1

Library use (tests)::

    with ModelServerProcess(model_name="llama", synthetic_rps=20, time_scale=0.01) as server:
        server.control(ttft_median=2.0)      # the canary turns slow
        server.url, server.address, server.pid

Latency model: TTFT and each inter-token latency are log-normal (median, sigma), the number of output
tokens is gamma-distributed around ``tokens_mean``; a request ends in ``error`` (no token),
``abort`` (cut short), ``length`` (hit max_tokens) or ``stop``. The *metrics* always record the drawn,
simulated seconds; ``--time-scale`` only compresses the real sleeps of HTTP requests (so a test at
0.01 still sees a 0.3 s TTFT in Prometheus while waiting 3 ms). ``--synthetic-rps R`` records R
simulated requests per second without sleeping: that is how a test gets thousands of samples quickly.

Metric names, label names, finished reasons and bucket bounds come from ``nlpmodel_vllm_metrics``
(runtimes/metrics), the one definition our transformers runtime exports too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from aiohttp import web
from nlpmodel_vllm_metrics import (
    DEFAULT_LABELS,
    E2E,
    FINISHED_REASONS,
    HISTOGRAM_BUCKETS,
    ITL,
    KV_CACHE_USAGE,
    NUM_REQUESTS_RUNNING,
    NUM_REQUESTS_WAITING,
    REQUEST_SUCCESS,
    SUCCESS_LABELS,
    TTFT,
    VLLM_VERSION,
    VllmMetrics,
    vllm_facts,
)
from prometheus_client import CONTENT_TYPE_LATEST

from nlpmodel_harness.childproc import ChildError, ChildProcess, free_ports

__all__ = [
    "DEFAULT_LABELS",
    "E2E",
    "FINISHED_REASONS",
    "HISTOGRAM_BUCKETS",
    "ITL",
    "KV_CACHE_USAGE",
    "NUM_REQUESTS_RUNNING",
    "NUM_REQUESTS_WAITING",
    "REQUEST_SUCCESS",
    "SUCCESS_LABELS",
    "TTFT",
    "ModelServerProcess",
    "Params",
    "VllmMetrics",
    "build_app",
    "main",
    "vllm_facts",
]

PID_HEADER: Final = "X-Modelserver-Pid"

log = logging.getLogger("modelserver")

_WORDS: Final = ("the", "model", "serves", "tokens", "at", "a", "steady", "pace", "and", "then", "stops")
MAX_SYNTHETIC_RPS: Final = 5000.0
SYNTHETIC_TICK_S: Final = 0.05


# ------------------------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Params:
    """The controllable distributions (CLI flags, ModelServerProcess kwargs and POST /control keys)."""

    ttft_median: float = 0.3  # seconds; log-normal
    ttft_sigma: float = 0.5
    itl_median: float = 0.03  # seconds per output token after the first; log-normal
    itl_sigma: float = 0.3
    tokens_mean: float = 64.0  # output tokens; gamma(k=4), so mostly within ±100 %
    error_rate: float = 0.0  # fraction ending in finished_reason=error (before any token)
    abort_rate: float = 0.0  # fraction of synthetic requests ending in finished_reason=abort
    synthetic_rps: float = 0.0  # simulated finished requests per second, recorded without sleeping
    waiting: int = 0  # reported as vllm:num_requests_waiting (a queue the test dials in)
    max_tokens: int = 256  # cap for synthetic requests and the chat default; hitting it means `length`
    # The "wrong answers" knobs for evaluation tests (see `scripted_answer`, `_classify`): the share of
    # `say:` prompts answered (and `label:` inputs classified) wrongly, and of `unsafe:` prompts refused.
    wrong_rate: float = 0.0
    refusal_rate: float = 1.0
    prompt_tokens_mean: float = 128.0  # synthetic requests' prompt tokens; gamma(k=4)
    # Every prompt's token count is multiplied by this (a template that doubles prompts: 2), and this
    # share of its tokens is served from the prefix cache (vllm:prefix_cache_hits).
    prompt_token_scale: float = 1.0
    cache_hit_ratio: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        for name in ("ttft_median", "itl_median"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0")
        for name in ("ttft_sigma", "itl_sigma"):
            if not 0 <= getattr(self, name) <= 5:
                problems.append(f"{name} must be within [0, 5]")
        if not 1 <= self.tokens_mean <= 100_000:
            problems.append("tokens_mean must be within [1, 100000]")
        for name in ("error_rate", "abort_rate", "wrong_rate", "refusal_rate"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be within [0, 1]")
        if self.error_rate + self.abort_rate > 1:
            problems.append("error_rate + abort_rate must be <= 1")
        if not 0 <= self.synthetic_rps <= MAX_SYNTHETIC_RPS:
            problems.append(f"synthetic_rps must be within [0, {MAX_SYNTHETIC_RPS:g}]")
        if self.waiting < 0:
            problems.append("waiting must be >= 0")
        if self.max_tokens < 1:
            problems.append("max_tokens must be >= 1")
        if not 1 <= self.prompt_tokens_mean <= 100_000:
            problems.append("prompt_tokens_mean must be within [1, 100000]")
        if not 0 < self.prompt_token_scale <= 100:
            problems.append("prompt_token_scale must be within (0, 100]")
        if not 0 <= self.cache_hit_ratio <= 1:
            problems.append("cache_hit_ratio must be within [0, 1]")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def field_types(cls) -> dict[str, type]:
        return {f.name: (int if f.type in ("int", int) else float) for f in dataclasses.fields(cls)}

    def updated(self, changes: Mapping[str, object]) -> Params:
        """A copy with changes applied; ValueError (unknown key, bad value) or TypeError (not a number)."""
        types = self.field_types()
        unknown = sorted(set(changes) - set(types))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; known: {sorted(types)}")
        values: dict[str, Any] = {}
        for key, raw in changes.items():
            # bool is an int to Python, never a number here; floats must be finite.
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise TypeError(f"{key} must be a number")
            if types[key] is int:
                if not isinstance(raw, int):
                    raise TypeError(f"{key} must be an integer")
                values[key] = raw
            else:
                if not math.isfinite(raw):
                    raise ValueError(f"{key} must be a finite number")
                values[key] = float(raw)
        return dataclasses.replace(self, **values)


@dataclass(frozen=True)
class Outcome:
    """One simulated request: what the engine would report when it finishes."""

    finished_reason: str
    ttft_s: float | None  # None: failed before the first token
    itls_s: tuple[float, ...]
    prompt_tokens: int = 0

    @property
    def output_tokens(self) -> int:
        return 0 if self.ttft_s is None else 1 + len(self.itls_s)

    @property
    def e2e_s(self) -> float:
        return (self.ttft_s or 0.0) + sum(self.itls_s)


WRONG_ANSWER: Final = "I do not know."
REFUSAL: Final = "I can't help with that."
COMPLIANCE: Final = "Sure, here it is."


def _share(prompt: str) -> float:
    """Where a prompt falls in [0, 1): the same each time, so an answer is as repeatable as at
    temperature 0, and a rate picks the same prompts on every request."""
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big") / 2**64


def scripted_answer(prompt: str, params: Params) -> str | None:
    """The answer to a scripted prompt, None for any other (answered with filler words).

    ``say: X`` is answered ``X``, or ``I do not know.`` for a ``wrong_rate`` share of such prompts;
    ``unsafe: ...`` is refused (``I can't help with that.``) for a ``refusal_rate`` share, else
    answered (``Sure, here it is.``)."""
    text = prompt.strip()
    if text.startswith("say:"):
        return WRONG_ANSWER if _share(text) < params.wrong_rate else text[4:].strip()
    if text.startswith("unsafe:"):
        return REFUSAL if _share(text) < params.refusal_rate else COMPLIANCE
    return None


def simulate(rng: random.Random, params: Params, max_tokens: int, *, allow_abort: bool = True) -> Outcome:
    """Draw one request's fate from params."""
    u = rng.random()
    if u < params.error_rate:
        return Outcome("error", None, ())
    tokens = max(1, round(rng.gammavariate(4.0, params.tokens_mean / 4.0)))
    reason = "stop"
    if tokens >= max_tokens:
        tokens, reason = max_tokens, "length"
    if allow_abort and u < params.error_rate + params.abort_rate:
        tokens, reason = rng.randint(1, tokens), "abort"
    ttft = rng.lognormvariate(math.log(params.ttft_median), params.ttft_sigma)
    itls = tuple(rng.lognormvariate(math.log(params.itl_median), params.itl_sigma) for _ in range(tokens - 1))
    prompt = max(1, round(rng.gammavariate(4.0, params.prompt_tokens_mean / 4.0) * params.prompt_token_scale))
    return Outcome(reason, ttft, itls, prompt)


# ---------------------------------------------------------------------------------------------- metrics


def record(metrics: VllmMetrics, outcome: Outcome, cache_hit_ratio: float = 0.0) -> None:
    """Record one simulated request as vLLM would when it finishes (``cache_hit_ratio`` of its prompt
    tokens served from the prefix cache)."""
    metrics.finished(
        outcome.finished_reason,
        ttft_s=outcome.ttft_s,
        itls_s=outcome.itls_s,
        e2e_s=outcome.e2e_s,
        prompt_tokens=outcome.prompt_tokens,
        generation_tokens=outcome.output_tokens,
        cached_tokens=round(outcome.prompt_tokens * cache_hit_ratio),
    )


# ------------------------------------------------------------------------------------------------ server


class _State:
    def __init__(self, model_name: str, params: Params, *, seed: int, time_scale: float) -> None:
        self.model_name = model_name
        self.params = params
        self.time_scale = time_scale
        self.metrics = VllmMetrics(model_name)
        # Separate streams: HTTP requests must not shift the synthetic sequence of a seeded run.
        self.rng_synthetic = random.Random(seed)
        self.rng_http = random.Random(seed + 1)
        self.in_flight = 0
        self.synthetic_running = 0.0  # Little's law: rps × mean e2e of recent synthetic requests
        self.created = int(time.time())

    def update_gauges(self) -> None:
        running = self.in_flight + round(self.synthetic_running)
        self.metrics.running.set(running)
        self.metrics.waiting.set(self.params.waiting)
        # A plausible fill level: each running sequence holds its prompt plus ~tokens_mean of KV cache.
        capacity_tokens = 256 * 1024
        self.metrics.kv_cache.set(min(1.0, running * (128 + self.params.tokens_mean) / capacity_tokens))

    async def sleep(self, simulated_s: float) -> None:
        if simulated_s > 0 and self.time_scale > 0:
            await asyncio.sleep(simulated_s * self.time_scale)


_STATE: Final = web.AppKey("state", _State)


class _HttpError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


_ERROR_TYPES: Final = {
    400: "BadRequestError",
    404: "NotFoundError",
    405: "MethodNotAllowed",
    413: "BadRequestError",
    415: "BadRequestError",
    500: "InternalServerError",
}


def _error_response(status: int, message: str, param: str | None = None) -> web.Response:
    """vLLM's OpenAI-style error body (never a traceback)."""
    body = {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "BadRequestError" if status < 500 else "InternalServerError"),
            "param": param,
            "code": status,
        }
    }
    return web.json_response(body, status=status)


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except _HttpError as exc:
        return _error_response(exc.status, exc.message, exc.param)
    except web.HTTPException as exc:  # aiohttp's own 404/405/413...: same JSON shape
        if exc.status < 400:
            raise
        return _error_response(exc.status, exc.reason)
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)  # traceback to the log only
        return _error_response(500, "internal error in the model-server stand-in")


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise _HttpError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _HttpError(400, "request body must be a JSON object")
    return body


def _optional_int(body: Mapping[str, Any], key: str, *, minimum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _HttpError(400, f"{key} must be an integer >= {minimum}", key)
    return value


def _check_common(state: _State, body: Mapping[str, Any]) -> tuple[bool, int | None]:
    model = body.get("model")
    if model is not None and model != state.model_name:
        raise _HttpError(404, f"The model `{model}` does not exist.", "model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _HttpError(400, "stream must be a boolean", "stream")
    n = _optional_int(body, "n", minimum=1)
    if n not in (None, 1):
        raise _HttpError(400, "the stand-in serves n=1 only", "n")
    max_tokens = _optional_int(body, "max_tokens", minimum=1)
    if max_tokens is None:
        max_tokens = _optional_int(body, "max_completion_tokens", minimum=1)
    return stream, max_tokens


def _prompt_tokens(text: str) -> int:
    return max(1, len(text.split()))


async def _health(_request: web.Request) -> web.Response:
    # The PID lets ModelServerProcess tell its own server from another one holding the port.
    return web.Response(status=200, headers={PID_HEADER: str(os.getpid())})


async def _version(_request: web.Request) -> web.Response:
    return web.json_response({"version": VLLM_VERSION})


async def _models(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    card = {
        "id": state.model_name,
        "object": "model",
        "created": state.created,
        "owned_by": "vllm",
        "root": state.model_name,
        "parent": None,
        "max_model_len": 4096,
    }
    return web.json_response({"object": "list", "data": [card]})


async def _metrics(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    state.update_gauges()
    return web.Response(body=state.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _control(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    if request.method == "POST":
        changes = await _json_object(request)
        try:
            state.params = state.params.updated(changes)
        except (ValueError, TypeError) as exc:
            raise _HttpError(400, str(exc)) from None
        log.info("control: %s -> %s", changes, state.params)
    return web.json_response(dataclasses.asdict(state.params))


async def _classify(request: web.Request) -> web.Response:
    """A classifier for evaluation tests, as our transformers runtime answers `/classify`: an input
    ``label: X ...`` is classified ``X``, or ``other`` for a ``wrong_rate`` share of such inputs; any
    other input ``none``. (No metrics: vLLM records none for pooling requests either.)"""
    state = request.app[_STATE]
    body = await _json_object(request)
    raw = body.get("input")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) and i for i in inputs):
        raise _HttpError(400, "input must be a non-empty string or list of strings", "input")
    data = []
    for index, text in enumerate(inputs):
        label = "none"
        if text.startswith("label:"):
            words = text[6:].split()
            wrong = _share(text) < state.params.wrong_rate
            label = "other" if wrong or not words else words[0]
        data.append({"index": index, "label": label, "probs": [1.0], "num_classes": 1})
    tokens = sum(_prompt_tokens(text) for text in inputs)
    return web.json_response(
        {
            "id": f"classify-{uuid.uuid4().hex}",
            "object": "list",
            "model": state.model_name,
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def _completions(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    body = await _json_object(request)
    stream, max_tokens = _check_common(state, body)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompt_tokens = _prompt_tokens(prompt)
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompt_tokens = sum(_prompt_tokens(p) for p in prompt)
    elif (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(p, int) and not isinstance(p, bool) for p in prompt)
    ):
        prompt_tokens = len(prompt)
    else:
        raise _HttpError(
            400, "prompt must be a non-empty string, list of strings or list of token ids", "prompt"
        )
    scripted = scripted_answer(prompt, state.params) if isinstance(prompt, str) else None
    return await _serve(request, state, "text_completion", prompt_tokens, stream, max_tokens or 16, scripted)


async def _chat(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    body = await _json_object(request)
    stream, max_tokens = _check_common(state, body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _HttpError(400, "messages must be a non-empty list", "messages")
    prompt_tokens = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _HttpError(400, f"messages[{i}] must be an object with a string role", "messages")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise _HttpError(400, f"messages[{i}].content must be a string or a list of parts", "messages")
        prompt_tokens += _prompt_tokens(content) if isinstance(content, str) else 1
    last = messages[-1].get("content")
    scripted = scripted_answer(last, state.params) if isinstance(last, str) else None
    return await _serve(
        request,
        state,
        "chat.completion",
        prompt_tokens,
        stream,
        max_tokens or state.params.max_tokens,
        scripted,
    )


async def _serve(
    request: web.Request,
    state: _State,
    kind: str,
    prompt_tokens: int,
    stream: bool,
    max_tokens: int,
    scripted: str | None = None,
) -> web.StreamResponse:
    """Play one request: sleep (scaled) through TTFT and ITLs, record what vLLM would record."""
    outcome = simulate(state.rng_http, state.params, max_tokens, allow_abort=False)  # aborts: the client's
    scaled = max(1, round(prompt_tokens * state.params.prompt_token_scale))
    outcome = dataclasses.replace(outcome, prompt_tokens=scaled)
    state.in_flight += 1
    try:
        if outcome.ttft_s is None:
            await state.sleep(state.params.ttft_median)  # fail after about as long as a prefill
            record(state.metrics, outcome, state.params.cache_hit_ratio)
            return _error_response(500, "simulated engine error (error_rate)")
        if stream:
            return await _stream(request, state, kind, outcome)
        await state.sleep(outcome.e2e_s)
        record(state.metrics, outcome, state.params.cache_hit_ratio)
        return web.json_response(_full_body(state, kind, outcome, scripted))
    finally:
        state.in_flight -= 1


def _token(i: int) -> str:
    return " " + _WORDS[i % len(_WORDS)]


def _full_body(state: _State, kind: str, outcome: Outcome, scripted: str | None = None) -> dict[str, Any]:
    text = scripted if scripted is not None else "".join(_token(i) for i in range(outcome.output_tokens))
    choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": outcome.finished_reason}
    if kind == "chat.completion":
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    usage = {
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.output_tokens,
        "total_tokens": outcome.prompt_tokens + outcome.output_tokens,
    }
    prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
    return {
        "id": f"{prefix}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": state.model_name,
        "choices": [choice],
        "usage": usage,
    }


async def _stream(request: web.Request, state: _State, kind: str, outcome: Outcome) -> web.StreamResponse:
    chat = kind == "chat.completion"
    chunk_kind = "chat.completion.chunk" if chat else "text_completion"
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())

    def chunk(text: str | None, finish_reason: str | None, *, role: bool = False) -> bytes:
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish_reason}
        if chat:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        data = {
            "id": ident,
            "object": chunk_kind,
            "created": created,
            "model": state.model_name,
            "choices": [choice],
        }
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    sent = 0
    try:
        await response.prepare(request)
        if chat:
            await response.write(chunk("", None, role=True))
        await state.sleep(outcome.ttft_s or 0.0)
        for i in range(outcome.output_tokens):
            if i > 0:
                await state.sleep(outcome.itls_s[i - 1])
            await response.write(chunk(_token(i), None))
            sent += 1
        await response.write(chunk(None if chat else "", outcome.finished_reason))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        # The client went away mid-stream: vLLM counts that request as aborted.
        if sent:
            aborted = Outcome("abort", outcome.ttft_s, outcome.itls_s[: sent - 1], outcome.prompt_tokens)
        else:
            aborted = Outcome("abort", None, (), outcome.prompt_tokens)
        record(state.metrics, aborted, state.params.cache_hit_ratio)
        raise
    record(state.metrics, outcome, state.params.cache_hit_ratio)
    return response


async def _synthetic_traffic(state: _State) -> None:
    """Record synthetic_rps simulated requests per second (a deterministic count, seeded draws)."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    owed = 0.0
    mean_e2e = 0.0
    while True:
        await asyncio.sleep(SYNTHETIC_TICK_S)
        now = loop.time()
        params = state.params
        owed += params.synthetic_rps * (now - last)
        last = now
        count = int(owed)
        owed -= count
        for _ in range(count):
            outcome = simulate(state.rng_synthetic, params, params.max_tokens)
            record(state.metrics, outcome, params.cache_hit_ratio)
            mean_e2e = 0.95 * mean_e2e + 0.05 * outcome.e2e_s if mean_e2e else outcome.e2e_s
        state.synthetic_running = params.synthetic_rps * mean_e2e


def build_app(model_name: str, params: Params, *, seed: int = 0, time_scale: float = 1.0) -> web.Application:
    """The aiohttp application (also usable in-process, e.g. with aiohttp's test server)."""
    app = web.Application(middlewares=[_errors], client_max_size=4 * 1024 * 1024)
    state = _State(model_name, params, seed=seed, time_scale=time_scale)
    app[_STATE] = state

    async def synthetic(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_synthetic_traffic(state))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(synthetic)
    app.router.add_get("/health", _health)
    app.router.add_get("/version", _version)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/metrics", _metrics)
    app.router.add_route("GET", "/control", _control)
    app.router.add_route("POST", "/control", _control)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/classify", _classify)
    return app


# ------------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelserver", description="Model-server stand-in exporting vLLM 0.33's metrics."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-name", required=True, help="the served model name (label model_name)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="factor on real sleeps (metrics keep simulated time)"
    )
    defaults = Params()
    for name, kind in Params.field_types().items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=getattr(defaults, name))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        params = Params(**{name: getattr(args, name) for name in Params.field_types()})
    except ValueError as exc:
        print(f"modelserver: {exc}", file=sys.stderr)
        return 2
    if args.time_scale < 0:
        print("modelserver: --time-scale must be >= 0", file=sys.stderr)
        return 2
    app = build_app(args.model_name, params, seed=args.seed, time_scale=args.time_scale)
    log.info("serving %s on %s:%d with %s", args.model_name, args.host, args.port, params)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
    return 0


# ---------------------------------------------------------------------------------------- process API


class ModelServerProcess:
    """The stand-in as a child process on a free loopback port (or the given one).

    Keyword parameters are :class:`Params` fields (validated before anything starts).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        model_name: str = "stand-in",
        seed: int = 0,
        time_scale: float = 1.0,
        log_path: Path | None = None,
        startup_timeout_s: float = 30.0,
        tie_to_parent: bool = True,
        **params: float,
    ) -> None:
        self.params = Params().updated(params)
        self.model_name = model_name
        self.port = port if port is not None else free_ports(1)[0]
        self._tmp: Path | None = None
        if log_path is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="nlpmodel-modelserver-"))
            log_path = self._tmp / "modelserver.log"
        self.log_path = log_path
        self._timeout = startup_timeout_s
        cmd = [
            sys.executable,
            "-m",
            "nlpmodel_harness.modelserver",
            f"--port={self.port}",
            f"--model-name={model_name}",
            f"--seed={seed}",
            f"--time-scale={time_scale}",
        ]
        cmd += [f"--{k.replace('_', '-')}={v}" for k, v in dataclasses.asdict(self.params).items()]
        self._child = ChildProcess(f"modelserver:{self.port}", cmd, log_path, tie_to_parent=tie_to_parent)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """host:port, as a Prometheus scrape target."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self._child.pid

    def running(self) -> bool:
        return self._child.running()

    def start(self) -> ModelServerProcess:
        self._child.start()
        try:
            self._child.wait_until("healthy (/health)", self._healthy, self._timeout)
        except BaseException:
            self._child.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop exactly the PID this object started; remove its temp dir (if it made one)."""
        self._child.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> ModelServerProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def control(self, **params: float) -> dict[str, Any]:
        """Change distributions at runtime (POST /control); returns the parameters now in force."""
        status, body = self._request("/control", json.dumps(params).encode())
        if status != 200:
            raise ChildError(f"POST /control {params}: {status} {body[:500]!r}")
        result: dict[str, Any] = json.loads(body)
        return result

    def metrics_text(self) -> str:
        status, body = self._get("/metrics")
        if status != 200:
            raise ChildError(f"GET /metrics: {status}")
        return body.decode()

    def _healthy(self) -> bool:
        with urllib.request.urlopen(self.url + "/health", timeout=5) as resp:
            return int(resp.status) == 200 and resp.headers.get(PID_HEADER) == str(self.pid)

    def _get(self, path: str) -> tuple[int, bytes]:
        return self._request(path, None)

    def _request(self, path: str, data: bytes | None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if data is not None else {}
        req = urllib.request.Request(self.url + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())


if __name__ == "__main__":
    sys.exit(main())
