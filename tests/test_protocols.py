"""The shifted-data protocols and segmentation run end to end through the CLI, on tiny data."""
import pytest

from tests.tiny_runs import invoke, record, write_experiment

IDS = {
    "pretrained": "digits-test_vit-pretrained-s0",
    "grpo_rm": "digits-test_vit-grpo_rm-s0",
}


@pytest.mark.parametrize("method", ["pretrained", "grpo_rm"])
def test_ood_imbalance_and_transfer_metrics_are_recorded(tmp_path, method):
    write_experiment(
        tmp_path, method=method,
        data={"imbalance_factor": 3.0},
        train={"epochs": 1},
        eval={"ood": {"corruptions": ["contrast", "rotation"], "severities": [1, 5], "test_per_class": 2},
              "transfer": ["mnist5k"], "shot_thresholds": [3, 5]},
    )
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    metrics = record(tmp_path, IDS[method])["metrics"]
    assert set(metrics["ood"]) == {"contrast", "rotation"}
    assert set(metrics["ood"]["rotation"]) == {"1", "5"}
    scores = metrics["ood"]["contrast"]["5"]
    assert set(scores) == {"head_top1", "sr_top1", "knn20_top1"}
    assert (scores["head_top1"] is None) == (method == "pretrained")
    assert set(metrics["ood_clean"]) == set(scores)
    assert set(metrics["transfer"]) == {"mnist5k"} and 0 <= metrics["transfer"]["mnist5k"]["sr_top1"] <= 1
    groups = metrics["imbalance"]["sr"]
    assert set(groups) == {"overall", "many", "medium", "few"}
    assert ("head" in metrics["imbalance"]) == (method != "pretrained")


def test_segmentation_run_records_miou_and_converges_on_val(tmp_path):
    write_experiment(
        tmp_path, task="segmentation", method="grpo_rm",
        data={"name": "digits", "train_per_class": 6, "val_per_class": 3, "test_per_class": 5, "image_size": 16},
        model={"name": "resnet10t", "weights": "none"},
        seg={"train_images": 24, "val_images": 6, "test_images": 6, "max_items": 2, "feature_index": 1},
        train={"epochs": 1, "augment": {"hflip": False, "shift": 0.0}},
    )
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    rec = record(tmp_path, "digits-resnet10t-grpo_rm-s0")
    assert set(rec["metrics"]["seg"]) == {"miou", "pixel_acc"}
    assert len(rec["metrics"]["per_class"]["iou"]) == 11
    history = (tmp_path / "results" / "tiny" / "runs" / "digits-resnet10t-grpo_rm-s0" / "history.csv").read_text()
    assert "val_miou" in history.splitlines()[0]
