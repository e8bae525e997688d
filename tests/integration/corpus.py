"""The bad-input corpus: tests/data/invalid/*.yaml, one NLPModel per file.

Each file starts with a comment saying why it is bad and `# expect: KIND: TEXT` (see
test_invalid_corpus.py for the kinds). `metadata.name` is used as written by the files about names;
the others get a name from their file. A string `REPEAT(c, n)` stands for `n` times `c` (the 1 MiB
annotation, without a 1 MiB file in the repository)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DIR = Path(__file__).resolve().parents[1] / "data" / "invalid"
CORPUS = sorted(DIR.glob("*.yaml"))
_EXPECT = re.compile(r"^# expect: (rejected|cel|invalid|unknown): (.+)$", re.MULTILINE)
_REPEAT = re.compile(r"^REPEAT\((.), (\d+)\)$")


@dataclass(frozen=True)
class Case:
    file: str
    kind: str  # rejected | cel | invalid | unknown
    expected: str  # the field path, or the message, that must be named
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


def _expand(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _expand(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v) for v in node]
    if isinstance(node, str) and (m := _REPEAT.match(node)):
        return m[1] * int(m[2])
    return node


def load(path: Path) -> Case:
    text = path.read_text()
    expect = _EXPECT.search(text)
    if expect is None:
        raise ValueError(f"{path.name}: no '# expect: KIND: TEXT' line")
    body: dict[str, Any] = _expand(yaml.safe_load(text))
    if path.stem.split("-", 2)[1] not in ("name", "unicode") or body["metadata"]["name"] == "bad":
        body["metadata"]["name"] = "bad-" + path.stem.split("-", 1)[0]
    return Case(path.name, expect[1], expect[2], body)
