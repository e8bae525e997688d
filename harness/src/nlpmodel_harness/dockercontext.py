"""The files a `docker build` of the checkout sends as its context, by the rules of `.dockerignore`.

Docker matches each pattern (Go's filepath.Match plus `**`) against the path relative to the context root;
a path is excluded when the last pattern that matches it, or one of its parent directories, is not a
`!` exception. Enough of the syntax for the patterns we write, checked by tests/packaging.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    include: bool  # a `!` exception


def _regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def read_rules(dockerignore: Path) -> list[Rule]:
    rules = []
    if dockerignore.is_file():
        for raw in dockerignore.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            path = line.removeprefix("!").strip().strip("/")
            rules.append(Rule(_regex(path), include))
    return rules


def excluded(relative: str, rules: list[Rule]) -> bool:
    parts = relative.split("/")
    verdict = False
    for rule in rules:
        # A pattern that names a directory excludes everything below it.
        if any(rule.pattern.match("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            verdict = not rule.include
    return verdict


def rules_for(root: Path, dockerfile: Path | None = None) -> list[Rule]:
    """The rules a build of root uses: BuildKit's `<Dockerfile>.dockerignore` beside the Dockerfile
    when there is one (the runtime's image has its own context rules), else root/.dockerignore."""
    if dockerfile is not None:
        own = dockerfile.with_name(dockerfile.name + ".dockerignore")
        if own.is_file():
            return read_rules(own)
    return read_rules(root / ".dockerignore")


def context_files(root: Path, dockerfile: Path | None = None) -> Iterator[str]:
    """Paths (relative, `/`-separated) of the regular files `docker build root` would send."""
    rules = rules_for(root, dockerfile)
    # An excluded directory can be skipped whole unless an exception may bring back something inside.
    prune = not any(rule.include for rule in rules)
    for directory, subdirs, files in os.walk(root):
        base = Path(directory).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        if prune:
            subdirs[:] = sorted(d for d in subdirs if not excluded(prefix + d, rules))
        for name in sorted(files):
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink() and not excluded(prefix + name, rules):
                yield prefix + name
