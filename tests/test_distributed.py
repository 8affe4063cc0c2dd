"""DDP on CPU (gloo): 2 processes give the same run as 1 process with the same global batch.

Tolerance. The model (timm `test_vit`) has LayerNorm and no batch norm or dropout, so the two
set-ups compute the same function on the same global batches; what differs is the order of float
additions: a gradient is the average of two half-batch means (DDP all-reduce) instead of one mean.
That is ~1e-7 relative per step, which Adam's per-coordinate normalisation can amplify for
near-zero gradients: after 15 steps the weights differ by ~2e-5 (measured). So: weights within
1e-3, losses and calibration error within 1e-4, and accuracies within one image (an image would
have to sit within ~1e-5 of a decision boundary to flip; in practice they are equal). With batch
norm the statistics are per rank (DDP keeps rank 0's running statistics), so a BN model agrees
only statistically; that is why the test uses a model without it.
"""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch

from grporm.data import ImageSet, InputSpec
from grporm.plan.experiment import build_experiment
from grporm.process.distributed import Dist
from grporm.training.train import epoch_generator, local_batch

from tiny_runs import BASE, checkpoint, env, invoke, record, run_folder, write_experiment

# the learning-rate decision is made under DDP too
# tuning seeds of their own: the runs evaluate on seed 0, never a tuning seed (checked when loaded)
TUNED = {"tune": {"grid": [1.0e-4, 1.0e-3, 1.0e-2], "score": "head", "max_extensions": 0, "seeds": [1, 2]}}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    folder = tmp_path_factory.mktemp("one")
    write_experiment(folder, **TUNED)
    result = invoke(folder)
    assert result.exit_code == 0, result.output
    return folder


def assert_close_runs(a, b) -> None:
    ra, rb = record(a), record(b)
    assert ra["tuning"]["key"] == rb["tuning"]["key"] and ra["lr"] == rb["lr"] == ra["tuning"]["winner"]
    ma, mb = ra["metrics"], rb["metrics"]
    one_image = 1 / len(ma["per_class"]["sr"]) / BASE["data"]["test_per_class"]
    for key in ("head_top1", "val_head_top1", "sr_top1"):
        assert ma[key] == pytest.approx(mb[key], abs=one_image), key
    assert ma["knn_top1"] == pytest.approx(mb["knn_top1"], abs=one_image)
    assert ma["ece"] == pytest.approx(mb["ece"], abs=1e-4)
    ha, hb = (pd.read_csv(run_folder(f) / "history.csv") for f in (a, b))
    for column, tolerance in (("train_loss", 1e-4), ("train_acc", 1 / 60)):  # 60 training images
        assert ha[column][1:].tolist() == pytest.approx(hb[column][1:].tolist(), abs=tolerance), column
    assert ha["knn20_top1"].tolist() == pytest.approx(hb["knn20_top1"].tolist(), abs=1 / 30)
    wa, wb = (torch.load(checkpoint(f, name="model.pt"), weights_only=True)["model"] for f in (a, b))
    assert max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa) < 1e-3


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path, one_process):
    write_experiment(tmp_path, **TUNED)
    done = subprocess.run([sys.executable, "-m", "grporm", "run", "exp.yaml", "--nproc", "2"], cwd=tmp_path, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert record(tmp_path)["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert done.stdout.count("run 1 of 1: digits-test_vit-grpo_rm-s0\n") == 1  # rank 1 keeps quiet
    assert_close_runs(one_process, tmp_path)


@pytest.mark.slow
def test_gpu_switches_do_no_harm_on_cpu(tmp_path, one_process):
    write_experiment(tmp_path, **TUNED, train={"channels_last": True, "compile": True})
    with pytest.warns(UserWarning, match="train.compile is ignored on CPU"):
        result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    assert record(tmp_path)["config_hash"] == record(one_process)["config_hash"]  # how, not what
    assert_close_runs(one_process, tmp_path)

    bf16 = tmp_path / "bf16"
    bf16.mkdir()
    write_experiment(bf16, train={"precision": "bf16", "epochs": 1})
    assert invoke(bf16).exit_code == 0
    assert record(bf16)["status"] == "finished" and 0 <= record(bf16)["metrics"]["sr_top1"] <= 1


@pytest.mark.parametrize("world, batch", [(2, 12), (3, 12), (4, 10)])
def test_rank_slices_of_an_augmented_global_batch_equal_the_one_process_batch(world, batch):
    """What makes N processes train on the same batches as one: the slices, augmentation included,
    concatenate to exactly the single-process batch (also when the batch does not divide evenly)."""
    torch.manual_seed(0)
    data = ImageSet(torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8), torch.arange(40) % 4, list("abcd"))
    run = build_experiment({"train": {"augment": {"hflip": True, "shift": 0.25}}}, "x.yaml").runs[0]
    spec = InputSpec(16, (0.5,) * 3, (0.5,) * 3)
    index = torch.randperm(40, generator=torch.Generator().manual_seed(1))[:batch]
    whole, labels = local_batch(data, index, spec, run, epoch_generator(0, 1), Dist())
    parts = [local_batch(data, index, spec, run, epoch_generator(0, 1), Dist(rank, world)) for rank in range(world)]
    assert torch.equal(torch.cat([x for x, _ in parts]), whole)
    assert torch.equal(torch.cat([y for _, y in parts]), labels)


def test_dist_parts_cover_every_item_once():
    for world in (1, 2, 3, 8):
        covered = [i for rank in range(world) for i in range(17)[Dist(rank, world).part(17)]]
        assert covered == list(range(17))
