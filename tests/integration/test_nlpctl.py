"""`nlpctl promote|abort|retry|pause|resume|status` against the real local control plane.

No operator runs here: the admin creates NLPModels and writes their status through the status
subresource (as the operator would) to put them in a phase; nlpctl runs as a user would (the console
script, in its own process) and the test reads back what it left on the object. Other users (a service
account with few or no rights, a kubeconfig pointing nowhere) cover the errors of exit code 5.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from harness import Cluster, wait_for
from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_operator.api import constants as c

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "llama-8b-awq-kserve.yaml"
NLPCTL = str(Path(sys.executable).with_name("nlpctl"))
NAME = "chat"


def stamp(seconds_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


READY: dict[str, Any] = {
    "phase": "Ready",
    "stableRevision": "1a2b3c4d",
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "ChildrenReady", "message": "serving"},
        {"type": "SpecValid", "status": "True", "reason": "Valid"},
    ],
}
CANARY: dict[str, Any] = {
    "phase": "Progressing",
    "stableRevision": "1a2b3c4d",
    "canaryRevision": "5e6f7a8b",
    "canaryWeight": 10,
    "currentStep": 0,
    "stepStartedAt": stamp(60),
}
PAUSED: dict[str, Any] = {**CANARY, "paused": True}
ROLLED_BACK: dict[str, Any] = {
    "phase": "RolledBack",
    "stableRevision": "1a2b3c4d",
    "failedRevision": "5e6f7a8b",
    "history": [
        {"revision": "1a2b3c4d", "outcome": "Promoted", "reason": "all steps passed", "at": stamp(7200)},
        {
            "revision": "5e6f7a8b",
            "outcome": "RolledBack",
            "reason": "ttft p95 950ms > 800ms",
            "at": stamp(60),
        },
    ],
}
NO_STATUS: dict[str, Any] = {}

CANARY_STATE = "phase Progressing, stable 1a2b3c4d, canary 5e6f7a8b at 10%"


# ------------------------------------------------------------------------------------------ fixtures


def create_model(
    cluster: Cluster, namespace: str, status: dict[str, Any], name: str = NAME
) -> dict[str, Any]:
    """An NLPModel in `namespace` whose status (written through the status subresource) is `status`."""
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"] = {"name": name, "namespace": namespace}
    cluster.apply_model(body)
    if status:
        cluster.api.patch_namespaced_custom_object_status(
            c.GROUP, c.VERSION, namespace, c.PLURAL, name, {"status": status}
        )
    model = cluster.model(namespace, name)
    assert (model.get("status") or {}) == status  # nothing pruned: the CRD knows every field we use
    return model


def command_annotation(cluster: Cluster, namespace: str, name: str = NAME) -> str | None:
    annotations = cluster.model(namespace, name)["metadata"].get("annotations") or {}
    value: str | None = annotations.get(c.ANNOTATION_COMMAND)
    return value


def set_annotation(cluster: Cluster, namespace: str, value: str, name: str = NAME) -> None:
    cluster.api.patch_namespaced_custom_object(
        c.GROUP,
        c.VERSION,
        namespace,
        c.PLURAL,
        name,
        {"metadata": {"annotations": {c.ANNOTATION_COMMAND: value}}},
    )


def env_for(kubeconfig: Path | None) -> dict[str, str]:
    # Only the kubeconfig given: neither the caller's KUBECONFIG nor an in-cluster service account.
    env = {k: v for k, v in os.environ.items() if k not in {"KUBECONFIG", "KUBERNETES_SERVICE_HOST"}}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return env


def nlpctl(
    localplane: LocalPlane, *args: str, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NLPCTL, *args],
        env=env_for(kubeconfig or localplane.admin_kubeconfig),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def kubeconfig_with(localplane: LocalPlane, path: Path, *, token: str | None = None, **context: Any) -> Path:
    """A copy of the admin kubeconfig, with another user's token and/or context fields."""
    config = yaml.safe_load(localplane.admin_kubeconfig.read_text())
    if token is not None:
        config["users"][0]["user"] = {"token": token}
    config["contexts"][0]["context"].update(context)
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def service_account_token(cluster: Cluster, namespace: str, name: str) -> str:
    """A token of a new ServiceAccount (which has no rights until bound), from the token controller."""
    cluster.core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    cluster.core.create_namespaced_secret(
        namespace,
        {
            "metadata": {
                "name": f"{name}-token",
                "annotations": {"kubernetes.io/service-account.name": name},
            },
            "type": "kubernetes.io/service-account-token",
        },
    )

    def token() -> str | None:
        data = cluster.core.read_namespaced_secret(f"{name}-token", namespace).data or {}
        return base64.b64decode(data["token"]).decode() if "token" in data else None

    return wait_for("the service account token", token, 60)


# ---------------------------------------------------------------------------------------- commands

EFFECT = {
    "promote": "promotes the canary to stable, skipping the remaining steps",
    "abort": "rolls the canary back and keeps the stable revision",
    "pause": "holds the canary at its current weight",
    "resume": "continues the paused canary",
    "retry": "rolls out the failed revision again",
}

APPLICABLE = [
    ("promote", CANARY, CANARY_STATE),
    ("promote", PAUSED, f"{CANARY_STATE}, paused"),
    ("abort", CANARY, CANARY_STATE),
    ("abort", PAUSED, f"{CANARY_STATE}, paused"),
    ("pause", CANARY, CANARY_STATE),
    ("resume", PAUSED, f"{CANARY_STATE}, paused"),
    ("retry", ROLLED_BACK, "phase RolledBack, stable 1a2b3c4d, failed 5e6f7a8b"),
]


@pytest.mark.parametrize(("command", "status", "state"), APPLICABLE)
def test_command_that_applies_sets_the_annotation(
    localplane: LocalPlane, cluster: Cluster, namespace: str, command: str, status: dict[str, Any], state: str
) -> None:
    before = create_model(cluster, namespace, status)
    result = nlpctl(localplane, command, NAME, "-n", namespace)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        f"{namespace}/{NAME}: {command} requested ({state}); at its next reconcile the operator {EFFECT[command]}\n"
    )
    after = cluster.model(namespace, NAME)
    assert (after["metadata"].get("annotations") or {}) == {c.ANNOTATION_COMMAND: command}
    # Only the annotation: no new generation (so no new revision), the status untouched.
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]
    assert after.get("status") == before.get("status")


NOT_APPLICABLE = [
    ("promote", READY, "no canary in progress (phase Ready, stable 1a2b3c4d)"),
    ("promote", NO_STATUS, "no canary in progress (no status yet: the operator has not reconciled it)"),
    (
        "promote",
        {**CANARY, "currentStep": 2, "canaryWeight": 50},
        "the canary is already being promoted (phase Progressing, stable 1a2b3c4d, canary 5e6f7a8b at 50%)",
    ),
    ("abort", READY, "no canary in progress (phase Ready, stable 1a2b3c4d)"),
    ("abort", ROLLED_BACK, "no canary in progress (phase RolledBack, stable 1a2b3c4d, failed 5e6f7a8b)"),
    ("pause", READY, "no canary in progress (phase Ready, stable 1a2b3c4d)"),
    (
        "pause",
        PAUSED,
        f"the canary is already paused ({CANARY_STATE}, paused); `nlpctl resume` continues it",
    ),
    ("resume", CANARY, f"not paused ({CANARY_STATE})"),
    ("resume", READY, "not paused (phase Ready, stable 1a2b3c4d)"),
    ("retry", READY, "no failed revision to retry (phase Ready, stable 1a2b3c4d)"),
    ("retry", CANARY, f"no failed revision to retry ({CANARY_STATE})"),
]


@pytest.mark.parametrize(("command", "status", "why"), NOT_APPLICABLE)
def test_command_that_does_not_apply_is_refused(
    localplane: LocalPlane, cluster: Cluster, namespace: str, command: str, status: dict[str, Any], why: str
) -> None:
    create_model(cluster, namespace, status)
    result = nlpctl(localplane, command, NAME, "-n", namespace)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"nlpctl: cannot {command} {namespace}/{NAME}: {why}\n"
    assert command_annotation(cluster, namespace) is None


def test_every_command_is_tried_where_it_applies_and_where_it_does_not() -> None:
    assert {cmd for cmd, _, _ in APPLICABLE} == set(c.COMMANDS) == {cmd for cmd, _, _ in NOT_APPLICABLE}


def test_pending_command_is_refused_unless_forced(
    localplane: LocalPlane, cluster: Cluster, namespace: str
) -> None:
    create_model(cluster, namespace, CANARY)
    assert nlpctl(localplane, "pause", NAME, "-n", namespace).returncode == 0
    assert command_annotation(cluster, namespace) == "pause"

    for command in ("promote", "pause"):
        result = nlpctl(localplane, command, NAME, "-n", namespace)
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == (
            f"nlpctl: cannot {command} {namespace}/{NAME}: an earlier command is still pending ('pause': the "
            "operator has not acted on it yet; is it running?); wait, or rerun with --force to replace it\n"
        )
        assert command_annotation(cluster, namespace) == "pause"

    result = nlpctl(localplane, "promote", NAME, "-n", namespace, "--force")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(
        f"{namespace}/{NAME}: promote requested ({CANARY_STATE}); replaced the pending 'pause'; "
    )
    assert command_annotation(cluster, namespace) == "promote"

    # --force replaces a pending command, it does not make a command apply.
    result = nlpctl(localplane, "resume", NAME, "-n", namespace, "--force")
    assert result.returncode == 1
    assert result.stderr == f"nlpctl: cannot resume {namespace}/{NAME}: not paused ({CANARY_STATE})\n"
    assert command_annotation(cluster, namespace) == "promote"


def test_once_the_operator_clears_the_annotation_the_next_command_goes_through(
    localplane: LocalPlane, cluster: Cluster, namespace: str
) -> None:
    create_model(cluster, namespace, CANARY)
    assert nlpctl(localplane, "pause", NAME, "-n", namespace).returncode == 0
    # What the operator does: act (status.paused) and remove the annotation.
    cluster.api.patch_namespaced_custom_object_status(
        c.GROUP, c.VERSION, namespace, c.PLURAL, NAME, {"status": {"paused": True}}
    )
    cluster.api.patch_namespaced_custom_object(
        c.GROUP,
        c.VERSION,
        namespace,
        c.PLURAL,
        NAME,
        {"metadata": {"annotations": {c.ANNOTATION_COMMAND: None}}},
    )
    result = nlpctl(localplane, "resume", NAME, "-n", namespace)
    assert (result.returncode, result.stderr) == (0, "")
    assert command_annotation(cluster, namespace) == "resume"


# ---------------------------------------------------------------------------------- not found, errors


@pytest.mark.parametrize("command", [*c.COMMANDS, "status"])
def test_unknown_model_and_unknown_namespace(
    localplane: LocalPlane, cluster: Cluster, namespace: str, command: str
) -> None:
    result = nlpctl(localplane, command, "nope", "-n", namespace)
    assert (result.returncode, result.stdout) == (4, "")
    assert result.stderr == f"nlpctl: nlpmodel nope not found in namespace {namespace}\n"

    missing = f"missing-{uuid.uuid4().hex[:8]}"
    result = nlpctl(localplane, command, "nope", "-n", missing)
    assert (result.returncode, result.stdout) == (4, "")
    assert result.stderr == f"nlpctl: namespace {missing} not found\n"


def test_namespace_defaults_to_the_kubeconfig_context(
    localplane: LocalPlane, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    create_model(cluster, namespace, READY)
    result = nlpctl(localplane, "status", NAME)  # the admin context has no namespace: default
    assert (result.returncode, result.stderr) == (4, "nlpctl: nlpmodel chat not found in namespace default\n")

    kubeconfig = kubeconfig_with(localplane, tmp_path / "ns.kubeconfig", namespace=namespace)
    result = nlpctl(localplane, "status", NAME, kubeconfig=kubeconfig)
    assert (result.returncode, result.stderr) == (0, "")
    assert f"nlpmodel  {namespace}/{NAME}\n" in result.stdout
    # --kubeconfig wins over KUBECONFIG, -n over the context.
    result = nlpctl(localplane, "status", NAME, "--kubeconfig", str(kubeconfig), "-n", "default")
    assert result.returncode == 4
    assert result.stderr == "nlpctl: nlpmodel chat not found in namespace default\n"
    result = nlpctl(
        localplane, "status", NAME, "--kubeconfig", str(kubeconfig), kubeconfig=tmp_path / "absent.kubeconfig"
    )
    assert result.returncode == 0


def test_unreachable_cluster_and_bad_kubeconfigs(localplane: LocalPlane, tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere.kubeconfig"
    config = yaml.safe_load(localplane.admin_kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    nowhere.write_text(yaml.safe_dump(config))
    for args in (["promote", NAME], ["status", NAME], ["status", NAME, "--watch", "--timeout", "2"]):
        result = nlpctl(localplane, *args, kubeconfig=nowhere)
        assert (result.returncode, result.stdout) == (5, ""), result.stderr
        assert result.stderr.startswith("nlpctl: cannot reach the cluster at https://127.0.0.1:1: ")
        assert "Connection refused" in result.stderr
        assert "Traceback" not in result.stderr

    result = nlpctl(localplane, "status", NAME, kubeconfig=tmp_path / "absent.kubeconfig")
    assert result.returncode == 5
    assert result.stderr.startswith("nlpctl: no cluster configured: no kubeconfig at ")

    result = nlpctl(localplane, "status", NAME, "--kubeconfig", str(tmp_path / "absent.kubeconfig"))
    assert (result.returncode, result.stderr) == (
        1,
        f"nlpctl: kubeconfig {tmp_path}/absent.kubeconfig not found\n",
    )

    result = nlpctl(localplane, "status", NAME, "--context", "no-such-context")
    assert result.returncode == 1
    assert result.stderr.startswith("nlpctl: invalid kubeconfig ")


def test_permission_denied(localplane: LocalPlane, cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    create_model(cluster, namespace, CANARY)
    rbac = client.RbacAuthorizationV1Api(cluster.api.api_client)

    # No rights at all.
    nobody = kubeconfig_with(
        localplane, tmp_path / "nobody", token=service_account_token(cluster, namespace, "nobody")
    )
    for args in (["promote", NAME], ["status", NAME]):
        result = nlpctl(localplane, *args, "-n", namespace, kubeconfig=nobody)
        assert (result.returncode, result.stdout) == (5, ""), result.stderr
        assert result.stderr.startswith("nlpctl: permission denied: ")
        assert f"system:serviceaccount:{namespace}:nobody" in result.stderr

    # May read NLPModels everywhere, but not patch them nor read namespaces.
    reader_token = service_account_token(cluster, namespace, "reader")
    role = f"nlpctl-test-reader-{namespace}"
    rbac.create_cluster_role(
        {
            "metadata": {"name": role},
            "rules": [{"apiGroups": [c.GROUP], "resources": [c.PLURAL], "verbs": ["get"]}],
        }
    )
    try:
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": role},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
            }
        )
        reader = kubeconfig_with(localplane, tmp_path / "reader", token=reader_token)

        def can_read() -> bool:
            return nlpctl(localplane, "status", NAME, "-n", namespace, kubeconfig=reader).returncode == 0

        wait_for("the binding to take effect", can_read, 30)
        result = nlpctl(localplane, "promote", NAME, "-n", namespace, kubeconfig=reader)
        assert (result.returncode, result.stdout) == (5, "")
        assert result.stderr.startswith("nlpctl: permission denied: ")
        assert "cannot patch resource" in result.stderr
        assert command_annotation(cluster, namespace) is None

        # Without the right to read namespaces, a missing namespace reads as a missing model.
        missing = f"missing-{uuid.uuid4().hex[:8]}"
        result = nlpctl(localplane, "status", "nope", "-n", missing, kubeconfig=reader)
        assert (result.returncode, result.stderr) == (
            4,
            f"nlpctl: nlpmodel nope not found in namespace {missing}\n",
        )
    finally:
        for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
            try:
                delete(role)
            except client.exceptions.ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["promote"], "the following arguments are required: name"),
        (["pause", NAME, "--bogus"], "unrecognized arguments: --bogus"),
        (["status", NAME, "-o", "yaml"], "argument -o/--output: invalid choice: 'yaml'"),
        (
            ["status", NAME, "--watch", "--timeout", "soon"],
            "argument --timeout: not a number of seconds: 'soon'",
        ),
    ],
)
def test_usage_errors_exit_2(localplane: LocalPlane, args: list[str], message: str) -> None:
    result = nlpctl(localplane, *args)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["status", NAME, "--timeout", "2"], 2, "nlpctl: --timeout only applies with --watch\n"),
        (
            ["promote", "Not_A_Name"],
            1,
            "nlpctl: invalid name 'Not_A_Name': NLPModel names are lowercase DNS names\n",
        ),
        (
            ["status", NAME, "-n", "Bad NS"],
            1,
            "nlpctl: invalid namespace 'Bad NS': namespaces are lowercase DNS labels\n",
        ),
    ],
)
def test_invalid_input(localplane: LocalPlane, args: list[str], code: int, message: str) -> None:
    result = nlpctl(localplane, *args)
    assert (result.returncode, result.stderr, result.stdout) == (code, message, "")


def test_help_documents_the_exit_codes(localplane: LocalPlane) -> None:
    for args in ([], ["promote"], ["status"]):
        result = nlpctl(localplane, *args, "--help")
        assert result.returncode == 0
        assert "exit codes:\n  0  done\n  1  invalid input" in result.stdout
        assert "  5  cluster unreachable, or permission denied" in result.stdout


# ------------------------------------------------------------------------------------------ status


def test_status_text(localplane: LocalPlane, cluster: Cluster, namespace: str) -> None:
    started = time.monotonic()
    status = {
        **CANARY,
        "currentStep": 1,
        "canaryWeight": 50,
        "stepStartedAt": stamp(200),  # step 2 pauses 10m: 6m40s left (give or take a second)
        "conditions": READY["conditions"],
        # Stamped now (module constants were stamped at import): the view prints relative ages.
        "history": [
            {"revision": "1a2b3c4d", "outcome": "Promoted", "reason": "all steps passed", "at": stamp(7200)},
            {
                "revision": "5e6f7a8b",
                "outcome": "RolledBack",
                "reason": "ttft p95 950ms > 800ms",
                "at": stamp(60),
            },
        ],
    }
    create_model(cluster, namespace, status)
    set_annotation(cluster, namespace, "pause")
    result = nlpctl(localplane, "status", NAME, "-n", namespace)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    # Where the revisions run and how traffic reaches them (the spec names its platform and router).
    assert lines[2] == "serving    kserve, router gateway-api"
    assert lines[4].startswith("routing    gateway-api on kserve: ")
    lines = lines[:2] + lines[3:4] + lines[5:]
    assert lines[:4] == [
        f"nlpmodel   {namespace}/{NAME}",
        "phase      Progressing",
        "stable     1a2b3c4d",
        "canary     5e6f7a8b at 50%, step 2/2",
    ]
    # 10m pause, started 200 s before `started`: 6m40s left then, less by however long this took.
    left = re.fullmatch(r"steps      \[10%\] ✓  \[50%\] ← (\d+)m(\d+)s left  \[100%\]", lines[4])
    assert left is not None, lines[4]
    seconds = int(left[1]) * 60 + int(left[2])
    assert 400 - (time.monotonic() - started) - 2 <= seconds <= 401
    assert lines[5] == f"time left  {left[1]}m{left[2]}s of 10m in step 2"  # one `now` for the whole view
    assert lines[6:8] == [
        "paused     no",
        "pending    pause (requested; the operator has not acted on it yet)",
    ]
    assert lines[8:] == [
        "",
        "conditions",
        "  TYPE       STATUS  REASON         SINCE  MESSAGE",
        "  Ready      True    ChildrenReady  -      serving",
        "  SpecValid  True    Valid          -",
        "",
        "history (newest first)",
        "  REVISION  OUTCOME     WHEN    REASON",
        "  5e6f7a8b  RolledBack  1m ago  ttft p95 950ms > 800ms",
        "  1a2b3c4d  Promoted    2h ago  all steps passed",
    ]


def test_status_json_is_the_status_object(localplane: LocalPlane, cluster: Cluster, namespace: str) -> None:
    create_model(cluster, namespace, ROLLED_BACK)
    result = nlpctl(localplane, "status", NAME, "-n", namespace, "-o", "json")
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout) == ROLLED_BACK

    create_model(cluster, namespace, NO_STATUS, name="fresh")
    result = nlpctl(localplane, "status", "fresh", "-n", namespace, "-o", "json")
    assert (result.returncode, json.loads(result.stdout)) == (0, {})


def test_status_watch_ends_at_the_timeout(localplane: LocalPlane, cluster: Cluster, namespace: str) -> None:
    create_model(cluster, namespace, READY)
    started = time.monotonic()
    result = nlpctl(localplane, "status", NAME, "-n", namespace, "--watch", "--timeout", "2")
    took = time.monotonic() - started
    assert (result.returncode, result.stderr) == (0, "")
    assert 2 <= took < 30
    # Into a pipe, a view is printed only when something changed: nothing did.
    assert result.stdout.count("phase     Ready") == 1
    assert result.stdout.startswith(f"nlpmodel  {namespace}/{NAME}\nphase     Ready\n")


def watch_process(localplane: LocalPlane, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [NLPCTL, "status", *args, "--watch"],
        env=env_for(localplane.admin_kubeconfig),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_status_watch_prints_each_change(localplane: LocalPlane, cluster: Cluster, namespace: str) -> None:
    create_model(cluster, namespace, CANARY)
    proc = watch_process(localplane, NAME, "-n", namespace, "--timeout", "20")
    try:
        assert proc.stdout is not None
        first = [proc.stdout.readline() for _ in range(2)]
        assert first == [f"nlpmodel   {namespace}/{NAME}\n", "phase      Progressing\n"]
        # The operator promotes: the canary becomes stable.
        promoted = copy.deepcopy(READY)
        promoted["stableRevision"] = "5e6f7a8b"
        promoted["history"] = [{"revision": "5e6f7a8b", "outcome": "Promoted", "at": stamp(0)}]
        promoted.update(canaryRevision=None, canaryWeight=None, currentStep=None, stepStartedAt=None)
        cluster.api.patch_namespaced_custom_object_status(
            c.GROUP, c.VERSION, namespace, c.PLURAL, NAME, {"status": promoted}
        )
        wait_for("the new view", lambda: proc.stdout.readline() == "phase     Ready\n" or None, 15, 0)  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)  # Ctrl-C ends a watch cleanly
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, err) == (0, "")
    assert "Traceback" not in out


def test_status_watch_of_a_deleted_model(localplane: LocalPlane, cluster: Cluster, namespace: str) -> None:
    create_model(cluster, namespace, READY)
    proc = watch_process(localplane, NAME, "-n", namespace, "--timeout", "30")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"nlpmodel  {namespace}/{NAME}\n"
        cluster.delete_model(namespace, NAME)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, err) == (4, f"nlpctl: nlpmodel {NAME} not found in namespace {namespace}\n")
