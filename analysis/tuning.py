"""The "Tuning decisions" section: every learning-rate decision under ``<results>/tuning/`` (grid,
validation score per value, winner, margin, SE, flags) as Markdown, LaTeX and CSV; the same rows are
the table the `grporm tune` command prints. The decision itself is `grporm.tuning.decisions`'s."""
from __future__ import annotations

from pathlib import Path

from grporm.analysis.render import file_links, frame_csv, latex_grid, markdown_grid
from grporm.tuning.decisions import as_points, flags, load_records, setting_label

NAME = "tuning"
TITLE = "Tuning decisions"
LEGEND = ("One learning-rate decision per setting (data set, backbone, method and every other setting "
          "but the seed), shared by every run with that setting: validation score in % after training "
          "each grid value as long as the decision's `fraction` of the final run, once per tuning seed "
          "(mean, per-seed scores in brackets); ties go to the smaller lr. Margin = winner minus runner-up "
          "(means), SE = binomial standard error of the winner's mean score, Seed SE = standard error of "
          "the per-seed differences winner minus runner-up, all in points. Flags: *close call* = margin "
          "below the larger of SE and Seed SE (its cells are also run at the runner-up, `make sensitivity`); "
          "*extended up/down* = the winner sat on an edge and the grid grew by its own step; *edge* = still "
          "on an edge after the last extension.")


def _pct(value: float | None) -> str:
    return "diverged" if value is None else f"{100 * value:.1f}"


def _per_seed(row: dict) -> str:
    seeds = row.get("per_seed") or []
    return f" ({', '.join(_pct(x.get('score')) for x in seeds)})" if seeds else ""


def decision_row(record: dict) -> dict:
    """One row per decision, cells as text (scores, margin and SEs in % of the validation score): the
    mean score per lr with its per-seed scores in brackets."""
    scores = "; ".join(f"{row['lr']:g}: {_pct(row['score'])}{_per_seed(row)}" for row in record["scores"])
    runner_up = record.get("runner_up")
    return {"setting": setting_label(record), "key": record["key"], "score": record["score"],
            "seeds": ", ".join(str(s) for s in record["seeds"]),
            "grid": ", ".join(f"{lr:g}" for lr in record["grid"]), "scores": scores,
            "winner": f"{record['winner']:g}", "runner_up": "—" if runner_up is None else f"{runner_up:g}",
            "margin": as_points(record.get("margin")), "se": as_points(record.get("se")),
            "seed_se": as_points(record.get("seed_se")), "flags": flags(record)}


ROW_TITLES = {"setting": "Setting", "key": "Key", "score": "Score", "seeds": "Seeds", "grid": "Grid",
              "scores": "Val. score per lr, mean (per seed) (%)", "winner": "Winner", "runner_up": "Runner-up",
              "margin": "Margin", "se": "SE", "seed_se": "Seed SE", "flags": "Flags"}
ALIGN = "".join("r" if k in ("winner", "runner_up", "margin", "se", "seed_se") else "l" for k in ROW_TITLES)


def _cells(records: list[dict]) -> list[list[str]]:
    return [[row[k] for k in ROW_TITLES] for row in map(decision_row, records)]


def decisions_markdown(records: list[dict]) -> str:
    return markdown_grid(list(ROW_TITLES.values()), _cells(records), ALIGN)


def tuning_latex(records: list[dict]) -> str:
    return latex_grid(TITLE, list(ROW_TITLES.values()), _cells(records), ALIGN)


def tuning_csv(records: list[dict]) -> str:
    """Long form, one line per (decision, grid value), numbers unrounded (fractions, not %)."""
    return frame_csv([{"setting": r.get("label", ""), "key": r["key"], "score_name": r["score"], "lr": row["lr"],
                      "score": row["score"], "n_val": row.get("n_val") or " ".join(str(x.get("n_val")) for x in row.get("per_seed") or []),
                      "winner": row["lr"] == r["winner"],
                      "margin": r["margin"], "se": r["se"], "close_call": r["close_call"], "edge": r["edge"],
                      "runner_up": r.get("runner_up"), "seed_se": r.get("seed_se"), "seeds": " ".join(map(str, r.get("seeds") or [])),
                      "per_seed": " ".join(f"{x['seed']}:{x['score']}" for x in row.get("per_seed") or []),
                      "extended": " ".join(r.get("extended") or []), "seed": r.get("seed"), "epochs": r.get("epochs"),
                      "config_hash": r.get("config_hash")}
                     for r in records for row in r["scores"]])


def decisions_of(root: Path, keys: set[str] | None = None) -> list[dict]:
    """The decisions under ``root/tuning`` (only those whose key is in ``keys``, the decisions the
    report's runs trained at, when given)."""
    return [r for r in load_records(root) if keys is None or r.get("key") in keys]


def tuning_section(records: list[dict]) -> tuple[list[str], dict[str, str]]:
    """(REPORT.md lines, {file suffix: text}) of the section: the decisions (`decisions_of`); no lines
    and no files when there is none."""
    parts = [f"## {TITLE}", ""]
    if not records:
        return [], {}
    markdown = decisions_markdown(records)
    files = {".md": markdown, ".tex": tuning_latex(records), ".csv": tuning_csv(records)}
    return parts + [LEGEND, "", markdown.rstrip("\n"), "", file_links(NAME), ""], files
