"""analysis: records -> table -> Markdown, convergence figure and report, on a fake results folder."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from grporm.analysis import (
    classification_markdown,
    classification_table,
    convergence_figure,
    load_runs,
    report_all,
    write_experiment_tables,
)
from grporm.analysis.figures import convergence_curves
from grporm.analysis.records import is_metric_column, load_history, tidy
from grporm.errors import GrpormError

EXP = "quick"
FM, CF = "fashion_mnist", "cifar10"
BB = "tf_efficientnet_lite0"


def write_run(root: Path, run_id: str, *, method: str, dataset: str = FM, seed: int = 0, head=None, sr=0.5,
              knn20=0.5, status: str = "finished", error=None, history=None, experiment: str = EXP,
              config_hash: str | None = None, finished_at: str = "2025-01-01T00:00:00+00:00",
              axes: dict | None = None) -> Path:
    run_dir = root / experiment / "runs" / run_id
    run_dir.mkdir(parents=True)
    record = {
        "run_id": run_id, "experiment": experiment, "status": status, "error": error, "method": method,
        "dataset": dataset, "backbone": BB, "seed": seed, "config_hash": config_hash or f"h-{run_id}",
        "config": {"method": method}, "lr": None if method == "pretrained" else 1e-3,
        "metrics": {"head_top1": head, "ece": None if head is None else 0.05, "sr_top1": sr, "sr_l2": 0.0,
                    "knn_top1": {"10": knn20 - 0.01, "20": knn20, "100": knn20 - 0.02, "200": knn20 - 0.03},
                    "val_head_top1": head, "per_class": {}},
        "timing": {"train_seconds": 10.0, "eval_seconds": 2.0, "total_seconds": 12.0,
                   "train_images_per_second": None if method == "pretrained" else 500.0, "peak_memory_mb": 900.0},
        "env": {}, "started_at": "2025-01-01T00:00:00+00:00", "finished_at": finished_at,
        "axes": axes or {"method": method, "seed": seed},
    }
    (run_dir / "record.json").write_text(json.dumps(record))
    if history is not None:
        lines = ["epoch,train_seconds,lr,train_loss,train_acc,val_head_top1,knn20_top1"]
        for epoch, value in enumerate(history):
            # epoch 0 is before training: no lr, loss or accuracy yet (empty cells)
            train = "0.0,,," if epoch == 0 else f"{epoch * 5.0},0.001,0.5,0.8"
            lines.append(f"{epoch},{train},0.7,{value}")
        (run_dir / "history.csv").write_text("\n".join(lines) + "\n")
    return run_dir


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    # fashion_mnist: pretrained x2, ce x3, grpo_rm x3
    write_run(root, "fm-pre-s0", method="pretrained", seed=0, sr=0.70, knn20=0.65)
    write_run(root, "fm-pre-s1", method="pretrained", seed=1, sr=0.72, knn20=0.67)
    ce_hist = [[0.50, 0.60, 0.70, 0.75], [0.52, 0.62, 0.72, 0.76], [0.54, 0.64, 0.74, 0.77]]
    for s, (head, sr, knn) in enumerate([(0.80, 0.78, 0.75), (0.82, 0.80, 0.76), (0.84, 0.82, 0.77)]):
        write_run(root, f"fm-ce-s{s}", method="ce", seed=s, head=head, sr=sr, knn20=knn, history=ce_hist[s])
    for s, (head, sr, knn) in enumerate([(0.85, 0.83, 0.80), (0.86, 0.84, 0.82), (0.87, 0.85, 0.84)]):
        write_run(root, f"fm-grpo-s{s}", method="grpo_rm", seed=s, head=head, sr=sr, knn20=knn,
                  history=[0.50, 0.70, 0.78, 0.80 + 0.02 * s])
    # cifar10: ce with one seed, grpo_rm with two
    write_run(root, "cf-ce-s0", dataset=CF, method="ce", seed=0, head=0.6123, sr=0.60, knn20=0.55,
              history=[0.30, 0.45, 0.55])
    write_run(root, "cf-grpo-s0", dataset=CF, method="grpo_rm", seed=0, head=0.64, sr=0.62, knn20=0.58)
    write_run(root, "cf-grpo-s1", dataset=CF, method="grpo_rm", seed=1, head=0.66, sr=0.64, knn20=0.60)
    # not to be averaged in: failed, running, corrupt
    write_run(root, "fm-grpo-s3", method="grpo_rm", seed=3, head=0.10, sr=0.10, knn20=0.10, status="failed",
              error="TrainingDiverged: loss became nan at step 12")
    write_run(root, "fm-ce-s3", method="ce", seed=3, head=0.99, sr=0.99, knn20=0.99, status="running",
              finished_at=None)
    broken = root / EXP / "runs" / "fm-broken"
    broken.mkdir()
    (broken / "record.json").write_text('{"run_id": "fm-broken", "status": "fini')
    return root


def test_load_runs_keeps_only_finished_and_lists_the_rest(results: Path):
    run_set = load_runs(results)
    assert sorted(run_set.runs["run_id"]) == sorted(
        ["fm-pre-s0", "fm-pre-s1", "fm-ce-s0", "fm-ce-s1", "fm-ce-s2", "fm-grpo-s0", "fm-grpo-s1", "fm-grpo-s2",
         "cf-ce-s0", "cf-grpo-s0", "cf-grpo-s1"])
    reasons = {Path(path).parent.name: reason for path, reason in run_set.excluded}
    assert set(reasons) == {"fm-grpo-s3", "fm-ce-s3", "fm-broken"}
    assert reasons["fm-grpo-s3"] == "failed: TrainingDiverged: loss became nan at step 12"
    assert "running" in reasons["fm-ce-s3"]
    assert reasons["fm-broken"].startswith("unreadable record.json")
    row = run_set.runs.set_index("run_id").loc["fm-ce-s1"]
    assert (row["experiment"], row["method"], row["dataset"], row["backbone"], row["seed"]) == (EXP, "ce", FM, BB, 1)
    assert row["knn200_top1"] == pytest.approx(0.73) and row["train_images_per_second"] == 500.0
    assert Path(row["path"]) == (results / EXP / "runs" / "fm-ce-s1").resolve()
    assert math.isnan(run_set.runs.set_index("run_id").loc["fm-pre-s0", "head_top1"])


def test_duplicates_and_out_of_range_metrics_are_excluded(tmp_path: Path):
    write_run(tmp_path, "a", method="ce", head=0.10, config_hash="same", finished_at="2025-01-01T00:00:00+00:00")
    write_run(tmp_path, "b", method="ce", head=0.90, config_hash="same", finished_at="2025-01-02T00:00:00+00:00")
    write_run(tmp_path, "pct", method="ce", seed=1, head=85.3)
    run_set = load_runs(tmp_path)
    assert list(run_set.runs["run_id"]) == ["b"]
    reasons = {Path(path).parent.name: reason for path, reason in run_set.excluded}
    assert reasons["a"].startswith("duplicate of run b")
    assert "outside [0, 1]" in reasons["pct"]


def test_tidy_has_one_row_per_run_and_present_metric(results: Path):
    runs = load_runs(results).runs
    long = tidy(runs)
    columns = [c for c in runs.columns if is_metric_column(c)]
    assert len(long) == int(runs[columns].notna().sum().sum())
    assert set(long["metric"]) == set(columns)
    pre = long[long["run_id"] == "fm-pre-s0"]
    assert "head_top1" not in set(pre["metric"]) and "train_images_per_second" not in set(pre["metric"])
    value = long[(long["run_id"] == "fm-ce-s2") & (long["metric"] == "sr_top1")]["value"]
    assert list(value) == [pytest.approx(0.82)]


def test_classification_table_means_and_stds(results: Path):
    table = classification_table(load_runs(results).runs)
    assert list(table.index) == [(CF, BB, "ce"), (CF, BB, "grpo_rm"),
                                 (FM, BB, "pretrained"), (FM, BB, "ce"), (FM, BB, "grpo_rm")]
    ce = table.loc[(FM, BB, "ce")]
    assert ce["head_mean"] == pytest.approx(0.82) and ce["head_std"] == pytest.approx(0.02)
    assert ce["sr_mean"] == pytest.approx(0.80) and ce["knn20_std"] == pytest.approx(0.01)
    assert ce["n_seeds"] == 3  # the running seed-3 record (head 0.99) is not counted
    grpo = table.loc[(FM, BB, "grpo_rm")]
    assert grpo["head_mean"] == pytest.approx(0.86) and grpo["head_std"] == pytest.approx(0.01)
    assert grpo["knn20_mean"] == pytest.approx(0.82) and grpo["knn20_std"] == pytest.approx(0.02)
    assert grpo["n_seeds"] == 3  # the failed seed (head 0.10) is not averaged in
    pre = table.loc[(FM, BB, "pretrained")]
    assert math.isnan(pre["head_mean"]) and pre["head_n"] == 0
    assert pre["sr_std"] == pytest.approx(math.sqrt(0.0002))
    one = table.loc[(CF, BB, "ce")]
    assert one["head_mean"] == pytest.approx(0.6123) and math.isnan(one["head_std"]) and one["n_seeds"] == 1


def test_markdown_cells(results: Path):
    text = classification_markdown(classification_table(load_runs(results).runs))
    lines = text.strip().splitlines()
    assert lines[0] == "| Dataset | Backbone | Method | Head | SR | kNN@20 | Seeds |"
    assert len(lines) == 2 + 5
    rows = {tuple(c.strip() for c in line.strip("|").split("|"))[:3]: [c.strip() for c in line.strip("|").split("|")]
            for line in lines[2:]}
    assert rows[(FM, BB, "CE")][3:] == ["82.0 ± 2.0", "80.0 ± 2.0", "76.0 ± 1.0", "3"]
    assert rows[(FM, BB, "Pretrained")][3:] == ["—", "71.0 ± 1.4", "66.0 ± 1.4", "2"]
    assert rows[(CF, BB, "CE")][3:] == ["61.2", "60.0", "55.0", "1"]
    assert "tabulate" not in classification_markdown.__code__.co_names


def test_load_history_reads_empty_cells_as_missing(results: Path):
    history = load_history(results / EXP / "runs" / "fm-ce-s0")
    assert list(history["epoch"]) == [0, 1, 2, 3]
    assert math.isnan(history.loc[0, "train_loss"]) and history.loc[1, "train_loss"] == 0.5
    assert load_history(results / EXP / "runs" / "fm-pre-s0") is None


def test_convergence_curves_average_over_seeds(results: Path):
    curves = convergence_curves(load_runs(results).runs, results)
    assert set(curves) == {(FM, BB), (CF, BB)}
    assert set(curves[(FM, BB)]) == {"ce", "grpo_rm"}  # pretrained has no history
    ce = curves[(FM, BB)]["ce"].set_index("epoch")
    assert ce.loc[1, "mean"] == pytest.approx(0.62)
    assert (ce.loc[1, "low"], ce.loc[1, "high"], ce.loc[1, "n"]) == (pytest.approx(0.60), pytest.approx(0.64), 3)
    assert curves[(FM, BB)]["ce"].attrs["runs"] == 3
    assert list(curves[(CF, BB)]["ce"]["mean"]) == pytest.approx([0.30, 0.45, 0.55])


def test_convergence_figure_writes_png(results: Path, tmp_path: Path):
    runs = load_runs(results).runs
    out = convergence_figure(runs, results, tmp_path / "figs" / "conv.png")
    assert out == tmp_path / "figs" / "conv.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    nothing = tmp_path / "none.png"
    assert convergence_figure(runs[runs["method"] == "pretrained"], results, nothing) is None
    assert not nothing.exists()


def test_experiment_tables(results: Path):
    write_run(results, "other-ce", experiment="other", method="ce", head=0.7)  # no history: no figure
    from grporm.analysis.manifest import prune_and_record

    stale = results / "other" / "convergence.png"
    stale.write_bytes(b"old")
    prune_and_record(results, [stale], lambda name: False)  # as an earlier report would have written it
    users = results / "other" / "forest.png"
    users.write_bytes(b"the user's own")  # a report's name, but no report wrote it: kept
    paths = write_experiment_tables(results, load_runs(results))
    # EXP pairs GRPO-RM with CE by seed: its verdict rows get a forest plot; "other" has no treatment
    assert sorted(paths) == sorted([results / "other" / "table.md", results / EXP / "table.md",
                                    results / EXP / "convergence.png", results / EXP / "forest.png"])
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert not stale.exists() and users.read_bytes() == b"the user's own"
    text = (results / EXP / "table.md").read_text()
    assert text.startswith(f"# {EXP}\n")
    assert "test top-1 in %, mean ± std over seeds" in text
    assert "| fashion_mnist | tf_efficientnet_lite0 | CE | 82.0 ± 2.0 | 80.0 ± 2.0 | 76.0 ± 1.0 | 3 |" in text
    assert "## Excluded runs" in text
    assert "- `runs/fm-grpo-s3/record.json`: failed: TrainingDiverged: loss became nan at step 12" in text
    assert "`runs/fm-broken/record.json`: unreadable record.json" in text
    assert f"- {FM} / {BB} / GRPO-RM: fm-grpo-s0, fm-grpo-s1, fm-grpo-s2" in text
    assert "fm-grpo-s3" not in text.split("## Runs per row")[1]
    other = (results / "other" / "table.md").read_text()
    assert "No convergence figure" in other and "Excluded" not in other


@pytest.mark.parametrize("make", ["empty", "missing", "empty_runs"])
def test_report_without_records_raises(tmp_path: Path, make: str):
    root = tmp_path / "results"
    if make != "missing":
        root.mkdir()
    if make == "empty_runs":
        (root / EXP / "runs" / "r0").mkdir(parents=True)  # a run folder but no record.json
    with pytest.raises(GrpormError) as info:
        report_all(root)
    message = str(info.value)
    assert "grporm run experiments/quick.yaml" in message and "\n" not in message
    assert not list(tmp_path.rglob("table.md"))


def test_empty_table_markdown_is_header_only():
    table = classification_table(pd.DataFrame(columns=["dataset", "backbone", "method", "seed", "head_top1",
                                                       "sr_top1", "knn20_top1"]))
    assert table.empty
    assert classification_markdown(table).count("\n") == 2


def test_experiment_table_keeps_ablation_variants_apart(tmp_path: Path):
    root = tmp_path / "results"
    for s in (0, 1):
        for eps, sr in ((0.1, 0.60), (0.3, 0.80)):
            write_run(root, f"eps{eps}-s{s}", method="grpo_rm", seed=s, sr=sr + 0.01 * s, experiment="ablation_x",
                      axes={"method": "grpo_rm", "seed": s, "grpo_rm.clip_eps": eps})
    table = classification_table(load_runs(root / "ablation_x").runs)
    assert list(table.index.names) == ["dataset", "backbone", "variant", "method"]
    assert table.loc[(FM, BB, "grpo_rm.clip_eps=0.1", "grpo_rm"), "sr_mean"] == pytest.approx(0.605)
    assert table.loc[(FM, BB, "grpo_rm.clip_eps=0.3", "grpo_rm"), "n_seeds"] == 2
    write_experiment_tables(root, load_runs(root))
    text = (root / "ablation_x" / "table.md").read_text()
    assert "| Dataset | Backbone | Variant | Method | Head | SR | kNN@20 | Seeds |" in text
    assert "| grpo_rm.clip_eps=0.3 | GRPO-RM | — | 80.5 ± 0.7 |" in text
    assert "appear in several runs" not in text


def test_variants_of_one_method_get_distinct_line_styles():
    from grporm.analysis.figures import _line_style

    for method in ("ce", "grpo_rm", "pretrained"):
        lines = [_line_style(method, i)["linestyle"] for i in range(4)]
        assert len(set(lines)) == 4, (method, lines)
        assert _line_style(method, 1)["color"] == _line_style(method, 0)["color"]
