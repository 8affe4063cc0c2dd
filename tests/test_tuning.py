"""Learning-rate tuning: the grid rule, the decision (edge extension, close calls), the key of a
setting, runs reusing a decision, one process per key, and the report section."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from grporm.analysis.tuning import decisions_markdown
from grporm.config import RunConfig
from grporm.errors import ConfigError
from grporm.plan.experiment import build_experiment
from grporm.process.locks import RunLock
from grporm.stats import binomial_se, mean_binomial_se, paired_se
from grporm.training.train import Trainer
from grporm.tuning import trials
from grporm.tuning.decisions import (
    check_grid,
    decide,
    load_records,
    lock_path,
    read_decision,
    record_path,
    setting,
    tuning_epochs,
    tuning_key,
)

from tiny_runs import RESULTS, invoke, record, write_experiment

GRID = [1e-4, 1e-3, 1e-2]
TUNE = {"grid": GRID, "score": "knn20", "max_extensions": 2}


# -- the grid rule -------------------------------------------------------------------------------
@pytest.mark.parametrize("grid, problem", [
    ([1e-4, 1e-2], "at least 3"),
    ([1e-4, 1e-3, 3e-3], "1.5 decades"),        # 1.48 decades: the common 1e-4..3e-3 grid is too narrow
    ([1e-4, 1e-2, 1e-3], "increasing order"),
    ([1e-4, 1e-3, 1e-3, 1e-2], "increasing order"),
    ([0.0, 1e-3, 1e-2], "> 0"),
    ([-1e-3, 1e-3, 1e-1], "> 0"),
])
def test_bad_grids_are_one_line_naming_the_key(grid, problem):
    with pytest.raises(ValueError, match=problem):
        check_grid(grid)
    with pytest.raises(ConfigError) as err:
        build_experiment({"tune": {"grid": grid}}, "x.yaml")
    assert str(err.value).startswith("x.yaml: tune.grid: ") and problem in str(err.value) and "\n" not in str(err.value)


def test_good_grids_and_tuning_off_pass():
    assert check_grid([]) == []
    assert check_grid([3e-4, 1e-3, 3e-3, 1e-2]) == [3e-4, 1e-3, 3e-3, 1e-2]  # 1.52 decades
    assert check_grid([1e-4, 1e-3, 1e-2]) == [1e-4, 1e-3, 1e-2]


def test_score_must_fit_the_task():
    with pytest.raises(ConfigError, match="tune: .*'miou' does not fit task 'classification'"):
        build_experiment({"tune": {"grid": GRID, "score": "miou"}}, "x.yaml")
    with pytest.raises(ConfigError, match="'sr' does not fit task 'segmentation'; use miou"):
        build_experiment({"task": "segmentation", "data": {"name": "fashion_mnist"}, "tune": {"grid": GRID}}, "x.yaml")


def test_fraction_is_whole_epochs_at_least_that_fraction():
    assert [tuning_epochs(RunConfig(train={"epochs": e}, tune={"fraction": f}))
            for e, f in ((3, 1.0), (3, 0.5), (4, 0.5), (10, 0.75))] == [3, 2, 2, 8]
    with pytest.raises(ConfigError, match="tune.fraction"):
        build_experiment({"tune": {"fraction": 0.4}}, "x.yaml")


# -- the decision (pure: a fake score) -------------------------------------------------------------
SEEDS = [0, 1]


class Scorer:
    """score(lr, seed) from {lr: score} (the same at every seed) or {lr: {seed: score}}, or a function of lr."""

    def __init__(self, table):
        self.table, self.calls = table, []

    def __call__(self, lr, seed):
        self.calls.append((lr, seed))
        value = self.table(lr) if callable(self.table) else self.table[lr]
        return value[seed] if isinstance(value, dict) else value


def decide_on(table, n_val=1000, seeds=SEEDS, **kwargs):
    return decide(kwargs.pop("grid", GRID), Scorer(table), n_val, seeds, **kwargs)


def test_an_interior_winner_is_kept_without_extension():
    score = Scorer({1e-4: 0.5, 1e-3: 0.8, 1e-2: 0.6})
    d = decide(GRID, score, 1000, SEEDS)
    assert (d.winner, d.runner_up, d.extended, d.edge, d.grid) == (1e-3, 1e-2, [], False, GRID)
    assert d.margin == pytest.approx(0.2) and not d.close_call
    assert score.calls == [(lr, s) for lr in GRID for s in SEEDS]  # every value once per tuning seed


def test_an_edge_winner_extends_the_grid_by_its_own_step_up_to_the_bound():
    score = Scorer(lambda lr: lr)  # the larger the better, forever
    d = decide(GRID, score, 100, SEEDS, max_extensions=2)
    assert d.grid == [1e-4, 1e-3, 1e-2, 0.1, 1.0] and d.extended == ["up", "up"]
    assert d.winner == 1.0 and d.edge
    assert sorted(score.calls) == [(lr, s) for lr in d.grid for s in SEEDS]  # each pair scored once


def test_extension_down_stops_when_the_winner_is_inside_again():
    # 3e-4 / 1e-3 is the bottom step; the extension adds 9e-5 (round), which loses to 3e-4.
    d = decide_on({9e-5: 0.5, 3e-4: 0.9, 1e-3: 0.7, 3e-3: 0.6, 1e-2: 0.1}, grid=[3e-4, 1e-3, 3e-3, 1e-2])
    assert d.grid == [9e-5, 3e-4, 1e-3, 3e-3, 1e-2] and d.extended == ["down"]
    assert d.winner == 3e-4 and not d.edge


def test_no_extension_allowed_flags_the_edge():
    d = decide_on(lambda lr: -lr, n_val=100, max_extensions=0)
    assert (d.winner, d.extended, d.edge) == (1e-4, [], True)


def test_the_score_is_the_mean_over_the_tuning_seeds_and_every_per_seed_score_is_kept():
    # seed 0 alone would pick 1e-2, seed 1 alone 1e-3; the mean picks 1e-3 (0.80 vs 0.79)
    table = {1e-4: {0: 0.5, 1: 0.5}, 1e-3: {0: 0.78, 1: 0.82}, 1e-2: {0: 0.80, 1: 0.78}}
    d = decide_on(table)
    assert d.winner == 1e-3 and d.runner_up == 1e-2 and d.scores[1e-3] == pytest.approx(0.80)
    assert d.per_seed == table and d.margin == pytest.approx(0.01)


def test_close_call_combines_the_binomial_se_of_the_mean_and_the_spread_between_seeds():
    # binomial: winner 0.80 and 0.90 on 400 images each -> sqrt(.16/400 + .09/400) / 2 = 0.0125
    se = binomial_se(0.8, 400)
    assert se == pytest.approx(0.02) and mean_binomial_se([0.8, 0.9], [400, 400]) == pytest.approx(0.0125)
    # margin 0.02 over a runner-up whose per-seed differences agree (0.02, 0.02): seed SE 0 -> clear
    steady = decide_on({1e-4: 0.5, 1e-3: {0: 0.80, 1: 0.90}, 1e-2: {0: 0.78, 1: 0.88}}, n_val=400)
    assert (steady.margin, steady.se, steady.seed_se) == pytest.approx((0.02, 0.0125, 0.0))
    assert steady.uncertainty == pytest.approx(0.0125) and not steady.close_call
    # the same margin, but the seeds disagree (0.06, -0.02): seed SE = |0.06 + 0.02| / 2 = 0.04 -> close call
    shaky = decide_on({1e-4: 0.5, 1e-3: {0: 0.80, 1: 0.90}, 1e-2: {0: 0.74, 1: 0.92}}, n_val=400)
    assert (shaky.margin, shaky.se, shaky.seed_se) == pytest.approx((0.02, 0.0125, 0.04))
    assert shaky.uncertainty == pytest.approx(0.04) and shaky.close_call
    # steady seeds, but a margin below the binomial SE of the mean -> close call
    small = decide_on({1e-4: 0.5, 1e-3: {0: 0.80, 1: 0.90}, 1e-2: {0: 0.79, 1: 0.89}}, n_val=400)
    assert small.seed_se == pytest.approx(0.0) and small.margin == pytest.approx(0.01) and small.close_call
    assert paired_se([0.80, 0.90], [0.74, 0.92]) == pytest.approx(0.04)


def test_per_seed_validation_sizes_enter_the_binomial_se():
    d = decide_on({1e-4: 0.5, 1e-3: {0: 0.8, 1: 0.9}, 1e-2: 0.6}, n_val={0: 400, 1: 100})
    assert d.se == pytest.approx(((0.16 / 400 + 0.09 / 100) ** 0.5) / 2)


@pytest.mark.parametrize("seeds", [[0], [], [3, 3]])
def test_a_decision_needs_at_least_two_distinct_tuning_seeds(seeds):
    with pytest.raises(ValueError, match="at least 2 distinct tuning seeds"):
        decide_on({1e-4: 0.5, 1e-3: 0.8, 1e-2: 0.6}, seeds=seeds)
    with pytest.raises(ConfigError) as err:
        build_experiment({"tune": {"grid": GRID, "seeds": seeds}}, "x.yaml")
    assert str(err.value).startswith("x.yaml: tune.seeds: needs at least 2 distinct seeds") and "\n" not in str(err.value)


def test_the_retired_one_seed_tune_seed_is_refused_with_its_replacement():
    with pytest.raises(ConfigError, match=r"^x.yaml: tune.seed: retired option, use tune.seeds"):
        build_experiment({"tune": {"grid": GRID, "seed": 0}}, "x.yaml")


def test_ties_go_to_the_smaller_lr_and_are_close_calls():
    d = decide_on({1e-4: 0.5, 1e-3: 0.9, 1e-2: 0.9}, max_extensions=0)
    assert d.winner == 1e-3 and d.runner_up == 1e-2 and d.margin == 0 and d.close_call


def test_a_value_diverged_at_any_seed_never_wins_and_all_diverged_is_an_error():
    d = decide_on({1e-4: 0.5, 1e-3: 0.6, 1e-2: {0: 0.99, 1: None}}, n_val=100)
    assert d.winner == 1e-3 and d.runner_up == 1e-4 and d.scores[1e-2] is None and d.margin == pytest.approx(0.1)
    assert d.per_seed[1e-2] == {0: 0.99, 1: None}
    with pytest.raises(ValueError, match="diverged at every"):
        decide_on(lambda lr: None, n_val=100)
    alone = decide_on({1e-4: None, 1e-3: 0.6, 1e-2: None}, n_val=100, max_extensions=0)
    assert alone.runner_up is None and alone.margin is None and not alone.close_call


# -- the key of a setting ------------------------------------------------------------------------
def key_of(**sections) -> str:
    base = {"experiment": "a", "tune": TUNE}
    for name, value in sections.items():
        base[name] = {**base.get(name, {}), **value} if isinstance(value, dict) else value
    return tuning_key(RunConfig.model_validate(base))


def test_key_ignores_seed_experiment_tracking_unused_evaluations_and_the_pick():
    key = key_of()
    assert key == key_of(tune={**TUNE, "pick": "runner_up"})
    assert key == key_of(seed=3) == key_of(experiment="ablation_x") == key_of(tracking={"mode": "disabled"})
    assert key == key_of(eval={"ood": {"corruptions": ["gaussian_noise"]}, "knn_k": [20, 200]})
    assert key == key_of(train={"lr": 0.5, "threads": 1, "channels_last": False})


def test_key_changes_with_what_changes_the_decision():
    key = key_of()
    changed = [key_of(tune={**TUNE, "grid": [1e-5, 1e-4, 1e-3]}), key_of(tune={**TUNE, "seeds": [1, 2]}),
               key_of(tune={**TUNE, "score": "sr"}), key_of(method="ce"), key_of(data={"train_per_class": 50}),
               key_of(data={"imbalance_factor": 10}), key_of(model={"name": "mobilenetv2_100"}),
               key_of(train={"epochs": 5}), key_of(grpo_rm={"clip_eps": 0.3}), key_of(eval={"knn_temperature": 0.1})]
    assert len({key, *changed}) == len(changed) + 1


def test_grpo_settings_are_not_part_of_a_ce_key_and_default_tune_keeps_the_hash():
    assert key_of(method="ce") == key_of(method="ce", grpo_rm={"clip_eps": 0.3})
    plain = RunConfig(method="ce")
    assert "tune" not in plain.hash_payload()  # committed records keep their hashes
    tuned = RunConfig(method="ce", tune={"grid": GRID})
    assert tuned.config_hash() != plain.config_hash() and "pick" not in tuned.hash_payload()["tune"]
    assert RunConfig(method="ce", tune={"grid": GRID, "pick": "winner"}).config_hash() == tuned.config_hash()
    assert RunConfig(method="ce", tune={"grid": GRID, "pick": "runner_up"}).config_hash() != tuned.config_hash()
    with pytest.raises(ConfigError, match="pick: runner_up needs a decision: set tune.grid"):
        build_experiment({"tune": {"pick": "runner_up"}}, "x.yaml")


def test_a_base_file_passes_its_tune_section_on(tmp_path):
    from grporm.plan.experiment import load_experiment

    (tmp_path / "base.yaml").write_text("tune: {grid: [1.0e-4, 1.0e-3, 1.0e-2], score: knn20}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nmatrix: {seed: [2, 3]}\ntune: {fraction: 0.5}\n")
    runs = load_experiment(tmp_path / "child.yaml").runs
    assert [r.tune.grid for r in runs] == [GRID, GRID] and runs[0].tune.fraction == 0.5
    assert tuning_key(runs[0]) == tuning_key(runs[1])


# -- runs and the `tune` command (tiny real runs) --------------------------------------------------
def fake_record(results: Path, run: RunConfig, winner: float, runner_up: float | None = 1e-4,
                close_call: bool = True) -> None:
    """A decision as `decide` records it (two seeds), with the given winner, runner-up and close call."""
    path = record_path(results, tuning_key(run))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "key": tuning_key(run), "label": "tiny", "score": "knn20", "seeds": [0, 1], "grid": GRID,
        "scores": [{"lr": lr, "score": 0.5, "per_seed": [{"seed": s, "score": 0.5, "n_val": 30, "seconds": 1.0}
                                                           for s in (0, 1)]} for lr in GRID],
        "winner": winner, "runner_up": runner_up, "margin": 0.0, "se": 0.09, "seed_se": 0.0, "uncertainty": 0.09,
        "close_call": close_call, "edge": False, "extended": []}))


def load_runs(folder: Path, *overrides: str) -> list[RunConfig]:
    from grporm.plan.experiment import load_experiment

    return load_experiment(folder / "exp.yaml", list(overrides)).runs


def test_a_run_reuses_the_decision_without_training_candidates(tmp_path, monkeypatch):
    write_experiment(tmp_path, tune=TUNE, seed=2)
    (run,) = load_runs(tmp_path)
    fake_record(tmp_path / RESULTS, run, winner=1e-2)
    monkeypatch.setattr(trials.TuningTrial, "score", lambda *a: pytest.fail("a candidate was trained"))
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    rec = record(tmp_path, run_id="digits-test_vit-grpo_rm-s2")
    assert rec["lr"] == 1e-2
    assert rec["tuning"] == {"key": tuning_key(run), "winner": 1e-2, "runner_up": 1e-4, "margin": 0.0, "se": 0.09,
                             "seed_se": 0.0, "close_call": True, "edge": False, "pick": "winner", "lr": 1e-2}


def test_a_runner_up_run_trains_at_the_runner_up_beside_the_winner_run(tmp_path, monkeypatch):
    write_experiment(tmp_path, tune=TUNE, seed=2)
    (run,) = load_runs(tmp_path)
    (other,) = load_runs(tmp_path, "tune.pick=runner_up")
    assert other.run_id == "digits-test_vit-grpo_rm-lr=runner_up-s2" and run.run_id == "digits-test_vit-grpo_rm-s2"
    assert tuning_key(other) == tuning_key(run) and other.config_hash() != run.config_hash()
    assert run.axes == {} and other.axes == {"tune.pick": "runner_up"}  # its own variant in every table
    fake_record(tmp_path / RESULTS, run, winner=1e-2, runner_up=1e-3)
    monkeypatch.setattr(trials.TuningTrial, "score", lambda *a: pytest.fail("a candidate was trained"))
    lrs = []
    real_fit = Trainer.fit
    monkeypatch.setattr(Trainer, "fit", lambda self, lr, **k: lrs.append(lr) or real_fit(self, lr, **k))
    assert invoke(tmp_path).exit_code == 0
    result = invoke(tmp_path, "-o", "tune.pick=runner_up")
    assert result.exit_code == 0, result.output
    assert lrs == [1e-2, 1e-3]  # the final training of each run
    winner, runner_up = record(tmp_path, run_id=run.run_id), record(tmp_path, run_id=other.run_id)
    assert (winner["lr"], winner["tuning"]["pick"], winner["tuning"]["lr"]) == (1e-2, "winner", 1e-2)
    assert (runner_up["lr"], runner_up["tuning"]["pick"], runner_up["tuning"]["lr"]) == (1e-3, "runner_up", 1e-3)
    assert runner_up["tuning"]["winner"] == 1e-2 and runner_up["config"]["tune"]["pick"] == "runner_up"


def test_pick_as_a_matrix_axis_names_only_the_runner_up():
    runs = build_experiment({"name": "x", "method": "ce", "tune": {"grid": GRID},
                             "matrix": {"tune.pick": ["winner", "runner_up"], "seed": [2]}}, "x.yaml").runs
    assert [r.run_id for r in runs] == ["fashion_mnist-tf_efficientnet_lite0-ce-s2",
                                        "fashion_mnist-tf_efficientnet_lite0-ce-lr=runner_up-s2"]
    assert [r.axes for r in runs] == [{"seed": 2}, {"seed": 2, "tune.pick": "runner_up"}]


def test_a_runner_up_pick_without_a_runner_up_is_one_line(tmp_path):
    write_experiment(tmp_path, tune=TUNE, seed=2)
    (run,) = load_runs(tmp_path)
    fake_record(tmp_path / RESULTS, run, winner=1e-2, runner_up=None, close_call=False)
    result = invoke(tmp_path, "-o", "tune.pick=runner_up")
    assert result.exit_code == 2 and "has no runner-up" in result.output


SENSITIVITY = {"arm": [{"name": "ce", "method": "ce"}, {"name": "default", "method": "grpo_rm"},
                       {"name": "clip", "method": "grpo_rm", "grpo_rm.clip_eps": 0.3}], "seed": [2, 3]}


@pytest.mark.parametrize("close, selected", [
    ({"default"}, {"default"}),                      # its own decision only
    ({"ce"}, {"ce"}),                                # the control's: only CE moves, the verdict pairs it with the arms' winners
    ({"clip", "default"}, {"clip", "default"}),
    (set(), set()),
])
def test_sensitivity_selects_exactly_the_runs_of_close_call_decisions(tmp_path, close, selected):
    write_experiment(tmp_path, tune=TUNE, matrix={**SENSITIVITY, "model.name": ["test_vit"]})
    runs = load_runs(tmp_path)
    for r in runs:
        fake_record(tmp_path / RESULTS, r, winner=1e-2, runner_up=1e-3, close_call=r.axes["arm"] in close)
    result = invoke(tmp_path, "--sensitivity", "--dry-run")
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.output.splitlines()[1:] if line.startswith("  ")}
    assert listed == {r.run_id.replace(f"-s{r.seed}", f"-lr=runner_up-s{r.seed}")
                      for r in runs if r.axes["arm"] in selected}
    assert f"{len(listed)} run(s)" in result.output


def test_sensitivity_skips_an_arm_alone_in_its_cell(tmp_path):
    """CE alone at the longest budget (matrix.exclude) has no verdict line: its close call reruns nothing there."""
    matrix = {**SENSITIVITY, "model.name": ["test_vit"], "train.epochs": [1, 2],
              "exclude": [{"train.epochs": 2, "arm": "default"}, {"train.epochs": 2, "arm": "clip"}]}
    write_experiment(tmp_path, tune=TUNE, matrix=matrix)
    runs = load_runs(tmp_path)
    for r in runs:
        fake_record(tmp_path / RESULTS, r, winner=1e-2, runner_up=1e-3, close_call=r.axes["arm"] == "ce")
    result = invoke(tmp_path, "--sensitivity", "--dry-run")
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.splitlines()[1:] if line.startswith("  ")]
    assert len(listed) == 2 and all("-ce-" in i and "epochs=1" in i for i in listed), listed


def test_sensitivity_needs_the_decisions_and_a_tuned_experiment(tmp_path):
    write_experiment(tmp_path, tune=TUNE, matrix=SENSITIVITY)
    result = invoke(tmp_path, "--sensitivity", "--dry-run")
    assert result.exit_code == 2 and "--sensitivity: 3 of 3 setting(s) have no decision" in result.output
    assert "grporm tune" in result.output
    write_experiment(tmp_path, matrix=SENSITIVITY)
    result = invoke(tmp_path, "--sensitivity", "--dry-run")
    assert result.exit_code == 2 and "no run of tiny trains at a tuning decision" in result.output


def tune_cli(folder: Path, *args: str):
    return invoke(folder, *args, command="tune")


def test_tune_decides_once_per_setting_on_two_seeds_and_a_run_then_trains_at_the_winner(tmp_path, monkeypatch):
    from grporm.process import seeding
    write_experiment(tmp_path, tune={**TUNE, "max_extensions": 0}, matrix={"seed": [2, 3], "method": ["pretrained", "ce"]})
    scored = []
    real = trials.TuningTrial.score
    monkeypatch.setattr(trials.TuningTrial, "score", lambda self, lr: scored.append(
        (lr, self.cfg.seed, seeding.split_seed(self.cfg))) or real(self, lr))
    result = tune_cli(tmp_path)
    assert result.exit_code == 0, result.output
    # one setting (ce; seeds share it, pretrained needs none), each value once per tuning seed, on that seed's data
    assert scored == [(lr, s, s) for lr in GRID for s in (0, 1)]
    (rec,) = load_records(tmp_path / RESULTS)
    assert [row["lr"] for row in rec["scores"]] == GRID and rec["winner"] in GRID and rec["n_val"] == {"0": 30, "1": 30}
    assert all([x["seed"] for x in row["per_seed"]] == [0, 1] for row in rec["scores"])
    assert all(row["score"] == pytest.approx(sum(x["score"] for x in row["per_seed"]) / 2) for row in rec["scores"])
    assert rec["seeds"] == [0, 1] and rec["runner_up"] in GRID and rec["runner_up"] != rec["winner"]
    assert rec["uncertainty"] == max(rec["se"], rec["seed_se"]) and "max(se, seed_se)" in rec["close_call_rule"]
    assert rec["epochs"] == 3 and rec["env"]["torch"] and set(rec["config_hashes"]) == {"0", "1"}
    assert "| digits / 16 px, 6/class, 3 epochs / test_vit / ce | " in result.output and not list((tmp_path / RESULTS / "tuning").glob(".*"))
    again = tune_cli(tmp_path)
    assert "decided already" in again.output and len(scored) == 6
    assert invoke(tmp_path, "--only", "ce-s3").exit_code == 0 and len(scored) == 6
    assert record(tmp_path, run_id="digits-test_vit-ce-s3")["lr"] == rec["winner"]


def test_an_interrupted_decision_resumes_the_pairs_it_scored(tmp_path, monkeypatch):
    write_experiment(tmp_path, tune={**TUNE, "max_extensions": 0}, seed=2)
    (run,) = load_runs(tmp_path)
    table = {(1e-4, 0): 0.2, (1e-4, 1): 0.3, (1e-3, 0): 0.6, (1e-3, 1): 0.5, (1e-2, 0): 0.4, (1e-2, 1): 0.45}
    scored = []

    def score(self, lr):
        if len(scored) == 3:
            raise KeyboardInterrupt
        scored.append((lr, self.cfg.seed))
        return table[lr, self.cfg.seed]

    monkeypatch.setattr(trials.TuningTrial, "score", score)
    with pytest.raises(KeyboardInterrupt):
        trials.decision_for(run, tmp_path / "results", echo=lambda *a: None)
    monkeypatch.setattr(trials.TuningTrial, "score", lambda self, lr: scored.append((lr, self.cfg.seed))
                        or table[lr, self.cfg.seed])
    rec, how = trials.decision_for(run, tmp_path / "results", echo=lambda *a: None)
    assert how == "tuned" and sorted(scored) == sorted(table)  # each pair once, across the interruption
    assert (rec["winner"], rec["runner_up"]) == (1e-3, 1e-2)
    assert rec["margin"] == pytest.approx(0.55 - 0.425) and rec["seed_se"] == pytest.approx(abs(0.2 - 0.05) / 2)


def test_a_key_locked_by_another_process_is_not_tuned_twice(tmp_path, monkeypatch):
    write_experiment(tmp_path, tune=TUNE, matrix={"method": ["ce", "grpo_rm"]}, seed=2)
    runs = build_experiment(__import__("yaml").safe_load((tmp_path / "exp.yaml").read_text()), "exp.yaml").runs
    monkeypatch.setattr(trials.TuningTrial, "score", lambda self, lr: {1e-4: 0.2, 1e-3: 0.5, 1e-2: 0.3}[lr])
    results = tmp_path / RESULTS
    held = RunLock(lock_path(results, tuning_key(runs[0])))
    held.acquire()  # another shard is tuning the ce setting
    try:
        shard0, shard1 = tune_cli(tmp_path, "--shard", "0/2"), tune_cli(tmp_path, "--shard", "1/2")
    finally:
        held.release()
    assert "skipped, locked by pid" in shard0.output and not record_path(results, tuning_key(runs[0])).exists()
    assert record_path(results, tuning_key(runs[1])).exists()  # shard 1 had the other setting
    assert "1 of 2 decision(s)" in shard1.output


# -- the report ----------------------------------------------------------------------------------
def test_report_section_lists_every_decision_with_flags(tmp_path):
    from grporm.analysis.tuning import decisions_of, tuning_section

    run = RunConfig(method="ce", tune=TUNE)
    fake_record(tmp_path, run, winner=1e-3)
    lines, files = tuning_section(decisions_of(tmp_path))
    text = "\n".join(lines)
    assert text.startswith("## Tuning decisions") and "| tiny |" in text and "close call" in text
    assert set(files) == {".md", ".tex", ".csv"} and files[".md"] == decisions_markdown(load_records(tmp_path))
    assert files[".tex"].count("\\\\") == 2 and "\\begin{tabular}" in files[".tex"]
    assert len(files[".csv"].splitlines()) == 1 + len(GRID)
    empty, none = tuning_section(decisions_of(tmp_path / "nothing"))
    assert empty == [] and none == {}  # no data: the report leaves the section out
    key = load_records(tmp_path)[0]["key"]
    assert decisions_of(tmp_path, {key}) == load_records(tmp_path) and decisions_of(tmp_path, {"another"}) == []


def test_a_decision_missing_its_seeds_is_redone_not_trained_at(tmp_path, monkeypatch, capsys):
    """A decision file without the fields of the current rules (e.g. made on one seed by an earlier
    version) counts as damaged: no run trains at it, it is decided again."""
    write_experiment(tmp_path, tune={**TUNE, "max_extensions": 0}, seed=2)
    (run,) = load_runs(tmp_path)
    path = record_path(tmp_path / "results", tuning_key(run))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": tuning_key(run), "label": "tiny", "setting": setting(run), "score": "knn20",
                                "grid": GRID, "scores": [{"lr": lr, "score": 0.5, "n_val": 30} for lr in GRID],
                                "winner": 1e-3, "margin": 0.0, "se": 0.09, "close_call": True, "seed": 0}))
    assert read_decision(path) is None
    monkeypatch.setattr(trials.TuningTrial, "score", lambda self, lr: {1e-4: 0.2, 1e-3: 0.5, 1e-2: 0.3}[lr])
    rec, how = trials.decision_for(run, tmp_path / "results")
    assert how == "tuned" and rec["seeds"] == [0, 1] and rec["winner"] == 1e-3


def test_the_committed_decisions_render_without_a_crash():
    records = load_records(Path(__file__).parent.parent / "results")
    if not records:
        pytest.skip("no committed tuning records")
    text = decisions_markdown(records)
    assert text.count("\n") == len(records) + 2
    assert all(len(r["seeds"]) >= 2 for r in records)  # every committed decision rests on 2 seeds or more


def test_two_processes_needing_one_key_tune_it_once_and_the_second_waits(tmp_path, monkeypatch):
    import threading
    import time

    write_experiment(tmp_path, tune=TUNE, seed=2)
    run = build_experiment(__import__("yaml").safe_load((tmp_path / "exp.yaml").read_text()), "exp.yaml").runs[0]
    scored = []

    def slow(self, lr):
        scored.append(lr)
        time.sleep(0.1)
        return {1e-4: 0.2, 1e-3: 0.5, 1e-2: 0.3}[lr]

    monkeypatch.setattr(trials.TuningTrial, "score", slow)
    outcomes, messages = [], []
    workers = [threading.Thread(target=lambda: outcomes.append(trials.decision_for(
        run, tmp_path / "results", poll_seconds=0.05, echo=messages.append))) for _ in range(2)]
    for w in workers:
        w.start()
        time.sleep(0.02)
    for w in workers:
        w.join()
    assert scored == [lr for lr in GRID for _ in (0, 1)]  # once per tuning seed, by one of them
    assert sorted(how for _, how in outcomes) == ["found", "tuned"]
    assert outcomes[0][0]["winner"] == outcomes[1][0]["winner"] == 1e-3
    assert any("waiting for it" in m for m in messages)


def test_labels_tell_the_readings_of_one_study_apart():
    from grporm.plan.experiment import load_experiment
    from grporm.tuning.decisions import label, needs_decision

    runs = [r for r in load_experiment("experiments/studies/readings.yaml").runs if needs_decision(r)]
    labels = {label(r) for r in runs}
    keys = {tuning_key(r) for r in runs}
    assert len(labels) == len(keys) == 2 * 8  # two backbones x (CE and seven readings)
    assert ("fashion_mnist / 32 px, 200/class, 4 epochs / mobilenetv2_100 / grpo_rm "
            "(rewards=uniformity_all:1, advantage_scale=none, grad_clip=0.1)") in labels


@pytest.mark.parametrize("path", sorted(Path("experiments").rglob("*.yaml")), ids=str)
def test_every_embedded_experiment_labels_its_settings_apart(path):
    """Two settings with one label would read as one decision in the report (as CE and CE with twice
    the epochs once did)."""
    from grporm.plan.experiment import load_experiment
    from grporm.tuning.decisions import label, needs_decision

    runs = [r for r in load_experiment(path).runs if needs_decision(r)]
    assert len({label(r) for r in runs}) == len({tuning_key(r) for r in runs})


def test_a_decision_file_is_read_through_its_model(tmp_path, capsys):
    """DecisionRecord is what a decision file must hold: a mistyped field or a row without its lr is damage
    (the decision is redone), named in the warning; the committed decisions all fit it."""
    from grporm.tuning.decisions import DecisionRecord

    good = {"key": "k1", "label": "tiny", "score": "knn20", "grid": GRID, "seeds": [0, 1], "winner": 1e-3,
            "margin": 0.01, "runner_up": 1e-4, "close_call": False,
            "scores": [{"lr": lr, "score": 0.5} for lr in GRID]}
    path = tmp_path / "k1.json"
    for damage, said in (({"winner": "0.001"}, "winner: Input should be a valid number"),
                         ({"close_call": 1}, "close_call: Input should be a valid boolean"),
                         ({"scores": [{"score": 0.5}]}, "lacks the key 'scores.0.lr'")):
        path.write_text(json.dumps(good | damage))
        assert read_decision(path) is None and said in capsys.readouterr().err
    path.write_text(json.dumps(good))
    assert read_decision(path) == good
    committed = Path(__file__).parent.parent / "results" / "tuning"
    for decision in sorted(committed.glob("[!.]*.json")):
        DecisionRecord.model_validate(json.loads(decision.read_text()))
