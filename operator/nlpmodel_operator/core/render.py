"""The child objects of a resolved model: one revision's (`render_revision`), and everything of a model
at rest (`render_settled`), which is what `decide()` applies to a settled model and what
`nlpctl render` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nlpmodel_operator.core.autoscaling import Scale, ScalingSupport, serving_scale
from nlpmodel_operator.core.monitoring import Monitoring, pod_monitors
from nlpmodel_operator.core.networkpolicy import NetworkPolicies, network_policies
from nlpmodel_operator.core.platforms import ServingPlatform, Split, platform_of
from nlpmodel_operator.core.resolved import Resolved
from nlpmodel_operator.core.routers import Backend, RouteContext, router_for


def at_rest(resolved: Resolved, support: ScalingSupport) -> Scale:
    """The scale the spec asks for at rest, as far as the cluster can autoscale."""
    spec = resolved.spec
    return serving_scale(spec, None, 0, platform_of(spec.serving).scaling_unavailable(spec, support) is None)


def render_revision(
    resolved: Resolved,
    scale: Scale | None = None,
    support: ScalingSupport | None = None,
    split: Split | None = None,
) -> list[dict[str, Any]]:
    """The objects that run one revision (named `<model>-<hash8>`), without owner references, with
    the operator's own autoscaler where it has one.

    `scale` sizes it (a canary runs a fixed number); None: as the spec asks at rest. `support` is what
    the cluster offers for autoscaling (default: everything, as `nlpctl render` assumes). `split`: the
    traffic between revisions, for a platform that splits it itself (default: all to this revision).
    """
    support = support or ScalingSupport()
    scale = scale or at_rest(resolved, support)
    platform = platform_of(resolved.spec.serving)
    objects = platform.render(resolved, scale, support, split or Split(resolved.revision))
    return objects + platform.autoscalers(resolved, resolved.revision, scale, support)


def route_context(
    resolved: Resolved, split: Split, stable_platform: ServingPlatform | None = None
) -> RouteContext:
    """What the router splits: the stable and canary revisions' Services. The canary runs on the
    spec's platform; the stable on `stable_platform` (default: the spec's; a rollout may change it)."""
    platform = platform_of(resolved.spec.serving)
    canary = None
    if split.canary is not None:
        canary = Backend(split.canary, platform.service_name(resolved.name, split.canary))
    stable = Backend(split.stable, (stable_platform or platform).service_name(resolved.name, split.stable))
    return RouteContext(resolved.name, resolved.namespace, resolved.spec, stable, canary, split.weight)


@dataclass(frozen=True)
class Settled:
    """A model at rest, by role (the reconcile orders the roles)."""

    monitors: list[dict[str, Any]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)
    workloads: list[dict[str, Any]] = field(default_factory=list)
    autoscalers: list[dict[str, Any]] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [*self.monitors, *self.policies, *self.workloads, *self.autoscalers, *self.routes]


def render_settled(
    resolved: Resolved,
    support: ScalingSupport | None = None,
    monitoring: Monitoring | None = None,
    scale: Scale | None = None,
    network: NetworkPolicies | None = None,
) -> Settled:
    """Everything of a model whose current template is its only revision, serving all traffic: the
    revision's workload (and its Service), the operator's autoscaler, the router's objects, and the
    PodMonitor (given `monitoring`), the NetworkPolicy where the model gets one (`network`: the cluster's
    defaults). `scale`: the stable's size (None: as the spec asks at rest)."""
    support = support or ScalingSupport()
    scale = scale or at_rest(resolved, support)
    split = Split(resolved.revision)
    platform = platform_of(resolved.spec.serving)
    return Settled(
        monitors=pod_monitors(
            resolved.name, resolved.namespace, monitoring, platform.pod_port, platform.pod_tls
        ),
        policies=network_policies(resolved, network),
        workloads=platform.render(resolved, scale, support, split),
        autoscalers=platform.autoscalers(resolved, resolved.revision, scale, support),
        routes=model_routes(resolved, route_context(resolved, split)),
    )


def model_routes(resolved: Resolved, ctx: RouteContext) -> list[dict[str, Any]]:
    """The router's objects for `ctx`; none where the platform gives each revision its own share
    (traffic "per-revision": KServe writes the routes of an LLMInferenceService group itself)."""
    if platform_of(resolved.spec.serving).traffic == "per-revision":
        return []
    return router_for(resolved.spec.serving.router).render(ctx)
