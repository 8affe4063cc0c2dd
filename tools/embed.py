"""Refresh the generated sections of a Markdown file from the files they name.

A section looks like
    <!-- BEGIN generated from results/quick/table.md -->
    ...replaced by that file's text...
    <!-- END generated -->
so the README shows tables produced by runs, never numbers typed by hand.
Usage: python tools/embed.py README.md
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

SECTION = re.compile(r"(<!-- BEGIN generated from (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- END generated -->)", re.S)


def refresh(markdown: Path) -> bool:
    text = markdown.read_text()
    root = markdown.parent

    def fill(match: re.Match) -> str:
        source = root / match["path"]
        if not source.exists():
            raise SystemExit(f"error: {markdown} embeds {source}, which does not exist; run `make reproduce` first")
        body = source.read_text()
        body = re.sub(r"^#+ .*\n+", "", body, count=1)  # the README has its own heading
        body = re.sub(r"^(#+) ", r"\1# ", body, flags=re.M)  # one level down: under the section that embeds it
        # Links in the source are relative to its folder; make them relative to the README.
        folder = Path(match["path"]).parent.as_posix()
        body = re.sub(r"\]\((?!https?:|/|#)([^)]+)\)", lambda link: f"]({folder}/{link[1]})", body)
        return match.group(1) + body.rstrip() + "\n" + match.group(4)

    new = SECTION.sub(fill, text)
    if new != text:
        markdown.write_text(new)
    return new != text


if __name__ == "__main__":
    for name in sys.argv[1:] or ["README.md"]:
        print(f"{name}: {'updated' if refresh(Path(name)) else 'up to date'}")
