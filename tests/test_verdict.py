"""The verdict table (analysis/verdict.py): paired differences of every arm against the CE arm, the
word of each cell, the power columns, and the plain statement, on hand-made records."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from grporm.analysis.records import load_runs
from grporm.analysis.stats import paired_difference
from grporm.analysis.verdict import (
    detectable,
    reproduced,
    seeds_needed,
    verdict_csv,
    verdict_markdown,
    verdict_rows,
    verdict_section,
    word,
)

CE = (0.80, 0.82, 0.81, 0.83, 0.79)
AHEAD = (0.84, 0.85, 0.86, 0.85, 0.84)      # +3.8 points on average, consistently
BEHIND = (0.70, 0.73, 0.71, 0.72, 0.70)
MIXED = (0.82, 0.80, 0.83, 0.81, 0.81)      # differences +2, -2, +2, -2, +2: no difference


def _arm(write_run, root: Path, study: str, arm: str, method: str, values, close_call: bool = False, **more) -> None:
    for seed, value in enumerate(values):
        folder = write_run(root, study, f"{study}-{arm}-s{seed}", method=method, seed=seed, sr=value,
                           axes={"arm": arm}, **more)
        record = json.loads((folder / "record.json").read_text())
        record["tuning"] = {"key": arm, "winner": 1e-3, "margin": 0.001, "close_call": close_call, "edge": False}
        (folder / "record.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def results(write_run, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("verdict") / "results"
    _arm(write_run, root, "study_readings", "ce", "ce", CE, history=[0.5, 0.6, 0.7])
    _arm(write_run, root, "study_readings", "default", "grpo_rm", BEHIND, history=[0.5, 0.5, 0.6])
    _arm(write_run, root, "study_readings", "expected", "grpo_rm", AHEAD, history=[0.5, 0.7, 0.75])
    _arm(write_run, root, "study_readings", "sampled16", "grpo_rm", MIXED, history=[0.5, 0.6, 0.7], close_call=True)
    _arm(write_run, root, "study_readings", "anchor", "grpo_rm", CE, history=[0.5, 0.6, 0.7])  # the control: last
    _arm(write_run, root, "study_readings", "pretrained", "pretrained", CE)  # neither control nor a column
    # a study with one seed of its GRPO-RM arm: a difference but no interval, so no word
    _arm(write_run, root, "study_segmentation", "ce", "ce", CE[:1], extra={"seg": {"miou": 0.40, "pixel_acc": 0.8}})
    _arm(write_run, root, "study_segmentation", "default", "grpo_rm", CE[:1], extra={"seg": {"miou": 0.45, "pixel_acc": 0.8}})
    # runs without arms (quick) are not part of the verdict
    write_run(root, "quick", "quick-ce-s0", method="ce", seed=0, sr=0.9)
    return root


def _rows(results: Path):
    rows, arms = verdict_rows(load_runs(results))
    return {(r.claim.name, r.backbone): r for r in rows}, arms


def test_columns_are_the_grpo_rm_arms_default_first(results: Path):
    _, arms = _rows(results)
    assert arms == ["default", "expected", "sampled16", "anchor"]


def test_cells_pair_each_arm_with_ce_by_seed(results: Path):
    rows, _ = _rows(results)
    sr = rows[("SR", "tf_efficientnet_lite0")]
    expect = paired_difference(dict(enumerate(AHEAD)), dict(enumerate(CE)))
    assert sr.cells["expected"].mean == pytest.approx(expect.mean)
    assert sr.cells["expected"].ci_low == pytest.approx(expect.ci_low)
    assert (word(sr.cells["expected"]), word(sr.cells["default"]), word(sr.cells["sampled16"])) == \
        ("ahead", "behind", "no difference")
    assert sr.n == 5 and len(sr.runs) == 25  # CE + four arms, five seeds; pretrained left out
    knn = rows[("kNN", "tf_efficientnet_lite0")]  # write_run's kNN@20 = SR - 0.02: the same differences
    assert knn.cells["default"].mean == pytest.approx(sr.cells["default"].mean)


def test_convergence_reads_the_first_epoch_of_history(results: Path):
    rows, _ = _rows(results)
    cell = rows[("Convergence", "tf_efficientnet_lite0")].cells
    assert cell["default"].mean == pytest.approx(-0.1)
    assert cell["expected"].mean == pytest.approx(0.1)
    assert cell["sampled16"].mean == pytest.approx(0.0) and word(cell["sampled16"]) == "no difference"


def test_one_pair_gives_a_difference_without_a_word(results: Path):
    rows, _ = _rows(results)
    seg = rows[("Segmentation", "tf_efficientnet_lite0")]
    assert seg.cells["default"].mean == pytest.approx(0.05)
    assert word(seg.cells["default"]) == "" and math.isnan(seg.detectable)


def test_detectable_difference_and_seeds():
    # n = 5, std 2 points: (t_.975,4 + t_.80,4) * 2 / sqrt(5) = (2.776 + 0.941) * 0.894
    assert detectable(2.0, 5) == pytest.approx((2.7764 + 0.9410) * 2 / math.sqrt(5), rel=1e-3)
    assert detectable(2.0, 20) < detectable(2.0, 10) < detectable(2.0, 5)
    n = seeds_needed(2.0, 3.0)
    assert detectable(2.0, n) <= 3.0 < detectable(2.0, n - 1)
    assert seeds_needed(math.nan, 3.0) is None and math.isnan(detectable(1.0, 1))


def test_rendered_table_statement_and_csv(results: Path):
    rows, arms = verdict_rows(load_runs(results))
    markdown = verdict_markdown(rows, arms)
    assert "| SR | tf_efficientnet_lite0 | 5 |" in markdown
    assert "behind" in markdown and "ahead" in markdown and "not run" in markdown  # segmentation has one arm
    assert "no difference ‡" in markdown and markdown.count("‡") == 3  # sampled16's lr: SR, kNN, convergence
    lines = reproduced(rows, arms)
    sr_line = next(line for line in lines if line.startswith("- SR "))
    assert "**reproduced** by `expected`" in sr_line and "behind CE on every backbone: `default`" in sr_line
    seg_line = next(line for line in lines if line.startswith("- Segmentation"))
    assert "**not reproduced**" in seg_line
    csv = verdict_csv(rows).splitlines()
    assert csv[0].startswith("claim,experiment,backbone,arm,n,diff,ci_low,ci_high,verdict")
    assert len(csv) == 1 + 3 * 4 + 1  # header; SR, kNN, convergence x 4 arms; segmentation (no OOD records here)
    lines, files = verdict_section(load_runs(results))
    assert set(files) == {".md", ".tex", ".csv"} and "OOD: corruptions (`study_readings`): no finished runs" in files[".md"]


def test_no_arms_no_section(write_run, tmp_path: Path):
    write_run(tmp_path, "quick", "q-ce-s0", method="ce", seed=0, sr=0.9)
    write_run(tmp_path, "quick", "q-grpo-s0", method="grpo_rm", seed=0, sr=0.8)
    lines, files = verdict_section(load_runs(tmp_path))
    assert files == {} and "section skipped" in "\n".join(lines)


def test_the_anchor_is_a_control_never_said_to_reproduce(write_run, tmp_path: Path):
    _arm(write_run, tmp_path, "study_readings", "ce", "ce", CE)
    _arm(write_run, tmp_path, "study_readings", "default", "grpo_rm", BEHIND)
    _arm(write_run, tmp_path, "study_readings", "anchor", "grpo_rm", AHEAD)
    rows, arms = verdict_rows(load_runs(tmp_path))
    assert word(rows[0].cells["anchor"]) == "ahead"
    sr_line = next(line for line in reproduced(rows, arms) if line.startswith("- SR "))
    assert "**not reproduced** by any reading" in sr_line and "1 reading(s) run" in sr_line
