"""The "Tuning decisions" section: every learning-rate decision under ``<results>/tuning/`` (grid,
validation score per value, winner, margin, SE, flags) as Markdown, LaTeX and CSV; the same rows are
the table the `grporm tune` command prints. The decision itself is `grporm.tuning`'s."""
from __future__ import annotations

import sys
from pathlib import Path

from analysis.render import file_links, frame_csv, latex_grid, markdown_grid
from grporm.errors import GrpormError
from grporm.storage import read_record
from grporm.tuning import DECISION_FIELDS, TUNING_DIR, _belongs_to, describe

NAME = "tuning"
TITLE = "Tuning decisions"
LEGEND = ("One learning-rate decision per setting (data set, backbone, method and every other setting "
          "but the seed), shared by every run with that setting: validation score in % after training "
          "each grid value as long as the decision's `fraction` of the final run; ties go to the smaller "
          "lr. Margin = winner minus runner-up, SE = binomial standard error of the winner's validation "
          "score, both in points. Flags: *close call* = margin below SE; *extended up/down* = the winner "
          "sat on an edge and the grid grew by its own step; *edge* = still on an edge after the last "
          "extension.")
ABSENT = ("No tuning record under `tuning/`: runs with `tune.grid` set (or `grporm tune`) write them; "
          "section skipped.")
ROW_TITLES = {"setting": "Setting", "key": "Key", "score": "Score", "grid": "Grid", "scores": "Val. score per lr (%)",
              "winner": "Winner", "margin": "Margin", "se": "SE", "flags": "Flags"}
ALIGN = "".join("r" if k in ("winner", "margin", "se") else "l" for k in ROW_TITLES)


def load_records(results: Path) -> list[dict]:
    """Every decision under `results`/tuning, by setting label then key; a damaged one is skipped
    with a warning naming it."""
    folder = Path(results) / TUNING_DIR
    records = []
    for path in sorted(folder.glob("[!.]*.json")) if folder.is_dir() else []:
        try:
            records.append(read_record(path, DECISION_FIELDS, "tuning record", _belongs_to(path)))
        except GrpormError as err:
            print(f"warning: {err}; left out of the report", file=sys.stderr)
    return sorted(records, key=lambda r: (_label_of(r), r["key"]))


def flags(record: dict) -> str:
    out = []
    if record.get("close_call"):
        out.append("close call")
    if record.get("edge"):
        out.append("edge")
    out += [f"extended {d}" for d in record.get("extended") or []]
    return ", ".join(out)


def _pct(value: float | None) -> str:
    return "diverged" if value is None else f"{100 * value:.1f}"


def _label_of(record: dict) -> str:
    """From the record's setting where it has a readable one (decisions made before `describe` carry
    a shorter label), else its stored label."""
    try:
        return describe(record["setting"])
    except (KeyError, TypeError, AttributeError, ValueError):
        return record.get("label", "")


def decision_row(record: dict) -> dict:
    """One row per decision, cells as text (scores, margin and SE in % of the validation score)."""
    scores = "; ".join(f"{row['lr']:g}: {_pct(row['score'])}" for row in record["scores"])
    margin = record.get("margin")
    return {"setting": _label_of(record), "key": record["key"], "score": record["score"],
            "grid": ", ".join(f"{lr:g}" for lr in record["grid"]), "scores": scores,
            "winner": f"{record['winner']:g}", "margin": "—" if margin is None else f"{100 * margin:.1f}",
            "se": f"{100 * record['se']:.1f}", "flags": flags(record)}


def _cells(records: list[dict]) -> list[list[str]]:
    return [[row[k] for k in ROW_TITLES] for row in map(decision_row, records)]


def decisions_markdown(records: list[dict]) -> str:
    return markdown_grid(list(ROW_TITLES.values()), _cells(records), ALIGN)


def tuning_latex(records: list[dict]) -> str:
    return latex_grid(TITLE, list(ROW_TITLES.values()), _cells(records), ALIGN)


def tuning_csv(records: list[dict]) -> str:
    """Long form, one line per (decision, grid value), numbers unrounded (fractions, not %)."""
    return frame_csv([{"setting": r.get("label", ""), "key": r["key"], "score_name": r["score"], "lr": row["lr"],
                       "score": row["score"], "n_val": row.get("n_val"), "winner": row["lr"] == r["winner"],
                       "margin": r["margin"], "se": r["se"], "close_call": r["close_call"], "edge": r["edge"],
                       "extended": " ".join(r.get("extended") or []), "seed": r.get("seed"), "epochs": r.get("epochs"),
                       "config_hash": r.get("config_hash")}
                      for r in records for row in r["scores"]])


def tuning_section(root: Path) -> tuple[list[str], dict[str, str]]:
    """(REPORT.md lines, {file suffix: text}) of the section; no files when there is no record."""
    records = load_records(root)
    parts = [f"## {TITLE}", ""]
    if not records:
        return parts + [ABSENT, ""], {}
    markdown = decisions_markdown(records)
    files = {".md": markdown, ".tex": tuning_latex(records), ".csv": tuning_csv(records)}
    return parts + [LEGEND, "", markdown.rstrip("\n"), "", file_links(NAME), ""], files
