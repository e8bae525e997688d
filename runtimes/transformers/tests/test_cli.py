"""The command-line contract the operator renders, and the real server process behind it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import save_gpt2
from nlpmodel_runtime.quantization import BnbPlan, QuantizationError, bnb_plan
from nlpmodel_runtime.settings import parse_settings

CONTRACT = ["--model-name", "m", "--model-dir", "/mnt/models", "--task", "generate", "--max-model-len", "64"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nlpmodel_runtime", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_contract_parses_into_settings() -> None:
    s = parse_settings(
        [
            *CONTRACT,
            "--device",
            "cuda",
            "--http-port",
            "8080",
            "--quantization",
            "bitsandbytes-nf4",
            "--double-quant",
        ]
    )
    assert (s.model_name, s.model_dir, s.task, s.max_model_len) == ("m", "/mnt/models", "generate", 64)
    assert (s.device, s.http_port, s.quantization, s.double_quant) == ("cuda", 8080, "bitsandbytes-nf4", True)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (
            ["--device", "cpu", "--http-port", "8080", "--quantization", "bitsandbytes-nf4"],
            "runs on GPUs only",
        ),
        (
            [
                "--device",
                "cuda",
                "--http-port",
                "8080",
                "--quantization",
                "bitsandbytes-int8",
                "--double-quant",
            ],
            "nf4 only",
        ),
        (["--device", "tpu", "--http-port", "8080"], "--device"),
        (["--device", "cpu", "--http-port", "0"], "--http-port"),
        (["--device", "cpu"], "--http-port"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(extra: list[str], needle: str) -> None:
    result = run_cli(*CONTRACT, *extra)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_cuda_without_a_gpu_exits_3_with_a_message(tmp_path: Path) -> None:
    directory = save_gpt2(tmp_path / "gpt2")
    args = ["--model-name", "m", "--model-dir", str(directory), "--task", "generate", "--max-model-len", "64"]
    result = run_cli(*args, "--device", "cuda", "--http-port", "8080", "--quantization", "bitsandbytes-nf4")
    assert result.returncode == 3
    assert "no CUDA device" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_model_directory_exits_3_with_a_message(tmp_path: Path) -> None:
    args = [
        "--model-name",
        "m",
        "--model-dir",
        str(tmp_path / "absent"),
        "--task",
        "embed",
        "--max-model-len",
        "64",
    ]
    result = run_cli(*args, "--device", "cpu", "--http-port", "8080")
    assert result.returncode == 3
    assert "cannot load" in result.stderr


def test_bitsandbytes_plans() -> None:
    assert bnb_plan("none", False, "cpu") is None
    assert bnb_plan("bitsandbytes-nf4", True, "cuda") == BnbPlan(bits=4, double_quant=True)
    assert bnb_plan("bitsandbytes-int8", False, "cuda") == BnbPlan(bits=8)
    assert BnbPlan(bits=8).config_kwargs("bf16") == {"load_in_8bit": True}
    nf4 = BnbPlan(bits=4, double_quant=True).config_kwargs("bf16")
    assert nf4["bnb_4bit_quant_type"] == "nf4"
    assert nf4["bnb_4bit_use_double_quant"] is True
    with pytest.raises(QuantizationError, match="needs --device cuda"):
        bnb_plan("bitsandbytes-nf4", False, "cpu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    directory = save_gpt2(tmp_path / "gpt2")
    port = free_port()
    args = [
        "--model-name",
        "chat",
        "--model-dir",
        str(directory),
        "--task",
        "generate",
        "--max-model-len",
        "64",
    ]
    args += ["--device", "cpu", "--http-port", str(port), "--host", "127.0.0.1"]
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nlpmodel_runtime", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_server_process_serves_the_contract(served: str) -> None:
    body = json.dumps(
        {"model": "chat", "prompt": "the support team", "max_tokens": 3, "temperature": 0}
    ).encode()
    request = urllib.request.Request(
        served + "/v1/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        completion = json.loads(response.read())
    assert completion["usage"]["completion_tokens"] == 3
    with urllib.request.urlopen(served + "/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert 'vllm:request_success_total{engine="0",finished_reason="length",model_name="chat"} 1.0' in metrics
