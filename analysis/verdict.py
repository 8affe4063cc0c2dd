"""The verdict: for every claim of the paper (rows, one per backbone) and every reading of GRPO-RM
(columns, the `arm`s of the studies), the paired difference against CE of the same study, backbone
and seed, with its 95% t interval and one word: ahead, behind or no difference.

Each row also states its power: the smallest paired difference the study could detect (two-sided 5%
test, 80% power) from the seeds' spread of the row's paired differences, and the seeds that would
bring it to `TARGET` points. Inputs are the records alone (`RunSet`); rendering is Markdown, LaTeX
and CSV like every report table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd
from scipy import stats as _scipy_stats

from grporm.analysis.records import RunSet, load_history
from grporm.analysis.render import file_links, frame_csv, latex_grid, markdown_grid
from grporm.analysis.sections import Column, run_values
from grporm.analysis.stats import PairedDiff, paired_difference
from grporm.record_schema import HEADLINE_KNN, MIOU, SR

NAME = "verdict"
TITLE = "Verdict: each reading of GRPO-RM against CE"
ARM = "arm"                # the matrix axis that names a study's columns
CONTROL = "ce"             # the control arm's method
TREATMENT = "grpo_rm"      # arms with this method are the columns
FIRST, LAST = "default", "anchor"  # shown first and last (the CE anchor is a control); the rest by name
CONFIDENCE, POWER = 0.95, 0.80
TARGET = 3.0               # points: the detectable difference the studies are sized for (README, 'Power')
WORDS = ("ahead", "behind", "no difference")


@dataclass(frozen=True)
class Claim:
    name: str
    experiment: str
    measure: str                                         # what the number is, for the legend
    values: Callable[[RunSet, pd.DataFrame], pd.Series]   # (run set, its runs of the experiment) -> value per path
    scale: float = 100.0                                 # fractions shown in points


def _clean(column: str) -> Callable[[RunSet, pd.DataFrame], pd.Series]:
    return lambda _, runs: runs.set_index("path")[column]


def _tidy(family: str, metric: str, condition: str | None = None) -> Callable[[RunSet, pd.DataFrame], pd.Series]:
    """The run's mean over its tidy rows of (family, metric[, condition]): e.g. every corruption and severity."""
    column = Column("", "", family, metric, condition)
    return lambda run_set, _: run_values(run_set.metrics, column)


def _after_first_epoch(_: RunSet, runs: pd.DataFrame) -> pd.Series:
    """kNN@20 of the validation probe after the first epoch (history.csv): how far one epoch gets."""
    out = {}
    for path in runs["path"]:
        history = load_history(path)
        if history is not None and HEADLINE_KNN in history and (history["epoch"] == 1).any():
            out[path] = float(history.loc[history["epoch"] == 1, HEADLINE_KNN].iloc[0])
    return pd.Series(out, dtype=float)


CLAIMS = (
    Claim("SR", "study_readings", "test top-1 of softmax regression on frozen features", _clean(SR)),
    Claim("kNN", "study_readings", "test top-1 of kNN@20 on frozen features", _clean(HEADLINE_KNN)),
    Claim("Convergence", "study_readings", "validation kNN@20 after the first of the 4 epochs", _after_first_epoch),
    Claim("OOD: corruptions", "study_readings", "SR averaged over 6 corruptions x 5 severities of the test split",
          _tidy("ood", SR)),
    Claim("OOD: transfer", "study_transfer", "SR on scikit-learn's 8x8 digits after training on MNIST-5k",
          _tidy("transfer", SR, "digits")),
    Claim("Imbalance", "study_imbalance", "balanced test SR after long-tailed training (factor 100)",
          _tidy("imbalance", SR, "overall")),
    Claim("Imbalance: few-shot", "study_imbalance", "the same, on the classes with fewer than 20 training images",
          _tidy("imbalance", SR, "few")),
    Claim("Segmentation", "study_segmentation", "test mIoU of the linear segmentation head", _tidy("seg", MIOU)),
)


def word(diff: PairedDiff) -> str:
    """ahead / behind when the interval excludes 0, else no difference; '' without an interval."""
    if diff.n < 2 or math.isnan(diff.ci_low):
        return ""
    return WORDS[0] if diff.ci_low > 0 else WORDS[1] if diff.ci_high < 0 else WORDS[2]


def detectable(std: float, n: int, confidence: float = CONFIDENCE, power: float = POWER) -> float:
    """Smallest true mean paired difference a two-sided paired t test at 1 - confidence detects with
    the given power, for n pairs whose differences have standard deviation std (normal approximation
    of the noncentral t with the t quantiles: (t_{1-a/2} + t_{power}) * std / sqrt(n))."""
    if n < 2 or not math.isfinite(std):
        return math.nan
    t = _scipy_stats.t
    return (t.ppf(1 - (1 - confidence) / 2, n - 1) + t.ppf(power, n - 1)) * std / math.sqrt(n)


def seeds_needed(std: float, target: float, most: int = 200) -> int | None:
    """Fewest pairs whose detectable difference is at most `target` (None: more than `most`)."""
    if not math.isfinite(std):
        return None
    return next((n for n in range(2, most + 1) if detectable(std, n) <= target), None)


@dataclass(frozen=True)
class VerdictRow:
    claim: Claim
    backbone: str
    cells: dict[str, PairedDiff]   # arm -> paired difference against CE
    n: int                         # pairs in most cells
    std: float                     # pooled std of the paired differences (fractions)
    runs: tuple[tuple[str, str], ...]  # (run_id, config_hash) behind the row
    shaky: frozenset[str] = frozenset()  # arms whose or whose CE's learning rate was a close call or an edge pick

    @property
    def detectable(self) -> float:
        return detectable(self.std, self.n)

    @property
    def seeds_for_target(self) -> int | None:
        return seeds_needed(self.std * self.claim.scale, TARGET)


def _shaky(run_set: RunSet, runs: pd.DataFrame) -> bool:
    """Did any of these runs train at a learning rate whose decision was a close call or an edge pick?"""
    decisions = [(run_set.records.get(path) or {}).get("tuning") or {} for path in runs["path"]]
    return any(d.get("close_call") or d.get("edge") for d in decisions)


def _arm_order(arms) -> list[str]:
    return sorted(set(arms), key=lambda a: (a != FIRST, a == LAST, a))


def verdict_rows(run_set: RunSet) -> tuple[list[VerdictRow], list[str]]:
    """The rows of every claim whose study has a CE arm and at least one GRPO-RM arm, and the arms (columns)."""
    runs = run_set.runs
    if runs.empty or ARM not in runs.columns:
        return [], []
    rows: list[VerdictRow] = []
    arms: set[str] = set()
    for claim in CLAIMS:
        study = runs[(runs["experiment"] == claim.experiment) & runs[ARM].notna() & (runs[ARM] != "")]
        if study.empty:
            continue
        values = claim.values(run_set, study)
        study = study.assign(value=study["path"].map(values))
        for backbone, group in study.groupby("backbone", sort=True):
            control = group[group["method"] == CONTROL]
            if control[ARM].nunique() != 1:  # no CE arm, or two: nothing to pair with unambiguously
                continue
            base = dict(zip(control["seed"], control["value"]))
            cells = {arm: paired_difference(dict(zip(g["seed"], g["value"])), base)
                     for arm, g in group[group["method"] == TREATMENT].groupby(ARM)}
            cells = {arm: cell for arm, cell in cells.items() if cell.n > 0}
            if not cells:
                continue
            arms.update(cells)
            spread = [c.std ** 2 for c in cells.values() if c.n >= 2 and math.isfinite(c.std)]
            std = math.sqrt(sum(spread) / len(spread)) if spread else math.nan
            used = group[group[ARM].isin([*cells, control[ARM].iloc[0]])]
            shaky = {arm for arm in cells if _shaky(run_set, group[group[ARM] == arm])}
            shaky = set(cells) if _shaky(run_set, control) else shaky
            rows.append(VerdictRow(claim, str(backbone), cells, max(c.n for c in cells.values()), std,
                                   tuple(sorted(zip(used["run_id"], used["config_hash"]))), frozenset(shaky)))
    return rows, _arm_order(arms)


SHAKY = "‡"


def cell_text(cell: PairedDiff | None, scale: float, shaky: bool = False) -> str:
    if cell is None:
        return "not run"
    text = f"{scale * cell.mean:+.1f}"
    if not math.isnan(cell.ci_low):
        text += f" [{scale * cell.ci_low:+.1f}, {scale * cell.ci_high:+.1f}] {word(cell)}"
    return text.replace("-", "−") + (f" {SHAKY}" if shaky else "")


def _number(value: float, digits: int = 1) -> str:
    return "—" if not math.isfinite(value) else f"{value:.{digits}f}"


def _row_cells(row: VerdictRow, arms: list[str]) -> list[str]:
    needed = row.seeds_for_target
    return [row.claim.name, row.backbone, str(row.n), _number(row.detectable * row.claim.scale),
            str(needed) if needed is not None else "> 200"] + [cell_text(row.cells.get(a), row.claim.scale, a in row.shaky) for a in arms]


HEADER = ["Claim", "Backbone", "Seeds", "Detectable", f"Seeds for {TARGET:g}"]


def verdict_markdown(rows: list[VerdictRow], arms: list[str]) -> str:
    header = HEADER + [f"`{a}`" for a in arms]
    return markdown_grid(header, [_row_cells(row, arms) for row in rows], "ll" + "r" * (len(header) - 2))


def verdict_latex(rows: list[VerdictRow], arms: list[str]) -> str:
    header = HEADER + arms
    cells = [[c.replace("−", "-").replace(SHAKY, "(lr?)") for c in _row_cells(row, arms)] for row in rows]
    return latex_grid(TITLE, header, cells, "ll" + "r" * (len(header) - 2))


def verdict_csv(rows: list[VerdictRow]) -> str:
    """One line per (claim, backbone, arm), numbers unrounded in the record's unit (fractions)."""
    return frame_csv([{"claim": r.claim.name, "experiment": r.claim.experiment, "backbone": r.backbone, "arm": arm,
                       "n": cell.n, "diff": cell.mean, "ci_low": cell.ci_low, "ci_high": cell.ci_high,
                       "verdict": word(cell), "lr_close_call_or_edge": arm in r.shaky, "row_std": r.std,
                       "row_detectable": r.detectable, "seeds": " ".join(map(str, cell.seeds))}
                      for r in rows for arm, cell in r.cells.items()])


def reproduced(rows: list[VerdictRow], arms: list[str]) -> list[str]:
    """Per claim, the readings ahead of CE on every backbone the claim was run on, in words. The CE
    anchor is a control (its gradient is CE's), not a reading: it is never said to reproduce a claim."""
    arms = [a for a in arms if a != LAST]
    out = []
    for claim in dict.fromkeys(r.claim for r in rows):
        mine = [r for r in rows if r.claim == claim]
        ahead = [a for a in arms if all(a in r.cells and word(r.cells[a]) == "ahead" for r in mine)]
        behind = [a for a in arms if all(a in r.cells and word(r.cells[a]) == "behind" for r in mine)]
        run = [a for a in arms if any(a in r.cells for r in mine)]
        backbones = " and ".join(r.backbone for r in mine)
        text = (f"**reproduced** by {', '.join(f'`{a}`' for a in ahead)}" if ahead
                else "**not reproduced** by any reading")
        text += f" (on {backbones}; {len(run)} reading(s) run"
        text += f", behind CE on every backbone: {', '.join(f'`{a}`' for a in behind)})" if behind else ")"
        out.append(f"- {claim.name} ({claim.measure}): {text}.")
    return out


LEGEND = (f"Each cell: the reading (column, an `arm` of the study) minus CE, paired by backbone and seed, in "
          f"points: mean [{CONFIDENCE:.0%} t interval] and a word: *ahead* or *behind* when the interval "
          f"excludes 0, *no difference* when it covers 0 (not: *equal*; see Detectable). *not run*: the "
          f"study of that claim has no such arm. Every arm trains at its own tuned learning rate (Tuning "
          f"decisions). Seeds = pairs per cell. Detectable = the smallest true difference, in points, that "
          f"a two-sided paired t test at 5% finds with {POWER:.0%} power given the spread of this row's "
          f"paired differences (pooled over its readings); Seeds for {TARGET:g} = the pairs that would bring "
          f"it to {TARGET:g} points. {SHAKY}: the learning rate of this reading or of CE was a close call or an "
          f"edge pick (Tuning decisions): the cell could move with another decision.")


def verdict_section(run_set: RunSet) -> tuple[list[str], dict[str, str]]:
    """(REPORT.md lines, {file suffix: text}); the Markdown file also carries the legend, the claims'
    measures and the plain statement, since the README embeds it whole."""
    rows, arms = verdict_rows(run_set)
    parts = [f"## {TITLE}", ""]
    if not rows:
        return parts + ["No study with an `arm` axis holding a CE arm and a GRPO-RM arm has finished runs; "
                        "section skipped.", ""], {}
    measures = [f"- {c.name} (`{c.experiment}`): {c.measure}." for c in dict.fromkeys(r.claim for r in rows)]
    missing = [c for c in CLAIMS if c not in {r.claim for r in rows}]
    measures += [f"- {c.name} (`{c.experiment}`): no finished runs; not judged." for c in missing]
    sources = [f"- {r.claim.name} / {r.backbone}: " + ", ".join(f"{i} ({h})" for i, h in r.runs) for r in rows]
    body = [LEGEND, "", verdict_markdown(rows, arms).rstrip("\n"), "", "Claims and what is measured:", ""] + \
        measures + ["", f"Which reading reproduces which claim (ahead of CE on every backbone; `{LAST}` is a control, not a reading):", ""] + \
        reproduced(rows, arms) + [""]
    markdown = "\n".join([f"# {TITLE}", ""] + body)
    files = {".md": markdown, ".tex": verdict_latex(rows, arms), ".csv": verdict_csv(rows)}
    return parts + body + [file_links(NAME), "", "<details><summary>Runs behind each row (run id, config hash)"
                                                  "</summary>", ""] + sources + ["", "</details>", ""], files
