"""Every kopf registration of the operator, in one place; the bodies live in `runner`. The children are
watched by the operator's own informers (`controller.informer`), started here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.controller.analysis import Analyzer
from nlpmodel_operator.controller.config import OperatorConfig
from nlpmodel_operator.controller.informer import ChildCache, Informers, ModelKey
from nlpmodel_operator.controller.kube import Kube, informer_client, load_client
from nlpmodel_operator.controller.metrics import OperatorMetrics
from nlpmodel_operator.controller.peering import PeeringGate, ensure_peering_objects, operator_identity
from nlpmodel_operator.controller.runner import Reconciler
from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.monitoring import Monitoring
from nlpmodel_operator.core.networkpolicy import NetworkPolicies
from nlpmodel_operator.providers.factory import provider_for

RECONCILE_LOG = logging.getLogger("nlpmodel.reconcile")
# How long a starting operator waits for the children's first listings before it acts anyway (reading
# the kinds not listed yet by LIST).
INFORMER_SYNC_TIMEOUT_S = 60.0


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    # Only event handlers are registered: kopf stores no progress, diff-base or finalizer on objects.
    settings.posting.enabled = False  # Events are posted by the reconciler, for problems only
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.error_backoffs = [1, 2, 5, 10, 20]
    config: OperatorConfig = memo.config  # read once by controller.run
    # Every blocking call of the reconciles (`asyncio.to_thread`) runs in these threads, each with a
    # connection of its own.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(config.reconcile_threads, thread_name_prefix="reconcile")
    )
    api_client = load_client(config.reconcile_threads)
    gate = None
    if settings.peering.mandatory and not settings.peering.standalone:  # --peering NAME
        await asyncio.to_thread(
            ensure_peering_objects, api_client, settings.peering.name, config.namespaces, logger
        )
        if config.peering_lifetime_seconds is not None:
            # How soon a replica that died is taken over.
            settings.peering.lifetime = config.peering_lifetime_seconds
        # The resync loop acts only while kopf would: this replica leads its peering objects.
        gate = PeeringGate(
            api_client,
            settings.peering.name,
            config.namespaces,
            memo.get("identity") or operator_identity(),
            settings.peering.priority,
        )
    provider = (
        provider_for("prometheus", config.prometheus_url, timeout_s=config.prometheus_timeout_seconds)
        if config.prometheus_url
        else None
    )
    memo.provider = provider
    metrics = OperatorMetrics()
    memo.http = (
        await metrics.serve(config.metrics_port, healthy=lambda: not memo.resync.done())
        if config.metrics_port
        else None
    )
    memo.metrics = metrics
    cache = ChildCache(config.field_manager, scopes=config.namespaces or ("",))
    kube = Kube(api_client, config.field_manager, cache=cache)
    reconciler = Reconciler(
        kube,
        Analyzer(provider, config.scrape_interval_seconds),
        metrics,
        monitoring=Monitoring(config.scrape_interval_seconds) if config.pod_monitors else None,
        prometheus_url=config.prometheus_url,
        network=NetworkPolicies(
            config.network_policies,
            config.network_policy_prometheus_namespace or None,
            config.operator_namespace or None,
        ),
        leading=gate.leading if gate is not None else None,
        prices=config.prices,
        evaluation_url=lambda service, namespace: config.evaluation_url_template.format(
            service=service, namespace=namespace
        ),
    )
    memo.reconciler = reconciler
    loop = asyncio.get_running_loop()

    def on_child_change(model: ModelKey, kind: ChildKind, beyond_status: bool) -> None:
        """(In an informer's thread.) A child was added, changed or went: reconcile its model soon,
        instead of at the next resync. A changed status matters only where the model reports it."""
        if beyond_status or kind.watched:
            loop.call_soon_threadsafe(reconciler.request, *model, RECONCILE_LOG)

    # The children's watches, one per kind the registries declare and the cluster serves; the operator
    # acts once each has listed (a restart rebuilds the cache before it acts).
    informers = Informers(informer_client(api_client), cache, on_child_change)
    memo.informers = informers
    await asyncio.to_thread(informers.ensure, kube.served_child_kinds())
    if not await asyncio.to_thread(informers.wait_synced, INFORMER_SYNC_TIMEOUT_S):
        logger.warning("not every child kind listed yet: those are read by LIST until they are")
    memo.resync = asyncio.create_task(
        reconciler.resync_forever(
            config.namespaces,
            config.resync_seconds,
            logging.getLogger("nlpmodel.resync"),
            settled_every_s=config.settled_resync_seconds,
            on_round=lambda: informers.ensure(kube.served_child_kinds()),  # a CRD installed later
        )
    )


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    task: asyncio.Task[None] = memo.resync
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    memo.informers.stop()
    reconciler: Reconciler = memo.reconciler
    await reconciler.close()
    if memo.provider is not None:
        await memo.provider.close()
    if memo.http is not None:
        await memo.http.cleanup()


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
async def on_model_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Any change of a model (and the initial listing on start) converges it; deletion is left to GC.

    Watching handlers keep no state on the object (no finalizer, no annotations), and every call
    converges on the same desired state whatever the event was.
    """
    reconciler: Reconciler = memo.reconciler
    if event["type"] == "DELETED":
        metrics: OperatorMetrics = memo.metrics
        metrics.forget(body["metadata"]["namespace"], body["metadata"]["name"])
        reconciler.forget(body["metadata"]["namespace"], body["metadata"]["name"])
        return
    reconciler.remember(event["object"])
    if body.get("metadata", {}).get("deletionTimestamp"):
        return
    if reconciler.seen(body):
        return  # the echo of our own status write: nothing the operator has not decided on
    await reconciler.reconcile(body, logger, event=True)
