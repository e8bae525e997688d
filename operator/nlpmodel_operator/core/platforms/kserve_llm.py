"""KServe LLMInferenceService (v1alpha2): one object per revision, all of a model's revisions in one
routing group (`router.route.group: <model>`), each carrying its own proportional `weight`.

KServe's controller writes every member's HTTPRoute with weighted backendRefs to all the group's
routable members, and leaves out a member annotated `serving.kserve.io/stop: "true"` (its pods go to
zero, the object stays). It has no analysis: this platform is what moves the weights per step, stops
the old version at promotion (and deletes it after `spec.rollout.stoppedRetention`), and stops a
rolled-back canary. Traffic mode "per-revision" (see `base.TrafficMode`): the router renders nothing.

What we render and what KServe keeps: KServe's well-known template runs `vllm serve /mnt/models` on
port 8000 with its TLS, `--served-model-name` from `model.name` and `--tensor-parallel-size` from
`parallelism.tensor`; the rest of our engine flags (quantization, KV-cache dtype, max model length,
memory, task, user args) reach it through `VLLM_ADDITIONAL_ARGS`, which that template appends.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping
from typing import Any

from nlpmodel_operator.api.constants import Reason
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.units import parse_duration
from nlpmodel_operator.core.autoscaling import (
    KEDA_POLLING_INTERVAL_S,
    Autoscaled,
    Fixed,
    Scale,
    ScalingSupport,
    prometheus_trigger,
    unavailable,
)
from nlpmodel_operator.core.engines import EngineInput, engine_for
from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.platforms import common
from nlpmodel_operator.core.platforms.base import Split, TrafficMode, WorkloadState
from nlpmodel_operator.core.platforms.kserve import storage_uri
from nlpmodel_operator.core.problems import Problem
from nlpmodel_operator.core.records import Action, ChildRef, Patch, RevisionState
from nlpmodel_operator.core.resolved import Resolved

API_VERSION = "serving.kserve.io/v1alpha2"
LLM_INFERENCE_SERVICE = ChildKind(API_VERSION, "LLMInferenceService", "llminferenceservices")
STOP_ANNOTATION = "serving.kserve.io/stop"
MAIN_CONTAINER = "main"  # the container of KServe's template that ours merges into
ADDITIONAL_ARGS_ENV = "VLLM_ADDITIONAL_ARGS"
# Flags KServe's template sets itself (from model.name, parallelism.tensor, its port and TLS).
KSERVE_OWNED_FLAGS = frozenset(
    {"--model", "--served-model-name", "--port", "--host", "--tensor-parallel-size"}
)
DEFAULT_STOPPED_RETENTION = "15m"
# The port KServe's template serves vLLM on (with its TLS), not ours: a NetworkPolicy must open this one.
KSERVE_LLM_POD_PORT = 8000
# KServe's condition types (pkg/apis/serving/v1alpha2/llm_inference_service_lifecycle.go).
READY, WORKLOADS_READY, ROUTER_READY, PRESETS_COMBINED = (
    "Ready",
    "WorkloadsReady",
    "RouterReady",
    "PresetsCombined",
)
GROUP_READY, GROUP_DEGRADED = "GroupReady", "GroupDegraded"


def child_name(parent: str, suffix: str) -> str:
    """Knative's kmeta.ChildName, which KServe names its children with: within 63 characters, a long
    parent shortened and an MD5 of it added."""
    longest, md5_len = 63, 32
    if len(parent) <= longest - len(suffix):
        return parent + suffix
    if len(suffix) >= md5_len:
        return hashlib.md5((parent + suffix).encode()).hexdigest()
    return parent[: longest - len(suffix) - md5_len] + hashlib.md5(parent.encode()).hexdigest() + suffix


def share(revision: str, split: Split) -> int:
    """The weight a revision's object carries under `split` (proportional: the two add up to 100)."""
    if split.canary is None:
        return 100 if revision == split.stable else 0
    if revision == split.canary:
        return split.weight
    return 100 - split.weight if revision == split.stable else 0


def additional_args(args: list[str]) -> str:
    """Our engine flags without those KServe's template sets, as one shell string (the template
    `eval`s it into its command line). The leading positional arguments (the model path: `vllm
    serve MODEL`) are the template's too."""
    kept: list[str] = []
    skip_value = False
    while args and not args[0].startswith("-"):
        args = args[1:]
    for arg in args:
        if skip_value:
            skip_value = False
            continue
        flag = arg.split("=", 1)[0]
        if flag in KSERVE_OWNED_FLAGS:
            skip_value = "=" not in arg
            continue
        kept.append(arg)
    return shlex.join(kept)


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {x.get("type", ""): x for x in (obj.get("status") or {}).get("conditions") or []}


def _says(condition: Mapping[str, Any]) -> str:
    reason = condition.get("reason") or ""
    message = condition.get("message") or ""
    detail = f" ({reason})" if reason else ""
    return f"{condition.get('type')} {condition.get('status')}{detail}" + (f": {message}" if message else "")


def is_stopped(obj: Mapping[str, Any]) -> bool:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(STOP_ANNOTATION) == "true"


def observe_llm_inference_service(obj: Mapping[str, Any]) -> WorkloadState:
    """Readiness as KServe reports it: Ready (PresetsCombined, WorkloadsReady and RouterReady rolled
    up), at the current generation; the first of those that is not True says why not. GroupDegraded
    (members serving different models) and a GroupReady that is False do not block readiness
    (KServe keeps routing): they are a warning."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "?")
    conditions = _conditions(obj)
    stopped = is_stopped(obj)
    ready = conditions.get(READY)
    serving = ready is not None and ready.get("status") == "True"
    warnings = []
    degraded = conditions.get(GROUP_DEGRADED)
    if degraded is not None and degraded.get("status") == "True":
        warnings.append(f"LLMInferenceService {name}: {_says(degraded)}")
    group = conditions.get(GROUP_READY)
    if group is not None and group.get("status") == "False":
        warnings.append(f"LLMInferenceService {name}: {_says(group)}")
    warning = "; ".join(warnings)
    generation = meta.get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        why = f"LLMInferenceService {name}: KServe has not processed generation {generation} yet"
        return WorkloadState(False, why, serving=serving, stopped=stopped, warning=warning)
    if ready is None:
        why = f"LLMInferenceService {name} has no Ready condition yet"
        return WorkloadState(False, why, stopped=stopped, warning=warning)
    if serving:
        return WorkloadState(True, serving=True, stopped=stopped, warning=warning)
    reason, cause = next(
        (
            (reason, conditions[t])
            for t, reason in _HOLDS_BACK
            if t in conditions and conditions[t].get("status") != "True"
        ),
        ("", ready),
    )
    if stopped:
        reason = Reason.STOPPED
    message = f"LLMInferenceService {name}: {_says(cause)}"
    return WorkloadState(False, message, stopped=stopped, reason=reason, warning=warning)


# KServe's roll-up conditions under Ready, in the order they are checked, with our reason for each.
_HOLDS_BACK = (
    (PRESETS_COMBINED, Reason.PRESETS_NOT_COMBINED),
    (WORKLOADS_READY, Reason.WORKLOADS_NOT_READY),
    (ROUTER_READY, Reason.ROUTER_NOT_READY),
)


class KServeLLMPlatform:
    name = "kserve-llm"
    workload = LLM_INFERENCE_SERVICE
    kinds: tuple[ChildKind, ...] = (LLM_INFERENCE_SERVICE,)
    traffic: TrafficMode = "per-revision"
    pod_port = KSERVE_LLM_POD_PORT
    pod_tls = True

    def problems(self, spec: NLPModelSpec) -> list[Problem]:
        problems = []
        if spec.serving.router != "gateway-api":
            problems.append(
                Problem(
                    "spec.serving.router",
                    f"platform kserve-llm splits traffic itself (router.route group and weight of each "
                    f"revision's LLMInferenceService): {spec.serving.router} cannot be expressed, use "
                    "gateway-api (KServe's managed HTTPRoute)",
                )
            )
        if spec.serving.hostnames:
            problems.append(
                Problem(
                    "spec.serving.hostnames",
                    "platform kserve-llm: KServe's managed HTTPRoute takes its hostnames from the Gateway's "
                    "listeners; set them there (or use platform kserve or raw)",
                )
            )
        if spec.runtime.engine != "vllm":
            problems.append(
                Problem(
                    "spec.runtime.engine",
                    f"platform kserve-llm runs KServe's vLLM template; engine {spec.runtime.engine} needs "
                    "platform kserve or raw",
                )
            )
        return problems

    def owns(self, obj: Mapping[str, Any]) -> bool:
        return obj.get("kind") == LLM_INFERENCE_SERVICE.kind

    def observe(self, obj: Mapping[str, Any]) -> WorkloadState:
        return observe_llm_inference_service(obj)

    def service_name(self, model: str, revision: str) -> str:
        return child_name(f"{model}-{revision}", "-kserve-workload-svc")  # KServe's workloadServiceName

    def scaling_unavailable(self, spec: NLPModelSpec, support: ScalingSupport) -> str | None:
        if spec.scaling.autoscaled and not support.keda:
            return (
                "platform kserve-llm autoscales through KServe's KEDA scaling (scaling.keda): the cluster "
                "does not serve keda.sh/v1alpha1 ScaledObject; install KEDA"
            )
        return unavailable(spec, support)

    def autoscaled_by(self, spec: NLPModelSpec, support: ScalingSupport) -> str:
        return "KServe's KEDA scaling of the LLMInferenceService"

    def autoscalers(
        self, resolved: Resolved, revision: str, scale: Scale, support: ScalingSupport
    ) -> list[dict[str, Any]]:
        return []  # KServe creates the ScaledObject from the object's scaling

    def resize(
        self, workload: ChildRef, resolved: Resolved, revision: str, scale: Scale, support: ScalingSupport
    ) -> list[Action]:
        return [Patch(workload, {"spec": _scaling(resolved, revision, scale, support)})]

    def hand_over(self, state: RevisionState, scale: Scale) -> list[Action]:
        return []  # replicas and scaling are fields of the object, applied whole

    def born(self, objects: list[dict[str, Any]], scale: Autoscaled) -> None:
        pass  # KServe starts it at minReplicas

    # ----------------------------------------------------------------- WeightedRevisions

    def weigh(self, workload: ChildRef, weight: int) -> list[Action]:
        return [Patch(workload, {"spec": {"router": {"route": {"weight": weight}}}})]

    def stop(self, workload: ChildRef) -> list[Action]:
        # The weight goes to 0 too, so that a later restart never brings back an old share.
        body = {
            "metadata": {"annotations": {STOP_ANNOTATION: "true"}},
            "spec": {"router": {"route": {"weight": 0}}},
        }
        return [Patch(workload, body)]

    def restart(self, workload: ChildRef) -> list[Action]:
        return [Patch(workload, {"metadata": {"annotations": {STOP_ANNOTATION: None}}})]

    def retention_s(self, spec: NLPModelSpec) -> float:
        return parse_duration(spec.rollout.stopped_retention or DEFAULT_STOPPED_RETENTION)

    # --------------------------------------------------------------------------- render

    def render(
        self, resolved: Resolved, scale: Scale, support: ScalingSupport, split: Split
    ) -> list[dict[str, Any]]:
        spec = resolved.spec
        engine = engine_for(spec.runtime.engine)
        inp = EngineInput(
            spec=spec,
            served_name=resolved.served_name,
            model_path=common.MODEL_MOUNT,
            max_model_len=resolved.max_model_len,
            tensor_parallel=resolved.tensor_parallel,
        )
        env: list[dict[str, Any]] = []
        flags = additional_args(engine.args(inp))
        if flags:
            env.append({"name": ADDITIONAL_ARGS_ENV, "value": flags})
        env += common.credential_env(spec)
        container: dict[str, Any] = {
            "name": MAIN_CONTAINER,
            "image": engine.image(spec),
            "securityContext": common.container_security_context(engine),
        }
        for key, value in (
            ("env", env),
            ("resources", common.container_resources(resolved)),
            ("volumeMounts", common.shm_mount(spec)),
        ):
            if value:
                container[key] = value
        template: dict[str, Any] = {"containers": [container]}
        for key, value in (
            ("nodeSelector", common.node_selector(spec)),
            ("tolerations", common.tolerations(spec)),
            ("volumes", common.shm_volume(spec)),
        ):
            if value:
                template[key] = value
        body: dict[str, Any] = {
            "model": {"uri": storage_uri(resolved), "name": resolved.served_name},
            **_scaling(resolved, resolved.revision, scale, support),
            # KServe puts these on the pods: the PodMonitor selects a revision's pods by them.
            "labels": common.labels(resolved),
            "template": template,
            "router": _router(resolved, share(resolved.revision, split)),
        }
        if resolved.tensor_parallel > 1:
            body["parallelism"] = {"tensor": resolved.tensor_parallel}
        return [
            {
                "apiVersion": API_VERSION,
                "kind": LLM_INFERENCE_SERVICE.kind,
                "metadata": common.metadata(resolved),
                "spec": {key: value for key, value in body.items() if value is not None},
            }
        ]


def _router(resolved: Resolved, weight: int) -> dict[str, Any]:
    serving = resolved.spec.serving
    router: dict[str, Any] = {"route": {"group": resolved.name, "weight": weight}}
    gateway: dict[str, Any] = {}  # {}: KServe's default Gateway
    if serving.gateway is not None:
        ref: dict[str, Any] = {"name": serving.gateway.name}
        if serving.gateway.namespace:
            ref["namespace"] = serving.gateway.namespace
        if serving.gateway.section_name:
            ref["sectionName"] = serving.gateway.section_name
        gateway["refs"] = [ref]
    router["gateway"] = gateway
    routing = serving.llm_inference_service
    if routing is None or routing.scheduler == "managed":
        scheduler: dict[str, Any] = {}  # {}: KServe's managed endpoint picker and InferencePool
        if routing is not None and routing.inference_pool:
            scheduler["pool"] = {"ref": {"name": routing.inference_pool}}
        router["scheduler"] = scheduler
    return router


def _scaling(resolved: Resolved, revision: str, scale: Scale, support: ScalingSupport) -> dict[str, Any]:
    """`replicas` or `scaling` (KServe's direct KEDA scaling on our metric); both keys present, the
    unused one None, so the same dict serves as a merge patch switching between them."""
    if isinstance(scale, Fixed):
        return {"replicas": scale.replicas, "scaling": None}
    spec = resolved.spec
    scaling = spec.scaling
    if scaling.metric == "cpu":
        trigger: dict[str, Any] = {
            "type": "cpu",
            "metricType": "Utilization",
            "metadata": {"value": str(scaling.target_value)},
        }
    else:
        trigger = prometheus_trigger(scaling, support, resolved.namespace, resolved.name, revision)
    keda = {
        "pollingInterval": KEDA_POLLING_INTERVAL_S,
        "cooldownPeriod": scaling.scale_down_delay_seconds,
        "triggers": [trigger],
    }
    return {
        "replicas": None,
        "scaling": {"minReplicas": scale.min, "maxReplicas": scale.max, "keda": keda},
    }
