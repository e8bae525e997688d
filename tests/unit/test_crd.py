"""The committed CRD is generated from the API models and documents every field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.crd import crd, render_crd_yaml

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / f"{c.CRD_NAME}.yaml"


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


def served_schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crd_is_up_to_date() -> None:
    assert CRD_FILE.read_text() == render_crd_yaml(), "crds/ is stale: run `make crds` and commit the result"


def test_every_spec_and_status_field_has_a_description() -> None:
    root = served_schema()
    missing = [
        path
        for top in ("spec", "status")
        for path, node in walk(root["properties"][top], f".{top}")
        # Scalar list items (e.g. args[]) are explained by their list's description.
        if not node.get("description") and not (path.endswith("[]") and node.get("type") != "object")
    ]
    assert missing == []


def test_schema_is_structural() -> None:
    """No $ref/anyOf/allOf, and every node has a type (the API server refuses non-structural schemas)."""
    for path, node in walk(served_schema()):
        assert not {"$ref", "anyOf", "allOf", "oneOf", "$defs", "title"} & node.keys(), path
        if path.endswith(".metadata"):
            continue
        assert "type" in node, path


def test_enums_and_defaults_reach_the_schema() -> None:
    spec = served_schema()["properties"]["spec"]["properties"]
    assert spec["task"]["enum"] == ["generate", "embed", "classify", "rerank"]
    assert spec["task"]["default"] == "generate"
    assert "bitsandbytes-nf4" in spec["quantization"]["properties"]["method"]["enum"]
    assert spec["resources"]["properties"]["gpu"]["properties"]["product"]["enum"][-1] == "nvidia-h200-141gb"
    assert spec["rollout"]["properties"]["steps"]["default"] == [
        {"weight": 10, "pause": "5m"},
        {"weight": 50, "pause": "10m"},
    ]
    # Sub-objects default to {} so that the API server fills their own defaults in.
    for section in ("runtime", "quantization", "resources", "serving", "scaling", "rollout"):
        assert spec[section]["default"] == {}, section
    assert served_schema()["required"] == ["spec"]
    assert spec["model"]["required"] == ["uri"]


def test_cel_rules_cover_the_cross_field_invariants() -> None:
    rules = {
        rule["message"]
        for _, node in walk(served_schema())
        for rule in node.get("x-kubernetes-validations", [])
    }
    assert {
        "minReplicas must be <= maxReplicas",
        "step weights must be strictly ascending",
        "analysis requires slo",
        "evaluation requires strategy canary (a direct rollout has no step to hold)",
        "router kserve-canary requires platform kserve",
        "product requires count > 0",
        "numKVHeads must be <= numHeads",
    } <= rules


def test_names_columns_and_subresources() -> None:
    spec = crd()["spec"]
    assert spec["group"] == "serving.nlpmodel.dev"
    assert spec["names"]["kind"] == "NLPModel"
    assert spec["names"]["plural"] == "nlpmodels"
    assert spec["names"]["shortNames"] == ["nlpm"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1"
    assert [col["name"] for col in version["additionalPrinterColumns"]] == [
        "Task",
        "Phase",
        "Stable",
        "Canary",
        "Weight",
        "Ready",
        "Age",
    ]
    assert version["subresources"]["status"] == {}
    scale = version["subresources"]["scale"]
    assert scale["specReplicasPath"] == ".spec.scaling.replicas"
    assert scale["statusReplicasPath"] == ".status.replicas"


def test_crd_file_parses_as_one_document() -> None:
    docs = list(yaml.safe_load_all(CRD_FILE.read_text()))
    assert len(docs) == 1
    assert docs[0]["metadata"]["name"] == c.CRD_NAME
