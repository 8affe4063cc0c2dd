"""A finished run's model back in memory: grporm.load_model and `grporm eval` on a tiny run."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import grporm
from grporm.cli import app
from grporm.errors import ConfigError

from tiny_runs import RESULTS, checkpoint, invoke, record, run_folder, write_experiment


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    write_experiment(folder, train={"epochs": 1}, matrix={"method": ["grpo_rm", "pretrained"]})
    result = invoke(folder)
    assert result.exit_code == 0, result.output
    return folder


def test_load_model_gives_the_fine_tuned_backbone_and_head_in_eval_mode(finished):
    model = grporm.load_model(run_folder(finished))
    saved = torch.load(checkpoint(finished, name="model.pt"), weights_only=True)["model"]
    assert not model.training and model.head.out_features == 10
    assert all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())
    size, mean, std = model.input_spec
    assert size == 16 and len(mean) == len(std) == 3
    assert model.input_spec.image_size == size and model.input_spec.preprocess(torch.zeros(2, 1, 8, 8, dtype=torch.uint8)).shape == (2, 3, 16, 16)
    with torch.no_grad():
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 10)
    assert torch.equal(grporm.load_model(checkpoint(finished, name="model.pt")).head.weight, model.head.weight)


def test_eval_reproduces_the_records_numbers(finished, tmp_path):
    out = tmp_path / "metrics.json"
    result = CliRunner().invoke(app, ["eval", str(run_folder(finished)), "--json", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())["metrics"]
    recorded = record(finished)["metrics"]
    for name in ("sr_top1", "head_top1", "ece"):
        assert metrics[name] == pytest.approx(recorded[name], abs=1e-6), name
    assert metrics["knn_top1"] == pytest.approx(recorded["knn_top1"], abs=1e-6)
    assert f"{record(finished)['run_id']} (" in result.output and "SR " in result.output
    overridden = CliRunner().invoke(app, ["eval", str(run_folder(finished)), "-o", "eval.knn_k=[3]"])
    assert overridden.exit_code == 0 and "knn3_top1" in overridden.output, overridden.output


def test_eval_of_what_saved_nothing_is_one_line(finished, tmp_path):
    pretrained = run_folder(finished, "digits-test_vit-pretrained-s0")
    for path, fragment in ((pretrained, "trains nothing"), (tmp_path / "nope", "does not exist"),
                           (finished / RESULTS, "holds no record.json")):
        result = CliRunner().invoke(app, ["eval", str(path)])
        assert result.exit_code == 2 and result.output.count("\n") == 1 and fragment in result.output, result.output
    with pytest.raises(ConfigError, match="trains nothing"):
        grporm.load_model(pretrained)
