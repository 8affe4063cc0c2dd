"""grporm.records.schema: the one definition of a run record; the writer, the W&B summary and read-back and the
analysis tables all agree with it."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from grporm.analysis.records import load_runs
from grporm.records.schema import Metrics, RunRecord, SchemaError, SegScores, Timing, knn_k, knn_name

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _metrics() -> Metrics:
    return Metrics(head_top1=0.7, ece=0.05, val_head_top1=0.72, sr_top1=0.8, sr_l2=1e-3, knn_top1={7: 0.6, 20: 0.65},
                   per_class={"sr": [0.8, 0.8], "head": [0.7, 0.7]},
                   ood={"contrast": {"1": {"head_top1": 0.5, "sr_top1": 0.6, "knn20_top1": 0.55}}},
                   ood_clean={"head_top1": 0.7, "sr_top1": 0.8, "knn20_top1": 0.65})


def test_record_json_round_trip_keeps_the_written_shape():
    record = RunRecord(run_id="r", experiment="e", status="finished", method="ce", dataset="d", backbone="b",
                       seed=0, metrics=_metrics(), timing=Timing(1.0, 2.0, 3.0, 4.0, 5.0), wandb={"mode": "disabled"})
    data = json.loads(json.dumps(record.to_json()))
    assert data["metrics"]["knn_top1"] == {"7": 0.6, "20": 0.65}  # JSON keys are strings, as ever
    assert list(data["metrics"])[:7] == ["head_top1", "ece", "val_head_top1", "sr_top1", "sr_l2", "knn_top1", "per_class"]
    assert "transfer" not in data["metrics"] and "tuning" not in data and "source" not in data
    assert RunRecord.from_json(data) == record


def test_segmentation_metrics_hold_only_the_segmentation_fields():
    seg = Metrics(seg=SegScores(0.4, 0.9), per_class={"iou": [0.9, 0.1]})
    assert seg.to_json() == {"seg": {"miou": 0.4, "pixel_acc": 0.9}, "per_class": {"iou": [0.9, 0.1]}}
    assert seg.headline() == "mIoU 40.0  pixel acc 90.0"
    assert Metrics.from_json(seg.to_json()) == seg


def test_wandb_summary_reads_back_to_the_same_numbers():
    metrics = _metrics()
    summary = RunRecord(run_id="r", experiment="e", status="finished", metrics=metrics).summary()
    assert summary == {"final/head_top1": 0.7, "final/ece": 0.05, "final/val_head_top1": 0.72, "final/sr_top1": 0.8,
                       "final/sr_l2": 1e-3, "final/knn7_top1": 0.6, "final/knn20_top1": 0.65,
                       "final/ood/contrast/1/head_top1": 0.5, "final/ood/contrast/1/sr_top1": 0.6,
                       "final/ood/contrast/1/knn20_top1": 0.55, "final/ood_clean/head_top1": 0.7,
                       "final/ood_clean/sr_top1": 0.8, "final/ood_clean/knn20_top1": 0.65, "status": "finished"}
    assert Metrics.from_summary(summary) == replace(metrics, per_class={})  # per-class lists are a W&B table
    sections = replace(metrics, transfer={"mnist": {"sr_top1": 0.3}}, imbalance={"sr": {"many": 0.9, "few": 0.1}})
    assert Metrics.from_summary(sections.summary()) == replace(sections, per_class={})
    seg = Metrics(seg=SegScores(0.4, 0.9), per_class={"iou": [0.9, 0.1]})
    assert seg.summary() == {"final/seg/miou": 0.4, "final/seg/pixel_acc": 0.9}
    assert Metrics.from_summary(seg.summary()) == replace(seg, per_class={})
    assert knn_k(knn_name(123)) == 123 and knn_k("knn_top1") is None and knn_k("knn20_top1x") is None


def test_malformed_metrics_name_the_field():
    with pytest.raises(SchemaError, match="knn_top1"):
        Metrics.from_json({"knn_top1": [0.5]})
    with pytest.raises(SchemaError, match="integers"):
        Metrics.from_json({"knn_top1": {"twenty": 0.5}})


def test_every_committed_record_loads_and_writes_back_unchanged():
    paths = sorted(RESULTS.glob("*/runs/*/record.json"))
    assert paths
    for path in paths:
        data = json.loads(path.read_text())
        kept = {k: v for k, v in data.items() if not (k in RunRecord.RETIRED and v == RunRecord.RETIRED[k])}
        assert RunRecord.from_json(data).to_json() == kept, path


def test_any_knn_k_the_config_asks_for_reaches_the_tables(tmp_path: Path):
    for seed, ks in enumerate(({"5": 0.5, "20": 0.6, "50": 0.7}, {"20": 0.61, "50": 0.71})):
        record = RunRecord(run_id=f"r{seed}", experiment="e", status="finished", method="ce", dataset="d",
                           backbone="b", seed=seed, config_hash=f"h{seed}",
                           metrics=Metrics.from_json({"sr_top1": 0.8, "knn_top1": ks}), timing=Timing())
        folder = tmp_path / "e" / "runs" / f"r{seed}"
        folder.mkdir(parents=True)
        (folder / "record.json").write_text(json.dumps(record.to_json()))
    run_set = load_runs(tmp_path)
    assert run_set.knn_ks == (5, 20, 50)
    assert run_set.runs["knn50_top1"].tolist() == [0.7, 0.71]
    assert run_set.runs["knn5_top1"].isna().tolist() == [False, True]
    clean = run_set.metrics[run_set.metrics["family"] == "clean"]
    assert {"knn5_top1", "knn20_top1", "knn50_top1"} <= set(clean["metric"])


def test_the_tuning_section_is_typed_and_older_records_read(tmp_path: Path):
    """`tuning` reads as a TuningSummary: what a record lacks takes its default (pick: the winner), a
    damaged section excludes the run with its reason."""
    from grporm.records.schema import TuningSummary

    old = RunRecord.from_json({"run_id": "r", "experiment": "e", "status": "finished", "tuning": {"key": "k"}})
    assert old.tuning == TuningSummary(key="k") and old.pick == "winner" and old.tuning.close_call is None
    assert old.to_json()["tuning"] == {"key": "k"}  # written back as read
    assert RunRecord.from_json({"run_id": "r", "experiment": "e", "status": "finished"}).pick == "winner"
    for run_id, tuning in (("fine", {"key": "k", "pick": "runner_up", "close_call": True}), ("bad", "close call")):
        record = RunRecord(run_id=run_id, experiment="e", status="finished", method="ce", dataset="d", backbone="b",
                           seed=0, config_hash=run_id, metrics=Metrics.from_json({"sr_top1": 0.8}), timing=Timing())
        folder = tmp_path / "e" / "runs" / run_id
        folder.mkdir(parents=True)
        (folder / "record.json").write_text(json.dumps(record.to_json() | {"tuning": tuning}))
    run_set = load_runs(tmp_path)
    [(path, fine)] = run_set.records.items()
    assert fine.pick == "runner_up" and fine.tuning.close_call
    assert [reason for _, reason in run_set.excluded] == ["tuning is 'close call': Input should be a valid dictionary "
                                                          "or instance of TuningSummary"]
