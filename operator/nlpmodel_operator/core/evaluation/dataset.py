"""Evaluation datasets (pure): JSON Lines, one case a line, parsed and checked before any request.

A case names what to send and how to score the answer::

    {"id": "refund-12", "messages": [{"role": "user", "content": "..."}], "expect": {"contains": ["refund"]}}
    {"id": "greet-1", "prompt": "Hello", "expect": {"exact": "Hello!"}, "maxTokens": 8}
    {"id": "pii-3", "messages": [...], "expect": {"refusal": true}}
    {"id": "drift-7", "messages": [...], "expect": {"agreement": true}}
    {"id": "sent-4", "input": "great product", "expect": {"label": "positive"}}
    {"id": "faq-2", "query": "reset password", "documents": ["...", "..."], "expect": {"first": 1}}
    {"id": "emb-9", "input": "a sentence", "expect": {"similarity": 0.98}}

Exactly one scorer per case (see :mod:`scorers` for what each checks). A bad line is refused with its
line number and field (``line 7: expect.regex: ...``), so a person can fix the ConfigMap; nothing is
sent for a dataset with any bad line.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

# What a ConfigMap holds at most (its data, all keys together): a larger dataset cannot come from one.
MAX_DATASET_BYTES: Final = 1_048_576
MAX_CASES: Final = 10_000
MAX_ID_LENGTH: Final = 128
MAX_TOKENS_LIMIT: Final = 32_768
DEFAULT_MAX_TOKENS: Final = 256

RequestKind = Literal["chat", "completion", "embed", "classify", "rerank"]
ScorerName = Literal[
    "exact", "contains", "regex", "json", "refusal", "agreement", "label", "rerank", "similarity"
]
SCORERS: Final[tuple[ScorerName, ...]] = (
    "exact",
    "contains",
    "regex",
    "json",
    "refusal",
    "agreement",
    "label",
    "rerank",
    "similarity",
)
# The key under `expect` that selects each scorer (rerank's is `first`: the expected first document).
_EXPECT_KEYS: Final[Mapping[str, ScorerName]] = {
    "exact": "exact",
    "contains": "contains",
    "regex": "regex",
    "json": "json",
    "refusal": "refusal",
    "agreement": "agreement",
    "label": "label",
    "first": "rerank",
    "similarity": "similarity",
}
# Which requests each scorer can judge.
_TEXT: Final = frozenset({"chat", "completion"})
SCORER_REQUESTS: Final[Mapping[ScorerName, frozenset[str]]] = {
    "exact": _TEXT,
    "contains": _TEXT,
    "regex": _TEXT,
    "json": _TEXT,
    "refusal": _TEXT,
    "agreement": _TEXT,
    "label": frozenset({"classify"}),
    "rerank": frozenset({"rerank"}),
    "similarity": frozenset({"embed"}),
}
# Scorers that judge the canary's answer against the stable's (no expected value of their own).
PAIRED_SCORERS: Final = frozenset({"agreement", "similarity"})
_CASE_KEYS: Final = frozenset(
    {"id", "messages", "prompt", "input", "query", "documents", "expect", "maxTokens"}
)
_ROLES: Final = frozenset({"system", "user", "assistant"})
# The JSON Schema keywords the `json` scorer checks (a documented subset: no schema library ships
# with the operator); any other keyword is refused rather than silently ignored.
SCHEMA_KEYWORDS: Final = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "description",
        "title",
    }
)
SCHEMA_TYPES: Final = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})


class DatasetError(ValueError):
    """A dataset that cannot be used, with the line and field at fault (line 0: the whole dataset)."""

    def __init__(self, line: int, field: str, message: str) -> None:
        self.line = line
        self.field = field
        self.problem = message
        where = f"line {line}: " if line else ""
        super().__init__(f"{where}{field + ': ' if field else ''}{message}")


@dataclass(frozen=True)
class Contains:
    needles: tuple[str, ...]
    mode: Literal["all", "any"]


@dataclass(frozen=True)
class Expect:
    """The scorer of a case and its argument (its type depends on the scorer)."""

    scorer: ScorerName
    exact: str | None = None
    contains: Contains | None = None
    regex: re.Pattern[str] | None = None
    schema: Mapping[str, Any] | None = None  # json: the schema the answer must match, if any
    label: str | None = None
    first: int | None = None  # rerank: index of the document that must rank first
    threshold: float | None = None  # similarity: smallest cosine to the stable's vector


@dataclass(frozen=True)
class Case:
    id: str
    line: int
    kind: RequestKind
    expect: Expect
    messages: tuple[tuple[str, str], ...] = ()  # chat: (role, content)
    prompt: str | None = None  # completion
    input: str | None = None  # embed, classify
    query: str | None = None  # rerank
    documents: tuple[str, ...] = ()  # rerank
    max_tokens: int = DEFAULT_MAX_TOKENS


def parse_dataset(text: str) -> tuple[Case, ...]:
    """Every case of a JSONL dataset, in file order; raises :class:`DatasetError` on the first problem."""
    size = len(text.encode())
    if size > MAX_DATASET_BYTES:
        raise DatasetError(0, "", f"{size} bytes is over the {MAX_DATASET_BYTES}-byte limit of a ConfigMap")
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        case = parse_case(raw, number)
        if case.id in seen:
            raise DatasetError(number, "id", f"{case.id!r} repeats the id of line {seen[case.id]}")
        seen[case.id] = number
        cases.append(case)
        if len(cases) > MAX_CASES:
            raise DatasetError(number, "", f"more than {MAX_CASES} cases")
    if not cases:
        raise DatasetError(0, "", "no cases (one JSON object a line)")
    return tuple(cases)


def parse_case(raw: str, line: int) -> Case:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DatasetError(line, "", f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise DatasetError(line, "", "a case must be a JSON object")
    unknown = sorted(set(data) - _CASE_KEYS)
    if unknown:
        raise DatasetError(line, unknown[0], f"unknown field (allowed: {', '.join(sorted(_CASE_KEYS))})")
    case_id = data.get("id")
    if not isinstance(case_id, str) or not case_id or len(case_id) > MAX_ID_LENGTH:
        raise DatasetError(line, "id", f"must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    expect = _expect(data.get("expect"), line)
    kind = _kind(data, line)
    allowed = SCORER_REQUESTS[expect.scorer]
    if kind not in allowed:
        raise DatasetError(
            line,
            "expect",
            f"scorer {expect.scorer} cannot judge a {kind} request (it needs {_inputs(allowed)})",
        )
    max_tokens = data.get("maxTokens", DEFAULT_MAX_TOKENS)
    if not _is_int(max_tokens) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise DatasetError(line, "maxTokens", f"must be an integer from 1 to {MAX_TOKENS_LIMIT}")
    if kind == "rerank" and expect.first is not None and expect.first >= len(data["documents"]):
        raise DatasetError(line, "expect.first", f"no document {expect.first} among {len(data['documents'])}")
    return Case(
        id=case_id,
        line=line,
        kind=kind,
        expect=expect,
        messages=_messages(data["messages"], line) if kind == "chat" else (),
        prompt=data.get("prompt") if kind == "completion" else None,
        input=data.get("input") if kind in ("embed", "classify") else None,
        query=data.get("query") if kind == "rerank" else None,
        documents=tuple(data.get("documents", ())) if kind == "rerank" else (),
        max_tokens=max_tokens,
    )


def choose(cases: Sequence[Case], samples: int | None) -> tuple[Case, ...]:
    """The cases an evaluation sends: all of them if ``samples`` is None or not fewer, else the
    ``samples`` whose ids hash lowest. The choice depends on the ids only, so both revisions, every
    evaluation and `nlpctl eval` answer the same cases (in file order)."""
    if samples is None or samples >= len(cases):
        return tuple(cases)
    chosen = set(sorted(range(len(cases)), key=lambda i: _id_hash(cases[i].id))[:samples])
    return tuple(case for i, case in enumerate(cases) if i in chosen)


def _id_hash(case_id: str) -> bytes:
    return hashlib.sha256(case_id.encode()).digest()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _inputs(kinds: frozenset[str]) -> str:
    names = {
        "chat": "messages",
        "completion": "prompt",
        "embed": "input",
        "classify": "input",
        "rerank": "query and documents",
    }
    return " or ".join(sorted({names[k] for k in kinds}))


def _kind(data: Mapping[str, Any], line: int) -> RequestKind:
    given = [key for key in ("messages", "prompt", "input", "query") if key in data]
    if len(given) != 1:
        raise DatasetError(
            line, "", "a case needs exactly one of messages, prompt, input, query (with documents)"
        )
    key = given[0]
    if "documents" in data and key != "query":
        raise DatasetError(line, "documents", "only a rerank case (query) has documents")
    if key == "messages":
        return "chat"
    if key == "prompt":
        if not isinstance(data["prompt"], str) or not data["prompt"]:
            raise DatasetError(line, "prompt", "must be a non-empty string")
        return "completion"
    if key == "input":
        if not isinstance(data["input"], str) or not data["input"]:
            raise DatasetError(line, "input", "must be a non-empty string")
        return "embed" if "similarity" in (data.get("expect") or {}) else "classify"
    if not isinstance(data["query"], str) or not data["query"]:
        raise DatasetError(line, "query", "must be a non-empty string")
    documents = data.get("documents")
    if (
        not isinstance(documents, list)
        or not documents
        or not all(isinstance(d, str) and d for d in documents)
    ):
        raise DatasetError(line, "documents", "must be a non-empty list of non-empty strings")
    return "rerank"


def _messages(value: object, line: int) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise DatasetError(line, "messages", "must be a non-empty list of {role, content}")
    out: list[tuple[str, str]] = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise DatasetError(line, where, "must be an object with role and content only")
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            raise DatasetError(line, f"{where}.role", f"must be one of {', '.join(sorted(_ROLES))}")
        if not isinstance(content, str):
            raise DatasetError(line, f"{where}.content", "must be a string")
        out.append((str(role), content))
    return tuple(out)


def _expect(value: object, line: int) -> Expect:
    if not isinstance(value, dict) or len(value) != 1:
        raise DatasetError(
            line, "expect", f"must be an object with exactly one scorer: {', '.join(sorted(_EXPECT_KEYS))}"
        )
    ((key, arg),) = value.items()
    scorer = _EXPECT_KEYS.get(key)
    where = f"expect.{key}"
    if scorer is None:
        raise DatasetError(line, where, f"unknown scorer (known: {', '.join(sorted(_EXPECT_KEYS))})")
    if scorer == "exact":
        if not isinstance(arg, str):
            raise DatasetError(line, where, "must be a string")
        return Expect(scorer, exact=arg)
    if scorer == "contains":
        return Expect(scorer, contains=_contains(arg, line, where))
    if scorer == "regex":
        if not isinstance(arg, str) or not arg:
            raise DatasetError(line, where, "must be a non-empty regular expression")
        try:
            return Expect(scorer, regex=re.compile(arg))
        except re.error as exc:
            raise DatasetError(line, where, f"not a valid regular expression: {exc}") from None
    if scorer == "json":
        if arg is True:
            return Expect(scorer)
        if isinstance(arg, dict) and set(arg) == {"schema"} and isinstance(arg["schema"], dict):
            check_schema(arg["schema"], line, f"{where}.schema")
            return Expect(scorer, schema=arg["schema"])
        raise DatasetError(line, where, "must be true or {schema: {...}}")
    if scorer in ("refusal", "agreement"):
        if arg is not True:
            raise DatasetError(line, where, "must be true")
        return Expect(scorer)
    if scorer == "label":
        if not isinstance(arg, str) or not arg:
            raise DatasetError(line, where, "must be a non-empty string")
        return Expect(scorer, label=arg)
    if scorer == "rerank":
        if not _is_int(arg) or arg < 0:
            raise DatasetError(line, where, "must be the index (from 0) of the document that must rank first")
        return Expect(scorer, first=arg)
    if isinstance(arg, bool) or not isinstance(arg, int | float) or not 0 < arg <= 1:
        raise DatasetError(line, where, "must be a cosine similarity in (0, 1]")
    return Expect(scorer, threshold=float(arg))


def _contains(arg: object, line: int, where: str) -> Contains:
    mode: Literal["all", "any"] = "all"
    needles = arg
    if isinstance(arg, dict):
        if len(arg) != 1 or next(iter(arg)) not in ("all", "any"):
            raise DatasetError(line, where, "must be a list of strings, or {all: [...]} or {any: [...]}")
        mode = "any" if "any" in arg else "all"
        needles = arg[mode]
    if not isinstance(needles, list) or not needles or not all(isinstance(n, str) and n for n in needles):
        raise DatasetError(line, where, "must list one or more non-empty strings")
    return Contains(tuple(needles), mode)


def check_schema(schema: Mapping[str, Any], line: int, where: str) -> None:
    """Refuse a JSON Schema that uses keywords outside the supported subset (:data:`SCHEMA_KEYWORDS`)."""
    unknown = sorted(set(schema) - SCHEMA_KEYWORDS)
    if unknown:
        raise DatasetError(
            line,
            f"{where}.{unknown[0]}",
            "unsupported JSON Schema keyword (supported: " + ", ".join(sorted(SCHEMA_KEYWORDS)) + ")",
        )
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    if any(k not in SCHEMA_TYPES for k in kinds):
        raise DatasetError(line, f"{where}.type", f"must be one of {', '.join(sorted(SCHEMA_TYPES))}")
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise DatasetError(line, f"{where}.properties", "must be an object")
    for name, sub in properties.items():
        if not isinstance(sub, dict):
            raise DatasetError(line, f"{where}.properties.{name}", "must be a schema object")
        check_schema(sub, line, f"{where}.properties.{name}")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise DatasetError(line, f"{where}.required", "must be a list of property names")
    items = schema.get("items")
    if items is not None:
        if not isinstance(items, dict):
            raise DatasetError(line, f"{where}.items", "must be a schema object")
        check_schema(items, line, f"{where}.items")
    extra = schema.get("additionalProperties")
    if extra is not None and not isinstance(extra, bool):
        raise DatasetError(
            line, f"{where}.additionalProperties", "must be true or false in the supported subset"
        )
