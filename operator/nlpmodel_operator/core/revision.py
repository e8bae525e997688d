"""Revisions: the hash of the serving template and the deterministic names derived from it.

The template is what the pods run: task, model, runtime, quantization, resources and the serving
platform. Scaling, rollout and routing (router, gateway, hostnames) are left out on purpose, so that
changing them never restarts a GPU pod. Fields equal to their default are left out too, so that a new
optional field in a later operator version does not change every existing revision.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from nlpmodel_operator.api.constants import REVISION_HASH_LEN
from nlpmodel_operator.api.spec import NLPModelSpec


def serving_template(spec: NLPModelSpec) -> dict[str, Any]:
    dumped = spec.model_dump(by_alias=True, exclude_defaults=True, mode="json")
    template: dict[str, Any] = {
        key: dumped[key] for key in ("task", "model", "runtime", "quantization", "resources") if key in dumped
    }
    platform = spec.serving.platform
    if platform != "kserve":
        template["serving"] = {"platform": platform}
    return template


def revision_hash(spec: NLPModelSpec) -> str:
    """First 8 hex digits of the SHA-256 of the canonical JSON of the serving template."""
    canonical = json.dumps(serving_template(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_HASH_LEN]


def revision_name(model_name: str, revision: str) -> str:
    """Name of a revision's child workload: `<model>-<hash8>`."""
    return f"{model_name}-{revision}"
