"""The NLPModel status: the contract with users, Argo CD and the operator itself after a restart."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from nlpmodel_operator.api.constants import Phase

PhaseName = Literal["Pending", "Progressing", "Ready", "RolledBack", "Failed"]
assert set(PhaseName.__args__) == set(Phase.ALL)  # type: ignore[attr-defined]

ConditionStatus = Literal["True", "False", "Unknown"]
Outcome = Literal["Promoted", "RolledBack", "Aborted"]

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
    verdict: Literal["pass", "fail", "inconclusive", "error"] = Field(description="Outcome of the check.")
    summary: str = Field(default="", max_length=4096, description="Values and evidence, one line.")


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


class HistoryEntry(_Status):
    """A finished rollout."""

    revision: str = Field(description="Revision (template hash).")
    outcome: Outcome = Field(description="Promoted, RolledBack or Aborted.")
    reason: str = Field(default="", description="Why (the failing SLO for rollbacks).")
    at: str = Field(description="When (RFC 3339).")


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
    plan: PlanStatus | None = Field(default=None, description="GPU plan of the current serving template.")
    history: list[HistoryEntry] = Field(
        default_factory=list, description="Finished rollouts, newest last (bounded)."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Kubernetes-style conditions.")
