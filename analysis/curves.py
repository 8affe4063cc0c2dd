"""Curves: how a comparison moves along a numeric matrix axis (training epochs, images per class,
image size), for every experiment whose verdict rows differ in such an axis (docs/method.md, 'Curves').

Three things per curve (claim x data set x backbone x axis):
- the difference of each treatment from the control at every axis value: the verdict frame's cells
  (difference, bounds, word), never paired again here;
- the control's own gain from one axis value to the next, paired by seed, with its upper bound at
  α/(steps): a step whose upper bound is below the margin δ has levelled off. On the epochs axis the
  first such value is the plateau, the smallest budget E where the control at the next budget is not
  better by δ or more;
- each treatment's trend: per seed, the least-squares slope of its paired difference against log2 of
  the axis value (a change per doubling), averaged over seeds with a t interval at α/(treatments) per
  side. Seeds are the unit, so the values of one seed (one data draw) may be correlated. Word: the
  gap *shrinks* (the slope's interval excludes 0 towards 0 from the mean gap), *grows* (away from 0),
  *holds* (the interval lies within ±δ per doubling), else *unclear*. Where an axis has a reference
  scale (EXTRAPOLATE), the fitted line's value there is given as an extrapolation, never a result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

import grporm.stats as inf
from grporm.analysis.records import RunSet
from grporm.analysis.verdict import RUNNER_UP, SCALE, Comparison, _by_seed, _Values
from grporm.plan.declaration import trains
from grporm.stats import paired_difference, summarize, t_interval

SHRINKS, HOLDS, GROWS, UNCLEAR = "shrinks", "holds", "grows", "unclear"
# Where a trend is read beyond the measured range (labelled an extrapolation): axis -> (value, what it is)
EXTRAPOLATE = {"data.train_per_class": (5000.0, "5,000 images per class, the order of the paper's data sets")}
AXIS_LABELS = {"train.epochs": "training epochs", "data.train_per_class": "training images per class",
               "data.image_size": "image size (px)"}
CURVE_COLUMNS = ("experiment", "claim", "primary", "dataset", "backbone", "axis", "value", "treatment", "role",
                 "control", "n", "diff", "ci_low", "ci_high", "word")
LEVEL_COLUMNS = ("experiment", "claim", "dataset", "backbone", "axis", "value", "n", "mean", "low", "high")
STEP_COLUMNS = ("experiment", "claim", "dataset", "backbone", "axis", "value", "next", "n", "control_mean",
                "gain", "gain_low", "gain_high", "level", "levelled")
TREND_COLUMNS = ("experiment", "claim", "dataset", "backbone", "axis", "treatment", "n", "mean_gap", "slope",
                 "slope_low", "slope_high", "level", "word", "at", "at_value", "at_low", "at_high", "at_label")


@dataclass
class Curves:
    """Every curve of a report: points (CURVE_COLUMNS), the control's level (LEVEL_COLUMNS: mean with a 95%
    t interval) and steps (STEP_COLUMNS), trends (TREND_COLUMNS)."""

    points: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(CURVE_COLUMNS)))
    levels: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(LEVEL_COLUMNS)))
    steps: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(STEP_COLUMNS)))
    trends: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(TREND_COLUMNS)))

    def experiments(self) -> list[str]:
        return list(dict.fromkeys(self.points["experiment"]))


def axis_label(axis: str) -> str:
    return AXIS_LABELS.get(axis, axis)


def parse_axes(text: str) -> dict[str, str]:
    """'train.epochs=8, data.image_size=32' -> {'train.epochs': '8', ...} (the frame's `axes` column)."""
    out = {}
    for part in str(text or "").split(", "):
        key, sep, value = part.partition("=")
        if sep:
            out[key] = value
    return out


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def curve_axis(lines: pd.DataFrame) -> str | None:
    """The numeric axis an experiment's verdict rows differ in (two values or more, every value a positive
    number); None when there is none or more than one (a grid, not a curve)."""
    parsed = [parse_axes(a) for a in lines["axes"]]
    keys = sorted({k for p in parsed for k in p})
    found = [k for k in keys if len({p.get(k) for p in parsed}) >= 2
             and all(_number(p.get(k)) is not None for p in parsed)]
    varying = [k for k in keys if len({p.get(k) for p in parsed}) >= 2]
    return found[0] if len(found) == 1 and len(varying) == 1 else None


def _seed_values(run_set: RunSet, comparison: Comparison, measure: str, dataset: str, backbone: str,
                 axis: str, values: _Values) -> dict[str, dict[float, dict[int, float]]]:
    """{arm: {axis value: {seed: value}}} of the winner runs of one verdict row family."""
    runs = run_set.runs
    runs = runs[(runs["experiment"] == comparison.experiment) & (runs["dataset"] == dataset)
                & (runs["backbone"] == backbone) & runs["method"].map(trains)]
    if runs.empty or axis not in runs.columns:
        return {}
    runs = runs[[run_set.records[p].pick != RUNNER_UP for p in runs["path"]]]
    value = values.of(measure, runs["path"])
    out: dict[str, dict[float, dict[int, float]]] = {}
    for (who, at), group in runs.groupby([comparison.axis, axis], sort=True):
        number = _number(at)
        if number is not None:
            out.setdefault(str(who), {})[number] = _by_seed(group, value)
    return out


def _control_levels(key: dict, by_value: dict[float, dict[int, float]]) -> list[dict]:
    out = []
    for at in sorted(by_value):
        seen = summarize(SCALE * v for v in by_value[at].values())
        low, high = t_interval(seen.mean, seen.std, seen.n)
        out.append({**key, "value": at, "n": seen.n, "mean": seen.mean, "low": low, "high": high})
    return out


def _control_steps(key: dict, by_value: dict[float, dict[int, float]], margin: float) -> list[dict]:
    ordered = sorted(by_value)
    level = inf.ALPHA / max(1, len(ordered) - 1)
    out = []
    for here, there in zip(ordered, ordered[1:]):
        cell = paired_difference(by_value[there], by_value[here])
        mean = SCALE * float(np.mean(list(by_value[here].values()))) if by_value[here] else math.nan
        low, high = (inf.bounds(SCALE * cell.mean, SCALE * cell.std, cell.n, level) if cell.n >= 2
                     else (math.nan, math.nan))
        out.append({**key, "value": here, "next": there, "n": cell.n, "control_mean": mean,
                    "gain": SCALE * cell.mean if cell.n else math.nan, "gain_low": low, "gain_high": high,
                    "level": level, "levelled": bool(high < margin)})
    return out


def trend_word(mean_gap: float, low: float, high: float, margin: float) -> str:
    """The gap's course per doubling from the slope's bounds (module docstring)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return UNCLEAR
    if low > 0 or high < 0:
        towards_zero = (high < 0) == (mean_gap > 0)
        return SHRINKS if towards_zero else GROWS
    if -margin < low and high < margin:
        return HOLDS
    return UNCLEAR


def _trend(key: dict, who: str, treated: dict[float, dict[int, float]], control: dict[float, dict[int, float]],
           level: float, margin: float, axis: str) -> dict | None:
    per_seed: dict[int, list[tuple[float, float]]] = {}
    for at in sorted(set(treated) & set(control)):
        for seed in set(treated[at]) & set(control[at]):
            per_seed.setdefault(seed, []).append((math.log2(at), SCALE * (treated[at][seed] - control[at][seed])))
    fits = {seed: np.polyfit(*zip(*points), 1) for seed, points in per_seed.items()
            if len({x for x, _ in points}) >= 2}
    if not fits:
        return None
    slopes = np.array([fit[0] for fit in fits.values()])
    gaps = [y for seed in fits for _, y in per_seed[seed]]
    n = len(slopes)
    std = float(np.std(slopes, ddof=1)) if n >= 2 else math.nan
    low, high = inf.bounds(float(slopes.mean()), std, n, level) if n >= 2 else (math.nan, math.nan)
    mean_gap = float(np.mean(gaps))
    out = {**key, "treatment": who, "n": n, "mean_gap": mean_gap, "slope": float(slopes.mean()), "slope_low": low,
           "slope_high": high, "level": level, "word": trend_word(mean_gap, low, high, margin),
           "at": math.nan, "at_value": math.nan, "at_low": math.nan, "at_high": math.nan, "at_label": ""}
    if axis in EXTRAPOLATE:
        at, label = EXTRAPOLATE[axis]
        there = np.array([np.polyval(fit, math.log2(at)) for fit in fits.values()])
        spread = float(np.std(there, ddof=1)) if n >= 2 else math.nan
        a_low, a_high = inf.bounds(float(there.mean()), spread, n, level) if n >= 2 else (math.nan, math.nan)
        out.update({"at": at, "at_value": float(there.mean()), "at_low": a_low, "at_high": a_high, "at_label": label})
    return out


def curves(run_set: RunSet, found: list[Comparison]) -> Curves:
    """The curves of every experiment whose verdict rows differ in one numeric axis."""
    points, levels, steps, trends = [], [], [], []
    values = _Values(run_set)
    for comparison in found:
        frame = comparison.frame
        if frame.empty:
            continue
        axis = curve_axis(frame)
        if axis is None:
            continue
        margin = float(comparison.declaration.margin)
        for (claim, dataset, backbone), lines in frame.groupby(["claim", "dataset", "backbone"], sort=False):
            key = {"experiment": comparison.experiment, "claim": claim, "dataset": dataset, "backbone": backbone,
                   "axis": axis}
            at = [_number(parse_axes(a)[axis]) for a in lines["axes"]]
            for (_, line), value in zip(lines.iterrows(), at):
                points.append({**key, "primary": bool(line["primary"]), "value": value,
                               **{c: line[c] for c in ("treatment", "role", "control", "n", "diff", "ci_low", "ci_high", "word")}})
            by_arm = _seed_values(run_set, comparison, str(lines["measure"].iloc[0]), dataset, backbone, axis, values)
            control = by_arm.get(str(comparison.declaration.control), {})
            levels += _control_levels(key, control)
            steps += _control_steps(key, control, margin)
            treatments = [w for w in dict.fromkeys(lines["treatment"]) if w in by_arm]
            family = max(1, sum(lines.loc[lines["treatment"] == w, "role"].iloc[0] == "treatment" for w in treatments))
            for who in treatments:
                role = lines.loc[lines["treatment"] == who, "role"].iloc[0]
                found_trend = _trend(key, who, by_arm[who], control, inf.ALPHA / (family if role == "treatment" else 1),
                                     margin, axis)
                if found_trend is not None:
                    trends.append(found_trend)
    return Curves(pd.DataFrame(points, columns=list(CURVE_COLUMNS)), pd.DataFrame(levels, columns=list(LEVEL_COLUMNS)),
                  pd.DataFrame(steps, columns=list(STEP_COLUMNS)),
                  pd.DataFrame(trends, columns=list(TREND_COLUMNS)))


# -- words ---------------------------------------------------------------------------------------------
def _value(value: float) -> str:
    return f"{value:g}"


def _signed(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:+.1f}".replace("-", "−")


def plateau(steps: pd.DataFrame) -> float | None:
    """The smallest axis value whose step to the next one levelled off (None: none did)."""
    levelled = steps[steps["levelled"].astype(bool)]
    return float(levelled["value"].min()) if len(levelled) else None


def _match(frame: pd.DataFrame, key: dict) -> pd.DataFrame:
    keep = pd.Series(True, index=frame.index)
    for column, value in key.items():
        keep &= frame[column] == value
    return frame[keep]


def sentences(found: Curves) -> list[str]:
    """One line per curve of a primary claim: the control's plateau, then each treatment's trend."""
    out = []
    primary = found.points[found.points["primary"].astype(bool)]
    for (experiment, claim, dataset, backbone), _ in primary.groupby(["experiment", "claim", "dataset", "backbone"],
                                                                        sort=False):
        where_key = {"experiment": experiment, "claim": claim, "dataset": dataset, "backbone": backbone}
        steps, trends, mine = (_match(f, where_key) for f in (found.steps, found.trends, found.points))
        axis = str(mine["axis"].iloc[0])
        where = f"`{experiment}`, {claim}, {backbone}"
        if len(steps):
            gains = "; ".join(f"{_value(s.value)}→{_value(s.next)}: {_signed(s.gain)} [upper {_signed(s.gain_high)}]"
                              for s in steps.itertuples())
            stop = plateau(steps)
            said = (f"levels off at {_value(stop)} (the next step's upper bound is below δ)" if stop is not None
                    else "has not levelled off within the measured range")
            out.append(f"- {where}: the control against {axis_label(axis)} {said}; gains {gains}.")
        for t in trends.itertuples():
            line = (f"- {where}: `{t.treatment}` − control, mean {_signed(t.mean_gap)} points; per doubling of "
                    f"{axis_label(axis)} {_signed(t.slope)} [{_signed(t.slope_low)}, {_signed(t.slope_high)}] "
                    f"({t.n} seeds): the gap **{t.word}**")
            if t.at_label:
                line += (f"; extrapolated (not measured) to {t.at_label}: {_signed(t.at_value)} "
                         f"[{_signed(t.at_low)}, {_signed(t.at_high)}]")
            out.append(line + ".")
    return out


def curves_markdown(found: Curves) -> list[str]:
    """The report's section: the sentences, then one table per experiment of the cells along its axis."""
    if found.points.empty:
        return []
    out = ["## Curves: the comparison along epochs, data size and resolution", "",
           "Differences from the control in points with the verdict's own bounds (α/m per side); the control's gain "
           "per step paired by seed, upper bound at α/(steps); trends per doubling of the axis, fitted per seed "
           "(docs/method.md, 'Curves'). An extrapolation is the fitted line read beyond the measured range, "
           "not a result.", ""]
    out += sentences(found) + [""]
    for experiment in found.experiments():
        mine = found.points[found.points["experiment"] == experiment]
        axis = str(mine["axis"].iloc[0])
        out += [f"### `{experiment}` against {axis_label(axis)}", "",
                f"| claim | backbone | {axis_label(axis)} | treatment | n | difference [bounds] | word |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for p in mine.sort_values(["claim", "backbone", "treatment", "value"], kind="stable").itertuples():
            out.append(f"| {p.claim} | {p.backbone} | {_value(p.value)} | `{p.treatment}` | {p.n} | "
                       f"{_signed(p.diff)} [{_signed(p.ci_low)}, {_signed(p.ci_high)}] | {p.word} |")
        out.append("")
    return out
