"""Every kopf registration of the operator, in one place; the bodies live in `runner`."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.controller.config import OperatorConfig
from nlpmodel_operator.controller.kube import Kube, load_client
from nlpmodel_operator.controller.runner import Reconciler

CONFIG = OperatorConfig.from_env()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Our own prefix for everything kopf stores on objects (no "kopf.zalando.org" keys on user objects).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{c.GROUP}/finalizer"
    settings.posting.level = logging.WARNING  # Events for problems only; progress goes to status
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.error_backoffs = [1, 2, 5, 10, 20]
    memo.reconciler = Reconciler(Kube(load_client(), CONFIG.field_manager))


async def _reconcile(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger) -> None:
    reconciler: Reconciler = memo.reconciler
    for event in await reconciler.reconcile(body, logger):
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
async def on_model_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Any change of the model (and the initial listing on start) converges it; deletion is left to GC."""
    if event["type"] == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
        return
    await _reconcile(body, memo, logger)


@kopf.timer(c.GROUP, c.VERSION, c.PLURAL, interval=CONFIG.resync_seconds, initial_delay=CONFIG.resync_seconds)
async def resync(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Children change without the model changing (an InferenceService turns Ready): read them back."""
    await _reconcile(body, memo, logger)
