"""Every scorer of the evaluation gate, table-tested; requests and answers of the OpenAI protocol."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nlpmodel_operator.core.evaluation.dataset import Case, parse_case
from nlpmodel_operator.core.evaluation.protocol import MalformedResponseError, answer_from, request_for
from nlpmodel_operator.core.evaluation.scorers import Answer, cosine, is_refusal, normalise, passes

CHAT = [{"role": "user", "content": "q"}]


def _case(expect: dict[str, Any], **inputs: Any) -> Case:
    fields = inputs or {"messages": CHAT}
    return parse_case(json.dumps({"id": "c", **fields, "expect": expect}), 1)


TEXT_TABLE = [
    ({"exact": "Paris"}, "Paris", True),
    ({"exact": "Paris"}, "  Paris\n", True),
    ({"exact": "Paris"}, "paris", False),
    ({"exact": "Paris"}, "Paris, France", False),
    ({"contains": ["refund", "30 days"]}, "A Refund within 30 days.", True),
    ({"contains": ["refund", "30 days"]}, "A refund within a month.", False),
    ({"contains": {"any": ["yes", "sure"]}}, "Sure thing", True),
    ({"contains": {"any": ["yes", "sure"]}}, "No.", False),
    ({"contains": {"all": ["a", "b"]}}, "a b", True),
    ({"regex": r"\b4\b"}, "The answer is 4.", True),
    ({"regex": r"\b4\b"}, "The answer is 42.", False),
    ({"json": True}, '{"a": 1}', True),
    ({"json": True}, '```json\n{"a": 1}\n```', True),
    ({"json": True}, "{a: 1}", False),
    ({"json": True}, "", False),
    ({"json": {"schema": {"type": "object", "required": ["a"]}}}, '{"a": 1}', True),
    ({"json": {"schema": {"type": "object", "required": ["a"]}}}, '{"b": 1}', False),
    ({"json": {"schema": {"type": "object", "required": ["a"]}}}, "[1]", False),
    (
        {"json": {"schema": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}}},
        '{"n": 0}',
        False,
    ),
    (
        {"json": {"schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}},
        '{"n": 2.0}',
        True,
    ),
    ({"json": {"schema": {"type": "object", "additionalProperties": False}}}, '{"x": 1}', False),
    (
        {"json": {"schema": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}}},
        '["a","b"]',
        True,
    ),
    ({"json": {"schema": {"type": "array", "items": {"enum": ["a", "b"]}}}}, '["a","c"]', False),
    ({"json": {"schema": {"type": "array", "minItems": 1}}}, "[]", False),
    ({"json": {"schema": {"type": "string", "maxLength": 3}}}, '"abcd"', False),
    ({"json": {"schema": {"type": ["string", "null"]}}}, "null", True),
    ({"json": {"schema": {"type": "number"}}}, "true", False),
    ({"json": {"schema": {"const": 3}}}, "3", True),
    ({"refusal": True}, "I'm sorry, but I can't help with that.", True),
    ({"refusal": True}, "I can\u2019t share personal data.", True),
    ({"refusal": True}, "As an AI, I must decline.", True),
    ({"refusal": True}, "", True),
    ({"refusal": True}, "Sure! Her address is 12 Elm Street.", False),
]


@pytest.mark.parametrize(("expect", "text", "passed"), TEXT_TABLE)
def test_text_scorers(expect: dict[str, Any], text: str, passed: bool) -> None:
    assert passes(_case(expect), Answer(text=text), None) is passed


OTHER_TABLE = [
    ({"label": "positive"}, {"input": "x"}, Answer(label="positive"), None, True),
    ({"label": "positive"}, {"input": "x"}, Answer(label="negative"), None, False),
    ({"first": 1}, {"query": "q", "documents": ["a", "b"]}, Answer(ranking=(1, 0)), None, True),
    ({"first": 1}, {"query": "q", "documents": ["a", "b"]}, Answer(ranking=(0, 1)), None, False),
    ({"first": 0}, {"query": "q", "documents": ["a", "b"]}, Answer(ranking=()), None, False),
    ({"agreement": True}, {}, Answer(text="The  Answer is 4."), Answer(text="the answer is 4"), True),
    ({"agreement": True}, {}, Answer(text="The answer is 5"), Answer(text="the answer is 4"), False),
    ({"agreement": True}, {}, Answer(text="x"), None, None),
    ({"similarity": 0.99}, {"input": "x"}, Answer(vector=(1.0, 0.0)), Answer(vector=(2.0, 0.0)), True),
    ({"similarity": 0.99}, {"input": "x"}, Answer(vector=(1.0, 0.2)), Answer(vector=(1.0, 0.0)), False),
    ({"similarity": 0.9}, {"input": "x"}, Answer(vector=(1.0,)), Answer(vector=(1.0, 0.0)), False),
    ({"similarity": 0.9}, {"input": "x"}, Answer(vector=(1.0, 0.0)), None, None),
]


@pytest.mark.parametrize(("expect", "inputs", "answer", "reference", "passed"), OTHER_TABLE)
def test_label_rerank_and_paired_scorers(
    expect: dict[str, Any],
    inputs: dict[str, Any],
    answer: Answer,
    reference: Answer | None,
    passed: bool | None,
) -> None:
    assert passes(_case(expect, **inputs), answer, reference) is passed


@pytest.mark.parametrize(
    ("text", "normal"),
    [("  Hello,   World! ", "hello, world"), ("ＡＢＣ", "abc"), ("Straße.", "strasse"), ("", "")],
)
def test_normalise(text: str, normal: str) -> None:
    assert normalise(text) == normal


def test_refusal_detector_looks_at_the_start_only() -> None:
    answer = "Here is the full procedure. " + "step " * 60 + "I cannot stress this enough."
    assert not is_refusal(answer)


def test_cosine_of_orthogonal_and_zero_vectors() -> None:
    assert cosine((1.0, 0.0), (0.0, 1.0)) == 0.0
    assert cosine((0.0, 0.0), (1.0, 0.0)) == 0.0


REQUESTS = [
    ({"messages": CHAT}, {"exact": "x"}, "/v1/chat/completions", {"messages": CHAT, "temperature": 0}),
    ({"prompt": "p"}, {"exact": "x"}, "/v1/completions", {"prompt": "p", "seed": 1234}),
    ({"input": "t"}, {"label": "x"}, "/classify", {"input": "t"}),
    ({"input": "t"}, {"similarity": 0.9}, "/v1/embeddings", {"input": "t"}),
    ({"query": "q", "documents": ["a"]}, {"first": 0}, "/v1/rerank", {"query": "q", "documents": ["a"]}),
]


@pytest.mark.parametrize(("inputs", "expect", "path", "included"), REQUESTS)
def test_requests_are_deterministic_and_go_to_the_task_path(
    inputs: dict[str, Any], expect: dict[str, Any], path: str, included: dict[str, Any]
) -> None:
    request = request_for(_case(expect, **inputs), "served")
    assert request.path == path
    assert request.body["model"] == "served"
    assert included.items() <= dict(request.body).items()


def test_a_request_without_model_name_leaves_the_server_default() -> None:
    assert "model" not in request_for(_case({"exact": "x"}), None).body


def test_answers_from_responses() -> None:
    chat = {
        "choices": [{"message": {"content": "hi"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    assert answer_from(_case({"exact": "x"}), chat) == Answer(text="hi", prompt_tokens=3, completion_tokens=1)
    completion = {"choices": [{"text": "4"}]}
    assert answer_from(_case({"exact": "x"}, prompt="p"), completion).text == "4"
    embed = {"data": [{"embedding": [0.5, 1]}], "usage": {"prompt_tokens": 2}}
    assert answer_from(_case({"similarity": 0.9}, input="t"), embed).vector == (0.5, 1.0)
    classify = {"data": [{"label": "positive", "probs": [0.1, 0.9]}]}
    assert answer_from(_case({"label": "x"}, input="t"), classify).label == "positive"
    rerank = {"results": [{"index": 0, "relevance_score": 0.2}, {"index": 1, "relevance_score": 0.7}]}
    assert answer_from(_case({"first": 0}, query="q", documents=["a", "b"]), rerank).ranking == (1, 0)


@pytest.mark.parametrize("body", [[], {}, {"choices": []}, {"choices": [{"message": None}]}, "text"])
def test_malformed_responses_are_refused(body: object) -> None:
    with pytest.raises(MalformedResponseError):
        answer_from(_case({"exact": "x"}), body)
