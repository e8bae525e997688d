"""OpenAI-style request bodies, checked into typed requests (pure: no torch, no I/O).

Every problem is a RequestError carrying the HTTP status and vLLM's error shape, so a client gets a
4xx with a message and the server never answers a malformed request with a 500.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

MAX_STOP_SEQUENCES: Final = 4
MAX_BATCH: Final = 256
DEFAULT_COMPLETION_MAX_TOKENS: Final = 16  # OpenAI's default for /v1/completions

_ERROR_TYPES: Final = {400: "BadRequestError", 404: "NotFoundError", 405: "MethodNotAllowed"}


class RequestError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        """vLLM's (OpenAI's) error body."""
        kind = _ERROR_TYPES.get(
            self.status, "BadRequestError" if self.status < 500 else "InternalServerError"
        )
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.status}}


def bad(message: str, param: str | None = None) -> RequestError:
    return RequestError(400, message, param)


@dataclass(frozen=True)
class Sampling:
    max_tokens: int | None  # None: whatever room the context leaves
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None


@dataclass(frozen=True)
class CompletionRequest:
    model: str | None
    prompt: str | list[int]
    sampling: Sampling
    stream: bool
    include_usage: bool


@dataclass(frozen=True)
class ChatRequest:
    model: str | None
    messages: tuple[dict[str, str], ...]
    sampling: Sampling
    stream: bool
    include_usage: bool


@dataclass(frozen=True)
class PoolingRequest:
    """/v1/embeddings and /classify: one or more texts (or token-id lists)."""

    model: str | None
    inputs: tuple[str | tuple[int, ...], ...]
    encoding_format: str = "float"


@dataclass(frozen=True)
class RerankRequest:
    model: str | None
    query: str
    documents: tuple[str, ...]
    top_n: int | None


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise bad("request body must be a JSON object")
    return body


def check_model(body: dict[str, Any], served: str) -> str | None:
    """vLLM answers 404 for a model name it does not serve; a missing `model` means the served one."""
    model = body.get("model")
    if model is None:
        return None
    if not isinstance(model, str):
        raise bad("`model` must be a string", "model")
    if model != served:
        raise RequestError(
            404, f"The model `{model}` does not exist. This server serves `{served}`.", "model"
        )
    return model


def completion_request(body: dict[str, Any], served: str) -> CompletionRequest:
    model = check_model(body, served)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, list) and prompt and all(_is_int(t) for t in prompt):
        parsed: str | list[int] = [int(t) for t in prompt]
    elif isinstance(prompt, str) and prompt:
        parsed = prompt
    elif isinstance(prompt, list) and len(prompt) > 1:
        raise bad("batched prompts are not supported: send one prompt per request", "prompt")
    else:
        raise bad("`prompt` must be a non-empty string or a list of token ids", "prompt")
    sampling = _sampling(body, default_max_tokens=DEFAULT_COMPLETION_MAX_TOKENS)
    stream, usage = _stream(body)
    return CompletionRequest(model, parsed, sampling, stream, usage)


def chat_request(body: dict[str, Any], served: str) -> ChatRequest:
    model = check_model(body, served)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("`messages` must be a non-empty list", "messages")
    parsed = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise bad(f"{where} must be an object", where)
        role = message.get("role")
        if role not in ("system", "user", "assistant"):
            raise bad(f"{where}.role must be system, user or assistant", f"{where}.role")
        parsed.append({"role": str(role), "content": _content(message.get("content"), f"{where}.content")})
    sampling = _sampling(body, default_max_tokens=None)
    stream, usage = _stream(body)
    return ChatRequest(model, tuple(parsed), sampling, stream, usage)


def embedding_request(body: dict[str, Any], served: str) -> PoolingRequest:
    model = check_model(body, served)
    if body.get("dimensions") is not None:
        raise bad("`dimensions` is not supported: the model's embedding size is fixed", "dimensions")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise bad("`encoding_format` must be float or base64", "encoding_format")
    return PoolingRequest(model, _inputs(body.get("input"), "input"), encoding)


def classify_request(body: dict[str, Any], served: str) -> PoolingRequest:
    model = check_model(body, served)
    return PoolingRequest(model, _inputs(body.get("input"), "input"))


def rerank_request(body: dict[str, Any], served: str) -> RerankRequest:
    model = check_model(body, served)
    query = body.get("query")
    if not isinstance(query, str) or not query:
        raise bad("`query` must be a non-empty string", "query")
    documents = body.get("documents")
    if not isinstance(documents, list) or not documents or not all(isinstance(d, str) for d in documents):
        raise bad("`documents` must be a non-empty list of strings", "documents")
    if len(documents) > MAX_BATCH:
        raise bad(f"at most {MAX_BATCH} documents per request", "documents")
    top_n = body.get("top_n")
    if top_n is not None and (not _is_int(top_n) or top_n < 1):
        raise bad("`top_n` must be a positive integer", "top_n")
    return RerankRequest(model, query, tuple(documents), top_n)


def context_error(prompt_tokens: int, max_tokens: int | None, max_model_len: int) -> RequestError | None:
    """vLLM's answer when prompt plus requested output does not fit the context."""
    wanted = prompt_tokens + (max_tokens or 0)
    if prompt_tokens < max_model_len and wanted <= max_model_len:
        return None
    if max_tokens is None or prompt_tokens >= max_model_len:
        return bad(
            f"This model's maximum context length is {max_model_len} tokens. However, your prompt has "
            f"{prompt_tokens} tokens, leaving no room for output. Please reduce the length of the prompt.",
        )
    return bad(
        f"This model's maximum context length is {max_model_len} tokens. However, you requested "
        f"{wanted} tokens ({prompt_tokens} in the prompt, {max_tokens} in the completion). "
        "Please reduce the length of the prompt or of max_tokens.",
        "max_tokens",
    )


# -------------------------------------------------------------------------------------------- fields


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad(f"`{key}` must be a number", key)
    if not low <= value <= high:
        raise bad(f"`{key}` must be within [{low:g}, {high:g}]", key)
    return float(value)


def _sampling(body: dict[str, Any], default_max_tokens: int | None) -> Sampling:
    n = body.get("n", 1)
    if n != 1:
        raise bad("only `n`: 1 is supported", "n")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens", default_max_tokens))
    if max_tokens is not None and (not _is_int(max_tokens) or max_tokens < 1):
        raise bad("`max_tokens` must be a positive integer", "max_tokens")
    temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0:
        raise bad("`top_p` must be > 0", "top_p")
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= MAX_STOP_SEQUENCES:
        stops = tuple(stop)
    else:
        raise bad(f"`stop` must be a string or a list of at most {MAX_STOP_SEQUENCES} strings", "stop")
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise bad("`seed` must be an integer", "seed")
    return Sampling(max_tokens, temperature, top_p, stops, seed)


def _stream(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad("`stream` must be a boolean", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad("`stream_options` must be an object", "stream_options")
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise bad("`stream_options.include_usage` must be a boolean", "stream_options")
    return stream, include_usage


def _content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise bad(f"{where}: only text parts are supported", where)
            parts.append(part["text"])
        return "".join(parts)
    raise bad(f"{where} must be a string or a list of text parts", where)


def _inputs(value: Any, key: str) -> tuple[str | tuple[int, ...], ...]:
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list) and value and all(_is_int(v) for v in value):
        items = [value]  # one token-id list
    elif isinstance(value, list):
        items = value
    else:
        raise bad(f"`{key}` must be a string, a list of strings or token-id lists", key)
    if not items:
        raise bad(f"`{key}` must not be empty", key)
    if len(items) > MAX_BATCH:
        raise bad(f"at most {MAX_BATCH} inputs per request", key)
    parsed: list[str | tuple[int, ...]] = []
    for index, item in enumerate(items):
        if isinstance(item, str) and item:
            parsed.append(item)
        elif isinstance(item, list) and item and all(_is_int(t) for t in item):
            parsed.append(tuple(int(t) for t in item))
        else:
            raise bad(f"`{key}[{index}]` must be a non-empty string or token-id list", key)
    return tuple(parsed)
