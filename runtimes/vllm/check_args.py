"""Parse command lines with vLLM's own CLI, exactly as `vllm serve ARGS` would, without serving.

Runs inside the runtime venv (vLLM installed): reads ``[{"label": ..., "argv": ["vllm", "serve", ...]}]``
as JSON on stdin and writes ``[{"label", "ok", "error"}]`` to the file named by its argument. For each
command line it runs vLLM's CLI entry point (``vllm.entrypoints.cli.main.main``) with the serve
subcommand's action replaced by a recorder, so the real parser, the real ``validate`` of the serve subcommand and
``AsyncEngineArgs.from_cli_args`` all run; nothing loads a model. An argparse rejection (unknown flag,
value outside ``choices``, wrong type) is a SystemExit whose message vLLM printed to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from typing import Any


def check(argv: list[str]) -> str | None:
    """None when vLLM accepts the command line, else vLLM's message."""
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
        return f"not a `vllm serve` command line: {argv[:2]}"
    parsed: list[argparse.Namespace] = []
    original = serve.ServeSubcommand.cmd
    serve.ServeSubcommand.cmd = staticmethod(parsed.append)  # type: ignore[assignment]
    stderr = io.StringIO()
    saved_argv = sys.argv
    sys.argv = argv
    try:
        with contextlib.redirect_stderr(stderr):
            cli_main.main()  # type: ignore[no-untyped-call]
        if len(parsed) != 1:
            return "vLLM's CLI did not reach the serve command"
        engine_args = AsyncEngineArgs.from_cli_args(parsed[0])
        return _value_problem(engine_args)
    except SystemExit as exc:
        return stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue().strip() else f"exit {exc.code}"
    except Exception as exc:  # vLLM's own validation (serve's validate, EngineArgs) raising
        return f"{type(exc).__name__}: {exc}"
    finally:
        sys.argv = saved_argv
        serve.ServeSubcommand.cmd = original  # type: ignore[method-assign]
    return None


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
        error = check(list(case["argv"]))
        results.append({"label": case["label"], "ok": error is None, "error": error})
    # vLLM logs to stdout: the results go to the file named by the only argument.
    with open(sys.argv[1], "w") as out:
        json.dump(results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
