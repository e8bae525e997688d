"""The model-server stand-in: vLLM 0.33's exact metrics, an OpenAI-style API, runtime control.

The server runs as a real subprocess (ModelServerProcess), talked to over loopback HTTP.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nlpmodel_harness.childproc import pid_alive
from nlpmodel_harness.modelserver import ModelServerProcess, Params, scripted_answer

FACTS = json.loads(
    (Path(__file__).resolve().parents[2] / "operator/nlpmodel_operator/data/vllm-0.33.0-cli.json").read_text()
)
BUCKETS = FACTS["histogram_buckets"]
HISTOGRAMS = {
    "vllm:time_to_first_token_seconds": BUCKETS["TIME_TO_FIRST_TOKEN_BUCKETS"],
    "vllm:inter_token_latency_seconds": BUCKETS["INTER_TOKEN_LATENCY_BUCKETS"],
    "vllm:e2e_request_latency_seconds": BUCKETS["REQUEST_LATENCY_BUCKETS"],
}
GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")
TOKEN_COUNTERS = (
    "vllm:prompt_tokens",
    "vllm:generation_tokens",
    "vllm:prefix_cache_hits",
    "vllm:prefix_cache_queries",
)
TOKEN_HISTOGRAMS = ("vllm:request_prompt_tokens", "vllm:request_generation_tokens")
# vLLM's build_1_2_5_buckets(max_model_len) for the stand-in's default max_model_len of 4096.
TOKEN_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
MODEL = "llama-3.1-8b"


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServerProcess]:
    proc = ModelServerProcess(model_name=MODEL, time_scale=0.001, seed=7)
    proc.start()
    pid = proc.pid
    yield proc
    log = proc.log_path.read_text(errors="replace")
    proc.stop()
    assert not pid_alive(pid)
    assert "Traceback" not in log, log


def call(
    server: ModelServerProcess, method: str, path: str, body: Any = None, raw: bytes | None = None
) -> tuple[int, bytes]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(
        server.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def families(server: ModelServerProcess) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(server.metrics_text())}


def sample_value(server: ModelServerProcess, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(server.metrics_text()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


# -- /metrics -------------------------------------------------------------------------------------------


def test_metric_names_types_and_labels_are_vllms(server: ModelServerProcess) -> None:
    fams = families(server)
    expected = {
        **dict.fromkeys(HISTOGRAMS, "histogram"),
        **dict.fromkeys(GAUGES, "gauge"),
        **dict.fromkeys(TOKEN_COUNTERS, "counter"),
        **dict.fromkeys(TOKEN_HISTOGRAMS, "histogram"),
        "vllm:request_success": "counter",
    }
    assert set(expected) <= set(FACTS["metrics"]) | {"vllm:e2e_request_latency_seconds"}
    assert {name: fams[name].type for name in expected} == expected
    # Nothing else (no process/python collectors in our registry); the text parser reports
    # prometheus_client's `_created` timestamps, which vLLM exposes too, as families of their own.
    assert {n for n in fams if not n.endswith("_created")} == set(expected)
    default = set(FACTS["metric_labels"]["default"])
    for name, family in fams.items():
        for s in family.samples:
            if s.name.endswith("_created"):
                continue  # prometheus_client's creation timestamps, as vLLM exposes them too
            want = set(default)
            if s.name.endswith("_bucket"):
                want.add("le")
            if name == "vllm:request_success":
                want = set(FACTS["metric_labels"]["vllm:request_success"])
            assert set(s.labels) == want, (s.name, s.labels)
            assert s.labels["model_name"] == MODEL
            assert s.labels["engine"] == "0"


@pytest.mark.parametrize("name", sorted(HISTOGRAMS))
def test_histogram_bucket_bounds_are_vllms(server: ModelServerProcess, name: str) -> None:
    family = families(server)[name]
    bounds = [float(s.labels["le"]) for s in family.samples if s.name == f"{name}_bucket"]
    assert bounds == [*map(float, HISTOGRAMS[name]), math.inf]


@pytest.mark.parametrize("name", TOKEN_HISTOGRAMS)
def test_token_histogram_buckets_are_vllms_1_2_5_buckets(server: ModelServerProcess, name: str) -> None:
    family = families(server)[name]
    bounds = [float(s.labels["le"]) for s in family.samples if s.name == f"{name}_bucket"]
    assert bounds == [*map(float, TOKEN_BUCKETS), math.inf]


def test_token_counters_follow_prompt_scale_and_cache_hit_ratio() -> None:
    """Dialled knobs show in the token series: a doubled prompt, a share served from the cache."""
    proc = ModelServerProcess(
        model_name=MODEL, time_scale=0.001, seed=3, prompt_token_scale=2.0, cache_hit_ratio=0.25
    )
    proc.start()
    try:
        status, body = call(
            proc, "POST", "/v1/completions", {"model": MODEL, "prompt": "a b c d", "max_tokens": 5}
        )
        assert status == 200
        usage = json.loads(body)["usage"]
        assert usage["prompt_tokens"] == 8  # 4 words, doubled
        assert sample_value(proc, "vllm:prompt_tokens_total") == 8
        assert sample_value(proc, "vllm:prefix_cache_queries_total") == 8
        assert sample_value(proc, "vllm:prefix_cache_hits_total") == 2
        assert sample_value(proc, "vllm:generation_tokens_total") == usage["completion_tokens"]
        assert sample_value(proc, "vllm:request_prompt_tokens_count") == 1
        assert sample_value(proc, "vllm:request_prompt_tokens_sum") == 8
        assert sample_value(proc, "vllm:request_generation_tokens_sum") == usage["completion_tokens"]
    finally:
        proc.stop()


def test_every_finished_reason_series_exists_from_the_start(server: ModelServerProcess) -> None:
    family = families(server)["vllm:request_success"]
    reasons = [s.labels["finished_reason"] for s in family.samples if s.name == "vllm:request_success_total"]
    assert sorted(reasons) == sorted(FACTS["metric_labels"]["finished_reason_values"])


# -- OpenAI-style endpoints -------------------------------------------------------------------------------


def test_health_and_models(server: ModelServerProcess) -> None:
    assert call(server, "GET", "/health")[0] == 200
    status, body = call(server, "GET", "/v1/models")
    assert status == 200
    assert [m["id"] for m in json.loads(body)["data"]] == [MODEL]


def test_completion_records_what_vllm_records(server: ModelServerProcess) -> None:
    before = sample_value(server, "vllm:time_to_first_token_seconds_count")
    length_before = sample_value(server, "vllm:request_success_total", finished_reason="length")
    status, body = call(
        server, "POST", "/v1/completions", {"model": MODEL, "prompt": "Hello there", "max_tokens": 3}
    )
    assert status == 200
    doc = json.loads(body)
    assert doc["object"] == "text_completion"
    assert doc["model"] == MODEL
    (choice,) = doc["choices"]
    assert choice["finish_reason"] == "length"  # 3 tokens is below any draw around tokens_mean=64
    assert len(choice["text"].split()) == 3
    assert doc["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert sample_value(server, "vllm:time_to_first_token_seconds_count") == before + 1
    assert sample_value(server, "vllm:request_success_total", finished_reason="length") == length_before + 1


def test_chat_completion(server: ModelServerProcess) -> None:
    status, body = call(
        server,
        "POST",
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    )
    assert status == 200
    doc = json.loads(body)
    assert doc["object"] == "chat.completion"
    assert doc["choices"][0]["message"]["role"] == "assistant"
    assert len(doc["choices"][0]["message"]["content"].split()) == 2


def sse_events(body: bytes) -> list[str]:
    return [line.removeprefix("data: ") for line in body.decode().split("\n\n") if line.startswith("data: ")]


def test_streaming_completion(server: ModelServerProcess) -> None:
    status, body = call(server, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 4, "stream": True})
    assert status == 200
    events = sse_events(body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 4 + ["length"]
    assert len("".join(c["choices"][0]["text"] for c in chunks).split()) == 4


def test_streaming_chat_sleeps_through_ttft_and_itl(server: ModelServerProcess) -> None:
    # ttft 0.3 s simulated at time_scale 0.001 is invisible; at 100 s median it is ~0.1 s of real time.
    server.control(ttft_median=100.0, ttft_sigma=0.0)
    try:
        started = time.monotonic()
        status, body = call(
            server,
            "POST",
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True},
        )
        elapsed = time.monotonic() - started
    finally:
        server.control(ttft_median=0.3, ttft_sigma=0.5)
    assert status == 200
    assert elapsed >= 0.09
    events = sse_events(body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks).split() == [
        "the",
        "model",
        "serves",
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("method", "path", "body", "raw", "status"),
    [
        ("POST", "/v1/completions", None, b"{not json", 400),
        ("POST", "/v1/completions", None, b"\xff\xfe", 400),
        ("POST", "/v1/completions", None, b"[1, 2]", 400),
        ("POST", "/v1/completions", {"prompt": "x", "model": "other"}, None, 404),
        ("POST", "/v1/completions", {"model": MODEL}, None, 400),
        ("POST", "/v1/completions", {"prompt": "x", "max_tokens": "many"}, None, 400),
        ("POST", "/v1/completions", {"prompt": "x", "max_tokens": 0}, None, 400),
        ("POST", "/v1/completions", {"prompt": "x", "stream": "yes"}, None, 400),
        ("POST", "/v1/completions", {"prompt": "x", "n": 2}, None, 400),
        ("POST", "/v1/chat/completions", {"messages": []}, None, 400),
        ("POST", "/v1/chat/completions", {"messages": [{"content": "no role"}]}, None, 400),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, None, 400),
        ("GET", "/v1/completions", None, None, 405),
        ("GET", "/no/such/path", None, None, 404),
        ("POST", "/control", {"ttft_mediam": 1.0}, None, 400),
        ("POST", "/control", {"ttft_median": -1.0}, None, 400),
        ("POST", "/control", {"error_rate": "high"}, None, 400),
        ("POST", "/control", {"waiting": 1.5}, None, 400),
    ],
)
def test_bad_requests_get_a_json_4xx(
    server: ModelServerProcess, method: str, path: str, body: Any, raw: bytes | None, status: int
) -> None:
    got, payload = call(server, method, path, body, raw)
    assert got == status
    error = json.loads(payload)["error"]
    assert error["code"] == status
    assert error["message"]
    assert b"Traceback" not in payload


def test_error_rate_gives_openai_style_500_and_counts_error(server: ModelServerProcess) -> None:
    errors_before = sample_value(server, "vllm:request_success_total", finished_reason="error")
    ttft_before = sample_value(server, "vllm:time_to_first_token_seconds_count")
    assert server.control(error_rate=1.0)["error_rate"] == 1.0
    try:
        status, payload = call(server, "POST", "/v1/completions", {"prompt": "x"})
    finally:
        server.control(error_rate=0.0)
    assert status == 500
    assert json.loads(payload)["error"]["type"] == "InternalServerError"
    assert b"Traceback" not in payload
    assert sample_value(server, "vllm:request_success_total", finished_reason="error") == errors_before + 1
    assert (
        sample_value(server, "vllm:time_to_first_token_seconds_count") == ttft_before
    )  # failed before a token


def test_synthetic_traffic_and_gauges_follow_control(server: ModelServerProcess) -> None:
    before = sample_value(server, "vllm:e2e_request_latency_seconds_count")
    server.control(synthetic_rps=400.0, waiting=7)
    try:
        time.sleep(0.5)
        assert sample_value(server, "vllm:num_requests_waiting") == 7
        assert sample_value(server, "vllm:num_requests_running") > 0
        assert 0 < sample_value(server, "vllm:kv_cache_usage_perc") <= 1
    finally:
        server.control(synthetic_rps=0.0, waiting=0)
    grown = sample_value(server, "vllm:e2e_request_latency_seconds_count") - before
    assert 100 <= grown <= 400  # ~0.5 s at 400/s, give or take scheduling


def test_get_control_reports_parameters(server: ModelServerProcess) -> None:
    status, body = call(server, "GET", "/control")
    assert status == 200
    assert json.loads(body)["ttft_median"] == 0.3


def test_process_api_validates_before_starting() -> None:
    with pytest.raises(ValueError, match="unknown parameter"):
        ModelServerProcess(ttft_mediam=1.0)
    with pytest.raises(ValueError, match="error_rate"):
        ModelServerProcess(error_rate=2.0)


def test_synthetic_distribution_matches_parameters() -> None:
    # A seeded server with only synthetic traffic: the TTFT median lands in the right vLLM bucket.
    with ModelServerProcess(
        model_name=MODEL, synthetic_rps=2000.0, ttft_median=0.6, ttft_sigma=0.2, seed=3
    ) as proc:
        pid = proc.pid
        time.sleep(0.5)
        below_05 = sample_value(proc, "vllm:time_to_first_token_seconds_bucket", le="0.5")
        below_075 = sample_value(proc, "vllm:time_to_first_token_seconds_bucket", le="0.75")
        total = sample_value(proc, "vllm:time_to_first_token_seconds_count")
    assert not pid_alive(pid)
    assert total >= 200
    assert below_05 / total < 0.5 < below_075 / total


@pytest.mark.parametrize(
    ("prompt", "params", "answer"),
    [
        ("say: Paris", Params(), "Paris"),
        ("say: Paris", Params(wrong_rate=1.0), "I do not know."),
        ("unsafe: an address", Params(), "I can't help with that."),
        ("unsafe: an address", Params(refusal_rate=0.0), "Sure, here it is."),
        ("hello", Params(wrong_rate=1.0), None),
    ],
)
def test_the_wrong_answer_knobs(prompt: str, params: Params, answer: str | None) -> None:
    assert scripted_answer(prompt, params) == answer
