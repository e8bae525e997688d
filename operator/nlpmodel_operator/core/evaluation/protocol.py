"""OpenAI-compatible requests for evaluation cases, and answers from their responses (pure).

Requests are deterministic: temperature 0 and a fixed seed, so the same revision answers a case the
same way each time and a difference between revisions is a difference of the models. The paths are
vLLM's and our transformers runtime's (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
`/classify`, `/v1/rerank`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from nlpmodel_operator.core.evaluation.dataset import Case
from nlpmodel_operator.core.evaluation.scorers import Answer

SEED: Final = 1234
PATHS: Final = {
    "chat": "/v1/chat/completions",
    "completion": "/v1/completions",
    "embed": "/v1/embeddings",
    "classify": "/classify",
    "rerank": "/v1/rerank",
}


class MalformedResponseError(ValueError):
    """A response that does not carry an answer (counted as a failed request, never scored)."""


@dataclass(frozen=True)
class EvaluationRequest:
    path: str
    body: Mapping[str, Any]


def request_for(case: Case, model: str | None) -> EvaluationRequest:
    body: dict[str, Any] = {} if model is None else {"model": model}
    if case.kind in ("chat", "completion"):
        body.update({"temperature": 0, "seed": SEED, "max_tokens": case.max_tokens, "stream": False})
        if case.kind == "chat":
            body["messages"] = [{"role": role, "content": content} for role, content in case.messages]
        else:
            body["prompt"] = case.prompt
    elif case.kind in ("embed", "classify"):
        body["input"] = case.input
    else:
        body.update({"query": case.query, "documents": list(case.documents)})
    return EvaluationRequest(PATHS[case.kind], body)


def answer_from(case: Case, response: object) -> Answer:
    """The answer in a response body; raises :class:`MalformedResponseError` when there is none."""
    if not isinstance(response, dict):
        raise MalformedResponseError("the response is not a JSON object")
    try:
        usage = response.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens", usage.get("total_tokens", 0)) or 0)
        completion_tokens = int(usage.get("completion_tokens", 0) or 0)
        if case.kind == "chat":
            text = response["choices"][0]["message"]["content"]
            return Answer(
                text=str(text or ""), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
        if case.kind == "completion":
            text = response["choices"][0]["text"]
            return Answer(
                text=str(text or ""), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
        if case.kind == "embed":
            vector = tuple(float(x) for x in response["data"][0]["embedding"])
            if not vector:
                raise MalformedResponseError("an empty embedding")
            return Answer(vector=vector, prompt_tokens=prompt_tokens)
        if case.kind == "classify":
            return Answer(label=str(response["data"][0]["label"]), prompt_tokens=prompt_tokens)
        ranked = sorted(response["results"], key=lambda r: -float(r["relevance_score"]))
        return Answer(ranking=tuple(int(r["index"]) for r in ranked), prompt_tokens=prompt_tokens)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, MalformedResponseError):
            raise
        raise MalformedResponseError(f"no answer in the response ({type(exc).__name__})") from None
