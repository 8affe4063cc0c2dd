"""The verdict forest plot and the ablation figure: drawn from hand-made verdict frames and records."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from grporm.analysis.figures import ablation_differences, ablation_plot, forest_plot, forest_rows
from grporm.analysis.records import load_runs

COLUMNS = ["experiment", "claim", "measure", "backbone", "treatment", "role", "n", "diff", "ci_low", "ci_high", "p",
           "p_holm", "word", "detectable", "target", "seeds_needed", "close_call", "runner_up_word", "claim_word"]


def verdict_frame(claims: int, treatments: int, aa: bool = True) -> pd.DataFrame:
    """A verdict frame as analysis.verdict.verdict_frame returns it (differences in points)."""
    rows = []
    for c in range(claims):
        arms = [f"arm{t}" for t in range(treatments)] + (["anchor"] if aa else [])
        for t, arm in enumerate(arms):
            diff = 1.5 * (t - 1) + 0.1 * c
            role = "aa" if arm == "anchor" else "treatment"
            word = "ahead" if diff - 1 > 0 else "behind" if diff + 1 < 0 else "no difference"
            rows.append([f"study{c % 3}", f"claim {c}", "SR top-1", f"backbone{c % 2}", arm, role, 5, diff, diff - 1,
                         diff + 1, 0.04, 0.2, word, 2.0, 3.0, 12, False, "", word])
    return pd.DataFrame(rows, columns=COLUMNS)


def _lines(ax):
    """(y, x low, x high) of every interval drawn (hlines)."""
    out = []
    for collection in ax.collections:
        for segment in getattr(collection, "get_segments", lambda: [])():
            (x0, y0), (x1, y1) = segment[0], segment[-1]
            if y0 == y1 and x0 != x1:
                out.append((y0, x0, x1))
    return out


@pytest.mark.parametrize("claims,treatments", [(1, 1), (4, 3), (16, 7)])
def test_forest_plot_one_block_per_claim_row_with_intervals_and_zero(claims, treatments):
    frame = verdict_frame(claims, treatments)
    fig = forest_plot(frame)
    ax = fig.axes[0]
    assert len(forest_rows(frame)) == claims
    # one tick per (claim row, treatment or A/A line), one interval line per tick
    assert len(ax.get_yticks()) == len(frame)
    intervals = _lines(ax)
    assert len(intervals) == len(frame)
    assert sorted((round(lo, 6), round(hi, 6)) for _, lo, hi in intervals) == \
        sorted((round(lo, 6), round(hi, 6)) for lo, hi in zip(frame["ci_low"], frame["ci_high"]))
    assert any(np.allclose(line.get_xdata(), 0) and line.get_linestyle() == "-" for line in ax.get_lines())  # zero line
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert sum(label.endswith("(A/A)") for label in labels) == claims
    # a claim-row label per block; readable size: at most ~0.3 inch per line and at least 2 inches
    annotations = [child for child in ax.texts]
    assert len(annotations) == claims
    width, height = fig.get_size_inches()
    assert 2.0 <= height <= 0.3 * len(frame) + 3 and width <= 8


def test_forest_plot_band_marks_the_detectable_difference():
    frame = verdict_frame(1, 1, aa=False).assign(detectable=2.5)
    ax = forest_plot(frame).axes[0]
    bands = [c for c in ax.collections if not hasattr(c, "get_segments")]
    extents = [c.get_paths()[0].get_extents() for c in bands]
    assert any(math.isclose(e.x0, -2.5) and math.isclose(e.x1, 2.5) for e in extents)


def test_forest_plot_of_an_empty_frame_is_none():
    assert forest_plot(pd.DataFrame(columns=COLUMNS)) is None


def _ablation_records(root, write_run, delta: float = 0.01):
    arms = {"ce": ("ce", 0.0), "default": ("grpo_rm", delta), "temperature0.5": ("grpo_rm", -delta)}
    for arm, (method, shift) in arms.items():
        for s in range(3):
            write_run(root, "study_ablations", f"a-{arm}-s{s}", method=method, seed=s,
                      sr=0.80 + 0.01 * s + shift + 0.001 * s * (arm == "default"), axes={"arm": arm})
    # an ablation experiment without arms: no control of its own
    write_run(root, "ablation_clip", "old-s0", method="grpo_rm", seed=0, sr=0.5, axes={"grpo_rm.clip_eps": 0.1})


def test_ablation_differences_are_paired_with_the_ce_arm(tmp_path, write_run):
    _ablation_records(tmp_path, write_run)
    diffs = ablation_differences(load_runs(tmp_path))
    assert set(diffs["experiment"]) == {"study_ablations"}  # the one without arms left out
    sr = diffs[diffs["metric"] == "sr_top1"].set_index("arm")
    assert set(sr.index) == {"default", "temperature0.5"}
    assert sr.loc["default", "diff"] == pytest.approx(1.0 + 0.1)  # mean of 1.0, 1.1, 1.2 points
    assert sr.loc["temperature0.5", "diff"] == pytest.approx(-1.0)
    assert sr.loc["default", "ci_low"] < sr.loc["default", "diff"] < sr.loc["default", "ci_high"]


def test_ablation_plot_shows_a_one_point_difference(tmp_path, write_run):
    _ablation_records(tmp_path, write_run)
    fig = ablation_plot(load_runs(tmp_path))
    assert fig is not None
    for ax in [a for a in fig.axes if a.get_visible()]:
        low, high = ax.get_xlim()
        assert high - low < 10  # the axis spans the differences (points), not 0..100
        assert low < -0.9 and high > 1.1
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert labels == ["default (n=3)", "temperature0.5 (n=3)"]  # arm names, never a raw dict
    width, height = fig.get_size_inches()
    assert width <= 10 and height <= 12


def test_ablation_plot_without_arm_studies_is_none(tmp_path, write_run):
    write_run(tmp_path, "ablation_clip", "old-s0", method="grpo_rm", seed=0, sr=0.5, axes={"grpo_rm.clip_eps": 0.1})
    assert ablation_plot(load_runs(tmp_path)) is None


def test_report_draws_the_forest_plot_in_the_verdict_section_and_its_embedded_file(tmp_path, write_run, monkeypatch):
    """The report calls analysis.verdict.verdict_frame (stood in for here) and links the plot from REPORT.md,
    from tables/verdict.md (which the README embeds) and from the experiment's table.md."""
    from grporm.analysis import report as report_module
    from grporm.analysis import verdict as verdict_module

    _ablation_records(tmp_path, write_run)
    frame = verdict_frame(2, 2).assign(experiment="study_ablations")
    monkeypatch.setattr(verdict_module, "verdict_frame", lambda run_set: frame, raising=False)
    monkeypatch.setattr(verdict_module, "verdict_section",
                        lambda run_set: (["## Verdict", ""], {".md": "# Verdict\n\ntable\n"}))
    monkeypatch.setattr(report_module, "verdict_section", verdict_module.verdict_section)
    report_module.report_all(tmp_path)
    text = (tmp_path / "REPORT.md").read_text()
    verdict_part = text[text.index("## Verdict"):text.index("## Classification")]
    assert "(figures/verdict_forest.png)" in verdict_part
    assert (tmp_path / "figures" / "verdict_forest.png").stat().st_size > 5000
    assert (tmp_path / "figures" / "verdict_forest.pdf").exists()
    assert "](../figures/verdict_forest.png)" in (tmp_path / "tables" / "verdict.md").read_text()
    assert "(figures/ablations.png)" in text
    assert "![Forest plot](forest.png)" in (tmp_path / "study_ablations" / "table.md").read_text()
    assert not (tmp_path / "ablation_clip" / "forest.png").exists()  # no verdict row there


def test_a_long_list_of_measures_stays_inside_the_figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    frame = verdict_frame(claims=6, treatments=2)
    frame["measure"] = [["transfer_sr/digits", "sr", "imbalance_sr/overall", "imbalance_sr/few", "miou", "knn20"][i % 6]
                        for i in range(len(frame))]
    fig = forest_plot(frame)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    label = fig.axes[0].xaxis.label.get_window_extent(renderer)
    assert 0 <= label.x0 and label.x1 <= fig.bbox.x1, (label, fig.bbox)


def test_a_figure_of_many_panels_is_a_png_of_bounded_size_beside_its_full_pdf(tmp_path):
    from matplotlib.figure import Figure
    from PIL import Image

    from grporm.analysis.figures import MAX_PNG_PIXELS, PNG_DPI, save_figure

    small, tall = Figure(figsize=(6, 4)), Figure(figsize=(18, 70))  # 70 in: a panel row per study and backbone
    for fig, name in ((small, "small"), (tall, "tall")):
        fig.subplots().plot([0, 1], [0, 1])
        save_figure(fig, tmp_path / name)
    assert Image.open(tmp_path / "small.png").size == (6 * PNG_DPI, 4 * PNG_DPI)  # small figures keep their dpi
    width, height = Image.open(tmp_path / "tall.png").size
    assert width * height <= MAX_PNG_PIXELS * 1.01 and height > 2000 and (tmp_path / "tall.pdf").exists()
