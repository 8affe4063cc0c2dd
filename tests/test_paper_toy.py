"""Every experiments/paper file run end to end at toy size, through `grporm run` and `grporm report`.

The paper path (DINOv2 ViT-S/14, bf16 autocast, real on-disk formats, OOD transfer, long tail,
segmentation on patch tokens) otherwise only passes --dry-run. Here each YAML runs as it is, with
overrides that shrink what can shrink (random weights, 28 px = 2x2 patches, a few synthetic images
per class, 1 epoch, a one-value lr grid, small eval grids) and keep what makes it the paper path:
its backbone, pooling, precision and protocol. One file runs as 2 gloo processes (--nproc 2).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grporm.cli import app

from fakes import fake_cifar10, fake_cifar100, fake_stl10, fake_tiny_imagenet, fake_voc
from tiny_runs import env

pytestmark = pytest.mark.slow
PAPER = Path(__file__).resolve().parent.parent / "experiments" / "paper"
VIT = "vit_small_patch14_dinov2"

SHRINK = {  # every file; the paper's values stay for everything not named here
    "model.weights": "none", "data.image_size": 28, "data.val_per_class": 1, "seed": "[0]",
    "train.epochs": 1, "train.batch_size": 8, "tune.grid": "[]", "train.lr": 1.0e-4, "train.threads": 1,
    "eval.knn_k": "[20]", "eval.sr_l2_grid": "[0.0]", "eval.sr_max_iter": 20, "eval.convergence_per_class": 1,
    "eval.batch_size": 32, "tracking.mode": "disabled", "model.name": f"[{VIT}]",
}
CASES = {  # file -> (its own extra overrides, the runs expected, the REPORT.md section of its rows)
    "classification": ({"data.name": "[cifar100, tiny_imagenet]", "model.pool": "[cls+mean]", "method": "[grpo_rm]",
                        "data.train_per_class": 1, "data.test_per_class": 1},
                       [f"cifar100-{VIT}-grpo_rm-pool=cls+mean-s0", f"tiny_imagenet-{VIT}-grpo_rm-pool=cls+mean-s0"],
                       "## Classification"),
    "ood": ({"method": "[grpo_rm]", "data.train_per_class": 3, "data.test_per_class": 1,
             "eval.ood.corruptions": "[gaussian_noise, rotation]", "eval.ood.severities": "[1, 5]",
             "eval.ood.test_per_class": 1},
            [f"cifar10-{VIT}-grpo_rm-s0"], "## Out-of-distribution: cross-data-set transfer"),
    "imbalance": ({"data.name": "[cifar10]", "data.imbalance_factor": "[10]", "method": "[ce]", "data.test_per_class": 1,
                   "eval.shot_thresholds": "[2, 5]"},
                  [f"cifar10-{VIT}-ce-imbalance_factor=10-s0"], "## Imbalanced (long-tailed) training"),
    "segmentation": ({"method": "[grpo_rm]", "seg.val_images": 2},
                     [f"voc2012_seg-{VIT}-grpo_rm-s0"], "## Semantic segmentation"),
}
DDP = "segmentation"  # the cheapest file runs as 2 processes


@pytest.fixture(scope="module")
def data_home(tmp_path_factory) -> Path:
    """Each data set in its official layout under $GRPORM_DATA/<name>, a few images per class."""
    root = tmp_path_factory.mktemp("data_home")
    fake_cifar10(root / "cifar10", per_batch=20)  # 10 training, 2 test images per class
    fake_cifar100(root / "cifar100", train=list(range(100)) * 2, test=list(range(100)))
    fake_stl10(root / "stl10", train=list(range(1, 11)), test=list(range(1, 11)))
    fake_tiny_imagenet(root / "tiny_imagenet", ["n01443537", "n01629819", "n01641577"], train_per_class=2, val_per_class=1)
    fake_voc(root / "voc2012_seg", train=[f"2007_00{i}" for i in range(5)], val=["2008_000", "2008_001"])
    return root


@pytest.fixture
def paper_env(data_home, monkeypatch):
    monkeypatch.setenv("GRPORM_DATA", str(data_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may come from the network


def arguments(name: str, folder: Path, extra: dict | None = None) -> list[str]:
    settings = {**SHRINK, **CASES[name][0], **(extra or {})}
    overrides = [x for key, value in settings.items() for x in ("-o", f"{key}={value}")]
    return ["run", str(PAPER / f"{name}.yaml"), *overrides, "--results", str(folder / "results"),
            "--checkpoints", str(folder / "checkpoints")]


def records(folder: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (folder / "results").glob("*/runs/*/record.json")}


def check_records(name: str, folder: Path) -> dict[str, dict]:
    found = records(folder)
    assert sorted(found) == sorted(CASES[name][1])
    for rec in found.values():
        config = rec["config"]
        assert rec["status"] == "finished", rec.get("error")
        assert rec["experiment"] == f"paper-{name}" and config["model"]["name"] == VIT
        assert config["train"]["precision"] == "bf16" and config["data"]["image_size"] == 28
    return found


def check_report(name: str, folder: Path) -> None:
    result = CliRunner().invoke(app, ["report", "--results", str(folder / "results")])
    assert result.exit_code == 0, result.output
    report = (folder / "results" / "REPORT.md").read_text()
    section = report.split(CASES[name][2] + "\n", 1)[1].split("\n## ", 1)[0]
    assert f"| paper-{name} |" in section, section  # a row of this experiment in its own section
    assert "0 record(s) excluded" in report


def test_every_paper_file_has_a_toy_run():
    assert sorted(p.stem for p in PAPER.glob("*.yaml")) == sorted(CASES)


@pytest.mark.parametrize("name", [n for n in CASES if n != DDP])
def test_paper_file_runs_at_toy_size(name, tmp_path, paper_env):
    result = CliRunner().invoke(app, arguments(name, tmp_path))
    assert result.exit_code == 0, result.output + repr(result.exception)
    found = check_records(name, tmp_path)
    metrics = [rec["metrics"] for rec in found.values()]
    if name == "classification":
        assert {rec["config"]["model"]["pool"] for rec in found.values()} == {"cls+mean"}
        assert {rec["dataset"] for rec in found.values()} == {"cifar100", "tiny_imagenet"}
        assert all(0 <= m["sr_top1"] <= 1 and "20" in m["knn_top1"] for m in metrics)
    elif name == "ood":
        (m,) = metrics
        assert set(m["ood"]) == {"gaussian_noise", "rotation"} and set(m["ood"]["rotation"]) == {"1", "5"}
        assert set(m["transfer"]) == {"stl10"} and 0 <= m["transfer"]["stl10"]["sr_top1"] <= 1
    elif name == "imbalance":
        (m,) = metrics
        assert m["imbalance"] and found[CASES[name][1][0]]["config"]["data"]["imbalance_factor"] == 10
    check_report(name, tmp_path)


def test_paper_segmentation_runs_as_two_gloo_processes(tmp_path, paper_env):
    done = subprocess.run([sys.executable, "-m", "grporm", *arguments(DDP, tmp_path), "--nproc", "2"], cwd=tmp_path,
                          env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (rec,) = check_records(DDP, tmp_path).values()
    assert rec["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert rec["config"]["seg"]["feature_index"] == 11  # the last block's patch tokens
    assert set(rec["metrics"]["seg"]) >= {"miou", "pixel_acc"} and len(rec["metrics"]["per_class"]["iou"]) == 21
    check_report(DDP, tmp_path)


def test_voc_validation_larger_than_its_training_split_is_one_line(tmp_path, paper_env):
    result = CliRunner().invoke(app, arguments("segmentation", tmp_path, {"seg.val_images": 5}))
    assert result.exit_code == 2, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "seg.val_images=5 leaves none of the 5 training images" in error and "below 5" in error
