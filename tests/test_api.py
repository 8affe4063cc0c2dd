"""The Python API (`import grporm`): light to import, load_runs / run / verdict."""
from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

import grporm
from grporm.analysis.records import RunSet

from tiny_runs import write_experiment


def test_import_grporm_loads_neither_torch_nor_pandas():
    code = ("import sys, grporm; heavy = [m for m in ('torch', 'pandas', 'grporm.analysis', 'grporm.api') if m in sys.modules]; "
            "assert not heavy, heavy; assert callable(grporm.load_runs) and 'grporm.api' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(__file__))


def test_an_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        grporm.nothing  # noqa: B018


def test_load_runs_reads_hand_made_records(tmp_path, write_run):
    for s in range(2):
        write_run(tmp_path, "main", f"ce-s{s}", method="ce", seed=s, sr=0.8 + 0.01 * s)
    write_run(tmp_path, "main", "grpo-s0", method="grpo_rm", seed=0, sr=0.9, status="failed")
    run_set = grporm.load_runs(tmp_path)
    assert isinstance(run_set, RunSet)
    assert sorted(run_set.runs["run_id"]) == ["ce-s0", "ce-s1"]
    assert list(run_set.runs.sort_values("seed")["sr_top1"]) == pytest.approx([0.8, 0.81])
    assert len(run_set.excluded) == 1 and "failed" in run_set.excluded[0][1]
    assert set(run_set.metrics["family"]) >= {"clean", "cost"}


def test_verdict_returns_the_verdict_frame_of_the_records(tmp_path, write_run, monkeypatch):
    """verdict_frame is the verdict module's (analysis.verdict); stood in for here with the runs it gets."""
    from grporm.analysis import verdict as verdict_module

    write_run(tmp_path, "study", "ce-s0", method="ce", seed=0, sr=0.8)
    seen = []

    def frame_of(run_set):
        seen.append(sorted(run_set.runs["run_id"]))
        return pd.DataFrame({"experiment": ["study"], "diff": [1.0]})

    monkeypatch.setattr(verdict_module, "verdict_frame", frame_of, raising=False)
    frame = grporm.verdict(tmp_path)
    assert seen == [["ce-s0"]] and list(frame["diff"]) == [1.0]


@pytest.mark.slow
def test_run_trains_an_experiment_and_returns_its_records(tmp_path, monkeypatch):
    from grporm import runner

    monkeypatch.setattr(runner, "_TRAINED_IN_PROCESS", False)  # as in a fresh process
    path = write_experiment(tmp_path, matrix={"seed": [0, 1]})
    said = []
    run_set = grporm.run(path, overrides=["train.epochs=1"], results=tmp_path / "results",
                         checkpoints=tmp_path / "checkpoints", echo=said.append)
    assert sorted(run_set.runs["seed"]) == [0, 1] and set(run_set.runs["experiment"]) == {"tiny"}
    assert run_set.runs["sr_top1"].between(0, 1).all()
    assert any("[2/2]" in line for line in said)
    first = {r["seed"]: r["timing"]["first_in_process"] for r in run_set.records.values()}
    assert first == {0: True, 1: False}  # the first run of the process pays its warm-up
    again = grporm.run(path, overrides=["train.epochs=1"], results=tmp_path / "results",
                       checkpoints=tmp_path / "checkpoints", echo=said.append)
    assert sorted(again.runs["run_id"]) == sorted(run_set.runs["run_id"])  # finished runs are skipped
    assert sum("finished" in line for line in said) >= 2
