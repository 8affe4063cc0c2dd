"""`grporm verify` on fabricated record folders (committed records copied and perturbed), and the
determinism it relies on: two fresh processes running the same tiny config write identical records."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grporm.cli import app
from grporm.verify import (
    CROSS_MACHINE,
    SEED_MULTIPLE,
    compare,
    cross_machine_tolerance,
    load_finished,
    metric_values,
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


def block(output: str, run_id: str) -> dict[str, str]:
    """metric -> its line, in the block of one run of verify's output."""
    out, inside = {}, False
    for line in output.splitlines():
        if not line.startswith("  "):
            inside = line.startswith(f"quick/{run_id} ")
        elif inside and "committed" not in line:
            out[line.split()[0]] = line
    return out


def test_the_cross_machine_tolerance_is_read_from_the_committed_measurement():
    points, where = cross_machine_tolerance()
    assert points == pytest.approx(2.6) and "tf_efficientnet_lite0-grpo_rm-s0 kNN@20" in where
    rows = [r for r in csv.DictReader(ln for ln in CROSS_MACHINE.read_text().splitlines() if not ln.startswith("#"))]
    assert len(rows) == 18  # the 6 rows x 3 metrics of the reported table


def test_a_copy_of_the_committed_records_is_exact(tmp_path):
    result = verify(str(copy_experiment(tmp_path, "quick")))
    assert result.exit_code == 0, result.output
    assert "16 exact, 0 within, 0 OUTSIDE; 0 missing" in result.output and "reproduced" in result.output


def test_within_outside_missing_and_not_comparable(tmp_path):
    copy_experiment(tmp_path, "quick")
    edit(tmp_path, "quick", QUICK, lambda r: r["metrics"].update(sr_top1=r["metrics"]["sr_top1"] + 0.02,
                                                                  head_top1=r["metrics"]["head_top1"] - 0.03))
    result = verify(str(tmp_path))
    assert result.exit_code == 1, result.output
    lines = block(result.output, QUICK)
    assert "within" in lines["SR"] and "+2.00" in lines["SR"] and "OUTSIDE" in lines["head"] and "-3.00" in lines["head"]

    shutil.rmtree(tmp_path / "quick" / "runs" / "fashion_mnist-mobilenetv2_100-ce-s0")
    edit(tmp_path, "quick", "fashion_mnist-mobilenetv2_100-grpo_rm-s0", lambda r: r.update(config_hash="0" * 12))
    edit(tmp_path, "quick", QUICK, lambda r: r["metrics"].update(head_top1=r["metrics"]["head_top1"] + 0.01))
    result = verify(str(tmp_path))
    assert result.exit_code == 1
    assert "MISSING  quick/fashion_mnist-mobilenetv2_100-ce-s0" in result.output
    assert "NOT COMPARABLE  quick/fashion_mnist-mobilenetv2_100-grpo_rm-s0" in result.output
    assert "1 missing, 1 not comparable" in result.output


def test_tolerance_from_the_seeds_where_there_are_several(tmp_path):
    committed, _ = load_finished(COMMITTED, "study_readings")
    spreads = seed_spreads(committed)
    setting = "fashion_mnist-tf_efficientnet_lite0-ce-arm=ce"
    std, seeds = spreads[("study_readings", setting, "SR")]
    assert seeds == 5 and std > 0
    rerun = {k: json.loads(json.dumps(v)) for k, v in committed.items() if k[1] == setting + "-s1"}
    key = ("study_readings", setting + "-s1")
    rerun[key]["metrics"]["sr_top1"] += 0.9 * SEED_MULTIPLE * std / 100
    report = compare({k: v for k, v in committed.items()}, rerun, (2.6, "x"))
    line = next(ln for ln in report.lines if ln.metric == "SR")
    assert line.tolerance == pytest.approx(SEED_MULTIPLE * std) and line.verdict == "within" and line.basis == "seeds (5)"
    rerun[key]["metrics"]["sr_top1"] += 0.2 * SEED_MULTIPLE * std / 100
    assert next(ln for ln in compare(committed, rerun, (2.6, "x")).lines if ln.metric == "SR").verdict == "OUTSIDE"
    # the pretrained backbone: the seed changes nothing (std 0), so the cross-machine figure applies
    pre = ("study_readings", "fashion_mnist-tf_efficientnet_lite0-pretrained-arm=pretrained-s0")
    lines = compare(committed, {pre: committed[pre]}, (2.6, "x")).lines
    assert {ln.basis for ln in lines} == {"cross-machine"} and all(ln.tolerance == 2.6 for ln in lines)


def test_metrics_compared_include_what_the_records_share():
    assert set(metric_values({"seg": {"miou": 0.5, "pixel_acc": 0.9}})) == {"mIoU", "pixel acc"}
    m = metric_values({"head_top1": 0.5, "sr_top1": 0.25, "knn_top1": {"20": 1.0, "10": 0.0},
                       "ood": {"blur": {"1": {"sr_top1": 0.2}, "2": {"sr_top1": 0.4}}}})
    assert m == {"head": 50.0, "SR": 25.0, "kNN@20": 100.0, "OOD mean SR": pytest.approx(30.0)}


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
    write_experiment(tmp_path, train={"lr_grid": [1e-3, 3e-3], "search_epochs": 1, "epochs": 2, "threads": 1})
    _run(tmp_path, "tmpA")
    _run(tmp_path, "tmpB")
    a, b = (tmp_path / name / "tiny" / "runs" / RUN_ID for name in ("tmpA", "tmpB"))
    rec_a, rec_b = (json.loads((p / "record.json").read_text()) for p in (a, b))
    assert {k: v for k, v in rec_a.items() if k not in VOLATILE} == {k: v for k, v in rec_b.items() if k not in VOLATILE}
    assert rec_a["metrics"]["sr_top1"] is not None and rec_a["lr_search"]
    assert _csv(a / "history.csv", "train_seconds") == _csv(b / "history.csv", "train_seconds")
    assert _csv(a / "steps.csv") == _csv(b / "steps.csv")

    result = CliRunner().invoke(app, ["verify", str(tmp_path / "tmpB"), "--against", str(tmp_path / "tmpA")])
    assert result.exit_code == 0, result.output
    assert "0 within, 0 OUTSIDE" in result.output and "expected exact" in result.output
    assert all(ln.rstrip().endswith("exact") for ln in result.output.splitlines()
               if ln.startswith("  ") and "committed" not in ln)
