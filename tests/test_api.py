"""The Python API (`import grporm`): light to import, load_runs / run / verdict."""
from __future__ import annotations

import json
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

    monkeypatch.setattr(verdict_module, "verdict_frame", frame_of)
    frame = grporm.verdict(tmp_path)
    assert seen == [["ce-s0"]] and list(frame["diff"]) == [1.0]


@pytest.mark.slow
def test_run_trains_an_experiment_and_returns_its_records(tmp_path, monkeypatch):
    from grporm.training import runner
    monkeypatch.setattr(runner, "_TRAINED_IN_PROCESS", False)  # as in a fresh process
    path = write_experiment(tmp_path, matrix={"seed": [0, 1]})
    said = []
    run_set = grporm.run(path, overrides=["train.epochs=1"], results=tmp_path / "results",
                         checkpoints=tmp_path / "checkpoints", echo=said.append)
    assert sorted(run_set.runs["seed"]) == [0, 1] and set(run_set.runs["experiment"]) == {"tiny"}
    assert run_set.runs["sr_top1"].between(0, 1).all()
    assert any("[2/2]" in line for line in said)
    first = {r.seed: r.timing.first_in_process for r in run_set.records.values()}
    assert first == {0: True, 1: False}  # the first run of the process pays its warm-up
    again = grporm.run(path, overrides=["train.epochs=1"], results=tmp_path / "results",
                       checkpoints=tmp_path / "checkpoints", echo=said.append)
    assert sorted(again.runs["run_id"]) == sorted(run_set.runs["run_id"])  # finished runs are skipped
    assert sum("finished" in line for line in said) >= 2


def _two_arms(write_run, root, exp="same", shift=0.05, copies=1):
    for s in range(3):
        write_run(root, exp, f"ce-s{s}", method="ce", seed=s, sr=0.80 + 0.01 * s, axes={"arm": "ce"})
        for c in range(copies):  # a copy under another run id: the same config and seed, a duplicate
            folder = write_run(root, exp, f"g{'-copy' * c}-s{s}", method="grpo_rm", seed=s, sr=0.80 + shift + 0.011 * s,
                               axes={"arm": "g"})
            record = json.loads((folder / "record.json").read_text())
            (folder / "record.json").write_text(json.dumps({**record, "config_hash": f"g{s}"}))


def test_verdict_and_compare_follow_one_rule_for_several_folders(tmp_path, write_run, capsys):
    """Two folders with the same experiment: kept apart by folder in both the API and `grporm compare`;
    a duplicate run is dropped and said; overlapping folders and a file are refused in one line."""
    from typer.testing import CliRunner

    from grporm.cli import app
    from grporm.errors import GrpormError

    a, b = tmp_path / "a", tmp_path / "b"
    _two_arms(write_run, a, copies=2)
    _two_arms(write_run, b, shift=-0.05)
    said = []
    frame = grporm.verdict(a, b, echo=said.append)
    assert set(frame["experiment"]) == {f"{a}/same", f"{b}/same"}
    assert len(said) == 3 and all("duplicate of run" in line for line in said)
    result = CliRunner().invoke(app, ["compare", str(a), str(b)])
    assert result.exit_code == 0 and f"### `{a}/same`" in result.output and f"### `{b}/same`" in result.output
    assert result.output.count("duplicate of run") == 3  # said on stderr (mixed in here)
    grporm.verdict(a)
    assert capsys.readouterr().err.count("warning: ") == 3  # the default says it on stderr
    for bad, message in (((a, a / "same"), "lies inside"), ((tmp_path / "a" / "same" / "runs" / "ce-s0" / "record.json",),
                                                           "is a file, not a results folder")):
        with pytest.raises(GrpormError, match=message):
            grporm.verdict(*bad)
        out = CliRunner().invoke(app, ["compare", *map(str, bad)])
        assert out.exit_code == 2 and message in out.output
