"""Faults a long matrix meets, each survived: kills, signals, NaN, damaged files, W&B, parallel writers."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest
import torch

import grporm.tracking.tracker
import grporm.training.runner
import grporm.training.train
from grporm.errors import GrpormError
from grporm.records.storage import read_record

from tiny_runs import (
    RESULTS,
    RUN_ID,
    STEPS_PER_EPOCH,
    checkpoint,
    comparable,
    env,
    invoke,
    record,
    run_folder,
    run_with_signal,
    write_experiment,
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every recovery must reproduce exactly (one thread, same code path)."""
    folder = tmp_path_factory.mktemp("reference")
    write_experiment(folder)
    result = invoke(folder)
    assert result.exit_code == 0, result.output
    return {"record": record(folder), "weights": torch.load(checkpoint(folder, name="model.pt"), weights_only=True)["model"],
            "history": pd.read_csv(run_folder(folder) / "history.csv"),
            "steps": pd.read_csv(run_folder(folder) / "steps.csv")}


def assert_same_as(reference, folder) -> None:
    assert record(folder)["status"] == "finished"
    assert comparable(record(folder)) == comparable(reference["record"])
    weights = torch.load(checkpoint(folder, name="model.pt"), weights_only=True)["model"]
    assert not checkpoint(folder).exists() and not checkpoint(folder, name="last.prev.pt").exists()
    for name, value in reference["weights"].items():
        assert torch.equal(value, weights[name]), name
    history = pd.read_csv(run_folder(folder) / "history.csv")
    pd.testing.assert_frame_equal(history.drop(columns="train_seconds"), reference["history"].drop(columns="train_seconds"))
    pd.testing.assert_frame_equal(pd.read_csv(run_folder(folder) / "steps.csv"), reference["steps"])


@pytest.mark.slow
def test_sigkill_mid_epoch_then_same_command_resumes_to_identical_results(tmp_path, reference):
    write_experiment(tmp_path)
    killed = run_with_signal(tmp_path, STEPS_PER_EPOCH + 3, "SIGKILL")  # epoch 2, step 3
    assert killed.returncode == -9, killed.stderr
    assert torch.load(checkpoint(tmp_path), weights_only=True)["epoch"] == 1
    assert record(tmp_path)["status"] == "running"  # what a kill leaves: a stale record and lock
    assert (run_folder(tmp_path) / ".lock").exists()

    resumed = invoke(tmp_path)
    assert resumed.exit_code == 0, resumed.output
    assert "taking over the stale lock" in resumed.stderr and "is gone" in resumed.stderr
    assert "resumed digits-test_vit-grpo_rm-s0 from" in resumed.output  # the run, not only its method
    assert_same_as(reference, tmp_path)
    assert not (run_folder(tmp_path) / ".lock").exists()


@pytest.mark.slow
@pytest.mark.parametrize("signame, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_signal_checkpoints_mid_epoch_exits_cleanly_and_resume_is_exact(tmp_path, reference, signame, code):
    write_experiment(tmp_path)
    stopped = run_with_signal(tmp_path, STEPS_PER_EPOCH + 2, signame)  # arrives in epoch 2
    assert stopped.returncode == code, stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith(f"interrupted: {signame} at epoch 2, step 2/5") and "rerun the same command to resume" in last
    assert "Traceback" not in stopped.stderr
    state = torch.load(checkpoint(tmp_path), weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) == (1, 2)  # a mid-epoch checkpoint
    assert record(tmp_path)["status"] == "interrupted" and signame in record(tmp_path)["error"]
    assert not (run_folder(tmp_path) / ".lock").exists()

    resumed = invoke(tmp_path)
    assert resumed.exit_code == 0, resumed.output
    assert "at epoch 1/3, step 2/5" in resumed.output
    assert_same_as(reference, tmp_path)


def test_nan_loss_fails_the_run_keeps_last_good_checkpoint_and_exits_1_with_one_line(tmp_path, monkeypatch):
    build = grporm.training.train.build_objective

    def poisoned(cfg):
        objective = build(cfg)

        def fn(logits, targets, **kwargs):
            loss, stats = objective.fn(logits, targets, **kwargs)
            step = kwargs["generator"].initial_seed() - cfg.seed * 7_919  # fit seeds it with the step
            return (loss * float("nan"), stats) if step == STEPS_PER_EPOCH + 1 else (loss, stats)

        return type(objective)(objective.name, fn, objective.inner_steps, objective.needs_reference)

    monkeypatch.setattr(grporm.training.train, "build_objective", poisoned)  # what Trainer.of builds
    write_experiment(tmp_path)
    result = invoke(tmp_path)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: run {RUN_ID} failed: loss became nan at epoch 2")
    assert "Traceback" not in result.output
    rec = record(tmp_path)
    assert rec["status"] == "failed" and "TrainingDiverged: loss became nan" in rec["error"]
    assert torch.load(checkpoint(tmp_path), weights_only=True)["epoch"] == 1  # the last good one, intact
    assert len(pd.read_csv(run_folder(tmp_path) / "steps.csv")) == STEPS_PER_EPOCH + 1  # the curve up to the NaN


class Stop(Exception):
    pass


def stop_in_epoch(monkeypatch, epoch: int) -> None:
    """Make the loop raise when it asks for the first batch of `epoch` (after epoch-1's checkpoint)."""
    original, calls = grporm.training.train.local_batch, [0]

    def local_batch(*args, **kwargs):
        calls[0] += 1
        if calls[0] == (epoch - 1) * STEPS_PER_EPOCH + 1:
            raise Stop
        return original(*args, **kwargs)

    monkeypatch.setattr(grporm.training.train, "local_batch", local_batch)


@pytest.mark.slow
def test_truncated_checkpoint_falls_back_to_the_previous_one_and_still_ends_identical(tmp_path, reference, monkeypatch):
    write_experiment(tmp_path)
    with monkeypatch.context() as patch:
        stop_in_epoch(patch, 3)
        assert isinstance(invoke(tmp_path).exception, Stop)
    last = checkpoint(tmp_path)
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a torn write
    resumed = invoke(tmp_path)
    assert resumed.exit_code == 0, resumed.output
    assert f"checkpoint {last} is unreadable" in resumed.stderr
    assert "resuming from the previous checkpoint" in resumed.stderr and "at epoch 1/3" in resumed.output
    assert_same_as(reference, tmp_path)


def test_no_readable_checkpoint_is_a_clear_error_naming_the_files_never_a_fresh_start(tmp_path, monkeypatch):
    write_experiment(tmp_path)
    with monkeypatch.context() as patch:
        stop_in_epoch(patch, 3)
        invoke(tmp_path)
    last = checkpoint(tmp_path)
    last.write_bytes(b"garbage")
    last.with_suffix(".prev.pt").write_bytes(b"")
    result = invoke(tmp_path)
    assert result.exit_code == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: no readable checkpoint") and str(last) in error and "last.prev.pt" in error
    assert record(tmp_path)["status"] == "failed"


def test_checkpoint_missing_its_contents_is_not_resumed(tmp_path):
    from grporm.training.checkpoints import load_checkpoint, save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {}, "epoch": 1})
    save_checkpoint(path, {"epoch": 2})  # readable, but not a training state
    assert load_checkpoint(path, ("model", "epoch"))["epoch"] == 1


@pytest.mark.slow
def test_corrupted_record_is_kept_aside_and_the_run_redone(tmp_path, reference):
    write_experiment(tmp_path)
    assert invoke(tmp_path).exit_code == 0
    damaged = run_folder(tmp_path) / "record.json"
    damaged.write_text('{"status": "finished", "metr')
    with pytest.raises(GrpormError, match=f"run record {damaged} is corrupted"):
        read_record(damaged)  # readers that cannot redo the run get a clear error naming the file

    again = invoke(tmp_path)
    assert again.exit_code == 0, again.output
    assert f"run record {damaged} is corrupted" in again.stderr and "will be redone" in again.stderr
    assert "finished already" not in again.output
    assert comparable(record(tmp_path)) == comparable(reference["record"])
    assert damaged.with_name("record.json.corrupt").read_text() == '{"status": "finished", "metr'


class FakeWandbRun:
    id, dir, url = "fake", ".", None

    def __init__(self):
        self.summary, self.config = {}, {}  # config.update(values, allow_val_change=True) works on a dict

    def define_metric(self, *args, **kwargs):
        pass

    def log(self, *args, **kwargs):
        raise BrokenPipeError("wandb service died")

    def finish(self, *args, **kwargs):
        pass


@pytest.mark.parametrize("broken, what", [("init", "start"), ("log", "log")])
def test_wandb_failing_at_start_or_mid_run_leaves_a_complete_local_record(tmp_path, monkeypatch, broken, what):
    import wandb

    def init(**kwargs):
        if broken == "init":
            raise ConnectionError("cannot reach W&B")
        return FakeWandbRun()

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setattr(grporm.tracking.tracker, "reachable", lambda url, timeout=None: True)  # no network probe here
    write_experiment(tmp_path, tracking={"mode": "online"})
    with pytest.warns(UserWarning, match=f"W&B {what} failed .* the run goes on"):
        result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    rec = record(tmp_path)
    assert rec["status"] == "finished" and rec["metrics"]["sr_top1"] is not None
    assert rec["wandb"]["error"].startswith(what)
    assert (run_folder(tmp_path) / "history.csv").exists() and (run_folder(tmp_path) / "steps.csv").exists()


@pytest.mark.slow
def test_parallel_processes_on_one_results_folder_lose_nothing_and_never_run_a_run_twice(tmp_path):
    """A shard process and a whole-matrix process at once, contending for seeds 0 and 2: the locks
    keep them apart."""
    write_experiment(tmp_path, matrix={"seed": [0, 1, 2, 3]}, train={"epochs": 2})
    commands = [["--shard", "0/2"], []]
    procs = [subprocess.Popen([sys.executable, "-m", "grporm", "run", "exp.yaml", *args], cwd=tmp_path, env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for args in commands]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    stdout = "\n".join(out for out, _ in outputs)
    for seed in range(4):
        run_id = f"digits-test_vit-grpo_rm-s{seed}"
        starts = [line for line in stdout.splitlines() if re.match(rf"(\[shard 0/2\] )?run \d+ of \d+: {run_id}(  \(|$)", line)]
        assert len(starts) == 1, stdout  # started by exactly one process
        rec = json.loads((run_folder(tmp_path, run_id) / "record.json").read_text())
        assert rec["status"] == "finished" and rec["seed"] == seed
    leftovers = [p.name for p in (tmp_path / RESULTS).rglob("*") if p.name.startswith(".")]
    assert leftovers == []  # no lock, no half-written temporary file


def test_a_signal_outside_training_stops_at_once_and_inside_waits_for_the_step():
    import signal as _signal

    from grporm.process.interrupts import Interrupted, StopRequest

    stop = StopRequest()
    with pytest.raises(Interrupted) as info:
        stop._handle(_signal.SIGTERM, None)  # e.g. during a long evaluation
    assert info.value.exit_code == 143 and not stop.requested
    for _ in stop.deferring_over(range(1)):
        stop._handle(_signal.SIGTERM, None)
        assert stop.requested


def test_divergence_fix_names_the_likely_cause():
    from grporm.config import RunConfig
    from grporm.training.train import divergence_fix

    assert divergence_fix(RunConfig(method="ce")) == "lower train.lr"
    assert divergence_fix(RunConfig(method="ce", train={"grad_clip": None})) == "lower train.lr or set train.grad_clip"
    off_policy = RunConfig(method="grpo_rm", grpo_rm={"inner_steps": 2})
    assert divergence_fix(off_policy).startswith("set grpo_rm.dual_clip=3")
    assert "dual_clip" not in divergence_fix(RunConfig(method="grpo_rm", grpo_rm={"inner_steps": 2, "dual_clip": 3.0}))


def test_a_failure_to_save_the_final_weights_loses_no_result(tmp_path, monkeypatch):
    def disk_full(path, state):
        if path.name == grporm.training.runner.FINAL_WEIGHTS:
            raise OSError(28, "No space left on device")
        return save(path, state)

    save = grporm.training.runner.save_checkpoint
    monkeypatch.setattr(grporm.training.runner, "save_checkpoint", disk_full)
    write_experiment(tmp_path)
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    assert "warning: could not save" in result.stderr and "No space left on device" in result.stderr
    assert record(tmp_path)["status"] == "finished"
    assert checkpoint(tmp_path).exists()  # the training checkpoint stays when the weights could not be kept
