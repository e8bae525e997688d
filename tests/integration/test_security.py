"""Security on the local control plane. The chart's side is proven in tests/chart/test_chart.py (RBAC:
no Secret access and no wildcards, read from the chart; the operator pod meets the restricted profile),
and every integration test runs the operator bound to exactly those rules. Here: credentials are only
ever referenced (the Secret's value appears in no object and no log), and the pods the real ReplicaSet
controller creates for a model run as non-root where the runtime image allows it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from harness import Cluster, OperatorProcess, wait_for
from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_operator.api import constants as c

TOKEN_KEYS = ("HF_TOKEN", "AWS_SECRET_ACCESS_KEY")  # hf:// and s3:// read these
EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"


def raw_model(namespace: str, example: str) -> dict[str, Any]:
    """An example on plain Deployments (their pods are created here; KServe's are not), with download
    credentials."""
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / example).read_text())
    body["metadata"] = {"name": "m", "namespace": namespace}
    body["spec"]["serving"] = {"platform": "raw", "router": "replica-ratio"}
    body["spec"]["model"]["credentialsSecret"] = "model-credentials"
    body["spec"]["model"]["uri"] = (
        "hf://" + body["spec"]["model"]["uri"].split("://", 1)[1]
    )  # read by the pod
    return body


def everything_in(cluster: Cluster, namespace: str) -> str:
    """Every object of the namespace the operator or a controller wrote, as one JSON text."""
    api = cluster.api.api_client
    objects: list[Any] = [
        cluster.api.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL),
        cluster.apps.list_namespaced_deployment(namespace),
        cluster.apps.list_namespaced_replica_set(namespace),
        cluster.core.list_namespaced_pod(namespace),
        cluster.core.list_namespaced_service(namespace),
        cluster.core.list_namespaced_event(namespace),
        cluster.core.list_namespaced_config_map(namespace),
        cluster.api.list_namespaced_custom_object("monitoring.coreos.com", "v1", namespace, "podmonitors"),
    ]
    return json.dumps([api.sanitize_for_serialization(o) for o in objects])


@pytest.mark.parametrize(
    ("example", "engine"), [("bert-classifier-cpu.yaml", "transformers"), ("bge-embeddings-raw.yaml", "vllm")]
)
def test_credentials_are_referenced_never_copied_and_pods_run_as_non_root_where_the_image_allows(
    cluster: Cluster,
    operator: OperatorProcess,
    localplane: LocalPlane,
    namespace: str,
    example: str,
    engine: str,
) -> None:
    secret_value = f"s3cr3t-{uuid.uuid4().hex}"
    cluster.core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "model-credentials"}, "stringData": dict.fromkeys(TOKEN_KEYS, secret_value)},
    )
    body = raw_model(namespace, example)
    assert body["spec"].get("runtime", {}).get("engine", "vllm") == engine
    cluster.apply_model(body)
    name = body["metadata"]["name"]
    pods = wait_for(
        "the ReplicaSet's pods",
        lambda: cluster.core.list_namespaced_pod(namespace, label_selector=f"{c.LABEL_MODEL}={name}").items,
        60,
    )
    wait_for("status written", lambda: (cluster.model(namespace, name).get("status") or {}).get("phase"), 60)

    # Referenced: the pod's environment names the Secret and its key; nothing holds the value.
    container = pods[0].spec.containers[0]
    refs = {(e.name, e.value_from.secret_key_ref.name) for e in container.env or [] if e.value_from}
    assert {(key, "model-credentials") for key in TOKEN_KEYS} & refs
    assert all(e.value != secret_value for e in container.env or [])
    assert secret_value not in everything_in(cluster, namespace)
    log = operator.log_path.read_text(errors="replace")
    assert secret_value not in log
    # Nor is the operator's own bearer token ever logged.
    own_token = yaml.safe_load(localplane.operator_kubeconfig.read_text())["users"][0]["user"]["token"]
    assert own_token not in log

    # The pod the API server admitted (created by the real ReplicaSet controller).
    ctx = container.security_context
    assert ctx.allow_privilege_escalation is False
    assert ctx.capabilities.drop == ["ALL"]
    assert not ctx.capabilities.add
    assert ctx.seccomp_profile.type == "RuntimeDefault"
    assert not ctx.privileged
    if engine == "transformers":  # our runtime image runs as an unprivileged user
        assert ctx.run_as_non_root is True
        assert ctx.run_as_user not in (None, 0)
    # The upstream vLLM image runs as root: it keeps the rest of the restricted settings.
    pod_spec = pods[0].spec
    assert not pod_spec.host_network
    assert not pod_spec.host_pid
    assert not pod_spec.host_ipc
    assert not [v for v in pod_spec.volumes or [] if v.host_path is not None]
    # The operator cannot read Secrets at all (its RBAC, bound as the chart binds it).
    for verb in ("get", "list", "watch"):
        review = client.AuthorizationV1Api(cluster.api.api_client).create_subject_access_review(
            {
                "spec": {
                    "user": "nlpmodel-operator",
                    "resourceAttributes": {"namespace": namespace, "verb": verb, "resource": "secrets"},
                }
            }
        )
        assert review.status.allowed is False, verb
