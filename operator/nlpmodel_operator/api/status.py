"""The NLPModel status: the contract with users, Argo CD and the operator itself after a restart."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from nlpmodel_operator.api.constants import Phase

PhaseName = Literal["Pending", "Progressing", "Ready", "RolledBack", "Failed"]
assert set(PhaseName.__args__) == set(Phase.ALL)  # type: ignore[attr-defined]

ConditionStatus = Literal["True", "False", "Unknown"]
Outcome = Literal["Promoted", "RolledBack", "Aborted"]
# What one analysis check concluded. `inconclusive` (too little traffic) and `error` (no data, the
# metrics provider failing) are kept apart from `fail`: missing evidence is not a verdict.
CheckVerdict = Literal["pass", "fail", "inconclusive", "error"]
# Where a canary rollout is: at a step (waiting for the canary to be ready, or for the step's pause and
# checks), held there by `nlpctl pause`, or being promoted (all steps passed, `nlpctl promote`, or
# strategy direct).
RolloutStage = Literal["Progressing", "Paused", "Promoting"]

INT64: JsonDict = {"format": "int64"}


class _Status(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Condition(_Status):
    """A Kubernetes-style condition."""

    type: str = Field(max_length=316, description="Condition type, e.g. Ready, SpecValid, GPUFit.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", max_length=1024, description="CamelCase reason, stable for alerting.")
    message: str = Field(default="", max_length=32768, description="Human-readable details.")
    last_transition_time: str | None = Field(
        default=None, description="When the status last flipped (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, description="Generation the condition was computed from.", json_schema_extra=INT64
    )


class PlanStatus(_Status):
    """GPU plan of the current serving template (see `nlpctl plan`)."""

    weight_bytes: int = Field(description="Bytes of weights in total.", json_schema_extra=INT64)
    weight_bytes_per_gpu: int = Field(
        alias="weightBytesPerGPU", description="Bytes of weights per GPU.", json_schema_extra=INT64
    )
    kv_bytes_per_token: int = Field(description="KV-cache bytes per token.", json_schema_extra=INT64)
    kv_bytes_per_sequence: int = Field(
        description="KV-cache bytes of one sequence at maxModelLen.", json_schema_extra=INT64
    )
    kv_cache_bytes: int = Field(description="KV-cache bytes available in total.", json_schema_extra=INT64)
    tensor_parallel: int = Field(description="Tensor-parallel size the engine runs with.")
    min_tensor_parallel: int = Field(description="Smallest tensor-parallel size the model fits with.")
    max_concurrent_sequences: int = Field(description="Sequences of maxModelLen tokens the KV cache holds.")
    fits: bool = Field(description="Whether the model fits the requested GPUs.")
    gpu_memory_bytes: int = Field(
        alias="gpuMemoryBytes", description="Memory of one GPU.", json_schema_extra=INT64
    )
    usable_bytes_per_gpu: int = Field(
        alias="usableBytesPerGPU",
        description="Memory per GPU the engine may use after reserves.",
        json_schema_extra=INT64,
    )
    max_model_len: int | None = Field(default=None, description="Effective maxModelLen the plan assumes.")
    architecture: str | None = Field(
        default=None, description="Catalog entry or 'spec' (spec.model.architecture)."
    )
    reasons: list[str] = Field(
        default_factory=list, description="Why the model does not fit, if it does not."
    )


class CheckRecord(_Status):
    """One analysis check (kept bounded in status)."""

    at: str = Field(description="When the check ran (RFC 3339).")
    verdict: CheckVerdict = Field(description="Outcome of the check.")
    summary: str = Field(default="", max_length=4096, description="Values and evidence, one line.")


class ObjectiveEvidence(_Status):
    """Evidence against one objective, accumulated over the checks of the current canary.

    A few sufficient numbers, never raw histories: the sequential judge
    (`core/analysis/sequential.py`) recomputes its always-valid e-process from them after a restart.
    """

    test: str = Field(max_length=64, description="The objective, e.g. 'ttft regression', 'error rate slo'.")
    limit: float = Field(
        description="The SLO, or 1 + maxRegression, it was gathered against (a changed limit starts afresh)."
    )
    checks: int = Field(default=0, description="Checks that added evidence.")
    log_bet: float = Field(
        default=0.0, description="log of the betting part of the e-process (one bet on each check's z-score)."
    )
    recent_z: list[float] = Field(
        default_factory=list, max_length=2, description="The last checks' z-scores (they size the next bet)."
    )
    horizon_z_sum: float = Field(
        default=0.0, description="Sum of the first checks' z-scores (the fixed-horizon part)."
    )
    max_log_e: float = Field(
        default=0.0, description="Largest log e-value so far; always-valid p = exp(-maxLogE)."
    )
    n_canary: float = Field(default=0.0, description="Canary requests judged, all checks together.")
    n_stable: float = Field(default=0.0, description="Stable requests judged, all checks together.")
    k_canary: float = Field(
        default=0.0, description="Canary requests that were bad (errors, or slower than the SLO)."
    )
    k_stable: float = Field(default=0.0, description="Stable requests that were errors.")
    log_ratio: float | None = Field(
        default=None, description="Regressions: request-weighted mean of the checks' log(canary/stable)."
    )


class AnalysisStatus(_Status):
    """Progress of the canary analysis."""

    failed_checks: int = Field(default=0, description="Consecutive failed checks.")
    inconclusive: int = Field(default=0, description="Consecutive inconclusive or errored checks.")
    passed_checks: int = Field(default=0, description="Passed checks in the current step.")
    last_conclusive_at: str | None = Field(default=None, description="Time of the last pass or fail.")
    last_check_at: str | None = Field(
        default=None, description="Time of the last check, whatever its verdict."
    )
    last_checks: list[CheckRecord] = Field(
        default_factory=list, description="Most recent checks, newest last."
    )
    evidence: list[ObjectiveEvidence] = Field(
        default_factory=list,
        max_length=16,
        description="Evidence per objective accumulated across checks (the sequential judge's state).",
    )


# What the evaluation gate concluded: `pending` (asked, no answer yet), `inconclusive` (too many failed
# requests, too few cases) and `error` (the dataset cannot be read) are kept apart from `fail`.
EvaluationVerdictName = Literal["pending", "pass", "fail", "inconclusive", "error"]


class EvaluationStatus(_Status):
    """An evaluation of a canary revision against the stable (scores and case ids only, never answers)."""

    canary_revision: str = Field(description="The revision evaluated.")
    stable_revision: str = Field(description="The revision it was compared with.")
    step: int = Field(default=0, description="The step it gates (0: before any traffic).")
    verdict: EvaluationVerdictName = Field(description="pending, pass, fail, inconclusive or error.")
    message: str = Field(default="", max_length=2000, description="What was found, for people.")
    requested_at: str = Field(
        description="When this gate was first asked for (its deadline counts from here)."
    )
    at: str | None = Field(default=None, description="When the last verdict came (RFC 3339).")
    cases: int = Field(default=0, description="Cases sent to each revision.")
    scored: int = Field(default=0, description="Cases scored on both revisions.")
    canary_score: float | None = Field(default=None, description="The canary's share of passed cases.")
    stable_score: float | None = Field(default=None, description="The stable's share of passed cases.")
    p_value: float | None = Field(default=None, description="The smallest p-value of the gate's tests.")
    failing_cases: list[str] = Field(
        default_factory=list, max_length=5, description="Ids of the worst cases (at most five)."
    )
    canary_failed_requests: int = Field(default=0, description="Canary requests that failed.")
    canary_tokens: int = Field(default=0, description="Tokens the canary spent (prompt and completion).")
    stable_tokens: int = Field(default=0, description="Tokens the stable spent (prompt and completion).")
    canary_prompt_tokens: int = Field(default=0, description="Prompt tokens of the canary's answers.")
    canary_completion_tokens: int = Field(default=0, description="Tokens the canary generated.")
    stable_prompt_tokens: int = Field(default=0, description="Prompt tokens of the stable's answers.")
    stable_completion_tokens: int = Field(default=0, description="Tokens the stable generated.")


def _measure(description: str) -> Any:
    return Field(default=None, ge=0, le=1e15, description=description)


class RevisionCost(_Status):
    """A revision's replica as priced, and what it served and cost in the last analysis window."""

    # Measures are rounded to 4 significant digits; absent means unknown (no traffic, no replicas, no
    # price), never 0.

    revision: str = Field(max_length=64, description="Revision (template hash).")
    gpus_per_replica: int = Field(default=0, ge=0, description="GPUs of one replica (the plan's).")
    gpu_product: str | None = Field(default=None, max_length=64, description="The GPU product priced.")
    replica_hour_cost: float | None = _measure("Price of one replica-hour (configured prices).")
    replicas: int | None = Field(default=None, ge=0, description="Replicas when last measured.")
    measured_at: str | None = Field(default=None, description="End of the window measured (RFC 3339).")
    window_seconds: float | None = _measure("Length of the window measured.")
    tokens_per_second: float | None = _measure("Served tokens (prompt + generated) per second.")
    prompt_tokens_per_request: float | None = _measure("Mean prompt tokens per request.")
    generation_tokens_per_request: float | None = _measure("Mean generated tokens per request.")
    prefix_cache_hit_ratio: float | None = Field(
        default=None, ge=0, le=1, description="Share of prompt tokens served from the prefix cache."
    )
    gpu_hours: float | None = _measure("GPU-hours of the window (replicas x GPUs per replica).")
    cost_per_million_tokens: float | None = _measure(
        "Accounting cost per million served tokens: the replicas' price over the window / tokens."
    )
    cost_per_request: float | None = _measure("Accounting cost per successful request.")


class CostStatus(_Status):
    """Token economics of the stable and the canary revision (issue 19)."""

    currency: str | None = Field(default=None, max_length=16, description="Currency of the prices.")
    revisions: list[RevisionCost] = Field(
        default_factory=list,
        max_length=2,
        description="The stable revision, then the canary (or the revision last rolled back).",
    )


class HistoryEntry(_Status):
    """A finished rollout."""

    revision: str = Field(description="Revision (template hash).")
    outcome: Outcome = Field(description="Promoted, RolledBack or Aborted.")
    reason: str = Field(default="", description="Why (the failing SLO for rollbacks).")
    at: str = Field(description="When (RFC 3339).")


class StoppedRevision(_Status):
    """A revision that left the traffic group and is kept stopped until its retention ends
    (platform kserve-llm: `serving.kserve.io/stop`, then deleted)."""

    revision: str = Field(description="Revision (template hash).")
    stopped_at: str = Field(description="When it was stopped (RFC 3339); it is deleted a retention later.")


class RevisionShape(_Status):
    """What one replica of a revision holds, recorded while the revision was the current template: the
    stable is still priced from it while a canary of another template rolls out."""

    revision: str = Field(description="Revision (template hash).")
    gpu_product: str | None = Field(default=None, description="GPU product of its pods (none: any card).")
    gpus: int = Field(default=0, description="GPUs per replica.")
    cpu: str | None = Field(default=None, max_length=32, description="CPU request per replica.")


class SpendStatus(_Status):
    """What the model's pods cost per hour now and its budget per 24 h (only with prices or a budget
    configured); the operator exports both as gauges for the NLPModelOverBudget alert."""

    currency: str = Field(max_length=16, description="Currency of the cost and the budget.")
    cost_per_hour: float | None = Field(
        default=None, description="Cost per hour of all its revisions' replicas now; unset: not priced."
    )
    detail: str = Field(default="", max_length=1024, description="How the cost was computed, or why not.")
    daily_budget: float | None = Field(default=None, description="Budget per 24 h; unset: none.")
    budget_source: str | None = Field(
        default=None, max_length=128, description="Where the budget comes from (annotation or namespace)."
    )
    revisions: list[RevisionShape] = Field(
        default_factory=list, max_length=4, description="What one replica of each live revision holds."
    )


class NLPModelStatus(_Status):
    """Observed state of an NLPModel."""

    phase: PhaseName | None = Field(
        default=None, description="Pending, Progressing, Ready, RolledBack or Failed."
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation this status reflects.", json_schema_extra=INT64
    )
    stable_revision: str | None = Field(default=None, description="Revision serving the bulk of traffic.")
    canary_revision: str | None = Field(default=None, description="Revision being rolled out, if any.")
    canary_weight: int | None = Field(default=None, description="Canary traffic percentage now.")
    current_step: int | None = Field(default=None, description="Index of the canary step now.")
    step_started_at: str | None = Field(
        default=None, description="When the current step's weight was applied (its pause counts from here)."
    )
    canary_started_at: str | None = Field(default=None, description="When the current canary was created.")
    paused: bool | None = Field(
        default=None, description="Rollout held by `nlpctl pause` until `nlpctl resume`."
    )
    stage: RolloutStage | None = Field(
        default=None,
        description="Stage of the canary rollout in progress (unset while there is none).",
    )
    effective_canary_weight: int | None = Field(
        default=None,
        description="Canary share of traffic the router achieves (replica-ratio: by replica counts).",
    )
    failed_revision: str | None = Field(
        default=None, description="Revision rolled back; not retried until the serving template changes."
    )
    replicas: int | None = Field(
        default=None, description="Replicas of the stable revision (scale subresource)."
    )
    ready_replicas: int | None = Field(default=None, description="Ready replicas of the stable revision.")
    selector: str | None = Field(default=None, description="Label selector of the pods (scale subresource).")
    endpoint: str | None = Field(default=None, description="In-cluster URL of the model.")
    analysis: AnalysisStatus | None = Field(default=None, description="Canary analysis progress.")
    evaluation: EvaluationStatus | None = Field(
        default=None,
        description="The evaluation gate's last verdict on the canary (or the revision promoted).",
    )
    evaluations: list[EvaluationStatus] = Field(
        default_factory=list,
        description=(
            "The last concluded evaluation (pass, fail, inconclusive or error) of each canary revision, "
            "newest last (the oldest dropped beyond eight)."
        ),
    )
    plan: PlanStatus | None = Field(default=None, description="GPU plan of the current serving template.")
    spend: SpendStatus | None = Field(
        default=None, description="Cost per hour and budget (with prices or a budget configured)."
    )
    cost: CostStatus | None = Field(
        default=None, description="Tokens served and their cost per revision (with configured prices)."
    )
    history: list[HistoryEntry] = Field(
        default_factory=list, description="Finished rollouts, newest last (bounded)."
    )
    stopped_revisions: list[StoppedRevision] = Field(
        default_factory=list,
        description="Revisions kept stopped until their retention ends (platform kserve-llm).",
    )
    conditions: list[Condition] = Field(default_factory=list, description="Kubernetes-style conditions.")

    def rollout_stage(self, steps: int) -> RolloutStage | None:
        """The stage of the rollout in progress (None: no canary). A status written before stages were
        stored has none: it is derived from the step (`steps` is how many the spec has) and `paused`."""
        if not self.canary_revision:
            return None
        if self.stage is not None:
            return self.stage
        if (self.current_step or 0) >= steps:
            return "Promoting"
        return "Paused" if self.paused else "Progressing"


_LISTS = ("history", "conditions", "stoppedRevisions", "evaluations")


def to_json(part: BaseModel) -> dict[str, Any]:
    """The JSON form of a status, or of a part of one, as it is written to the cluster: camelCase, and
    only the fields that were given (a status read keeps the fields it had, one the core builds has
    those it set: no defaults are added), an empty history (or list of evaluations) left out."""
    dumped: dict[str, Any] = part.model_dump(
        mode="json", by_alias=True, exclude_unset=True, exclude_none=True
    )
    if isinstance(part, NLPModelStatus):
        for empty in ("history", "stoppedRevisions", "evaluations"):
            if dumped.get(empty) == []:
                del dumped[empty]
    return dumped


def merged(*parts: NLPModelStatus) -> NLPModelStatus:
    """One status of parts built apart (the rollout's fields, the reconcile's report): the fields each
    part set, a later part's over an earlier's."""
    fields: dict[str, Any] = {}
    for part in parts:
        fields.update({name: getattr(part, name) for name in part.model_fields_set})
    return NLPModelStatus(**fields)


def read_status(raw: object) -> NLPModelStatus:
    """The status as read from the cluster, validated once. Never fails: a status written by an older
    (or newer) operator, or edited by hand, keeps what is valid in it; a field that is not valid (or an
    entry of a list) is left out, as if it had never been written."""
    if isinstance(raw, NLPModelStatus):
        return raw
    if not isinstance(raw, Mapping):
        return NLPModelStatus()
    try:
        return NLPModelStatus.model_validate(raw)
    except ValidationError:
        pass
    kept: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _LISTS and isinstance(value, list):
            kept[key] = [entry for entry in value if _valid({key: [entry]})]
        elif _valid({key: value}):
            kept[key] = value
    return NLPModelStatus.model_validate(kept)


def _valid(fields: Mapping[str, Any]) -> bool:
    try:
        NLPModelStatus.model_validate(fields)
    except ValidationError:
        return False
    return True
