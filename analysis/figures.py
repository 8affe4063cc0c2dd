"""Convergence figure: kNN@20 (fixed training subset -> validation) per epoch, from history.csv."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.records import METHOD_LABEL, load_history, method_rank

# One colour / line style per method, used by every figure.
METHOD_STYLE = {
    "pretrained": {"color": "#7f7f7f", "linestyle": ":", "marker": "s"},
    "linear_probe": {"color": "#2ca02c", "linestyle": "-.", "marker": "^"},
    "ce": {"color": "#1f77b4", "linestyle": "--", "marker": "o"},
    "grpo_rm": {"color": "#d62728", "linestyle": "-", "marker": "D"},
}
_EXTRA_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e")
CURVE_COLUMN = "knn20_top1"


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


def convergence_curves(runs: pd.DataFrame, results_dir: str | Path | None = None) -> dict:
    """{(dataset, backbone): {method: DataFrame[epoch, mean, low, high, n]}} over seeds; low/high are
    the min/max over seeds, n the number of seeds with a value at that epoch (``attrs["runs"]``: the
    number of runs drawn). Runs without a usable
    history (missing file, no knn20_top1 values) are skipped."""
    base = Path(results_dir) if results_dir is not None else None
    series: dict[tuple, dict[str, list[pd.Series]]] = {}
    for run in runs.itertuples(index=False):
        history = load_history(_run_dir(run.path, base))
        if history is None or CURVE_COLUMN not in history.columns:
            continue
        curve = history.set_index("epoch")[CURVE_COLUMN].dropna()
        if curve.empty:
            continue
        series.setdefault((run.dataset, run.backbone), {}).setdefault(run.method, []).append(curve)
    curves: dict[tuple, dict[str, pd.DataFrame]] = {}
    for panel in sorted(series):
        curves[panel] = {}
        for method in sorted(series[panel], key=method_rank):
            wide = pd.concat(series[panel][method], axis=1).sort_index()
            curve = pd.DataFrame({
                "epoch": wide.index.to_numpy(),
                "mean": wide.mean(axis=1).to_numpy(),
                "low": wide.min(axis=1).to_numpy(),
                "high": wide.max(axis=1).to_numpy(),
                "n": wide.count(axis=1).to_numpy(),
            })
            curve.attrs["runs"] = len(series[panel][method])
            curves[panel][method] = curve
    return curves


def convergence_figure(runs: pd.DataFrame, results_dir: str | Path, out_path: str | Path) -> Path | None:
    """One panel per (dataset, backbone), one line per method (mean over seeds, band = min..max).
    Writes a PNG (dpi 120) and returns its path; returns None and writes nothing when no run has a
    history to draw."""
    curves = convergence_curves(runs, results_dir)
    if not curves:
        return None
    ncols = min(3, len(curves))
    nrows = math.ceil(len(curves) / ncols)
    fig = Figure(figsize=(4.4 * ncols, 3.4 * nrows + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, ((dataset, backbone), methods) in zip(axes, curves.items()):
        for method, curve in methods.items():
            style = method_style(method)
            seeds = curve.attrs["runs"]
            ax.plot(curve["epoch"], 100 * curve["mean"], label=f"{METHOD_LABEL.get(method, method)} (n={seeds})",
                    markersize=3.5, linewidth=1.6, **style)
            if curve["n"].max() > 1:
                ax.fill_between(curve["epoch"], 100 * curve["low"], 100 * curve["high"],
                                color=style["color"], alpha=0.18, linewidth=0)
        ax.set_title(f"{dataset} / {backbone}", fontsize=10)
        ax.set_xlabel("epoch (0 = before training)")
        ax.set_ylabel("kNN@20 top-1 (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(curves):]:
        ax.set_visible(False)
    fig.suptitle("kNN@20 per epoch (fixed train subset \u2192 val)\nmean over seeds, band = min..max", fontsize=9)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out

