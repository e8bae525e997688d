"""Docs: the API reference is what `make docs` generates from the CRD, no relative link or anchor is
broken, every alert of the chart has a runbook, and the README keeps the newcomer's two commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hack.apidocs import API_REFERENCE, CRD_FILE, github_anchor, render

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "charts" / "nlpmodel-operator" / "files" / "alerts" / "nlpmodel-operator.rules.yaml"
DOCS = sorted(
    {
        REPO / "README.md",
        REPO / "bench" / "README.md",
        REPO / "charts" / "nlpmodel-operator" / "README.md",
        *(REPO / "docs").glob("*.md"),
        *(REPO / "e2e").rglob("*.md"),
    }
)
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
HTML_ID = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def prose(text: str) -> str:
    """The Markdown without fenced code blocks and inline code spans (links there are not links)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    found: set[str] = set(HTML_ID.findall(text))
    counts: dict[str, int] = {}
    for heading in HEADING.findall(text):
        slug = github_anchor(heading.replace("`", ""))
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def relative_links(path: Path) -> list[str]:
    text = prose(path.read_text())
    targets = LINK.findall(text) + REFERENCE.findall(text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]  # http:, mailto:, ...


def test_the_api_reference_is_generated_from_the_crd() -> None:
    expected = render(yaml.safe_load(CRD_FILE.read_text()))
    current = API_REFERENCE.read_text() if API_REFERENCE.exists() else ""
    assert current == expected, (
        f"{API_REFERENCE.relative_to(REPO)} is stale (or missing) for {CRD_FILE.relative_to(REPO)}: "
        "run `make docs` and commit the result (after `make crds` if the API changed)"
    )


def test_the_api_reference_documents_every_field_of_the_crd() -> None:
    text = API_REFERENCE.read_text()
    schema = yaml.safe_load(CRD_FILE.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for root in ("spec", "status"):
        for name in schema["properties"][root]["properties"]:
            assert f"| `{name}`" in text, f"{root}.{name} is missing from the API reference"


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_no_broken_relative_links_or_anchors(doc: Path) -> None:
    broken = []
    for target in relative_links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(
                f"{target}: {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest} does not exist"
            )
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(REPO)}")
    assert broken == []


def test_the_link_checker_finds_what_it_must(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n## Same\n## Same\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Title\n[ok](other.md#other-page) [dup](other.md#same-1) [self](#title) [web](https://x.y/#z)\n"
        "[gone](missing.md) `[code](missing2.md)`\n```\n[fenced](missing3.md)\n```\n[ref]: ./other.md\n"
    )
    assert relative_links(doc) == [
        "other.md#other-page",
        "other.md#same-1",
        "#title",
        "missing.md",
        "./other.md",
    ]
    assert anchors(tmp_path / "other.md") == {"other-page", "same", "same-1"}
    assert github_anchor("`spec.rollout.steps[]`".replace("`", "")) == "specrolloutsteps"
    assert github_anchor("Upgrade: Kubernetes, KServe & vLLM") == "upgrade-kubernetes-kserve--vllm"


def test_every_alert_has_a_runbook() -> None:
    alerts = [
        r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"] if "alert" in r
    ]
    runbooks = anchors(REPO / "docs" / "runbooks.md")
    assert alerts, ALERTS
    assert [a for a in alerts if github_anchor(a) not in runbooks] == []


def test_the_readme_keeps_the_two_newcomer_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert re.search(r"^make demo\b", readme, re.M)
    assert re.search(r"^make test\b", readme, re.M)
