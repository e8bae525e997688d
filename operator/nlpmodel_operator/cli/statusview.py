"""What `nlpctl status` shows and when a manual command applies: pure functions of status, spec and now.

Nothing here talks to a cluster; `nlpmodel_operator.cli.control` fetches the object and prints these.
The status fields are the operator's contract (see `nlpmodel_operator.api.status`); every field is
optional here, because a status may be older than this nlpctl or not written yet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from nlpmodel_operator.api.constants import COMMANDS
from nlpmodel_operator.api.spec import Rollout, Serving
from nlpmodel_operator.api.status import RolloutStage, read_status
from nlpmodel_operator.api.units import parse_duration, parse_time
from nlpmodel_operator.core.commands import refusal
from nlpmodel_operator.core.routers import router_for

__all__ = [
    "command_blocker",
    "describe_state",
    "format_status",
    "progress_bar",
    "rollout_steps",
    "routing",
    "time_left",
]

DONE: Final = "✓"
HERE: Final = "←"

# What a command does, for the line nlpctl prints once the request is recorded.
EFFECTS: Final[Mapping[str, str]] = {
    "promote": "promotes the canary to stable, skipping the remaining steps",
    "abort": "rolls the canary back and keeps the stable revision",
    "pause": "holds the canary at its current weight",
    "resume": "continues the paused canary",
    "retry": "rolls out the failed revision again",
}


def _str(status: Mapping[str, Any], key: str) -> str | None:
    value = status.get(key)
    return str(value) if value not in (None, "") else None


def rollout_steps(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """spec.rollout.steps, or the API's defaults when the spec leaves them out."""
    rollout = spec.get("rollout") or {}
    steps = rollout.get("steps")
    if not isinstance(steps, list) or not steps:
        return [step.model_dump() for step in Rollout().steps]
    return [s for s in steps if isinstance(s, dict)]


def format_left(seconds: float) -> str:
    """A countdown: 45s, 3m12s, 1h05m (rounded up: 0.2 s left is 1s, not 0s)."""
    total = max(0, math.ceil(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_ago(then: datetime | None, now: datetime) -> str:
    """How long ago, coarsely: 12s ago, 3m ago, 2h ago, 5d ago ('' when unknown)."""
    if then is None:
        return ""
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _step_index(status: Mapping[str, Any]) -> int | None:
    step = status.get("currentStep")
    return step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None


def time_left(status: Mapping[str, Any], spec: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds left in the current step: pause - (now - stepStartedAt), at least 0; None when unknown.

    Unknown: no canary, no current step, promoting, no or bad stepStartedAt, or a pause that does not
    parse.
    """
    if _stage(status, spec) in (None, "Promoting"):
        return None
    steps = rollout_steps(spec)
    index = _step_index(status)
    started = parse_time(status.get("stepStartedAt"))
    if index is None or index >= len(steps) or started is None:
        return None
    try:
        pause = parse_duration(str(steps[index].get("pause", "0s")))
    except ValueError:
        return None
    return max(0.0, pause - (now - started).total_seconds())


def progress_bar(status: Mapping[str, Any], spec: Mapping[str, Any], now: datetime) -> str:
    """The steps as text: `[10%] ✓  [50%] ← 3m12s left  [100%]` (the last token is the promotion)."""
    steps = rollout_steps(spec)
    index = _step_index(status)
    paused = status.get("paused") is True
    tokens: list[str] = []
    for i, step in enumerate(steps):
        token = f"[{step.get('weight', '?')}%]"
        if index is not None and i < index:
            token += f" {DONE}"
        elif index is not None and i == index:
            if paused:
                token += f" {HERE} paused"
            else:
                left = time_left(status, spec, now)
                token += f" {HERE} " + (f"{format_left(left)} left" if left is not None else "not started")
        tokens.append(token)
    promoting = index is not None and _stage(status, spec) == "Promoting"
    last_weight = steps[-1].get("weight") if steps else None
    if last_weight != 100:
        tokens.append(f"[100%] {HERE} promoting" if promoting else "[100%]")
    elif promoting:
        tokens.append(f"{HERE} promoting")
    return "  ".join(tokens)


def describe_state(status: Mapping[str, Any]) -> str:
    """One parenthesised summary for messages: `phase Ready, stable 1a2b3c4d`."""
    if not status:
        return "no status yet: the operator has not reconciled it"
    parts = [f"phase {_str(status, 'phase') or 'unknown'}"]
    if stable := _str(status, "stableRevision"):
        parts.append(f"stable {stable}")
    if canary := _str(status, "canaryRevision"):
        weight = status.get("canaryWeight")
        parts.append(f"canary {canary}" + (f" at {weight}%" if weight is not None else ""))
    if status.get("paused") is True:
        parts.append("paused")
    if failed := _str(status, "failedRevision"):
        parts.append(f"failed {failed}")
    return ", ".join(parts)


def command_blocker(
    command: str, status: Mapping[str, Any], spec: Mapping[str, Any] | None = None
) -> str | None:
    """Why `command` does not apply to a model with this status now; None when it does (the rule is
    `core.commands.refusal`, the one the operator applies too)."""
    if command not in COMMANDS:
        return f"unknown command {command!r}"
    read = read_status(status)
    refused = refusal(
        command,
        canary=read.canary_revision or None,
        stage=read.rollout_stage(len(rollout_steps(spec or {}))),
        failed=read.failed_revision or None,
    )
    if refused is None:
        return None
    text = f"{refused.why} ({describe_state(status)})"
    return f"{text}; {refused.hint}" if refused.hint else text


def _stage(status: Mapping[str, Any], spec: Mapping[str, Any]) -> RolloutStage | None:
    return read_status(status).rollout_stage(len(rollout_steps(spec)))


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        (
            indent + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1]
        ).rstrip()
        for row in rows
    ]


def describe_serving(spec: Mapping[str, Any], name: str = "") -> str:
    """Where revisions run and how traffic reaches them (the spec's defaults where it is silent)."""
    serving = spec.get("serving") or {}
    platform = serving.get("platform") or "kserve"
    router = serving.get("router") or "gateway-api"
    if platform == "kserve-llm":
        group = f" {name}" if name else ""
        return f"kserve-llm: an LLMInferenceService per revision, weighted in KServe's routing group{group}"
    return f"{platform}, router {router}"


def routing(serving: Any) -> str:
    """The router and platform of a spec's `serving`, and how the router splits traffic."""
    try:
        parsed = Serving.model_validate(serving if isinstance(serving, Mapping) else {})
    except ValidationError:
        return "unknown (spec.serving is invalid)"
    return f"{parsed.router} on {parsed.platform}: {router_for(parsed.router).describe(parsed)}"


def _amount(value: object, currency: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return f"{value:,.2f} {currency}"


def spend_rows(spend: object) -> list[tuple[str, str]]:
    """The model's cost per hour and its daily budget (`status.spend`, written only where the platform
    team configured prices or a budget)."""
    if not isinstance(spend, Mapping):
        return []
    currency = str(spend.get("currency") or "")
    detail = str(spend.get("detail") or "")
    rows = []
    cost = _amount(spend.get("costPerHour"), currency)
    if cost is not None:
        rows.append(("cost / hour", f"{cost} ({detail})" if detail else cost))
    elif detail:
        rows.append(("cost / hour", f"unknown: {detail}"))
    budget = _amount(spend.get("dailyBudget"), currency)
    if budget is not None:
        text = f"{budget} per 24 h ({spend.get('budgetSource') or 'configured'})"
        per_day = _amount((spend.get("costPerHour") or 0) * 24, currency) if cost is not None else None
        if per_day is not None:
            text += f"; at the current cost {per_day} per 24 h"
        rows.append(("budget", text))
    return rows


def describe_evaluation(evaluation: object) -> str | None:
    """One line for the evaluation gate's last verdict: scores, cases, the worst case ids."""
    if not isinstance(evaluation, dict) or not evaluation.get("verdict"):
        return None
    verdict = str(evaluation["verdict"])
    canary, stable = evaluation.get("canaryRevision", "?"), evaluation.get("stableRevision", "?")
    step = evaluation.get("step") or 0
    gate = "before traffic" if step == 0 else f"before step {step + 1}"
    text = f"{verdict} ({canary} vs {stable}, {gate})"
    if verdict == "pending":
        return text + ": running"
    scores = [evaluation.get("canaryScore"), evaluation.get("stableScore")]
    if all(isinstance(x, int | float) for x in scores):
        text += f": canary {scores[0]:.1%} vs stable {scores[1]:.1%} on {evaluation.get('scored', 0)} cases"
    if message := evaluation.get("message"):
        text += f"; {message}"
    return text


def _share(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:.1%}"


def evaluations_table(status: Mapping[str, Any], now: datetime) -> list[str]:
    """status.evaluations as a table, newest first: one line per canary revision with its last verdict,
    both scores on the cases scored on both (N), the smallest p-value and the worst case ids."""
    entries = [e for e in status.get("evaluations") or [] if isinstance(e, dict)]
    if not entries:
        return []
    rows = [
        (
            str(e.get("canaryRevision", "?")),
            str(e.get("verdict", "?")),
            _share(e.get("canaryScore")),
            f"{_share(e.get('stableScore'))} ({e.get('stableRevision', '?')})",
            str(e.get("scored", 0)),
            _number(e.get("pValue"), 2),
            format_ago(parse_time(e.get("at")), now) or "-",
            ", ".join(str(x) for x in e.get("failingCases") or []) or "-",
        )
        for e in reversed(entries)  # the status keeps them newest last
    ]
    header = ("REVISION", "VERDICT", "CANARY", "STABLE", "N", "P", "WHEN", "WORST CASES")
    return ["", "evaluations (newest first)", *_table([header, *rows])]


def _number(value: object, digits: int = 4) -> str:
    """A measure as status holds it; "-" for unknown (no traffic, no replicas, no price)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:.{digits}g}"


_COST_HEADER = (
    "REVISION",
    "REPLICAS x GPUS",
    "TOKENS/S",
    "PROMPT/GEN PER REQ",
    "CACHE HITS",
    "REPLICA-HOUR",
    "PER 1M TOKENS",
    "PER REQUEST",
)


def cost_table(status: Mapping[str, Any]) -> list[str]:
    """status.cost as a table: each revision's tokens and cost over its last analysis window."""
    cost = status.get("cost")
    entries = (
        [e for e in (cost.get("revisions") or []) if isinstance(e, dict)] if isinstance(cost, dict) else []
    )
    if not entries:
        return []
    currency = str(cost.get("currency") or "") if isinstance(cost, dict) else ""
    roles = {
        _str(status, "failedRevision"): "rolled back",
        _str(status, "stableRevision"): "stable",
        _str(status, "canaryRevision"): "canary",
    }
    rows = [
        (
            f"{e.get('revision', '')} ({roles.get(str(e.get('revision')), 'previous')})",
            f"{e.get('replicas', '-') if e.get('replicas') is not None else '-'} x {e.get('gpusPerReplica', 0)}",
            _number(e.get("tokensPerSecond")),
            f"{_number(e.get('promptTokensPerRequest'))}/{_number(e.get('generationTokensPerRequest'))}",
            _number(e.get("prefixCacheHitRatio"), 3),
            _number(e.get("replicaHourCost")),
            _number(e.get("costPerMillionTokens")),
            _number(e.get("costPerRequest")),
        )
        for e in entries
    ]
    unit = f" ({currency})" if currency else " (no prices configured)"
    return [
        "",
        f"tokens and cost, last analysis window{unit}",
        *_table([_COST_HEADER, *rows]),
    ]


def format_status(
    status: Mapping[str, Any],
    spec: Mapping[str, Any],
    now: datetime,
    *,
    name: str = "",
    namespace: str = "",
    pending: str | None = None,
) -> str:
    """The human view of one NLPModel: phase, revisions, steps, time left, conditions, each canary
    revision's last evaluation, history.

    `now` must be timezone-aware; `pending` is the manual command the operator has not consumed yet.
    """
    rows: list[tuple[str, str]] = []
    if name:
        rows.append(("nlpmodel", f"{namespace}/{name}" if namespace else name))
    if not status:
        rows.append(("phase", "unknown (no status yet: the operator has not reconciled it)"))
    else:
        rows.append(("phase", _str(status, "phase") or "unknown"))
    if {"platform", "router"} & set(spec.get("serving") or {}):
        rows.append(("serving", describe_serving(spec, name)))
    rows.append(("stable", _str(status, "stableRevision") or "none"))
    rows.append(("routing", routing(spec.get("serving"))))
    steps = rollout_steps(spec)
    canary = _str(status, "canaryRevision")
    index = _step_index(status)
    if canary:
        weight = status.get("canaryWeight")
        effective = status.get("effectiveCanaryWeight")
        shown = f"{weight if weight is not None else '?'}%"
        if effective is not None and effective != weight:
            shown += f" (effective {effective}%)"
        promoting = _stage(status, spec) == "Promoting"
        where = (
            "promoting"
            if promoting and index is not None
            else f"step {index + 1}/{len(steps)}"
            if index is not None
            else "step unknown"
        )
        if started := format_ago(parse_time(status.get("canaryStartedAt")), now):
            where += f", started {started}"
        rows.append(("canary", f"{canary} at {shown}, {where}"))
        direct = (spec.get("rollout") or {}).get("strategy") == "direct"
        rows.append(("steps", "none (strategy direct)" if direct else progress_bar(status, spec, now)))
        paused = status.get("paused") is True
        left = time_left(status, spec, now)
        if paused:
            rows.append(("time left", "paused (`nlpctl resume` continues, `nlpctl promote` or `abort` ends)"))
        elif promoting and index is not None:
            rows.append(("time left", "none: promoting"))
        elif left is not None and index is not None:
            pause = str(steps[index].get("pause", "0s"))
            rows.append(("time left", f"{format_left(left)} of {pause} in step {index + 1}"))
        elif index is not None and status.get("stepStartedAt") is None:
            rows.append(("time left", "not started: the canary is not ready yet"))
        else:
            rows.append(("time left", "unknown"))
        rows.append(("paused", "yes" if paused else "no"))
    else:
        rows.append(("canary", "none"))
    for stopped in status.get("stoppedRevisions") or []:
        if isinstance(stopped, dict):
            since = format_ago(parse_time(stopped.get("stoppedAt")), now) or "?"
            rows.append(
                ("stopped", f"{stopped.get('revision')} since {since} (deleted when its retention ends)")
            )
    if evaluation := describe_evaluation(status.get("evaluation")):
        rows.append(("evaluation", evaluation))
    if failed := _str(status, "failedRevision"):
        rows.append(("failed", f"{failed} (rolled back; `nlpctl retry` rolls it out again)"))
    if pending:
        rows.append(("pending", f"{pending} (requested; the operator has not acted on it yet)"))
    if endpoint := _str(status, "endpoint"):
        rows.append(("endpoint", endpoint))
    rows += spend_rows(status.get("spend"))
    width = max(len(key) for key, _ in rows)
    lines = [f"{key.ljust(width)}  {value}" for key, value in rows]

    conditions = [x for x in status.get("conditions") or [] if isinstance(x, dict)]
    if conditions:
        lines += ["", "conditions"]
        lines += _table(
            [("TYPE", "STATUS", "REASON", "SINCE", "MESSAGE")]
            + [
                (
                    str(x.get("type", "")),
                    str(x.get("status", "")),
                    str(x.get("reason") or "-"),
                    format_ago(parse_time(x.get("lastTransitionTime")), now) or "-",
                    str(x.get("message") or ""),
                )
                for x in conditions
            ]
        )
    lines += cost_table(status)
    lines += evaluations_table(status, now)
    history = [x for x in status.get("history") or [] if isinstance(x, dict)]
    if history:
        lines += ["", "history (newest first)"]
        lines += _table(
            [("REVISION", "OUTCOME", "WHEN", "REASON")]
            + [
                (
                    str(x.get("revision", "")),
                    str(x.get("outcome", "")),
                    format_ago(parse_time(x.get("at")), now) or str(x.get("at", "")),
                    str(x.get("reason") or ""),
                )
                for x in reversed(history)  # the status keeps them newest last
            ]
        )
    return "\n".join(lines) + "\n"
