"""Refresh the generated sections of a Markdown file from the files they name.

A section looks like
    <!-- BEGIN generated from results/quick/table.md -->
    ...replaced by that file's text...
    <!-- END generated -->
so the README shows tables produced by runs, never numbers typed by hand.

Usage: python tools/embed.py README.md [--results DIR --out FILE]

--results DIR with another folder than results/ (a rerun's own, e.g. `make reproduce RESULTS=dir`)
writes nothing unless --out FILE is given: the committed README describes the committed records and is
never rewritten from another folder, and a copy of it in DIR would contradict DIR's own tables (its
prose quotes the committed numbers). DIR's tables are DIR/REPORT.md and DIR/<experiment>/table.md. A
README.md copy an earlier version left in DIR (it carries the generated-section markers) is removed.
--out FILE fills the sections from DIR into FILE, when that is wanted.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

SECTION = re.compile(r"(<!-- BEGIN generated from (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- END generated -->)", re.S)
DEFAULT_RESULTS = "results"


def _source(root: Path, named: str, results: Path | None) -> Path:
    """The file a section names, with its leading results/ swapped for `results` when given."""
    parts = Path(named).parts
    if results is not None and parts and parts[0] == DEFAULT_RESULTS:
        return results.joinpath(*parts[1:])
    return root / named


def refresh(markdown: Path, results: Path | None = None, out: Path | None = None) -> bool:
    """Fill every section of `markdown` and write the result to `out` (default: in place); True if
    the written text differs from what `out` held."""
    out = out or markdown
    try:
        text = markdown.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SystemExit(f"error: cannot read {markdown} ({err}); give the Markdown file to refresh") from None
    root = markdown.parent

    def fill(match: re.Match) -> str:
        source = _source(root, match["path"], results)
        try:
            body = source.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SystemExit(f"error: {markdown} embeds {source}, which does not exist; run `make reproduce` first") from None
        except (OSError, UnicodeDecodeError) as err:
            raise SystemExit(f"error: {markdown} embeds {source}, which cannot be read ({err}); "
                             "regenerate it with `make report`") from None
        body = re.sub(r"^#+ .*\n+", "", body, count=1)  # the README has its own heading
        body = re.sub(r"^(#+) ", r"\1# ", body, flags=re.M)  # one level down: under the section that embeds it
        # Links in the source are relative to its folder; make them relative to the written file.
        folder = Path(os.path.relpath(source.parent.resolve(), out.parent.resolve())).as_posix()
        prefix = "" if folder == "." else folder + "/"
        body = re.sub(r"\]\((?!https?:|/|#)([^)]+)\)", lambda link: f"]({prefix}{link[1]})", body)
        return match.group(1) + body.rstrip() + "\n" + match.group(4)

    new = SECTION.sub(fill, text)
    old = out.read_text(encoding="utf-8") if out.exists() else None
    if new != old:
        out.write_text(new, encoding="utf-8")
    return new != old


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("markdown", nargs="*", type=Path, default=[Path("README.md")])
    parser.add_argument("--results", type=Path, help="read the sections' results/... files from this folder")
    parser.add_argument("--out", type=Path, help="write here instead of in place (one Markdown file only)")
    args = parser.parse_args(argv)
    results = args.results
    if results is not None and results.resolve() == (Path.cwd() / DEFAULT_RESULTS).resolve():
        results = None  # the committed folder: the sections name it already
    if (args.out is not None or results is not None) and len(args.markdown) != 1:
        parser.error("--out and --results take one Markdown file")
    if results is not None and args.out is None:
        print(f"{args.markdown[0]} embeds the committed records and is left alone; the tables of {results} are "
              f"{results / 'REPORT.md'} and {results}/<experiment>/table.md")
        stale = results / args.markdown[0].name
        if stale.is_file() and SECTION.search(stale.read_text(encoding="utf-8", errors="replace")):
            stale.unlink()  # a copy written by an earlier version: its prose contradicts the folder's tables
            print(f"removed {stale}, a stale copy of {args.markdown[0].name}")
        return
    for name in args.markdown:
        target = args.out or name
        print(f"{target}: {'updated' if refresh(name, results, target) else 'up to date'}")


if __name__ == "__main__":
    sys.exit(main())
