"""The progress lines of a run, a matrix and a tuning decision: what they say, and that a real run prints them."""
from __future__ import annotations

import re

import pytest

from grporm.tracking import progress
from grporm.tracking.progress import Countdown, EpochClock, duration, epoch_line, time_left

from tiny_runs import RUN_ID, invoke, record, write_experiment


def test_duration_is_short_and_rounded():
    assert [duration(s) for s in (0, 12.4, 59.6, 185, 3600 + 125, -3)] == ["0s", "12s", "1m00s", "3m05s", "1h02m", "0s"]


def test_time_left_extrapolates_the_units_done():
    assert time_left(60.0, 2, 3) == "1m30s"
    assert time_left(0.0, 0, 3) is None  # nothing done yet: no estimate rather than a made-up one


def test_epoch_line_names_loss_probe_and_times():
    row = {"epoch": 3, "train_loss": 0.41234, "knn20_top1": 0.8125}
    assert epoch_line(3, 10, row, 62, "2m25s") == "epoch 3/10  loss 0.4123  val kNN@20 81.2%  elapsed 1m02s  ETA 2m25s"
    assert epoch_line(1, 2, {"epoch": 1, "train_loss": 1.0}, 5, None) == "epoch 1/2  loss 1.0000  elapsed 5s  ETA -"
    assert "val mIoU 42.0%" in epoch_line(1, 2, {"epoch": 1, "val_miou": 0.42}, 5, None)


def test_a_grpo_rm_epoch_shows_reward_pi_y_and_clips_not_its_near_zero_loss():
    steps = [{"epoch": 2, "loss": 1e-9, "reward_mean": 0.8, "pi_y": 0.7, "clip_frac": 0.01},
             {"epoch": 2, "loss": -1e-9, "reward_mean": 0.9, "pi_y": 0.8, "clip_frac": 0.03}]
    line = epoch_line(2, 3, {"epoch": 2, "train_loss": 0.0}, 5, None, steps)
    assert line == "epoch 2/3  reward 0.850  pi(y) 0.750  clip 2.0%  elapsed 5s  ETA -"
    ce_steps = [{"epoch": 2, "loss": 0.5, "pi_y": 0.7}]  # CE's logged steps carry no reward: its loss is informative
    assert epoch_line(2, 3, {"epoch": 2, "train_loss": 0.5}, 5, None, ce_steps).startswith("epoch 2/3  loss 0.5000")


def test_a_shards_lines_carry_its_tag(monkeypatch):
    said: list[str] = []
    monkeypatch.setattr(progress.PROCESS, "tag", progress.shard_tag("1/2"))
    progress.tagged(said.append)("run 1 of 3: x")
    assert said == ["[shard 1/2] run 1 of 3: x"]
    assert progress.shard_tag(None) == "" and progress.shard_tag(" 0 / 4 ") == "[shard 0/4] "


def test_no_bar_is_drawn_when_the_output_is_no_terminal(capsys):
    progress.PROCESS.start_fit("run", total=100)
    progress.PROCESS.advance(10)
    assert progress.PROCESS.bar is None and capsys.readouterr().err == ""  # pytest's streams are no terminal


def test_the_bar_counts_images_and_adds_the_rest_of_the_matrix_to_its_eta(monkeypatch):
    import io

    monkeypatch.setattr(progress, "terminal", lambda: True)
    monkeypatch.setattr(progress.sys, "stderr", io.StringIO())
    runs = Countdown(3)
    runs.worked, runs.seconds = 1, 100.0  # one run of this process took 100 s
    process = progress.ProcessProgress()
    process.begin_matrix(runs, "0/2")
    runs.start(2, "b")
    process.unit = 2
    process.start_fit("b", total=1000)
    process.advance(500)
    assert process.bar.desc == "[shard 0/2] b" and process.bar.n == 500 and process.bar.unit == "img"
    postfix = process.bar.postfix
    assert postfix.startswith("matrix ETA ")  # this run's rest plus one more run of about 100 s
    process.end_matrix()
    assert process.bar is None and process.tag == ""


def test_epoch_clock_estimates_from_the_epochs_done_in_this_process(monkeypatch):
    said: list[str] = []
    now = iter([100.0, 110.0, 130.0, 200.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(now))
    clock = EpochClock("ce", epochs=5, start_epoch=2, say=said.append)  # resumed after epoch 2
    clock.epoch_done({"epoch": 3, "train_loss": 0.5})
    clock.epoch_done({"epoch": 4, "train_loss": 0.4})
    assert said == ["ce: epoch 3/5  loss 0.5000  elapsed 10s  ETA 20s", "ce: epoch 4/5  loss 0.4000  elapsed 30s  ETA 15s"]
    silent = EpochClock("ce", 5, 0, enabled=False, say=said.append)
    silent.epoch_done({"epoch": 1})
    assert len(said) == 2


def test_countdown_times_only_the_units_that_worked(monkeypatch):
    now = iter([0.0, 30.0, 40.0, 41.0, 50.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(now))
    runs = Countdown(4)
    assert runs.start(1, "a") == "run 1 of 4: a"
    runs.done()  # 30 s
    assert runs.start(2, "b") == "run 2 of 4: b  (1 done in 30s, estimated time left 1m30s)"
    runs.done(worked=False)  # e.g. failed at once: no timing
    assert runs.start(3, "c") == "run 3 of 4: c  (1 done in 30s, estimated time left 1m00s)"


@pytest.mark.slow
def test_a_run_prints_one_line_per_epoch_and_the_matrix_line(tmp_path):
    write_experiment(tmp_path, train={"epochs": 2})
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    assert f"run 1 of 1: {RUN_ID}" in result.output
    epochs = re.findall(rf"{RUN_ID}: epoch (\d)/2  reward \d\.\d{{3}}  pi\(y\) \d\.\d{{3}}  clip \d+\.\d%  val kNN@20 \d+\.\d%  "
                        r"elapsed \d+s  ETA (\S+)", result.output)
    assert [e for e, _ in epochs] == ["1", "2"] and epochs[-1][1] == "0s", result.output  # the last epoch: nothing left
    assert record(tmp_path)["status"] == "finished"


def test_report_says_what_it_is_doing(write_run, tmp_path):
    from typer.testing import CliRunner

    from grporm.cli import app

    for seed in (0, 1):
        write_run(tmp_path, "quick", f"ce-s{seed}", method="ce", seed=seed, sr=0.5)
    result = CliRunner().invoke(app, ["report", "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    stages = [line for line in result.output.splitlines() if re.match(r"\[\d+s\] ", line)]
    assert stages[0].endswith("loading 2 record(s)") and any("table of experiment quick" in s for s in stages)
    assert any(re.search(r"figure 1 of \d+: ", s) for s in stages) and stages[-1].endswith("REPORT.md")


@pytest.mark.slow
def test_tune_counts_its_candidates(tmp_path):
    write_experiment(tmp_path, train={"epochs": 1}, tune={"grid": [1.0e-4, 1.0e-3, 1.0e-2], "max_extensions": 0}, seed=2)
    result = invoke(tmp_path, command="tune")
    assert result.exit_code == 0, result.output
    lines = re.findall(r"candidate (\d) of (\d): lr (\S+) seed (\d)", result.output)
    assert [(i, n) for i, n, _, _ in lines] == [(str(i), "6") for i in range(1, 7)], result.output
    assert {(lr, seed) for _, _, lr, seed in lines} == {(lr, s) for lr in ("0.0001", "0.001", "0.01") for s in "01"}
    assert "estimated time left" in result.output  # from the second candidate on
