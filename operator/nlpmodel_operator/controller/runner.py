"""The reconcile shell: gather the observation, call the pure core, apply the decision, write status."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from nlpmodel_operator.api.constants import ANNOTATION_COMMAND, ANNOTATION_DAILY_BUDGET, ConditionType, Reason
from nlpmodel_operator.api.status import read_status, to_json
from nlpmodel_operator.api.units import format_time
from nlpmodel_operator.controller.analysis import Analyzer
from nlpmodel_operator.controller.evaluation import Evaluator, cluster_url
from nlpmodel_operator.controller.informer import LatestModels
from nlpmodel_operator.controller.kube import Kube, MissingAPIError, api_message
from nlpmodel_operator.controller.metrics import OperatorMetrics
from nlpmodel_operator.controller.workqueue import WorkQueue
from nlpmodel_operator.core.conditions import set_condition
from nlpmodel_operator.core.networkpolicy import NetworkPolicies
from nlpmodel_operator.core.observe import other_children, revision_states
from nlpmodel_operator.core.pricing import Prices
from nlpmodel_operator.core.reconcile import (
    Decision,
    Monitoring,
    Observation,
    check_request_for,
    decide,
    evaluation_request_for,
)
from nlpmodel_operator.core.records import Action, Apply, ClearCommand, Delete, Event, HandOver, Patch
from nlpmodel_operator.core.resync import in_flight, model_fingerprint, settled

Logger = logging.Logger | logging.LoggerAdapter[Any]
LEADING_TTL_S = 2.0
log = logging.getLogger(__name__)
TRACE = logging.getLogger("nlpmodel.reconcile.trace")  # one line per reconcile (at debug level)


def utc_now() -> str:
    return format_time(datetime.now(UTC))


def _api_error(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status}: {api_message(exc)}"
    return str(exc)


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any] | None:
    """A JSON merge patch (RFC 7386) turning `old` into `new`, or None if they are equal.

    Merge patches merge nested objects, so a key that disappears at any depth must be sent as null;
    lists and scalars are replaced whole."""
    if dict(old) == dict(new):
        return None
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if before == value:
            continue
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            patch[key] = status_patch(before, value)
        else:
            patch[key] = value
    return patch


# More models than this changed unseen since the last round (an operator just started): one full
# listing rather than a GET each.
FULL_LISTING_ABOVE: Final = 50


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        analyzer: Analyzer | None = None,
        metrics: OperatorMetrics | None = None,
        now: Callable[[], str] = utc_now,
        monitoring: Monitoring | None = None,
        prometheus_url: str | None = None,
        leading: Callable[[], bool] | None = None,
        network: NetworkPolicies | None = None,
        prices: Prices | None = None,
        evaluation_url: Callable[[str, str], str] = cluster_url,
    ) -> None:
        self.kube = kube
        # With several replicas (kopf peering): whether this one is the one that acts (None: always).
        self.leading = leading
        self.monitoring = monitoring  # PodMonitor settings, used where the cluster serves the kind
        self.prometheus_url = prometheus_url  # for KEDA triggers
        self.network = network or NetworkPolicies()  # the cluster's NetworkPolicy defaults
        self.prices = prices or Prices()  # GPU/CPU-hour prices and namespace budgets (core.spend)
        self.analyzer = analyzer or Analyzer(None)
        # Evaluations run in tasks of their own; the model's next reconcile takes the verdict.
        self.evaluator = Evaluator(
            kube.read_config_map, lambda namespace, name: self.request(namespace, name, log), evaluation_url
        )
        self.metrics = metrics or OperatorMetrics()
        self.now = now
        self.queue = WorkQueue()
        self.models = LatestModels()  # each model as last seen: a reconcile reads it, not a GET
        self._leads_at, self._leads = -1e9, False  # the last answer of `leading`, and when it came
        # Whether each model was at rest, by the resourceVersion it was judged at: a resync round over
        # 1,000 unchanged models must not validate 1,000 statuses again (most of the CPU at rest).
        self._at_rest: dict[tuple[str, str], tuple[str, bool]] = {}

    def seen(self, body: Mapping[str, Any]) -> bool:
        """Whether a model's watch event carries exactly the state its last reconcile left."""
        meta = body.get("metadata") or {}
        return self.queue.is_echo((meta.get("namespace", ""), meta.get("name", "")), model_fingerprint(body))

    def request(self, namespace: str, name: str, logger: Logger, delay_s: float = 0.2) -> None:
        """Reconcile a model soon because something it reads changed (a child's state). Requests
        coalesce, and one is dropped if a reconcile started after it (that one saw the change)."""

        async def answer(asked_at: float) -> None:
            if not await self._leading_now():
                return  # another replica acts (its own watches see the same change)
            try:
                await self.reconcile({"metadata": {"namespace": namespace, "name": name}}, logger, asked_at)
            except Exception:
                logger.exception("reconcile of %s/%s on a child's change failed", namespace, name)

        self.queue.request((namespace, name), delay_s, answer)

    async def _leading_now(self) -> bool:
        """Whether this replica acts (always, without peering); asked of the peering objects at most
        every `LEADING_TTL_S`, not once per child event."""
        if self.leading is None:
            return True
        if time.monotonic() - self._leads_at > LEADING_TTL_S:
            self._leads = await asyncio.to_thread(self.leading)
            self._leads_at = time.monotonic()
            if not self._leads:
                self.metrics.forget_all()
        return self._leads

    def remember(self, body: Mapping[str, Any]) -> None:
        """A model as a watch event or a listing shows it (kept where it is the newest seen)."""
        self.models.remember(body)

    def forget(self, namespace: str, name: str) -> None:
        """Drop what is kept per model once it is deleted."""
        self.queue.forget((namespace, name))
        self.models.forget(namespace, name)
        self._at_rest.pop((namespace, name), None)

    def _settled(self, body: Mapping[str, Any]) -> bool:
        meta = body["metadata"]
        key, version = (meta.get("namespace", ""), meta["name"]), str(meta.get("resourceVersion"))
        known = self._at_rest.get(key)
        if known is not None and known[0] == version:
            return known[1]
        result = settled(body)
        self._at_rest[key] = (version, result)
        return result

    async def close(self) -> None:
        """Cancel the queued requests (on shutdown)."""
        await self.queue.close()

    async def reconcile(
        self,
        body: Mapping[str, Any],
        logger: Logger,
        asked_at: float | None = None,
        fresh: bool = False,
        event: bool = False,
    ) -> None:
        """Converge one model. `body` may be stale (a watch event, a listing) or only name it. `fresh`:
        read its children from the API server rather than from the watches' cache. `event`: `body` is
        the model's watch event, skipped if it is the echo of a status write (checked once the model's
        turn comes: the event of a reconcile's own write usually arrives while it is finishing)."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        echo = model_fingerprint(body) if event else None
        async with self.queue.turn(key, asked_at, echo) as due:
            if not due:
                return  # a reconcile that started after the request (or listing) has seen what it was for
            started = time.monotonic()
            TRACE.debug("reconciling %s/%s", *key)
            try:
                left = await self._converge(body, logger, fresh)
            except Exception as exc:
                self.queue.reset(key)  # not converged: the resync visits it, at rest or not
                if not self._deferred(exc, key, logger):
                    raise
            else:
                if left is None:
                    self.queue.reset(key)  # deleted (or replaced by a new object of the same name) since
                    self.evaluator.forget(*key)
                else:
                    self.queue.done(key, left)
            finally:
                self.metrics.reconcile_seconds.observe(time.monotonic() - started)

    async def _converge(self, body: Mapping[str, Any], logger: Logger, fresh: bool = False) -> str | None:
        """Observe, decide, execute; the fingerprint of the model as it was left (None: it is gone)."""
        observed = await asyncio.to_thread(self._observe, body, fresh)
        if observed is None:
            return None
        observation, model = observed
        request = check_request_for(observation)
        if request is not None:
            # Metrics are gathered here, in the event loop; judging them is the core's job.
            check = await self.analyzer.gather(observation.namespace, observation.name, request)
            observation = replace(observation, check=check)
        wanted = evaluation_request_for(observation)
        if wanted is not None:
            outcome = self.evaluator.poll(observation.namespace, observation.name, wanted)
            if outcome is not None:
                observation = replace(observation, evaluation=outcome)
        status = await asyncio.to_thread(self._decide_and_execute, observation, model, logger)
        return model_fingerprint({**model, "status": status})

    def _deferred(self, exc: Exception, key: tuple[str, str], logger: Logger) -> bool:
        """Whether a failure is the cluster's passing trouble, left to the next resync (logged here)."""
        if isinstance(exc, ApiException):
            if exc.status == 404 or "NamespaceTerminating" in (exc.body or ""):
                return True  # the model (or its namespace) is going away: nothing left to do
            # Transient API trouble (restart, throttling, conflict).
            self.metrics.reconcile_errors.labels(f"api-{exc.status}").inc()
            logger.warning("reconcile of %s/%s deferred: %s", *key, _api_error(exc))
            return True
        if isinstance(exc, HTTPError):
            # The API server unreachable (restarting, a connection cut).
            self.metrics.reconcile_errors.labels("api-unreachable").inc()
            logger.warning("reconcile of %s/%s deferred: %s", *key, exc)
            return True
        return False

    async def resync_forever(
        self,
        namespaces: tuple[str, ...],
        every_s: float,
        logger: Logger,
        settled_every_s: float | None = None,
        on_round: Callable[[], None] | None = None,
    ) -> None:
        """Re-reconcile the models periodically: what time alone moves on (pauses, analysis intervals,
        deadlines), and a safety net for a missed event. Models at rest (`core.resync.settled`) only
        every `settled_every_s`. A loop of our own rather than kopf timers, which would put a
        finalizer on every user object and block its deletion while the operator is down.

        A model with a rollout in flight is re-read with its children from the API server, not from
        the watches' cache: traffic moves on what the resync reads, so a watch gone silent (noticed
        only after `informer.WATCH_SECONDS`) never holds a rollout up or moves it on stale state.
        `on_round`: called (in a thread) before a round once per settled period (new child kinds, a CRD
        installed later, are watched from there: a kind the server lacks costs a discovery refresh)."""
        settled_every_s = every_s if settled_every_s is None else max(every_s, settled_every_s)
        prepared_at: float | None = None
        while True:
            await asyncio.sleep(every_s)
            if self.leading is not None and not await asyncio.to_thread(self.leading):
                # Another replica acts; kopf has paused this one's watches likewise. The models'
                # gauges are that replica's to export now.
                self.metrics.forget_all()
                continue
            if on_round is not None and (
                prepared_at is None or time.monotonic() - prepared_at >= settled_every_s
            ):
                prepared_at = time.monotonic()
                try:
                    await asyncio.to_thread(on_round)
                except Exception:
                    logger.exception("resync round's preparation failed")
            listed_at = time.monotonic()
            try:
                listed = await asyncio.to_thread(self.refresh_models, namespaces)
            except (ApiException, HTTPError) as exc:  # the API server restarting, throttling: next round
                logger.warning("listing models for resync failed (retrying): %s", exc)
                continue
            except Exception:
                logger.exception("listing models for resync failed; retrying")
                continue
            for meta in listed:
                if meta.get("deletionTimestamp"):
                    continue
                key = (meta.get("namespace", ""), meta["name"])
                last = self.queue.last_started(key)
                recent = last is not None and time.monotonic() - last < settled_every_s
                if recent and self._at_rest.get(key) == (str(meta.get("resourceVersion")), True):
                    continue  # at rest, unchanged since it was judged so: not even decoded
                body = self.models.get(*key)
                if body is None or (recent and self._settled(body)):
                    continue
                try:
                    # A model reconciled since the listing (an event) is skipped: a round over many
                    # models takes a while, and its listing grows stale meanwhile.
                    await self.reconcile(body, logger, asked_at=listed_at, fresh=in_flight(body))
                except Exception:
                    logger.exception("resync of %s/%s failed", key[0], key[1])

    def refresh_models(self, namespaces: tuple[str, ...]) -> list[dict[str, Any]]:
        """The models' metadata, listed; the bodies of those not held as new as that (an event missed,
        or none yet) read into `self.models`: one by one when few, in one full listing when many."""
        listed = self.kube.list_models(namespaces, metadata_only=True)
        unseen = [meta for meta in listed if not self.models.holds(meta)]
        if len(unseen) > FULL_LISTING_ABOVE:
            for body in self.kube.list_models(namespaces):
                self.models.remember(body)
        else:
            for meta in unseen:
                found = self.kube.get_model(meta.get("namespace", ""), meta["name"])
                if found is not None:
                    self.models.remember(found)
        return listed

    def _observe(
        self, stale: Mapping[str, Any], fresh: bool = False
    ) -> tuple[Observation, dict[str, Any]] | None:
        # The body a watch event or the resync listing carried may be older than our last status
        # write; deciding on it could write an inconsistent mix. The newest seen (events, listings,
        # the answers to our own writes) is what `models` holds; a model not seen yet, a fresh read,
        # or one of another uid (deleted and created again) is read from the API server.
        namespace, name = stale["metadata"]["namespace"], stale["metadata"]["name"]
        body = None if fresh else self.models.get(namespace, name)
        uid = stale["metadata"].get("uid")
        if body is None or uid not in (None, body["metadata"].get("uid")):
            body = self.kube.get_model(namespace, name)
            if body is not None:
                self.models.remember(body)
        if body is None or uid not in (None, body["metadata"]["uid"]):
            return None
        if body["metadata"].get("deletionTimestamp"):
            return None  # being deleted: its children go with it (garbage collection)
        meta = body["metadata"]
        children = self.kube.children(namespace, name, meta["uid"], fresh=fresh)
        observation = Observation(
            name=name,
            namespace=namespace,
            generation=meta.get("generation", 0),
            spec=body.get("spec"),
            status=read_status(body.get("status")),
            revisions=revision_states(children, self.kube.field_manager),
            now=self.now(),
            others=other_children(children),
            command=(meta.get("annotations") or {}).get(ANNOTATION_COMMAND),
            monitoring=self.monitoring if self.monitoring and self.kube.serves_pod_monitors() else None,
            scaling=self.kube.scaling_support(self.prometheus_url),
            network=self.network,
            prices=self.prices,
            daily_budget=(meta.get("annotations") or {}).get(ANNOTATION_DAILY_BUDGET),
        )
        return observation, body

    def _decide_and_execute(
        self, observation: Observation, body: dict[str, Any], logger: Logger
    ) -> Mapping[str, Any]:
        """Decide, act, write status; returns the status as written."""
        namespace, name = observation.namespace, observation.name
        decision = decide(observation)
        written: Mapping[str, Any] = body.get("status") or {}  # as read: the patch is against it
        wanted = to_json(decision.status)
        if decision.journal is not None:
            # This decision consumed what cannot be seen again: a manual command (its annotation is
            # removed by the actions) or an analysis check (metrics of a window that has passed). It is
            # recorded in status before anything acts on it (`core.reconcile.journal`), so that an
            # operator killed, or an API error, in between resumes from the decision instead of making
            # another one (an abort forgotten and its canary brought back, a passed step undone). Every
            # other decision follows from status and the world alone: it acts first and reports after,
            # so that status never runs ahead of the objects.
            recorded = to_json(decision.journal)
            journal = status_patch(written, recorded)
            if journal is not None:
                self.models.remember(self.kube.patch_status(namespace, name, journal))
                # Counted when written: what status shows, /metrics shows (a rollback the journal
                # records is counted even if the actions after it fail or the operator dies).
                self.metrics.observe(namespace, name, written, recorded)
                written = recorded
        if self._execute(decision, body, logger):
            wanted = to_json(decision.status)  # with the failed action in its Ready condition
        patch = status_patch(written, wanted)
        if patch is not None:
            logger.debug("status of %s/%s: %s", namespace, name, patch)
            self.models.remember(self.kube.patch_status(namespace, name, patch))
        self.metrics.observe(namespace, name, written, wanted)
        for event in decision.events:
            try:
                self.kube.post_event(body, event.type, event.reason, event.message, self.now())
            except ApiException as exc:  # an Event is best-effort: never fail a reconcile over it
                logger.warning("could not post event %s: %s", event.reason, _api_error(exc))
        return wanted

    def _execute(self, decision: Decision, body: Mapping[str, Any], logger: Logger) -> bool:
        """Run the actions in their order; stop at the first failure (later steps depend on earlier
        ones: traffic moves before a revision is deleted). The next reconcile picks up from there.
        Whether an action failed (its decision's status and events say which)."""
        namespace = body["metadata"]["namespace"]
        for action in decision.actions:
            try:
                match action:
                    case Apply(obj=obj):
                        self.kube.apply(obj, body)
                    case Patch(ref=ref, body=patch):
                        self.kube.patch(ref, namespace, patch)
                    case HandOver(ref=ref, replicas=replicas):
                        self.kube.hand_over_replicas(ref, namespace, replicas)
                    case Delete(ref=ref):
                        logger.info("deleting %s %s/%s", ref.kind, namespace, ref.name)
                        self.kube.delete(ref, namespace)
                    case ClearCommand(command=command):
                        cleared = self.kube.clear_command(body, command)
                        if cleared is not None:
                            self.models.remember(cleared)
            except (ApiException, MissingAPIError) as exc:
                if isinstance(exc, ApiException) and "NamespaceTerminating" in (exc.body or ""):
                    return False  # the namespace is being deleted: its objects go with it
                message = f"{_describe(action)}: {_api_error(exc)}"
                logger.warning("reconcile action failed: %s", message)
                decision.status.conditions = set_condition(
                    decision.status.conditions,
                    ConditionType.READY,
                    "False",
                    Reason.APPLY_FAILED,
                    message,
                    self.now(),
                    body["metadata"].get("generation"),
                )
                decision.events.append(Event("Warning", Reason.APPLY_FAILED, message))
                return True
        return False


def _describe(action: Action) -> str:
    match action:
        case Apply(obj=obj):
            return f"apply {obj['kind']} {obj['metadata']['name']}"
        case Patch(ref=ref) | Delete(ref=ref) | HandOver(ref=ref):
            return f"{type(action).__name__.lower()} {ref.kind} {ref.name}"
        case ClearCommand(command=command):
            return f"clear command {command}"
    return repr(action)
