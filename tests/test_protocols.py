"""The shifted-data protocols and segmentation run end to end through the CLI, on tiny data."""
import pytest
import torch

from grporm.data import ImageSet
from grporm.evaluate.protocols import ood_metrics
from tests.tiny_runs import invoke, record, run_folder, write_experiment

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
    history = (run_folder(tmp_path, "digits-resnet10t-grpo_rm-s0") / "history.csv").read_text()
    assert "val_miou" in history.splitlines()[0]


def test_the_corrupted_test_subset_is_a_data_draw_of_the_split_seed():
    """Which test images are corrupted follows the run's split seed (so each seed draws its own);
    the corruptions' noise follows eval.ood.seed."""
    g = torch.Generator().manual_seed(0)
    test = ImageSet(torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8, generator=g), torch.arange(40) % 4, list("abcd"))

    class Scorer:
        def scores(self, feats, logits, labels):
            return {"sr_top1": 0.0}

    def seen(subset_seed, seed):
        sets = []

        def extract(images, desc):
            sets.append(images.images)
            return torch.zeros(len(images), 2), torch.zeros(len(images), 4)

        ood_metrics(extract, test, Scorer(), ["gaussian_noise"], [3], 2, subset_seed, seed)
        return sets  # [clean subset, its noisy copy]

    base = seen(0, 0)
    assert len(base[0]) == 8
    assert not torch.equal(seen(1, 0)[0], base[0])  # another split seed, other test images
    other_noise = seen(0, 5)
    assert torch.equal(other_noise[0], base[0]) and not torch.equal(other_noise[1], base[1])
