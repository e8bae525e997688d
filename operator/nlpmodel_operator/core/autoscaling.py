"""Who sizes each revision, and the autoscaler that does it (pure).

One owner per workload, always: the operator (a fixed replica count) or one autoscaler. The stable
revision keeps its autoscaler through a rollout (with its bounds reduced when `gpuSurge: false` lends
replicas to the canary); the canary runs the fixed count its weight calls for; on promotion the new
stable gets the autoscaler and the old stable's goes with it. Never two on one workload.

How each platform scales a revision:
- raw: the operator's own `HorizontalPodAutoscaler` (cpu; `autoscaling/v2`, or `v2beta2` where the
  server offers no v2) or KEDA `ScaledObject` (LLM metrics from Prometheus), named like the Deployment;
- kserve (Standard): KServe's autoscaler classes on the InferenceService: `hpa` with
  scaleMetric/scaleTarget for cpu, `keda` with a Prometheus query for LLM metrics, `none` for a fixed
  count;
- kserve-canary (Knative): Knative's autoscaler, concurrency (KPA) or cpu (HPA class).

A Deployment's replica count changes hands without a dip: server-side apply would reset a field its
manager stops applying, so before the operator applies a Deployment without `replicas` it first sets
the live count with an ordinary update (`reconcile._handover`), which the autoscaler then takes over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.spec import NLPModelSpec, Scaling
from nlpmodel_operator.api.status import ConditionStatus
from nlpmodel_operator.core.analysis import queries as q
from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.revision import revision_name

__all__ = [
    "AUTOSCALER_CHILD_KINDS",
    "AUTOSCALER_KINDS",
    "KEDA_API_VERSION",
    "Autoscaled",
    "Fixed",
    "Scale",
    "ScalingSupport",
    "autoscaler_objects",
    "describe",
    "kserve_scaling",
    "metric_query",
    "serving_scale",
    "unavailable",
]

HPA_KIND: Final = "HorizontalPodAutoscaler"
KEDA_API_VERSION: Final = "keda.sh/v1alpha1"
KEDA_KIND: Final = "ScaledObject"
# The autoscalers only carry what the operator wrote: not watched. The HPA is listed and created in
# the newest version the server offers (the shell finds it out; this is the newest there is).
AUTOSCALER_CHILD_KINDS: Final = (
    ChildKind(KEDA_API_VERSION, KEDA_KIND, "scaledobjects", watched=False),
    ChildKind("autoscaling/v2", HPA_KIND, "horizontalpodautoscalers", watched=False),
)
AUTOSCALER_KINDS: Final = frozenset(k.kind for k in AUTOSCALER_CHILD_KINDS)
PROMETHEUS_METRICS: Final = frozenset({"queue-depth", "kv-cache", "concurrency"})
# Where offline rendering (`nlpctl render`) points KEDA when no operator configuration is at hand.
DEFAULT_PROMETHEUS_URL: Final = "http://prometheus-operated.monitoring.svc:9090"
KSERVE_AUTOSCALER_CLASS: Final = "serving.kserve.io/autoscalerClass"
KEDA_POLLING_INTERVAL_S: Final = 15


@dataclass(frozen=True)
class ScalingSupport:
    """What the cluster and the operator's configuration offer for autoscaling (the shell finds out)."""

    hpa_api_version: str = "autoscaling/v2"
    keda: bool = True  # the cluster serves keda.sh/v1alpha1 ScaledObject
    prometheus_url: str | None = DEFAULT_PROMETHEUS_URL


@dataclass(frozen=True)
class Fixed:
    """The operator owns the count."""

    replicas: int


@dataclass(frozen=True)
class Autoscaled:
    """One autoscaler owns the count, within these bounds."""

    min: int
    max: int


Scale = Fixed | Autoscaled


def unavailable(spec: NLPModelSpec, support: ScalingSupport) -> str | None:
    """Why the autoscaling the spec asks for cannot be set up in this cluster by an HPA or KEDA (the
    operator's own, or KServe's classes); None: it can. Knative's platform brings its own."""
    scaling = spec.scaling
    if not scaling.autoscaled or scaling.metric not in PROMETHEUS_METRICS:
        return None
    if not support.keda:
        return (
            f"{scaling.metric} autoscaling needs KEDA: the cluster does not serve "
            f"{KEDA_API_VERSION} {KEDA_KIND}; install KEDA or use metric cpu"
        )
    if support.prometheus_url is None:
        return (
            f"{scaling.metric} autoscaling needs the operator's Prometheus URL "
            "(Helm value prometheus.url, environment NLPMODEL_PROMETHEUS_URL)"
        )
    return None


def serving_scale(spec: NLPModelSpec, fixed: int | None, lent: int, autoscaling_possible: bool) -> Scale:
    """The scale of the revision that serves at rest (the stable).

    fixed: the count the rollout sets when it sizes the stable itself (None: the spec's size);
    lent: replicas the stable lends the canary (`gpuSurge: false`), taken off an autoscaler's bounds.
    """
    scaling = spec.scaling
    if scaling.autoscaled and autoscaling_possible:
        high = max(scaling.max_replicas - lent, 1)
        return Autoscaled(min(scaling.min_replicas, high), high)
    return Fixed(fixed if fixed is not None else scaling.base_replicas)


def metric_query(metric: str, namespace: str, model: str, revision: str) -> tuple[str, str]:
    """(PromQL, HPA metric type) of an LLM metric for one revision's series.

    Counts are summed over the revision's pods and compared per replica (AverageValue); KV-cache
    usage is already a share, so its average (in %) is compared as a whole (Value).
    """
    selector = q.revision_selector(namespace, model, revision)
    if metric == "queue-depth":
        return q.queue_depth(namespace, model, revision), "AverageValue"
    if metric == "concurrency":
        return f"sum({q.NUM_REQUESTS_RUNNING}{selector})", "AverageValue"
    if metric == "kv-cache":
        return f"100 * avg({q.KV_CACHE_USAGE}{selector})", "Value"
    raise ValueError(f"{metric} is not a Prometheus metric")


def _labels(name: str, revision: str) -> dict[str, str]:
    return {
        c.LABEL_NAME: "nlpmodel",
        c.LABEL_INSTANCE: name,
        c.LABEL_COMPONENT: "autoscaler",
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_MODEL: name,
        c.LABEL_REVISION: revision,
    }


def _scale_down(scaling: Scaling) -> dict[str, Any]:
    return {"scaleDown": {"stabilizationWindowSeconds": scaling.scale_down_delay_seconds}}


def autoscaler_objects(
    name: str, namespace: str, revision: str, spec: NLPModelSpec, scale: Scale, support: ScalingSupport
) -> list[dict[str, Any]]:
    """The operator's own autoscaler of one Deployment revision (the raw platform's; KServe and Knative
    bring theirs)."""
    if not isinstance(scale, Autoscaled):
        return []
    scaling = spec.scaling
    workload = revision_name(name, revision)
    meta = {"name": workload, "namespace": namespace, "labels": _labels(name, revision)}
    if scaling.metric == "cpu":
        return [
            {
                "apiVersion": support.hpa_api_version,
                "kind": HPA_KIND,
                "metadata": meta,
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload},
                    "minReplicas": scale.min,
                    "maxReplicas": scale.max,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {"type": "Utilization", "averageUtilization": scaling.target_value},
                            },
                        }
                    ],
                    "behavior": _scale_down(scaling),
                },
            }
        ]
    return [
        {
            "apiVersion": KEDA_API_VERSION,
            "kind": KEDA_KIND,
            "metadata": meta,
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload},
                "minReplicaCount": scale.min,
                "maxReplicaCount": scale.max,
                "pollingInterval": KEDA_POLLING_INTERVAL_S,
                # Scale to zero waits as long as any other scale-down.
                "cooldownPeriod": scaling.scale_down_delay_seconds,
                "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _scale_down(scaling)}},
                "triggers": [prometheus_trigger(scaling, support, namespace, name, revision)],
            },
        }
    ]


def kserve_scaling(
    name: str,
    namespace: str,
    revision: str,
    spec: NLPModelSpec,
    scale: Scale,
    support: ScalingSupport,
    knative: bool = False,
) -> tuple[str | None, dict[str, Any]]:
    """(autoscaler class annotation, predictor fields) of an InferenceService revision, in Standard
    mode or (`knative`) Serverless mode.

    Every scaling field is present, None where unused, so the same dict serves as a merge patch that
    switches a live InferenceService between classes (None removes a field)."""
    scaling = spec.scaling
    fields: dict[str, Any] = {"scaleMetric": None, "scaleTarget": None, "autoScaling": None}
    if isinstance(scale, Fixed):
        fields.update(minReplicas=scale.replicas, maxReplicas=max(scale.replicas, 1))
        return (None if knative else "none"), fields
    fields.update(minReplicas=scale.min, maxReplicas=scale.max)
    if scaling.metric == "cpu":  # an HPA (KServe's in Standard mode, Knative's HPA class otherwise)
        fields.update(scaleMetric="cpu", scaleTarget=scaling.target_value)
        fields["autoScaling"] = {"behavior": _scale_down(scaling)}
        return "hpa", fields
    if knative:  # Knative's own autoscaler on concurrency
        fields.update(scaleMetric="concurrency", scaleTarget=scaling.target_value)
        return None, fields
    assert support.prometheus_url is not None, "unavailable() said so"
    query, metric_type = metric_query(scaling.metric, namespace, name, revision)
    target_key = "averageValue" if metric_type == "AverageValue" else "value"
    fields["autoScaling"] = {
        "metrics": [
            {
                "type": "External",
                "external": {
                    "metric": {
                        "backend": "prometheus",
                        "serverAddress": support.prometheus_url,
                        "query": query,
                    },
                    "target": {"type": metric_type, target_key: str(scaling.target_value)},
                },
            }
        ],
        "behavior": _scale_down(scaling),
    }
    return "keda", fields


def describe(spec: NLPModelSpec, why_not: str | None, by: str) -> tuple[ConditionStatus, str, str]:
    """(status, reason, message) of the Autoscaling condition; `why_not`: why the platform cannot
    autoscale here (None: it can), `by`: what sizes it (see `ServingPlatform.autoscaled_by`)."""
    scaling = spec.scaling
    if not scaling.autoscaled:
        how = "set with kubectl scale" if scaling.replicas is not None else "minReplicas == maxReplicas"
        return "False", c.Reason.FIXED_REPLICAS, f"{scaling.base_replicas} replica(s), {how}"
    if why_not is not None:
        return (
            "False",
            c.Reason.AUTOSCALER_UNAVAILABLE,
            f"{why_not}; running {scaling.base_replicas} replica(s)",
        )
    unit = {"queue-depth": " waiting", "concurrency": " running", "kv-cache": "% KV cache", "cpu": "% CPU"}
    ignored = f"; scaling.replicas {scaling.replicas} is ignored" if scaling.replicas is not None else ""
    return (
        "True",
        c.Reason.AUTOSCALED,
        f"{scaling.min_replicas}-{scaling.max_replicas} replicas on {scaling.metric} "
        f"(target {scaling.target_value}{unit[scaling.metric]} per replica) by {by}{ignored}",
    )


def prometheus_trigger(
    scaling: Scaling, support: ScalingSupport, namespace: str, name: str, revision: str
) -> dict[str, Any]:
    """The KEDA trigger on the revision's own LLM metric (our ScaledObject's, and KServe's direct KEDA
    scaling of an LLMInferenceService)."""
    assert support.prometheus_url is not None, "unavailable() said so"
    query, metric_type = metric_query(scaling.metric, namespace, name, revision)
    return {
        "type": "prometheus",
        "metricType": metric_type,
        "metadata": {
            "serverAddress": support.prometheus_url,
            "query": query,
            "threshold": str(scaling.target_value),
        },
    }
