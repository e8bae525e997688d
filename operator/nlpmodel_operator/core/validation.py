"""Parsing of a raw NLPModel object into the typed spec, with every problem as `path: message`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.units import PERCENT_RANGES
from nlpmodel_operator.core.problems import Problem

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _path(loc: tuple[int | str, ...]) -> str:
    parts = ["spec"]
    for item in loc:
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        else:
            parts.append(item)
    return ".".join(parts)


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field (the API server would drop it silently)"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"unsupported value {error.get('input')!r}: expected one of {expected}"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch" and (
        bounds := PERCENT_RANGES.get(error.get("ctx", {}).get("pattern", ""))
    ):
        low, high = bounds
        return f"must be a percentage from {low}% to {high}%, e.g. 1% (got {error.get('input')!r})"
    message = str(error["msg"])
    # pydantic prefixes errors raised in validators with "Value error, ".
    return message.removeprefix("Value error, ")


def spec_problems_from(exc: ValidationError) -> list[Problem]:
    return [Problem(_path(tuple(e["loc"])), _message(e)) for e in exc.errors()]


def parse_spec(raw: Any) -> tuple[NLPModelSpec | None, list[Problem]]:
    """The typed spec, or None and the problems that prevent it."""
    if not isinstance(raw, Mapping):
        return None, [Problem("spec", "must be an object")]
    try:
        # Strict, as the API server's schema is: `true` is not an integer, "8" is not a number.
        return NLPModelSpec.model_validate(raw, strict=True), []
    except ValidationError as exc:
        return None, spec_problems_from(exc)


def name_problems(name: str) -> list[Problem]:
    """Child objects are `<name>-<hash8>` Services/Deployments: the name must make a DNS-1035 label."""
    problems = []
    if len(name) > c.MAX_MODEL_NAME_LEN:
        problems.append(
            Problem(
                "metadata.name",
                f"must be at most {c.MAX_MODEL_NAME_LEN} characters (has {len(name)}): child objects are "
                f"named <name>-<{c.REVISION_HASH_LEN}-char revision> and must stay within 63",
            )
        )
    if not _DNS1035.match(name):
        problems.append(
            Problem(
                "metadata.name",
                "must start with a lowercase letter and contain only lowercase letters, digits and '-' "
                "(child Services need a DNS-1035 label)",
            )
        )
    return problems


def object_problems(obj: Any) -> tuple[NLPModelSpec | None, list[Problem]]:
    """Checks a whole NLPModel object (apiVersion, kind, metadata.name, spec)."""
    if not isinstance(obj, Mapping):
        return None, [Problem("", "an NLPModel must be a YAML/JSON object")]
    problems = []
    if obj.get("apiVersion") != c.API_VERSION:
        problems.append(Problem("apiVersion", f"must be {c.API_VERSION} (got {obj.get('apiVersion')!r})"))
    if obj.get("kind") != c.KIND:
        problems.append(Problem("kind", f"must be {c.KIND} (got {obj.get('kind')!r})"))
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if not isinstance(name, str) or not name:
        problems.append(Problem("metadata.name", "required field is missing"))
    else:
        problems.extend(name_problems(name))
    spec, spec_problems = parse_spec(obj.get("spec"))
    return spec, problems + spec_problems
