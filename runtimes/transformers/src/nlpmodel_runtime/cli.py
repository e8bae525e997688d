"""`python -m nlpmodel_runtime`: parse the contract, load the model, serve until SIGTERM."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from nlpmodel_runtime.settings import parse_settings

log = logging.getLogger("nlpmodel_runtime")

# Exit codes: 2 for a usage problem (argparse), 3 when the model cannot be loaded as asked.
EXIT_LOAD_FAILED = 3


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Heavy imports after the arguments are checked: a usage error answers at once.
    import uvicorn  # noqa: PLC0415

    from nlpmodel_runtime.engine import EngineError, QuantizationError, load  # noqa: PLC0415
    from nlpmodel_runtime.server import build_app  # noqa: PLC0415

    try:
        engine = load(settings)
    except (EngineError, QuantizationError) as exc:
        print(f"nlpmodel_runtime: {exc}", file=sys.stderr)
        return EXIT_LOAD_FAILED
    app = build_app(engine, max_waiting=settings.max_waiting)
    log.info(
        "serving %s (%s) on %s:%d", settings.model_name, settings.task, settings.host, settings.http_port
    )
    uvicorn.run(app, host=settings.host, port=settings.http_port, log_level="info", access_log=False)
    return 0
