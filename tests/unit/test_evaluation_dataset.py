"""Evaluation datasets: every case shape parses; every bad line is refused with its line and field."""

from __future__ import annotations

import json

import pytest

from nlpmodel_operator.core.evaluation.dataset import (
    MAX_DATASET_BYTES,
    DatasetError,
    choose,
    parse_dataset,
)


def _line(**case: object) -> str:
    return json.dumps(case)


CHAT = [{"role": "user", "content": "hi"}]

GOOD = [
    (_line(id="a", messages=CHAT, expect={"exact": "hello"}), "chat", "exact"),
    (_line(id="a", prompt="2+2=", expect={"regex": r"\b4\b"}, maxTokens=4), "completion", "regex"),
    (_line(id="a", messages=CHAT, expect={"contains": ["refund", "days"]}), "chat", "contains"),
    (_line(id="a", messages=CHAT, expect={"contains": {"any": ["yes", "sure"]}}), "chat", "contains"),
    (_line(id="a", messages=CHAT, expect={"json": True}), "chat", "json"),
    (_line(id="a", messages=CHAT, expect={"json": {"schema": {"type": "object"}}}), "chat", "json"),
    (_line(id="a", messages=CHAT, expect={"refusal": True}), "chat", "refusal"),
    (_line(id="a", messages=CHAT, expect={"agreement": True}), "chat", "agreement"),
    (_line(id="a", input="great", expect={"label": "positive"}), "classify", "label"),
    (_line(id="a", query="q", documents=["x", "y"], expect={"first": 1}), "rerank", "rerank"),
    (_line(id="a", input="text", expect={"similarity": 0.95}), "embed", "similarity"),
]


@pytest.mark.parametrize(("line", "kind", "scorer"), GOOD)
def test_every_case_shape_parses(line: str, kind: str, scorer: str) -> None:
    (case,) = parse_dataset(line)
    assert (case.kind, case.expect.scorer, case.line) == (kind, scorer, 1)


def test_contains_mode_and_max_tokens_are_kept() -> None:
    text = "\n".join(
        [
            _line(id="a", messages=CHAT, expect={"contains": {"any": ["x", "y"]}}, maxTokens=7),
            _line(id="b", messages=CHAT, expect={"contains": ["x"]}),
        ]
    )
    first, second = parse_dataset(text)
    assert first.expect.contains is not None
    assert first.expect.contains.mode == "any"
    assert first.max_tokens == 7
    assert second.expect.contains is not None
    assert second.expect.contains.mode == "all"


BAD = [
    ("{not json", 1, "", "not JSON"),
    ("[1, 2]", 1, "", "JSON object"),
    (_line(messages=CHAT, expect={"exact": "x"}), 1, "id", "non-empty string"),
    (_line(id="a", messages=CHAT, expect={"exact": "x"}, colour="red"), 1, "colour", "unknown field"),
    (_line(id="a", messages=CHAT, expect={"fuzzy": "x"}), 1, "expect.fuzzy", "unknown scorer"),
    (_line(id="a", messages=CHAT, expect={"exact": "x", "regex": "y"}), 1, "expect", "exactly one"),
    (_line(id="a", messages=CHAT), 1, "expect", "exactly one scorer"),
    (_line(id="a", messages=CHAT, expect={"regex": "(unclosed"}), 1, "expect.regex", "regular expression"),
    (_line(id="a", messages=CHAT, expect={"refusal": "yes"}), 1, "expect.refusal", "must be true"),
    (_line(id="a", messages=CHAT, expect={"contains": []}), 1, "expect.contains", "one or more"),
    (_line(id="a", messages=CHAT, expect={"contains": {"some": ["x"]}}), 1, "expect.contains", "all"),
    (
        _line(id="a", messages=CHAT, expect={"json": {"schema": {"pattern": "x"}}}),
        1,
        "expect.json.schema.pattern",
        "unsupported JSON Schema keyword",
    ),
    (
        _line(id="a", messages=CHAT, expect={"json": {"schema": {"type": "thing"}}}),
        1,
        "expect.json.schema.type",
        "must be one of",
    ),
    (_line(id="a", messages=CHAT, expect={"label": "x"}), 1, "expect", "cannot judge a chat request"),
    (_line(id="a", input="x", expect={"exact": "x"}), 1, "expect", "cannot judge a classify request"),
    (_line(id="a", messages=CHAT, prompt="x", expect={"exact": "x"}), 1, "", "exactly one of"),
    (
        _line(id="a", messages=[{"role": "robot", "content": "x"}], expect={"exact": "x"}),
        1,
        "messages[0].role",
        "must be one of",
    ),
    (
        _line(id="a", messages=[{"role": "user", "content": 3}], expect={"exact": "x"}),
        1,
        "messages[0].content",
        "string",
    ),
    (_line(id="a", query="q", documents=[], expect={"first": 0}), 1, "documents", "non-empty list"),
    (_line(id="a", query="q", documents=["x"], expect={"first": 3}), 1, "expect.first", "no document 3"),
    (_line(id="a", input="x", expect={"similarity": 1.5}), 1, "expect.similarity", "cosine"),
    (_line(id="a", messages=CHAT, expect={"exact": "x"}, maxTokens=0), 1, "maxTokens", "integer"),
    (_line(id="a", messages=CHAT, expect={"exact": "x"}, maxTokens=True), 1, "maxTokens", "integer"),
    ("", 0, "", "no cases"),
]


@pytest.mark.parametrize(("text", "line", "field", "problem"), BAD)
def test_bad_lines_are_refused_with_line_and_field(text: str, line: int, field: str, problem: str) -> None:
    with pytest.raises(DatasetError) as caught:
        parse_dataset(text)
    assert (caught.value.line, caught.value.field) == (line, field)
    assert problem in caught.value.problem


def test_the_error_names_the_line_among_good_ones() -> None:
    good = _line(id="a", messages=CHAT, expect={"exact": "x"})
    text = "\n".join([good, "", _line(id="b", messages=CHAT, expect={"regex": "("})])
    with pytest.raises(DatasetError, match=r"^line 3: expect\.regex: not a valid regular expression"):
        parse_dataset(text)


def test_repeated_ids_are_refused() -> None:
    line = _line(id="same", messages=CHAT, expect={"exact": "x"})
    with pytest.raises(DatasetError, match="line 2: id: 'same' repeats the id of line 1"):
        parse_dataset(line + "\n" + line)


def test_a_dataset_over_the_configmap_limit_is_refused() -> None:
    filler = "x" * 1000
    lines = [_line(id=f"c{i}", prompt=filler, expect={"exact": "x"}) for i in range(1100)]
    text = "\n".join(lines)
    assert len(text) > MAX_DATASET_BYTES
    with pytest.raises(DatasetError, match="limit of a ConfigMap"):
        parse_dataset(text)


def _cases(count: int) -> str:
    return "\n".join(_line(id=f"case-{i}", prompt="p", expect={"exact": "x"}) for i in range(count))


def test_sample_choice_is_deterministic_by_id_and_keeps_file_order() -> None:
    cases = parse_dataset(_cases(50))
    chosen = choose(cases, 10)
    assert len(chosen) == 10
    assert chosen == choose(cases, 10)
    assert [c.line for c in chosen] == sorted(c.line for c in chosen)
    # The choice depends on the ids, not on their order in the file.
    assert {c.id for c in choose(tuple(reversed(cases)), 10)} == {c.id for c in chosen}
    # A larger sample contains the smaller one: raising `samples` adds cases, never swaps them.
    assert {c.id for c in chosen} <= {c.id for c in choose(cases, 20)}


@pytest.mark.parametrize("samples", [None, 50, 80])
def test_all_cases_when_samples_is_unset_or_not_fewer(samples: int | None) -> None:
    cases = parse_dataset(_cases(50))
    assert choose(cases, samples) == cases
