"""Names of the API, labels, annotations and condition reasons: one place for every string contract."""

from __future__ import annotations

from typing import Final

GROUP: Final = "serving.nlpmodel.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "NLPModel"
PLURAL: Final = "nlpmodels"
SINGULAR: Final = "nlpmodel"
SHORT_NAMES: Final = ("nlpm",)
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

# Labels the operator puts on every child object (and on the pods of a revision).
LABEL_MODEL: Final = f"{GROUP}/model"
LABEL_REVISION: Final = f"{GROUP}/revision"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
MANAGED_BY: Final = "nlpmodel-operator"

# Annotations: our prefix for kopf progress storage and for manual control (nlpctl promote/abort/...).
ANNOTATION_PREFIX: Final = GROUP
ANNOTATION_TEMPLATE_HASH: Final = f"{GROUP}/template-hash"
# Manual rollout control: `nlpctl promote|abort|retry|pause|resume` sets it, the operator acts and clears it.
ANNOTATION_COMMAND: Final = f"{GROUP}/command"
COMMANDS: Final = ("promote", "abort", "retry", "pause", "resume")
# A model's budget per 24 h in the pricing currency ("250"); overrides the chart's pricing.dailyBudgets.
# An annotation, not a spec field: GitOps specs stay the API, and a budget changes no revision.
ANNOTATION_DAILY_BUDGET: Final = f"{GROUP}/daily-budget"

# The node label NVIDIA GPU feature discovery sets; the node selector uses it.
GPU_PRODUCT_NODE_LABEL: Final = "nvidia.com/gpu.product"
GPU_RESOURCE: Final = "nvidia.com/gpu"

# Child names must fit the shortest limit of what we create: a Service name is a DNS-1035 label
# (63 chars) and `<model>-<hash8>` adds 9, so the model name is capped at 54.
REVISION_HASH_LEN: Final = 8
MAX_MODEL_NAME_LEN: Final = 63 - 1 - REVISION_HASH_LEN


class Phase:
    PENDING: Final = "Pending"
    PROGRESSING: Final = "Progressing"
    READY: Final = "Ready"
    ROLLED_BACK: Final = "RolledBack"
    FAILED: Final = "Failed"

    ALL: Final = (PENDING, PROGRESSING, READY, ROLLED_BACK, FAILED)


class ConditionType:
    READY: Final = "Ready"
    SPEC_VALID: Final = "SpecValid"
    GPU_FIT: Final = "GPUFit"
    PROGRESSING: Final = "Progressing"
    CANARY_HEALTHY: Final = "CanaryHealthy"
    ROLLED_BACK: Final = "RolledBack"
    AUTOSCALING: Final = "Autoscaling"
    # Platform kserve-llm: KServe's routing group of the model's LLMInferenceServices (GroupDegraded).
    TRAFFIC_GROUP: Final = "TrafficGroup"
    # Only while the model carries the daily-budget annotation: whether the operator could read it.
    BUDGET_VALID: Final = "BudgetValid"
    # The evaluation gate's last verdict on the canary (spec.rollout.evaluation).
    EVALUATED: Final = "Evaluated"


class Reason:
    """Machine-readable `reason` of conditions and Events (CamelCase, stable: alerts match on them)."""

    VALID: Final = "Valid"
    INVALID_SPEC: Final = "InvalidSpec"
    UNSUPPORTED_BY_ENGINE: Final = "UnsupportedByEngine"
    FITS: Final = "Fits"
    DOES_NOT_FIT: Final = "DoesNotFit"
    UNKNOWN_ARCHITECTURE: Final = "UnknownArchitecture"
    CPU_ONLY: Final = "CPUOnly"
    CHILDREN_READY: Final = "ChildrenReady"
    CHILDREN_NOT_READY: Final = "ChildrenNotReady"
    CHILDREN_MISSING: Final = "ChildrenMissing"
    APPLY_FAILED: Final = "ApplyFailed"
    RECONCILING: Final = "Reconciling"
    CANARY_PROGRESSING: Final = "CanaryProgressing"
    PAUSED: Final = "Paused"
    PROMOTING: Final = "Promoting"
    PROMOTED: Final = "Promoted"
    NO_ROLLOUT: Final = "NoRollout"
    ROLLED_BACK: Final = "RolledBack"
    ABORTED: Final = "Aborted"
    PROGRESS_DEADLINE_EXCEEDED: Final = "ProgressDeadlineExceeded"
    CANARY_REPLACED: Final = "CanaryReplaced"
    ROLLOUT_STARTED: Final = "RolloutStarted"
    STEP_ADVANCED: Final = "StepAdvanced"
    RETRY: Final = "Retry"
    TEMPLATE_REVERTED: Final = "TemplateReverted"
    ANALYSIS_FAILED: Final = "AnalysisFailed"
    ANALYSIS_UNAVAILABLE: Final = "AnalysisUnavailable"
    # The cost SLOs failed (slo.maxCostRegression, costPerMillionTokens, maxPromptTokensRegression).
    COST_REGRESSION: Final = "CostRegression"
    CHECKS_PASSING: Final = "ChecksPassing"
    CHECK_FAILED: Final = "CheckFailed"
    NO_CONCLUSIVE_CHECK: Final = "NoConclusiveCheck"
    AUTOSCALED: Final = "Autoscaled"
    AUTOSCALER_UNAVAILABLE: Final = "AutoscalerUnavailable"
    FIXED_REPLICAS: Final = "FixedReplicas"
    # Platform kserve-llm: which of KServe's LLMInferenceService conditions holds a revision back, and
    # the state of its routing group.
    WORKLOADS_NOT_READY: Final = "WorkloadsNotReady"
    ROUTER_NOT_READY: Final = "RouterNotReady"
    PRESETS_NOT_COMBINED: Final = "PresetsNotCombined"
    STOPPED: Final = "Stopped"
    GROUP_HEALTHY: Final = "GroupHealthy"
    GROUP_DEGRADED: Final = "GroupDegraded"
    INVALID_BUDGET: Final = "InvalidBudget"
    EVALUATION_PENDING: Final = "EvaluationPending"
    EVALUATION_PASSED: Final = "EvaluationPassed"
    EVALUATION_FAILED: Final = "EvaluationFailed"
    EVALUATION_INCONCLUSIVE: Final = "EvaluationInconclusive"
    EVALUATION_UNAVAILABLE: Final = "EvaluationUnavailable"
    DATASET_INVALID: Final = "DatasetInvalid"
