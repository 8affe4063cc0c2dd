"""`grporm verify` on fabricated record folders (committed records copied and perturbed), and the
determinism it relies on: two fresh processes running the same tiny config write identical records."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from grporm.cli import app
from grporm.records.verify import (
    CROSS_MACHINE,
    NOISE_EXPERIMENT,
    SEED_MULTIPLE,
    CrossMachine,
    Finished,
    compare,
    cross_machine_tolerance,
    dataset_spreads,
    load_finished,
    noise_floor,
    noise_tolerance,
    seed_spreads,
)

from tiny_runs import RUN_ID, env, write_experiment

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "results"
QUICK = "fashion_mnist-tf_efficientnet_lite0-grpo_rm-s0"


def copy_experiment(dest: Path, experiment: str, runs: list[str] | None = None) -> Path:
    source = COMMITTED / experiment / "runs"
    for run in runs or [p.name for p in source.iterdir()]:
        target = dest / experiment / "runs" / run
        target.mkdir(parents=True)
        shutil.copy(source / run / "record.json", target / "record.json")
    return dest


def edit(folder: Path, experiment: str, run: str, change) -> None:
    path = folder / experiment / "runs" / run / "record.json"
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def verify(*args: str):
    return CliRunner().invoke(app, ["verify", *args, "--against", str(COMMITTED)])


def block(output: str, run_id: str, experiment: str = "quick") -> dict[str, str]:
    """metric -> its line, in the block of one run of verify's output."""
    out, inside = {}, False
    for line in output.splitlines():
        if not line.startswith("  "):
            inside = line.startswith(f"{experiment}/{run_id} ")
        elif inside and "committed" not in line and not line.startswith("  no value on either side"):
            out[line.split()[0]] = line
    return out


def test_the_cross_machine_tolerance_is_read_from_the_committed_measurement():
    cross = cross_machine_tolerance()
    assert cross.points == pytest.approx(2.6) and "tf_efficientnet_lite0-grpo_rm-s0 kNN@20" in cross.where
    assert cross.dataset == "fashion_mnist"  # named in the table: the records it was measured on were rerun
    rows = [r for r in csv.DictReader(ln for ln in CROSS_MACHINE.read_text().splitlines() if not ln.startswith("#"))]
    assert len(rows) == 18  # the 6 rows x 3 metrics of the reported table


def test_a_copy_of_the_committed_records_is_exact(tmp_path):
    result = verify(str(copy_experiment(tmp_path, "quick")))
    assert result.exit_code == 0, result.output
    committed, _ = load_finished(COMMITTED, "quick")
    compared = sum(v is not None for run in committed.values() for k, v in run.values.items() if k != "sr_l2")
    assert f"{compared} exact, 0 within, 0 OUTSIDE, 0 BROKEN; 0 missing" in result.output
    assert "-> reproduced" in result.output and "not compared: sr_l2" in result.output


def _record(dataset: str, seed: int, metrics: dict, run_id: str | None = None) -> dict:
    return {"run_id": run_id or f"{dataset}-b-ce-s{seed}", "experiment": "e", "status": "finished", "method": "ce",
            "dataset": dataset, "backbone": "b", "seed": seed, "config_hash": "h", "metrics": metrics}


def _runs(*records: dict) -> dict:
    return {(r["experiment"], r["run_id"]): Finished.of(r) for r in records}


def _write(root: Path, *records: dict) -> Path:
    for r in records:
        folder = root / r["experiment"] / "runs" / r["run_id"]
        folder.mkdir(parents=True)
        (folder / "record.json").write_text(json.dumps(r))
    return root


def test_within_outside_missing_and_not_comparable(tmp_path):
    ce = [_record("d", s, {"sr_top1": 0.80 + 0.01 * s, "head_top1": 0.70 + 0.01 * s}) for s in range(3)]
    grpo, other = _record("d", 0, {"sr_top1": 0.9}, "d-b-grpo_rm-s0"), _record("d", 0, {"sr_top1": 0.5}, "d-b-x-s0")
    committed = _write(tmp_path / "committed", *ce, grpo, other)
    rerun = json.loads(json.dumps([ce[0], ce[2], grpo, other]))
    rerun[0]["metrics"].update(sr_top1=0.82, head_top1=0.55)  # +2 points (seed std 1: ±4.24), -15 points
    rerun[2]["config_hash"] = "0" * 12
    result = CliRunner().invoke(app, ["verify", str(_write(tmp_path / "rerun", *rerun)), "--against", str(committed)])
    assert result.exit_code == 1, result.output
    lines = block(result.output, "d-b-ce-s0", "e")
    assert "within" in lines["sr_top1"] and "+2.00" in lines["sr_top1"] and "seeds (3)" in lines["sr_top1"]
    assert "OUTSIDE" in lines["head_top1"] and "-15.00" in lines["head_top1"]
    assert all(line.endswith("exact") for line in block(result.output, "d-b-ce-s2", "e").values())
    assert "MISSING  e/d-b-ce-s1" in result.output and "NOT COMPARABLE  e/d-b-grpo_rm-s0" in result.output
    assert "1 OUTSIDE, 0 BROKEN; 1 missing, 1 not comparable: 4 of 5 within tolerance" in result.output
    assert "-> NOT reproduced: a value out of tolerance or broken, or a run missing" in result.output


def test_tolerance_from_the_seeds_of_the_setting_then_of_the_data_set_then_cross_machine():
    seeds = [_record("d", s, {"sr_top1": 0.80 + 0.01 * s, "knn_top1": {"20": 0.7}}) for s in range(3)]
    other = [_record("d", s, {"sr_top1": 0.50 + 0.03 * s}, run_id=f"d-b-grpo_rm-s{s}") for s in range(2)]
    single = _record("d", 0, {"sr_top1": 0.6, "knn_top1": {"20": 0.7}}, run_id="d-c-ce-s0")
    elsewhere = _record("fashion_mnist", 0, {"sr_top1": 0.6}, run_id="fashion_mnist-b-ce-s0")
    unmeasured = _record("cifar10", 0, {"sr_top1": 0.6}, run_id="cifar10-b-ce-s0")
    committed = _runs(*seeds, *other, single, elsewhere, unmeasured)
    std = seed_spreads(committed)[("e", "d-b-ce", "sr_top1")][0]
    assert std == pytest.approx(1.0)  # points
    assert dataset_spreads(committed)[("d", "sr_top1")] == (pytest.approx((1.0 + 3 / 2 ** 0.5) / 2), 2)  # median of 2 stds
    cross = CrossMachine(2.6, "x", "fashion_mnist")
    rerun = json.loads(json.dumps(seeds[1]))
    rerun["metrics"]["sr_top1"] += 0.9 * SEED_MULTIPLE * std / 100
    line = next(ln for ln in compare(committed, _runs(rerun), cross).lines if ln.metric == "sr_top1")
    assert line.tolerance == pytest.approx(SEED_MULTIPLE * std) and line.verdict == "within" and line.basis == "seeds (3)"
    rerun["metrics"]["sr_top1"] += 0.2 * SEED_MULTIPLE * std / 100
    assert next(ln for ln in compare(committed, _runs(rerun), cross).lines if ln.metric == "sr_top1").verdict == "OUTSIDE"
    # knn20 is the same for every seed (std 0) and nowhere spread in data set d: nothing measured, exact only
    line = next(ln for ln in compare(committed, _runs(rerun), cross).lines if ln.metric == "knn20_top1")
    assert (line.basis, line.tolerance, line.verdict) == ("none", 0.0, "exact")
    lines = {ln.run_id: ln for ln in compare(committed, _runs(single, elsewhere, unmeasured), cross).lines
             if ln.metric == "sr_top1"}
    assert lines["d-c-ce-s0"].basis == "data set (2)"  # one seed: the data set's median spread
    assert lines["d-c-ce-s0"].tolerance == pytest.approx(SEED_MULTIPLE * (1.0 + 3 / 2 ** 0.5) / 2)
    assert (lines["fashion_mnist-b-ce-s0"].basis, lines["fashion_mnist-b-ce-s0"].tolerance) == ("cross-machine", 2.6)
    assert lines["cifar10-b-ce-s0"].basis == "none"  # the Fashion-MNIST figure says nothing about CIFAR-10


@pytest.mark.parametrize("rerun_metrics, why", [
    ({"sr_top1": float("nan"), "head_top1": 0.5}, "rerun: nan is not a finite number"),
    ({"head_top1": 0.5}, "rerun: no value (null)"),  # the schema reads an absent scalar as null
    ({"sr_top1": None, "head_top1": 0.5}, "rerun: no value (null)"),
    ({"sr_top1": "0.8", "head_top1": 0.5}, "rerun: '0.8' is not a finite number"),
])
def test_a_value_missing_nan_or_not_a_number_fails_and_is_named(rerun_metrics, why):
    committed = _runs(_record("d", 0, {"sr_top1": 0.8, "head_top1": 0.5, "ece": None}))
    rerun = _runs(_record("d", 0, rerun_metrics))
    report = compare(committed, rerun, CrossMachine(2.6, "x", "d"))
    line = next(ln for ln in report.lines if ln.metric == "sr_top1")
    assert line.verdict == "BROKEN" and line.broken == why and not report.ok
    assert report.absent[("e", "d-b-ce-s0")] == ["ece", "val_head_top1"]  # null on both sides: named, not compared
    # the same on the committed side
    report = compare(_runs(_record("d", 0, rerun_metrics)), _runs(_record("d", 0, {"sr_top1": 0.8, "head_top1": 0.5})),
                     CrossMachine(2.6, "x", "d"))
    assert next(ln for ln in report.lines if ln.metric == "sr_top1").broken == why.replace("rerun", "committed")


def test_a_section_value_the_rerun_lacks_fails():
    ood = {"blur": {"1": {"sr_top1": 0.2}, "2": {"sr_top1": 0.1}}}
    rerun = {"blur": {"1": {"sr_top1": 0.2}}}
    report = compare(_runs(_record("d", 0, {"sr_top1": 0.8, "ood": ood})),
                     _runs(_record("d", 0, {"sr_top1": 0.8, "ood": rerun})), CrossMachine(2.6, "x", "d"))
    broken = [(ln.metric, ln.broken) for ln in report.lines if ln.verdict == "BROKEN"]
    assert broken == [("ood/blur/2/sr_top1", "rerun: missing")] and not report.ok


def test_every_section_is_compared_value_by_value():
    metrics = {"sr_top1": 0.8, "sr_l2": 0.001, "per_class": {"sr": [0.8]}, "knn_top1": {"10": 0.7},
               "ood": {"blur": {"1": {"sr_top1": 0.2}}}, "transfer": {"mnist": {"sr_top1": 0.3}},
               "imbalance": {"sr": {"few": 0.1}}}
    lines = compare(_runs(_record("d", 0, metrics)), _runs(_record("d", 0, metrics)), CrossMachine(2.6, "x", "d")).lines
    assert [ln.metric for ln in lines] == ["sr_top1", "knn10_top1", "ood/blur/1/sr_top1", "transfer/mnist/sr_top1",
                                           "imbalance/sr/few"]  # sr_l2 and per_class: named as not compared
    seg = {"seg": {"miou": 0.5, "pixel_acc": 0.9}}
    assert [ln.metric for ln in compare(_runs(_record("d", 0, seg)), _runs(_record("d", 0, seg)),
                                        CrossMachine(2.6, "x", "d")).lines] == ["seg/miou", "seg/pixel_acc"]


@pytest.mark.parametrize("case", ["no such folder", "a file", "no finished run", "wrong --against"])
def test_bad_verify_input_is_one_line(tmp_path, case):
    target, against = tmp_path / "rerun", COMMITTED
    if case == "a file":
        target.write_text("x")
    elif case == "no finished run":
        target.mkdir()
    elif case == "wrong --against":
        copy_experiment(target, "quick")
        against = tmp_path
    result = CliRunner().invoke(app, ["verify", str(target), "--against", str(against)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert result.stderr.startswith("error: ") and "Traceback" not in result.output


# ---------------------------------------------------------------- determinism in fresh processes

VOLATILE = {"timing", "host", "pid", "started_at", "finished_at", "wandb", "env"}


def _run(folder: Path, results: str) -> None:
    done = subprocess.run([sys.executable, "-m", "grporm", "run", "exp.yaml", "--results", results,
                           "--checkpoints", results + "-ckpt"], cwd=folder, capture_output=True, text=True,
                          timeout=300, env={**env(), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == 0, done.stderr


def _csv(path: Path, drop: str | None = None) -> list[dict]:
    rows = list(csv.DictReader(path.open()))
    return [{k: v for k, v in row.items() if k != drop} for row in rows]


def test_two_fresh_processes_write_identical_records_and_verify_says_exact(tmp_path):
    write_experiment(tmp_path, train={"epochs": 2, "threads": 1})
    _run(tmp_path, "tmpA")
    _run(tmp_path, "tmpB")
    a, b = (tmp_path / name / "tiny" / "runs" / RUN_ID for name in ("tmpA", "tmpB"))
    rec_a, rec_b = (json.loads((p / "record.json").read_text()) for p in (a, b))
    assert {k: v for k, v in rec_a.items() if k not in VOLATILE} == {k: v for k, v in rec_b.items() if k not in VOLATILE}
    assert rec_a["metrics"]["sr_top1"] is not None
    assert _csv(a / "history.csv", "train_seconds") == _csv(b / "history.csv", "train_seconds")
    assert _csv(a / "steps.csv") == _csv(b / "steps.csv")

    result = CliRunner().invoke(app, ["verify", str(tmp_path / "tmpB"), "--against", str(tmp_path / "tmpA")])
    assert result.exit_code == 0, result.output
    assert "0 within, 0 OUTSIDE" in result.output and "expected exact" in result.output
    assert all(ln.rstrip().endswith("exact") for ln in result.output.splitlines()
               if ln.startswith("  ") and "committed" not in ln)


# ---------------------------------------------------------------- the training-noise floor, words and CPUs

def _noise(arm: str, seed: int, sr: float, split_seed: int | None = 7, **more) -> dict:
    record = _record("d", seed, {"sr_top1": sr, "sr_l2": 0.001 * seed, **more}, run_id=f"d-b-ce-arm={arm}-s{seed}")
    return {**record, "experiment": NOISE_EXPERIMENT, "config": {"data": {"split_seed": split_seed}}}


def test_the_noise_sd_pools_the_arms_variances_with_their_degrees_of_freedom():
    records = _runs(_noise("a", 0, 0.80), _noise("a", 1, 0.82), _noise("a", 2, 0.84),  # var 4 points², 2 df
                    _noise("b", 0, 0.70), _noise("b", 1, 0.71),                        # var 0.5, 1 df
                    _noise("c", 0, 0.10, split_seed=None), _noise("c", 1, 0.90, split_seed=None),  # a draw per seed: not noise alone
                    _record("d", 0, {"sr_top1": 0.1}), _record("d", 1, {"sr_top1": 0.9}))  # another experiment
    floor, why = noise_floor(records)
    assert why == "" and set(floor.sd) == {"sr_top1"}  # sr_l2 is a setting, not compared (NOT_COMPARED)
    sd, df = floor.sd["sr_top1"]
    assert df == 3 and sd == pytest.approx(((8 + 0.5) / 3) ** 0.5)
    assert "2 arms" in floor.where and "5 runs" in floor.where


def test_the_noise_tolerance_is_the_bonferroni_t_bound_on_the_difference_of_two_runs():
    from scipy import stats

    assert noise_tolerance(1.0, 16, 1) == pytest.approx(stats.t.ppf(0.975, 16) * 2 ** 0.5)
    assert noise_tolerance(1.0, 16, 200) == pytest.approx(stats.t.ppf(1 - 0.05 / 400, 16) * 2 ** 0.5)
    assert noise_tolerance(2.0, 16, 200) == pytest.approx(2 * noise_tolerance(1.0, 16, 200))
    assert noise_tolerance(1.0, 16, 200) > noise_tolerance(1.0, 16, 10) > noise_tolerance(1.0, 100, 10)  # more values, fewer df: wider
    # the false-alarm rate it promises: K values of pure training noise, all within at least 95% of the time
    rng = np.random.default_rng(0)
    K, df, sd = 50, 16, 1.3
    estimates = sd * np.sqrt(rng.chisquare(df, 4000) / df)  # the SD as measured by a noise experiment
    deltas = rng.normal(0, sd * 2 ** 0.5, (4000, K))
    tolerances = np.array([noise_tolerance(s, df, K) for s in estimates])
    assert (np.abs(deltas) <= tolerances[:, None]).all(axis=1).mean() >= 0.95 - 0.01


def test_no_noise_records_is_said_and_the_seed_spreads_stand_in():
    floor, why = noise_floor(_runs(_record("d", 0, {"sr_top1": 0.8})), where="results")
    assert floor is None and why.startswith("no training-noise records (no finished run of experiment noise in results)")
    assert "make noise" in why
    floor, why = noise_floor(_runs(_noise("c", 0, 0.1, split_seed=None), _noise("c", 1, 0.2, split_seed=None)))
    assert floor is None and "do not pin one data draw (data: split_seed)" in why


def test_values_the_noise_measured_get_its_tolerance_the_others_the_fallback():
    noise = [_noise("a", s, 0.80 + 0.01 * s) for s in range(3)] + [_noise("b", s, 0.70 + 0.02 * s) for s in range(3)]
    seeds = [_record("d", s, {"sr_top1": 0.80 + 0.01 * s, "ood": {"blur": {"1": {"sr_top1": 0.5 + 0.01 * s}}}}) for s in range(3)]
    committed = _runs(*noise, *seeds)
    floor, _ = noise_floor(committed)
    rerun = json.loads(json.dumps(seeds[1]))
    report = compare(committed, _runs(rerun), CrossMachine(2.6, "x", "d"), noise=floor)
    lines = {ln.metric: ln for ln in report.lines}
    assert lines["sr_top1"].basis == "noise (4 df)"
    assert lines["sr_top1"].tolerance == pytest.approx(noise_tolerance(floor.sd["sr_top1"][0], 4, family=2))
    assert lines["ood/blur/1/sr_top1"].basis == "seeds (3)"  # not measured by the noise runs


def _word_folders(tmp_path: Path, treatment_shift: float, rerun_move: float = 0.0) -> tuple[Path, Path]:
    """Committed: CE at 80 points, grpo_rm 10 points behind on 4 seeds (tiny spread), a noise floor of
    SD 10 points; rerun: the same runs, grpo_rm moved by `treatment_shift` points and every value by
    `rerun_move`, on another CPU."""
    def arm(method: str, seed: int, sr: float, cpu: str) -> dict:
        record = _record("d", seed, {"sr_top1": sr / 100}, run_id=f"d-b-{method}-s{seed}")
        return {**record, "method": method, "env": {"cpu": cpu, "cpu_count": 2}}

    wobble = [0.1, -0.1, 0.1, -0.1]
    committed = [arm("ce", s, 80 + s, "AMD EPYC") for s in range(4)]
    committed += [arm("grpo_rm", s, 70 + s + wobble[s], "AMD EPYC") for s in range(4)]
    noise = [_noise(a, s, v / 100) for a, values in (("a", (60, 70, 80)), ("b", (65, 75, 85))) for s, v in enumerate(values)]
    rerun = [arm("ce", s, 80 + s + rerun_move, "Intel Xeon") for s in range(4)]
    rerun += [arm("grpo_rm", s, 70 + s + wobble[s] + treatment_shift + rerun_move, "Intel Xeon") for s in range(4)]
    return _write(tmp_path / "committed", *committed, *noise), _write(tmp_path / "rerun", *rerun)


def test_verify_where_only_values_move_reproduces_and_names_both_cpus(tmp_path):
    committed, rerun = _word_folders(tmp_path, treatment_shift=0.0, rerun_move=1.5)
    result = CliRunner().invoke(app, ["verify", str(rerun), "--against", str(committed)])
    assert result.exit_code == 0, result.output
    assert "0 exact, 8 within, 0 OUTSIDE, 0 BROKEN; 0 missing, 0 not comparable: 8 of 8 within tolerance" in result.output
    assert "noise (4 df)" in result.output and "training-noise SD (points; 4 df): sr_top1 10.00" in result.output
    assert "cell words: 1 of 1 equal\n" in result.output
    assert re.search(r"decided claims: 1 of 1 equal \(e / SR: (\w+) -> \1\)", result.output), result.output
    assert "CPUs: committed on AMD EPYC (2 cores); rerun on Intel Xeon (2 cores)" in result.output
    assert "environment differs: cpu 'AMD EPYC' vs 'Intel Xeon'" in result.output
    assert result.output.rstrip().endswith("-> reproduced")


def test_verify_lists_a_changed_cell_word_and_fails_on_a_decided_claim_that_differs(tmp_path):
    # grpo_rm from 10 behind to level with CE: the cell word turns, the claim (nothing ahead, every
    # difference well below the margin) reads the same: reported, not a failure
    committed, rerun = _word_folders(tmp_path / "level", treatment_shift=10.0)
    result = CliRunner().invoke(app, ["verify", str(rerun), "--against", str(committed)])
    assert "8 of 8 within tolerance" in result.output and "cell words: 0 of 1 equal; changed: e / SR / d/b / grpo_rm: " \
        "behind -> no difference" in result.output, result.output
    assert result.exit_code == 0 and "decided claims: 1 of 1 equal" in result.output, result.output
    # grpo_rm from 10 behind to 10 ahead: within the (wide) noise tolerance, but the claim turns
    committed, rerun = _word_folders(tmp_path / "ahead", treatment_shift=20.0)
    result = CliRunner().invoke(app, ["verify", str(rerun), "--against", str(committed)])
    assert result.exit_code == 1 and "8 of 8 within tolerance" in result.output, result.output
    assert "changed: e / SR / d/b / grpo_rm: behind -> ahead" in result.output
    assert re.search(r"decided claims: 0 of 1 equal \(e / SR: \w+ -> reproduced\)", result.output), result.output
    assert "-> NOT reproduced: a decided claim reads differently" in result.output
