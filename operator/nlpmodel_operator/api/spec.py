"""The NLPModel spec: typed models that are the one source of truth for the API.

The CRD schema (descriptions, enums, defaults, CEL rules) is generated from these classes by
`nlpmodel_operator.api.crd`. Cross-field rules are declared twice on purpose, once as CEL for the API
server (`x-kubernetes-validations`) and once as a Python validator for `nlpctl validate` and for servers
without CEL; a unit test proves both agree on a table of cases.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from nlpmodel_operator.api.units import DURATION_PATTERN, REGRESSION_PERCENT_PATTERN, SHARE_PERCENT_PATTERN

Task = Literal["generate", "embed", "classify", "rerank"]
Engine = Literal["vllm", "transformers"]
QuantizationMethod = Literal["none", "fp8", "awq", "gptq", "bitsandbytes-nf4", "bitsandbytes-int8", "gguf"]
KVCacheDtype = Literal["auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2"]
GPUProductName = Literal[
    "nvidia-a10g",
    "nvidia-l4",
    "nvidia-l40s",
    "nvidia-a100-40gb",
    "nvidia-a100-80gb",
    "nvidia-h100-80gb",
    "nvidia-h200-141gb",
]
Platform = Literal["kserve", "raw", "kserve-llm"]
RouterName = Literal["gateway-api", "inference-pool", "kserve-canary", "replica-ratio"]
FailureMode = Literal["FailOpen", "FailClose"]
ScaleMetric = Literal["queue-depth", "kv-cache", "concurrency", "cpu"]
Strategy = Literal["canary", "direct"]
ArchitectureKind = Literal["decoder", "encoder"]

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
# Percentages are held to their meaningful range by their pattern (see units.percent_range_pattern):
# a share of requests is 0-100 %; a regression allowance 0-1000 % (11 times stable's latency: beyond
# that a check could not fail in practice, so a larger value is a typo, not a policy).
SharePercent = Annotated[str, Field(pattern=SHARE_PERCENT_PATTERN, max_length=16)]
RegressionPercent = Annotated[str, Field(pattern=REGRESSION_PERCENT_PATTERN, max_length=16)]
DNSLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", min_length=1, max_length=63)]
DNSSubdomain = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        min_length=1,
        max_length=253,
    ),
]
HOSTNAME_PATTERN: Final = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$", max_length=32)]


def _cel(*rules: tuple[str, str]) -> dict[str, Any]:
    """`json_schema_extra` carrying CEL rules as (rule, message) pairs."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


class _Model(BaseModel):
    """camelCase on the wire, unknown fields rejected (the server would prune them silently)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=False,
    )


class Architecture(_Model):
    """Model architecture figures used by the GPU planner; override the built-in catalog entry."""

    params: int = Field(
        ge=1, le=10**13, description="Total number of parameters.", json_schema_extra={"format": "int64"}
    )
    layers: int = Field(ge=1, le=1024, description="Number of transformer layers (num_hidden_layers).")
    hidden_size: int = Field(ge=1, le=1 << 20, description="Hidden size (d_model).")
    num_heads: int = Field(ge=1, le=4096, description="Number of attention heads.")
    num_kv_heads: int = Field(
        ge=1,
        le=4096,
        alias="numKVHeads",
        description="Number of key/value heads (equals numHeads without grouped-query attention).",
    )
    head_dim: int = Field(ge=1, le=4096, description="Dimension of one attention head.")
    vocab_size: int = Field(ge=1, le=1 << 24, description="Vocabulary size.")
    intermediate_size: int | None = Field(
        default=None, ge=1, le=1 << 22, description="MLP intermediate size, if known."
    )
    tie_word_embeddings: bool = Field(
        default=False, description="Whether the output head shares the input embedding matrix."
    )
    num_experts: int = Field(
        default=1, ge=1, le=1024, description="Number of MoE experts (1 for dense models)."
    )
    kind: ArchitectureKind = Field(
        default="decoder", description="decoder (generative, has a KV cache) or encoder (BERT-class)."
    )
    max_position_embeddings: int | None = Field(
        default=None, ge=1, le=1 << 24, description="Longest context the model was trained for."
    )

    model_config = ConfigDict(
        json_schema_extra=_cel(("self.numKVHeads <= self.numHeads", "numKVHeads must be <= numHeads"))
    )

    @model_validator(mode="after")
    def _kv_heads_le_heads(self) -> Architecture:
        if self.num_kv_heads > self.num_heads:
            raise ValueError("numKVHeads must be <= numHeads")
        return self


class ModelSource(_Model):
    """Where the weights come from and how the model is exposed."""

    uri: str = Field(
        pattern=r"^(hf|s3|gs|pvc)://[^\s]+$",
        max_length=1024,
        description=(
            "Location of the weights: hf://ORG/NAME (Hugging Face Hub), s3://BUCKET/PATH, "
            "gs://BUCKET/PATH or pvc://CLAIM/PATH."
        ),
    )
    revision: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[A-Za-z0-9._/-]+$",
        description="Pinned source revision (commit hash or tag) of the weights.",
    )
    served_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=r"^[A-Za-z0-9._/-]+$",
        description="Model name clients send in requests; defaults to the NLPModel's name.",
    )
    credentials_secret: DNSSubdomain | None = Field(
        default=None,
        description=(
            "Name of a Secret in the model's namespace holding download credentials (HF_TOKEN for "
            "hf://, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for s3://, GOOGLE_APPLICATION_CREDENTIALS_JSON"
            " for gs://). Passed to the pod by secretKeyRef; the operator never reads Secrets."
        ),
    )
    architecture: Architecture | None = Field(
        default=None,
        description="Architecture figures; overrides the built-in catalog entry matched from the uri.",
    )


class Runtime(_Model):
    """The inference engine and its settings."""

    engine: Engine = Field(
        default="vllm",
        description=(
            "vllm, or transformers (our KServe runtime, for bitsandbytes quantization and CPU "
            "embedding/classification)."
        ),
    )
    version: str = Field(
        default="0.33.0",
        pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$",
        max_length=32,
        description="Engine version: selects the flag table used to check args and the default image.",
    )
    image: str | None = Field(
        default=None, max_length=512, description="Container image override (default: by engine and version)."
    )
    max_model_len: int | None = Field(
        default=None,
        ge=16,
        le=1 << 24,
        description=(
            "Longest sequence (prompt + output) in tokens; sizes the KV cache. Default: the model's "
            "trained context, capped at 8192."
        ),
    )
    gpu_memory_utilization: float = Field(
        default=0.9,
        ge=0.05,
        le=0.99,
        description="Fraction of each GPU's memory the engine may use (weights + KV cache + activations).",
    )
    args: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=64,
        description="Extra engine flags (e.g. --enable-prefix-caching); checked against the engine version.",
    )


class Quantization(_Model):
    """Weight and KV-cache quantization."""

    method: QuantizationMethod = Field(
        default="none",
        description=(
            "Weight quantization of the checkpoint: none (16-bit), fp8, awq, gptq (4-bit), "
            "bitsandbytes-nf4 / bitsandbytes-int8 (engine transformers), gguf (older vLLM only)."
        ),
    )
    kv_cache_dtype: KVCacheDtype = Field(
        default="auto", description="KV-cache data type; auto follows the model dtype (16-bit)."
    )
    group_size: int = Field(
        default=128,
        ge=-1,
        le=4096,
        description="Quantization group size of awq/gptq checkpoints (-1: per channel).",
    )
    double_quant: bool = Field(
        default=False, description="bitsandbytes-nf4 only: quantize the quantization constants too."
    )


class GPU(_Model):
    """GPUs per replica."""

    count: int = Field(
        default=1, ge=0, le=16, description="GPUs per replica (nvidia.com/gpu); 0 runs on CPU."
    )
    product: GPUProductName | None = Field(
        default=None,
        description=(
            "GPU product: sizes the plan and selects nodes by the nvidia.com/gpu.product label. "
            "Default: no node selector, planned as nvidia-h100-80gb."
        ),
    )

    model_config = ConfigDict(
        json_schema_extra=_cel(("self.count > 0 || !has(self.product)", "product requires count > 0"))
    )

    @model_validator(mode="after")
    def _product_needs_gpus(self) -> GPU:
        if self.count == 0 and self.product is not None:
            raise ValueError("product requires count > 0")
        return self


class Resources(_Model):
    """Compute resources of one replica."""

    gpu: GPU = Field(default_factory=GPU, description="GPUs per replica.", json_schema_extra={"default": {}})
    cpu: Quantity | None = Field(default=None, description="CPU request, e.g. '4' or '500m'.")
    memory: Quantity | None = Field(default=None, description="Memory request and limit, e.g. '32Gi'.")


class GatewayRef(_Model):
    """The Gateway an HTTPRoute attaches to (router gateway-api)."""

    name: DNSSubdomain = Field(description="Gateway name.")
    namespace: DNSLabel | None = Field(default=None, description="Gateway namespace (default: the model's).")
    section_name: DNSSubdomain | None = Field(default=None, description="Listener name on the Gateway.")


LabelMap = Annotated[dict[str, Annotated[str, Field(max_length=63)]], Field(max_length=16)]
NETWORK_POLICY_ON_KNATIVE_MESSAGE: Final = (
    "serving.networkPolicy is not rendered for router kserve-canary: Knative's activator and queue-proxy "
    "reach the pods on their own ports; leave networkPolicy.enabled unset or false"
)


class NetworkPeer(_Model):
    """Clients allowed to reach the model's pods: a namespace, pods by labels, or pods by labels in a
    namespace."""

    namespace: DNSLabel | None = Field(
        default=None,
        description=(
            "Namespace of the clients, by name (its kubernetes.io/metadata.name label, Kubernetes >= 1.21); "
            "default: the model's namespace."
        ),
    )
    pod_labels: LabelMap | None = Field(
        default=None, description="Labels the client pods carry; default: every pod of the namespace."
    )

    model_config = ConfigDict(
        json_schema_extra=_cel(
            ("has(self.__namespace__) || has(self.podLabels)", "a client needs namespace, podLabels or both")
        )
    )

    @model_validator(mode="after")
    def _something(self) -> NetworkPeer:
        if self.namespace is None and self.pod_labels is None:
            raise ValueError("a client needs namespace, podLabels or both")
        return self


class NetworkPolicySpec(_Model):
    """Who may reach the model's pods: an optional NetworkPolicy per model (ingress to the serving
    port, which is also the metrics port)."""

    enabled: bool | None = Field(
        default=None,
        description=(
            "Render a NetworkPolicy for the model's pods; default: the cluster's (the chart value "
            "operator.modelNetworkPolicy.enabled, off unless the platform team turns it on)."
        ),
    )
    clients: list[NetworkPeer] = Field(
        default_factory=list,
        max_length=16,
        description=(
            "Who may send requests. Default: every pod in the model's namespace (its Service's clients) "
            "and, with router gateway-api or inference-pool, the Gateway's namespace. The Prometheus the operator is "
            "configured with is always allowed to scrape; the operator itself never calls the pods."
        ),
    )


LLMScheduler = Literal["managed", "none"]
KSERVE_LLM_ROUTER_MESSAGE: Final = (
    "spec.serving.router: platform kserve-llm splits traffic itself (each revision's "
    "LLMInferenceService carries router.route group and weight): use router gateway-api, "
    "KServe's managed HTTPRoute; replica-ratio and kserve-canary cannot be expressed"
)


class LLMInferenceServiceRouting(_Model):
    """How KServe routes to each revision's LLMInferenceService (platform kserve-llm)."""

    scheduler: LLMScheduler = Field(
        default="managed",
        description=(
            "managed: KServe runs an endpoint picker and an InferencePool per revision (router.scheduler); "
            "none: the group's backend is each revision's workload Service."
        ),
    )
    inference_pool: DNSSubdomain | None = Field(
        default=None,
        description="An existing InferencePool to use instead of KServe's managed one (scheduler.pool.ref).",
    )


class EndpointPickerRef(_Model):
    """The endpoint picker (the inference extension's EPP Service) that chooses a pod of an
    InferencePool per request (router inference-pool)."""

    name: DNSLabel = Field(description="Name of the endpoint picker's Service, in the model's namespace.")
    port: int = Field(ge=1, le=65535, description="The endpoint picker's gRPC port on that Service.")
    failure_mode: FailureMode = Field(
        default="FailClose",
        description=(
            "What the Gateway does when the endpoint picker does not answer: FailClose rejects the "
            "request, FailOpen sends it to a pod of the pool anyway."
        ),
    )


ENDPOINT_PICKER_MESSAGE: Final = "serving.endpointPicker requires router inference-pool"


class Serving(_Model):
    """How revisions are deployed and how traffic reaches them."""

    platform: Platform = Field(
        default="kserve",
        description=(
            "kserve (InferenceService, Standard mode), raw (Deployment + Service) or kserve-llm "
            "(KServe LLMInferenceService v1alpha2, one per revision, weighted in a routing group)."
        ),
    )
    router: RouterName = Field(
        default="gateway-api",
        description=(
            "Traffic split between revisions: gateway-api (HTTPRoute weights across Services), "
            "inference-pool (HTTPRoute weights across one Gateway API Inference Extension InferencePool "
            "per revision), kserve-canary (canaryTrafficPercent, Knative mode) or replica-ratio (replica "
            "counts behind one Service)."
        ),
    )
    gateway: GatewayRef | None = Field(
        default=None, description="Gateway for the HTTPRoute (routers gateway-api and inference-pool)."
    )
    # Gateway API's own Hostname pattern: a hostname the HTTPRoute would reject is caught here, at admission.
    hostnames: list[Annotated[str, Field(max_length=253, pattern=HOSTNAME_PATTERN)]] = Field(
        default_factory=list,
        max_length=16,
        description="Hostnames of the HTTPRoute (routers gateway-api and inference-pool).",
    )
    network_policy: NetworkPolicySpec | None = Field(
        default=None, description="An optional NetworkPolicy restricting who may reach the model's pods."
    )
    llm_inference_service: LLMInferenceServiceRouting | None = Field(
        default=None,
        description="KServe's routing of each revision (platform kserve-llm; default: its managed scheduler).",
    )
    endpoint_picker: EndpointPickerRef | None = Field(
        default=None,
        description=(
            "Endpoint picker of every revision's InferencePool (router inference-pool only); unset, "
            "the Gateway implementation picks pods of the pool itself."
        ),
    )

    model_config = ConfigDict(
        json_schema_extra=_cel(
            ("!has(self.endpointPicker) || self.router == 'inference-pool'", ENDPOINT_PICKER_MESSAGE)
        )
    )

    @model_validator(mode="after")
    def _endpoint_picker(self) -> Serving:
        if self.endpoint_picker is not None and self.router != "inference-pool":
            raise ValueError(ENDPOINT_PICKER_MESSAGE)
        return self


# Per-replica target of each autoscaling metric when `target` is not set.
DEFAULT_SCALE_TARGETS: Final[dict[str, int]] = {
    "queue-depth": 8,
    "kv-cache": 80,
    "concurrency": 32,
    "cpu": 70,
}
SCALE_TO_ZERO_MESSAGE: Final = (
    "minReplicas 0 (scale to zero) needs a Prometheus metric (queue-depth, kv-cache, concurrency): "
    "a cpu HorizontalPodAutoscaler cannot scale to zero"
)
CPU_REQUEST_MESSAGE: Final = (
    "scaling.metric cpu needs resources.cpu: utilization is measured against the request"
)
KV_CACHE_TARGET_MESSAGE: Final = (
    "scaling.target of metric kv-cache is a KV-cache usage percentage: at most 100"
)
KNATIVE_SCALING_MESSAGE: Final = (
    "router kserve-canary runs KServe's Knative mode, which autoscales on concurrency or cpu; "
    "queue-depth and kv-cache need KEDA (router gateway-api or replica-ratio)"
)


class Scaling(_Model):
    """Replicas and autoscaling. Not part of the revision: changing it never restarts pods."""

    min_replicas: int = Field(default=1, ge=0, le=1000, description="Fewest replicas (0: scale to zero).")
    max_replicas: int = Field(default=1, ge=1, le=1000, description="Most replicas.")
    replicas: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description=(
            "Replicas set through the scale subresource (kubectl scale); used without autoscaling "
            "(maxReplicas == minReplicas), ignored while an autoscaler sizes the model."
        ),
    )
    metric: ScaleMetric = Field(
        default="queue-depth",
        description=(
            "Autoscaling signal: queue-depth (waiting requests per replica), kv-cache (KV-cache usage %), "
            "concurrency (running requests per replica) or cpu (utilization %)."
        ),
    )
    target: int | None = Field(
        default=None,
        ge=1,
        le=100000,
        description=(
            "Target per replica: waiting requests (queue-depth, default 8), KV-cache usage % (kv-cache, "
            "default 80), running requests (concurrency, default 32) or CPU utilization % (cpu, default 70)."
        ),
    )
    scale_down_delay_seconds: int = Field(
        default=300, ge=0, le=86400, description="Scale-down stabilization window."
    )

    model_config = ConfigDict(
        json_schema_extra=_cel(
            ("self.minReplicas <= self.maxReplicas", "minReplicas must be <= maxReplicas"),
            ("self.metric != 'cpu' || self.minReplicas >= 1", SCALE_TO_ZERO_MESSAGE),
            (
                "self.metric != 'kv-cache' || !has(self.target) || self.target <= 100",
                KV_CACHE_TARGET_MESSAGE,
            ),
        )
    )

    @property
    def autoscaled(self) -> bool:
        """An autoscaler sizes the serving revision between minReplicas and maxReplicas."""
        return self.max_replicas > self.min_replicas

    @property
    def target_value(self) -> int:
        return self.target if self.target is not None else DEFAULT_SCALE_TARGETS[self.metric]

    @property
    def base_replicas(self) -> int:
        """The replicas a revision runs at rest: `replicas` when set, else minReplicas (at least one)."""
        return self.replicas if self.replicas is not None else max(1, self.min_replicas)

    @model_validator(mode="after")
    def _min_le_max(self) -> Scaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must be <= maxReplicas")
        if self.metric == "cpu" and self.min_replicas == 0:
            raise ValueError(SCALE_TO_ZERO_MESSAGE)
        if self.metric == "kv-cache" and self.target is not None and self.target > 100:
            raise ValueError(KV_CACHE_TARGET_MESSAGE)
        return self


class Step(_Model):
    """One canary step: send `weight` % of traffic to the canary, then hold for `pause`."""

    weight: int = Field(ge=1, le=100, description="Canary traffic percentage during this step.")
    pause: Duration = Field(default="0s", description="How long to hold this step (e.g. 5m) once reached.")


# The steps a canary takes when the spec names none (the model's default and the CRD's, from this one list).
DEFAULT_STEPS: Final[tuple[dict[str, int | str], ...]] = (
    {"weight": 10, "pause": "5m"},
    {"weight": 50, "pause": "10m"},
)


def _default_steps() -> list[Step]:
    return [Step.model_validate(step) for step in DEFAULT_STEPS]


# Custom metric queries are PromQL templates; these placeholders are filled in for each check.
QUERY_PLACEHOLDER: Final = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
QUERY_PLACEHOLDERS: Final = ("namespace", "model", "revision", "interval")
# The CEL twin of the `{{ revision }}` requirement of `check_query_template`.
_SELECTS_REVISION = r"matches('\\{\\{\\s*revision\\s*\\}\\}')"


def check_query_template(field: str, query: str) -> None:
    """Known placeholders only, and `{{ revision }}` among them (a query must select one revision)."""
    names = QUERY_PLACEHOLDER.findall(query)
    unknown = sorted(set(names) - set(QUERY_PLACEHOLDERS))
    if unknown:
        raise ValueError(
            f"{field} uses unknown placeholder(s) {', '.join(unknown)}; known: {', '.join(QUERY_PLACEHOLDERS)}"
        )
    if "revision" not in names:
        raise ValueError(f"{field} must select a revision with {{{{ revision }}}}")


class ThresholdRange(_Model):
    """Bounds the canary's value must stay within (inclusive); either or both."""

    min: float | None = Field(default=None, description="Smallest passing value.")
    max: float | None = Field(default=None, description="Largest passing value.")

    model_config = ConfigDict(
        json_schema_extra=_cel(
            ("has(self.min) || has(self.max)", "thresholdRange needs min, max or both"),
            ("!has(self.min) || !has(self.max) || self.min <= self.max", "thresholdRange min must be <= max"),
        )
    )

    @model_validator(mode="after")
    def _bounds(self) -> ThresholdRange:
        if self.min is None and self.max is None:
            raise ValueError("thresholdRange needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("thresholdRange min must be <= max")
        return self


class CustomMetric(_Model):
    """A team's own quality signal, checked on the canary at every analysis check."""

    name: DNSLabel = Field(description="Names the check in conditions, events and status.")
    query: str = Field(
        min_length=1,
        max_length=4096,
        description=(
            "PromQL returning one value for one revision. Placeholders: {{ namespace }}, {{ model }}, "
            "{{ revision }} (required: it selects the canary, or the stable for comparison) and "
            "{{ interval }} (the check's window, e.g. 75s)."
        ),
    )
    threshold_range: ThresholdRange = Field(description="The canary's value passes within these bounds.")

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                f"self.query.{_SELECTS_REVISION}",
                "query must select a revision with {{ revision }}",
            ),
        )
    )

    @model_validator(mode="after")
    def _template(self) -> CustomMetric:
        check_query_template("query", self.query)
        return self


class Analysis(_Model):
    """SLO analysis of the canary; without it, steps advance by time alone."""

    interval: Duration = Field(
        default="60s", description="Time between checks (each check covers one interval)."
    )
    min_requests: int = Field(
        default=50, ge=1, le=10**9, description="Below this many canary requests a check is inconclusive."
    )
    failure_threshold: int = Field(
        default=2,
        ge=1,
        le=100,
        description=(
            "Consecutive failed checks that trigger a rollback (custom checks; the SLO judge rolls back"
            " at the first check where its evidence, accumulated across checks, rejects an objective)."
        ),
    )
    inconclusive_deadline: Duration = Field(
        default="15m",
        description="Metrics missing or too few requests this long aborts (AnalysisUnavailable).",
    )
    http_errors_query: str | None = Field(
        default=None,
        alias="httpErrorsQuery",
        min_length=1,
        max_length=4096,
        description=(
            "PromQL counting one revision's HTTP 5xx responses over {{ interval }} (from your gateway or "
            "mesh); they count as failed requests with vLLM's errors and aborts. Same placeholders as "
            "metrics[].query; no data counts as none."
        ),
    )
    metrics: list[CustomMetric] = Field(
        default_factory=list,
        max_length=10,
        description="Custom checks (PromQL template and threshold) judged with the SLOs at every check.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                f"!has(self.httpErrorsQuery) || self.httpErrorsQuery.{_SELECTS_REVISION}",
                "httpErrorsQuery must select a revision with {{ revision }}",
            ),
        )
    )

    @model_validator(mode="after")
    def _queries(self) -> Analysis:
        if self.http_errors_query is not None:
            check_query_template("httpErrorsQuery", self.http_errors_query)
        names = [m.name for m in self.metrics]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"metric names must be unique: {', '.join(duplicates)} repeated")
        return self


class SLO(_Model):
    """Service-level objectives the canary must meet (absolute) and keep relative to stable."""

    ttft_p95: Duration | None = Field(
        default=None, alias="ttftP95", description="95th percentile time to first token."
    )
    itl_p95: Duration | None = Field(
        default=None, alias="itlP95", description="95th percentile inter-token latency."
    )
    e2e_p95: Duration | None = Field(
        default=None, alias="e2eP95", description="95th percentile end-to-end request latency."
    )
    error_rate: SharePercent | None = Field(
        default=None,
        description="Largest share of requests finishing with error or abort, from 0% to 100%, e.g. 1%.",
    )
    max_regression: RegressionPercent = Field(
        default="20%",
        description=(
            "How much worse than stable the canary may be, with statistical confidence; 0% to 1000%."
        ),
    )
    max_cost_regression: RegressionPercent | None = Field(
        default=None,
        description=(
            "How much more the canary may cost per served token than stable, with statistical "
            "confidence (the price of a replica-hour from both plans times the share of tokens each "
            "computed rather than served from the prefix cache; independent of the traffic share); "
            "0% to 1000%. Rolled back with reason CostRegression."
        ),
    )
    cost_per_million_tokens: float | None = Field(
        default=None,
        ge=0.0001,
        le=1_000_000,
        description=(
            "Largest cost per million served tokens (prompt + generated), in the currency of the "
            "operator's configured prices (chart values pricing), from 0.0001 to 1000000; judged only "
            "where prices are configured. Rolled back with reason CostRegression."
        ),
    )
    max_prompt_tokens_regression: RegressionPercent | None = Field(
        default=None,
        description=(
            "How many more prompt tokens per request the canary may receive than stable (a template "
            "that silently grows prompts), with statistical confidence; 0% to 1000%."
        ),
    )


EvaluationWhen = Literal["beforeTraffic", "everyStep"]
# The fewest cases an evaluation may be sized to (the gate is inconclusive below core.evaluation.gate.MIN_CASES).
MIN_EVALUATION_SAMPLES: Final = 10


class DatasetRef(_Model):
    """Where an evaluation's cases are: a key of a ConfigMap in the model's namespace (never a Secret:
    answers are compared, not credentials)."""

    config_map: DNSSubdomain = Field(alias="configMap", description="The ConfigMap's name.")
    key: str = Field(
        pattern=r"^[-._a-zA-Z0-9]+$",
        min_length=1,
        max_length=253,
        description="The key holding the cases: JSON Lines, one case a line (docs/evaluation.md).",
    )


class Evaluation(_Model):
    """The evaluation gate: the canary answers a dataset beside the stable and must score as well."""

    dataset: DatasetRef = Field(description="The cases, one JSON object a line.")
    when: EvaluationWhen = Field(
        default="beforeTraffic",
        description="beforeTraffic: once, before the canary gets any traffic; everyStep: before each step.",
    )
    max_drop: SharePercent = Field(
        default="2%",
        description=(
            "How far the canary's score may be below the stable's on the same cases, from 0% to 100%; "
            "a drop beyond it, shown with the SLO judge's confidence, rolls the canary back."
        ),
    )
    min_score: SharePercent | None = Field(
        default=None, description="An absolute floor for the canary's score, from 0% to 100%."
    )
    samples: int = Field(
        default=200,
        ge=MIN_EVALUATION_SAMPLES,
        le=10_000,
        description="Cases per evaluation (all of them if the dataset has fewer); the same ones each time.",
    )
    concurrency: int = Field(default=4, ge=1, le=64, description="Requests in flight per revision.")
    timeout: Duration = Field(default="60s", description="Per case; a case past it counts as failed.")


class Rollout(_Model):
    """How a new revision replaces the stable one."""

    strategy: Strategy = Field(
        default="canary", description="canary (steps, optional analysis) or direct (replace at once)."
    )
    steps: list[Step] = Field(
        default_factory=_default_steps,
        min_length=1,
        max_length=20,
        description="Canary steps; weights strictly ascending, at most 100.",
        json_schema_extra={
            "default": [dict(step) for step in DEFAULT_STEPS],
            **_cel(
                (
                    "self.map(s, s.weight).isSorted()"
                    " && self.all(a, self.exists_one(b, b.weight == a.weight))",
                    "step weights must be strictly ascending",
                )
            ),
        },
    )
    gpu_surge: bool = Field(
        default=True,
        description="true: canary replicas are extra GPUs; false: taken out of stable capacity.",
    )
    progress_deadline: Duration = Field(
        default="30m",
        description=(
            "How long the canary may take to become ready at a step (model loading included) before "
            "the rollout is rolled back with reason ProgressDeadlineExceeded."
        ),
    )
    stopped_retention: Duration | None = Field(
        default=None,
        description=(
            "Platform kserve-llm: how long a revision that left the traffic group (the previous stable "
            "after a promotion, a rolled-back or replaced canary) stays stopped (serving.kserve.io/stop) "
            "before it is deleted; a revert to it within this window only restarts it. Default 15m."
        ),
    )
    analysis: Analysis | None = Field(default=None, description="SLO analysis of the canary.")
    slo: SLO | None = Field(default=None, description="Objectives checked by the analysis.")
    evaluation: Evaluation | None = Field(
        default=None,
        description=(
            "The evaluation gate: the canary answers a dataset beside the stable (each at its own "
            "Service) and gets no traffic until it scores as well (docs/evaluation.md)."
        ),
    )

    model_config = ConfigDict(
        json_schema_extra=_cel(
            ("!has(self.analysis) || has(self.slo)", "analysis requires slo"),
            (
                "!has(self.evaluation) || self.strategy == 'canary'",
                "evaluation requires strategy canary (a direct rollout has no step to hold)",
            ),
        ),
    )

    @model_validator(mode="after")
    def _checks(self) -> Rollout:
        weights = [s.weight for s in self.steps]
        if any(a >= b for a, b in itertools.pairwise(weights)):
            raise ValueError("step weights must be strictly ascending")
        if self.analysis is not None and self.slo is None:
            raise ValueError("analysis requires slo")
        if self.evaluation is not None and self.strategy != "canary":
            raise ValueError("evaluation requires strategy canary (a direct rollout has no step to hold)")
        return self


class NLPModelSpec(_Model):
    """Desired state of an NLPModel."""

    task: Task = Field(default="generate", description="generate, embed, classify or rerank.")
    model: ModelSource = Field(description="Where the weights come from and how the model is exposed.")
    runtime: Runtime = Field(
        default_factory=Runtime, description="Inference engine.", json_schema_extra={"default": {}}
    )
    quantization: Quantization = Field(
        default_factory=Quantization,
        description="Weight and KV-cache quantization.",
        json_schema_extra={"default": {}},
    )
    resources: Resources = Field(
        default_factory=Resources,
        description="Compute resources per replica.",
        json_schema_extra={"default": {}},
    )
    serving: Serving = Field(
        default_factory=Serving,
        description="Serving platform and traffic router.",
        json_schema_extra={"default": {}},
    )
    scaling: Scaling = Field(
        default_factory=Scaling, description="Replicas and autoscaling.", json_schema_extra={"default": {}}
    )
    rollout: Rollout = Field(
        default_factory=Rollout,
        description="Rollout strategy and analysis.",
        json_schema_extra={"default": {}},
    )

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "self.serving.router != 'kserve-canary' || self.serving.platform == 'kserve'",
                "router kserve-canary requires platform kserve",
            ),
            (
                "self.serving.router != 'kserve-canary' || self.scaling.maxReplicas == self.scaling.minReplicas"
                " || self.scaling.metric in ['concurrency', 'cpu']",
                KNATIVE_SCALING_MESSAGE,
            ),
            (
                "self.scaling.metric != 'cpu' || self.scaling.maxReplicas == self.scaling.minReplicas"
                " || has(self.resources.cpu)",
                CPU_REQUEST_MESSAGE,
            ),
            (
                "self.serving.router != 'kserve-canary' || !has(self.serving.networkPolicy)"
                " || !has(self.serving.networkPolicy.enabled) || !self.serving.networkPolicy.enabled",
                NETWORK_POLICY_ON_KNATIVE_MESSAGE,
            ),
            (
                "self.serving.platform != 'kserve-llm' || self.serving.router == 'gateway-api'",
                KSERVE_LLM_ROUTER_MESSAGE,
            ),
        )
    )

    @model_validator(mode="after")
    def _checks(self) -> NLPModelSpec:
        if self.serving.router == "kserve-canary" and self.serving.platform != "kserve":
            raise ValueError("router kserve-canary requires platform kserve")
        if (
            self.serving.router == "kserve-canary"
            and self.scaling.autoscaled
            and self.scaling.metric not in ("concurrency", "cpu")
        ):
            raise ValueError(KNATIVE_SCALING_MESSAGE)
        if self.scaling.metric == "cpu" and self.scaling.autoscaled and self.resources.cpu is None:
            raise ValueError(CPU_REQUEST_MESSAGE)
        policy = self.serving.network_policy
        if self.serving.router == "kserve-canary" and policy is not None and policy.enabled:
            raise ValueError(NETWORK_POLICY_ON_KNATIVE_MESSAGE)
        if self.serving.platform == "kserve-llm" and self.serving.router != "gateway-api":
            raise ValueError(KSERVE_LLM_ROUTER_MESSAGE)
        return self
