"""From a typed spec to everything rendering needs: engine checks, architecture, GPU plan, revision.

Pure: the operator, `nlpctl validate/plan/render` and the tests all go through `resolve`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core import catalog, planner
from nlpmodel_operator.core.engines import engine_for
from nlpmodel_operator.core.platforms import platform_of
from nlpmodel_operator.core.problems import Problem
from nlpmodel_operator.core.resolved import Resolved
from nlpmodel_operator.core.revision import revision_hash
from nlpmodel_operator.core.validation import name_problems

DEFAULT_MAX_MODEL_LEN = 8192
# What a spec without gpu.product is planned for: the most common data-centre card.
DEFAULT_PLANNING_GPU = "nvidia-h100-80gb"
# Reasons that make the plan, not the spec, the problem (condition GPUFit rather than SpecValid).
PLAN_REASONS = frozenset({c.Reason.DOES_NOT_FIT})


@dataclass(frozen=True)
class Resolution:
    resolved: Resolved | None
    problems: list[Problem] = field(default_factory=list)
    architecture_source: str | None = None
    plan: planner.Plan | None = None
    planned_gpu: str | None = None
    spec: NLPModelSpec | None = None

    @property
    def spec_problems(self) -> list[Problem]:
        return [p for p in self.problems if p.reason not in PLAN_REASONS]

    @property
    def plan_problems(self) -> list[Problem]:
        return [p for p in self.problems if p.reason in PLAN_REASONS]


def architecture_of(spec: NLPModelSpec) -> tuple[str | None, catalog.Architecture | None]:
    given = spec.model.architecture
    if given is not None:
        return "spec", catalog.Architecture(
            params=given.params,
            layers=given.layers,
            hidden_size=given.hidden_size,
            num_heads=given.num_heads,
            num_kv_heads=given.num_kv_heads,
            head_dim=given.head_dim,
            vocab_size=given.vocab_size,
            intermediate_size=given.intermediate_size,
            tie_word_embeddings=given.tie_word_embeddings,
            num_experts=given.num_experts,
            kind=given.kind,
            max_position_embeddings=given.max_position_embeddings,
        )
    entry = catalog.lookup(spec.model.uri)
    if entry is None:
        return None, None
    return entry.key, entry.architecture


def effective_max_model_len(spec: NLPModelSpec, arch: catalog.Architecture | None) -> int:
    if spec.runtime.max_model_len is not None:
        return spec.runtime.max_model_len
    trained = arch.max_position_embeddings if arch is not None else None
    return min(trained or DEFAULT_MAX_MODEL_LEN, DEFAULT_MAX_MODEL_LEN)


def plan_for(
    spec: NLPModelSpec, arch: catalog.Architecture, max_model_len: int
) -> tuple[planner.Plan, str | None]:
    gpu = spec.resources.gpu
    product = (gpu.product or DEFAULT_PLANNING_GPU) if gpu.count > 0 else None
    request = planner.PlanRequest(
        architecture=arch,
        quantization=spec.quantization.method,
        kv_cache_dtype=spec.quantization.kv_cache_dtype,
        gpu_product=product,
        gpu_count=gpu.count,
        gpu_memory_utilization=spec.runtime.gpu_memory_utilization,
        max_model_len=max_model_len,
        group_size=spec.quantization.group_size,
        double_quant=spec.quantization.double_quant,
        useful_sequences=useful_sequences(spec),
    )
    return planner.plan(request), product


def useful_sequences(spec: NLPModelSpec) -> int:
    """The concurrency the planner's advice must reach: the running requests per replica the spec
    autoscales on (metric concurrency, an explicit target), else the documented minimum."""
    scaling = spec.scaling
    if scaling.metric == "concurrency" and scaling.target is not None:
        return scaling.target
    return planner.MIN_USEFUL_SEQUENCES


def _spec_consistency(spec: NLPModelSpec, arch: catalog.Architecture | None) -> list[Problem]:
    problems = []
    if spec.quantization.double_quant and spec.quantization.method != "bitsandbytes-nf4":
        problems.append(Problem("spec.quantization.doubleQuant", "applies to bitsandbytes-nf4 only"))
    if not spec.rollout.gpu_surge and spec.rollout.strategy == "canary" and spec.scaling.base_replicas < 2:
        problems.append(
            Problem(
                "spec.rollout.gpuSurge",
                "gpuSurge: false moves replicas from the stable to the canary, so the model needs at least 2 "
                "replicas (scaling.minReplicas or scaling.replicas); use gpuSurge: true or strategy: direct",
            )
        )
    if arch is not None and arch.kind == "encoder" and spec.task == "generate":
        problems.append(
            Problem("spec.task", "the model is an encoder (no generation): use embed, classify or rerank")
        )
    return problems


def resolve(name: str, namespace: str, spec: NLPModelSpec) -> Resolution:
    engine = engine_for(spec.runtime.engine)
    source, arch = architecture_of(spec)
    problems = [
        *name_problems(name),
        *engine.problems(spec),
        *platform_of(spec.serving).problems(spec),
        *_spec_consistency(spec, arch),
    ]
    max_model_len = effective_max_model_len(spec, arch)
    plan: planner.Plan | None = None
    product: str | None = None
    if arch is not None:
        plan, product = plan_for(spec, arch, max_model_len)
        if not plan.fits:
            problems.extend(
                Problem("spec.resources.gpu", reason, c.Reason.DOES_NOT_FIT) for reason in plan.reasons
            )
    if problems:
        return Resolution(None, problems, source, plan, product, spec)
    resolved = Resolved(
        name=name,
        namespace=namespace,
        spec=spec,
        revision=revision_hash(spec),
        served_name=spec.model.served_name or name,
        max_model_len=max_model_len,
        architecture_source=source,
        plan=plan,
        planned_gpu=product,
    )
    return Resolution(resolved, [], source, plan, product, spec)
