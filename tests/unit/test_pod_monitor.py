"""The model's PodMonitor: what a prometheus-operator makes of it is exactly the analysis label contract.

The harness's prometheus-operator stand-in (`ScrapeTarget.from_pod_monitor`) applies the selector and
the relabeling; the queries must then select each revision's series and no one else's.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from decisions import applies, deletes

from nlpmodel_harness.prometheus import PrometheusError, ScrapeTarget, selects
from nlpmodel_operator.api import constants as c
from nlpmodel_operator.core.analysis.queries import revision_selector
from nlpmodel_operator.core.monitoring import render_pod_monitor
from nlpmodel_operator.core.reconcile import ChildRef, Monitoring, Observation, decide

MONITOR = render_pod_monitor("chat", "ml", scrape_interval_s=15)


def pod(model: str | None = "chat", revision: str | None = "5ab1e000", **more: str) -> dict[str, str]:
    labels = {c.LABEL_MANAGED_BY: c.MANAGED_BY, **more}
    if model is not None:
        labels[c.LABEL_MODEL] = model
    if revision is not None:
        labels[c.LABEL_REVISION] = revision
    return labels


def matchers(selector: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', selector))


@pytest.mark.parametrize("revision", ["5ab1e000", "ca4a2700"])
def test_each_revision_pod_gets_exactly_the_labels_its_queries_select(revision: str) -> None:
    target = ScrapeTarget.from_pod_monitor(MONITOR, "10.0.0.7:8080", "ml", pod(revision=revision))
    assert target is not None
    assert dict(target.labels) == {"namespace": "ml", "nlpmodel_model": "chat", "nlpmodel_revision": revision}
    assert matchers(revision_selector("ml", "chat", revision)) == dict(target.labels)


@pytest.mark.parametrize(
    ("namespace", "labels"),
    [
        ("ml", pod(model="other")),  # another model's pods
        ("ml", pod(revision=None)),  # a pod of the model that is no revision's
        ("other-ns", pod()),  # the same names in another namespace
    ],
)
def test_pods_of_others_are_not_scraped_as_the_models(namespace: str, labels: dict[str, str]) -> None:
    assert ScrapeTarget.from_pod_monitor(MONITOR, "10.0.0.7:8080", namespace, labels) is None


def test_the_endpoint_is_the_serving_port_by_number_with_the_configured_interval() -> None:
    (endpoint,) = MONITOR["spec"]["podMetricsEndpoints"]
    assert (endpoint["portNumber"], endpoint["path"], endpoint["interval"]) == (8080, "/metrics", "15s")
    assert MONITOR["metadata"]["labels"][c.LABEL_MODEL] == "chat"
    assert c.LABEL_REVISION not in MONITOR["metadata"]["labels"]  # the model's, not a revision's


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        ({}, {}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
    ],
)
def test_label_selector_semantics(selector: dict[str, Any], labels: dict[str, str], selected: bool) -> None:
    assert selects(selector, labels) is selected


def test_the_stand_in_refuses_relabelings_it_does_not_implement() -> None:
    monitor = render_pod_monitor("chat", "ml")
    monitor["spec"]["podMetricsEndpoints"][0]["relabelings"].append({"action": "labelmap", "regex": "(.*)"})
    with pytest.raises(PrometheusError, match="does not implement"):
        ScrapeTarget.from_pod_monitor(monitor, "10.0.0.7:8080", "ml", pod())


SPEC: dict[str, Any] = {"model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"}}


def observation(monitoring: Monitoring | None, others: tuple[ChildRef, ...] = ()) -> Observation:
    return Observation(
        "chat", "ml", 1, SPEC, {}, {}, "2026-11-26T10:00:00Z", others=others, monitoring=monitoring
    )


def test_the_pod_monitor_is_applied_first_where_the_cluster_serves_it_and_kept() -> None:
    existing = (ChildRef("monitoring.coreos.com/v1", "PodMonitor", "chat"),)
    decision = decide(observation(Monitoring(15), existing))
    assert applies(decision)[0] == render_pod_monitor("chat", "ml", 15)
    assert deletes(decision) == []


def test_without_pod_monitors_none_is_applied_and_a_leftover_goes() -> None:
    existing = (ChildRef("monitoring.coreos.com/v1", "PodMonitor", "chat"),)
    decision = decide(observation(None, existing))
    assert "PodMonitor" not in {o["kind"] for o in applies(decision)}
    assert deletes(decision) == list(existing)


@pytest.mark.parametrize(
    ("platform", "port", "scheme"),
    [
        pytest.param("kserve", 8080, None, id="kserve-our-runtime"),
        pytest.param("raw", 8080, None, id="raw"),
        pytest.param("kserve-llm", 8000, "https", id="kserve-llm-template-tls"),
    ],
)
def test_the_monitor_scrapes_where_the_platforms_pods_serve(
    platform: str, port: int, scheme: str | None
) -> None:
    spec: dict[str, Any] = {
        "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
        "serving": {"platform": platform, "router": "replica-ratio" if platform == "raw" else "gateway-api"},
    }
    decision = decide(
        Observation("chat", "ml", 1, spec, {}, {}, "2026-12-03T10:00:00Z", monitoring=Monitoring(15))
    )
    (monitor,) = [o for o in applies(decision) if o["kind"] == "PodMonitor"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["portNumber"] == port
    assert endpoint.get("scheme") == scheme
    assert ("tlsConfig" in endpoint) == (scheme == "https")
