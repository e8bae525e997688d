"""Check prometheus-operator objects whose CRD is not among the pinned upstream files (PodMonitor).

The models come from ``cloudcoil-models-prometheus-operator`` (PyPI), generated from prometheus-operator's
own CRDs (release 0.80.1): each field, type, enum and bound of the CRD is a field of a pydantic model.
They ignore unknown fields, so an object is also read back and compared: a field the model drops is a
field the API server would prune. A dev/test dependency only; the operator never imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic

__all__ = ["MODELS_RELEASE", "check_prometheus_operator_object", "models_for", "pod_monitor_stand_in_crd"]

MODELS_RELEASE = "0.80.1"


def models_for(kind: str) -> type[pydantic.BaseModel] | None:
    from cloudcoil.models.prometheus_operator import v1  # noqa: PLC0415  (heavy; test-only)

    found: type[pydantic.BaseModel] | None = {
        "PodMonitor": v1.PodMonitor,
        "ServiceMonitor": v1.ServiceMonitor,
    }.get(kind)
    return found


def _dropped(given: Any, kept: Any, path: str) -> list[str]:
    if isinstance(given, Mapping):
        if not isinstance(kept, Mapping):
            return [f"{path}: not an object in the schema"]
        out = []
        for key, value in given.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in kept:
                out.append(f"{where}: unknown field (would be pruned)")
            else:
                out.extend(_dropped(value, kept[key], where))
        return out
    if isinstance(given, list):
        if not isinstance(kept, list) or len(kept) != len(given):
            return [f"{path}: not a list in the schema"]
        return [
            p
            for i, (a, b) in enumerate(zip(given, kept, strict=True))
            for p in _dropped(a, b, f"{path}[{i}]")
        ]
    return [] if given == kept else [f"{path}: {given!r} read back as {kept!r}"]


def check_prometheus_operator_object(obj: Mapping[str, Any]) -> list[str]:
    """Problems of a monitoring.coreos.com/v1 object: schema violations and fields that would be pruned."""
    model = models_for(str(obj.get("kind")))
    if model is None:
        return [f"kind: no prometheus-operator model for {obj.get('kind')}"]
    try:
        parsed = model.model_validate(dict(obj))
    except pydantic.ValidationError as exc:
        return [
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        ]
    kept = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return _dropped(dict(obj), kept, "")


def pod_monitor_stand_in_crd() -> dict[str, Any]:
    """A PodMonitor CRD for the local control plane, so the operator finds the kind served there.

    Its spec is schemaless (no pinned CRD to install); the schema tier checks every PodMonitor we render
    against the models above instead.
    """
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": "podmonitors.monitoring.coreos.com",
            "annotations": {"nlpmodel.dev/stand-in": "schemaless PodMonitor for tests and the demo"},
        },
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {
                "kind": "PodMonitor",
                "listKind": "PodMonitorList",
                "plural": "podmonitors",
                "singular": "podmonitor",
                "shortNames": ["pmon"],
                "categories": ["prometheus-operator"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                            },
                        }
                    },
                }
            ],
        },
    }
