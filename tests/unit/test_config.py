"""The operator's configuration is read from the environment it is given, when it is asked to."""

from __future__ import annotations

from nlpmodel_operator.controller.config import OperatorConfig


def test_defaults_without_any_setting() -> None:
    assert OperatorConfig.from_env({}) == OperatorConfig()


def test_settings_come_from_the_environment_passed() -> None:
    config = OperatorConfig.from_env(
        {
            "NLPMODEL_RESYNC_SECONDS": "30",
            "NLPMODEL_PROMETHEUS_URL": "http://prom:9090",
            "NLPMODEL_POD_MONITORS": "false",
            "NLPMODEL_PEERING_PRIORITY": "7",
            "NLPMODEL_PEERING_LIFETIME_SECONDS": "20",
            "NLPMODEL_NETWORK_POLICIES": "true",
            "NLPMODEL_NETWORK_POLICY_PROMETHEUS_NAMESPACE": "",
        }
    )
    assert (config.resync_seconds, config.prometheus_url, config.pod_monitors) == (
        30.0,
        "http://prom:9090",
        False,
    )
    assert (config.peering_priority, config.peering_lifetime_seconds) == (7, 20)
    assert (config.network_policies, config.network_policy_prometheus_namespace) == (True, "")
    assert config.namespaces == ()  # from the command line, not the environment


def test_the_evaluation_gate_settings() -> None:
    assert OperatorConfig().evaluation_url_template == "http://{service}.{namespace}.svc.cluster.local"
    config = OperatorConfig.from_env(
        {
            "NLPMODEL_OPERATOR_NAMESPACE": "nlpmodel-system",
            "NLPMODEL_EVALUATION_URL_TEMPLATE": "http://127.0.0.1:9000/{namespace}/{service}",
        }
    )
    assert config.operator_namespace == "nlpmodel-system"
    assert (
        config.evaluation_url_template.format(service="chat-1", namespace="ml")
        == "http://127.0.0.1:9000/ml/chat-1"
    )


def test_the_reconcile_threads_setting_allows_at_least_one() -> None:
    assert OperatorConfig.from_env({"NLPMODEL_RECONCILE_THREADS": "32"}).reconcile_threads == 32
    assert OperatorConfig.from_env({"NLPMODEL_RECONCILE_THREADS": "0"}).reconcile_threads == 1
