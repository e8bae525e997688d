"""The evaluation gate's example (manifests/examples/evaluation) is valid: the model passes
`nlpctl validate`, its dataset parses, and the ConfigMap is the one the model names."""

from __future__ import annotations

from pathlib import Path

import yaml

from nlpmodel_operator.cli.main import main
from nlpmodel_operator.core.evaluation.dataset import parse_dataset

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "evaluation"


def test_the_example_model_is_valid() -> None:
    assert main(["validate", str(EXAMPLE / "support-assistant.yaml")]) == 0


def test_the_example_dataset_is_the_one_the_model_names_and_parses() -> None:
    model = yaml.safe_load((EXAMPLE / "support-assistant.yaml").read_text())
    dataset = model["spec"]["rollout"]["evaluation"]["dataset"]
    config_map = yaml.safe_load((EXAMPLE / "support-golden.yaml").read_text())
    assert config_map["kind"] == "ConfigMap"
    assert (config_map["metadata"]["name"], config_map["metadata"]["namespace"]) == (
        dataset["configMap"],
        model["metadata"]["namespace"],
    )
    cases = parse_dataset(config_map["data"][dataset["key"]])
    assert {case.expect.scorer for case in cases} >= {
        "contains",
        "json",
        "exact",
        "regex",
        "refusal",
        "agreement",
    }
