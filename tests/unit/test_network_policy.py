"""The optional NetworkPolicy per model: whether a model gets one, who it lets in, and that decide()
applies it, and deletes it once it is switched off."""

from __future__ import annotations

from typing import Any

import pytest
from decisions import applies, deletes

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.networkpolicy import NAMESPACE_NAME_LABEL, NetworkPolicies, network_policies
from nlpmodel_operator.core.reconcile import Observation, decide
from nlpmodel_operator.core.records import ChildRef, RevisionState
from nlpmodel_operator.core.resolve import resolve
from nlpmodel_operator.core.resolved import Resolved
from nlpmodel_operator.core.revision import revision_hash

MODEL = {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"}
ON = NetworkPolicies(enabled_by_default=True)
OFF = NetworkPolicies()


def resolved(**serving: Any) -> Resolved:
    spec = NLPModelSpec.model_validate({"model": MODEL, "serving": serving})
    resolution = resolve("chat", "ml", spec)
    assert resolution.resolved is not None, resolution.problems
    return resolution.resolved


def namespace_peer(namespace: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}


@pytest.mark.parametrize(
    ("serving", "defaults", "rendered"),
    [
        pytest.param({}, OFF, False, id="off-by-default"),
        pytest.param({}, ON, True, id="cluster-default-on"),
        pytest.param({"networkPolicy": {"enabled": False}}, ON, False, id="model-off-wins"),
        pytest.param({"networkPolicy": {"enabled": True}}, OFF, True, id="model-on-wins"),
        pytest.param(
            {"networkPolicy": {"clients": [{"namespace": "x"}]}}, OFF, False, id="clients-alone-not-on"
        ),
        pytest.param({"router": "kserve-canary"}, ON, False, id="never-on-knative"),
        pytest.param({"platform": "raw", "router": "replica-ratio"}, ON, True, id="raw"),
    ],
)
def test_whether_a_model_gets_one(serving: dict[str, Any], defaults: NetworkPolicies, rendered: bool) -> None:
    assert len(network_policies(resolved(**serving), defaults)) == int(rendered)


@pytest.mark.parametrize(
    ("serving", "clients"),
    [
        pytest.param({}, [{"podSelector": {}}], id="the-model-namespace"),
        pytest.param(
            {"gateway": {"name": "gw", "namespace": "gateways"}},
            [{"podSelector": {}}, namespace_peer("gateways")],
            id="and-the-gateway-namespace",
        ),
        pytest.param(
            {"gateway": {"name": "gw", "namespace": "ml"}},
            [{"podSelector": {}}],
            id="gateway-in-the-model-ns",
        ),
        pytest.param(
            {"router": "replica-ratio", "gateway": {"name": "gw", "namespace": "gateways"}},
            [{"podSelector": {}}],
            id="gateway-ignored-without-gateway-api",
        ),
        pytest.param(
            {"router": "inference-pool", "gateway": {"name": "gw", "namespace": "gateways"}},
            [{"podSelector": {}}, namespace_peer("gateways")],
            id="inference-pool-gateway-namespace",
        ),
        pytest.param(
            {
                "networkPolicy": {
                    "clients": [
                        {"namespace": "apps"},
                        {"podLabels": {"app": "chat-ui"}},
                        {"namespace": "edge", "podLabels": {"app": "proxy"}},
                    ]
                }
            },
            [
                {**namespace_peer("apps"), "podSelector": {}},
                {"podSelector": {"matchLabels": {"app": "chat-ui"}}},
                {**namespace_peer("edge"), "podSelector": {"matchLabels": {"app": "proxy"}}},
            ],
            id="clients-replace-the-defaults",
        ),
    ],
)
def test_who_may_reach_the_model(serving: dict[str, Any], clients: list[dict[str, Any]]) -> None:
    (policy,) = network_policies(resolved(**serving), ON)
    assert policy["metadata"]["name"] == "chat"
    assert policy["metadata"]["namespace"] == "ml"
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"serving.nlpmodel.dev/model": "chat"}}
    assert spec["policyTypes"] == ["Ingress"]
    port = [{"protocol": "TCP", "port": 8080}]
    assert spec["ingress"] == [
        {"from": clients, "ports": port},
        {"from": [namespace_peer("monitoring")], "ports": port},
    ]


def test_no_scrape_rule_without_a_prometheus_namespace() -> None:
    (policy,) = network_policies(resolved(), NetworkPolicies(True, None))
    assert [rule["from"] for rule in policy["spec"]["ingress"]] == [[{"podSelector": {}}]]


@pytest.mark.parametrize(
    ("evaluation", "operator_namespace", "allowed"),
    [
        (True, "nlpmodel-system", True),
        (False, "nlpmodel-system", False),  # the operator never calls a model it does not evaluate
        (True, None, False),  # its namespace unknown: no rule (nlpctl render without --operator-namespace)
    ],
)
def test_the_operator_may_reach_a_model_it_evaluates(
    evaluation: bool, operator_namespace: str | None, allowed: bool
) -> None:
    rollout = {"evaluation": {"dataset": {"configMap": "golden", "key": "cases.jsonl"}}} if evaluation else {}
    spec = NLPModelSpec.model_validate({"model": MODEL, "rollout": rollout})
    resolution = resolve("chat", "ml", spec)
    assert resolution.resolved is not None
    (policy,) = network_policies(resolution.resolved, NetworkPolicies(True, None, operator_namespace))
    sources = [rule["from"] for rule in policy["spec"]["ingress"]]
    assert ([namespace_peer("nlpmodel-system")] in sources) is allowed


def observation(
    serving: dict[str, Any], network: NetworkPolicies, others: tuple[ChildRef, ...]
) -> Observation:
    spec = {"model": MODEL, "serving": serving, "rollout": {"strategy": "direct"}}
    revision = revision_hash(NLPModelSpec.model_validate(spec))
    refs = (ChildRef("serving.kserve.io/v1beta1", "InferenceService", f"chat-{revision}"),)
    return Observation(
        "chat",
        "ml",
        1,
        spec,
        {"stableRevision": revision, "phase": "Ready"},
        {revision: RevisionState(revision, refs, True)},
        "2026-11-26T10:00:00Z",
        others=others,
        network=network,
    )


POLICY_REF = ChildRef("networking.k8s.io/v1", "NetworkPolicy", "chat")


@pytest.mark.parametrize(
    ("serving", "network", "others", "applied", "deleted"),
    [
        pytest.param({"networkPolicy": {"enabled": True}}, OFF, (), True, False, id="switched-on"),
        pytest.param({"networkPolicy": {"enabled": True}}, OFF, (POLICY_REF,), True, False, id="kept"),
        pytest.param(
            {"networkPolicy": {"enabled": False}}, ON, (POLICY_REF,), False, True, id="switched-off"
        ),
        pytest.param({}, OFF, (POLICY_REF,), False, True, id="cluster-default-turned-off"),
        pytest.param({}, OFF, (), False, False, id="never-had-one"),
    ],
)
def test_decide_applies_it_and_deletes_it_once_switched_off(
    serving: dict[str, Any],
    network: NetworkPolicies,
    others: tuple[ChildRef, ...],
    applied: bool,
    deleted: bool,
) -> None:
    decision = decide(observation(serving, network, others))
    assert any(o["kind"] == "NetworkPolicy" for o in applies(decision)) is applied
    assert (POLICY_REF in deletes(decision)) is deleted


def test_decide_applies_it_mid_canary_too() -> None:
    at_rest = observation({"networkPolicy": {"enabled": True}}, OFF, ())
    changed = {**at_rest.spec, "rollout": {"strategy": "canary"}, "runtime": {"maxModelLen": 4096}}
    canary = revision_hash(NLPModelSpec.model_validate(changed))
    stable = next(iter(at_rest.revisions))
    decision = decide(
        Observation(
            "chat",
            "ml",
            2,
            changed,
            {"stableRevision": stable, "phase": "Ready"},
            at_rest.revisions,
            "2026-11-26T10:00:00Z",
            others=(POLICY_REF,),
        )
    )
    assert canary != stable
    names = [o["metadata"]["name"] for o in applies(decision)]
    assert f"chat-{canary}" in names  # the canary is being rolled out
    assert [o["metadata"]["name"] for o in applies(decision) if o["kind"] == "NetworkPolicy"] == ["chat"]
    assert POLICY_REF not in deletes(decision)


@pytest.mark.parametrize(
    ("serving", "port"),
    [
        pytest.param({}, 8080, id="kserve-our-runtime"),
        pytest.param({"platform": "raw", "router": "replica-ratio"}, 8080, id="raw"),
        pytest.param({"platform": "kserve-llm"}, 8000, id="kserve-llm-template"),
    ],
)
def test_the_policy_opens_the_port_the_platforms_pods_serve_on(serving: dict[str, Any], port: int) -> None:
    (policy,) = network_policies(resolved(**serving), ON)
    ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert ports == {port}
