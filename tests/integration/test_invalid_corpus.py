"""The bad-input corpus (tests/data/invalid, see corpus.py) against the real API server and the running
operator, while valid models are created in the same namespace at the same time.

Each file's `# expect:` line says what must happen to it:
- `rejected: PATH`: the API server refuses it (422) and names PATH;
- `cel: MESSAGE`: a CEL rule refuses it where the server evaluates CEL (>= 1.25); older servers accept
  it and the operator marks it `SpecValid=False` with MESSAGE;
- `invalid: MESSAGE`: accepted, then `SpecValid=False` with MESSAGE (checks only the operator makes);
- `unknown: PATH`: an unknown field: refused with PATH where the server validates fields strictly
  (fieldValidation=Strict, >= 1.25); an older server silently drops it (the stored object lacks it),
  and kubectl's own validation against the server's published schema refuses the file with PATH.
Nothing of an invalid model is created, and the operator stays up and serves the valid ones."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from corpus import CORPUS, Case, load
from kubernetes.client.exceptions import ApiException

from harness import Cluster, OperatorProcess, wait_for
from nlpmodel_harness.k8stools import ensure_tools
from nlpmodel_harness.localplane import LocalPlane
from nlpmodel_harness.standins import StandInControllers
from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.status import to_json
from nlpmodel_operator.core.reconcile import Observation, decide
from nlpmodel_operator.core.validation import object_problems

STRICT_FIELDS_SINCE = (1, 25)
CEL_SINCE = (1, 25)
VALID = 6  # valid models created among the invalid ones


def valid_model(namespace: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": f"ok-{i}", "namespace": namespace},
        "spec": {
            "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "quantization": {"method": "awq"},
            "resources": {"gpu": {"count": 1, "product": "nvidia-l4"}},
            "rollout": {"strategy": "direct"},
        },
    }


@pytest.fixture
def standins(localplane: LocalPlane, namespace: str) -> Iterator[None]:
    admin = localplane.admin_client()
    with StandInControllers(admin, namespace):
        yield
    admin.close()


def create(cluster: Cluster, namespace: str, body: dict[str, Any]) -> ApiException | None:
    try:
        cluster.api.create_namespaced_custom_object(
            c.GROUP,
            c.VERSION,
            namespace,
            c.PLURAL,
            {**body, "metadata": {**body["metadata"], "namespace": namespace}},
            field_validation="Strict",
        )
    except ApiException as exc:
        return exc
    return None


def kubectl_refusal(localplane: LocalPlane, namespace: str, path: Path) -> subprocess.CompletedProcess[str]:
    """What `kubectl create --validate=strict` says about the file (it validates against the server's
    published OpenAPI schema where the server cannot validate fields itself)."""
    return subprocess.run(
        [
            str(ensure_tools().kubectl),
            "--kubeconfig",
            str(localplane.admin_kubeconfig),
            "create",
            "--dry-run=server",
            "--validate=strict",
            "-n",
            namespace,
            "-f",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_every_bad_input_is_refused_or_marked_invalid_while_valid_models_are_served(
    cluster: Cluster, operator: OperatorProcess, localplane: LocalPlane, namespace: str, standins: None
) -> None:
    version = localplane.server_version
    pid = operator.proc.pid if operator.proc else None
    accepted: dict[str, Case] = {}
    refusals: dict[str, str] = {}
    pruned: dict[str, Case] = {}
    valid = iter(range(VALID))
    every = len(CORPUS) // VALID
    for n, case in enumerate(load(path) for path in CORPUS):
        if n % every == 0 and (i := next(valid, None)) is not None:
            cluster.apply_model(valid_model(namespace, i))  # valid models arrive among the bad ones
        refused = create(cluster, namespace, case.body)
        if case.kind == "rejected" or (case.kind == "cel" and version >= CEL_SINCE):
            assert refused is not None, f"{case.file}: accepted"
            assert refused.status == 422, f"{case.file}: {refused.status} {refused.body}"
            refusals[case.file] = refused.body
        elif case.kind == "unknown" and version >= STRICT_FIELDS_SINCE:
            assert refused is not None, f"{case.file}: accepted"
            refusals[case.file] = refused.body
        elif case.kind == "unknown":
            assert refused is None, f"{case.file}: {refused.body if refused else ''}"
            pruned[case.file] = case
        else:
            assert refused is None, f"{case.file}: refused: {refused.body if refused else ''}"
            accepted[case.name] = case
    unnamed = [
        f"{file}: {case.expected!r} not in {refusals[file][:300]}"
        for file, case in ((x.file, x) for x in map(load, CORPUS) if x.file in refusals)
        if not names(refusals[file], case.expected)
    ]
    assert unnamed == []

    # Accepted but invalid: SpecValid=False with the path and message, Failed, nothing created.
    def marked(case: Case) -> dict[str, Any] | None:
        cond = cluster.condition(namespace, case.name, "SpecValid")
        return cond if cond and cond.get("status") == "False" else None

    wrong = []
    for name, case in accepted.items():
        cond = wait_for(f"{case.file} marked SpecValid=False", lambda case=case: marked(case), 60)
        if case.expected not in cond["message"]:
            wrong.append(f"{case.file}: {case.expected!r} not in {cond['message']!r}")
        assert cluster.model(namespace, name)["status"]["phase"] == "Failed"
    assert wrong == []
    # An unknown field the server dropped: the stored object lacks it, kubectl's validation names it.
    for file, case in pruned.items():
        stored = cluster.model(namespace, case.name)
        assert not _has_path(stored, case.expected), f"{file}: {case.expected} was stored"
        refusal = kubectl_refusal(localplane, namespace, CORPUS[[p.name for p in CORPUS].index(file)])
        assert refusal.returncode != 0, f"{file}: kubectl accepted it"
        leaf = case.expected.rsplit(".", 1)[-1]
        assert f'unknown field "{leaf}"' in refusal.stderr, refusal.stderr

    # The valid models created meanwhile are served; the invalid ones have no children at all.
    for i in range(VALID):
        wait_for(
            f"ok-{i} Ready",
            lambda i=i: (cluster.model(namespace, f"ok-{i}").get("status") or {}).get("phase") == "Ready",
            90,
        )
    owners = {
        isvc["metadata"]["ownerReferences"][0]["name"] for isvc in cluster.inference_services(namespace)
    }
    assert owners == {f"ok-{i}" for i in range(VALID)} | {p.name for p in pruned.values()}
    assert operator.alive(), operator.log_tail()
    assert operator.proc is not None
    assert operator.proc.pid == pid  # the same process throughout
    print(
        f"\n{len(CORPUS)} bad inputs: {len(refusals)} refused by the API server, {len(accepted)} marked "
        f"SpecValid=False, {len(pruned)} unknown fields dropped by a server without strict field validation"
    )


def names(message: str, expected: str) -> bool:
    """The message names the path (servers before 1.2x name a list's items without their index)."""
    return expected in message or re.sub(r"\[\d+\]", "", expected) in message


def _has_path(obj: Any, path: str) -> bool:
    node = obj
    for part in path.replace("]", "").replace("[", ".").split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return True


def test_the_corpus_is_big_covers_every_kind_and_each_file_is_invalid_offline_too() -> None:
    """No cluster: `nlpctl validate`'s checks and the operator's decision find each file's problem
    (but the annotation size, which only the API server limits)."""
    cases = [load(p) for p in CORPUS]
    assert len(cases) >= 50
    topics = {c.file.split("-", 2)[1] for c in cases}
    assert topics >= {
        "type",
        "range",
        "enum",
        "pattern",
        "oversized",
        "name",
        "unicode",
        "cross",
        "engine",
        "gpu",
        "unknown",
    }
    assert {c.kind for c in cases} == {"rejected", "cel", "invalid", "unknown"}
    missed: list[str] = []
    for case in cases:
        _, problems = object_problems(case.body)
        if not problems and isinstance(case.body.get("spec"), dict):
            decision = decide(
                Observation(case.name, "ns", 1, case.body["spec"], {}, {}, "2026-11-26T10:00:00Z")
            )
            spec_valid = next(x for x in to_json(decision.status)["conditions"] if x["type"] == "SpecValid")
            problems = [spec_valid["message"]] if spec_valid["status"] == "False" else []
            assert decision.actions == [] or not problems
        missed += [] if problems else [case.file]
    assert missed == ["46-oversized-annotation-1mib.yaml"]  # only the API server limits annotations
