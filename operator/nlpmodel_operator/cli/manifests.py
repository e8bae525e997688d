"""Reading NLPModel manifests from files for the CLI: YAML streams, `-` for stdin, directories."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nlpmodel_operator.api import constants as c


class ManifestError(Exception):
    """A file that cannot be read or parsed; the message is meant for the user."""


@dataclass(frozen=True)
class Document:
    source: str  # file name, with the document index when a file holds several
    body: Any

    @property
    def name(self) -> str:
        meta = self.body.get("metadata") if isinstance(self.body, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        return name if isinstance(name, str) else "<unnamed>"

    @property
    def kind(self) -> str | None:
        kind = self.body.get("kind") if isinstance(self.body, dict) else None
        return kind if isinstance(kind, str) else None

    @property
    def namespace(self) -> str | None:
        meta = self.body.get("metadata") if isinstance(self.body, dict) else None
        namespace = meta.get("namespace") if isinstance(meta, dict) else None
        return namespace if isinstance(namespace, str) else None


def _files(arg: str) -> list[Path]:
    path = Path(arg)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
    if not path.exists():
        raise ManifestError(f"{arg}: no such file or directory")
    return [path]


def _load(text: str, source: str) -> list[Any]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(f"{source}: invalid YAML{where}: {problem}") from None
    return docs


def read_documents(args: list[str], also: tuple[str, ...] = ()) -> Iterator[Document]:
    """NLPModel documents of the given files, and those of the kinds in ``also``; other kinds are
    skipped (a file may mix kinds)."""
    for arg in args:
        if arg == "-":
            sources = [("<stdin>", sys.stdin.read())]
        else:
            try:
                sources = [(str(p), p.read_text(encoding="utf-8")) for p in _files(arg)]
            except (OSError, UnicodeDecodeError) as exc:
                raise ManifestError(f"{arg}: cannot read: {exc}") from None
        for source, text in sources:
            docs = _load(text, source)
            for index, doc in enumerate(docs):
                label = source if len(docs) == 1 else f"{source}#{index + 1}"
                if isinstance(doc, dict) and doc.get("kind") not in (c.KIND, None, *also):
                    continue
                yield Document(label, doc)
