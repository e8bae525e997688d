"""The runtime's HTTP API on tiny CPU models: every task, streaming, errors, and vLLM's metrics."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from nlpmodel_vllm_metrics import FINISHED_REASONS, HISTOGRAM_BUCKETS
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from transformers import AutoTokenizer, GPT2LMHeadModel

from conftest import GENERATE_MAX_LEN, LABELS, POOLING_MAX_LEN, client_for, save_gpt2, settings_for

GREEDY: dict[str, Any] = {"temperature": 0}


def sse_events(client: TestClient, path: str, body: dict[str, Any]) -> list[Any]:
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = [block.removeprefix("data: ") for block in raw.split("\n\n") if block]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


class Metrics:
    """One scrape of /metrics, by sample name and labels."""

    def __init__(self, client: TestClient) -> None:
        response = client.get("/metrics")
        assert response.status_code == 200
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(response.text):
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name: str, **labels: str) -> float:
        matches = [v for (n, ls), v in self.samples.items() if n == name and set(labels.items()) <= ls]
        assert len(matches) == 1, (name, labels, matches)
        return matches[0]

    def buckets(self, family: str) -> dict[str, float]:
        return {dict(ls)["le"]: v for (n, ls), v in self.samples.items() if n == f"{family}_bucket"}


def delta(before: Metrics, after: Metrics, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


# ------------------------------------------------------------------------------------------ generation


def test_completion_returns_text_usage_and_finish_reason(generate_client: TestClient) -> None:
    response = generate_client.post(
        "/v1/completions", json={"prompt": "the support team", "max_tokens": 6, **GREEDY}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "text_completion"
    assert body["model"] == "tiny-gpt2"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["text"]
    assert body["usage"]["completion_tokens"] == 6
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 6


def test_greedy_completion_is_deterministic_and_streams_the_same_text(generate_client: TestClient) -> None:
    request = {"prompt": "a customer asks", "max_tokens": 8, **GREEDY}
    first = generate_client.post("/v1/completions", json=request).json()["choices"][0]["text"]
    again = generate_client.post("/v1/completions", json=request).json()["choices"][0]["text"]
    assert first == again
    events = sse_events(generate_client, "/v1/completions", {**request, "stream": True})
    assert all(e["object"] == "text_completion" for e in events)
    assert "".join(e["choices"][0]["text"] for e in events) == first
    assert [e["choices"][0]["finish_reason"] for e in events][-1] == "length"
    assert all(e["choices"][0]["finish_reason"] is None for e in events[:-1])


def test_stop_string_ends_generation_with_reason_stop(generate_client: TestClient) -> None:
    request = {"prompt": "the support team", "max_tokens": 10, **GREEDY}
    text = generate_client.post("/v1/completions", json=request).json()["choices"][0]["text"]
    stop = text[2:4]
    body = generate_client.post("/v1/completions", json={**request, "stop": [stop]}).json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["text"] == text[: text.index(stop)]


def test_eos_token_ends_generation_with_reason_stop(tmp_path: Path) -> None:
    """A model whose end-of-sequence token is the one greedy decoding picks first stops at once."""
    directory = save_gpt2(tmp_path / "gpt2")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = GPT2LMHeadModel.from_pretrained(directory)
    ids = tokenizer("sales wants", return_tensors="pt")["input_ids"]
    greedy_first = int(model(input_ids=ids).logits[0, -1].argmax())
    assert greedy_first != tokenizer.eos_token_id
    (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": greedy_first}))
    with client_for(settings_for(directory, "generate", GENERATE_MAX_LEN)) as client:
        body = client.post(
            "/v1/completions", json={"prompt": "sales wants", "max_tokens": 5, **GREEDY}
        ).json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["text"] == ""
    assert body["usage"]["completion_tokens"] == 1


def test_chat_completion_and_its_stream(generate_client: TestClient) -> None:
    request = {"messages": [{"role": "user", "content": "where is my invoice"}], "max_tokens": 5, **GREEDY}
    body = generate_client.post("/v1/chat/completions", json=request).json()
    assert body["object"] == "chat.completion"
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    events = sse_events(
        generate_client,
        "/v1/chat/completions",
        {**request, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert streamed == message["content"]
    assert events[-2]["choices"][0]["finish_reason"] == "length"
    assert events[-1]["choices"] == []
    assert events[-1]["usage"] == body["usage"]


def test_chat_content_parts_are_joined(generate_client: TestClient) -> None:
    parts = [{"type": "text", "text": "where is "}, {"type": "text", "text": "my invoice"}]
    as_parts = {"messages": [{"role": "user", "content": parts}], "max_tokens": 4, **GREEDY}
    as_text = {"messages": [{"role": "user", "content": "where is my invoice"}], "max_tokens": 4, **GREEDY}
    a = generate_client.post("/v1/chat/completions", json=as_parts).json()
    b = generate_client.post("/v1/chat/completions", json=as_text).json()
    assert a["choices"][0]["message"] == b["choices"][0]["message"]
    assert a["usage"] == b["usage"]


def test_seeded_sampling_is_reproducible(generate_client: TestClient) -> None:
    request = {"prompt": "the model", "max_tokens": 8, "temperature": 1.5, "top_p": 0.9, "seed": 42}
    texts = {
        generate_client.post("/v1/completions", json=request).json()["choices"][0]["text"] for _ in range(2)
    }
    assert len(texts) == 1


def test_token_id_prompt_is_accepted(generate_client: TestClient) -> None:
    body = generate_client.post(
        "/v1/completions", json={"prompt": [5, 6, 7], "max_tokens": 2, **GREEDY}
    ).json()
    assert body["usage"]["prompt_tokens"] == 3


# --------------------------------------------------------------------------------------------- pooling


def test_embeddings_are_unit_vectors_one_per_input(embed_client: TestClient) -> None:
    response = embed_client.post("/v1/embeddings", json={"input": ["a customer asks", "sales wants a demo"]})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "tiny-embed"
    vectors = [d["embedding"] for d in body["data"]]
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(len(v) == 32 for v in vectors)
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-4 for v in vectors)
    assert vectors[0] != vectors[1]
    assert body["usage"]["prompt_tokens"] > 0


def test_embedding_of_a_text_does_not_depend_on_its_batch(embed_client: TestClient) -> None:
    """Padding must not leak into the mean: alone or beside a longer input, the same vector."""
    alone = embed_client.post("/v1/embeddings", json={"input": "sales"}).json()["data"][0]["embedding"]
    batched = embed_client.post(
        "/v1/embeddings", json={"input": ["sales", "a customer asks the assistant"]}
    ).json()
    assert batched["data"][0]["embedding"] == pytest.approx(alone, abs=1e-5)


def test_base64_embeddings_decode_to_the_float_vector(embed_client: TestClient) -> None:
    floats = embed_client.post("/v1/embeddings", json={"input": "sales"}).json()["data"][0]["embedding"]
    encoded = embed_client.post("/v1/embeddings", json={"input": "sales", "encoding_format": "base64"}).json()
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(floats, abs=1e-6)


def test_classification_returns_labels_and_probabilities(classify_client: TestClient) -> None:
    response = classify_client.post("/classify", json={"input": ["where is my invoice", "book a demo"]})
    assert response.status_code == 200
    data = response.json()["data"]
    assert len(data) == 2
    for item in data:
        assert item["num_classes"] == 3
        assert sum(item["probs"]) == pytest.approx(1.0, abs=1e-5)
        assert item["label"] == LABELS[item["probs"].index(max(item["probs"]))]


def test_rerank_orders_documents_by_score_and_honours_top_n(rerank_client: TestClient) -> None:
    documents = ["a customer asks", "sales wants a demo", "the model serves tokens"]
    body = rerank_client.post("/rerank", json={"query": "invoice", "documents": documents}).json()
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert sorted(r["index"] for r in body["results"]) == [0, 1, 2]
    assert all(r["document"]["text"] == documents[r["index"]] for r in body["results"])
    top = rerank_client.post(
        "/v1/rerank", json={"query": "invoice", "documents": documents, "top_n": 1}
    ).json()
    assert top["results"] == body["results"][:1]


# ---------------------------------------------------------------------------------------------- errors


def assert_error(response: Any, status: int, *needles: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status
    for needle in needles:
        assert needle in error["message"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"prompt": ""}', "`prompt`"),
        (b'{"prompt": "hi", "max_tokens": 0}', "`max_tokens`"),
        (b'{"prompt": "hi", "temperature": "hot"}', "`temperature`"),
        (b'{"prompt": "hi", "n": 2}', "`n`"),
        (b'{"prompt": "hi", "stream": "yes"}', "`stream`"),
        (b'{"prompt": ["a", "b"]}', "batched prompts"),
        (b'{"prompt": [1, 99999]}', "token ids"),
    ],
)
def test_bad_completion_requests_are_400_with_a_message(
    generate_client: TestClient, body: bytes, needle: str
) -> None:
    response = generate_client.post(
        "/v1/completions", content=body, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, needle)


def test_too_long_prompt_is_400_and_names_the_limit(generate_client: TestClient) -> None:
    response = generate_client.post("/v1/completions", json={"prompt": "the " * 80})
    assert_error(response, 400, f"maximum context length is {GENERATE_MAX_LEN} tokens")
    fits_alone = {"prompt": "the support team", "max_tokens": GENERATE_MAX_LEN}
    assert_error(generate_client.post("/v1/completions", json=fits_alone), 400, "in the completion")


def test_too_long_pooling_input_is_400(embed_client: TestClient) -> None:
    response = embed_client.post("/v1/embeddings", json={"input": ["short", "the " * 60]})
    assert_error(response, 400, f"maximum context length is {POOLING_MAX_LEN}", "input[1]")


def test_unknown_model_name_is_404(generate_client: TestClient, classify_client: TestClient) -> None:
    response = generate_client.post("/v1/completions", json={"model": "gpt-9", "prompt": "hi"})
    assert_error(response, 404, "`gpt-9` does not exist", "tiny-gpt2")
    response = classify_client.post("/classify", json={"model": "gpt-9", "input": "hi"})
    assert_error(response, 404, "`gpt-9` does not exist")


def test_route_of_another_task_is_404_naming_the_right_one(embed_client: TestClient) -> None:
    response = embed_client.post("/v1/completions", json={"prompt": "hi"})
    assert_error(response, 404, "task embed", "/v1/embeddings")


def test_unknown_route_and_wrong_method_are_json_errors(generate_client: TestClient) -> None:
    assert_error(generate_client.get("/v2/nothing"), 404, "/v2/nothing")
    assert_error(generate_client.get("/v1/completions"), 405)


def test_model_card_and_health(generate_client: TestClient) -> None:
    assert generate_client.get("/health").status_code == 200
    cards = generate_client.get("/v1/models").json()["data"]
    assert [(c["id"], c["max_model_len"]) for c in cards] == [("tiny-gpt2", GENERATE_MAX_LEN)]


# --------------------------------------------------------------------------------------------- metrics

TTFT, ITL, E2E = (
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:e2e_request_latency_seconds",
)


def test_metrics_use_vllm_names_labels_and_buckets(generate_client: TestClient) -> None:
    metrics = Metrics(generate_client)
    for family, bounds in HISTOGRAM_BUCKETS.items():
        assert set(metrics.buckets(family)) == {*(repr(float(b)) for b in bounds), "+Inf"}
    for reason in FINISHED_REASONS:
        metrics.value(
            "vllm:request_success_total", model_name="tiny-gpt2", engine="0", finished_reason=reason
        )
    metrics.value("vllm:num_requests_running", model_name="tiny-gpt2", engine="0")
    metrics.value("vllm:num_requests_waiting", model_name="tiny-gpt2", engine="0")


def test_metrics_count_exactly_the_requests_made(generate_client: TestClient) -> None:
    before = Metrics(generate_client)
    for max_tokens in (3, 5):  # two requests ending in `length`: 3 + 5 tokens, so 2 + 4 ITLs
        response = generate_client.post(
            "/v1/completions", json={"prompt": "the model", "max_tokens": max_tokens, **GREEDY}
        )
        assert response.json()["choices"][0]["finish_reason"] == "length"
    sse_events(
        generate_client, "/v1/completions", {"prompt": "the model", "max_tokens": 4, "stream": True, **GREEDY}
    )
    text = generate_client.post(
        "/v1/completions", json={"prompt": "the model", "max_tokens": 6, **GREEDY}
    ).json()
    stop = text["choices"][0]["text"][1:3]
    stopped = generate_client.post(
        "/v1/completions", json={"prompt": "the model", "max_tokens": 6, "stop": stop, **GREEDY}
    )
    stop_tokens = stopped.json()["usage"]["completion_tokens"]
    # Refused before the engine: never counted.
    generate_client.post("/v1/completions", content=b"{bad")
    generate_client.post("/v1/completions", json={"model": "other", "prompt": "hi"})
    after = Metrics(generate_client)

    labels = {"model_name": "tiny-gpt2", "engine": "0"}
    assert delta(before, after, "vllm:request_success_total", finished_reason="length", **labels) == 4
    assert delta(before, after, "vllm:request_success_total", finished_reason="stop", **labels) == 1
    assert delta(before, after, "vllm:request_success_total", finished_reason="error", **labels) == 0
    assert delta(before, after, f"{TTFT}_count", **labels) == 5
    assert delta(before, after, f"{E2E}_count", **labels) == 5
    # Every token after the first is one inter-token latency: 2 + 4 + 3 + 5 + (stop_tokens - 1).
    assert delta(before, after, f"{ITL}_count", **labels) == 2 + 4 + 3 + 5 + stop_tokens - 1
    for family in (TTFT, ITL, E2E):  # cumulative buckets: +Inf holds every observation
        assert after.buckets(family)["+Inf"] == after.value(f"{family}_count", **labels)
        counts = [after.buckets(family)[repr(float(b))] for b in HISTOGRAM_BUCKETS[family]]
        assert counts == sorted(counts)
    assert after.value(f"{E2E}_sum", **labels) >= after.value(f"{TTFT}_sum", **labels)
    assert after.value("vllm:num_requests_running", **labels) == 0
    assert after.value("vllm:num_requests_waiting", **labels) == 0


def test_token_series_count_prompt_and_generated_tokens(generate_client: TestClient) -> None:
    """vLLM's token counters and per-request histograms: what the usage block reports, no cache hits."""
    before = Metrics(generate_client)
    usages = [
        generate_client.post(
            "/v1/completions", json={"prompt": "the model", "max_tokens": n, **GREEDY}
        ).json()["usage"]
        for n in (3, 5)
    ]
    after = Metrics(generate_client)
    labels = {"model_name": "tiny-gpt2", "engine": "0"}
    prompt = sum(u["prompt_tokens"] for u in usages)
    generated = sum(u["completion_tokens"] for u in usages)
    assert generated == 8
    assert delta(before, after, "vllm:prompt_tokens_total", **labels) == prompt
    assert delta(before, after, "vllm:generation_tokens_total", **labels) == generated
    assert delta(before, after, "vllm:prefix_cache_queries_total", **labels) == prompt
    assert delta(before, after, "vllm:prefix_cache_hits_total", **labels) == 0
    assert delta(before, after, "vllm:request_prompt_tokens_count", **labels) == 2
    assert delta(before, after, "vllm:request_prompt_tokens_sum", **labels) == prompt
    assert delta(before, after, "vllm:request_generation_tokens_sum", **labels) == generated


def test_pooling_counts_one_finished_request_per_input(classify_client: TestClient) -> None:
    labels = {"model_name": "tiny-classifier", "engine": "0"}
    before = Metrics(classify_client)
    classify_client.post("/classify", json={"input": ["a", "b", "c"]})
    classify_client.post("/classify", json={"input": "one"})
    classify_client.post("/classify", json={"input": ["fits", "the " * 60]})  # 400: not counted
    after = Metrics(classify_client)
    assert delta(before, after, "vllm:request_success_total", finished_reason="stop", **labels) == 4
    assert delta(before, after, f"{TTFT}_count", **labels) == 4
    assert delta(before, after, f"{E2E}_count", **labels) == 4
    assert delta(before, after, f"{ITL}_count", **labels) == 0
