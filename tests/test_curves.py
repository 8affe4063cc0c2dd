"""Curves along a numeric axis (analysis/curves.py): points are the verdict's cells, the control's
steps and plateau, the per-seed trend and its word, the extrapolation label, the report's files."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import grporm.stats as inf
from grporm.analysis.curves import GROWS, HOLDS, SHRINKS, UNCLEAR, curve_axis, curves, parse_axes, plateau, trend_word
from grporm.analysis.records import load_runs
from grporm.analysis.report import write_report
from grporm.analysis.verdict import comparisons

DECLARED = {"control": "ce", "margin": 1.0, "claims": [{"name": "SR", "measure": "sr", "primary": True}]}
SEEDS = (2, 3, 4, 5, 6)
# seed effects shared by every arm of a seed (paired designs remove them)
SEED_EFFECT = {2: 0.0, 3: 0.02, 4: -0.01, 5: 0.015, 6: -0.02}


def _run(write_run, root: Path, exp: str, arm: str, method: str, axis: str, value: int, seed: int, sr: float) -> None:
    short = axis.split(".")[-1]
    folder = write_run(root, exp, f"{exp}-{arm}-{short}={value}-s{seed}", method=method, seed=seed, sr=sr,
                       axes={"arm": arm, axis: value})
    record = json.loads((folder / "record.json").read_text())
    record["config"]["verdict"] = DECLARED
    (folder / "record.json").write_text(json.dumps(record))


def _study(write_run, root: Path, exp: str, axis: str, values, control, gaps) -> None:
    """control(value) and gaps[arm](value) in accuracy fractions; a small per-(seed, value) jitter."""
    for value in values:
        for seed in SEEDS:
            jitter = 0.002 * math.sin(seed * 7 + value)
            base = control(value) + SEED_EFFECT[seed] + jitter
            _run(write_run, root, exp, "ce", "ce", axis, value, seed, base)
            for arm, gap in gaps.items():
                _run(write_run, root, exp, arm, "grpo_rm", axis, value, seed, base + gap(value) + 0.5 * jitter)


@pytest.fixture(scope="module")
def results(write_run, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("curves") / "results"
    # budget: CE climbs 4 -> 8 by 5 points, then 0.1; `closing` starts 8 behind and gains 3 per doubling,
    # `steady` stays 2 behind
    _study(write_run, root, "budget", "train.epochs", (4, 8, 16),
           lambda e: {4: 0.75, 8: 0.80, 16: 0.801}[e],
           {"closing": lambda e: -0.08 + 0.03 * math.log2(e / 4), "steady": lambda e: -0.02})
    # data size: `widening` loses 1 more point per doubling
    _study(write_run, root, "size", "data.train_per_class", (100, 200, 400, 800),
           lambda n: 0.7 + 0.02 * math.log2(n / 100), {"widening": lambda n: -0.01 * math.log2(n / 100)})
    # a treatment cut at the longest budget (matrix.exclude): CE alone at 32 epochs, 0.1 above 16
    _study(write_run, root, "budget_cut", "train.epochs", (4, 8, 16), lambda e: {4: 0.75, 8: 0.80, 16: 0.81}[e],
           {"cut": lambda e: -0.03})
    for seed in SEEDS:
        _run(write_run, root, "budget_cut", "ce", "ce", "train.epochs", 32, seed,
             0.811 + SEED_EFFECT[seed] + 0.002 * math.sin(seed * 7 + 32))
    return root


@pytest.fixture(scope="module")
def found(results):
    run_set = load_runs(results)
    return curves(run_set, comparisons(run_set))


def test_parse_axes_and_axis():
    assert parse_axes("train.epochs=8, data.image_size=32") == {"train.epochs": "8", "data.image_size": "32"}
    import pandas as pd
    assert curve_axis(pd.DataFrame({"axes": ["train.epochs=4", "train.epochs=8"]})) == "train.epochs"
    assert curve_axis(pd.DataFrame({"axes": ["arm=a", "arm=b"]})) is None  # not a number
    assert curve_axis(pd.DataFrame({"axes": ["", ""]})) is None
    # two varying axes: a grid, not a curve
    assert curve_axis(pd.DataFrame({"axes": ["a=1, b=1", "a=2, b=2"]})) is None


def test_points_are_the_verdict_cells(results, found):
    run_set = load_runs(results)
    frame = next(c.frame for c in comparisons(run_set) if c.experiment == "budget")
    mine = found.points[found.points["experiment"] == "budget"]
    assert len(mine) == len(frame) == 6
    for _, point in mine.iterrows():
        line = frame[(frame["treatment"] == point["treatment"]) & (frame["axes"] == f"train.epochs={point['value']:g}")]
        assert len(line) == 1
        assert point["diff"] == pytest.approx(line["diff"].iloc[0])
        assert point["ci_high"] == pytest.approx(line["ci_high"].iloc[0])


def test_control_plateau(found):
    steps = found.steps[found.steps["experiment"] == "budget"].sort_values("value")
    assert list(steps["value"]) == [4, 8]
    assert steps["gain"].iloc[0] == pytest.approx(5.0, abs=0.3)
    assert not steps["levelled"].iloc[0] and steps["levelled"].iloc[1]
    assert plateau(steps) == 8
    assert steps["level"].iloc[0] == pytest.approx(inf.ALPHA / 2)
    levels = found.levels[found.levels["experiment"] == "budget"].sort_values("value")
    assert levels["mean"].iloc[0] == pytest.approx(75.0 + 100 * np.mean(list(SEED_EFFECT.values())), abs=0.3)


def test_a_value_only_the_control_ran_is_a_step_not_a_point(results, found):
    mine = {name: frame[frame["experiment"] == "budget_cut"] for name, frame in
            (("points", found.points), ("steps", found.steps), ("trends", found.trends))}
    assert sorted(mine["points"]["value"]) == [4, 8, 16]  # no verdict cell without the treatment
    steps = mine["steps"].sort_values("value")
    assert list(steps["next"]) == [8, 16, 32] and steps["level"].iloc[0] == pytest.approx(inf.ALPHA / 3)
    assert list(steps["levelled"]) == [False, False, True] and plateau(steps) == 16
    [cut] = [c for c in comparisons(load_runs(results)) if c.experiment == "budget_cut"]
    assert cut.setting == "4/8/16/32 epochs, 200/class, 32 px"  # the summary's 'Setting': every budget the control ran
    assert mine["trends"]["n"].iloc[0] == len(SEEDS) and mine["trends"]["slope"].iloc[0] == pytest.approx(0, abs=0.2)


def test_trend_words(found):
    trends = found.trends.set_index("treatment")
    assert trends.loc["closing", "slope"] == pytest.approx(3.0, abs=0.2)
    assert trends.loc["closing", "word"] == SHRINKS
    assert trends.loc["steady", "word"] == HOLDS
    assert trends.loc["widening", "slope"] == pytest.approx(-1.0, abs=0.2)
    assert trends.loc["widening", "word"] == GROWS
    # only the data-size axis is extrapolated, and says so
    assert trends.loc["widening", "at"] == 5000 and "5,000" in trends.loc["widening", "at_label"]
    assert trends.loc["widening", "at_value"] == pytest.approx(-100 * 0.01 * math.log2(50), abs=0.5)
    assert not trends.loc["closing", "at_label"]


@pytest.mark.parametrize("gap, low, high, word", [
    (-5.0, 0.5, 2.0, SHRINKS), (5.0, 0.5, 2.0, GROWS), (-5.0, -2.0, -0.5, GROWS), (3.0, -2.0, -0.5, SHRINKS),
    (0.0, -0.5, 0.5, HOLDS), (-2.0, -3.0, 0.5, UNCLEAR), (-2.0, math.nan, math.nan, UNCLEAR)])
def test_trend_word(gap, low, high, word):
    assert trend_word(gap, low, high, 1.0) == word


def test_report_writes_curves(results, tmp_path):
    run_set = load_runs(results)
    written = write_report(results, run_set)
    names = {p.name for p in written}
    assert {"curve_budget.png", "curve_size.png", "curves_summary.md", "curves_trends.csv"} <= names
    summary = (results / "tables" / "curves_summary.md").read_text()
    assert "levels off at 8" in summary
    assert "extrapolated (not measured)" in summary
    report = (results / "REPORT.md").read_text()
    assert "## Curves" in report and "curve_budget.png" in report
