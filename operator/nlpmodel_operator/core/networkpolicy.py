"""The model's optional NetworkPolicy: who may reach its pods (pure).

One NetworkPolicy per NLPModel (named after it) selects the pods of all its revisions by the model
label and allows ingress to the serving port (which is also the metrics port) from:

- its clients: `spec.serving.networkPolicy.clients`, or by default every pod of the model's namespace
  (the Service's clients) and, with router gateway-api or inference-pool, the Gateway's namespace (with
  inference-pool the Gateway sends to the pool's pods directly; an endpoint picker in the model's
  namespace is one of its pods' clients);
- the Prometheus the operator is configured with (its namespace), which scrapes `/metrics`;
- the operator's own namespace, for a model with an evaluation gate (`spec.rollout.evaluation`): the
  operator sends the dataset's cases to each revision's Service.

Otherwise the operator never calls the model's pods (analysis asks Prometheus), so it needs no rule. Whether a
model gets one: `networkPolicy.enabled`, else the cluster default (the operator's configuration, off
unless the platform team turns it on). Knative models (router kserve-canary) never get one: the
activator and queue-proxy reach the pods on ports of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.spec import NetworkPeer
from nlpmodel_operator.core.kinds import ChildKind
from nlpmodel_operator.core.platforms import platform_of
from nlpmodel_operator.core.resolved import Resolved
from nlpmodel_operator.core.routers.base import model_metadata

API_VERSION: Final = "networking.k8s.io/v1"
KIND: Final = "NetworkPolicy"
# It only carries what the operator wrote: not watched (drift is repaired at the resync).
NETWORK_POLICY: Final = ChildKind(API_VERSION, KIND, "networkpolicies", watched=False)
# The label Kubernetes (>= 1.21) sets on every namespace to its name.
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
DEFAULT_PROMETHEUS_NAMESPACE: Final = "monitoring"


@dataclass(frozen=True)
class NetworkPolicies:
    """The cluster's defaults (the operator's configuration, from the chart)."""

    enabled_by_default: bool = False
    # Where the Prometheus that scrapes the model servers runs; None: no scrape rule (nothing scrapes).
    prometheus_namespace: str | None = DEFAULT_PROMETHEUS_NAMESPACE
    # Where the operator runs: let through to models it evaluates (None: unknown, no rule).
    operator_namespace: str | None = None


def wanted(resolved: Resolved, defaults: NetworkPolicies) -> bool:
    serving = resolved.spec.serving
    if serving.router == "kserve-canary":
        return False
    policy = serving.network_policy
    if policy is not None and policy.enabled is not None:
        return policy.enabled
    return defaults.enabled_by_default


def _namespace_peer(namespace: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}


def _peer(client: NetworkPeer) -> dict[str, Any]:
    peer: dict[str, Any] = {}
    if client.namespace is not None:
        peer.update(_namespace_peer(client.namespace))
    # Without a namespace a podSelector means "in the policy's namespace"; with one, "in that one".
    peer["podSelector"] = {"matchLabels": dict(client.pod_labels)} if client.pod_labels else {}
    return peer


def client_peers(resolved: Resolved) -> list[dict[str, Any]]:
    serving = resolved.spec.serving
    policy = serving.network_policy
    if policy is not None and policy.clients:
        return [_peer(client) for client in policy.clients]
    peers: list[dict[str, Any]] = [{"podSelector": {}}]  # every pod of the model's namespace
    gateway = serving.gateway
    if (
        serving.router in ("gateway-api", "inference-pool")
        and gateway is not None
        and gateway.namespace
        not in (
            None,
            resolved.namespace,
        )
    ):
        peers.append(_namespace_peer(gateway.namespace))
    return peers


def render_network_policy(resolved: Resolved, defaults: NetworkPolicies) -> dict[str, Any]:
    port = platform_of(resolved.spec.serving).pod_port  # KServe's LLM template serves on its own

    def serving_port() -> list[dict[str, Any]]:
        return [{"protocol": "TCP", "port": port}]

    ingress: list[dict[str, Any]] = [{"from": client_peers(resolved), "ports": serving_port()}]
    if defaults.prometheus_namespace:
        ingress.append({"from": [_namespace_peer(defaults.prometheus_namespace)], "ports": serving_port()})
    if defaults.operator_namespace and resolved.spec.rollout.evaluation is not None:
        ingress.append({"from": [_namespace_peer(defaults.operator_namespace)], "ports": serving_port()})
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": model_metadata(resolved.name, resolved.namespace, component="network-policy"),
        "spec": {
            "podSelector": {"matchLabels": {c.LABEL_MODEL: resolved.name}},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def network_policies(resolved: Resolved, defaults: NetworkPolicies | None) -> list[dict[str, Any]]:
    """The model's NetworkPolicy, where it gets one (defaults None: the operator's defaults)."""
    defaults = defaults or NetworkPolicies()
    return [render_network_policy(resolved, defaults)] if wanted(resolved, defaults) else []
