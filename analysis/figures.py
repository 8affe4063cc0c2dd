"""Figures, one style for all (METHOD_STYLE, STYLE): convergence (kNN@20 per epoch and against training
wall time, from history.csv), accuracy against corruption severity, many/medium/few bars, GRPO
training statistics over steps (steps.csv), and the verdict's forest figures (each experiment's, and the
README's compact one), drawn from the verdict frame alone. Bands and whiskers are min..max over seeds.
"""
from __future__ import annotations

import functools
import math
import textwrap
from pathlib import Path
from typing import Callable

import matplotlib
import matplotlib.lines
import matplotlib.patches
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from grporm.analysis.curves import axis_label
from grporm.analysis.records import load_history, load_steps, method_label, method_rank
from grporm.analysis.verdict_render import ROLE_MARK
from grporm.records.schema import HEADLINE_KNN, SR
from grporm.records.storage import write_atomic
from grporm.stats import summarize

# One colour / line style per method, used by every figure.
METHOD_STYLE = {
    "pretrained": {"color": "#7f7f7f", "linestyle": ":", "marker": "s"},
    "linear_probe": {"color": "#2ca02c", "linestyle": "-.", "marker": "^"},
    "ce": {"color": "#1f77b4", "linestyle": "--", "marker": "o"},
    "grpo_rm": {"color": "#d62728", "linestyle": "-", "marker": "D"},
}
_EXTRA_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e")
_VARIANT_LINES = ("-", "--", "-.", ":")
CURVE_COLUMN = HEADLINE_KNN
# the per-epoch probes of history.csv that convergence figures can draw: column -> label
CURVES = {HEADLINE_KNN: "kNN@20", SR: "SR"}
STEP_STATS = (("reward_mean", "reward mean"), ("clip_frac", "clip fraction"), ("entropy", "policy entropy"),
              ("pi_y", "mean \u03c0(y)"))
STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 7.5,
         "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False,
         "font.family": "DejaVu Sans", "pdf.fonttype": 42, "svg.hashsalt": "grporm"}
BAND = "band = min..max over seeds"


def method_style(method: str) -> dict:
    if method in METHOD_STYLE:
        return METHOD_STYLE[method]
    # unknown methods: a stable colour derived from the name
    return {"color": _EXTRA_COLOURS[sum(map(ord, method)) % len(_EXTRA_COLOURS)], "linestyle": "-", "marker": "x"}


def _run_dir(path: str, results_dir: Path | None) -> Path:
    run_dir = Path(path)
    if not run_dir.is_absolute() and results_dir is not None:
        run_dir = results_dir / run_dir
    return run_dir


def line_label(method: str, variant: str = "") -> str:
    """The key of one line (method, plus the variant's axes when the run has any)."""
    return f"{method} ({variant})" if variant else method


def seed_curves(runs: pd.DataFrame, results_dir: str | Path | None, loader: Callable, x: str, y: str,
                panel: tuple[str, ...] = ("dataset", "backbone"), extra: tuple[str, ...] = ()) -> dict:
    """{panel key: {line_label: DataFrame[x, mean, low, high, n, *extra]}}: column ``y`` of each run's
    CSV (``loader``: load_history / load_steps) aligned on ``x`` and summarised over the runs of a line;
    low/high are min/max over seeds, n the seeds with a value at that x, ``extra`` columns are averaged
    (e.g. train_seconds, for the wall-time axis); ``attrs``: "runs" drawn and "method". Runs without
    the file or without values of ``y`` are skipped."""
    base = Path(results_dir) if results_dir is not None else None
    series: dict[tuple, dict[str, list[pd.DataFrame]]] = {}
    methods: dict[str, str] = {}
    for run in runs.to_dict("records"):
        table = loader(_run_dir(run["path"], base))
        if table is None or y not in table.columns:
            continue
        table = table.set_index(x)[[y] + [e for e in extra if e in table.columns]].dropna(subset=[y])
        if table.empty:
            continue
        label = line_label(run["method"], run.get("variant") or "")
        methods[label] = run["method"]
        series.setdefault(tuple(run[k] for k in panel), {}).setdefault(label, []).append(table)
    curves: dict[tuple, dict[str, pd.DataFrame]] = {}
    for key in sorted(series):
        curves[key] = {}
        for label in sorted(series[key], key=lambda lab: (method_rank(methods[lab]), lab)):
            tables = series[key][label]
            wide = pd.concat([t[y] for t in tables], axis=1).sort_index()
            curve = pd.DataFrame({x: wide.index.to_numpy(), "mean": wide.mean(axis=1).to_numpy(),
                                  "low": wide.min(axis=1).to_numpy(), "high": wide.max(axis=1).to_numpy(),
                                  "n": wide.count(axis=1).to_numpy()})
            for column in extra:
                parts = [t[column] for t in tables if column in t.columns]
                curve[column] = (pd.concat(parts, axis=1).mean(axis=1).reindex(wide.index).to_numpy()
                                 if parts else np.nan)
            curve.attrs.update(runs=len(tables), method=methods[label])
            curves[key][label] = curve
    return curves


def convergence_curves(runs: pd.DataFrame, results_dir: str | Path | None = None,
                       panel: tuple[str, ...] = ("dataset", "backbone"), column: str = CURVE_COLUMN) -> dict:
    """{(dataset, backbone): {method: DataFrame[epoch, mean, low, high, n, train_seconds]}} of a
    per-epoch probe (``column`` of CURVES) over seeds (see seed_curves); train_seconds is the mean
    cumulative training time."""
    return seed_curves(runs, results_dir, load_history, "epoch", column, panel, extra=("train_seconds",))


def styled(draw: Callable) -> Callable:
    """Run a figure builder under STYLE, so every figure looks the same."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)
    return wrapper


def _grid(count: int, ncols: int, width: float = 4.2, height: float = 3.2) -> tuple[Figure, list]:
    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    # at least 5.5 inches wide: a one-panel figure still fits its two-line title
    fig = Figure(figsize=(max(5.5, width * ncols), height * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def _line_style(curve_method: str, index: int) -> dict:
    """Method colour and marker; the n-th variant of a method in a panel gets another line style."""
    style = dict(method_style(curve_method))
    if index:  # the method's own line style stays its first variant's
        others = [line for line in _VARIANT_LINES if line != style["linestyle"]]
        style["linestyle"] = others[(index - 1) % len(others)]
    return style


def _title(parts, detail: str = "") -> str:
    """Panel title: the non-empty key parts joined by ' / ', wrapped, then ``detail`` on its own line."""
    text = textwrap.fill(" / ".join(str(p) for p in parts if p), 46)
    return f"{text}\n{detail}" if detail else text


def _label(label: str, method: str) -> str:
    return method_label(method) + label[len(method):]


def _legend(ax, **kwargs) -> None:
    """A legend only where something is labelled (an empty panel draws none, and matplotlib stays quiet)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _draw_curves(ax, lines: dict[str, pd.DataFrame], x: str, scale: float) -> None:
    seen: dict[str, int] = {}
    for label, curve in lines.items():
        method = curve.attrs["method"]
        style = _line_style(method, seen.get(method, 0))
        seen[method] = seen.get(method, 0) + 1
        xs = curve[x]
        ax.plot(xs, scale * curve["mean"], label=f"{_label(label, method)} (n={curve.attrs['runs']})",
                markersize=3.5, linewidth=1.5, **style)
        if curve["n"].max() > 1:
            ax.fill_between(xs, scale * curve["low"], scale * curve["high"], color=style["color"], alpha=0.18,
                            linewidth=0)
    ax.grid(alpha=0.3)
    _legend(ax)


@styled
def convergence_plot(curves: dict, x: str = "epoch", column: str = CURVE_COLUMN) -> Figure | None:
    """A per-epoch probe (``column`` of CURVES) against epochs (``x="epoch"``) or against training
    wall time (``x="train_seconds"``, the mean over seeds of the cumulative seconds at each epoch);
    one panel per key of ``curves``."""
    if x == "train_seconds":  # drop lines without a time axis (e.g. runs read from W&B)
        curves = {k: {lab: c.dropna(subset=[x]) for lab, c in lines.items() if c[x].notna().any()}
                  for k, lines in curves.items()}
        curves = {k: lines for k, lines in curves.items() if lines}
    if not curves:
        return None
    fig, axes = _grid(len(curves), 3, 4.4, 3.4)
    for ax, (key, lines) in zip(axes, curves.items()):
        _draw_curves(ax, lines, x, 100.0)
        ax.set_title(_title(key))
        ax.set_xlabel("epoch (0 = before training)" if x == "epoch" else "training wall time (s)")
        ax.set_ylabel(f"{CURVES[column]} top-1 (%)")
        if x == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    against = "per epoch" if x == "epoch" else "against training wall time"
    fig.suptitle(f"{CURVES[column]} {against} (fixed train subset \u2192 val)\nmean over seeds, {BAND}")
    return fig


def convergence_figure(runs: pd.DataFrame, results_dir: str | Path, out_path: str | Path) -> Path | None:
    """One panel per (dataset, backbone), one line per method (mean over seeds, band = min..max).
    Writes a PNG (dpi 120) and returns its path; returns None and writes nothing when no run has a
    history to draw."""
    fig = convergence_plot(convergence_curves(runs, results_dir))
    if fig is None:
        return None
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda handle: fig.savefig(handle, format="png", dpi=120), binary=True)
    return out


PNG_DPI = 150
# A PNG is the preview next to its PDF (vector, every detail): a figure of many panels gets a lower
# dpi rather than tens of megapixels in git (the training statistics of every study took 28).
MAX_PNG_PIXELS = 5_000_000


def png_dpi(fig: Figure) -> float:
    width, height = fig.get_size_inches()
    return min(PNG_DPI, math.sqrt(MAX_PNG_PIXELS / (width * height)))


def save_figure(fig: Figure, stem: str | Path) -> list[Path]:
    """``stem``.png (dpi 150, less for a figure above MAX_PNG_PIXELS) and ``stem``.pdf, byte-identical
    for the same figure (no dates)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    write_atomic(png, lambda handle: fig.savefig(handle, format="png", dpi=png_dpi(fig)), binary=True)
    write_atomic(pdf, lambda handle: fig.savefig(handle, format="pdf", metadata={"CreationDate": None, "ModDate": None}),
                 binary=True)
    return [png, pdf]


# the training diagnostics (grporm.objectives.diagnostics), drawn as a second row of panels when a
# run's steps.csv has them (older runs do not)
STEP_DIAGNOSTICS = (("logit_gap", "logit gap (max \u2212 min)"), ("head_weight_norm", "head weight norm"),
                    ("feature_norm", "feature norm"), ("miscls_grad_share", "misclassified share of |dL/dz|"),
                    ("zero_adv_frac", "zero-advantage fraction"))


@styled
def steps_plot(runs: pd.DataFrame, results_dir: str | Path | None = None) -> Figure | None:
    """GRPO training statistics over optimiser steps (steps.csv): one row of panels per (experiment,
    data set, backbone), one column per statistic; CE runs appear where they log the statistic
    (entropy, mean pi(y), and every diagnostic). Runs that log the training diagnostics add a second
    row per key with those."""
    panel = ("experiment", "dataset", "backbone")
    rows_of_stats = []
    for group in (STEP_STATS, STEP_DIAGNOSTICS):
        per_stat = {column: seed_curves(runs, results_dir, load_steps, "step", column, panel) for column, _ in group}
        present = [(column, title, per_stat[column]) for column, title in group if per_stat[column]]
        if present:
            rows_of_stats.append(present)
    keys = sorted({key for row in rows_of_stats for _, _, curves in row for key in curves})
    if not keys or not rows_of_stats:
        return None
    ncols = max(len(row) for row in rows_of_stats)
    fig, axes = _grid(len(keys) * len(rows_of_stats) * ncols, ncols, 3.6, 2.9)
    for k, key in enumerate(keys):
        for g, row in enumerate(rows_of_stats):
            first = (k * len(rows_of_stats) + g) * ncols
            drawn = any(key in curves for _, _, curves in row)
            for c in range(len(row) if drawn else 0, ncols):  # a short row, or a key without these columns
                axes[first + c].set_visible(False)
            for c, (_column, title, curves) in enumerate(row if drawn else []):
                ax = axes[first + c]
                lines = curves.get(key, {})
                if lines:
                    _draw_curves(ax, lines, "step", 1.0)
                ax.set_title(_title(key, title))
                ax.set_xlabel("optimiser step")
    fig.suptitle(f"Training statistics per logged step\nmean over seeds, {BAND}")
    return fig


def _table_panels(table, groups: list[str]) -> dict[tuple, dict[str, list[int]]]:
    """{row key: {column group: [column indices]}} over the method rows of a section table."""
    panels: dict[tuple, dict[str, list[int]]] = {}
    for row in table.rows:
        if row.method == "diff":
            continue
        panels.setdefault(row.key, {g: [i for i, c in enumerate(table.columns) if c.group == g] for g in groups})
    return panels


def _groups_of(table) -> list[str]:
    return list(dict.fromkeys(column.group for column in table.columns))


def _whiskers(cells: list, scale: float) -> tuple[np.ndarray, np.ndarray]:
    mean = np.array([scale * c.mean for c in cells])
    low = np.array([scale * c.low for c in cells])
    high = np.array([scale * c.high for c in cells])
    return mean, np.vstack([np.nan_to_num(mean - low), np.nan_to_num(high - mean)])


def _bars(ax, categories: list[str], series: list[tuple[str, str, list]], scale: float = 100.0) -> None:
    """Grouped bars: one group per category, one bar per (label, method, cells) series."""
    width = 0.8 / max(1, len(series))
    xs = np.arange(len(categories))
    for i, (label, method, cells) in enumerate(series):
        mean, err = _whiskers(cells, scale)
        ax.bar(xs + (i - (len(series) - 1) / 2) * width, mean, width, yerr=err, capsize=2,
               label=label, color=method_style(method)["color"], alpha=0.85, error_kw={"linewidth": 0.8})
    ax.set_xticks(xs, categories, rotation=30 if max(map(len, categories), default=0) > 8 else 0, ha="right"
                  if max(map(len, categories), default=0) > 8 else "center")
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.15)  # room for the legend above the bars
    _legend(ax, loc="upper right")


def _key_parts(table, key: tuple) -> list[str]:
    return [f"IF={v}" if name == "imbalance_factor" else v for name, v in zip(table.keys, key) if v]


@styled
def severity_plot(table) -> Figure | None:
    """Accuracy against corruption severity (0 = clean) from the ``ood`` section table: one panel per
    (row key, protocol), one line per method; band = min..max over seeds."""
    if table is None:
        return None
    groups = _groups_of(table)
    panels = _table_panels(table, groups)
    fig, axes = _grid(len(panels) * len(groups), len(groups), 4.0, 3.1)
    for p, (key, by_group) in enumerate(panels.items()):
        for g, group in enumerate(groups):
            ax = axes[p * len(groups) + g]
            points = [(0 if table.columns[i].label == "clean" else table.columns[i].severity, i)
                      for i in by_group[group] if table.columns[i].label == "clean" or table.columns[i].severity]
            points.sort()
            for row in table.rows:
                if row.key != key or row.method == "diff":
                    continue
                xs = [x for x, i in points if row.cells[i].n]
                cells = [row.cells[i] for _, i in points if row.cells[i].n]
                if not cells:
                    continue
                style = method_style(row.method)
                mean = [100 * c.mean for c in cells]
                ax.plot(xs, mean, label=f"{row.label} (n={row.n_runs})", markersize=3.5, linewidth=1.5, **style)
                if max(c.n for c in cells) > 1:
                    ax.fill_between(xs, [100 * c.low for c in cells], [100 * c.high for c in cells],
                                    color=style["color"], alpha=0.18, linewidth=0)
            ax.set_title(_title(_key_parts(table, key), group))
            ax.set_xlabel("corruption severity (0 = clean)")
            ax.set_ylabel("top-1 (%), mean over corruptions")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            _legend(ax)
    fig.suptitle(f"Accuracy against corruption severity\nmean over seeds, {BAND}")
    return fig


@styled
def grouped_bars_plot(table, category: Callable, panel_key: Callable, title: str) -> Figure | None:
    """Bars from a section table: panels by ``panel_key(row.key)`` x column group, categories by
    ``category(row, column)`` (a column label or a row's variant), one bar series per method;
    whiskers = min..max over seeds."""
    if table is None:
        return None
    groups = _groups_of(table)
    panels: dict[tuple, list] = {}
    for row in table.rows:
        if row.method != "diff":
            panels.setdefault(panel_key(row.key), []).append(row)
    fig, axes = _grid(len(panels) * len(groups), len(groups), 4.4, 3.2)
    for p, (key, rows) in enumerate(panels.items()):
        for g, group in enumerate(groups):
            ax = axes[p * len(groups) + g]
            columns = [i for i, c in enumerate(table.columns) if c.group == group]
            points: dict[tuple[str, str], dict[str, object]] = {}  # (label, method) -> {category: cell}
            categories: list[str] = []
            for row in rows:
                for i in columns:
                    name = category(row, table.columns[i])
                    categories += [name] if name not in categories else []
                    points.setdefault((row.label, row.method), {})[name] = row.cells[i]
            series = [(label, method, [cells.get(c, _EMPTY) for c in categories])
                      for (label, method), cells in points.items()]
            _bars(ax, categories, series, table.columns[columns[0]].scale)
            ax.set_title(_title(_key_parts(table, key), group))
            ax.set_ylabel("top-1 (%)")
    fig.suptitle(f"{title}\nmean over seeds, whiskers = min..max over seeds")
    return fig


_EMPTY = summarize([])  # a bar with no value (a method without this category)


def imbalance_plot(table) -> Figure | None:
    """Many/medium/few-shot (and overall) accuracy bars per method, from the ``imbalance`` table."""
    return grouped_bars_plot(table, lambda row, column: column.label, lambda key: key,
                             "Imbalanced training: accuracy per shot group")


# -- forest plots (the verdict) --------------------------------------------------------------------
# Every difference from a control drawn here is a line of the verdict frame (analysis.verdict.verdict_frame):
# no figure pairs runs itself, so a figure can never disagree with the verdict table.
WORD_STYLE = {"ahead": {"color": "#2ca02c", "marker": "o"}, "behind": {"color": "#d62728", "marker": "s"},
              "no difference": {"color": "#555555", "marker": "D"}}
NO_WORD = {"color": "#999999", "marker": "x"}  # fewer than two pairs: no interval, no word
ROW_KEYS = ("claim", "dataset", "backbone", "axes")  # one verdict row: a panel of an experiment's figure
LINE_INCHES = 0.2  # per treatment line of a panel
ROLE_ORDER = {"treatment": 0, "reference": 1, "aa": 2}  # treatments first, then references, A/A controls last
# the README's compact figure: a width that reads at ~800 px, so fonts a little larger than STYLE's
COMPACT_WIDTH = 8.0
COMPACT_STYLE = {"font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 9.5, "xtick.labelsize": 9,
                 "ytick.labelsize": 9.5, "legend.fontsize": 8.5}
ROW_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">")  # one per verdict row of an experiment (compact figure)


def forest_rows(frame: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """The verdict rows (claim, data set, backbone, other axes) of one experiment's frame in frame order, each
    with its lines ordered by role (ROLE_ORDER), frame order within a role."""
    keys = [k for k in ROW_KEYS if k in frame.columns]
    rows = []
    for key, group in frame.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        order = group["role"].map(ROLE_ORDER).fillna(0) if "role" in group.columns else pd.Series(0, index=group.index)
        rows.append((key, group.assign(_order=order).sort_values("_order", kind="stable").drop(columns="_order")))
    return rows


def _line_label(line: pd.Series) -> str:
    return f"{line['treatment']}{ROLE_MARK.get(line.get('role'), '')}"


def _forest_point(ax, y: float, line: pd.Series, marker: str | None = None, band: bool = True, size: float = 5) -> None:
    aa = line.get("role") == "aa"
    style = WORD_STYLE.get(str(line.get("word") or ""), NO_WORD)
    colour = "#7f7f7f" if aa else style["color"]
    # the margin δ, not a detectable difference: power after the fact decides nothing (docs/method.md)
    margin = line.get("margin")
    if band and margin is not None and np.isfinite(margin) and margin > 0:
        ax.vlines(margin, y - 0.4, y + 0.4, color="#1f77b4", linestyle="--", linewidth=1.0)
    low, high = line.get("ci_low"), line.get("ci_high")
    if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
        ax.hlines(y, low, high, color=colour, linewidth=1.6, linestyle=":" if aa else "-")
    ax.plot([line["diff"]], [y], linestyle="none", marker=marker or style["marker"], markersize=size, color=colour,
            markerfacecolor="white" if aa else colour)


def _word_handles(band: bool = True, markers: bool = True) -> list:
    """The legend of the words (and of the margin δ); without markers where markers name backbones."""
    handles = [matplotlib.lines.Line2D([], [], linestyle="-", color=s["color"], marker=s["marker"] if markers else None,
                                       label=w) for w, s in WORD_STYLE.items()]
    handles.append(matplotlib.lines.Line2D([], [], linestyle=":", color="#7f7f7f", marker="o" if markers else None,
                                           markerfacecolor="white", label="A/A control"))
    if band:
        handles.append(matplotlib.lines.Line2D([], [], linestyle="--", color="#1f77b4", label="margin \u03b4"))
    return handles


def _control(frame: pd.DataFrame) -> str:
    controls = list(dict.fromkeys(str(c) for c in frame["control"].dropna())) if "control" in frame.columns else []
    return ", ".join(f"`{c}`" for c in controls) or "the control"


@styled
def experiment_forest(frame: pd.DataFrame, experiment: str | None = None) -> Figure | None:
    """One experiment's verdict (its lines of the verdict frame, differences in points): one panel per
    verdict row (claim, data set, backbone, other axes), each with its own x axis; one line per treatment,
    reference and A/A control: the mean paired difference from the control (point), the interval its
    word uses (line; α/m on each side), the margin δ (dashed); colour and marker give the word, A/A controls
    are grey, hollow and dotted. The experiment's name is in the title. None for an empty frame."""
    if frame is None or frame.empty:
        return None
    experiment = experiment or str(frame["experiment"].iloc[0])
    fig, panels = _panel_grid(forest_rows(frame), lambda panel: 0.75 + LINE_INCHES * len(panel[1]),
                              lambda ncols: 4.3 * ncols + 1.4, 1.5)
    for ax, (key, lines) in panels:
        for y, (_, line) in enumerate(lines.iterrows()):
            _forest_point(ax, y, line)
        ax.axvline(0, color="black", linewidth=0.9)
        ax.set_yticks(range(len(lines)), [f"{_line_label(line)} (n={int(line['n'])})" for _, line in lines.iterrows()])
        ax.set_ylim(len(lines) - 0.5, -0.5)  # first line on top
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(_title(key))
        ax.set_xlabel(f"minus {_control(lines)} (points)")
    fig.legend(handles=_word_handles(), loc="outside lower center", ncols=5, fontsize=7)
    fig.suptitle(f"{experiment}: each arm minus the control {_control(frame)}, paired by seed\n"
                 "point = mean, line = the interval the word uses, colour = the verdict's word")
    return fig


def _panel_grid(panels: list, height, width, extra: float) -> tuple[Figure, list]:
    """A figure of `panels` in one column (one panel) or two, each row of the grid as tall as its tallest
    panel (`height(panel)` inches) plus `extra` for titles and legend, `width(ncols)` inches wide; unused
    cells hidden. Returns (figure, [(axis, panel), ...]) in reading order."""
    ncols = 1 if len(panels) == 1 else 2
    grid = [panels[i:i + ncols] for i in range(0, len(panels), ncols)]
    heights = [max(height(panel) for panel in row) for row in grid]
    fig = Figure(figsize=(width(ncols), sum(heights) + extra), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(grid), ncols, squeeze=False, gridspec_kw={"height_ratios": heights})
    placed = []
    for r, row in enumerate(grid):
        for c in range(ncols):
            if c < len(row):
                placed.append((axes[r][c], row[c]))
            else:
                axes[r][c].set_visible(False)
    return fig, placed


def forest_points(fig: Figure) -> list[list[tuple[str, float]]]:
    """Per visible panel of a forest figure: (line label, plotted difference), top to bottom (what a test
    compares with the verdict frame)."""
    out = []
    for ax in (a for a in fig.axes if a.get_visible()):
        labels = [t.get_text() for t in ax.get_yticklabels()]
        points = [line for line in ax.get_lines() if line.get_linestyle() in ("None", "none", "")]
        by_y = {float(line.get_ydata()[0]): float(line.get_xdata()[0]) for line in points}
        out.append([(label, by_y[float(y)]) for label, y in zip(labels, ax.get_yticks())])
    return out


def _dodge(count: int) -> list[float]:
    """Vertical offsets of `count` points sharing one line, centred, within \u00b10.3."""
    return [0.0] if count == 1 else list(np.linspace(-0.3, 0.3, count))


@styled
def summary_forest(frame: pd.DataFrame) -> Figure | None:
    """The README's figure: one panel per (experiment, claim) of the lines given (the caller passes the
    primary claims'), titled with both, each with its x axis; one line per treatment, its difference from
    the control on each backbone (and other axes) side by side on that line, a marker per backbone (one
    legend for the figure), colour = the word. Two panels a row at a width that reads at ~800 px. None
    for an empty frame."""
    if frame is None or frame.empty:
        return None
    with matplotlib.rc_context(COMPACT_STYLE):
        variants = list(dict.fromkeys(_variant(line) for _, line in frame.iterrows()))
        markers = {v: ROW_MARKERS[i % len(ROW_MARKERS)] for i, v in enumerate(variants)}
        panels = [(key, group) for key, group in frame.groupby(["experiment", "claim"], sort=False)]
        fig, placed = _panel_grid(panels, lambda panel: 0.8 + 0.24 * panel[1]["treatment"].nunique(),
                                  lambda ncols: COMPACT_WIDTH, 1.1)
        for ax, ((experiment, claim), group) in placed:
            lines = [w for _, g in forest_rows(group) for w in g["treatment"]]
            lines = list(dict.fromkeys(lines))
            mine = list(dict.fromkeys(_variant(line) for _, line in group.iterrows()))
            offsets = dict(zip(mine, _dodge(len(mine))))
            for _, line in group.iterrows():
                v = _variant(line)
                _forest_point(ax, lines.index(line["treatment"]) + offsets[v], line, marker=markers[v], band=False,
                              size=5.5)
            ax.axvline(0, color="black", linewidth=0.9)
            roles = dict(zip(group["treatment"], group["role"])) if "role" in group.columns else {}
            ax.set_yticks(range(len(lines)), [f"{w}{ROLE_MARK.get(roles.get(w), '')}" for w in lines])
            ax.set_ylim(len(lines) - 0.5, -0.5)
            ax.grid(axis="x", alpha=0.3)
            ax.set_title(textwrap.fill(f"{experiment}: {claim}", 30), loc="left", fontweight="bold")
            ax.set_xlabel(f"minus {_control(group)} (points)")
        handles = _word_handles(band=False, markers=False) + [
            matplotlib.lines.Line2D([], [], linestyle="none", marker=m, color="#333333", label=v or "all runs")
            for v, m in markers.items()]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)))
        fig.suptitle("Verdict at a glance: each treatment minus its experiment's control (primary claims)\n"
                     "point = mean paired difference, line = the interval the word uses, marker = backbone")
    return fig


def _variant(line: pd.Series) -> str:
    """What tells a line's points apart on one treatment line: its backbone and other axes."""
    return " / ".join(str(line[k]) for k in ("backbone", "axes") if k in line.index and str(line[k]))


@styled
def curve_figure(points: pd.DataFrame, levels: pd.DataFrame, experiment: str, margin: float = 1.0) -> Figure | None:
    """One experiment's curves (analysis.curves), primary claims: per backbone and claim two panels, the
    control's mean against the axis (95% t interval) and each treatment's difference from the control
    against the axis (the verdict's cells: point = mean, bar = the interval its word uses, colour = one
    per treatment), the margin δ dashed; log2 x axis at the measured values. Small enough for the README.
    None without points."""
    mine = points[(points["experiment"] == experiment) & points["primary"].astype(bool)]
    if mine.empty:
        return None
    axis = str(mine["axis"].iloc[0])
    keys = list(dict.fromkeys(zip(mine["claim"], mine["backbone"])))
    with matplotlib.rc_context(COMPACT_STYLE):
        fig = Figure(figsize=(COMPACT_WIDTH, 0.6 + 2.4 * len(keys)), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(len(keys), 2, squeeze=False)
        treatments = list(dict.fromkeys(mine["treatment"]))
        colours = {w: _EXTRA_COLOURS[i % len(_EXTRA_COLOURS)] for i, w in enumerate(treatments)}
        for (left, right), (claim, backbone) in zip(axes, keys):
            row = mine[(mine["claim"] == claim) & (mine["backbone"] == backbone)]
            values = sorted(set(row["value"]))
            level = levels[(levels["experiment"] == experiment) & (levels["claim"] == claim)
                           & (levels["backbone"] == backbone)].sort_values("value")
            left.errorbar(level["value"], level["mean"], yerr=[level["mean"] - level["low"], level["high"] - level["mean"]],
                          color=METHOD_STYLE["ce"]["color"], marker="o", capsize=3)
            left.set_title(f"control {_control(row)}: {claim}, {backbone}", loc="left")
            left.set_ylabel("accuracy (points)")
            offsets = dict(zip(treatments, [1.0 + 0.04 * d for d in _dodge(len(treatments))]))
            for who, group in row.groupby("treatment", sort=False):
                group = group.sort_values("value")
                x = group["value"] * offsets[who]
                right.errorbar(x, group["diff"], yerr=[group["diff"] - group["ci_low"], group["ci_high"] - group["diff"]],
                               color=colours[who], marker="o", capsize=3, label=who)
            right.axhline(0, color="black", linewidth=0.9)
            right.axhline(margin, color="#555555", linestyle="--", linewidth=0.8)
            right.set_title(f"each arm minus {_control(row)}", loc="left")
            right.set_ylabel("difference (points)")
            for ax in (left, right):
                ax.set_xscale("log", base=2)
                ax.set_xticks(values, [f"{v:g}" for v in values])
                ax.minorticks_off()
                ax.set_xlabel(axis_label(axis))
                ax.grid(alpha=0.3)
        handles = [matplotlib.lines.Line2D([], [], color=colours[w], marker="o", label=w) for w in treatments]
        handles.append(matplotlib.lines.Line2D([], [], color="#555555", linestyle="--", label=f"margin δ = {margin:g}"))
        fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)))
        fig.suptitle(f"{experiment}: the comparison against {axis_label(axis)}")
    return fig
