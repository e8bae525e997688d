"""What `make demo` shows: pure functions from two NLPModel snapshots to event lines and a live panel.

Nothing here talks to a cluster or a terminal; `nlpmodel_harness.demo` polls the model and
Prometheus and prints these. A *snapshot* is the model's status and spec plus the time to first token
(p95) that Prometheus measured for each revision, so the view can show stable vs canary side by side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from nlpmodel_operator.cli.statusview import progress_bar

__all__ = [
    "Snapshot",
    "evaluation_line",
    "events",
    "panel",
    "seconds",
    "summary_table",
    "ttft_pair",
    "verdict_marks",
    "weight_bar",
]

MARKS: Final[Mapping[str, str]] = {"pass": "✓", "fail": "✗", "inconclusive": "?", "error": "!"}
BAR_WIDTH: Final = 20


@dataclass(frozen=True)
class Snapshot:
    """One poll: the model's status and spec, and the TTFT p95 (seconds) per revision, where measured."""

    elapsed_s: float
    status: Mapping[str, Any]
    spec: Mapping[str, Any]
    ttft_p95: Mapping[str, float] = field(default_factory=dict)


def _checks(status: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    analysis = status.get("analysis") or {}
    return [
        (str(x.get("at", "")), str(x.get("verdict", "")), str(x.get("summary") or ""))
        for x in analysis.get("lastChecks") or []
        if isinstance(x, dict)
    ]


def _history(status: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    return [
        (
            str(x.get("revision", "")),
            str(x.get("outcome", "")),
            str(x.get("reason") or ""),
            str(x.get("at", "")),
        )
        for x in status.get("history") or []
        if isinstance(x, dict)
    ]


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    found = next(
        (x for x in status.get("conditions") or [] if isinstance(x, dict) and x.get("type") == kind), None
    )
    return found or {}


def _percent(value: object) -> str:
    return f"{value * 100:.0f}%" if isinstance(value, int | float) else "n/a"


def evaluation_line(evaluation: Mapping[str, Any]) -> str:
    """'evaluation FAIL  canary bbbb2222 72% vs stable 100% on 40 cases (p=0.0011); failing: a, b'."""
    verdict = str(evaluation.get("verdict", ""))
    canary = evaluation.get("canaryRevision", "")
    if verdict == "pending":
        return (
            f"evaluation PENDING canary {canary}: the dataset goes to the stable's and the canary's own "
            "Services (no traffic meanwhile)"
        )
    line = (
        f"evaluation {verdict.upper():<7} canary {canary} {_percent(evaluation.get('canaryScore'))} vs stable "
        f"{_percent(evaluation.get('stableScore'))} on {evaluation.get('scored', 0)} cases"
    )
    if isinstance(p := evaluation.get("pValue"), int | float):
        line += f" (p={p:.2g})"
    if failing := evaluation.get("failingCases"):
        line += f"; failing: {', '.join(str(x) for x in failing)}"
    elif verdict != "pass" and evaluation.get("message"):
        line += f"\n    {evaluation['message']}"
    return line


def seconds(value: float | None) -> str:
    """0.584 → '0.58s'; unknown → 'n/a'."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.2f}s"


def ttft_pair(snapshot: Snapshot, stable: str | None, canary: str | None) -> str:
    """'ttft p95 stable 0.58s, canary 1.04s (+79%)' for the revisions in question."""
    s = snapshot.ttft_p95.get(stable or "")
    k = snapshot.ttft_p95.get(canary or "")
    text = f"ttft p95 stable {seconds(s)}"
    if canary:
        text += f", canary {seconds(k)}"
        if s and k is not None and math.isfinite(s) and math.isfinite(k) and s > 0:
            text += f" ({(k / s - 1) * 100:+.0f}%)"
    return text


def events(previous: Snapshot | None, current: Snapshot) -> list[str]:
    """What happened between two snapshots, one line each, oldest first.

    A new canary, every new analysis check with its verdict (and the TTFT p95 of both revisions at that
    moment), the weight changes they lead to, the rollback with its reason and message, a promotion,
    phase changes.
    """
    before: Mapping[str, Any] = previous.status if previous is not None else {}
    now = current.status
    lines: list[str] = []
    stable, canary = now.get("stableRevision"), now.get("canaryRevision")
    was_stable, was_canary = before.get("stableRevision"), before.get("canaryRevision")
    if canary and canary != was_canary:
        lines.append(
            f"canary {canary} created beside stable {stable or 'none'} (no traffic until it is ready)"
        )
    evaluation, was_evaluation = now.get("evaluation") or {}, before.get("evaluation") or {}
    key = ("canaryRevision", "verdict", "at", "step")
    if evaluation.get("verdict") and [evaluation.get(k) for k in key] != [was_evaluation.get(k) for k in key]:
        lines.append(evaluation_line(evaluation))
    seen = set(_checks(before))
    failed = int((now.get("analysis") or {}).get("failedChecks") or 0)
    threshold = ((current.spec.get("rollout") or {}).get("analysis") or {}).get("failureThreshold")
    for at, verdict, summary in _checks(now):
        if (at, verdict, summary) in seen:
            continue
        tail = f" [{failed}/{threshold} failed in a row]" if verdict == "fail" and threshold else ""
        lines.append(
            f"check {verdict.upper():<12} {ttft_pair(current, stable, canary or was_canary)}{tail}"
            + (f"\n    {summary}" if summary else "")
        )
    weight, was_weight = now.get("canaryWeight"), before.get("canaryWeight")
    if canary and weight is not None and (weight != was_weight or canary != was_canary):
        step = now.get("currentStep")
        where = f" (step {step + 1})" if isinstance(step, int) else ""
        lines.append(f"canary {canary} weight {weight}%{where}")
    old_history = set(_history(before))
    for revision, outcome, reason, at in _history(now):
        if (revision, outcome, reason, at) in old_history:
            continue
        if outcome == "Promoted":
            lines.append(f"PROMOTED {revision}: it is the stable revision now, with 100% of the traffic")
        else:
            rolled = _condition(now, "RolledBack")
            why = f"{rolled.get('reason')}: {rolled.get('message')}" if rolled.get("reason") else reason
            lines.append(
                f"ROLLED BACK {revision} ({outcome}): traffic back to stable {stable or was_stable}\n"
                f"    reason {why}"
            )
    if stable and was_stable and stable != was_stable and not any("PROMOTED" in x for x in lines):
        lines.append(f"stable revision is now {stable}")
    if now.get("phase") != before.get("phase") and now.get("phase"):
        lines.append(f"phase {before.get('phase') or '-'} -> {now.get('phase')}")
    return lines


def weight_bar(weight: int | None) -> str:
    w = max(0, min(100, weight or 0))
    filled = round(BAR_WIDTH * w / 100)
    return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + f"] {w:>3}%"


def verdict_marks(status: Mapping[str, Any]) -> str:
    """The last checks as marks, oldest first: '! ✗ ✗' (✓ pass, ✗ fail, ? inconclusive, ! error)."""
    return " ".join(MARKS.get(verdict, "·") for _at, verdict, _summary in _checks(status)) or "none yet"


def panel(snapshot: Snapshot, title: str, now: datetime) -> list[str]:
    """The live panel under the event lines (a TTY redraws it in place); an `eval` row while the
    canary has an evaluation."""
    st = snapshot.status
    stable, canary = st.get("stableRevision"), st.get("canaryRevision")
    minutes, secs = divmod(int(snapshot.elapsed_s), 60)
    lines = [
        f"── {title} ── phase {st.get('phase') or 'unknown'} ── {minutes}m{secs:02d}s ──",
        f"  stable  {stable or 'none':<9} ttft p95 {seconds(snapshot.ttft_p95.get(stable or '')):>6}",
    ]
    if canary:
        lines.append(
            f"  canary  {canary:<9} ttft p95 {seconds(snapshot.ttft_p95.get(canary)):>6}   "
            f"weight {weight_bar(st.get('canaryWeight'))}"
        )
        lines.append(f"  steps   {progress_bar(st, snapshot.spec, now)}")
        analysis = st.get("analysis") or {}
        lines.append(
            f"  checks  {verdict_marks(st)}   (failed in a row {analysis.get('failedChecks', 0)}, "
            f"passed this step {analysis.get('passedChecks', 0)})"
        )
        evaluation = st.get("evaluation") or {}
        if evaluation.get("canaryRevision") == canary and evaluation.get("verdict") == "pending":
            lines.append("  eval    pending   the dataset's cases at the stable's and the canary's Services")
        elif evaluation.get("canaryRevision") == canary:
            lines.append(
                f"  eval    {evaluation.get('verdict', '')}   canary {_percent(evaluation.get('canaryScore'))} "
                f"vs stable {_percent(evaluation.get('stableScore'))} on {evaluation.get('scored', 0)} cases"
            )
    else:
        lines.append("  canary  none")
    return lines


def summary_table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
