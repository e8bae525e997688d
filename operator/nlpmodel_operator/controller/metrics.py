"""The operator's own metrics (prometheus-client), derived from what each reconcile changed in status.

Counting from status transitions rather than from code paths keeps them true to what users see: a
rollout outcome is counted when a history entry appears, a check when `analysis.lastCheckAt` moves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, get_args

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from nlpmodel_operator.api.constants import Phase, Reason
from nlpmodel_operator.api.status import CheckVerdict, Outcome

# Every label value a per-model counter can take, created at 0 when a model is first seen: alerts use
# increase(), which cannot see the first increment of a series that starts at 1.
OUTCOMES: Final = get_args(Outcome)
VERDICTS: Final = get_args(CheckVerdict)
# The evaluation gate's verdicts that are counted (pending is a request, not a verdict).
EVALUATION_VERDICTS: Final = ("pass", "fail", "inconclusive", "error")
ROLLBACK_REASONS: Final = (
    Reason.ANALYSIS_FAILED,
    Reason.ANALYSIS_UNAVAILABLE,
    Reason.COST_REGRESSION,
    Reason.PROGRESS_DEADLINE_EXCEEDED,
    Reason.ABORTED,
    Reason.EVALUATION_FAILED,
    Reason.EVALUATION_UNAVAILABLE,
)
STABLE: Final = "stable"
CANARY: Final = "canary"
# status.cost.revisions[] field -> (gauge name, help): a revision's token economics (issue 19).
REVISION_COST_GAUGES: Final = {
    "tokensPerSecond": (
        "nlpmodel_revision_tokens_per_second",
        "Served tokens (prompt + generated) per second.",
    ),
    "promptTokensPerRequest": (
        "nlpmodel_revision_prompt_tokens_per_request",
        "Mean prompt tokens per request.",
    ),
    "generationTokensPerRequest": (
        "nlpmodel_revision_generation_tokens_per_request",
        "Mean generated tokens per request.",
    ),
    "prefixCacheHitRatio": (
        "nlpmodel_revision_prefix_cache_hit_ratio",
        "Share of prompt tokens served from the prefix cache.",
    ),
    "costPerMillionTokens": (
        "nlpmodel_revision_cost_per_million_tokens",
        "Accounting cost per million served tokens over the last analysis window (configured prices).",
    ),
    "costPerRequest": (
        "nlpmodel_revision_cost_per_request",
        "Accounting cost per successful request over the last analysis window (configured prices).",
    ),
}


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconcile_seconds = Histogram(
            "nlpmodel_reconcile_duration_seconds",
            "Time of one reconcile of one NLPModel.",
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.reconcile_errors = Counter(
            "nlpmodel_reconcile_errors_total",
            "Reconciles that failed (and were retried later).",
            ["reason"],
            registry=r,
        )
        self.rollouts = Counter(
            "nlpmodel_rollouts_total",
            "Finished rollouts by outcome.",
            ["namespace", "model", "outcome"],
            registry=r,
        )
        self.rollbacks = Counter(
            "nlpmodel_rollbacks_total",
            "Rollbacks and aborts by reason.",
            ["namespace", "model", "reason"],
            registry=r,
        )
        self.checks = Counter(
            "nlpmodel_analysis_checks_total",
            "Analysis checks by verdict.",
            ["namespace", "model", "verdict"],
            registry=r,
        )
        self.evaluations = Counter(
            "nlpmodel_evaluations_total",
            "Evaluation-gate verdicts on canaries (spec.rollout.evaluation).",
            ["namespace", "model", "verdict"],
            registry=r,
        )
        self.evaluation_score = Gauge(
            "nlpmodel_evaluation_score",
            "Share of evaluation cases passed in the last evaluation, per role (canary or stable).",
            ["namespace", "model", "role"],
            registry=r,
        )
        self.canary_weight = Gauge(
            "nlpmodel_canary_weight_percent",
            "Share of traffic the plan gives the canary.",
            ["namespace", "model"],
            registry=r,
        )
        self.phase = Gauge(
            "nlpmodel_phase",
            "1 for the model's current phase, 0 for the others.",
            ["namespace", "model", "phase"],
            registry=r,
        )
        self.revision = Gauge(
            "nlpmodel_revision_info",
            "1 for each revision a model serves, with its role (stable or canary).",
            ["namespace", "model", "revision", "role"],
            registry=r,
        )
        # From status.spend (core/spend.py), for the NLPModelOverBudget alert; absent when not priced.
        self.cost_per_hour = Gauge(
            "nlpmodel_model_cost_per_hour",
            "What all the model's replicas cost per hour now (pricing currency); absent when not priced.",
            ["namespace", "model"],
            registry=r,
        )
        self.daily_budget = Gauge(
            "nlpmodel_model_daily_budget",
            "The model's budget per 24 h (its daily-budget annotation, else its namespace's).",
            ["namespace", "model"],
            registry=r,
        )
        self.revision_cost = {
            field: Gauge(name, text, ["namespace", "model", "revision"], registry=r)
            for field, (name, text) in REVISION_COST_GAUGES.items()
        }
        self._known: set[tuple[str, str]] = set()
        self._exporting = False  # whether any model's gauges may be set (since the last forget_all)
        self._revisions: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._costed: dict[tuple[str, str], set[tuple[str, str]]] = {}  # (revision, field) with a value

    async def serve(self, port: int, healthy: Callable[[], bool]) -> web.AppRunner:
        """Serve /metrics and /healthz on all interfaces of `port`, in the operator's event loop.

        /healthz answers from the loop itself, so a blocked loop fails the probe; `healthy` adds what
        else must hold (the resync task is alive). Call `cleanup()` on the result to stop serving.
        """

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok\n") if healthy() else web.Response(status=503, text="unhealthy\n")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, port=port).start()
        return runner

    def _first_sight(self, namespace: str, model: str) -> None:
        if (namespace, model) in self._known:
            return
        self._known.add((namespace, model))
        for outcome in OUTCOMES:
            self.rollouts.labels(namespace, model, outcome)
        for reason in ROLLBACK_REASONS:
            self.rollbacks.labels(namespace, model, reason)
        for verdict in VERDICTS:
            self.checks.labels(namespace, model, verdict)
        for verdict in EVALUATION_VERDICTS:
            self.evaluations.labels(namespace, model, verdict)

    def _set_revisions(self, namespace: str, model: str, status: Mapping[str, Any]) -> None:
        current = {
            (str(status[key]), role)
            for key, role in (("stableRevision", STABLE), ("canaryRevision", CANARY))
            if status.get(key)
        }
        for revision, role in self._revisions.pop((namespace, model), set()) - current:
            self.revision.remove(namespace, model, revision, role)
        for revision, role in current:
            self.revision.labels(namespace, model, revision, role).set(1)
        if current:
            self._revisions[(namespace, model)] = current

    def _set_costs(self, namespace: str, model: str, status: Mapping[str, Any]) -> None:
        """One series per revision and measure that status reports; a revision's go with it, an
        unknown measure (no traffic, no price) has no series rather than a 0."""
        current: dict[tuple[str, str], float] = {}
        for entry in (status.get("cost") or {}).get("revisions") or []:
            for field in REVISION_COST_GAUGES:
                value = entry.get(field)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    current[(str(entry.get("revision")), field)] = float(value)
        for revision, field in self._costed.pop((namespace, model), set()) - set(current):
            self.revision_cost[field].remove(namespace, model, revision)
        for (revision, field), value in current.items():
            self.revision_cost[field].labels(namespace, model, revision).set(value)
        if current:
            self._costed[(namespace, model)] = set(current)

    def observe(self, namespace: str, model: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        """Count what changed between the status before and after one reconcile."""
        self._first_sight(namespace, model)
        self._exporting = True
        old_history = list(old.get("history") or [])
        new_history = list(new.get("history") or [])
        # History is bounded: the entries after the last one we had are the new ones.
        known = old_history[-1] if old_history else None
        fresh = new_history[new_history.index(known) + 1 :] if known in new_history else new_history
        for entry in fresh:
            self.rollouts.labels(namespace, model, entry["outcome"]).inc()
        rolled_back = next((c for c in new.get("conditions") or [] if c.get("type") == "RolledBack"), None)
        if (
            fresh
            and rolled_back is not None
            and rolled_back.get("status") == "True"
            and fresh[-1]["outcome"] != "Promoted"
        ):
            self.rollbacks.labels(namespace, model, rolled_back.get("reason", "")).inc()
        old_check = (old.get("analysis") or {}).get("lastCheckAt")
        analysis = new.get("analysis") or {}
        if (
            analysis.get("lastCheckAt")
            and analysis.get("lastCheckAt") != old_check
            and analysis.get("lastChecks")
        ):
            self.checks.labels(namespace, model, analysis["lastChecks"][-1]["verdict"]).inc()
        self._count_evaluation(namespace, model, old.get("evaluation") or {}, new.get("evaluation") or {})
        self.canary_weight.labels(namespace, model).set(new.get("canaryWeight") or 0)
        current = new.get("phase")
        for phase in Phase.ALL:
            self.phase.labels(namespace, model, phase).set(1 if phase == current else 0)
        self._set_revisions(namespace, model, new)
        self._set_spend(namespace, model, new.get("spend") or {})
        self._set_costs(namespace, model, new)

    def _set_spend(self, namespace: str, model: str, spend: Mapping[str, Any]) -> None:
        for gauge, key in ((self.cost_per_hour, "costPerHour"), (self.daily_budget, "dailyBudget")):
            value = spend.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                gauge.labels(namespace, model).set(value)
            else:  # never a guessed 0: no series at all
                try:
                    gauge.remove(namespace, model)
                except KeyError:
                    continue

    def _count_evaluation(
        self, namespace: str, model: str, old: Mapping[str, Any], new: Mapping[str, Any]
    ) -> None:
        """A verdict counts once, when its time (`evaluation.at`) first appears in status."""
        if new.get("at") and new.get("at") != old.get("at") and new.get("verdict") in EVALUATION_VERDICTS:
            self.evaluations.labels(namespace, model, new["verdict"]).inc()
            for role in ("canary", "stable"):
                score = new.get(f"{role}Score")
                if score is not None:
                    self.evaluation_score.labels(namespace, model, role).set(score)

    def forget_all(self) -> None:
        """Drop every model's gauges: another replica acts now, and what this one last exported would
        stand beside that replica's fresh values, stale (and stay after a model is deleted). Counters
        stay: they are read as increases, and each replica counts what it did."""
        if not self._exporting:
            return
        self._exporting = False
        for namespace, model in self._known:
            self.forget(namespace, model)

    def forget(self, namespace: str, model: str) -> None:
        """Drop the per-model gauges of a deleted model."""
        for gauge, extra in ((self.canary_weight, ()), *((self.phase, (p,)) for p in Phase.ALL)):
            try:
                gauge.remove(namespace, model, *extra)
            except KeyError:
                continue
        for role in ("canary", "stable"):
            try:
                self.evaluation_score.remove(namespace, model, role)
            except KeyError:
                continue
        self._set_revisions(namespace, model, {})
        self._set_spend(namespace, model, {})
        self._set_costs(namespace, model, {})
