"""Parse command lines with vLLM's own CLI, exactly as `vllm serve ARGS` would, without serving.

Runs inside the runtime venv (vLLM installed): reads ``[{"label": ..., "argv": ["vllm", "serve", ...]}]``
as JSON on stdin and writes ``[{"label", "ok", "error", "model"}]`` to the file named by its argument. For each
command line it runs vLLM's CLI entry point (``vllm.entrypoints.cli.main.main``) with the launchers the
serve subcommand ends in replaced by a recorder, so the real parser, the real ``validate`` and ``cmd`` of
the serve subcommand and ``AsyncEngineArgs.from_cli_args`` all run; nothing loads a model. An argparse
rejection (unknown flag, value outside ``choices``, wrong type) is a SystemExit whose message vLLM
printed to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import types
from typing import Any


def check(argv: list[str]) -> tuple[str | None, str | None]:
    """(None, the model vLLM will load) when vLLM accepts the command line, else (vLLM's message, None).
    The model is what vLLM's own parser made of the command line (the positional `model_tag` of
    `vllm serve`, or `--model`), so a caller can prove which argument it took."""
    import vllm.entrypoints.cli.main as cli_main  # noqa: PLC0415 - heavy; only inside the venv
    from vllm import platforms  # noqa: PLC0415
    from vllm.engine.arg_utils import AsyncEngineArgs  # noqa: PLC0415
    from vllm.entrypoints.cli import serve  # noqa: PLC0415
    from vllm.platforms.cpu import CpuPlatform  # noqa: PLC0415

    # Without a GPU vLLM detects no platform, and building its parser needs one for defaults; vLLM's
    # own CLI makes the same substitution for `vllm bench`. Which flags and values are accepted does not
    # depend on it.
    if platforms.current_platform.is_unspecified():
        platforms.current_platform = CpuPlatform()

    if argv[:2] != ["vllm", "serve"]:
        return f"not a `vllm serve` command line: {argv[:2]}", None
    parsed: list[argparse.Namespace] = []
    # The serve subcommand's own `cmd` runs (it resolves the positional model_tag into args.model);
    # only the launchers it ends in are replaced by the recorder.
    launchers = ("run_server", "run_headless", "run_multi_api_server", "run_dp_supervisor", "uvloop")
    originals = {name: getattr(serve, name) for name in launchers}
    for name in launchers[:-1]:
        setattr(serve, name, parsed.append)
    serve.uvloop = types.SimpleNamespace(run=lambda _: None)  # type: ignore[assignment,attr-defined]
    stderr = io.StringIO()
    saved_argv = sys.argv
    sys.argv = argv
    try:
        with contextlib.redirect_stderr(stderr):
            cli_main.main()  # type: ignore[no-untyped-call]
        if len(parsed) != 1:
            return "vLLM's CLI did not reach the serve command", None
        engine_args = AsyncEngineArgs.from_cli_args(parsed[0])
        problem = _value_problem(engine_args)
        return problem, None if problem else str(engine_args.model)
    except SystemExit as exc:
        message = stderr.getvalue().strip()
        return (message.splitlines()[-1] if message else f"exit {exc.code}"), None
    except Exception as exc:  # vLLM's own validation (serve's validate, EngineArgs) raising
        return f"{type(exc).__name__}: {exc}", None
    finally:
        sys.argv = saved_argv
        for name, original in originals.items():
            setattr(serve, name, original)


def _value_problem(engine_args: Any) -> str | None:
    """Values vLLM checks only when it builds its configs (with the model at hand), checked the same way.

    `--quantization` against the registry ModelConfig checks, `--kv-cache-dtype` by CacheConfig's own
    validator, `--load-format` against the model-loader registry get_model_loader looks in.
    """
    from vllm.config import CacheConfig  # noqa: PLC0415
    from vllm.model_executor import model_loader  # noqa: PLC0415
    from vllm.model_executor.layers import quantization  # noqa: PLC0415

    method = engine_args.quantization
    if method is not None and method not in quantization.QUANTIZATION_METHODS:
        return f"Unknown quantization method: {method}. Must be one of {quantization.QUANTIZATION_METHODS}."
    try:
        CacheConfig(cache_dtype=engine_args.kv_cache_dtype)
    except ValueError as exc:  # pydantic's ValidationError: keep the validator's own sentence
        lines = [line.strip() for line in str(exc).splitlines() if "kv_cache_dtype" in line]
        return lines[-1] if lines else str(exc)
    load_format = engine_args.load_format
    loaders = model_loader._LOAD_FORMAT_TO_MODEL_LOADER  # what get_model_loader looks the format up in
    if isinstance(load_format, str) and load_format not in loaders:
        return f"Load format `{load_format}` is not supported"
    return None


def main() -> int:
    cases: list[dict[str, Any]] = json.load(sys.stdin)
    results = []
    for case in cases:
        error, model = check(list(case["argv"]))
        results.append({"label": case["label"], "ok": error is None, "error": error, "model": model})
    # vLLM logs to stdout: the results go to the file named by the only argument.
    with open(sys.argv[1], "w") as out:
        json.dump(results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
