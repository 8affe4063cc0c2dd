"""The verdict's figures, every number from the verdict frame (no figure pairs runs itself): each
experiment's forest figure (one panel per verdict row, an x axis on each, the experiment in the title),
the README's compact figure (primary claims, one line per treatment), and where the report links them."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grporm.analysis.close_calls import close_call_lines, experiment_file
from grporm.analysis.figures import experiment_forest, forest_points, forest_rows, summary_forest
from grporm.analysis.records import load_runs
from grporm.analysis.verdict import FRAME_COLUMNS
from grporm.analysis.verdict import verdict_frame as frame_of_records

# the columns of the real frame the figures read (a stand-in with a column the frame lacks would test nothing)
COLUMNS = ["experiment", "claim", "measure", "dataset", "backbone", "axes", "treatment", "role", "control", "n", "diff",
           "ci_low", "ci_high", "p", "p_margin", "word", "detectable", "close_call", "runner_up_word", "no_rerun", "claim_word"]
assert set(COLUMNS) <= set(FRAME_COLUMNS)


def verdict_frame(claims: int, treatments: int, aa: bool = True, experiments: int = 1) -> pd.DataFrame:
    """A verdict frame as analysis.verdict.verdict_frame returns it (differences in points)."""
    rows = []
    for e in range(experiments):
        for c in range(claims):
            arms = [f"arm{t}" for t in range(treatments)] + (["anchor"] if aa else [])
            for t, arm in enumerate(arms):
                diff = 1.5 * (t - 1) + 0.1 * c
                role = "aa" if arm == "anchor" else "treatment"
                word = "ahead" if diff - 1 > 0 else "behind" if diff + 1 < 0 else "no difference"
                rows.append([f"study{e}", f"claim {c}", "sr", "fashion_mnist", f"backbone{c % 2}", "", arm, role, "ce", 5,
                             diff, diff - 1, diff + 1, 0.04, 0.2, word, 2.0, False, "", False, word])
    return pd.DataFrame(rows, columns=COLUMNS)


def _intervals(ax):
    """(x low, x high) of every interval drawn (hlines)."""
    out = []
    for collection in ax.collections:
        for segment in getattr(collection, "get_segments", lambda: [])():
            (x0, y0), (x1, y1) = segment[0], segment[-1]
            if y0 == y1 and x0 != x1:
                out.append((round(x0, 6), round(x1, 6)))
    return sorted(out)


@pytest.mark.parametrize("claims,treatments", [(1, 1), (4, 3), (6, 7)])
def test_an_experiment_s_figure_has_a_panel_with_an_x_axis_per_verdict_row(claims, treatments):
    frame = verdict_frame(claims, treatments)
    fig = experiment_forest(frame)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == len(forest_rows(frame)) == claims
    assert "study0" in fig._suptitle.get_text()  # the experiment's name in the title
    for ax, (_, lines) in zip(panels, forest_rows(frame)):
        assert ax.get_xlabel() == "minus `ce` (points)" and ax.xaxis.get_visible()
        assert all(label.get_visible() for label in ax.get_xticklabels())  # its own x axis, not a shared one
        assert _intervals(ax) == sorted((round(lo, 6), round(hi, 6)) for lo, hi in zip(lines["ci_low"], lines["ci_high"]))
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert labels[-1] == "anchor (A/A) (n=5)"  # A/A controls last
        assert any(np.allclose(line.get_xdata(), 0) for line in ax.get_lines())  # the zero line
    points = forest_points(fig)
    assert [x for panel in points for _, x in panel] == pytest.approx(
        [x for _, lines in forest_rows(frame) for x in lines["diff"]])
    width, _ = fig.get_size_inches()
    assert width <= 10.5


def test_the_dashes_mark_the_margin_and_no_detectable_band_is_drawn():
    """The margin δ is what the words are judged against; a detectable difference is power after the fact."""
    frame = verdict_frame(1, 1, aa=False).assign(detectable=2.5, margin=1.5)
    ax = experiment_forest(frame).axes[0]
    assert not [c for c in ax.collections if not hasattr(c, "get_segments")]  # no shaded band
    dashed = [seg for c in ax.collections if hasattr(c, "get_segments") and c.get_linestyle()[0][1] is not None
              for seg in c.get_segments()]
    assert dashed and all(math.isclose(seg[0][0], 1.5) and math.isclose(seg[1][0], 1.5) for seg in dashed)


def test_an_empty_frame_draws_nothing():
    empty = pd.DataFrame(columns=COLUMNS)
    assert experiment_forest(empty) is None and summary_forest(empty) is None


def test_the_compact_figure_has_one_line_per_treatment_and_reads_at_readme_width():
    frame = verdict_frame(claims=2, treatments=4, experiments=3)
    frame = pd.concat([frame, frame.assign(backbone="other")], ignore_index=True)  # two backbones per line
    fig = summary_forest(frame)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title(loc="left") for ax in panels] == [f"study{e}: claim {c}" for e in range(3) for c in range(2)]
    for ax in panels:
        assert [t.get_text() for t in ax.get_yticklabels()] == ["arm0", "arm1", "arm2", "arm3", "anchor (A/A)"]
        assert ax.get_xlabel() == "minus `ce` (points)" and all(t.get_fontsize() >= 9 for t in ax.get_yticklabels())
        assert len(_intervals(ax)) == 2 * 5  # both backbones on each line
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"backbone0", "backbone1", "other"} <= set(legend) and "ahead" in legend
    width, height = fig.get_size_inches()
    assert width <= 8.5 and height <= 3 * 2.2 + 1.5


def _control_with_a_runner_up(root: Path, write_run) -> None:
    """The ablation study's control (CE) was a close call with runner-up runs: the verdict pairs the arms with
    CE's winner runs; pairing by seed alone would mix in the runner-up runs."""
    exp, close = "study_ablations", {"close_call": True, "edge": False}
    arms = (("ce", "ce", 0.80, "winner"), ("ce", "ce", 0.86, "runner_up"), ("default", "grpo_rm", 0.83, "winner"),
            ("temperature0.5", "grpo_rm", 0.78, "winner"))
    for arm, method, base, pick in arms:
        for s in range(3):
            axes = {"arm": arm} | ({"tune.pick": "runner_up"} if pick == "runner_up" else {})
            tag = "-lr=runner_up" if pick == "runner_up" else ""
            folder = write_run(root, exp, f"{arm}{tag}-s{s}", method=method, seed=s, sr=base + 0.01 * s + 0.002 * s * s,
                               axes=axes)
            record = json.loads((folder / "record.json").read_text())
            record["tuning"] = {**(close if arm == "ce" else {"close_call": False}), "pick": pick}
            (folder / "record.json").write_text(json.dumps(record))


def test_the_ablation_figure_shows_the_verdict_s_winner_cells_where_the_control_has_a_runner_up(tmp_path, write_run):
    _control_with_a_runner_up(tmp_path, write_run)
    frame = frame_of_records(load_runs(tmp_path))
    sr = frame[frame["claim"] == frame["claim"].iloc[0]].set_index("treatment")
    assert sr.loc["default", "diff"] == pytest.approx(3.0) and sr.loc["temperature0.5", "diff"] == pytest.approx(-2.0)
    fig = experiment_forest(frame)
    drawn = dict(forest_points(fig)[0])
    assert drawn == {"default (n=3)": pytest.approx(3.0), "temperature0.5 (n=3)": pytest.approx(-2.0)}
    assert "study_ablations" in fig._suptitle.get_text()


def test_the_report_links_each_experiment_s_figure_and_the_compact_one(tmp_path, write_run, monkeypatch):
    from grporm.analysis.report import report_all

    _control_with_a_runner_up(tmp_path / "results", write_run)
    write_run(tmp_path / "results", "alone", "g-s0", method="grpo_rm", seed=0, sr=0.5)  # no control: no figure
    monkeypatch.chdir(tmp_path)
    report_all(Path("results"))
    root = tmp_path / "results"
    text = (root / "REPORT.md").read_text()
    assert "(figures/verdict_forest.png)" in text and (root / "figures" / "verdict_forest.png").stat().st_size > 5000
    assert "![Verdict of study_ablations](figures/forest_study_ablations.png)" in text
    assert (root / "figures" / "forest_study_ablations.pdf").exists()
    assert "](../figures/verdict_forest.png)" in (root / "tables" / "verdict_summary.md").read_text()
    assert "![Forest plot of study_ablations](forest.png)" in (root / "study_ablations" / "table.md").read_text()
    assert not (root / "alone" / "forest.png").exists() and "forest_alone" not in text
    assert not (root / "figures" / "ablations.png").exists()


def test_a_close_call_without_runner_up_runs_is_said_with_the_command(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "mine.yaml").write_text("# my study\nname: mine  # the folder\nmatrix: {}\n")
    (tmp_path / "other.yaml").write_text("name: other\n")
    frame = verdict_frame(1, 2, aa=False).assign(experiment="mine")
    assert close_call_lines(frame, Path("results"), tmp_path) == []  # every close call checked
    frame.loc[frame["treatment"] == "arm1", "no_rerun"] = True
    assert experiment_file("mine", tmp_path) == "experiments/mine.yaml" and experiment_file("nope", tmp_path) is None
    (text, blank) = close_call_lines(frame, Path("mine_results"), tmp_path)
    assert "Close calls not yet checked (‡) in `mine`" in text and "`arm1` on claim 0 (backbone0): *no difference*" in text
    assert "`grporm run experiments/mine.yaml --sensitivity --results mine_results && grporm report --results mine_results`" in text
    assert "arm0" not in text and blank == ""
    (text, _) = close_call_lines(frame.assign(experiment="lost"), Path("results"), tmp_path)
    assert "`grporm run <the experiment file of lost> --sensitivity && grporm report`" in text


def test_the_report_of_a_ce_arm_called_baseline_is_complete(tmp_path, write_run):
    """No verdict declared and the CE arm called `baseline`: the full verdict, its figure, no section stubbed."""
    from grporm.analysis.report import report_all

    for arm, method, base in (("baseline", "ce", 0.80), ("grpo", "grpo_rm", 0.85)):
        for s in range(3):
            write_run(tmp_path, "own", f"{arm}-s{s}", method=method, seed=s, sr=base + 0.01 * s, axes={"arm": arm},
                      history=[0.5, 0.6, base])
    report_all(tmp_path)
    text = (tmp_path / "REPORT.md").read_text()
    assert "### `own`" in text and "Control: `baseline` (arm)" in text and "(figures/forest_own.png)" in text
    assert "skipped" not in text and "not drawn" not in text and "no verdict" not in text
    frame = frame_of_records(load_runs(tmp_path))
    assert set(frame["control"]) == {"baseline"} and set(frame["treatment"]) == {"grpo"}


def test_a_report_describes_its_folder_only(tmp_path, write_run):
    """A folder with one plain experiment (CE alone: nothing to compare): only its sections, no stub for
    what it has no data for, and no tuning decision of another experiment's setting."""
    from grporm.analysis.report import report_all
    from grporm.config import RunConfig
    from grporm.tuning.decisions import tuning_key
    from tests.test_tuning import fake_record

    mine, theirs = RunConfig(method="ce", tune={"grid": [1e-3, 1e-2]}), RunConfig(method="grpo_rm", tune={"grid": [1e-3, 1e-2]})
    for run in (mine, theirs):
        fake_record(tmp_path, run, winner=1e-3)
    for s in range(2):
        folder = write_run(tmp_path, "solo", f"ce-s{s}", method="ce", seed=s, sr=0.8)
        record = json.loads((folder / "record.json").read_text())
        (folder / "record.json").write_text(json.dumps({**record, "tuning": {"key": tuning_key(mine), "pick": "winner"}}))
    report_all(tmp_path)
    text = (tmp_path / "REPORT.md").read_text()
    assert "skipped" not in text and "not drawn" not in text and "no verdict" not in text
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## Classification", "## Cost", "## Tuning decisions", "## Excluded runs", "## Environment"]
    tuning = text[text.index("## Tuning decisions"):text.index("## Excluded runs")]
    assert tuning_key(mine) in tuning and tuning_key(theirs) not in tuning
