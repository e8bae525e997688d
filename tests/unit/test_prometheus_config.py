"""The harness's Prometheus config: what promtool accepts, and the labels a PodMonitor would write."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nlpmodel_harness.prometheus import JOB_NAME, PrometheusProcess, ScrapeTarget, render_config
from nlpmodel_operator.api.constants import LABEL_MODEL, LABEL_REVISION


def test_rendered_config_passes_promtool(tmp_path: Path) -> None:
    targets = [
        ScrapeTarget.for_revision("127.0.0.1:8001", "team-a", "chat", "5ab1e000"),
        ScrapeTarget.from_pod("127.0.0.1:8002", "team-a", {LABEL_MODEL: "chat", LABEL_REVISION: "ca4a2700"}),
        ScrapeTarget.for_revision("127.0.0.1:8003", "odd ns", 'quote"d', "back\\slash"),
    ]
    prometheus = PrometheusProcess(targets, work_dir=tmp_path, scrape_interval_s=0.5)
    assert "SUCCESS" in prometheus.check_config()  # runs promtool; starts no server
    config = yaml.safe_load(prometheus.config_path.read_text())
    assert config["global"] == {"scrape_interval": "500ms", "evaluation_interval": "500ms"}
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB_NAME
    assert [g["targets"] for g in job["static_configs"]] == [[t.address] for t in targets]
    assert job["static_configs"][1]["labels"] == {
        "namespace": "team-a",
        "nlpmodel_model": "chat",
        "nlpmodel_revision": "ca4a2700",
    }
    assert job["static_configs"][2]["labels"]["nlpmodel_model"] == 'quote"d'


def test_a_pod_without_the_operators_labels_is_not_a_target() -> None:
    with pytest.raises(ValueError, match="no PodMonitor selects it"):
        ScrapeTarget.from_pod("127.0.0.1:8001", "team-a", {LABEL_MODEL: "chat"})


def test_empty_config_renders() -> None:
    assert yaml.safe_load(render_config([]))["scrape_configs"][0]["static_configs"] == []
