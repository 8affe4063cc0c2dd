"""The README and docs/ as a newcomer meets them: a README short enough to read, in the order of a
first day (install, the verdict, your own data, the commands, the docs), every link of it and of
docs/ resolving (files and #anchors), every docs page reachable from the README, every measured time
next to the CPU it was measured on, and LICENSE / CITATION.cff agreeing with pyproject.toml."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 350
# The README's top-level sections, in a newcomer's order (each title starts with its entry).
README_ORDER = ("Install", "The verdict", "Your own data", "Commands", "Documentation")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
LINK = re.compile(r"\]\(([^)\s]+)\)")
# A measured wall time ("4 min 31 s", "1 h 53 min", "about 6 minutes"); timeouts in seconds are settings, not measurements.
WALL_TIME = re.compile(r"\b\d+ (?:h|min|minutes?)\b")
CPU = re.compile(r"AMD EPYC|Intel Xeon")
EMBED = re.compile(r"<!-- BEGIN generated from (\S+) -->")


def _prose(text: str) -> str:
    """The text without fenced code blocks (their brackets are code, not links)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m[1]) for m in re.finditer(r"^#+ (.*)$", _prose(path.read_text(encoding="utf-8")), re.M)}


def broken_links(path: Path) -> list[str]:
    """Every relative link of a Markdown file whose file, or whose #anchor in a Markdown file, is missing."""
    broken = []
    for target in LINK.findall(_prose(path.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        name, _, anchor = target.partition("#")
        linked = (path.parent / name).resolve() if name else path
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(target)
    return broken


def test_the_readme_is_at_most_350_lines():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move material to docs/"


def test_the_readme_sections_come_in_a_newcomers_order():
    titles = re.findall(r"^## (.*)$", _prose(README.read_text(encoding="utf-8")), re.M)
    found = [next((i for i, t in enumerate(titles) if t.startswith(entry)), None) for entry in README_ORDER]
    assert None not in found, dict(zip(README_ORDER, found))
    assert found == sorted(found), titles


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_every_relative_link_resolves(path):
    assert not broken_links(path)


def test_a_broken_link_or_anchor_is_found(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## The verdict's rules\n", encoding="utf-8")
    page.write_text("[a](other.md#the-verdicts-rules) [b](other.md#gone) [c](missing.md) [d](https://x.org/y)\n"
                    "```\n[not a link](nowhere.md)\n```\n", encoding="utf-8")
    assert broken_links(page) == ["other.md#gone", "missing.md"]


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in LINK.findall(_prose(README.read_text(encoding="utf-8")))}
    assert [p.name for p in DOCS if p.resolve() not in linked] == []


def test_the_readme_embeds_the_verdict_summary_and_every_embedded_file_exists():
    named = EMBED.findall(README.read_text(encoding="utf-8"))
    assert "results/tables/verdict_summary.md" in named
    assert all((ROOT / name).is_file() for name in named), named


def _blocks(text: str) -> list[str]:
    """Paragraphs, list items and table rows: the unit a time and its CPU must share in the README."""
    return [b for b in re.split(r"\n\s*\n|\n(?=- |\| )", _prose(text)) if b.strip()]


def _sections(text: str) -> list[str]:
    return re.split(r"^#+ ", _prose(text), flags=re.M)


def test_every_time_in_the_readme_names_its_cpu():
    missing = [b for b in _blocks(README.read_text(encoding="utf-8")) if WALL_TIME.search(b) and not CPU.search(b)]
    assert not missing, missing


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_time_in_the_docs_names_its_cpu_in_its_section(path):
    missing = [s[:80] for s in _sections(path.read_text(encoding="utf-8")) if WALL_TIME.search(s) and not CPU.search(s)]
    assert not missing, missing


def test_a_time_without_its_cpu_is_found():
    assert WALL_TIME.search("took 4 min 31 s") and not CPU.search("took 4 min 31 s")
    assert [b for b in _blocks("- fast: 4 min 31 s\n- on an AMD EPYC\n") if WALL_TIME.search(b) and not CPU.search(b)]


def test_license_and_citation_agree_with_pyproject():
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"]["text"] == "MIT"
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License\n\nCopyright (c) ")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT" and cff["version"] == project["version"]
    assert {"message", "title", "authors"} <= set(cff)
    paper = next(r for r in cff["references"] if "2511.15256" in r["url"])
    assert paper["title"] == "Fine-Tuning Representation Models via GRPO-Driven Reinforcement Learning"
    assert [a["family-names"] for a in paper["authors"]] == ["Xu", "Jiao", "Zhang", "Li"] and paper["year"] == 2025
