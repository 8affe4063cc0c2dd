"""Learning-rate tuning: the grid rule, the decision (edge extension, close calls), the key of a
setting, runs reusing a decision, one process per key, and the report section."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.tuning import decisions_markdown, load_records
from grporm import learning_rate
from grporm.config import RunConfig
from grporm.errors import ConfigError
from grporm.experiment import build_experiment
from grporm.locks import RunLock
from grporm.tuning import (
    binomial_se,
    check_grid,
    decide,
    lock_path,
    record_path,
    tuning_epochs,
    tuning_key,
)

from tiny_runs import invoke, record, write_experiment

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
class Scorer:
    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, lr):
        self.calls.append(lr)
        return self.fn(lr)


def test_an_interior_winner_is_kept_without_extension():
    score = Scorer({1e-4: 0.5, 1e-3: 0.8, 1e-2: 0.6}.get)
    d = decide(GRID, score, n_val=1000)
    assert (d.winner, d.extended, d.edge, d.grid) == (1e-3, [], False, GRID)
    assert d.margin == pytest.approx(0.2) and not d.close_call and score.calls == GRID


def test_an_edge_winner_extends_the_grid_by_its_own_step_up_to_the_bound():
    score = Scorer(lambda lr: lr)  # the larger the better, forever
    d = decide(GRID, score, n_val=100, max_extensions=2)
    assert d.grid == [1e-4, 1e-3, 1e-2, 0.1, 1.0] and d.extended == ["up", "up"]
    assert d.winner == 1.0 and d.edge
    assert sorted(score.calls) == d.grid  # each value scored once


def test_extension_down_stops_when_the_winner_is_inside_again():
    # 3e-4 / 1e-3 is the bottom step; the extension adds 9e-5 (round), which loses to 3e-4.
    score = Scorer({9e-5: 0.5, 3e-4: 0.9, 1e-3: 0.7, 3e-3: 0.6, 1e-2: 0.1}.get)
    d = decide([3e-4, 1e-3, 3e-3, 1e-2], score, n_val=1000)
    assert d.grid == [9e-5, 3e-4, 1e-3, 3e-3, 1e-2] and d.extended == ["down"]
    assert d.winner == 3e-4 and not d.edge


def test_no_extension_allowed_flags_the_edge():
    d = decide(GRID, lambda lr: -lr, n_val=100, max_extensions=0)
    assert (d.winner, d.extended, d.edge) == (1e-4, [], True)


def test_close_call_is_a_margin_below_the_binomial_se():
    se = binomial_se(0.85, 1000)
    assert se == pytest.approx(0.01129, abs=1e-5)
    close = decide(GRID, {1e-4: 0.80, 1e-3: 0.85, 1e-2: 0.85 - se / 2}.get, n_val=1000)
    clear = decide(GRID, {1e-4: 0.80, 1e-3: 0.85, 1e-2: 0.85 - 2 * se}.get, n_val=1000)
    assert close.close_call and not clear.close_call
    assert close.se == pytest.approx(se)


def test_ties_go_to_the_smaller_lr_and_are_close_calls():
    d = decide(GRID, {1e-4: 0.5, 1e-3: 0.9, 1e-2: 0.9}.get, n_val=1000, max_extensions=0)
    assert d.winner == 1e-3 and d.margin == 0 and d.close_call


def test_a_diverged_value_never_wins_and_all_diverged_is_an_error():
    d = decide(GRID, {1e-4: 0.5, 1e-3: 0.6, 1e-2: None}.get, n_val=100)
    assert d.winner == 1e-3 and d.scores[1e-2] is None and d.margin == pytest.approx(0.1)
    with pytest.raises(ValueError, match="diverged at every"):
        decide(GRID, lambda lr: None, n_val=100)


# -- the key of a setting ------------------------------------------------------------------------
def key_of(**sections) -> str:
    base = {"experiment": "a", "tune": TUNE}
    for name, value in sections.items():
        base[name] = {**base.get(name, {}), **value} if isinstance(value, dict) else value
    return tuning_key(RunConfig.model_validate(base))


def test_key_ignores_seed_experiment_tracking_and_unused_evaluations():
    key = key_of()
    assert key == key_of(seed=3) == key_of(experiment="ablation_x") == key_of(tracking={"mode": "disabled"})
    assert key == key_of(eval={"ood": {"corruptions": ["gaussian_noise"]}, "knn_k": [20, 200]})
    assert key == key_of(train={"lr": 0.5, "lr_grid": [1e-3, 1e-2], "threads": 1, "channels_last": False})


def test_key_changes_with_what_changes_the_decision():
    key = key_of()
    changed = [key_of(tune={**TUNE, "grid": [1e-5, 1e-4, 1e-3]}), key_of(tune={**TUNE, "seed": 1}),
               key_of(tune={**TUNE, "score": "sr"}), key_of(method="ce"), key_of(data={"train_per_class": 50}),
               key_of(data={"imbalance_factor": 10}), key_of(model={"name": "mobilenetv2_100"}),
               key_of(train={"epochs": 5}), key_of(grpo_rm={"clip_eps": 0.3}), key_of(eval={"knn_temperature": 0.1})]
    assert len({key, *changed}) == len(changed) + 1


def test_grpo_settings_are_not_part_of_a_ce_key_and_default_tune_keeps_the_hash():
    assert key_of(method="ce") == key_of(method="ce", grpo_rm={"clip_eps": 0.3})
    plain = RunConfig(method="ce")
    assert "tune" not in plain.hash_payload()  # committed records keep their hashes
    assert RunConfig(method="ce", tune={"grid": GRID}).config_hash() != plain.config_hash()


def test_a_base_file_passes_its_tune_section_on(tmp_path):
    from grporm.experiment import load_experiment

    (tmp_path / "base.yaml").write_text("tune: {grid: [1.0e-4, 1.0e-3, 1.0e-2], score: knn20}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nmatrix: {seed: [0, 1]}\ntune: {fraction: 0.5}\n")
    runs = load_experiment(tmp_path / "child.yaml").runs
    assert [r.tune.grid for r in runs] == [GRID, GRID] and runs[0].tune.fraction == 0.5
    assert tuning_key(runs[0]) == tuning_key(runs[1])


# -- runs and the `tune` command (tiny real runs) --------------------------------------------------
def fake_record(results: Path, run: RunConfig, winner: float) -> None:
    path = record_path(results, tuning_key(run))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": tuning_key(run), "label": "tiny", "score": "knn20", "grid": GRID,
                                "scores": [{"lr": lr, "score": 0.5, "n_val": 30} for lr in GRID], "winner": winner,
                                "margin": 0.0, "se": 0.09, "close_call": True, "edge": False, "extended": []}))


def test_a_run_reuses_the_decision_without_training_candidates(tmp_path, monkeypatch):
    path = write_experiment(tmp_path, tune=TUNE, seed=1)
    run = build_experiment(__import__("yaml").safe_load(path.read_text()), str(path)).runs[0]
    fake_record(tmp_path / "results", run, winner=1e-2)
    monkeypatch.setattr(learning_rate.TuningTrial, "score", lambda *a: pytest.fail("a candidate was trained"))
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    rec = record(tmp_path, run_id="digits-test_vit-grpo_rm-s1")
    assert rec["lr"] == 1e-2 and rec["lr_search"] == []
    assert rec["tuning"] == {"key": tuning_key(run), "winner": 1e-2, "margin": 0.0, "close_call": True, "edge": False}


def tune_cli(folder: Path, *args: str):
    return invoke(folder, *args, command="tune")


def test_tune_decides_once_per_setting_and_a_run_then_trains_at_the_winner(tmp_path, monkeypatch):
    write_experiment(tmp_path, tune={**TUNE, "max_extensions": 0}, matrix={"seed": [0, 1], "method": ["pretrained", "ce"]})
    scored = []
    real = learning_rate.TuningTrial.score
    monkeypatch.setattr(learning_rate.TuningTrial, "score", lambda self, lr: scored.append(lr) or real(self, lr))
    result = tune_cli(tmp_path)
    assert result.exit_code == 0, result.output
    assert scored == GRID  # one setting (ce; seeds share it, pretrained needs none), each value once
    (rec,) = load_records(tmp_path / "results")
    assert [row["lr"] for row in rec["scores"]] == GRID and rec["winner"] in GRID and rec["n_val"] == 30
    assert rec["seed"] == 0 and rec["epochs"] == 3 and rec["env"]["torch"] and rec["config_hash"]
    assert "| digits / 16 px, 6/class / test_vit / ce |" in result.output and not list((tmp_path / "results" / "tuning").glob(".*"))
    again = tune_cli(tmp_path)
    assert "decided already" in again.output and scored == GRID
    assert invoke(tmp_path, "--only", "ce-s1").exit_code == 0 and scored == GRID
    assert record(tmp_path, run_id="digits-test_vit-ce-s1")["lr"] == rec["winner"]


def test_a_key_locked_by_another_process_is_not_tuned_twice(tmp_path, monkeypatch):
    write_experiment(tmp_path, tune=TUNE, matrix={"method": ["ce", "grpo_rm"]})
    runs = build_experiment(__import__("yaml").safe_load((tmp_path / "exp.yaml").read_text()), "exp.yaml").runs
    monkeypatch.setattr(learning_rate.TuningTrial, "score", lambda self, lr: {1e-4: 0.2, 1e-3: 0.5, 1e-2: 0.3}[lr])
    results = tmp_path / "results"
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
    from analysis.tuning import tuning_section

    run = RunConfig(method="ce", tune=TUNE)
    fake_record(tmp_path, run, winner=1e-3)
    lines, files = tuning_section(tmp_path)
    text = "\n".join(lines)
    assert text.startswith("## Tuning decisions") and "| tiny |" in text and "close call" in text
    assert set(files) == {".md", ".tex", ".csv"} and files[".md"] == decisions_markdown(load_records(tmp_path))
    assert files[".tex"].count("\\\\") == 2 and "\\begin{tabular}" in files[".tex"]
    assert len(files[".csv"].splitlines()) == 1 + len(GRID)
    empty, none = tuning_section(tmp_path / "nothing")
    assert "No tuning record" in "\n".join(empty) and none == {}


def test_two_processes_needing_one_key_tune_it_once_and_the_second_waits(tmp_path, monkeypatch):
    import threading
    import time

    write_experiment(tmp_path, tune=TUNE)
    run = build_experiment(__import__("yaml").safe_load((tmp_path / "exp.yaml").read_text()), "exp.yaml").runs[0]
    scored = []

    def slow(self, lr):
        scored.append(lr)
        time.sleep(0.1)
        return {1e-4: 0.2, 1e-3: 0.5, 1e-2: 0.3}[lr]

    monkeypatch.setattr(learning_rate.TuningTrial, "score", slow)
    outcomes, messages = [], []
    workers = [threading.Thread(target=lambda: outcomes.append(learning_rate.decision_for(
        run, tmp_path / "results", poll_seconds=0.05, echo=messages.append))) for _ in range(2)]
    for w in workers:
        w.start()
        time.sleep(0.02)
    for w in workers:
        w.join()
    assert scored == GRID  # once each, by one of them
    assert sorted(how for _, how in outcomes) == ["found", "tuned"]
    assert outcomes[0][0]["winner"] == outcomes[1][0]["winner"] == 1e-3
    assert any("waiting for it" in m for m in messages)


def test_labels_tell_the_readings_of_one_study_apart():
    from grporm.experiment import load_experiment
    from grporm.tuning import label, needs_decision

    runs = [r for r in load_experiment("experiments/studies/readings.yaml").runs if needs_decision(r)]
    labels = {label(r) for r in runs}
    keys = {tuning_key(r) for r in runs}
    assert len(labels) == len(keys) == 2 * 8  # two backbones x (CE and seven readings)
    assert ("fashion_mnist / 32 px, 200/class / mobilenetv2_100 / grpo_rm "
            "(rewards=uniformity_all:1, advantage_scale=none, grad_clip=0.1)") in labels
