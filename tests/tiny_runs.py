"""Shared by the fault, shard and distributed tests: a run small enough to start many times.

digits (8x8, ships with scikit-learn) at 16 px, timm's 0.3M-parameter `test_vit` with random
weights (no batch norm, no dropout), 5 steps per epoch, one thread: a whole run takes about a second
in-process; a subprocess mostly pays for importing torch.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from grporm.cli import app

BASE = {
    "name": "tiny",
    "method": "grpo_rm",
    "data": {"name": "digits", "train_per_class": 6, "val_per_class": 3, "test_per_class": 5, "image_size": 16},
    "model": {"name": "test_vit", "weights": "none"},
    "train": {"epochs": 3, "batch_size": 12, "lr": 1.0e-3, "threads": 1, "log_every": 1},
    "eval": {"convergence_per_class": 3, "knn_k": [5], "sr_max_iter": 20, "sr_l2_grid": [0.0], "batch_size": 16},
    "tracking": {"mode": "disabled"},
}
RUN_ID = "digits-test_vit-grpo_rm-s0"
STEPS_PER_EPOCH = 5  # 60 training images / batch 12


def write_experiment(folder: Path, **sections) -> Path:
    """BASE with `sections` merged in one level deep (e.g. train={"epochs": 2}), as folder/exp.yaml."""
    config = copy.deepcopy(BASE)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def invoke(folder: Path, *args: str, command: str = "run"):
    """`grporm COMMAND exp.yaml ARGS` (run by default) in this process, inside `folder`."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return CliRunner().invoke(app, [command, "exp.yaml", *args])
    finally:
        os.chdir(cwd)


# Where `grporm run exp.yaml` writes by default: exp.yaml is no experiment of the repository's, so its
# records go to grporm-results/ and its checkpoints to grporm-results/checkpoints/ (grporm/plan/run_options.py).
RESULTS = "grporm-results"


def run_folder(folder: Path, run_id: str = RUN_ID, experiment: str = "tiny") -> Path:
    return folder / RESULTS / experiment / "runs" / run_id


def record(folder: Path, run_id: str = RUN_ID, experiment: str = "tiny") -> dict:
    return json.loads((run_folder(folder, run_id, experiment) / "record.json").read_text())


def checkpoint(folder: Path, run_id: str = RUN_ID, experiment: str = "tiny", name: str = "last.pt") -> Path:
    """The training checkpoint of an unfinished run; name="model.pt": the weights a finished run keeps."""
    return folder / RESULTS / "checkpoints" / experiment / "runs" / run_id / name


def env() -> dict:
    """A subprocess environment: one OpenMP thread (busy-waiting threads of two processes on two
    cores slow both down tenfold), no terminal progress bars."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# Runs `grporm run exp.yaml` and sends itself a signal when the training loop asks for its N-th
# batch: a real signal at a known step, mid-epoch, with nothing changed in the package.
FAULT = """
import os, signal, sys
import grporm.training.train as train
calls, at, signum = [0], int(sys.argv[1]), getattr(signal, sys.argv[2])
original = train.local_batch
def local_batch(*args, **kwargs):
    calls[0] += 1
    if calls[0] == at:
        os.kill(os.getpid(), signum)
    return original(*args, **kwargs)
train.local_batch = local_batch
from grporm.cli import app
app(args=["run", "exp.yaml", *sys.argv[3:]], prog_name="grporm")
"""


def run_with_signal(folder: Path, at_batch: int, signame: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", FAULT, str(at_batch), signame, *args], cwd=folder, env=env(),
                          capture_output=True, text=True, timeout=timeout)


def comparable(rec: dict) -> dict:
    """What must not depend on interruptions or on the number of processes: the metrics."""
    return rec["metrics"]
