"""The cost table leaves out the runs that paid their process's warm-up (timing.first_in_process)."""
from __future__ import annotations

import json

import pytest

from grporm.analysis.records import load_runs
from grporm.analysis.report import report_all
from grporm.analysis.sections import SECTIONS, build_table, first_in_process

COST = next(s for s in SECTIONS if s.name == "cost")


def _set(run_dir, **fields):
    path = run_dir / "record.json"
    record = json.loads(path.read_text())
    timing = fields.pop("timing", {})
    record.update(fields)
    record["timing"].update(timing)
    path.write_text(json.dumps(record))


def _train_seconds(table, method: str):
    row = next(r for r in table.rows if r.method == method)
    column = next(i for i, c in enumerate(table.columns) if c.metric == "train_seconds")
    return row.cells[column]


def test_the_first_run_of_a_process_is_left_out_of_the_cost_table(tmp_path, write_run):
    # CE: seed 0 paid the warm-up (19.7 s), seeds 1 and 2 did not; GRPO-RM: no first run
    for s, seconds in enumerate((19.7, 4.3, 4.5)):
        _set(write_run(tmp_path, "main", f"ce-s{s}", method="ce", seed=s, sr=0.8, train_seconds=seconds),
             timing={"first_in_process": s == 0})
        _set(write_run(tmp_path, "main", f"grpo-s{s}", method="grpo_rm", seed=s, sr=0.8, train_seconds=8.0),
             timing={"first_in_process": False})
    table = build_table(COST, load_runs(tmp_path))
    assert _train_seconds(table, "ce").mean == pytest.approx(4.4) and _train_seconds(table, "ce").n == 2
    assert _train_seconds(table, "grpo_rm").n == 3
    assert "first_in_process" in table.legend and "1 left out" in table.legend
    report_all(tmp_path)
    cost = (tmp_path / "REPORT.md").read_text().split("## Cost")[1]
    assert "1 left out" in cost.split("| Experiment")[0]  # the legend above the table says so


def test_a_row_of_first_runs_only_keeps_them_and_says_so(tmp_path, write_run):
    _set(write_run(tmp_path, "quick", "ce-s0", method="ce", seed=0, sr=0.8, train_seconds=19.7),
         timing={"first_in_process": True})
    table = build_table(COST, load_runs(tmp_path))
    assert _train_seconds(table, "ce").mean == pytest.approx(19.7)
    assert "Rows of first runs only, warm-up included: quick / " in table.legend


def test_older_records_infer_the_first_runs_from_host_pid_and_start(tmp_path, write_run):
    """Without the flag: per process (host, pid, experiment), the runs up to the first that trained."""
    runs = [("pre-s0", "pretrained", 1, "00:00"), ("ce-s0", "ce", 1, "00:01"), ("ce-s1", "ce", 1, "00:05"),
            ("grpo-s0", "grpo_rm", 2, "00:00"), ("grpo-s1", "grpo_rm", 2, "00:04"), ("ce-s2", "ce", None, "00:00")]
    for run_id, method, pid, start in runs:
        _set(write_run(tmp_path, "main", run_id, method=method, seed=int(run_id[-1]), sr=0.8),
             pid=pid, host="vm", started_at=f"2026-01-01T{start}:00+00:00")
    run_set = load_runs(tmp_path)
    first = {run_set.records[p].run_id for p in first_in_process(run_set)}
    assert first == {"pre-s0", "ce-s0", "grpo-s0"}  # no pid: nothing to infer
