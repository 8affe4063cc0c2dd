"""The verdict's comparisons (analysis/verdict.py, computed once per report) as text: the Markdown of
REPORT.md's verdict section and tables/verdict.md (legend, one grid per experiment, claim words, the
probability of improvement, the A/A rate), the at-a-glance summary, LaTeX, and the frame as CSV.
Nothing here pairs runs or tests anything: every number is a column of the verdict frame."""
from __future__ import annotations

import math

import pandas as pd

import grporm.analysis.sequential as seq
import grporm.stats as stats
from grporm.analysis.render import file_links, frame_csv, latex_grid, markdown_grid
from grporm.analysis.verdict import ARM, BOOTSTRAP_REPS, FRAME_COLUMNS, ROW, Comparison, frame_of
from grporm.config import VerdictConfig
from grporm.plan.measures import MEASURES, split

NAME = "verdict"
TITLE = "Verdict: every comparison with its control"
SHAKY = "‡"
ROLE_MARK = {"aa": " (A/A)", "reference": " (reference)"}  # how the arms that are no treatment are named


def _signed(value: float) -> str:
    return f"{value:+.1f}".replace("-", "−")


def _p(value: float) -> str:
    return "—" if not math.isfinite(value) else "<0.001" if value < 0.001 else f"{value:.3f}"


def cell_text(line) -> str:
    if line is None:
        return "not run"
    text = _signed(line["diff"])
    if math.isfinite(line["ci_low"]):
        below = ", below δ" if line["below_margin"] and line["word"] != stats.BEHIND else ""
        text += f" [{_signed(line['ci_low'])}, {_signed(line['ci_high'])}] {line['word']}{below} (p {_p(line['p'])})"
    if line["runner_up_word"]:
        text += f" (runner-up: {line['runner_up_word']})"
    return text + (f" {SHAKY}" if line["no_rerun"] else "")


def _number(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:.1f}"


def _needed(value) -> str:
    """The planning seeds: '—' when nothing is left to decide, '> 500' beyond the search."""
    value = float(value) if value is not None else math.inf
    return "—" if math.isnan(value) else "> 500" if math.isinf(value) else str(int(value))


def _range(values, fmt: str = "{:.3g}") -> str:
    shown = list(dict.fromkeys(fmt.format(v) for v in sorted(values) if math.isfinite(v)))
    return "—" if not shown else shown[0] if len(shown) == 1 else f"{shown[0]}–{shown[-1]}"


def _columns(frame: pd.DataFrame) -> list[str]:
    return [w for role in ("treatment", "reference", "aa") for w in dict.fromkeys(frame.loc[frame["role"] == role, "treatment"])]


def _grid(c: Comparison) -> tuple[list[str], list[list[str]]]:
    frame = c.frame
    who = _columns(frame)
    keys = [k for k in ("dataset", "axes") if frame[k].nunique() > 1 or (k == "axes" and frame[k].ne("").any())]
    header = ["Claim", *[{"dataset": "Data set", "axes": "Axes"}[k] for k in keys], "Backbone", "Seeds",
              "Level (each side)", "Largest upper bound", "Seeds to decide (planning)"]
    roles = dict(zip(frame["treatment"], frame["role"]))
    header += [f"`{w}`" + ROLE_MARK.get(roles[w], "") for w in who]
    rows = []
    for (claim, *_), lines in frame.groupby(["claim", *ROW], sort=False):
        first = lines.iloc[0]
        by = {line["treatment"]: line for _, line in lines.iterrows()}
        treated = lines[lines["role"] == "treatment"]
        rows.append([claim, *[str(first[k]) for k in keys], first["backbone"], _range(lines["n"], "{:.0f}"),
                     _range(treated["level"]) if len(treated) else "—", _signed(first["row_upper"])
                     if math.isfinite(first["row_upper"]) else "—", _needed(first["seeds_needed"])]
                    + [cell_text(by.get(w)) for w in who])
    return header, rows


def _looks_text(declared: VerdictConfig) -> str:
    if declared.max_seeds is None:
        return "a fixed design (one look at the full α)"
    return (f"seeds until decided: looks after every {declared.batch} seeds up to {declared.max_seeds} per cell, α spent "
            f"over the looks by the {seq.DEFAULT_SPENDING.replace('_', '-')}-type function (union bound)")


def legend(note: str = "") -> str:
    return (
        "Each cell: the treatment (column) minus the control of its experiment, paired by seed and by every other "
        "axis the control shares (data set, backbone, matrix values), in points: mean [lower, upper bound], the word "
        "and p. **One rule for bounds and words**: each row's treatments are one family of m; each bound is a "
        "one-sided Student-t bound at level α / m (α = 5% at a fixed design's one look; with seeds until decided, the "
        "part of 5% the look spends), so the interval shown is the two-sided interval with α / m on each side "
        "(**Level**). **Word**: *ahead* when the lower bound is above 0, *behind* when the upper bound is below 0, "
        "*no difference* otherwise (never *equal*); p = the one-sided p of the test in the direction of the mean, "
        "below the Level exactly when the word is ahead or behind. *below δ*: the upper bound is below the "
        "experiment's margin δ (the smallest improvement that matters): the non-superiority test (H0: difference "
        "≥ δ) rejects. **Claim words**: *reproduced* = one treatment ahead on every row of the claim; "
        "*contradicted* = on every row every treatment's upper bound below δ (intersection-union); *inconclusive* "
        "otherwise, with the row's **largest upper bound** and **seeds to decide (planning)**: the seeds a fixed "
        "design at the row's level would need for 80% power to decide its undecided cells if their true "
        "differences were the observed ones (noncentral t; a plan, never a decision). A/A controls (A/A) and "
        "references are judged alone (m = 1), outside the family, and never decide a claim. **P(improvement)** = "
        "share of seeds whose treatment run beats the control's run of the same seed (ties half), averaged over "
        f"the rows (tasks), with a 95% bootstrap interval ({BOOTSTRAP_REPS} resamples of seeds, each drawn seed "
        "taken in every row at once, since the rows of a seed share its runs and its data draw); when every seed "
        "improves on every row (or none does), resampling cannot move it and no interval is given: the words say "
        "so. **A/A**: k of N cells whose interval excludes 0, with the one-sided 95% Clopper-Pearson upper bound "
        "of the rate. Main cells use the runs at each learning-rate decision's winner; *(runner-up: word)* = the "
        "word with the runs at the runner-up learning rate for the side(s) whose decision was a close call (an A/A "
        f"control only runner-up against runner-up); {SHAKY} = a close call and no runner-up run. *not run*: no "
        "such treatment in that row." + note)


def _aa_line(c: Comparison, arm: str) -> str:
    cells = c.frame[(c.frame["treatment"].str.split(",").str[0] == arm) & c.frame["ci_low"].map(math.isfinite)]
    if cells.empty:
        return ""
    k, n = int(cells["word"].isin([stats.AHEAD, stats.BEHIND]).sum()), len(cells)
    nominal = 2 * cells["level"].max()
    return (f"A/A `{arm}`: {k} of {n} cells excluded 0 (the rate at most {stats.clopper_pearson_upper(k, n):.0%}, "
            f"one-sided 95% Clopper-Pearson; nominal at most {nominal:.0%}, half on each side).")


def _claim_line(claim: str, lines: pd.DataFrame) -> str:
    first = lines.iloc[0]
    name, _ = split(first["measure"])
    treated = lines[lines["role"] == "treatment"]
    ahead = sorted(set(treated.loc[treated["word"] == stats.AHEAD, "treatment"]))
    text = (f"- {claim} ({'primary' if first['primary'] else 'secondary'}; `{first['measure']}`: "
            f"{MEASURES.get(name).doc}): **{first['claim_word']}**"
            + (f"; ahead somewhere: {', '.join(f'`{a}`' for a in ahead)}" if ahead else ""))
    if first["claim_word"] == stats.INCONCLUSIVE and len(treated):
        rows = lines.drop_duplicates(ROW)
        worst = rows.loc[rows["row_upper"].idxmax()] if rows["row_upper"].map(math.isfinite).any() else None
        if worst is not None:
            text += f"; largest upper bound {_signed(worst['row_upper'])} points ({_row_name(worst)}) against δ = {first['margin']:g}"
        needed = [float(v) for v in rows["seeds_needed"] if not math.isnan(float(v))]
        if needed:
            text += f"; a fixed design would need {_needed(max(needed))} seeds to decide it (planning only)"
    return text + "."


def _experiment_markdown(c: Comparison) -> list[str]:
    parts = [f"#### `{c.experiment}`", ""]
    source = "declared in its `verdict:`" if c.declared else "default rule (no `verdict:` in its records)"
    aa = ", ".join(f"`{a}`" for a in c.declaration.aa) or "none"
    parts += [f"Control: `{c.declaration.control}` ({'arm' if c.axis == ARM else 'method'}); A/A: {aa}; "
              f"margin δ = {c.declaration.margin:g} point{'s' * (c.declaration.margin != 1)}; {_looks_text(c.declaration)}; claims: {source}.", ""]
    header, rows = _grid(c)
    parts += [markdown_grid(header, rows, "l" * 2 + "r" * (len(header) - 2)).rstrip("\n"), ""]
    parts += ["Claims:", ""]
    parts += [_claim_line(claim, lines) for claim, lines in c.frame.groupby("claim", sort=False)]
    parts.append("")
    if c.aggregate:
        rows = [[f"`{a['treatment']}`" + ROLE_MARK.get(a["role"], ""), _improvement(a), str(a["tasks"]), str(a["seeds"])]
                for a in c.aggregate]
        parts += [markdown_grid(["Treatment", "P(improvement) [95%]", "Tasks", "Seeds"], rows, "lrrr").rstrip("\n"), ""]
    for a in c.declaration.aa:
        line = _aa_line(c, a)
        parts += [line, ""] if line else []
    edges = sorted(set(c.frame.loc[c.frame["edge"].astype(bool), "treatment"]))
    if edges:
        parts += ["Learning rate on a grid edge (the grid did not bracket the optimum) for the control or: "
                  + ", ".join(f"`{e}`" for e in edges) + ".", ""]
    return parts


def _improvement(a: dict) -> str:
    if a.get("separation") == "all":
        return f"{a['probability']:.2f} (every seed improves on every row: complete separation, no interval)"
    if a.get("separation") == "none":
        return f"{a['probability']:.2f} (no seed improves on any row: complete separation, no interval)"
    if a.get("separation") == "rows":
        return (f"{a['probability']:.2f} (every seed one way on each row: complete separation within rows, "
                "no interval)")
    return f"{a['probability']:.2f} [{a['ci_low']:.2f}, {a['ci_high']:.2f}]"


def verdict_markdown(found: list[Comparison]) -> str:
    parts = [legend(), ""]
    for c in found:
        if not c.frame.empty:
            parts += _experiment_markdown(c) + ([f"- {n}" for n in c.notes] + [""] if c.notes else [])
    without = [n for c in found if c.frame.empty for n in c.notes]
    if without:
        parts += ["Experiments without a verdict:", ""] + [f"- {n}" for n in without] + [""]
    return "\n".join(parts)


SUMMARY_LEGEND = (
    "One line per claim of each experiment, from the full verdict tables (`verdict.md`, bounds and p values "
    "there): the setting its words hold at (the control's training epochs, images per class and image size); "
    "primary or secondary, the claim word; the treatments *ahead* of and *behind* the control (bounds at "
    "α / m per side, m the row's treatments), with the rows (backbone, and axes where an experiment has more) "
    "where they are; the largest upper bound of any treatment over the claim's rows (contradicted: below δ on "
    "every row); for an inconclusive claim the seeds a fixed design would need to decide it (planning only); the "
    "A/A control's cells whose interval excludes 0; and every cell whose word turns when the close-call side "
    "trains at its runner-up learning rate. P(improvement): each treatment's share of seeds beating the "
    "control's run of the seed, averaged over the experiment's rows, 95% bootstrap interval over seeds.")


def _row_name(line) -> str:
    return line["backbone"] + (f" {line['axes']}" if line["axes"] else "")


def _where(lines: pd.DataFrame) -> str:
    return ", ".join(dict.fromkeys(_row_name(line) for _, line in lines.iterrows()))


def _named(lines: pd.DataFrame, word: str) -> str:
    """'`a`, `b` (rows); `c` (rows)': the treatments with `word`, those with the same rows together."""
    hits = lines[lines["word"] == word]
    by_rows: dict[str, list[str]] = {}
    for treatment, rows in hits.groupby("treatment", sort=False):
        by_rows.setdefault(_where(rows), []).append(f"`{treatment}`")
    return "; ".join(f"{', '.join(names)} ({rows})" for rows, names in by_rows.items()) or "—"


def _count(words: list[str]) -> str:
    return ", ".join(f"{words.count(w)} {w}" for w in (stats.REPRODUCED, stats.CONTRADICTED, stats.INCONCLUSIVE))


def headline(found: list[Comparison]) -> list[str]:
    """The claims counted, primary first with the family each is judged at, and the A/A cells of every
    experiment with runs shared between experiments counted once."""
    claims = [(bool(lines["primary"].iloc[0]), lines["claim_word"].iloc[0]) for c in found if not c.frame.empty
              for _, lines in c.frame.groupby("claim", sort=False)]
    if not claims:
        return []
    primary = [w for p, w in claims if p]
    secondary = [w for p, w in claims if not p]
    out = [f"**{len(primary)} primary claim{'s' * (len(primary) != 1)}**, each at α = {stats.ALPHA:g} one-sided over its "
           f"rows' treatments (Bonferroni within a row; every row must agree; no correction across claims): "
           f"{_count(primary)}."
           + (f" Secondary claims ({len(secondary)}, reported beside, not counted above): {_count(secondary)}."
              if secondary else "")]
    aa = pd.concat([c.frame[(c.frame["role"] == "aa") & c.frame["ci_low"].map(math.isfinite)] for c in found
                    if not c.frame.empty] or [pd.DataFrame(columns=list(FRAME_COLUMNS))])
    if len(aa):
        # one piece of evidence once: a cell on the same measure from the same runs in two experiments
        distinct = aa.assign(_excludes=aa["word"].isin([stats.AHEAD, stats.BEHIND])).drop_duplicates(["measure", "evidence"])
        k, n = int(distinct["_excludes"].sum()), len(distinct)
        shared = len(aa) - n
        out.append(f"A/A, every experiment: {k} of {n} cells excluded 0 (the rate at most "
                   f"{stats.clopper_pearson_upper(k, n):.0%}, one-sided 95% Clopper-Pearson)"
                   + (f"; {shared} more cell{'s' * (shared != 1)} rest on runs another experiment shares, counted once"
                      if shared else "") + ".")
    return out


def summary_markdown(found: list[Comparison]) -> str:
    """The verdict at a glance: the headline, one line per (experiment, claim), then P(improvement) per experiment."""
    claims, improvements = [], []
    for c in (c for c in found if not c.frame.empty):
        for claim, lines in c.frame.groupby("claim", sort=False):
            treated, aa = lines[lines["role"] == "treatment"], lines[(lines["role"] == "aa") & lines["ci_low"].map(math.isfinite)]
            turns = lines[lines["runner_up_word"].astype(bool) & (lines["runner_up_word"] != lines["word"])]
            word = lines["claim_word"].iloc[0]
            rows = lines.drop_duplicates(ROW)
            needed = [float(v) for v in rows["seeds_needed"] if not math.isnan(float(v))]
            claims.append([f"`{c.experiment}`", claim, c.setting or "—", "primary" if lines["primary"].iloc[0] else "secondary",
                           f"**{word}**", _named(treated, stats.AHEAD), _named(treated, stats.BEHIND),
                           _signed(rows["row_upper"].max()) if rows["row_upper"].map(math.isfinite).any() else "—",
                           _range(lines["n"], "{:.0f}"),
                           _needed(max(needed)) if word == stats.INCONCLUSIVE and needed else "—",
                           f"{int(aa['word'].isin([stats.AHEAD, stats.BEHIND]).sum())} of {len(aa)}" if len(aa) else "—",
                           "; ".join(f"`{r['treatment']}` ({_row_name(r)}): {r['word']} → {r['runner_up_word']}"
                                     for _, r in turns.iterrows()) or "—"])
        if c.aggregate:
            ranked = sorted(c.aggregate, key=lambda a: -a["probability"])
            improvements.append([f"`{c.experiment}`", "; ".join(
                f"`{a['treatment']}`{ROLE_MARK.get(a['role'], '')} {_improvement(a)}" for a in ranked)])
    if not claims:
        return ""
    header = ["Experiment", "Claim", "Setting", "Kind", "Word", "Ahead of the control", "Behind the control",
              "Largest upper bound (points)", "Seeds", "Seeds to decide (planning)", "A/A cells excluding 0",
              "Word at the runner-up lr"]
    parts = [SUMMARY_LEGEND, "", *[f"{line}\n" for line in headline(found)],
             markdown_grid(header, claims, "l" * 7 + "rrrrl").rstrip("\n"), ""]
    if improvements:
        parts += [markdown_grid(["Experiment", "P(improvement) over the control [95%], best first"], improvements,
                                "ll").rstrip("\n"), ""]
    return "\n".join(parts)


def verdict_latex(found: list[Comparison]) -> str:
    out = []
    for c in found:
        if c.frame.empty:
            continue
        header, rows = _grid(c)
        cells = [[x.replace("−", "-").replace(SHAKY, "(lr?)").replace("δ", "delta") for x in row] for row in rows]
        out.append(latex_grid(f"{TITLE}: {c.experiment}", [h.replace("`", "") for h in header], cells,
                              "l" * 2 + "r" * (len(header) - 2)))
    return "\n".join(out)


def verdict_csv(frame: pd.DataFrame) -> str:
    """The frame, numbers unrounded (points), runs as 'run_id:config_hash' and evidence keys separated by spaces."""
    return frame_csv(frame.assign(runs=frame["runs"].map(lambda rs: " ".join(f"{i}:{h}" for i, h in rs)),
                                  evidence=frame["evidence"].map(" ".join)))


def aggregate_frame(found: list[Comparison]) -> pd.DataFrame:
    return pd.DataFrame([a for c in found for a in c.aggregate],
                        columns=["experiment", "treatment", "role", "probability", "ci_low", "ci_high", "tasks", "seeds",
                                 "separation"])


def verdict_files(found: list[Comparison]) -> dict[str, str]:
    """{file suffix: text}: the Markdown (legend, tables, claim words, aggregate, A/A rate), LaTeX, the frame as CSV."""
    frame = frame_of(found)
    return {".md": f"# {TITLE}\n\n" + verdict_markdown(found), "_summary.md": summary_markdown(found),
            ".tex": verdict_latex(found),
            ".csv": verdict_csv(frame), "_aggregate.csv": frame_csv(aggregate_frame(found))}


def verdict_section(found: list[Comparison]) -> tuple[list[str], dict[str, str]]:
    """(REPORT.md lines, {file suffix: text}) for every experiment with a control (`found`: the report's
    comparisons, analysis.verdict.comparisons); the Markdown file also carries the legend and the claim
    words, since the README embeds it whole."""
    parts = [f"## {TITLE}", ""]
    if not any(not c.frame.empty for c in found):
        why = [f"- {n}" for c in found for n in c.notes]
        return parts + ["No experiment has finished runs of a control and a treatment; section skipped.", ""] + why + [""], {}
    files = verdict_files(found)
    sources = [f"- `{c.experiment}` / {claim} / {backbone}{' / ' + axes if axes else ''}: " + ", ".join(
        f"{i} ({h})" for i, h in sorted({r for rs in lines["runs"] for r in rs}))
        for c in found if not c.frame.empty
        for (claim, backbone, axes), lines in c.frame.groupby(["claim", "backbone", "axes"], sort=False)]
    parts += ["### At a glance", "", files["_summary.md"], "### Every comparison, experiment by experiment", ""]
    return parts + [verdict_markdown(found), file_links(NAME), "",
                    "<details><summary>Runs behind each row (run id, config hash)</summary>", ""] + sources + \
        ["", "</details>", ""], files
