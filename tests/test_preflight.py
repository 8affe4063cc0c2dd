"""The one validator before any run (grporm/plan/preflight.py), by class of problem, through the real
commands: `grporm run` and `grporm run --dry-run` refuse the same settings (exit 2, one line on
stderr naming the run, the setting, the value and the fix, nothing written); `grporm tune` and
`grporm data check` refuse the settings too. What a run survives is one warning line, and it runs.
"""
from __future__ import annotations

import pytest
import torch

from grporm.config import RunConfig
from grporm.plan import preflight as pf

from tiny_runs import RUN_ID, invoke, record, write_experiment


def files(folder):
    return set(folder.rglob("*"))


def refused(folder, args, *fragments, command="run"):
    before = files(folder)
    result = invoke(folder, *args, command=command)
    errors = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert "Traceback" not in result.output
    assert files(folder) == before, sorted(map(str, files(folder) - before))  # nothing written
    return errors[0]


LONG = "a" * 300
# (sections merged into the tiny experiment, the fragments the one line must hold)
ERRORS = {
    "empty knn_k": ({"eval": {"knn_k": []}}, ("eval.knn_k=[]", "set e.g. eval.knn_k=[20]")),
    "zero in knn_k": ({"eval": {"knn_k": [0, 5]}}, ("eval.knn_k=[0, 5]", "every k must be >= 1")),
    "empty sr_l2_grid": ({"eval": {"sr_l2_grid": []}}, ("eval.sr_l2_grid=[]", "set e.g. eval.sr_l2_grid=")),
    "corruptions without severities": ({"eval": {"ood": {"corruptions": ["gaussian_noise"], "severities": []}}},
                                       ("eval.ood.severities=[]",)),
    "a GPU this machine lacks": ({"train": {"device": "cuda:7"}}, ("train.device=cuda:7", "use train.device=auto")),
    "zero epochs for a method that trains": ({"train": {"epochs": 0}},
                                             ("train.epochs=0", "trained nothing", "method pretrained")),
    "a weights path with an over-long name": ({"model": {"weights": f"/tmp/{LONG}.pth"}}, ("model.weights=", "304 bytes")),
    "unknown timm model": ({"model": {"name": "resnet_nope"}}, ("unknown backbone 'resnet_nope'",)),
    "missing weights file": ({"model": {"weights": "/nonexistent/w.pth"}}, ("weights test_vit (file)", "/nonexistent/w.pth")),
    "missing data root": ({"data": {"name": "fashion_mnist", "root": "/nonexistent/fm"}}, ("data fashion_mnist", "/nonexistent/fm")),
    "more training images per class than there are": ({"data": {"train_per_class": 10_000}}, ("data.train_per_class",)),
    "more validation images per class than there are": ({"data": {"val_per_class": 10_000}}, ("data.val_per_class",)),
    "more test images per class than there are": ({"data": {"test_per_class": 10_000}}, ("data.test_per_class",)),
    "an image size the backbone cannot take": ({"data": {"image_size": 20}}, ("data.image_size=20", "cannot take 20x20")),
    "shot thresholds the wrong way round": ({"eval": {"shot_thresholds": [100, 20]}}, ("eval.shot_thresholds=[100, 20]",)),
    "segmentation feature map the backbone lacks": (
        {"task": "segmentation", "seg": {"feature_index": 7, "train_images": 12, "val_images": 4, "test_images": 6}},
        ("seg.feature_index=7", "6 intermediate feature maps")),
}


@pytest.mark.parametrize("case", ERRORS)
@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_a_setting_no_run_can_use_is_refused_by_run_and_dry_run_alike(tmp_path, case, dry):
    sections, fragments = ERRORS[case]
    if case == "a GPU this machine lacks" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    write_experiment(tmp_path, **sections)
    line = refused(tmp_path, ("--dry-run",) if dry else (), *fragments)
    assert line.startswith("error: run ") or "missing, nothing was run" in line  # names the run (files: all at once)


def test_cuda_on_a_machine_without_it_is_refused():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert "no CUDA device" in pf.device_problem("cuda") and pf.device_problem("cpu") is None
    assert pf.device_problem("auto") is None


def test_a_method_that_does_not_train_may_have_zero_epochs(tmp_path):
    write_experiment(tmp_path, method="pretrained", train={"epochs": 0})
    result = invoke(tmp_path, "--dry-run")
    assert result.exit_code == 0, result.output


def test_the_same_problem_in_many_runs_is_one_line_and_every_problem_has_its_own(tmp_path):
    write_experiment(tmp_path, matrix={"seed": [0, 1, 2]}, eval={"knn_k": [], "sr_l2_grid": []})
    result = invoke(tmp_path, "--dry-run")
    errors = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(errors) == 2, result.stderr
    assert all(line.startswith("error: run digits-test_vit-grpo_rm-s0 (and 2 more run(s)): ") for line in errors)
    assert "eval.knn_k=[]" in errors[0] and "eval.sr_l2_grid=[]" in errors[1]


WARNINGS = {
    "k above the training set": ({"eval": {"knn_k": [5, 500]}}, "eval.knn_k=[5, 500]: k above the 60 training images"),
    "convergence subset above the smallest class": ({"eval": {"convergence_per_class": 50}},
                                                    "eval.convergence_per_class=50: the training split has 6 images"),
    "corrupted subset above the smallest class": ({"eval": {"ood": {"corruptions": ["gaussian_noise"], "severities": [1],
                                                                    "test_per_class": 50}}},
                                                  "eval.ood.test_per_class=50: the test split has 5 images"),
    "one step per epoch": ({"train": {"batch_size": 64}}, "60 training images make 1 step(s) per epoch, 3 optimiser step(s)"),
}


@pytest.mark.parametrize("case", WARNINGS)
def test_what_a_run_survives_is_one_warning_line_and_the_dry_run_passes(tmp_path, case):
    sections, fragment = WARNINGS[case]
    write_experiment(tmp_path, **sections)
    result = invoke(tmp_path, "--dry-run")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: run {RUN_ID}: ") and fragment in warnings[0], result.stderr


def test_a_warned_run_runs_and_finishes(tmp_path):
    write_experiment(tmp_path, train={"batch_size": 64, "epochs": 2})
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    assert "warning: run digits-test_vit-grpo_rm-s0: train.batch_size=64: 60 training images make 1 step(s)" in result.stderr
    assert record(tmp_path)["status"] == "finished"


def test_tune_refuses_the_same_settings(tmp_path):
    write_experiment(tmp_path, tune={"grid": [1e-4, 1e-3, 1e-2]}, eval={"knn_k": []}, seed=2)
    refused(tmp_path, (), "eval.knn_k=[]", command="tune")


@pytest.fixture
def data_check(tmp_path):
    from typer.testing import CliRunner

    from grporm.cli import app

    def check(*args):
        return CliRunner().invoke(app, ["data", "check", str(tmp_path / "exp.yaml"), *args])
    return check


@pytest.mark.parametrize("sections, fragment", [({"train": {"epochs": 0}}, "train.epochs=0"),
                                                ({"eval": {"sr_l2_grid": []}}, "eval.sr_l2_grid=[]"),
                                                ({"model": {"name": "resnet_nope"}}, "model.name=resnet_nope: unknown backbone")])
def test_data_check_refuses_bad_settings(tmp_path, data_check, sections, fragment):
    write_experiment(tmp_path, **sections)
    result = data_check()
    errors = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(errors) == 1 and fragment in errors[0], result.output
    write_experiment(tmp_path)
    assert data_check().exit_code == 0


def test_problem_lines_name_run_setting_value_and_fix():
    run = RunConfig(run_id="r", eval={"knn_k": []}, train={"epochs": 0})
    lines = pf.lines(pf.setting_problems(run))
    assert lines[0].startswith("run r: eval.knn_k=[]: empty") and "set e.g." in lines[0]
    assert any(line.startswith("run r: train.epochs=0: ") for line in lines)
    assert pf.setting_problems(RunConfig(run_id="r")) == []  # the defaults are fine


def test_few_steps_are_counted_like_training_does():
    small = {"knn_k": [5], "convergence_per_class": 3}
    run = RunConfig(run_id="r", train={"batch_size": 64, "epochs": 3}, eval=small)
    (warned,) = pf.data_problems(run, [6] * 10, [5] * 10, 60)
    assert not warned.fatal and "1 step(s) per epoch, 3 optimiser step(s)" in warned.why  # min(batch, n) = 60
    run = RunConfig(run_id="r", train={"batch_size": 12, "epochs": 2}, eval=small)
    assert pf.data_problems(run, [6] * 10, [5] * 10, 60) == []  # 5 x 2 = 10 steps: enough
    assert pf.data_problems(run.model_copy(update={"method": "pretrained"}), [6] * 10, [5] * 10, 6) == []


def test_shipped_experiments_pass_the_settings_stage():
    from pathlib import Path

    from grporm.plan.experiment import load_experiment

    for path in sorted(Path("experiments").rglob("*.yaml")):
        runs = load_experiment(path).runs
        problems = [p for r in runs for p in pf.setting_problems(r) if p.fatal]
        assert problems == [], (path, problems[:1])
