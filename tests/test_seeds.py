"""Tuning seeds the verdict never sees: a run that trains at a learning-rate decision may not evaluate
on one of the seeds that decision was made on (checked when an experiment is loaded, so --dry-run
refuses it too), and every shipped experiment file keeps them apart."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from grporm.cli import app
from grporm.errors import ConfigError
from grporm.plan.experiment import build_experiment, free_seeds, load_experiment
from grporm.tuning.decisions import needs_decision

from tiny_runs import invoke, write_experiment

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO / "experiments").rglob("*.yaml"))
GRID = [1e-4, 1e-3, 1e-2]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_experiment_evaluates_on_seeds_it_did_not_tune_on(path):
    runs = load_experiment(path).runs
    assert all(r.seed not in r.tune.seeds for r in runs if needs_decision(r)), path


def test_the_shipped_files_include_the_paper_files_and_the_template_and_train_at_decisions():
    names = {str(p.relative_to(REPO)) for p in SHIPPED}
    assert {"experiments/quick.yaml", "experiments/templates/own_data.yaml", "experiments/paper/classification.yaml",
            "experiments/studies/base.yaml"} <= names
    # every file but the noise floor's (quick's learning rates written in) trains at decisions: the check says something
    untuned = {str(p.relative_to(REPO)) for p in SHIPPED if not any(needs_decision(r) for r in load_experiment(p).runs)}
    assert untuned == {"experiments/noise.yaml"}


def test_an_evaluation_seed_that_is_a_tuning_seed_is_one_line_naming_both_and_the_fix():
    with pytest.raises(ConfigError) as err:
        build_experiment({"method": "ce", "tune": {"grid": GRID}, "matrix": {"seed": [1, 2, 3]}}, "x.yaml")
    assert str(err.value) == ("x.yaml: seed: 1 is also a tuning seed (tune.seeds [0, 1]): evaluate on other seeds, "
                              "e.g. matrix.seed: [2, 3, 4]")
    with pytest.raises(ConfigError, match=r"^x.yaml: seed: 7 is also a tuning seed \(tune.seeds \[5, 7\]\).*\[8, 9, 10\]$"):
        build_experiment({"seed": 7, "tune": {"grid": GRID, "seeds": [5, 7]}}, "x.yaml")


def test_an_override_that_makes_the_overlap_is_named():
    with pytest.raises(ConfigError, match=r"^override 'tune.seeds=\[2, 3\]': seed: 2 is also a tuning seed"):
        build_experiment({"tune": {"grid": GRID}, "seed": 2}, "x.yaml", ["tune.seeds=[2, 3]"])


def test_runs_without_a_decision_may_use_any_seed():
    # no grid: train.lr as written; pretrained: never trains, needs no decision
    assert build_experiment({"matrix": {"seed": [0, 1]}}, "x.yaml").runs
    assert build_experiment({"method": "pretrained", "tune": {"grid": GRID}, "seed": 0}, "x.yaml").runs
    assert build_experiment({"tune": {"grid": GRID, "seeds": [5, 6]}, "matrix": {"seed": [0, 1]}}, "x.yaml").runs


def test_dry_run_refuses_the_overlap_before_anything_runs(tmp_path):
    write_experiment(tmp_path, tune={"grid": GRID})  # tiny_runs' default seed is 0
    result = invoke(tmp_path, "--dry-run")
    assert result.exit_code == 2 and "seed: 0 is also a tuning seed" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "results").exists()
    result = invoke(tmp_path, "--dry-run", "-o", "seed=2")
    assert result.exit_code == 0, result.output


def test_free_seeds_skip_the_taken_ones():
    assert free_seeds({0, 1}, 3) == [2, 3, 4]
    assert free_seeds({0, 1, 8}, 3, after=6) == [7, 9, 10]
    assert free_seeds(set(), 0) == []


def test_tune_refuses_the_overlap_too(tmp_path):
    write_experiment(tmp_path, tune={"grid": GRID})
    result = CliRunner().invoke(app, ["tune", str(tmp_path / "exp.yaml"), "--results", str(tmp_path / "r")])
    assert result.exit_code == 2 and "is also a tuning seed" in result.stderr
