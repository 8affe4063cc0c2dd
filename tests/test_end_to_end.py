"""A real run end to end (tiny), and resume after an interruption at the end of epoch 1."""
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from grporm.cli import app
from grporm.data import ImageSet, InputSpec
from grporm.models.classifier import Classifier
from grporm.objectives import build_objective
from grporm.plan.experiment import build_experiment
from grporm.training.train import Trainer

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")

TINY = """
name: smoke
matrix: {method: [pretrained, grpo_rm]}
data: {name: fashion_mnist, train_per_class: 8, val_per_class: 4, test_per_class: 6, image_size: 32}
model: {name: tf_efficientnet_lite0, weights: packaged}
train: {epochs: 1, batch_size: 16}
eval: {convergence_per_class: 4, knn_k: [10, 20]}
tracking: {mode: offline}
"""


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.exists(), reason="Fashion-MNIST (Debian dataset-fashion-mnist) not installed; make test installs it")
def test_smoke_run_writes_record_history_and_offline_wandb(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    (tmp_path / "exp.yaml").write_text(TINY)
    result = CliRunner().invoke(app, ["run", "exp.yaml"])
    assert result.exit_code == 0, result.output

    runs = tmp_path / "grporm-results" / "smoke" / "runs"
    record = json.loads((runs / "fashion_mnist-tf_efficientnet_lite0-grpo_rm-s0" / "record.json").read_text())
    assert record["status"] == "finished"
    metrics = record["metrics"]
    assert set(metrics) >= {"head_top1", "ece", "sr_top1", "sr_l2", "knn_top1", "per_class"}
    assert set(metrics["knn_top1"]) == {"10", "20"}
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("head_top1", "sr_top1", "ece"))
    assert record["lr"] == 1e-3 and "lr_search" not in record  # train.lr, the default (no tune section)
    assert record["env"]["torch"] == torch.__version__

    history = pd.read_csv(runs / "fashion_mnist-tf_efficientnet_lite0-grpo_rm-s0" / "history.csv")
    assert list(history["epoch"]) == [0, 1]
    assert {"knn20_top1", "sr_top1", "val_head_top1", "train_loss", "train_seconds"} <= set(history.columns)
    assert history["sr_top1"].between(0, 1).all() and history["knn20_top1"].between(0, 1).all()
    steps = pd.read_csv(runs / "fashion_mnist-tf_efficientnet_lite0-grpo_rm-s0" / "steps.csv")
    assert {"reward_mean", "clip_frac", "entropy", "pi_y", "adv_min", "adv_max"} <= set(steps.columns)

    pretrained = json.loads((runs / "fashion_mnist-tf_efficientnet_lite0-pretrained-s0" / "record.json").read_text())
    assert pretrained["metrics"]["head_top1"] is None and pretrained["metrics"]["sr_top1"] > 0

    offline = (tmp_path / record["wandb"]["dir"]).parent  # W&B may store it relative to the run folder
    run_folder = runs / "fashion_mnist-tf_efficientnet_lite0-grpo_rm-s0"
    assert offline.name.startswith("offline-run-") and offline.is_relative_to(run_folder / "wandb")  # beside the record
    assert list(offline.glob("run-*.wandb"))

    again = CliRunner().invoke(app, ["run", "exp.yaml"])
    assert again.exit_code == 0 and again.output.count("finished already") == 2

    report = CliRunner().invoke(app, ["report", "--results", "grporm-results"])
    assert report.exit_code == 0, report.output
    assert "GRPO-RM" in (tmp_path / "grporm-results" / "smoke" / "table.md").read_text()


class Interrupt(Exception):
    pass


def tiny_setup(tmp_path):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (48, 1, 16, 16), dtype=torch.uint8)
    labels = torch.arange(48) % 3
    data = ImageSet(images, labels, ["a", "b", "c"])
    run = build_experiment({"method": "grpo_rm", "train": {"epochs": 3, "batch_size": 16},
                            "data": {"image_size": 16}}, "x.yaml").runs[0]
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                   torch.nn.Dropout(0.3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    model = Classifier(backbone, 8, 3)
    return model, data, run


def train_tiny(tmp_path, ckpt, on_step=None):
    model, data, run = tiny_setup(tmp_path)
    spec = InputSpec(16, (0.5,) * 3, (0.5,) * 3)
    Trainer(model, build_objective(run), data, run, spec, torch.device("cpu")).fit(
        1e-2, checkpoint=ckpt, on_epoch=lambda epoch: {"probe": float(epoch)}, on_step=on_step)
    return model


@pytest.mark.slow
def test_resume_after_interruption_at_end_of_epoch_one_gives_identical_weights(tmp_path):
    straight = train_tiny(tmp_path, tmp_path / "a" / "last.pt")

    def die_in_epoch_two(step, stats):
        if stats["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_tiny(tmp_path, tmp_path / "b" / "last.pt", on_step=die_in_epoch_two)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["epoch"] == 1
    resumed = train_tiny(tmp_path, tmp_path / "b" / "last.pt")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    history = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["history"]
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]
